"""Health results in the spool: the last result (the Prolog's cache) and a
bounded per-partition history the thresholds are calibrated from.

    <spool>/health/last.json              {"boot_id", "checked_at", "health": {...}}
    <spool>/health/history/<partition>.json  {"version": 1, "entries": [...]}

Every file is written atomically and read without following symlinks; a
corrupt file is quarantined and treated as absent (the check runs as if no
history existed: fail open).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from slurm_ai.errors import SpoolError
from slurm_ai.spool import atomic_write_json, ensure_private_dir, quarantine, read_json

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
            quarantine(path, self.spool_dir, str(exc))
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

    def history_path(self, partition: str | None) -> Path:
        return self.dir / "history" / f"{_safe_name(partition)}.json"

    def history(self, partition: str | None) -> list[dict[str, Any]]:
        data = self._read(self.history_path(partition))
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            return []
        return [e for e in data["entries"] if isinstance(e, dict)]

    def append_history(self, partition: str | None, entry: dict[str, Any], keep: int) -> None:
        path = self.history_path(partition)
        self._ensure(path.parent)
        entries = [*self.history(partition), entry][-keep:]
        atomic_write_json(path, {"version": HISTORY_VERSION, "entries": entries})


def comparable_busbw(
    entries: list[dict[str, Any]], backend: str, ranks: int, size_bytes: int
) -> list[float]:
    """Past bandwidths comparable with a new run: same backend, ranks and size,
    and not from a failed run (a broken node must not drag the median down).
    One-rank runs keep algbw (their busbw is 0 by definition)."""
    values: list[float] = []
    for entry in entries:
        if (
            entry.get("backend") == backend
            and entry.get("ranks") == ranks
            and entry.get("size_bytes") == size_bytes
            and entry.get("verdict") in ("pass", "warn")
        ):
            value = entry.get("busbw_gbps" if ranks > 1 else "algbw_gbps")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.append(float(value))
    return values
