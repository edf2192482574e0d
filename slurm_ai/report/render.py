"""Report dict -> terminal table, JSON or CSV. Formatting only, no figures made here."""

from __future__ import annotations

import csv
import io
import math
import textwrap
from collections.abc import Callable
from typing import Any

from slurm_ai import jsontext
from slurm_ai.report.compare import TIMES, TOO_FEW
from slurm_ai.report.uncertainty import min_n


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "?"  # never "nan": a figure no reader could use
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def duration(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.2f}h"


Row = tuple[str, Callable[[dict[str, Any]], str]]
WIDTH = 80  # the text report fits a terminal of this width
# A comparison's fields in CSV, in this order.
RATIO_KEYS = ("ratio", "ratio_low", "ratio_high", "verdict", "jobs_to_tell", "difference_to_tell")


def _few(block: dict[str, Any]) -> str:
    """A percentile the sample does not support (uncertainty rule 2): its n instead."""
    return f"(n={block['n']})"


def _shown(block: dict[str, Any], key: str, show: Callable[[Any], str]) -> str:
    value = block[key]
    return _few(block) if value is None and block["n"] else show(value)


def _span(block: dict[str, Any], key: str, show: Callable[[Any], str]) -> str:
    """The 95% interval of block[key] as low-high, or "-"."""
    low, high = block.get(f"{key}_low"), block.get(f"{key}_high")
    if low is None or high is None:
        return "-"
    return f"{show(low)}-{show(high)}"


def _fmt3(value: Any) -> str:
    return fmt(value, 3)


def _pct_rows(label: str, block: str, key: str, show: Callable[[Any], str]) -> list[Row]:
    """A percentile row and its interval row."""
    return [
        (label, lambda g: _shown(g[block], key, show)),
        ("  95% interval", lambda g: _span(g[block], key, show)),
    ]


def group_rows(report: dict[str, Any]) -> list[Row]:
    cur = report["summary"]["prices"]["currency"]
    rows: list[Row] = [
        ("jobs", lambda g: fmt(g["jobs"])),
        ("node-hours", lambda g: fmt(g["node_hours"])),
        ("GPU-hours", lambda g: fmt(g["gpu_hours"])),
        *_pct_rows("busbw median GB/s", "busbw_gbps", "median", _fmt3),
        *_pct_rows("busbw P5 GB/s", "busbw_gbps", "p5", _fmt3),
        ("busbw jobs", lambda g: fmt(g["busbw_gbps"]["n"])),
        *_pct_rows("elapsed P50", "elapsed_s", "p50", duration),
        *_pct_rows("elapsed P95", "elapsed_s", "p95", duration),
        *_pct_rows("elapsed P99", "elapsed_s", "p99", duration),
        ("completed jobs", lambda g: fmt(g["elapsed_s"]["n"])),
        *_pct_rows("queue wait P50", "wait_s", "p50", duration),
        *_pct_rows("queue wait P95", "wait_s", "p95", duration),
        ("variability", lambda g: ""),
        ("  busbw CV", lambda g: fmt(g["busbw_gbps"]["cv"], 3)),
        ("  elapsed CV", lambda g: fmt(g["elapsed_s"]["cv"], 3)),
        ("  elapsed P99/P50", lambda g: _shown(g["elapsed_s"], "p99_over_p50", _fmt3)),
        ("kWh (IT)", lambda g: fmt(g["kwh"])),
        ("kWh per GPU-hour", lambda g: fmt(g["kwh_per_gpu_hour"])),
        ("jobs with energy", lambda g: fmt(g["energy_jobs"])),
        ("energy measured", lambda g: _pct(g["energy_measured_share"])),
        ("CO2 kg", lambda g: fmt(g["co2_kg"])),
        (f"cost {cur}", lambda g: fmt(g["cost"])),
        (f"{cur} per GPU-hour", lambda g: fmt(g["cost_per_gpu_hour"])),
        (f"{cur} per job", lambda g: fmt(g["cost_per_job"])),
        ("  95% interval", lambda g: _span(g, "cost_per_job", _fmt3)),
    ]
    units: list[tuple[str, str]] = []
    for g in report["groups"]:
        for u in g["per_unit"]:
            if (u["unit"], u["label"]) not in units:
                units.append((u["unit"], u["label"]))
    for unit, label in units:
        for key, name in (("cost", cur), ("kwh", "kWh")):
            rows.append((f"{name} {label}", _unit_getter(unit, key, lambda u, k: fmt(u[k]))))
            rows.append(
                ("  95% interval", _unit_getter(unit, key, lambda u, k: _span(u, k, _fmt3)))
            )
    rows += [
        ("health checked", lambda g: fmt(g["health"]["checked"])),
        ("health failure rate", lambda g: _pct(g["health"]["failure_rate"])),
        # Jobs by what their verdict rested on (record health.provenance).
        ("health fresh", lambda g: fmt(g["health"].get("fresh"))),
        ("health cached", lambda g: fmt(g["health"].get("cached"))),
        ("health unchecked", lambda g: fmt(g["health"].get("unchecked"))),
    ]
    return rows


