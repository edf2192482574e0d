"""Report -> one self-contained HTML page with inline SVG charts.

No JavaScript, no CDN, no web fonts: the page must open on an air-gapped
admin host. Charts: busbw distribution per partition (histogram with median
and P5 marks), cost per GPU-hour (hardware and energy stacked) and cost (or
kWh) per work unit, then the tables.
"""

from __future__ import annotations

from html import escape
from typing import Any

from slurm_ai.report.aggregate import Aggregate
from slurm_ai.report.render import fmt, render_text
from slurm_ai.report.stats import Series

PALETTE = ("#1f6feb", "#d1495b", "#edae49", "#00798c", "#6a4c93", "#30638e", "#8d6a9f")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px 32px;color:#1b1f24;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a;font-size:13px}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
.charts{display:flex;gap:18px;flex-wrap:wrap}.chart{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px}
table{border-collapse:collapse;font-size:13px;background:#fff}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f0f3f6}
.decision li{margin:4px 0}.few{color:#9a6700}
pre{overflow-x:auto;font-size:12px;background:#fff;border:1px solid #d0d7de;padding:8px}
svg text{font-family:system-ui,Helvetica,Arial,sans-serif}
"""


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _busbw_chart(groups: list[tuple[str, Series]]) -> str:
    groups = [(n, s) for n, s in groups if len(s)]
    if not groups:
        return "<p class=sub>No busbw measurements.</p>"
    lo = min(min(s.values) for _, s in groups)
    hi = max(max(s.values) for _, s in groups)
    lo, hi = max(0.0, lo - (hi - lo) * 0.05), hi + (hi - lo) * 0.05 + 1e-9
    bins, row_h, left, width = 40, 70, 170, 520
    height = row_h * len(groups) + 40
    out = [
        f'<svg class="busbw" role="img" aria-label="busbw distribution per partition" width="{left + width + 20}" height="{height}" viewBox="0 0 {left + width + 20} {height}">'
    ]
    for i, (name, series) in enumerate(groups):
        y0 = 10 + i * row_h
        counts = series.histogram(lo, hi, bins)
        peak = max(counts) or 1
        bw = width / bins
        out.append(
            f'<text x="{left - 8}" y="{y0 + row_h / 2}" text-anchor="end" font-size="12">{escape(name)}</text>'
        )
        out.append(
            f'<text x="{left - 8}" y="{y0 + row_h / 2 + 14}" text-anchor="end" font-size="10" fill="#57606a">n={len(series)}</text>'
        )
        for b, c in enumerate(counts):
            if c:
                h = (row_h - 14) * c / peak
                out.append(
                    f'<rect x="{left + b * bw:.1f}" y="{y0 + row_h - 10 - h:.1f}" width="{bw - 1:.1f}" height="{h:.1f}" fill="{_color(i)}" opacity="0.75"><title>{c} jobs</title></rect>'
                )
        for p, dash in ((50, ""), (5, ' stroke-dasharray="3,2"')):
            v = series.percentile(p) or 0.0
            x = left + (v - lo) / (hi - lo) * width
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + 2}" y2="{y0 + row_h - 10}" stroke="#1b1f24" stroke-width="1.5"{dash}><title>P{p} {v:.1f} GB/s</title></line>'
            )
        med = series.percentile(50) or 0.0
        out.append(
            f'<text x="{left + (med - lo) / (hi - lo) * width + 4:.1f}" y="{y0 + 10}" font-size="10">median {med:.0f}</text>'
        )
    axis_y = 10 + row_h * len(groups)
    out.append(
        f'<line x1="{left}" x2="{left + width}" y1="{axis_y - 10}" y2="{axis_y - 10}" stroke="#8c959f"/>'
    )
    for t in range(6):
        v = lo + (hi - lo) * t / 5
        x = left + width * t / 5
        out.append(
            f'<text x="{x:.1f}" y="{axis_y + 4}" text-anchor="middle" font-size="10">{v:.0f}</text>'
        )
    out.append(
        f'<text x="{left + width / 2}" y="{axis_y + 20}" text-anchor="middle" font-size="11">busbw GB/s (solid: median, dashed: P5)</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _bar_chart(title: str, unit: str, bars: list[tuple[str, list[tuple[str, float]]]]) -> str:
    """Horizontal bars, each a stack of (label, value) segments."""
    bars = [(n, segs) for n, segs in bars if sum(v for _, v in segs) > 0]
    if not bars:
        return ""
    peak = max(sum(v for _, v in segs) for _, segs in bars)
    left, width, row_h = 170, 360, 26
    height = row_h * len(bars) + 50
    out = [
        f'<svg class="bars" role="img" aria-label="{escape(title)}" width="{left + width + 90}" height="{height}" viewBox="0 0 {left + width + 90} {height}">'
    ]
    out.append(f'<text x="8" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    seg_names: list[str] = []
    for i, (name, segs) in enumerate(bars):
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
        out.append(f'<text x="{x + 5:.1f}" y="{y + 15}" font-size="11">{total:.3g}</text>')
    if len(seg_names) > 1:
        lx = left
        for j, label in enumerate(seg_names):
            out.append(
                f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{_color(j)}"/><text x="{lx + 14}" y="{height - 7}" font-size="11">{escape(label)}</text>'
            )
            lx += 20 + 7 * len(label)
    out.append(
        f'<text x="{left + width + 80}" y="16" text-anchor="end" font-size="11" fill="#57606a">{escape(unit)}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _groups_busbw(agg: Aggregate) -> list[tuple[str, Series]]:
    merged: dict[str, Series] = {}
    for (part, plat, _, _), cell in sorted(agg.cells.items()):
        merged.setdefault(f"{part}/{plat}", Series()).extend(cell.busbw)
    return list(merged.items())


def render_html(report: dict[str, Any], agg: Aggregate) -> str:
    s = report["summary"]
    cur = s["prices"]["currency"]
    groups = report["groups"]
    cards = [
        (fmt(s["jobs"]), "jobs"),
        (fmt(s["with_record"]), "with record"),
        (fmt(s["no_record"]), "no record"),
        (fmt(s["unparsed"]), "unparsed"),
        (str(len(groups)), "partition/platform groups"),
    ]
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<title>slurm-ai report: bare metal versus VM</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Bare metal versus VM partitions</h1>",
        f"<div class=sub>slurm-ai report; decisions need at least {s['min_jobs']} jobs per partition.</div>",
        "<div class=cards>"
        + "".join(
            f"<div class=card><b>{escape(v)}</b><span>{escape(k)}</span></div>" for v, k in cards
        )
        + "</div>",
        "<h2>Decision</h2><ul class=decision>",
    ]
    for d in report["decision"]:
        few = "" if d["lower_cost"] and d["lower_p99"] else " class=few"
        parts.append(f"<li{few}><b>{escape(d['workload'])}</b>: {escape(d['verdict'])}</li>")
    parts.append("</ul><h2>All-reduce bus bandwidth per partition</h2>")
    parts.append(_busbw_chart(_groups_busbw(agg)))
    parts.append("<h2>Cost</h2><div class=charts>")
    if s["prices"]["configured"]:
        bars = []
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
            bars.append(
                (
                    f"{g['partition']}/{g['platform']}",
                    [
                        ("hardware", (g["cost"] - energy_cost) / gpu_h),
                        ("energy", energy_cost / gpu_h),
                    ],
                )
            )
        parts.append(f"<div class=chart>{_bar_chart('Cost per GPU-hour', cur, bars)}</div>")
    basis = "cost" if s["prices"]["configured"] else "kwh"
    labels: dict[str, str] = {}
    for g in groups:
        for u in g["per_unit"]:
            labels[u["unit"]] = u["label"]
    for unit, label in labels.items():
        bars = []
        for g in groups:
            for u in g["per_unit"]:
                if u["unit"] == unit and u[basis] is not None:
                    bars.append((f"{g['partition']}/{g['platform']}", [(label, u[basis])]))
        unit_name = cur if basis == "cost" else "kWh"
        parts.append(
            f"<div class=chart>{_bar_chart(f'{unit_name} {label}', unit_name, bars)}</div>"
        )
    parts.append("</div>")
    parts.append("<h2>Figures</h2><pre>" + escape(render_text(report)) + "</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
