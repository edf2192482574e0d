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
    JobFacts,
    Outcome,
)
from slurm_ai.report.prices import DEFAULT_MIN_JOBS, Prices
from slurm_ai.report.stats import Series
from slurm_ai.report.uncertainty import (
    Coefficients,
    Moments,
    PerResult,
    min_n,
    per_result,
    quantile_ci,
)

# The default of [report] min_jobs (Prices.min_jobs): jobs each side needs in the
# decision section before it names the lower cost or P99 (see prices.py).
MIN_JOBS = DEFAULT_MIN_JOBS
# Intervals on (the report's figures with their 95% intervals). bench/report_million.py
# switches it off in a run of its own to show what the intervals cost.
INTERVALS = True
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
    # Per result unit, and per job (u = 1): sums and products for the intervals of
    # cost and kWh per result (uncertainty.py rule 4).
    units: dict[str, Moments] = field(default_factory=dict)
    per_job: Moments = field(default_factory=Moments)

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
        if INTERVALS:
            self.per_job.add(1.0, energy, node_s, gpu_s)
        for name, value in f.units.items():
            sums = self.units.get(name)
            if sums is None:
                sums = self.units[name] = Moments()
            if INTERVALS:
                sums.add(value, energy, node_s, gpu_s)
            else:
                sums.add_sums(value, energy, node_s, gpu_s)

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
        self.per_job.merge(o.per_job)
        for name, sums in o.units.items():
            self.units.setdefault(name, Moments()).merge(sums)


CellKey = tuple[str, str, str, str]  # partition, platform class, workload, model
TaxKey = tuple[str, int, int, str]  # model, ranks, size_bytes, platform class


@dataclass
class Aggregate:
    rows: int = 0
    steps: int = 0
    no_record: int = 0
    foreign: int = 0
    # Records that say nodes are missing (complete: false): counted in their cells
    # with the figures of the nodes present, and counted here apart.
    incomplete: int = 0
    unparsed: Counter[str] = field(default_factory=Counter)
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    busbw_tax: dict[TaxKey, Series] = field(default_factory=dict)
    first_start: float | None = None
    last_end: float | None = None

    def add_unparsable_row(self, reason: str) -> None:
        self.rows += 1
        self.unparsed[reason] += 1

    def add(self, outcome: Outcome) -> None:
        f = self.add_counts(outcome)
        if f is not None:
            self.add_facts(f, outcome.kind)

    def add_counts(self, outcome: Outcome) -> JobFacts | None:
        """The row counts of one outcome; its facts for add_facts (None: nothing more)."""
        self.rows += 1
        kind = outcome.kind
        if kind == STEP:
            self.steps += 1
            return None
        if outcome.foreign:
            self.foreign += 1
        if kind == NONE:
            self.no_record += 1
        elif kind == BAD:
            self.unparsed[outcome.reason or "corrupt record"] += 1
        facts = outcome.facts
        if facts is not None and not facts.complete:
            self.incomplete += 1
        return facts

    def add_facts(self, f: JobFacts, kind: str) -> None:
        """One job into its cell, the busbw tax series and the time span.

        _fastrow.Tally does the same in C (report/tally.py); keep the two alike.
        """
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
        self.incomplete += o.incomplete
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
        from slurm_ai.report.compare import build_report

        return build_report(self, prices)


# ---------------------------------------------------------------- report


def rounded(value: float | None, digits: int = 6) -> float | None:
    """Round for output: stable golden files, no float noise."""
    if value is None:
        return None
    return float(f"{value:.{digits}g}") if value != 0 else 0.0


_r = rounded


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def merged(cells: list[tuple[str, Cell]]) -> Cell:
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


def _coefficients(prices: Prices, partition: str, basis: str) -> Coefficients:
    """A job's cost (or kWh) as a e + b n + c g over its J, node-s and GPU-s (Moments)."""
    if basis == "kwh":
        return (1 / 3.6e6, 0.0, 0.0)
    p = prices.for_partition(partition)
    return (
        prices.pue * p.cost_per_kwh / 3.6e6,
        p.cost_per_node_hour / 3600,
        p.cost_per_gpu_hour / 3600,
    )


def _job_moments(cell: Cell) -> Moments:
    """Per-job moments (u = 1); with intervals off, only the sums the cell keeps anyway."""
    if INTERVALS:
        return cell.per_job
    return Moments(jobs=cell.jobs, u=float(cell.jobs), e=cell.energy_j, n=cell.node_s, g=cell.gpu_s)


