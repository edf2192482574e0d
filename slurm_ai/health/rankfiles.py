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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

RESULT_NAME = "result.json"
MAX_ERROR_BYTES = 2000
MAX_RESULT_BYTES = 1 << 20


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
