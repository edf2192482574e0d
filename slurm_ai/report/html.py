"""Report -> one self-contained HTML page with inline SVG charts and HTML tables.

No JavaScript, no CDN, no web fonts: the page must open on an air-gapped
admin host, fit a laptop screen and print on A4. Every figure that has a 95%
interval is drawn with it: the decision and the tax as ratios on a log scale
with the line at 1 (an interval across it is "no clear difference"), busbw
histograms with the median's interval as a band, elapsed P50/P95/P99 and cost
and kWh per work unit with interval whiskers; then the tables.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from slurm_ai.report.aggregate import Aggregate
from slurm_ai.report.axis import ticks
from slurm_ai.report.compare import TIMES, TOO_FEW
from slurm_ai.report.render import (
    fmt,
    group_rows,
    ratio_text,
    size_text,
    verdict_word,
    with_span,
)
from slurm_ai.report.stats import Series
from slurm_ai.report.uncertainty import HIGHER, LOWER, min_n

PALETTE = ("#1f6feb", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#30638e", "#8d6a9f")
VERDICT_COLOR = {HIGHER: "#d1495b", LOWER: "#1f6feb"}  # no clear difference: grey
GREY = "#6e7781"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:20px auto;padding:0 24px;max-width:1280px;color:#1b1f24;background:#fafbfc;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
.sub{color:#57606a;font-size:13px}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
.charts{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.chart{display:inline-block;vertical-align:top;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px;max-width:100%;box-sizing:border-box}
svg{max-width:100%;height:auto}
.wide{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12.5px;background:#fff;margin:4px 0 10px}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f0f3f6}
tr.ci td{color:#57606a;font-size:11.5px;border-top:none}
.decision li{margin:3px 0}.few{color:#9a6700}.clear{font-weight:600}
.higher{color:#b3263a}.lower{color:#1553b6}.unclear{color:#57606a}
svg text{font-family:system-ui,Helvetica,Arial,sans-serif}
@media print{
 body{background:#fff;margin:0;padding:0;max-width:none;font-size:11px}
 .chart{border:none;padding:0;break-inside:avoid}h2,h3{break-after:avoid}
 table{font-size:9px;break-inside:auto}tr{break-inside:avoid}td,th{padding:1px 4px}
 .wide{overflow:visible}
}
@page{size:A4;margin:12mm}
"""


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _svg_open(cls: str, label: str, width: float, height: float) -> str:
    return (
        f'<svg class="{cls}" role="img" aria-label="{escape(label)}" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
    )


# ------------------------------------------------------------ busbw histogram


def _busbw_chart(groups: list[tuple[str, Series, dict[str, Any]]]) -> str:
    """Histogram per partition/class; median (solid) with its 95% band, P5 (dashed)."""
    groups = [(n, s, b) for n, s, b in groups if len(s)]
    if not groups:
        return "<p class=sub>No busbw measurements.</p>"
    lo = min(min(s.values) for _, s, _ in groups)
    hi = max(max(s.values) for _, s, _ in groups)
    lo, hi = max(0.0, lo - (hi - lo) * 0.05), hi + (hi - lo) * 0.05 + 1e-9
    bins, row_h, left, width = 40, 70, 170, 520

    def x_of(v: float) -> float:
        return left + (v - lo) / (hi - lo) * width

    height = row_h * len(groups) + 40
    out = [_svg_open("busbw", "busbw distribution per partition", left + width + 20, height)]
    for i, (name, series, block) in enumerate(groups):
        y0 = 10 + i * row_h
        counts = series.histogram(lo, hi, bins)
        peak = max(counts) or 1
        bw = width / bins
        out.append(
            f'<text x="{left - 8}" y="{y0 + row_h / 2}" text-anchor="end" font-size="12">{escape(name)}</text>'
            f'<text x="{left - 8}" y="{y0 + row_h / 2 + 14}" text-anchor="end" font-size="10" fill="#57606a">n={len(series)}</text>'
        )
        if block.get("median_low") is not None:
            x1, x2 = x_of(block["median_low"]), x_of(block["median_high"])
            out.append(
                f'<rect class="ci" x="{x1:.1f}" y="{y0 + 2}" width="{max(x2 - x1, 1):.1f}" height="{row_h - 12}" fill="#1b1f24" opacity="0.10"><title>median 95% interval {block["median_low"]:g}-{block["median_high"]:g} GB/s</title></rect>'
            )
        for b, c in enumerate(counts):
            if c:
                h = (row_h - 14) * c / peak
                out.append(
                    f'<rect x="{left + b * bw:.1f}" y="{y0 + row_h - 10 - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="{_color(i)}" opacity="0.75"><title>{c} jobs</title></rect>'
                )
        for key, label, dash in (("median", "median", ""), ("p5", "P5", ' stroke-dasharray="3,2"')):
            v = block.get(key)
            if v is None:
                continue
            out.append(
                f'<line x1="{x_of(v):.1f}" x2="{x_of(v):.1f}" y1="{y0 + 2}" y2="{y0 + row_h - 10}" stroke="#1b1f24" stroke-width="1.5"{dash}><title>{label} {v:.1f} GB/s</title></line>'
            )
        med = block.get("median")
        note = f"median {med:.0f}" if med is not None else f"n={len(series)}: too few for a median"
        out.append(
            f'<text x="{x_of(med) + 4 if med is not None else left + 4:.1f}" y="{y0 + 10}" font-size="10">{escape(note)}</text>'
        )
    axis_y = 10 + row_h * len(groups)
    out.append(
        f'<line x1="{left}" x2="{left + width}" y1="{axis_y - 10}" y2="{axis_y - 10}" stroke="#8c959f"/>'
    )
    for v, label in ticks(lo, hi):
        out.append(
            f'<text x="{x_of(v):.1f}" y="{axis_y + 4}" text-anchor="middle" font-size="10">{label}</text>'
        )
    out.append(
        f'<text x="{left + width / 2}" y="{axis_y + 20}" text-anchor="middle" font-size="11">busbw GB/s (solid: median with its 95% band, dashed: P5)</text></svg>'
    )
    return "".join(out)


