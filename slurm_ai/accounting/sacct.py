"""Reading job allocations back from Slurm accounting with `sacct --parsable2`.

Output layout. `sacct --parsable2` prints one line per job with the fields
joined by a delimiter and no escaping at all. Two fields are free text:
JobName (set by the user) and AdminComment (set by admins and other tools;
may hold spaces, '|' and even newlines). We therefore ask for:

- AdminComment last and JobName just before it, every other field first.
  The fixed fields never hold the delimiter, so a row is split from the left
  for them; what remains is "JobName<D>AdminComment" and is split at its LAST
  delimiter. A user cannot forge an AdminComment through a job name: anything
  they put in the name stays left of the real AdminComment, which sacct
  prints after it. Only foreign admin text holding the delimiter could lose a
  piece to JobName; our own token is always last in AdminComment.
- A delimiter no one types (`DELIMITER`, ASCII unit separator).
- Newlines: a physical line that has fewer delimiters than a full row needs
  is an unfinished row (a newline inside JobName), so the next line is always
  joined to it. A finished row is followed by a new row only when the next
  line starts with a job id and holds all the fixed fields; any other line is
  appended (a newline inside AdminComment).
- Allocations only (`-X`): job steps carry no AdminComment and would double
  count node-hours. Rows whose JobIDRaw holds a '.' (a dump made without -X)
  are reported as steps and skipped by the caller.
- SLURM_TIME_FORMAT=%s makes Submit/Start/End epoch seconds; dumps with ISO
  times are read as well.

A saved dump (`--from FILE`) is the same output with its header line, e.g.

    SLURM_TIME_FORMAT=%s sacct -a -X --parsable2 --delimiter=$'\\x1f' \\
        --format=JobIDRaw,User,...,JobName,AdminComment -S 2025-01-01 > dump.txt

The header tells the column order and the delimiter, so a dump made with the
plain '|' delimiter is read too (correct as long as AdminComment holds no '|').
"""

from __future__ import annotations

import functools
import os
import re
import selectors
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from slurm_ai.errors import AccountingError, CommandError, CommandTimeout

DELIMITER = "\x1f"
# Stable across Slurm 22.05 - 26.05 (see DESIGN.md). Order matters: JobName and
# AdminComment, the free-text fields, come last.
FIELDS: tuple[str, ...] = (
    "JobIDRaw",
    "User",
    "Account",
    "Partition",
    "NodeList",
    "NNodes",
    "State",
    "Submit",
    "Start",
    "End",
    "ElapsedRaw",
    "AllocTRES",
    "JobName",
    "AdminComment",
)
FREE_TEXT = "JobName"
_ROW_START = re.compile(r"^[0-9]+[0-9_.+A-Za-z\[\]-]*$")


@dataclass(frozen=True)
class Layout:
    """Column names and delimiter of one sacct output (from its header)."""

    columns: tuple[str, ...]
    delimiter: str

    @property
    def ncols(self) -> int:
        return len(self.columns)

    def split(self, row: str) -> dict[str, str] | None:
        """One assembled row -> {column: value}; None when it has too few fields."""
        cols = self.columns
        delim = self.delimiter
        n = len(cols)
        if FREE_TEXT in cols and cols[-1] == "AdminComment":
            left = cols.index(FREE_TEXT)
            head = row.split(delim, left)
            if len(head) <= left:
                return None
            tail = head[left].rsplit(delim, n - 1 - left)
            if len(tail) != n - left:
                return None
            return dict(zip(cols, head[:left] + tail, strict=True))
        parts = row.split(delim, n - 1)
        if len(parts) != n:
            return None
        return dict(zip(cols, parts, strict=True))


DEFAULT_LAYOUT = Layout(FIELDS, DELIMITER)


def parse_header(line: str) -> Layout | None:
    """The Layout a header line describes, None when the line is not a header."""
    line = line.rstrip("\r\n")
    match = re.match(r"^JobIDRaw([^A-Za-z0-9]+)[A-Za-z]", line) or re.match(
        r"^JobID([^A-Za-z0-9]+)[A-Za-z]", line
    )
    if not match:
        return None
    delim = match.group(1)
    columns = tuple(c.strip() for c in line.split(delim))
    if not all(re.fullmatch(r"[A-Za-z]+", c) for c in columns):
        return None
    # Old sacct names JobIDRaw "JobIDRaw"; a dump with plain JobID works as well.
    columns = tuple("JobIDRaw" if c == "JobID" else c for c in columns)
    return Layout(columns, delim)


def assemble_rows(lines: Iterable[str], layout: Layout) -> Iterator[str]:
    """Physical lines -> logical rows, rejoining newlines inside free text."""
    need = layout.ncols - 1
    # The first physical line of a real row holds every fixed field, i.e. at
    # least as many delimiters as there are columns before the free text.
    fixed = layout.columns.index(FREE_TEXT) if FREE_TEXT in layout.columns else need
    delim = layout.delimiter
    pending: str | None = None
    for raw in lines:
        line = raw[:-1] if raw.endswith("\n") else raw
        if line.endswith("\r"):
            line = line[:-1]
        if pending is None:
            pending = line
            continue
        if pending.count(delim) < need:
            pending += "\n" + line  # unfinished row: newline inside JobName
            continue
        head = line.split(delim, 1)
        if len(head) == 2 and _ROW_START.match(head[0]) and line.count(delim) >= fixed:
            yield pending
            pending = line
        else:
            pending += "\n" + line  # newline inside AdminComment
    if pending is not None and pending != "":
        yield pending


