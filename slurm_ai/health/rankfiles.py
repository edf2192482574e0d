"""How node-scope workers report to their launcher: files in a private directory.

Not stdout: under mpirun every rank's stdout goes through mpirun's I/O
forwarding, which does not keep one rank's line whole. Seen here (Open MPI
4.1, 2 ranks, a loaded machine, about 1 run in 150): rank 1's "READY" and its
newline arrived on either side of rank 0's result line, so the result was
glued to another rank's text and the check read as an error. A file per
report cannot be interleaved.

The launcher creates the directory (mode 0700, its own) and reads it after
the workers ended; each worker writes:
- `ready.<rank>`: start-up done (library, communicator, CUDA context);
- `result.json`: rank 0's SweepResult, written whole then renamed into place;
- `error.<pid>`: why this worker failed (the rank may not be known yet).

A launcher killed by slurmd (SIGKILL to its process group at the Prolog's or
HealthCheckProgram's timeout) cannot remove its directory; the next launcher
of the same user removes those over an hour old (`report_dir`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DIR_PREFIX = "slurm-ai-health-"
# No check runs this long (slurmd kills a Prolog or HealthCheckProgram within minutes), so
# an older directory's launcher is gone, whatever pid namespace it ran in.
STALE_AFTER_S = 3600.0
RESULT_NAME = "result.json"
MAX_ERROR_BYTES = 2000
MAX_RESULT_BYTES = 1 << 20


def report_dir() -> tempfile.TemporaryDirectory[str]:
    """A new private directory for one launch (mkdtemp: mode 0700, created exclusively,
    so no one else can plant or read reports), after removing stale ones."""
    remove_stale(tempfile.gettempdir())
    return tempfile.TemporaryDirectory(prefix=f"{DIR_PREFIX}{os.getpid()}-")


def remove_stale(parent: str, now: float | None = None) -> list[str]:
    """Remove report directories a killed launcher left in parent: only real directories
    (no symlink followed) of this user, unchanged for STALE_AFTER_S. Returns their paths."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(DIR_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        mine = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
        if mine and now - info.st_mtime > STALE_AFTER_S:
            # rmtree deletes by descriptor on Linux: a link planted inside is not followed
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def _write_whole(path: Path, text: str) -> None:
    """Write then rename: a reader sees the whole file or none."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(partial, path)


def mark_ready(directory: str, rank: int) -> None:
    _write_whole(Path(directory) / f"ready.{rank}", "")


def write_result(directory: str, payload: str) -> None:
    _write_whole(Path(directory) / RESULT_NAME, payload)


def write_error(directory: str, message: str) -> None:
    _write_whole(Path(directory) / f"error.{os.getpid()}", message[:MAX_ERROR_BYTES])


@dataclass
class RankReports:
    """What the workers left in the directory."""

    ready: int = 0
    result: str | None = None
    errors: list[str] = field(default_factory=list)


def read_reports(directory: str) -> RankReports:
    reports = RankReports()
    root = Path(directory)
    for path in sorted(root.iterdir()):
        name = path.name
        if name.startswith("ready."):
            reports.ready += 1
        elif name == RESULT_NAME:
            reports.result = _read(path, MAX_RESULT_BYTES)
        elif name.startswith("error."):
            reports.errors.append(_read(path, MAX_ERROR_BYTES).strip())
    return reports


def _read(path: Path, limit: int) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src:
        return src.read(limit).decode(errors="replace")


@dataclass(frozen=True)
class PhaseView:
    """Where one worker was (phases.py): its rank (None before it knew), phase, pid,
    and its last heartbeat (epoch seconds)."""

    rank: int | None
    phase: str
    pid: int
    beat: float


def read_phases(directory: str) -> list[PhaseView]:
    views: list[PhaseView] = []
    root = Path(directory)
    for path in sorted(root.glob("phase.*")):
        try:
            phase, rank, pid = _read(path, 200).split()
            beat_path = root / f"beat.{path.name.split('.', 1)[1]}"
            beat = beat_path.stat().st_mtime if beat_path.exists() else 0.0
            views.append(PhaseView(int(rank) if rank.isdecimal() else None, phase, int(pid), beat))
        except (OSError, ValueError):
            continue
    return sorted(views, key=lambda v: (v.rank is None, v.rank or 0))