# ------------------------------------------------------------ bars and dots

Bar = tuple[str, list[tuple[str, float]], tuple[float, float] | None]


def _bar_chart(title: str, unit: str, bars: list[Bar]) -> str:
    """Horizontal bars, each a stack of (label, value) segments, with an optional 95% whisker."""
    bars = [(n, segs, ci) for n, segs, ci in bars if sum(v for _, v in segs) > 0]
    if not bars:
        return ""
    peak = max(max(sum(v for _, v in segs), ci[1] if ci else 0.0) for _, segs, ci in bars)
    left, width, row_h = 170, 330, 26
    height = row_h * len(bars) + 50
    out = [_svg_open("bars", title, left + width + 110, height)]
    out.append(f'<text x="8" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    seg_names: list[str] = []
    for i, (name, segs, ci) in enumerate(bars):
        y = 28 + i * row_h
        out.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12">{escape(name)}</text>'
        )
        x = float(left)
        for label, v in segs:
            if label not in seg_names:
                seg_names.append(label)
            w = width * v / peak
            out.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 8}" fill="{_color(seg_names.index(label))}"><title>{escape(label)}: {v:.4g} {escape(unit)}</title></rect>'
            )
            x += w
        total = sum(v for _, v in segs)
        end = x
        if ci is not None:
            x1, x2 = left + width * ci[0] / peak, left + width * ci[1] / peak
            mid = y + row_h / 2 - 2
            out.append(
                f'<g class="whisker" stroke="#1b1f24" stroke-width="1.3"><title>95% interval {ci[0]:.4g}-{ci[1]:.4g}</title>'
                f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>'
                f'<line x1="{x1:.1f}" x2="{x1:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/>'
                f'<line x1="{x2:.1f}" x2="{x2:.1f}" y1="{mid - 5:.1f}" y2="{mid + 5:.1f}"/></g>'
            )
            end = max(end, x2)
        out.append(f'<text x="{end + 5:.1f}" y="{y + 15}" font-size="11">{total:.3g}</text>')
    if len(seg_names) > 1:
        lx = left
        for j, label in enumerate(seg_names):
            out.append(
                f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{_color(j)}"/><text x="{lx + 14}" y="{height - 7}" font-size="11">{escape(label)}</text>'
            )
            lx += 20 + 7 * len(label)
    elif any(ci for _, _, ci in bars):
        out.append(
            f'<text x="{left}" y="{height - 7}" font-size="11" fill="#57606a">whiskers: 95% interval</text>'
        )
    out.append(
        f'<text x="{left + width + 100}" y="16" text-anchor="end" font-size="11" fill="#57606a">{escape(unit)}</text></svg>'
    )
    return "".join(out)


Dot = tuple[str, float, float | None, float | None, str]  # label, value, low, high, colour