def _unit_getter(
    unit: str, key: str, show: Callable[[dict[str, Any], str], str]
) -> Callable[[dict[str, Any]], str]:
    def get(g: dict[str, Any]) -> str:
        for u in g["per_unit"]:
            if u["unit"] == unit:
                return show(u, key)
        return "-"

    return get


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    out = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ).rstrip()
    ]
    out.append("  ".join("-" * w for w in widths))
    for r in body:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    return out


def _blocks(header: list[str], body: list[list[str]], width: int = WIDTH) -> list[str]:
    """A wide table as blocks of columns that fit `width`, each repeating the first column."""
    first = max(len(r[0]) for r in [header, *body])
    cols = [max(len(r[i]) for r in [header, *body]) for i in range(1, len(header))]
    out: list[str] = []
    i = 0
    while i < len(cols):
        used, j = first, i
        while j < len(cols) and (j == i or used + 2 + cols[j] <= width):
            used += 2 + cols[j]
            j += 1
        pick = [0, *range(i + 1, j + 1)]
        if out:
            out.append("")
        out += _table([header[k] for k in pick], [[r[k] for k in pick] for r in body])
        i = j
    return out


def _wrap(text: str, indent: str, width: int = WIDTH) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "    ")


def ratio_text(t: dict[str, Any]) -> str:
    if t["ratio"] is None:
        return "-"
    if t.get("ratio_low") is None:
        return fmt(t["ratio"], 3)
    return f"{fmt(t['ratio'], 3)} ({fmt(t['ratio_low'], 3)}-{fmt(t['ratio_high'], 3)})"


def verdict_word(t: dict[str, Any]) -> str:
    return {"no clear difference": "unclear"}.get(t["verdict"], t["verdict"])


def with_span(t: dict[str, Any], key: str) -> str:
    value = t[key]
    if value is None:
        return "-"
    span = _span(t, key, _fmt3)
    return fmt(value, 4) if span == "-" else f"{fmt(value, 4)} ({span})"


def _grouped(
    rows: list[dict[str, Any]],
    header: list[str],
    key_of: Callable[[dict[str, Any]], Any],
    heading_of: Callable[[dict[str, Any]], str],
    cells_of: Callable[[dict[str, Any]], list[str]],
) -> list[str]:
    """Rows under a wrapped heading per key (the reference side), as narrow tables."""
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for t in rows:
        by_key.setdefault(key_of(t), []).append(t)
    lines: list[str] = []
    for same in by_key.values():
        lines += [""] if lines else []
        lines += _wrap(heading_of(same[0]), "  ")
        lines += _table(header, [[f"  {c[0]}", *c[1:]] for c in map(cells_of, same)])
    return lines


def _busbw_heading(t: dict[str, Any]) -> str:
    ref = with_span(t, "bare_metal_median_gbps")
    if t["bare_metal_median_gbps"] is None:
        ref = f"n too small (n={t['bare_metal_jobs']})"
    return f"{t['model']}, {t['ranks']} ranks, {size_text(t['size_bytes'])}: bare metal {ref}"


