"""Rows in, Aggregate out: streaming, in chunks, on every core.

Decoding a record (hex, zlib, JSON) and counting it is about 33 us a job in
CPython, so the usual row is read and counted in C when the optional extension
is built (_fastrow.Tally, report/tally.py: the same figures, bit for bit), and
the work is spread over every core.

- A dump file (`aggregate_file`) is cut into fixed byte ranges; each worker
  process opens the file and reads its ranges itself (dumpfile.py finds the
  row boundaries; with the extension its Scanner reads and counts the usual
  row in C), so no row travels through a pipe: only each range's partial
  Aggregate comes back. The ranges do not depend on the number of
  workers and are merged in file order, so 1 and N workers give the same
  figures, bit for bit.
- A live sacct stream (`aggregate_rows`) can only be read by this process:
  it hands chunks of rows to the workers, at most `2 x workers` in flight,
  so memory stays bounded however long sacct streams.

Small inputs (one chunk) are counted in-process: no pool is started.
"""

from __future__ import annotations

import gc
import multiprocessing
import operator
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import AsyncResult
from typing import Any

from slurm_ai.accounting.sacct import FIELDS, Layout
from slurm_ai.report import aggregate, facts
from slurm_ai.report.aggregate import Aggregate
from slurm_ai.report.dumpfile import Dump, rows_in_range, scannable, untaken_rows
from slurm_ai.report.facts import OK, RowFilter, row_facts
from slurm_ai.report.tally import export_into

CHUNK_ROWS = 4000
CHUNK_BYTES = 16 << 20
# The sacct fields row_facts takes, in its argument order.
_ARGS = (
    "JobIDRaw", "Partition", "User", "Account", "NNodes", "State", "Submit", "Start",
    "End", "ElapsedRaw", "AllocTRES", "AdminComment",
)  # fmt: skip
assert set(_ARGS) <= set(FIELDS)
_Fields = tuple[str, str, str, str, str, str, str, str, str, str, str, str]  # _ARGS' values


class RowCounter:
    """Counts assembled rows into an Aggregate: the hot loop of a report."""

    def __init__(self, layout: Layout, keep: RowFilter | None = None) -> None:
        self.layout = layout
        self.keep = keep
        self.agg = Aggregate()
        cols = layout.columns
        # A missing column reads as "": it points at the "" appended to each row.
        # parts -> row_facts' sacct arguments, in one C call.
        self._fields: Callable[[list[str]], _Fields] = operator.itemgetter(
            *[cols.index(c) if c in cols else len(cols) for c in _ARGS]
        )
        self._need = len(cols) - 1
        # With the C extension, rows are counted into a Tally (report/tally.py); it is
        # made when counting starts so that tests and the bench can switch it off
        # (facts.fast_available) or change aggregate.INTERVALS first.
        self._tally: Any = None
        if facts.fast_available:
            # Tally.text splits a row itself, as str.split does, given the layout.
            columns = tuple(cols.index(c) if c in cols else -1 for c in _ARGS)
            self._tally = facts._fastrow.Tally(
                aggregate.INTERVALS, layout.delimiter, columns, len(cols)
            )

    @property
    def tally(self) -> Any:
        """The _fastrow.Tally rows are counted into (None without the extension).

        Its text() (and dumpfile.untaken_rows) counts the usual row whole; add_split
        takes the rows it declines.
        """
        return self._tally

    def add(self, row: str, count: int | None = None) -> None:
        """One row; `count` is its number of delimiters when the caller knows it."""
        tally = self._tally
        if tally is not None and tally.text(row, self.keep) is not None:
            return
        self.add_split(row, count)

    def add_split(self, row: str, count: int | None = None) -> None:
        """add() of a row that Tally.text declined (or without the extension)."""
        layout = self.layout
        tally = self._tally
        if count is None:
            count = row.count(layout.delimiter)
        if count == self._need:
            # No delimiter inside the free text: a plain split is Layout.split's answer.
            parts = row.split(layout.delimiter)
        else:
            fields = layout.split(row)
            if fields is None:
                self.agg.add_unparsable_row("bad row")
                return
            parts = list(fields.values())
        parts.append("")
        args = self._fields(parts)
        if tally is None:
            outcome = row_facts(*args, self.keep)
            if outcome is not None:
                self.agg.add(outcome)
            return
        # True: counted in C; False: the filter dropped it; None: row_facts decides,
        # and the Tally adds its facts, in row order.
        if tally.row(*args, self.keep) is not None:
            return
        outcome = row_facts(*args, self.keep)
        if outcome is not None:
            f = self.agg.add_counts(outcome)
            if f is not None:
                tally.add(f, outcome.kind == OK)

    def finish(self) -> Aggregate:
        """The Aggregate of the rows added, its series sorted (workers: see Series.sort)."""
        if self._tally is not None:
            export_into(self.agg, self._tally)
            self._tally = None
        self.agg.sort_series()  # here, in the worker, so that the merged sort is cheap
        return self.agg


