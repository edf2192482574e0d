"""Streaming aggregation of job facts into partition x platform-class figures.

`Aggregate.add` takes one job at a time and keeps sums and exact value
series (see stats.py) per cell (partition, platform class, workload, GPU
model); aggregates merge, so chunks can be counted in worker processes and
added up. `Aggregate.finish(prices)` turns the cells into the report: a plain
JSON-able dict that the renderers (text, JSON, CSV, HTML) only format.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from slurm_ai.report.facts import (
    BAD,
    NO_RECORD,
    NONE,
    OK,
    STEP,
    UNITS,
    UNREADABLE,
    WORKLOADS,
    JobFacts,
    Outcome,
)
from slurm_ai.report.prices import DEFAULT_MIN_JOBS, Prices
from slurm_ai.report.stats import Series

# The default of [report] min_jobs (Prices.min_jobs): jobs each side needs in the
# decision section before it names the lower cost or P99 (see prices.py).
MIN_JOBS = DEFAULT_MIN_JOBS
BARE = "bare-metal"
# Classes compared against bare metal in the tax tables.
NOT_COMPARABLE = frozenset({BARE, NO_RECORD, UNREADABLE, "unknown", "mixed"})
# unit -> (divisor, label): cost per 10^6 tokens, per epoch, per 1000 requests...
UNIT_SCALE: dict[str, tuple[float, str]] = {
    "tokens": (1e6, "per 1M tokens"),
    "epochs": (1.0, "per epoch"),
    "samples": (1e3, "per 1000 samples"),
    "requests": (1e3, "per 1000 requests"),
}
# Which result a workload class is judged by, first present wins; else per job.
UNIT_PREFERENCE: dict[str, tuple[str, ...]] = {
    "training": ("tokens", "epochs", "samples"),
    "fine-tuning": ("tokens", "epochs", "samples"),
    "inference": ("requests", "tokens", "samples"),
    "data-science": ("samples",),
}


@dataclass
class UnitSums:
    units: float = 0.0
    energy_j: float = 0.0
    node_s: float = 0.0
    gpu_s: float = 0.0
    jobs: int = 0

    def merge(self, o: UnitSums) -> None:
        self.units += o.units
        self.energy_j += o.energy_j
        self.node_s += o.node_s
        self.gpu_s += o.gpu_s
        self.jobs += o.jobs


@dataclass
class Cell:
    """Sums and series of the jobs of one (partition, class, workload, model)."""

    jobs: int = 0
    guessed: int = 0
    node_s: float = 0.0
    gpu_s: float = 0.0
    energy_j: float = 0.0
    energy_jobs: int = 0
    energy_gpu_s: float = 0.0
    measured_j: float = 0.0
    estimated_j: float = 0.0
    checked: int = 0
    failed: int = 0
    fresh: int = 0  # health provenance of the job (facts.health_source)
    cached: int = 0
    unchecked: int = 0
    elapsed: Series = field(default_factory=Series)  # completed jobs only
    wait: Series = field(default_factory=Series)
    busbw: Series = field(default_factory=Series)
    units: dict[str, UnitSums] = field(default_factory=dict)

    def add(self, f: JobFacts) -> None:
        self.jobs += 1
        self.guessed += f.workload_guessed
        elapsed = f.elapsed_s
        node_s = f.nnodes * elapsed
        gpu_s = f.gpus * elapsed
        self.node_s += node_s
        self.gpu_s += gpu_s
        energy_j = f.energy_j
        energy = energy_j or 0.0
        if energy_j is not None:
            self.energy_j += energy_j
            self.energy_jobs += 1
            self.energy_gpu_s += gpu_s
        self.measured_j += f.measured_j
        self.estimated_j += f.estimated_j
        health = f.health
        if health is not None:
            self.checked += 1
            self.failed += health == "failed"
        source = f.health_source
        if source is not None:
            setattr(self, source, getattr(self, source) + 1)
        if f.completed:
            self.elapsed.add(elapsed)
        wait = f.wait_s
        if wait is not None:
            self.wait.add(wait)
        busbw = f.busbw_gbps
        if busbw is not None:
            self.busbw.add(busbw)
        for name, value in f.units.items():
            sums = self.units.get(name)
            if sums is None:
                sums = self.units[name] = UnitSums()
            sums.units += value
            sums.energy_j += energy
            sums.node_s += node_s
            sums.gpu_s += gpu_s
            sums.jobs += 1

    def merge(self, o: Cell) -> None:
        for name in (
            "jobs", "guessed", "node_s", "gpu_s", "energy_j", "energy_jobs",
            "energy_gpu_s", "measured_j", "estimated_j", "checked", "failed",
            "fresh", "cached", "unchecked",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(o, name))
        self.elapsed.extend(o.elapsed)
        self.wait.extend(o.wait)
        self.busbw.extend(o.busbw)
        for name, sums in o.units.items():
            self.units.setdefault(name, UnitSums()).merge(sums)


CellKey = tuple[str, str, str, str]  # partition, platform class, workload, model
TaxKey = tuple[str, int, int, str]  # model, ranks, size_bytes, platform class


@dataclass
class Aggregate:
    rows: int = 0
    steps: int = 0
    no_record: int = 0
    foreign: int = 0
    unparsed: Counter[str] = field(default_factory=Counter)
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    busbw_tax: dict[TaxKey, Series] = field(default_factory=dict)
    first_start: float | None = None
    last_end: float | None = None

    def add_unparsable_row(self, reason: str) -> None:
        self.rows += 1
        self.unparsed[reason] += 1

    def add(self, outcome: Outcome) -> None:
        self.rows += 1
        kind = outcome.kind
        if kind == STEP:
            self.steps += 1
            return
        if outcome.foreign:
            self.foreign += 1
        if kind == NONE:
            self.no_record += 1
        elif kind == BAD:
            self.unparsed[outcome.reason or "corrupt record"] += 1
        f = outcome.facts
        if f is None:
            return
        platform = f.platform
        key = (f.partition, platform, f.workload, f.model)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Cell()
        cell.add(f)
        busbw_key = f.busbw_key
        if kind == OK and busbw_key is not None and f.busbw_gbps is not None:
            tkey = (*busbw_key, platform)
            series = self.busbw_tax.get(tkey)
            if series is None:
                series = self.busbw_tax[tkey] = Series()
            series.add(f.busbw_gbps)
        start = f.start
        if start is not None:
            first = self.first_start
            if first is None or start < first:
                self.first_start = start
        end = f.end
        if end is not None:
            last = self.last_end
            if last is None or end > last:
                self.last_end = end

    def merge(self, o: Aggregate) -> None:
        self.rows += o.rows
        self.steps += o.steps
        self.no_record += o.no_record
        self.foreign += o.foreign
        self.unparsed.update(o.unparsed)
        for key, cell in o.cells.items():
            if key in self.cells:
                self.cells[key].merge(cell)
            else:
                self.cells[key] = cell
        for tkey, series in o.busbw_tax.items():
            if tkey in self.busbw_tax:
                self.busbw_tax[tkey].extend(series)
            else:
                self.busbw_tax[tkey] = series
        for name, pick in (("first_start", min), ("last_end", max)):
            mine, theirs = getattr(self, name), getattr(o, name)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else pick(mine, theirs))

    def sort_series(self) -> None:
        """Sort every series (workers do, before sending their part: see Series.sort)."""
        for cell in self.cells.values():
            cell.elapsed.sort()
            cell.wait.sort()
            cell.busbw.sort()
        for series in self.busbw_tax.values():
            series.sort()

    def finish(self, prices: Prices) -> dict[str, Any]:
        return build_report(self, prices)


# ---------------------------------------------------------------- report


def _r(value: float | None, digits: int = 6) -> float | None:
    """Round for output: stable golden files, no float noise."""
    if value is None:
        return None
    return float(f"{value:.{digits}g}") if value != 0 else 0.0


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _merged(cells: list[tuple[str, Cell]]) -> Cell:
    out = Cell()
    for _, cell in cells:
        out.merge(cell)
    return out


def _cost(prices: Prices, parts: list[tuple[str, Cell]]) -> float | None:
    if not prices.configured:
        return None
    return sum(
        prices.cost(p, c.energy_j / 3.6e6, c.node_s / 3600, c.gpu_s / 3600) for p, c in parts
    )


def _unit_figures(prices: Prices, parts: list[tuple[str, Cell]], unit: str) -> dict[str, Any]:
    scale, label = UNIT_SCALE[unit]
    units = jobs = 0.0
    energy_j = 0.0
    cost: float | None = 0.0 if prices.configured else None
    for partition, cell in parts:
        sums = cell.units.get(unit)
        if sums is None:
            continue
        units += sums.units
        jobs += sums.jobs
        energy_j += sums.energy_j
        if cost is not None:
            cost += prices.cost(
                partition, sums.energy_j / 3.6e6, sums.node_s / 3600, sums.gpu_s / 3600
            )
    per = units / scale
    return {
        "unit": unit,
        "label": label,
        "jobs": int(jobs),
        "units": _r(units, 6),
        "cost": _r(_div(cost, per)) if cost is not None else None,
        "kwh": _r(_div(energy_j / 3.6e6, per)),
    }


def _group_row(prices: Prices, partition: str, platform: str, cell: Cell) -> dict[str, Any]:
    parts = [(partition, cell)]
    kwh = cell.energy_j / 3.6e6
    cost = _cost(prices, parts)
    gpu_h = cell.gpu_s / 3600
    known = cell.measured_j + cell.estimated_j
    return {
        "partition": partition,
        "platform": platform,
        "jobs": cell.jobs,
        "workload_guessed": cell.guessed,
        "node_hours": _r(cell.node_s / 3600),
        "gpu_hours": _r(gpu_h),
        "busbw_gbps": {
            "n": len(cell.busbw),
            "median": _r(cell.busbw.percentile(50)),
            "p5": _r(cell.busbw.percentile(5)),
            "p25": _r(cell.busbw.percentile(25)),
            "p75": _r(cell.busbw.percentile(75)),
            "p95": _r(cell.busbw.percentile(95)),
            "cv": _r(cell.busbw.cv(), 3),
        },
        "elapsed_s": {
            "n": len(cell.elapsed),
            "p50": _r(cell.elapsed.percentile(50)),
            "p95": _r(cell.elapsed.percentile(95)),
            "p99": _r(cell.elapsed.percentile(99)),
        },
        "wait_s": {"n": len(cell.wait), "p95": _r(cell.wait.percentile(95))},
        "energy_jobs": cell.energy_jobs,
        "kwh": _r(kwh),
        "kwh_per_gpu_hour": _r(_div(kwh, cell.energy_gpu_s / 3600)),
        "co2_kg": _r(prices.co2_kg(kwh)),
        "cost": _r(cost),
        "cost_per_gpu_hour": _r(_div(cost, gpu_h)) if cost is not None else None,
        "cost_per_job": _r(_div(cost, cell.jobs)) if cost is not None else None,
        "per_unit": [_unit_figures(prices, parts, u) for u in UNITS if u in cell.units],
        "energy_measured_share": _r(_div(cell.measured_j, known), 3),
        "health": {
            "checked": cell.checked,
            "failed": cell.failed,
            "failure_rate": _r(_div(cell.failed, cell.checked), 3),
            "fresh": cell.fresh,
            "cached": cell.cached,
            "unchecked": cell.unchecked,
        },
    }


def _by(agg: Aggregate, key_of: Any) -> dict[Any, list[tuple[str, Cell]]]:
    out: dict[Any, list[tuple[str, Cell]]] = {}
    for key, cell in sorted(agg.cells.items()):
        out.setdefault(key_of(key), []).append((key[0], cell))
    return out


def _busbw_tax(agg: Aggregate) -> list[dict[str, Any]]:
    rows = []
    for (model, ranks, size, platform), series in sorted(agg.busbw_tax.items()):
        if platform in NOT_COMPARABLE:
            continue
        bare = agg.busbw_tax.get((model, ranks, size, BARE))
        if bare is None:
            continue
        vm_med, bare_med = series.percentile(50), bare.percentile(50)
        rows.append(
            {
                "model": model,
                "ranks": ranks,
                "size_bytes": size,
                "platform": platform,
                "median_gbps": _r(vm_med),
                "bare_metal_median_gbps": _r(bare_med),
                "ratio": _r(_div(vm_med or 0.0, bare_med or 0.0), 3),
                "cv": _r(series.cv(), 3),
                "bare_metal_cv": _r(bare.cv(), 3),
                "jobs": len(series),
                "bare_metal_jobs": len(bare),
            }
        )
    return rows


def _cost_tax(agg: Aggregate, prices: Prices) -> list[dict[str, Any]]:
    # (workload, model, platform) over every partition of that platform class.
    groups = _by(agg, lambda k: (k[2], k[3], k[1]))
    rows = []
    for (workload, model, platform), parts in groups.items():
        if platform in NOT_COMPARABLE or (workload, model, BARE) not in groups:
            continue
        bare_parts = groups[(workload, model, BARE)]
        for unit in UNIT_PREFERENCE.get(workload, ()):
            mine = _unit_figures(prices, parts, unit)
            bare = _unit_figures(prices, bare_parts, unit)
            if not mine["jobs"] or not bare["jobs"]:
                continue
            basis = "cost" if prices.configured else "kwh"
            rows.append(
                {
                    "workload": workload,
                    "model": model,
                    "platform": platform,
                    "unit": unit,
                    "label": mine["label"],
                    "basis": basis,
                    "per_result": mine[basis],
                    "bare_metal_per_result": bare[basis],
                    "ratio": _r(_div(mine[basis] or 0.0, bare[basis] or 0.0), 3),
                    "jobs": mine["jobs"],
                    "bare_metal_jobs": bare["jobs"],
                }
            )
            break
    return rows


def _decision(agg: Aggregate, prices: Prices) -> list[dict[str, Any]]:
    groups = _by(agg, lambda k: (k[2], k[0], k[1]))
    basis = "cost" if prices.configured else "kwh"
    out = []
    for workload in WORKLOADS:
        cands = [
            (part, plat, parts)
            for (wl, part, plat), parts in groups.items()
            if wl == workload and plat not in (NO_RECORD, UNREADABLE, "unknown")
        ]
        if not cands:
            continue
        unit = "job"
        for u in UNIT_PREFERENCE.get(workload, ()):
            if all(any(u in c.units for _, c in parts) for _, _, parts in cands):
                unit = u
                break
        entries = []
        for part, plat, parts in cands:
            merged = _merged(parts)
            if unit == "job":
                n = merged.jobs
                total = _cost(prices, parts) if basis == "cost" else merged.energy_j / 3.6e6
                per = _r(_div(total, n)) if total is not None else None
            else:
                fig = _unit_figures(prices, parts, unit)
                n, per = fig["jobs"], fig[basis]
            entries.append(
                {
                    "partition": part,
                    "platform": plat,
                    "jobs": merged.jobs,
                    "result_jobs": n,
                    "per_result": per,
                    "completed": len(merged.elapsed),
                    "p99_elapsed_s": _r(merged.elapsed.percentile(99)),
                }
            )
        label = UNIT_SCALE[unit][1] if unit != "job" else "per job"
        need = prices.min_jobs
        ok_cost = [e for e in entries if e["result_jobs"] >= need and e["per_result"] is not None]
        ok_p99 = [e for e in entries if e["completed"] >= need]
        lower_cost = min(ok_cost, key=lambda e: e["per_result"]) if len(ok_cost) >= 2 else None
        lower_p99 = min(ok_p99, key=lambda e: e["p99_elapsed_s"]) if len(ok_p99) >= 2 else None
        out.append(
            {
                "workload": workload,
                "basis": basis,
                "unit": unit,
                "label": label,
                "candidates": entries,
                "lower_cost": _name(lower_cost),
                "lower_p99": _name(lower_p99),
                "verdict": _verdict(basis, label, entries, lower_cost, lower_p99, prices),
            }
        )
    return out


def _name(entry: dict[str, Any] | None) -> str | None:
    return f"{entry['partition']}/{entry['platform']}" if entry else None


def _verdict(
    basis: str,
    label: str,
    entries: list[dict[str, Any]],
    lower_cost: dict[str, Any] | None,
    lower_p99: dict[str, Any] | None,
    prices: Prices,
) -> str:
    what = f"{prices.currency} {label}" if basis == "cost" else f"kWh {label}"
    need = prices.min_jobs
    parts = []
    if lower_cost:
        others = ", ".join(
            f"{_name(e)} {e['per_result']:g} (n={e['result_jobs']})"
            for e in entries
            if e is not lower_cost and e["result_jobs"] >= need
        )
        parts.append(
            f"lower {what}: {_name(lower_cost)} {lower_cost['per_result']:g} "
            f"(n={lower_cost['result_jobs']}) vs {others}"
        )
    else:
        counts = ", ".join(f"{_name(e)} n={e['result_jobs']}" for e in entries)
        parts.append(f"{what}: too few jobs to say (need {need} in two partitions; {counts})")
    if lower_p99:
        others = ", ".join(
            f"{_name(e)} {e['p99_elapsed_s']:g} s (n={e['completed']})"
            for e in entries
            if e is not lower_p99 and e["completed"] >= need
        )
        tied = any(
            e is not lower_p99
            and e["completed"] >= need
            and e["p99_elapsed_s"] == lower_p99["p99_elapsed_s"]
            for e in entries
        )
        # Equal P99s name no winner: the first partition listed is not "lower".
        verdict = "P99 elapsed tied" if tied else "lower P99 elapsed"
        parts.append(
            f"{verdict}: {_name(lower_p99)} {lower_p99['p99_elapsed_s']:g} s "
            f"(n={lower_p99['completed']}) vs {others}"
        )
    else:
        counts = ", ".join(f"{_name(e)} n={e['completed']}" for e in entries)
        parts.append(f"P99 elapsed: too few completed jobs to say ({counts})")
    return "; ".join(parts)


def build_report(agg: Aggregate, prices: Prices) -> dict[str, Any]:
    groups = _by(agg, lambda k: (k[0], k[1]))
    jobs = agg.rows - agg.steps
    unparsed = sum(agg.unparsed.values())
    return {
        "summary": {
            "rows": agg.rows,
            "jobs": jobs,
            "with_record": jobs - agg.no_record - unparsed,
            "no_record": agg.no_record,
            "unparsed": unparsed,
            "unparsed_reasons": dict(sorted(agg.unparsed.items())),
            "foreign_comment": agg.foreign,
            "steps_skipped": agg.steps,
            "first_start": agg.first_start,
            "last_end": agg.last_end,
            "min_jobs": prices.min_jobs,
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
            _group_row(prices, part, plat, _merged(parts)) for (part, plat), parts in groups.items()
        ],
        "tax": {"busbw": _busbw_tax(agg), "cost_per_result": _cost_tax(agg, prices)},
        "decision": _decision(agg, prices),
    }