def _dot_chart(
    cls: str, title: str, axis: str, dots: list[Dot], log: bool, ref: float | None = None
) -> str:
    """Dots with 95% whiskers on a common axis (log for ratios, with a line at ref)."""
    if not dots:
        return ""
    values = [v for _, val, lo, hi, _ in dots for v in (val, lo, hi) if v is not None and v > 0]
    if ref is not None:
        values.append(ref)
    if not values:
        return ""
    lo_v, hi_v = min(values), max(values)
    if log:
        lo_v, hi_v = math.log(lo_v) - 0.05, math.log(hi_v) + 0.05
    else:
        lo_v, hi_v = 0.0, hi_v * 1.05
    span = (hi_v - lo_v) or 1.0
    left, width, row_h = 260, 320, 22
    height = row_h * len(dots) + 70

    def x_of(v: float) -> float:
        return left + ((math.log(v) if log else v) - lo_v) / span * width

    out = [_svg_open(cls, title, left + width + 30, height)]
    out.append(f'<text x="8" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    axis_y = 30 + len(dots) * row_h + 4
    out.append(
        f'<line x1="{left}" x2="{left + width}" y1="{axis_y}" y2="{axis_y}" stroke="#8c959f"/>'
    )
    ends = (math.exp(lo_v), math.exp(hi_v)) if log else (lo_v, hi_v)
    for tick, label in ticks(*ends, log=log):
        x = x_of(tick)
        out.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="24" y2="{axis_y}" stroke="#eaeef2"/>'
            f'<text x="{x:.1f}" y="{axis_y + 12}" text-anchor="middle" font-size="9.5" fill="#57606a">{label}</text>'
        )
    if ref is not None:
        out.append(
            f'<line x1="{x_of(ref):.1f}" x2="{x_of(ref):.1f}" y1="24" y2="{height - 36}" stroke="#8c959f" stroke-dasharray="4,3"/>'
        )
    for i, (label, val, lo, hi, color) in enumerate(dots):
        y = 30 + i * row_h + row_h / 2
        out.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="11.5">{escape(label)}</text>'
        )
        if lo is not None and hi is not None and lo > 0:
            out.append(
                f'<g class="whisker" stroke="{color}" stroke-width="1.5"><title>95% interval {lo:.4g}-{hi:.4g}</title>'
                f'<line x1="{x_of(lo):.1f}" x2="{x_of(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<line x1="{x_of(lo):.1f}" x2="{x_of(lo):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}"/>'
                f'<line x1="{x_of(hi):.1f}" x2="{x_of(hi):.1f}" y1="{y - 5:.1f}" y2="{y + 5:.1f}"/></g>'
            )
        if val > 0 or not log:
            out.append(
                f'<circle cx="{x_of(val):.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>{escape(label)}: {val:.4g}</title></circle>'
            )
    out.append(
        f'<text x="{left + width / 2}" y="{height - 4}" text-anchor="middle" font-size="11">{escape(axis)}</text></svg>'
    )
    return "".join(out)


def _ratio_dot(label: str, m: dict[str, Any]) -> Dot | None:
    if m.get("ratio") is None or m.get("ratio_low") is None:
        return None
    color = VERDICT_COLOR.get(m["verdict"], GREY)
    return (label, m["ratio"], m["ratio_low"], m["ratio_high"], color)


# ------------------------------------------------------------ tables


