"""The report's comparisons: virtualization tax and the decision, each with its 95% interval.

Built on the cells of aggregate.py and the intervals of uncertainty.py. Every
ratio is "this side over the reference" (a VM class over bare metal), with
the interval of the ratio and the verdict it supports: a ratio whose interval
holds 1 is "no clear difference", whatever the point figure says, and then
the report says how many jobs per side it would take to tell.
"""

from __future__ import annotations

from typing import Any

from slurm_ai.report import aggregate
from slurm_ai.report.aggregate import (
    BARE,
    NOT_COMPARABLE,
    UNIT_PREFERENCE,
    UNIT_SCALE,
    Aggregate,
    Cell,
    by_key,
    group_row,
    interval_fields,
    merged,
    result_figure,
    rounded,
)
from slurm_ai.report.facts import NO_RECORD, UNREADABLE, WORKLOADS
from slurm_ai.report.prices import Prices
from slurm_ai.report.stats import Series
from slurm_ai.report.uncertainty import (
    HIGHER,
    NO_CLEAR_DIFFERENCE,
    RatioCI,
    min_n,
    per_result_ratio,
    quantile_ratio_ci,
    seed_for,
)

TOO_FEW = "too few jobs"
NO_RATIO = "no ratio"  # the reference figure is 0
# The percentiles compared in the decision section: (key, series, percentile, label).
TIMES = (
    ("elapsed_p50", "elapsed", 50, "P50 elapsed"),
    ("elapsed_p95", "elapsed", 95, "P95 elapsed"),
    ("elapsed_p99", "elapsed", 99, "P99 elapsed"),
    ("wait_p95", "wait", 95, "P95 queue wait"),
)


def ratio_fields(ci: RatioCI | None, verdict: str) -> dict[str, Any]:
    """A ratio with its interval, its verdict and the jobs per side it would take to tell."""
    if ci is None:
        return {"ratio": None, "ratio_low": None, "ratio_high": None, "verdict": verdict,
                "jobs_to_tell": None, "difference_to_tell": None}  # fmt: skip
    unclear = ci.verdict == NO_CLEAR_DIFFERENCE
    return {
        "ratio": rounded(ci.ratio, 3),
        "ratio_low": rounded(ci.low, 3),
        "ratio_high": rounded(ci.high, 3),
        "verdict": ci.verdict,
        "jobs_to_tell": ci.jobs_to_tell() if unclear else None,
        "difference_to_tell": rounded(ci.effect, 3) if unclear else None,
    }


def _quantile_ratio(a: Series, b: Series, p: float, key: str) -> tuple[RatioCI | None, str]:
    if len(a) < min_n(p) or len(b) < min_n(p):
        return None, TOO_FEW
    if not aggregate.INTERVALS:
        return None, "intervals off"
    a.sort()
    b.sort()
    ci = quantile_ratio_ci(a.values, b.values, p, seed_for(key))
    return ci, ("" if ci else NO_RATIO)


def _busbw_tax(agg: Aggregate) -> list[dict[str, Any]]:
    rows = []
    for (model, ranks, size, platform), series in sorted(agg.busbw_tax.items()):
        if platform in NOT_COMPARABLE:
            continue
        bare = agg.busbw_tax.get((model, ranks, size, BARE))
        if bare is None:
            continue
        ci, why = _quantile_ratio(series, bare, 50, f"busbw {model} {ranks} {size} {platform}")
        mine = aggregate.percentile_fields(series, ("median_gbps", 50))
        ref = aggregate.percentile_fields(bare, ("median_gbps", 50))
        rows.append(
            {
                "model": model,
                "ranks": ranks,
                "size_bytes": size,
                "platform": platform,
                **mine,
                **{f"bare_metal_{k}": v for k, v in ref.items()},
                **ratio_fields(ci, why),
                "min_n": min_n(50),
                "cv": rounded(series.cv(), 3),
                "bare_metal_cv": rounded(bare.cv(), 3),
                "jobs": len(series),
                "bare_metal_jobs": len(bare),
            }
        )
    return rows