def _busbw_cells(t: dict[str, Any]) -> list[str]:
    median = with_span(t, "median_gbps") if t["median_gbps"] is not None else f"(n={t['jobs']})"
    return [t["platform"], median, ratio_text(t), str(t["jobs"]), verdict_word(t)]


def _cost_heading(t: dict[str, Any]) -> str:
    return (
        f"{t['workload']}, {t['model']}, {t['basis']} {t['label']}: bare metal "
        f"{with_span(t, 'bare_metal_per_result')}, n={t['bare_metal_jobs']}"
    )


def _cost_cells(t: dict[str, Any]) -> list[str]:
    per = with_span(t, "per_result")
    return [t["platform"], per, ratio_text(t), str(t["jobs"]), verdict_word(t)]


# The two tax tables: key in report["tax"], title, what an empty one says, the value
# column, the reference each heading names, and the heading and cells of a row.
_TAX = (
    ("busbw", "busbw versus bare metal (median, 95% intervals)",
     "no comparable busbw measurements on both sides", "median GB/s",
     lambda t: (t["model"], t["ranks"], t["size_bytes"]), _busbw_heading, _busbw_cells),
    ("cost_per_result", "cost per result versus bare metal (95% intervals)",
     "no comparable work units on both sides", "per result",
     lambda t: (t["workload"], t["model"], t["unit"]), _cost_heading, _cost_cells),
)  # fmt: skip


