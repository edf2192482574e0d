"""Rows counted in C (`_fastrow.Tally`) handed over as an Aggregate's cells.

With the C extension, a worker counts its rows into a Tally: for the usual row
(`Tally.row`) the facts and the cell sums never become Python objects; a row it
declines is decided by facts.row_facts as without the extension, and its facts
go to the same Tally (`Tally.add`), so every cell gets its jobs in row order.
The Tally does Aggregate.add_facts, Cell.add, Moments.add and Series.add with
the same float additions in the same order (the C is built with
-ffp-contract=off: no fused multiply-add), so the sums are the same bits as the
Python path's. At the end of the range `export_into` turns it into Cells.
"""

from __future__ import annotations

from typing import Any

from slurm_ai.report.aggregate import Aggregate, Cell
from slurm_ai.report.stats import Series
from slurm_ai.report.uncertainty import Moments


def _series(raw: bytes) -> Series:
    series = Series()
    series.__setstate__(raw)  # doubles in native order, as array("d").tobytes() gives
    return series


def export_into(agg: Aggregate, tally: Any) -> None:
    """Add what `tally` counted to agg, which holds no cell yet (its rows' counts only)."""
    rows, no_record, first_start, last_end, cells, tax = tally.export()
    agg.rows += rows
    agg.no_record += no_record
    assert not agg.cells and not agg.busbw_tax, "a Tally's aggregate gets its cells from it"
    for key, ints, floats, elapsed, wait, busbw, per_job, units in cells:
        jobs, guessed, energy_jobs, checked, failed, fresh, cached, unchecked = ints
        node_s, gpu_s, energy_j, energy_gpu_s, measured_j, estimated_j = floats
        agg.cells[key] = Cell(
            jobs=jobs, guessed=guessed, node_s=node_s, gpu_s=gpu_s, energy_j=energy_j,
            energy_jobs=energy_jobs, energy_gpu_s=energy_gpu_s, measured_j=measured_j,
            estimated_j=estimated_j, checked=checked, failed=failed, fresh=fresh,
            cached=cached, unchecked=unchecked, elapsed=_series(elapsed), wait=_series(wait),
            busbw=_series(busbw), units={name: Moments(*m) for name, m in units},
            per_job=Moments(*per_job) if per_job is not None else Moments(),
        )  # fmt: skip
    for key, raw in tax:
        agg.busbw_tax[key] = _series(raw)
    for name, pick, value in (("first_start", min, first_start), ("last_end", max, last_end)):
        mine = getattr(agg, name)
        if value is not None:
            setattr(agg, name, value if mine is None else pick(mine, value))
