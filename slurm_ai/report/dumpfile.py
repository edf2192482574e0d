"""A saved sacct dump read in byte ranges, so that each worker reads its own part.

Rows are assembled with exactly the rules of `sacct.assemble_rows` (a row may
span lines: newlines inside JobName or AdminComment). A worker that starts in
the middle of the file must find a line where a row certainly starts without
knowing what came before. One local rule gives that:

    line L starts a row if the line P just before it holds at least as many
    delimiters as a whole row (ncols - 1) and L looks like a row start
    (a job id, then at least the fixed fields' delimiters).

Why it is certain: the sequential assembler joins a line to the current row
only while that row has fewer than ncols - 1 delimiters, or when the line
does not look like a row start. P belongs to the current row, so the row
already has enough delimiters, and L looks like a row start: the sequential
reader starts a row at L too.

The range [a, b) holds the rows from B(a) up to B(b), where B(x) is the first
line L satisfying the rule whose P starts at byte x or later (B of the first
data byte is that byte, B past the end is the end). Consecutive ranges thus
share their boundary and every row is read exactly once, whichever worker
reads which range, and the ranges do not depend on the number of workers.

Lines are split at b"\\n" only (as sacct writes them and as the live stream
is split); a trailing "\\r" is dropped, like `assemble_rows` does.

With the optional C extension the reading and the per-line loop run in C
(_fastrow.Scanner: the same lines, rule and rows; tests/report/test_dumpfile.py
runs every cut through both), and `untaken_rows` lets the report's Tally count
the usual row there without a Python object for it; `fast_available = False`
keeps it all in Python.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from slurm_ai.accounting.sacct import DEFAULT_LAYOUT, FREE_TEXT, Layout, parse_header

try:
    from slurm_ai.report import _fastrow  # optional C extension (setup.py)
except ImportError:
    _fastrow = None  # type: ignore[assignment]

BLOCK_BYTES = 4 << 20
HEADER_MAX = 64 << 10
# The per-line loop of rows_in_range in C when the optional extension is built (tests
# and the bench switch it off); a delimiter the job id class holds stays in Python.
fast_available = _fastrow is not None
_ID_BYTE = re.compile(rb"[0-9_.+A-Za-z\[\]\n-]")


@dataclass(frozen=True)
class Dump:
    """A dump file: its layout (from the header), where data starts, its size."""

    path: str
    layout: Layout
    data_start: int
    size: int

    @classmethod
    def open(cls, path: str) -> Dump:
        """Read the header; OSError when the file cannot be read."""
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            first = handle.readline(HEADER_MAX)
        layout = parse_header(first.decode("utf-8", "replace")) if first else None
        if layout is None:
            return cls(path, DEFAULT_LAYOUT, 0, size)
        return cls(path, layout, len(first), size)

    def ranges(self, chunk_bytes: int) -> list[tuple[int, int]]:
        """Fixed byte ranges covering the data (independent of the worker count)."""
        chunk_bytes = max(1, chunk_bytes)
        starts = range(self.data_start, self.size, chunk_bytes)
        return [(a, min(a + chunk_bytes, self.size)) for a in starts]


class _Rules:
    """The two tests the assembler needs, on raw bytes."""

    def __init__(self, layout: Layout) -> None:
        delim = layout.delimiter.encode("utf-8")
        self.delim = delim
        self.need = layout.ncols - 1
        fixed = layout.columns.index(FREE_TEXT) if FREE_TEXT in layout.columns else self.need
        self.fixed = fixed
        # Same test as sacct._ROW_START on the first field, plus its delimiter.
        self.start_match = re.compile(rb"[0-9]+[0-9_.+A-Za-z\[\]-]*" + re.escape(delim)).match


def _blocks(path: str, start: int, block: int) -> Iterator[tuple[int, list[bytes]]]:
    """(offset of the first, lines) in blocks: the lines without '\\n' (a trailing
    '\\r' is still there) from the first line start >= start."""
    with open(path, "rb") as handle:
        pos = start
        if start > 0:
            # Skip a line begun before `start`, unless `start` is a line start.
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                rest = handle.readline()
                pos = start + len(rest)
        handle.seek(pos)
        carry = b""
        while True:
            data = handle.read(block)
            if not data:
                break
            if carry:
                data = carry + data
            lines = data.split(b"\n")
            carry = lines.pop()
            yield pos, lines
            pos += len(data) - len(carry)
        if carry:
            yield pos, [carry]


def rows_in_range(
    dump: Dump, a: int, b: int, block: int = BLOCK_BYTES
) -> Iterator[tuple[str, int]]:
    """(row, delimiter count) of the rows that range [a, b) owns (see module doc)."""
    if scannable(dump):
        return untaken_rows(dump, a, b, None, None, block)
    return _rows_in_range_py(dump, a, b, block, _Rules(dump.layout))


def scannable(dump: Dump) -> bool:
    """Does the C Scanner read this dump? Built, and a one-byte delimiter that is no id byte."""
    delim = dump.layout.delimiter.encode("utf-8")
    return fast_available and len(delim) == 1 and not _ID_BYTE.match(delim)


def untaken_rows(
    dump: Dump, a: int, b: int, tally: Any, keep: Any, block: int = BLOCK_BYTES
) -> Iterator[tuple[str, int]]:
    """rows_in_range's rows in C (`scannable` dumps only), less those `tally` counts.

    tally: a _fastrow.Tally of this dump's layout, or None for every row; keep: the
    report's row filter, which the Tally applies.
    """
    rules = _Rules(dump.layout)
    with open(dump.path, "rb") as handle:
        scanner = _fastrow.Scanner(
            handle.fileno(), rules.delim, rules.need, rules.fixed, a, b, a > dump.data_start, block
        )
        while (row := scanner.next(tally, keep)) is not None:
            yield row


def _rows_in_range_py(
    dump: Dump, a: int, b: int, block: int, rules: _Rules
) -> Iterator[tuple[str, int]]:
    delim, need, fixed, start_match = rules.delim, rules.need, rules.fixed, rules.start_match
    pending: list[bytes] = []
    pending_count = 0
    prev_pos = -1
    prev_count = -1
    searching = a > dump.data_start
    # One generator, the rule inlined, lines cut from blocks: this loop runs once per line of the file.
    for pos, lines in _blocks(dump.path, a, block):
        for line in lines:
            n = len(line) + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            count = line.count(delim)
            is_start = count >= fixed and start_match(line) is not None
            if searching:
                # Looking for B(a): P must start at or after a.
                if is_start and prev_pos >= a and prev_count >= need:
                    if prev_pos >= b:
                        return  # B(a) is B(b): this range owns no row
                    searching = False
                    pending, pending_count = [line], count
            elif not pending:
                pending, pending_count = [line], count  # the first row of the data
            elif is_start and pending_count >= need:
                if len(pending) == 1:
                    yield pending[0].decode("utf-8", "replace"), pending_count
                else:
                    yield b"\n".join(pending).decode("utf-8", "replace"), pending_count
                if prev_pos >= b and prev_count >= need:
                    return  # B(b): the next range's first row
                pending, pending_count = [line], count
            else:
                pending.append(line)  # newline inside JobName or AdminComment
                pending_count += count
            prev_pos, prev_count = pos, count
            pos += n
    if pending and not searching and pending != [b""]:
        yield b"\n".join(pending).decode("utf-8", "replace"), pending_count