def _cost_tax(agg: Aggregate, prices: Prices) -> list[dict[str, Any]]:
    # (workload, model, platform) over every partition of that platform class.
    groups = by_key(agg, lambda k: (k[2], k[3], k[1]))
    basis = "cost" if prices.configured else "kwh"
    rows = []
    for (workload, model, platform), parts in groups.items():
        if platform in NOT_COMPARABLE or (workload, model, BARE) not in groups:
            continue
        bare_parts = groups[(workload, model, BARE)]
        for unit in UNIT_PREFERENCE.get(workload, ()):
            mine = result_figure(prices, parts, unit, basis)
            bare = result_figure(prices, bare_parts, unit, basis)
            if mine is None or bare is None:
                continue
            ci = per_result_ratio(mine, bare)
            rows.append(
                {
                    "workload": workload,
                    "model": model,
                    "platform": platform,
                    "unit": unit,
                    "label": UNIT_SCALE[unit][1],
                    "basis": basis,
                    **interval_fields("per_result", mine),
                    **interval_fields("bare_metal_per_result", bare),
                    **ratio_fields(ci, TOO_FEW),
                    "ratio": rounded(mine.value / bare.value, 3) if bare.value else None,
                    "jobs": mine.jobs,
                    "bare_metal_jobs": bare.jobs,
                }
            )
            break
    return rows


def _name(entry: dict[str, Any]) -> str:
    return f"{entry['partition']}/{entry['platform']}"


def _kind(platform: str) -> str:
    """How a verdict names a class: "VM" for any vm-* class, "bare metal", else the class."""
    if platform == BARE:
        return "bare metal"
    return "VM" if platform.startswith("vm") else platform


def _unit_of(workload: str, cands: list[tuple[str, str, list[tuple[str, Cell]]]]) -> str:
    """The first result unit every candidate reports for this workload, else "job"."""
    for u in UNIT_PREFERENCE.get(workload, ()):
        if all(any(u in c.units for _, c in parts) for _, _, parts in cands):
            return u
    return "job"


def _decision(agg: Aggregate, prices: Prices) -> list[dict[str, Any]]:
    groups = by_key(agg, lambda k: (k[2], k[0], k[1]))
    basis = "cost" if prices.configured else "kwh"
    what = prices.currency if basis == "cost" else "kWh"
    out = []
    for workload in WORKLOADS:
        cands = [
            (part, plat, parts)
            for (wl, part, plat), parts in groups.items()
            if wl == workload and plat not in (NO_RECORD, UNREADABLE, "unknown")
        ]
        if not cands:
            continue
        unit = _unit_of(workload, cands)
        label = UNIT_SCALE[unit][1] if unit != "job" else "per job"
        entries, cells = [], []
        for part, plat, parts in cands:
            cell = merged(parts)
            fig = result_figure(prices, parts, unit, basis)
            p99 = aggregate.percentile_fields(cell.elapsed, ("p99_elapsed_s", 99))
            entries.append(
                {
                    "partition": part,
                    "platform": plat,
                    "jobs": cell.jobs,
                    "result_jobs": fig.jobs if fig else 0,
                    **interval_fields("per_result", fig),
                    "completed": len(cell.elapsed),
                    **p99,
                }
            )
            cells.append((cell, fig))
        # The reference: bare metal with the most results; without bare metal, the busiest.
        ref_i = max(
            range(len(entries)),
            key=lambda i: (entries[i]["platform"] == BARE, entries[i]["result_jobs"], -i),
        )
        ref, (ref_cell, ref_fig) = entries[ref_i], cells[ref_i]
        comparisons = []
        for i, entry in enumerate(entries):
            if i == ref_i:
                continue
            cell, fig = cells[i]
            enough = min(entry["result_jobs"], ref["result_jobs"]) >= prices.min_jobs
            cost_ci = per_result_ratio(fig, ref_fig) if fig and ref_fig and enough else None
            kind = _kind(entry["platform"])
            cost = {
                **ratio_fields(cost_ci, TOO_FEW),
                "n": entry["result_jobs"],
                "reference_n": ref["result_jobs"],
            }
            if cost_ci is None and enough and fig and ref_fig and ref_fig.value:
                # Enough jobs for min_jobs, but a side of one job has no interval: the
                # data cannot tell the two apart, which is what the verdict says.
                cost["ratio"] = rounded(fig.value / ref_fig.value, 3)
                cost["verdict"] = NO_CLEAR_DIFFERENCE
            cost["says"] = _cost_words(cost, kind, basis, prices.min_jobs)
            comp: dict[str, Any] = {
                "partition": entry["partition"],
                "platform": entry["platform"],
                "reference": _name(ref),
                "cost": cost,
            }
            key = f"{workload} {_name(entry)} {_name(ref)}"
            for name, attr, p, _ in TIMES:
                a, b = getattr(cell, attr), getattr(ref_cell, attr)
                ci, why = _quantile_ratio(a, b, p, f"{key} {name}")
                comp[name] = {**ratio_fields(ci, why), "n": len(a), "reference_n": len(b)}
                comp[name]["says"] = _time_words(comp[name], kind, p)
            comparisons.append(comp)
        out.append(
            {
                "workload": workload,
                "basis": basis,
                "unit": unit,
                "label": label,
                "reference": _name(ref),
                "candidates": entries,
                "comparisons": comparisons,
                "what": f"{what} {label}",
                "verdict": _verdict(f"{what} {label}", ref, comparisons),
            }
        )
    return out