def _table(header: list[str], body: list[list[str]], ci_rows: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    rows = []
    for i, r in enumerate(body):
        cls = " class=ci" if i in ci_rows else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>")
    return f"<div class=wide><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def _groups_table(report: dict[str, Any]) -> str:
    groups = report["groups"]
    header = ["partition / platform"] + [f"{g['partition']}/{g['platform']}" for g in groups]
    rows = group_rows(report)
    body = [[name.replace("  ", "\u2003", 1)] + [get(g) for g in groups] for name, get in rows]
    ci = frozenset(i for i, (name, _) in enumerate(rows) if name.strip() == "95% interval")
    return _table(header, body, ci)


TAX_TABLES = (  # key in report["tax"], heading, what an empty one says, header
    ("busbw", "busbw versus bare metal (median; same GPU model, ranks, size)",
     "No comparable busbw measurements on both sides.",
     ["platform", "GPU", "ranks x size", "median GB/s (95%)", "bare metal", "ratio (95%)",
      "n vm/bare", "verdict"]),
    ("cost_per_result", "Cost per result versus bare metal (same workload and GPU model)",
     "No comparable work units on both sides.",
     ["platform", "workload", "GPU", "per", "value (95%)", "bare metal (95%)", "ratio (95%)",
      "n vm/bare", "verdict"]),
)  # fmt: skip


def _tax_cells(key: str, t: dict[str, Any]) -> list[str]:
    if key == "busbw":
        first = [t["platform"], t["model"], f"{t['ranks']} x {size_text(t['size_bytes'])}",
                 _or_few(t, "median_gbps", t["jobs"]),
                 _or_few(t, "bare_metal_median_gbps", t["bare_metal_jobs"])]  # fmt: skip
    else:
        first = [t["platform"], t["workload"], t["model"], f"{t['basis']} {t['label']}",
                 with_span(t, "per_result"), with_span(t, "bare_metal_per_result")]  # fmt: skip
    return [*first, ratio_text(t), f"{t['jobs']}/{t['bare_metal_jobs']}", verdict_word(t)]


def _tax_tables(tax: dict[str, Any]) -> list[str]:
    parts = []
    for key, heading, empty, header in TAX_TABLES:
        parts.append(f"<h3>{escape(heading)}</h3>")
        if tax[key]:
            parts.append(_table(header, [_tax_cells(key, t) for t in tax[key]]))
        else:
            parts.append(f"<p class=sub>{escape(empty)}</p>")
    return parts


def _or_few(t: dict[str, Any], key: str, n: int) -> str:
    return with_span(t, key) if t[key] is not None else f"n too small (n={n})"


# ------------------------------------------------------------ sections


def _decision_section(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    parts = [
        "<h2>Decision</h2>",
        f"<p class=sub>Each partition/class against the reference, with 95% intervals of the "
        f"ratio; an interval that holds 1 is no clear difference. Cost decisions need at least "
        f"{s['min_jobs']} jobs a side; percentiles need P50 {s['intervals']['min_n']['p50']}, "
        f"P95 {s['intervals']['min_n']['p95']}, P99 {s['intervals']['min_n']['p99']} jobs.</p>",
    ]
    for d in report["decision"]:
        parts.append(f"<h3>{escape(d['workload'])}: {escape(d['what'])}</h3>")
        if not d["comparisons"]:
            parts.append(f"<p>{escape(d['verdict'])}</p>")
            continue
        items, dots = [], []
        for c in d["comparisons"]:
            name = f"{c['partition']}/{c['platform']}"
            cls = _verdict_class(c["cost"]["verdict"])
            lines = [f"<li class={cls}><b>{escape(name)}</b> vs {escape(c['reference'])}: "
                     f"{escape(c['cost']['says'])}<ul>"]  # fmt: skip
            dot = _ratio_dot(f"{name}: {d['label']}", c["cost"])
            if dot:
                dots.append(dot)
            few = []
            for key, _, p, label in TIMES:
                m = c[key]
                if m["verdict"] == TOO_FEW:
                    few.append(f"{label} (needs {min_n(p)})")
                    continue
                cls = _verdict_class(m["verdict"])
                lines.append(f"<li class={cls}>{escape(label)}: {escape(m['says'])}</li>")
                dot = _ratio_dot(f"{name}: {label}", m)
                if dot:
                    dots.append(dot)
            if few:
                n = c["elapsed_p50"]
                lines.append(f"<li class=few>n too small for {escape(', '.join(few))}: "
                             f"n={n['n']}/{n['reference_n']}</li>")  # fmt: skip
            items.append("".join(lines) + "</ul></li>")
        parts.append("<ul class=decision>" + "".join(items) + "</ul>")
        chart = _dot_chart(
            "ratios", f"{d['workload']}: ratio to {d['reference']}", "ratio (log scale), 95% interval; 1 = no difference",
            dots, log=True, ref=1.0,
        )  # fmt: skip
        if chart:
            parts.append(f"<div class=chart>{chart}</div>")
    return parts


def _verdict_class(verdict: str) -> str:
    if verdict in (HIGHER, LOWER):
        return f"{verdict} clear"
    return "unclear" if verdict == "no clear difference" else "few"


def _elapsed_chart(groups: list[dict[str, Any]]) -> str:
    dots: list[Dot] = []
    for g in groups:
        e = g["elapsed_s"]
        for i, key in enumerate(("p50", "p95", "p99")):
            if e[key] is not None:
                name = f"{g['partition']}/{g['platform']} {key.upper()}"
                dots.append(
                    (name, e[key] / 3600, _h(e[f"{key}_low"]), _h(e[f"{key}_high"]), _color(i))
                )
    return _dot_chart(
        "elapsed", "Elapsed time of completed jobs: P50, P95, P99", "hours (95% interval); "
        "a percentile is drawn only where n supports it", dots, log=False,
    )  # fmt: skip


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def _cost_charts(report: dict[str, Any]) -> list[str]:
    s = report["summary"]
    cur = s["prices"]["currency"]
    groups = report["groups"]
    charts = []
    if s["prices"]["configured"]:
        bars: list[Bar] = []
        for g in groups:
            gpu_h = g["gpu_hours"] or 0
            if not gpu_h or g["cost"] is None:
                continue
            pp = s["prices"]["partitions"].get(g["partition"], {})
            energy_cost = (
                (g["kwh"] or 0)
                * s["prices"]["pue"]
                * pp.get("cost_per_kwh", s["prices"]["cost_per_kwh"])
            )
            name = f"{g['partition']}/{g['platform']}"
            segs = [
                ("hardware", (g["cost"] - energy_cost) / gpu_h),
                ("energy", energy_cost / gpu_h),
            ]
            bars.append((name, segs, None))
        charts.append(_bar_chart("Cost per GPU-hour", cur, bars))
    labels: dict[str, str] = {}
    for g in groups:
        for u in g["per_unit"]:
            labels[u["unit"]] = u["label"]
    for basis, unit_name in (("cost", cur), ("kwh", "kWh")):
        for unit, label in labels.items():
            unit_bars: list[Bar] = []
            for g in groups:
                for u in g["per_unit"]:
                    if u["unit"] == unit and u[basis] is not None:
                        low, high = u[f"{basis}_low"], u[f"{basis}_high"]
                        ci = (low, high) if low is not None and high is not None else None
                        unit_bars.append(
                            (f"{g['partition']}/{g['platform']}", [(label, u[basis])], ci)
                        )
            charts.append(_bar_chart(f"{unit_name} {label}", unit_name, unit_bars))
    return [f"<div class=chart>{c}</div>" for c in charts if c]


def _groups_busbw(
    agg: Aggregate, report: dict[str, Any]
) -> list[tuple[str, Series, dict[str, Any]]]:
    merged: dict[str, Series] = {}
    for (part, plat, _, _), cell in sorted(agg.cells.items()):
        merged.setdefault(f"{part}/{plat}", Series()).extend(cell.busbw)
    blocks = {f"{g['partition']}/{g['platform']}": g["busbw_gbps"] for g in report["groups"]}
    return [(name, series, blocks.get(name, {})) for name, series in merged.items()]


def render_html(report: dict[str, Any], agg: Aggregate) -> str:
    s = report["summary"]
    groups = report["groups"]
    cards = [
        (fmt(s["jobs"]), "jobs"),
        (fmt(s["with_record"]), "with record"),
        (fmt(s["no_record"]), "no record"),
        (fmt(s.get("incomplete", 0)), "incomplete (nodes missing)"),
        (fmt(s["unparsed"]), "unparsed"),
        (str(len(groups)), "partition/platform groups"),
    ]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>slurm-ai report: bare metal versus VM</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Bare metal versus VM partitions</h1>",
        "<div class=sub>slurm-ai report: cost per result, tail latency and variability, "
        "each with its 95% interval.</div>",
        "<div class=cards>"
        + "".join(
            f"<div class=card><b>{escape(v)}</b><span>{escape(k)}</span></div>" for v, k in cards
        )
        + "</div>",
    ]
    parts += _decision_section(report)
    parts.append("<h2>All-reduce bus bandwidth per partition</h2>")
    parts.append(f"<div class=chart>{_busbw_chart(_groups_busbw(agg, report))}</div>")
    tax_dots = [
        dot
        for t in report["tax"]["busbw"]
        if (dot := _ratio_dot(f"{t['platform']} {t['ranks']} ranks busbw", t))
    ] + [
        dot
        for t in report["tax"]["cost_per_result"]
        if (dot := _ratio_dot(f"{t['platform']} {t['workload']} {t['basis']}", t))
    ]
    parts.append("<h2>Virtualization tax</h2>")
    chart = _dot_chart(
        "ratios",
        "Ratio to bare metal",
        "ratio (log scale), 95% interval",
        tax_dots,
        log=True,
        ref=1.0,
    )
    if chart:
        parts.append(f"<div class=chart>{chart}</div>")
    parts += _tax_tables(report["tax"])
    elapsed = _elapsed_chart(groups)
    parts.append("<h2>Elapsed time</h2>")
    parts.append(f"<div class=chart>{elapsed}</div>" if elapsed else
                 "<p class=sub>Too few completed jobs for any percentile.</p>")  # fmt: skip
    cost = _cost_charts(report)
    if cost:
        parts.append("<h2>Cost and energy per work unit</h2><div class=charts>")
        parts += cost
        parts.append("</div>")
    if groups:
        parts.append("<h2>Figures per partition and platform class</h2>")
        parts.append(
            "<p class=sub>Grey rows: 95% interval of the figure above. (n=N): n too small for "
            "that percentile.</p>"
        )
        parts.append(_groups_table(report))
    parts.append("</body></html>\n")
    return "\n".join(parts)
