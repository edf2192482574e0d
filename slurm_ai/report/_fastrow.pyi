"""Types of the optional C extension _fastrow (slurm_ai/report/native/, see fastrow.h)."""

from typing import Any

INFLATER: str  # "isa-l" or "zlib": the inflate it was built with

def figures(token: str, /) -> tuple[Any, ...] | None:
    """facts._dict_figures of the token's record, or None: decline (Python decides)."""

def payload(token: str, /) -> bytes | None:
    """The token's record JSON, or None where figures() declines before reading it."""

def setup(
    job_facts: Any, outcome: Any, tres_gpus: Any, ok: str, none: str, no_record: str, /
) -> None:
    """facts.py's classes, sacct.tres_gpus and the words row() uses."""

def row(*fields_and_keep: Any) -> Any:
    """facts.row_facts of the usual row: an Outcome; False: keep dropped it; None: decline."""

class Tally:
    """A range's Aggregate cells, counted in C (report/tally.py)."""

    def __init__(
        self,
        intervals: bool,
        delimiter: str | None = None,
        columns: tuple[int, ...] | None = None,
        ncols: int = 0,
    ) -> None: ...
    def text(self, row: str, keep: Any, /) -> bool | None:
        """row() of a whole row's text (ASCII, a whole row's delimiters); None: decline."""
    def row(self, *fields_and_keep: Any) -> bool | None:
        """row()'s row counted: True; False: keep dropped it; None: decline."""
    def add(self, facts: Any, ok: bool, /) -> None:
        """A JobFacts that row_facts made, counted in row order."""
    def export(self) -> tuple[Any, ...]:
        """What was counted, as plain values (tally.export_into)."""

class Scanner:
    """dumpfile.rows_in_range's reading and assembling, on an open file (dumpfile.untaken_rows)."""

    def __init__(
        self,
        fd: int,
        delim: bytes,
        need: int,
        fixed: int,
        a: int,
        b: int,
        searching: bool,
        block: int,
    ) -> None: ...
    def next(self, tally: Tally | None, keep: Any, /) -> tuple[str, int] | None:
        """The next row `tally` does not count (every row without one); None: the end."""
