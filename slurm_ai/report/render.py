"""Report dict -> terminal table, JSON or CSV. Formatting only, no figures made here."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _dur(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.2f}h"


Row = tuple[str, Callable[[dict[str, Any]], str]]


def _group_rows(report: dict[str, Any]) -> list[Row]:
    cur = report["summary"]["prices"]["currency"]
    rows: list[Row] = [
        ("jobs", lambda g: fmt(g["jobs"])),
        ("node-hours", lambda g: fmt(g["node_hours"])),
        ("GPU-hours", lambda g: fmt(g["gpu_hours"])),
        ("busbw median GB/s", lambda g: fmt(g["busbw_gbps"]["median"])),
        ("busbw P5 GB/s", lambda g: fmt(g["busbw_gbps"]["p5"])),
        ("busbw CV", lambda g: fmt(g["busbw_gbps"]["cv"], 3)),
        ("busbw jobs", lambda g: fmt(g["busbw_gbps"]["n"])),
        ("elapsed P50", lambda g: _dur(g["elapsed_s"]["p50"])),
        ("elapsed P95", lambda g: _dur(g["elapsed_s"]["p95"])),
        ("elapsed P99", lambda g: _dur(g["elapsed_s"]["p99"])),
        ("completed jobs", lambda g: fmt(g["elapsed_s"]["n"])),
        ("queue wait P95", lambda g: _dur(g["wait_s"]["p95"])),
        ("kWh (IT)", lambda g: fmt(g["kwh"])),
        ("kWh per GPU-hour", lambda g: fmt(g["kwh_per_gpu_hour"])),
        ("jobs with energy", lambda g: fmt(g["energy_jobs"])),
        ("energy measured", lambda g: _pct(g["energy_measured_share"])),
        ("CO2 kg", lambda g: fmt(g["co2_kg"])),
        (f"cost {cur}", lambda g: fmt(g["cost"])),
        (f"{cur} per GPU-hour", lambda g: fmt(g["cost_per_gpu_hour"])),
        (f"{cur} per job", lambda g: fmt(g["cost_per_job"])),
    ]
    units: list[tuple[str, str]] = []
    for g in report["groups"]:
        for u in g["per_unit"]:
            if (u["unit"], u["label"]) not in units:
                units.append((u["unit"], u["label"]))
    for unit, label in units:
        rows.append((f"{cur} {label}", _unit_getter(unit, "cost")))
        rows.append((f"kWh {label}", _unit_getter(unit, "kwh")))
    rows += [
        ("health checked", lambda g: fmt(g["health"]["checked"])),
        ("health failure rate", lambda g: _pct(g["health"]["failure_rate"])),
        # Jobs by what their verdict rested on (record health.provenance).
        ("health fresh", lambda g: fmt(g["health"].get("fresh"))),
        ("health cached", lambda g: fmt(g["health"].get("cached"))),
        ("health unchecked", lambda g: fmt(g["health"].get("unchecked"))),
    ]
    return rows


def _unit_getter(unit: str, key: str) -> Callable[[dict[str, Any]], str]:
    def get(g: dict[str, Any]) -> str:
        for u in g["per_unit"]:
            if u["unit"] == unit:
                return fmt(u[key])
        return "-"

    return get


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    out = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    out.append("  ".join("-" * w for w in widths))
    for r in body:
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return out


def render_text(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"jobs: {s['jobs']}  with record: {s['with_record']}  no record: {s['no_record']}  "
        f"unparsed: {s['unparsed']}  steps skipped: {s['steps_skipped']}  "
        f"foreign AdminComment: {s['foreign_comment']}"
    ]
    if s["unparsed_reasons"]:
        lines.append(
            "unparsed: " + ", ".join(f"{k}: {v}" for k, v in s["unparsed_reasons"].items())
        )
    p = s["prices"]
    if p["configured"]:
        lines.append(
            f"prices: {p['currency']} {p['cost_per_kwh']:g}/kWh, PUE {p['pue']:g}, {p['co2_kg_per_kwh']:g} kg CO2/kWh"
        )
    else:
        lines.append(
            "prices: none configured ([prices] in the config): costs unknown, decisions by kWh"
        )
    groups = report["groups"]
    if not groups:
        lines.append("no jobs")
        return "\n".join(lines) + "\n"
    lines.append("")
    header = ["partition / platform"] + [f"{g['partition']}/{g['platform']}" for g in groups]
    body = [[name] + [get(g) for g in groups] for name, get in _group_rows(report)]
    lines += _table(header, body)

    tax = report["tax"]
    lines += ["", "Virtualization tax: busbw versus bare metal (same GPU model, ranks, size)"]
    if tax["busbw"]:
        body = [
            [
                t["platform"], t["model"], str(t["ranks"]), _size(t["size_bytes"]),
                fmt(t["median_gbps"]), fmt(t["bare_metal_median_gbps"]), fmt(t["ratio"], 3),
                f"{t['jobs']}/{t['bare_metal_jobs']}",
            ]
            for t in tax["busbw"]
        ]  # fmt: skip
        lines += _table(
            ["platform", "GPU", "ranks", "size", "median", "bare median", "ratio", "jobs vm/bare"],
            body,
        )
    else:
        lines.append("  no comparable busbw measurements on both sides")
    lines += [
        "",
        "Virtualization tax: cost per result versus bare metal (same workload and GPU model)",
    ]
    if tax["cost_per_result"]:
        body = [
            [
                t["platform"], t["workload"], t["model"], f"{t['basis']} {t['label']}",
                fmt(t["per_result"]), fmt(t["bare_metal_per_result"]), fmt(t["ratio"], 3),
                f"{t['jobs']}/{t['bare_metal_jobs']}",
            ]
            for t in tax["cost_per_result"]
        ]  # fmt: skip
        lines += _table(
            ["platform", "workload", "GPU", "per", "value", "bare", "ratio", "jobs vm/bare"], body
        )
    else:
        lines.append("  no comparable work units on both sides")
    lines += ["", f"Decision (at least {s['min_jobs']} jobs per partition)"]
    for d in report["decision"]:
        lines.append(f"  {d['workload']}: {d['verdict']}")
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    """Long format (section, partition, platform, key, metric, value, jobs): one parser for all."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "partition", "platform", "key", "metric", "value", "jobs"])
    for k, v in report["summary"].items():
        if not isinstance(v, dict):
            w.writerow(["summary", "", "", "", k, _cell(v), ""])
    for k, v in report["summary"]["unparsed_reasons"].items():
        w.writerow(["summary", "", "", k, "unparsed", v, ""])
    for g in report["groups"]:
        pp, pl = g["partition"], g["platform"]
        for k in ("jobs", "node_hours", "gpu_hours", "kwh", "kwh_per_gpu_hour", "co2_kg", "cost",
                  "cost_per_gpu_hour", "cost_per_job", "energy_measured_share", "energy_jobs"):  # fmt: skip
            w.writerow(["group", pp, pl, "", k, _cell(g[k]), g["jobs"]])
        for block in ("busbw_gbps", "elapsed_s", "wait_s", "health"):
            n = g[block].get("n", g[block].get("checked"))
            for k, v in g[block].items():
                if k not in ("n", "checked"):
                    w.writerow(["group", pp, pl, "", f"{block}.{k}", _cell(v), n])
        for u in g["per_unit"]:
            for k in ("cost", "kwh"):
                w.writerow(
                    ["group", pp, pl, u["unit"], f"{k} {u['label']}", _cell(u[k]), u["jobs"]]
                )
    for t in report["tax"]["busbw"]:
        key = f"{t['model']} ranks={t['ranks']} size={t['size_bytes']}"
        w.writerow(
            [
                "tax-busbw",
                "",
                t["platform"],
                key,
                "ratio",
                _cell(t["ratio"]),
                f"{t['jobs']}/{t['bare_metal_jobs']}",
            ]
        )
    for t in report["tax"]["cost_per_result"]:
        key = f"{t['workload']} {t['model']} {t['basis']} {t['label']}"
        w.writerow(
            [
                "tax-cost",
                "",
                t["platform"],
                key,
                "ratio",
                _cell(t["ratio"]),
                f"{t['jobs']}/{t['bare_metal_jobs']}",
            ]
        )
    for d in report["decision"]:
        for c in d["candidates"]:
            key = f"{d['workload']} {d['basis']} {d['label']}"
            w.writerow(
                [
                    "decision",
                    c["partition"],
                    c["platform"],
                    key,
                    "per_result",
                    _cell(c["per_result"]),
                    c["result_jobs"],
                ]
            )
            w.writerow(
                [
                    "decision",
                    c["partition"],
                    c["platform"],
                    d["workload"],
                    "p99_elapsed_s",
                    _cell(c["p99_elapsed_s"]),
                    c["completed"],
                ]
            )
        w.writerow(
            ["decision", "", "", d["workload"], "lower_cost", d["lower_cost"] or "too few jobs", ""]
        )
        w.writerow(
            ["decision", "", "", d["workload"], "lower_p99", d["lower_p99"] or "too few jobs", ""]
        )
    return buf.getvalue()


def _cell(v: Any) -> Any:
    return "" if v is None else v
