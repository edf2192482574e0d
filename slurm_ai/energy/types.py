"""The energy source entry of a node record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEASURED, ESTIMATED, UNAVAILABLE = "measured", "estimated", "unavailable"


@dataclass
class SourceReading:
    """One line of record["nodes"][host]["energy"]["sources"]."""

    source: str  # nvml | rapl | ipmi | nvml-power | cpu-model
    domain: str  # gpu0 | package-0 | dram-0 | node | cpu
    joules: float | None
    quality: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "domain": self.domain,
            "joules": None if self.joules is None else round(self.joules, 3),
            "quality": self.quality,
        }
        if self.note:
            out["note"] = self.note[:200]
        return out