def read_rows(lines: Iterable[str]) -> tuple[Layout, Iterator[str]]:
    """Header-aware reader: (layout, logical rows) from sacct output lines.

    Without a header the default layout (`FIELDS`, `DELIMITER`) is assumed.
    """
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return DEFAULT_LAYOUT, iter(())
    layout = parse_header(first)
    if layout is not None:
        return layout, assemble_rows(it, layout)

    def chained() -> Iterator[str]:
        yield first
        yield from it

    return DEFAULT_LAYOUT, assemble_rows(chained(), DEFAULT_LAYOUT)


def parse_time(value: str) -> float | None:
    """Epoch seconds from a sacct time (epoch digits or ISO local); None if unset."""
    if not value:
        return None
    if value.isdigit():
        return float(value)
    if value in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


_GPU_TRES = re.compile(r"(?:^|,)gres/gpu(?::[^=,]*)?=([0-9]+)")


# AllocTRES strings repeat (a cluster has a few job shapes): cache the parse.
@functools.lru_cache(maxsize=4096)
def tres_gpus(alloc_tres: str) -> int | None:
    """GPU count from AllocTRES ("...,gres/gpu=4" or typed "gres/gpu:h100=4")."""
    if "gres/gpu" not in alloc_tres:
        return None
    total = 0
    typed = 0
    for match in _GPU_TRES.finditer(alloc_tres):
        # Slurm lists both the untyped total and typed counts; prefer the total.
        whole = match.group(0)
        if ":" in whole:
            typed += int(match.group(1))
        else:
            total = max(total, int(match.group(1)))
    return total or typed


@dataclass(frozen=True)
class SacctQuery:
    start: str | None = None
    end: str | None = None
    partitions: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()


def sacct_argv(query: SacctQuery, sacct: str = "sacct") -> list[str]:
    """The sacct command for `query` (allocations only, all users)."""
    argv = [
        sacct,
        "-X",
        "--parsable2",
        f"--delimiter={DELIMITER}",
        "--format=" + ",".join(FIELDS),
    ]
    if query.jobs:
        argv.append("--jobs=" + ",".join(query.jobs))
    else:
        argv.append("--allusers")
        # Without -S sacct shows only today's jobs; default to everything.
        argv.append("--starttime=" + (query.start or "1970-01-01"))
        if query.end:
            argv.append("--endtime=" + query.end)
    if query.partitions:
        argv.append("--partition=" + ",".join(query.partitions))
    if query.users:
        argv.append("--user=" + ",".join(query.users))
    if query.accounts:
        argv.append("--accounts=" + ",".join(query.accounts))
    return argv


SACCT_ENV = {"SLURM_TIME_FORMAT": "%s"}


def stream_lines(
    argv: Sequence[str],
    *,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    idle_timeout: float = 120.0,
) -> Iterator[str]:
    """Yield the stdout lines of a long-running command as they arrive.

    Why not proc.run_command: it collects the whole output before returning;
    sacct over a year of jobs prints gigabytes, which must be aggregated as
    it streams (bounded memory), not held. This is the one streaming
    subprocess in slurm-ai; it keeps run_command's rules: argv list, a total
    and an idle timeout (the child is killed), errors as CommandError.
    """
    args = [str(a) for a in argv]
    env = dict(os.environ)
    if extra_env:
        env.update(extra_env)
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise CommandError(args, None, str(exc)) from exc
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "out")
    selector.register(proc.stderr, selectors.EVENT_READ, "err")
    err_chunks: list[bytes] = []
    partial = b""
    finished = False
    try:
        open_streams = 2
        while open_streams:
            wait = min(idle_timeout, deadline - time.monotonic())
            if wait <= 0:
                raise CommandTimeout(args, timeout)
            events = selector.select(wait)
            if not events:
                raise CommandTimeout(
                    args, timeout if time.monotonic() >= deadline else idle_timeout
                )
            for key, _ in events:
                chunk = os.read(key.fd, 1 << 20)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if key.data == "err":
                    if sum(len(c) for c in err_chunks) < 65536:
                        err_chunks.append(chunk)
                    continue
                data = partial + chunk
                lines = data.split(b"\n")
                partial = lines.pop()
                for line in lines:
                    yield line.decode("utf-8", "replace") + "\n"
        if partial:
            yield partial.decode("utf-8", "replace")
        remaining = max(0.1, deadline - time.monotonic())
        try:
            code = proc.wait(remaining)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(args, timeout) from exc
        finished = True
        if code != 0:
            raise CommandError(args, code, b"".join(err_chunks).decode("utf-8", "replace"))
    finally:
        selector.close()
        if not finished and proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def stream_sacct(
    query: SacctQuery, *, extra_env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> tuple[Layout, Iterator[str]]:
    """(layout, logical rows) of a live sacct run, streamed."""
    env = dict(SACCT_ENV)
    if extra_env:
        env.update(extra_env)
    try:
        return read_rows(stream_lines(sacct_argv(query), extra_env=env, timeout=timeout))
    except CommandError as exc:
        raise AccountingError(f"sacct failed: {exc}") from exc