def count_rows(layout: Layout, rows: Iterable[str], keep: RowFilter | None = None) -> Aggregate:
    """Aggregate of rows, in this process."""
    counter = RowCounter(layout, keep)
    for row in rows:
        counter.add(row)
    return counter.finish()


def count_range(dump: Dump, a: int, b: int, keep: RowFilter | None = None) -> Aggregate:
    """Aggregate of the rows that byte range [a, b) of a dump owns."""
    counter = RowCounter(dump.layout, keep)
    tally = counter.tally
    if tally is not None and scannable(dump):
        # The usual row is read and counted in C; the others come here, in file order.
        add_split = counter.add_split
        for row, count in untaken_rows(dump, a, b, tally, keep):
            add_split(row, count)
    else:
        add = counter.add
        for row, count in rows_in_range(dump, a, b):
            add(row, count)
    return counter.finish()


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


# Worker side: the filter travels once per worker through the pool initializer.
_worker_keep: RowFilter | None = None


def _init_worker(keep: RowFilter | None) -> None:
    global _worker_keep
    _worker_keep = keep
    # A forked worker inherits the parent's signal handlers; with a SIGTERM handler
    # that does not exit, Pool.terminate() would wait for the worker forever.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Records are parsed and dropped at once and nothing kept holds a reference
    # cycle: the cyclic collector would only re-scan the young objects of every
    # JSON parse. Reference counting still frees everything.
    gc.disable()


def _count_range_task(task: tuple[Dump, int, int]) -> Aggregate:
    dump, a, b = task
    return count_range(dump, a, b, _worker_keep)


def _count_chunk(layout: Layout, rows: list[str]) -> Aggregate:
    return count_rows(layout, rows, _worker_keep)


def aggregate_file(
    dump: Dump,
    *,
    workers: int | None = None,
    keep: RowFilter | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Aggregate:
    """Aggregate of a saved sacct dump (Dump.open); OSError when it cannot be read."""
    ranges = dump.ranges(chunk_bytes)
    workers = workers or default_workers()
    total = Aggregate()
    if len(ranges) <= 1 or workers == 1:
        for a, b in ranges:
            total.merge(count_range(dump, a, b, keep))
        return total
    # fork: workers inherit the imported modules, nothing is re-imported.
    ctx = multiprocessing.get_context("fork")
    tasks = [(dump, a, b) for a, b in ranges]
    with ctx.Pool(min(workers, len(ranges)), initializer=_init_worker, initargs=(keep,)) as pool:
        # imap keeps file order: the merge order, hence the result, is fixed.
        for part in pool.imap(_count_range_task, tasks):
            total.merge(part)
    return total


def _chunks(rows: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def aggregate_rows(
    layout: Layout,
    rows: Iterable[str],
    *,
    workers: int | None = None,
    keep: RowFilter | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Aggregate:
    """Aggregate of streamed rows; parallel when there is more than one chunk."""
    workers = workers or default_workers()
    chunks = _chunks(rows, chunk_rows)
    first = next(chunks, None)
    total = Aggregate()
    if first is None:
        return total
    second = next(chunks, None)
    if second is None or workers == 1:
        total.merge(count_rows(layout, first, keep))
        if second is not None:
            total.merge(count_rows(layout, second, keep))
            for chunk in chunks:
                total.merge(count_rows(layout, chunk, keep))
        return total

    ctx = multiprocessing.get_context("fork")
    pending: deque[AsyncResult[Aggregate]] = deque()
    with ctx.Pool(workers, initializer=_init_worker, initargs=(keep,)) as pool:
        for chunk in _prepend(first, second, chunks):
            pending.append(pool.apply_async(_count_chunk, (layout, chunk)))
            while len(pending) >= 2 * workers:
                total.merge(pending.popleft().get())
        while pending:
            total.merge(pending.popleft().get())
    return total


def _prepend(a: list[str], b: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield a
    yield b
    yield from rest
