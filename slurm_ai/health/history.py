"""Health results in the spool: the last result (the Prolog's cache) and a
bounded per-partition history the thresholds are calibrated from.

    <spool>/health/last.json              {"boot_id", "checked_at", "health": {...}}
    <spool>/health/history/<partition>.json  {"version": 1, "entries": [...]}  node scope
    <spool>/health/history/job/<partition>.json  the same for --scope job (kept by
                                          the job's rank 0, on its first node)
    <spool>/health/xid/<node>.json        {"version": 1, "boot_id", "seq"}: how far
                                          the kernel log was read (see kmsg.py)

Every file is written atomically and read without following symlinks; a
corrupt file is quarantined and treated as absent (the check runs as if no
history existed: fail open).
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Any

from slurm_ai.errors import SpoolError
from slurm_ai.health.kmsg import Cursor, CursorState
from slurm_ai.spool import (
    atomic_write_json,
    ensure_private_dir,
    quarantine,
    read_json,
    read_json_identified,
)

HISTORY_VERSION = 1


def _safe_name(partition: str | None) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]|\.\.+", "_", partition or "_none")[:64].lstrip(".")
    return name or "_none"


class HealthStore:
    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self.dir = spool_dir / "health"

    def _read(self, path: Path) -> Any:
        try:
            return read_json(path)
        except FileNotFoundError:
            return None
        except SpoolError as exc:
            quarantine(path, self.spool_dir, str(exc), getattr(exc, "identity", None))
            return None

    def _ensure(self, path: Path) -> None:
        ensure_private_dir(self.spool_dir)
        ensure_private_dir(path)

    def last(self) -> dict[str, Any] | None:
        data = self._read(self.dir / "last.json")
        return data if isinstance(data, dict) and isinstance(data.get("health"), dict) else None

    def save_last(self, boot_id: str | None, checked_at: float, health: dict[str, Any]) -> None:
        self._ensure(self.dir)
        atomic_write_json(
            self.dir / "last.json",
            {"boot_id": boot_id, "checked_at": checked_at, "health": health},
        )

    def history_path(self, partition: str | None, scope: str = "node") -> Path:
        base = self.dir / "history"
        # "job" and "gpu" (GPU-local bench, per GPU model) are directories, never
        # partition files (those end in .json).
        return (base / scope if scope in ("job", "gpu") else base) / f"{_safe_name(partition)}.json"

    def history(self, partition: str | None, scope: str = "node") -> list[dict[str, Any]]:
        data = self._read(self.history_path(partition, scope))
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            return []
        return [e for e in data["entries"] if isinstance(e, dict)]

    def append_history(
        self, partition: str | None, entry: dict[str, Any], keep: int, scope: str = "node"
    ) -> None:
        path = self.history_path(partition, scope)
        self._ensure(self.dir)
        self._ensure(path.parent)
        entries = [*self.history(partition, scope), entry][-keep:]
        atomic_write_json(path, {"version": HISTORY_VERSION, "entries": entries})

    def xid_cursor_path(self, node: str) -> Path:
        return self.dir / "xid" / f"{_safe_name(node)}.json"

    def xid_cursor(self, node: str) -> tuple[Cursor | None, CursorState]:
        """How far this node's kernel log was read; a corrupt file is quarantined
        and reported UNKNOWN (XIDs then warn: old and new cannot be told apart)."""
        path = self.xid_cursor_path(node)
        try:
            data, identity = read_json_identified(path)
        except FileNotFoundError:
            return None, CursorState.ABSENT
        except SpoolError as exc:
            quarantine(path, self.spool_dir, str(exc), getattr(exc, "identity", None))
            return None, CursorState.UNKNOWN
        cursor = Cursor.from_json(data)
        if cursor is None:
            quarantine(path, self.spool_dir, "not an XID cursor", identity)
            return None, CursorState.UNKNOWN
        return cursor, CursorState.OK

    def save_xid_cursor(self, node: str, cursor: Cursor) -> None:
        """Store the cursor; never moves it back within one boot (two Prologs
        starting at once each write what they read: the larger one stays). The
        read-compare-write holds an exclusive lock on the cursor directory, so
        two writers cannot interleave between the read and the rename."""
        path = self.xid_cursor_path(node)
        self._ensure(self.dir)
        self._ensure(path.parent)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current, state = self.xid_cursor(node)
            if (
                state is CursorState.OK
                and current is not None
                and current.boot_id == cursor.boot_id
                and current.seq > cursor.seq
            ):
                return
            atomic_write_json(path, cursor.to_json())
        finally:
            os.close(fd)  # releases the lock


def comparable_busbw(
    entries: list[dict[str, Any]],
    backend: str,
    ranks: int,
    size_bytes: int,
    nodes: int | None = None,
) -> list[float]:
    """Past bandwidths comparable with a new run: same backend, ranks and size
    (and node count for job scope), and not from a failed run (a broken node
    must not drag the median down). One-rank runs keep algbw (their busbw is
    0 by definition)."""
    values: list[float] = []
    for entry in entries:
        if (
            entry.get("backend") == backend
            and entry.get("ranks") == ranks
            and entry.get("size_bytes") == size_bytes
            and (nodes is None or entry.get("nodes") == nodes)
            and entry.get("verdict") in ("pass", "warn")
        ):
            value = entry.get("busbw_gbps" if ranks > 1 else "algbw_gbps")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.append(float(value))
    return values