def _interval(m: dict[str, Any]) -> str:
    return f"x{m['ratio']:.3g} ({m['ratio_low']:.3g}-{m['ratio_high']:.3g})"


def _cost_words(m: dict[str, Any], kind: str, basis: str, need: int) -> str:
    counts = f"n={m['n']}/{m['reference_n']}"
    verdict = m["verdict"]
    if verdict == TOO_FEW or m["ratio"] is None:
        return f"too few jobs to say (need {need} a side; {counts})"
    if verdict == NO_CLEAR_DIFFERENCE and m["ratio_low"] is None:
        return f"no clear difference, x{m['ratio']:.3g} with no interval from one job, {counts}"
    if verdict == NO_CLEAR_DIFFERENCE:
        tell = m["jobs_to_tell"]
        more = ""
        if tell:
            more = (
                f"; about {tell} jobs a side would tell a {m['difference_to_tell']:.0%} difference"
            )
        return f"no clear difference, {_interval(m)}, {counts}{more}"
    more = "more" if verdict == HIGHER else "less"
    does = f"costs {more}" if basis == "cost" else f"uses {more} energy"
    return f"{kind} {does}, {_interval(m)}, {counts}"


def _time_words(m: dict[str, Any], kind: str, p: float) -> str:
    counts = f"n={m['n']}/{m['reference_n']}"
    verdict = m["verdict"]
    if verdict == TOO_FEW:
        return f"n too small ({counts}, needs {min_n(p)} a side)"
    if m["ratio"] is None:
        return f"{verdict} ({counts})"
    if verdict == NO_CLEAR_DIFFERENCE:
        return f"no clear difference, {_interval(m)}, {counts}"
    return f"{kind} {'longer' if verdict == HIGHER else 'shorter'}, {_interval(m)}, {counts}"


def _verdict(what: str, ref: dict[str, Any], comparisons: list[dict[str, Any]]) -> str:
    """One line per workload: each side against the reference, cost per result and P99."""
    if not comparisons:
        return f"only {_name(ref)} ran these jobs: nothing to compare"
    return " | ".join(
        f"{_name(c)} vs {_name(ref)}: {what}: {c['cost']['says']}; "
        f"P99 elapsed: {c['elapsed_p99']['says']}"
        for c in comparisons
    )


def build_report(agg: Aggregate, prices: Prices) -> dict[str, Any]:
    groups = by_key(agg, lambda k: (k[0], k[1]))
    jobs = agg.rows - agg.steps
    unparsed = sum(agg.unparsed.values())
    return {
        "summary": {
            "rows": agg.rows,
            "jobs": jobs,
            "with_record": jobs - agg.no_record - unparsed,
            "no_record": agg.no_record,
            "incomplete": agg.incomplete,
            "unparsed": unparsed,
            "unparsed_reasons": dict(sorted(agg.unparsed.items())),
            "foreign_comment": agg.foreign,
            "steps_skipped": agg.steps,
            "first_start": agg.first_start,
            "last_end": agg.last_end,
            "min_jobs": prices.min_jobs,
            "intervals": {
                "confidence": 0.95 if aggregate.INTERVALS else None,
                "min_n": {"p5": min_n(5), "p50": min_n(50), "p95": min_n(95), "p99": min_n(99)},
            },
            "prices": {
                "configured": prices.configured,
                "currency": prices.currency,
                "cost_per_kwh": prices.cost_per_kwh,
                "pue": prices.pue,
                "co2_kg_per_kwh": prices.co2_kg_per_kwh,
                "partitions": {name: vars(p) for name, p in sorted(prices.partitions.items())},
            },
        },
        "groups": [
            group_row(prices, part, plat, merged(parts)) for (part, plat), parts in groups.items()
        ],
        "tax": {"busbw": _busbw_tax(agg), "cost_per_result": _cost_tax(agg, prices)},
        "decision": _decision(agg, prices),
    }
