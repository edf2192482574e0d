"""Work units a job reports with `slurm-ai mark`, and reading them back as root.

Where: the Prolog creates `<mark_dir>/<jobid>/` owned by the job's user (mode
0700) inside a root-owned 0711 `mark_dir`, so only that user (and root) can
write there, nobody can list other jobs, and the user cannot move the
directory. `slurm-ai mark` (run as the user inside the job) writes
`units.json` there. With node-local storage the file lands on the node that ran
`mark` (the batch node when run from the batch script), whose Epilog reads it.

Reading as root: no symlink followed (O_NOFOLLOW), a regular file only, owned
by the job's uid, at most `mark_max_bytes`, strict JSON with known keys and
finite, non-negative numbers below 1e18; anything else is ignored and logged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from slurm_ai import jsontext, spool
from slurm_ai.errors import SpoolError

UNIT_KEYS = ("tokens", "epochs", "samples", "requests")
WORKLOADS = ("training", "fine-tuning", "inference", "data-science")
MAX_VALUE = 1e18
MARK_FILE = "units.json"


class MarkError(ValueError):
    """A mark argument or file that does not pass the strict parser."""


def parse_number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MarkError(f"{key}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or value >= MAX_VALUE:
        raise MarkError(f"{key}: {text[:40]!r} must be finite, >= 0 and < 1e18")
    return value


def parse_args(args: list[str]) -> dict[str, Any]:
    """["tokens=1.2e9", "workload=training"] -> {"tokens": 1.2e9, "workload": "training"}."""
    out: dict[str, Any] = {}
    if not args:
        raise MarkError(
            "nothing to mark: give KEY=VALUE (tokens, epochs, samples, requests, workload)"
        )
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise MarkError(f"{arg[:40]!r}: expected KEY=VALUE")
        if key in UNIT_KEYS:
            out[key] = parse_number(key, value)
        elif key == "workload":
            if value not in WORKLOADS:
                raise MarkError(f"workload must be one of {', '.join(WORKLOADS)}")
            out[key] = value
        else:
            raise MarkError(f"unknown key {key[:40]!r}: use {', '.join(UNIT_KEYS)} or workload")
    return out


def validate(data: Any) -> dict[str, Any]:
    """Strictly validate a parsed mark file; MarkError on anything unexpected."""
    if not isinstance(data, dict):
        raise MarkError("mark file is not a JSON object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in UNIT_KEYS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MarkError(f"{key}: not a number")
            if not math.isfinite(value) or value < 0 or value >= MAX_VALUE:
                raise MarkError(f"{key}: out of range")
            out[key] = float(value)
        elif key == "workload":
            if value not in WORKLOADS:
                raise MarkError("workload: not a known workload")
            out[key] = value
        else:
            raise MarkError(f"unknown key {str(key)[:40]!r}")
    return out


OPTION_WORKLOAD_NAME = "workload"  # written by the SPANK plugin (--sai-workload)


def option_workload(job_dir: Path) -> str | None:
    """The job's `--sai-workload` (the SPANK plugin writes it into the root-only job
    spool directory); None when absent or not a known workload."""
    with contextlib.suppress(OSError, SpoolError):
        text = spool.read_bytes_nofollow(job_dir / OPTION_WORKLOAD_NAME, max_bytes=64)
        value = text.decode("ascii", errors="replace").strip()
        return value if value in WORKLOADS else None
    return None


def job_mark_dir(mark_dir: Path, job_id: str) -> Path:
    return mark_dir / job_id


def prepare(mark_dir: Path, job_id: str, uid: int | None, gid: int | None = None) -> Path | None:
    """Prolog (root): create the job's mark directory owned by the job's user."""
    if uid is None:
        return None
    mark_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    info = os.lstat(mark_dir)
    if stat.S_ISLNK(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SpoolError(f"{mark_dir} is a symlink or group/world-writable: not used")
    os.chmod(mark_dir, 0o711)
    path = job_mark_dir(mark_dir, job_id)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SpoolError(f"{path} is not a plain directory")
    os.chown(path, uid, gid if gid is not None else -1, follow_symlinks=False)
    return path


def write_units(mark_dir: Path, job_id: str, units: dict[str, Any], max_bytes: int) -> Path:
    """`slurm-ai mark` (the job's user): merge with earlier marks, write atomically."""
    directory = job_mark_dir(mark_dir, job_id)
    if not directory.is_dir():
        raise MarkError(
            f"{directory} does not exist: the slurm-ai Prolog did not run for job {job_id} "
            "on this node (or [accounting] mark_dir differs)"
        )
    path = directory / MARK_FILE
    current: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, SpoolError, MarkError, ValueError):
        current = validate(jsontext.loads(spool.read_bytes_nofollow(path, max_bytes=max_bytes)))
    data = json.dumps({**current, **units}, sort_keys=True).encode()
    if len(data) > max_bytes:
        raise MarkError(f"marks exceed {max_bytes} bytes")
    spool.atomic_write_bytes(path, data, mode=0o600)
    return path


def read_units(
    mark_dir: Path, job_id: str, uid: int | None, max_bytes: int
) -> tuple[dict[str, Any], str | None]:
    """Epilog (root): the validated marks, and a problem to log (None if fine)."""
    directory = job_mark_dir(mark_dir, job_id)
    path = directory / MARK_FILE
    try:
        dir_info = os.lstat(directory)
    except FileNotFoundError:
        return {}, None
    if stat.S_ISLNK(dir_info.st_mode) or not stat.S_ISDIR(dir_info.st_mode):
        return {}, f"{directory} is not a plain directory"
    try:
        raw, owner = spool.read_owned_nofollow(path, max_bytes=max_bytes)
    except FileNotFoundError:
        return {}, None
    except (SpoolError, OSError) as exc:
        return {}, str(exc)
    if uid is not None and owner not in (uid, 0):
        return {}, f"{path} is owned by uid {owner}, not the job's uid {uid}"
    try:
        return validate(jsontext.loads(raw)), None
    except (ValueError, MarkError) as exc:
        return {}, f"{path}: {exc}"


def cleanup(mark_dir: Path, job_id: str) -> None:
    """Epilog: remove the job's mark directory (rmtree never follows symlinks)."""
    path = job_mark_dir(mark_dir, job_id)
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