def _tax_lines(tax: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, title, empty, value, key_of, heading_of, cells_of in _TAX:
        lines += ["", f"Virtualization tax: {title}"]
        if not tax[key]:
            lines.append(f"  {empty}")
        header = ["platform", value, "ratio (95%)", "n", "verdict"]
        lines += _grouped(tax[key], header, key_of, heading_of, cells_of)
    return lines


def _decision_lines(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    lines = ["", f"Decision (95% intervals; at least {s['min_jobs']} jobs per partition)"]
    for d in report["decision"]:
        if not d["comparisons"]:
            lines += _wrap(f"{d['workload']}: {d['verdict']}", "  ")
            continue
        lines.append(f"  {d['workload']}: {d['what']}, against {d['reference']}")
        for c in d["comparisons"]:
            lines += _wrap(f"{c['partition']}/{c['platform']}: {c['cost']['says']}", "    ")
            few = []
            for key, _, p, label in TIMES:
                if c[key]["verdict"] == TOO_FEW:
                    few.append(f"{label} (needs {min_n(p)})")
                else:
                    lines += _wrap(f"{label}: {c[key]['says']}", "      ")
            if few:
                n = c["elapsed_p50"]
                lines += _wrap(f"n too small for {', '.join(few)}: n={n['n']}/{n['reference_n']} "
                               "completed", "      ")  # fmt: skip
    return lines


def render_text(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"jobs: {s['jobs']}  with record: {s['with_record']}  no record: {s['no_record']}  "
        f"unparsed: {s['unparsed']}",
        f"steps skipped: {s['steps_skipped']}  foreign AdminComment: {s['foreign_comment']}",
    ]
    if s["unparsed_reasons"]:
        lines += _wrap(
            "unparsed: " + ", ".join(f"{k}: {v}" for k, v in s["unparsed_reasons"].items()), ""
        )
    if s.get("incomplete"):
        lines += _wrap(
            f"incomplete records: {s['incomplete']} (nodes missing): their energy and "
            "health figures cover the nodes present only; node-hours and GPU-hours are "
            "the job's from sacct",
            "",
        )
    p = s["prices"]
    if p["configured"]:
        lines.append(
            f"prices: {p['currency']} {p['cost_per_kwh']:g}/kWh, PUE {p['pue']:g}, {p['co2_kg_per_kwh']:g} kg CO2/kWh"
        )
    else:
        lines += _wrap(
            "prices: none configured ([prices] in the config): costs unknown, decisions by kWh", ""
        )
    groups = report["groups"]
    if not groups:
        lines.append("no jobs")
        return "\n".join(lines) + "\n"
    least = s["intervals"]["min_n"]
    lines += _wrap(
        f"(n=N): n too small for that percentile (P50 needs {least['p50']} jobs, "
        f"P5/P95 {least['p95']}, P99 {least['p99']}); intervals are 95%.",
        "",
    )
    lines.append("")
    header = ["partition / platform"] + [f"{g['partition']}/{g['platform']}" for g in groups]
    body = [[name] + [get(g) for g in groups] for name, get in group_rows(report)]
    lines += _blocks(header, body)
    lines += _tax_lines(report["tax"])
    lines += _decision_lines(report)
    return "\n".join(lines) + "\n"


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def render_json(report: dict[str, Any]) -> str:
    return jsontext.dumps(report, indent=2, sort_keys=True) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    """Long format (section, partition, platform, key, metric, value, jobs): one parser for all.

    Intervals are rows of their own: metric `X_low` and `X_high` beside `X`.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "partition", "platform", "key", "metric", "value", "jobs"])
    for k, v in report["summary"].items():
        if not isinstance(v, dict):
            w.writerow(["summary", "", "", "", k, _cell(v), ""])
    for k, v in report["summary"]["unparsed_reasons"].items():
        w.writerow(["summary", "", "", k, "unparsed", v, ""])
    for k, v in report["summary"]["intervals"]["min_n"].items():
        w.writerow(["summary", "", "", k, "min_n", v, ""])
    for g in report["groups"]:
        pp, pl = g["partition"], g["platform"]
        for k, v in g.items():
            if k not in ("partition", "platform", "per_unit") and not isinstance(v, dict):
                w.writerow(["group", pp, pl, "", k, _cell(v), g["jobs"]])
        for block in ("busbw_gbps", "elapsed_s", "wait_s", "health"):
            n = g[block].get("n", g[block].get("checked"))
            for k, v in g[block].items():
                if k not in ("n", "checked"):
                    w.writerow(["group", pp, pl, "", f"{block}.{k}", _cell(v), n])
        for u in g["per_unit"]:
            for k in ("cost", "cost_low", "cost_high", "kwh", "kwh_low", "kwh_high"):
                w.writerow(
                    ["group", pp, pl, u["unit"], f"{k} {u['label']}", _cell(u[k]), u["jobs"]]
                )
    for t in report["tax"]["busbw"]:
        key = f"{t['model']} ranks={t['ranks']} size={t['size_bytes']}"
        jobs = f"{t['jobs']}/{t['bare_metal_jobs']}"
        for k in ("median_gbps", "bare_metal_median_gbps", *RATIO_KEYS):
            for metric in (k, f"{k}_low", f"{k}_high") if k.endswith("gbps") else (k,):
                w.writerow(["tax-busbw", "", t["platform"], key, metric, _cell(t[metric]), jobs])
    for t in report["tax"]["cost_per_result"]:
        key = f"{t['workload']} {t['model']} {t['basis']} {t['label']}"
        jobs = f"{t['jobs']}/{t['bare_metal_jobs']}"
        for k in ("per_result", "bare_metal_per_result", *RATIO_KEYS):
            for metric in (k, f"{k}_low", f"{k}_high") if k.endswith("per_result") else (k,):
                w.writerow(["tax-cost", "", t["platform"], key, metric, _cell(t[metric]), jobs])
    for d in report["decision"]:
        key = f"{d['workload']} {d['basis']} {d['label']}"
        for c in d["candidates"]:
            for k in ("per_result", "per_result_low", "per_result_high"):
                w.writerow(["decision", c["partition"], c["platform"], key, k, _cell(c[k]),
                            c["result_jobs"]])  # fmt: skip
            for k in ("p99_elapsed_s", "p99_elapsed_s_low", "p99_elapsed_s_high"):
                w.writerow(["decision", c["partition"], c["platform"], d["workload"], k,
                            _cell(c[k]), c["completed"]])  # fmt: skip
        for c in d["comparisons"]:
            for name in ("cost", *(t[0] for t in TIMES)):
                m = c[name]
                jobs = f"{m['n']}/{m['reference_n']}"
                for k in RATIO_KEYS:
                    w.writerow(["decision", c["partition"], c["platform"],
                                f"{key} vs {c['reference']}", f"{name}.{k}", _cell(m[k]), jobs])  # fmt: skip
    return buf.getvalue()


def _cell(v: Any) -> Any:
    return "" if v is None else v