def result_figure(
    prices: Prices, parts: list[tuple[str, Cell]], unit: str, basis: str
) -> PerResult | None:
    """Cost or kWh (basis) per result unit ("job": per job) over parts, with its interval."""
    scale = 1.0 if unit == "job" else UNIT_SCALE[unit][0]
    moments = []
    for partition, cell in parts:
        m = _job_moments(cell) if unit == "job" else cell.units.get(unit)
        if m is not None:
            moments.append((m, _coefficients(prices, partition, basis)))
    return per_result(moments, scale, spread=INTERVALS)


def _unit_figures(prices: Prices, parts: list[tuple[str, Cell]], unit: str) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": unit, "label": UNIT_SCALE[unit][1]}
    out["jobs"] = sum(c.units[unit].jobs for _, c in parts if unit in c.units)
    out["units"] = _r(sum(c.units[unit].u for _, c in parts if unit in c.units))
    for basis in ("cost", "kwh"):
        fig = (
            result_figure(prices, parts, unit, basis)
            if basis == "kwh" or prices.configured
            else None
        )
        out.update(interval_fields(basis, fig))
    return out


def interval_fields(name: str, fig: PerResult | None) -> dict[str, float | None]:
    """{name, name_low, name_high}: a figure and its 95% interval, None where unknown."""
    if fig is None:
        return {name: None, f"{name}_low": None, f"{name}_high": None}
    return {name: _r(fig.value), f"{name}_low": _r(fig.low), f"{name}_high": _r(fig.high)}


def percentile_fields(series: Series, *named: tuple[str, float]) -> dict[str, float | None]:
    """Each named percentile with its interval; None below the n it needs (uncertainty rule 2)."""
    out: dict[str, float | None] = {}
    n = len(series)
    for name, p in named:
        shown = n >= min_n(p)
        out[name] = _r(series.percentile(p)) if shown else None
        # percentile() above sorted the values quantile_ci reads.
        ci = quantile_ci(series.values, p) if shown and INTERVALS else None
        out[f"{name}_low"] = _r(ci[0]) if ci else None
        out[f"{name}_high"] = _r(ci[1]) if ci else None
    return out


def _spread(series: Series) -> float | None:
    """P99 over P50: how far the tail sits from the typical job (only where P99 is shown)."""
    if len(series) < min_n(99):
        return None
    p50 = series.percentile(50)
    p99 = series.percentile(99)
    return _r(_div(p99 or 0.0, p50 or 0.0), 3)


def group_row(prices: Prices, partition: str, platform: str, cell: Cell) -> dict[str, Any]:
    parts = [(partition, cell)]
    kwh = cell.energy_j / 3.6e6
    cost = _cost(prices, parts)
    gpu_h = cell.gpu_s / 3600
    known = cell.measured_j + cell.estimated_j
    per_job = result_figure(prices, parts, "job", "cost") if prices.configured else None
    return {
        "partition": partition,
        "platform": platform,
        "jobs": cell.jobs,
        "workload_guessed": cell.guessed,
        "node_hours": _r(cell.node_s / 3600),
        "gpu_hours": _r(gpu_h),
        "busbw_gbps": {
            "n": len(cell.busbw),
            **percentile_fields(cell.busbw, ("median", 50), ("p5", 5), ("p95", 95)),
            "cv": _r(cell.busbw.cv(), 3),
        },
        "elapsed_s": {
            "n": len(cell.elapsed),
            **percentile_fields(cell.elapsed, ("p50", 50), ("p95", 95), ("p99", 99)),
            "cv": _r(cell.elapsed.cv(), 3),
            "p99_over_p50": _spread(cell.elapsed),
        },
        "wait_s": {
            "n": len(cell.wait),
            **percentile_fields(cell.wait, ("p50", 50), ("p95", 95)),
        },
        "energy_jobs": cell.energy_jobs,
        "kwh": _r(kwh),
        "kwh_per_gpu_hour": _r(_div(kwh, cell.energy_gpu_s / 3600)),
        "co2_kg": _r(prices.co2_kg(kwh)),
        "cost": _r(cost),
        "cost_per_gpu_hour": _r(_div(cost, gpu_h)) if cost is not None else None,
        **interval_fields("cost_per_job", per_job),
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


def by_key(agg: Aggregate, key_of: Any) -> dict[Any, list[tuple[str, Cell]]]:
    """Cells grouped by key_of(cell key), as (partition, cell) lists in key order."""
    out: dict[Any, list[tuple[str, Cell]]] = {}
    for key, cell in sorted(agg.cells.items()):
        out.setdefault(key_of(key), []).append((key[0], cell))
    return out
