"""RAPL energy counters through /sys/class/powercap (Intel and AMD).

Linux exposes RAPL as powercap zones `intel-rapl:<pkg>` (name "package-N")
with sub-zones `intel-rapl:<pkg>:<n>` (names "core", "uncore", "dram"). AMD
Zen CPUs use the same driver and layout (package zones only, no DRAM). The
counters (`energy_uj`) wrap at `max_energy_range_uj`; `intel-rapl-mmio` zones
mirror the MSR ones and "psys" covers the whole platform, so both are skipped
to avoid counting energy twice; "core"/"uncore" are inside the package.
"""

from __future__ import annotations

from dataclasses import dataclass

from slurm_ai.sysfs import Sysfs

POWERCAP = "/sys/class/powercap"
# Used when a zone names no power limit: a generous package power, so the
# wrap window computed from it is a safe lower bound.
FALLBACK_MAX_POWER_W = {"package": 500.0, "dram": 150.0}


@dataclass(frozen=True)
class RaplDomain:
    name: str  # package-0, dram-0
    zone: str  # intel-rapl:0, intel-rapl:0:2
    max_energy_uj: int
    max_power_w: float

    @property
    def wrap_window_s(self) -> float:
        """Shortest time in which the counter can wrap more than once."""
        return self.max_energy_uj / 1e6 / self.max_power_w


def _max_power_w(sysfs: Sysfs, zone_path: str, kind: str) -> float:
    for leaf in ("constraint_0_max_power_uw", "constraint_0_power_limit_uw"):
        value = sysfs.read_int(f"{zone_path}/{leaf}")
        if value and value > 0:
            # A limit can be exceeded briefly; x1.5 keeps the window conservative.
            return value / 1e6 * (1.0 if leaf.endswith("max_power_uw") else 1.5)
    return FALLBACK_MAX_POWER_W[kind]


def discover(sysfs: Sysfs) -> list[RaplDomain]:
    """Package and DRAM domains of this machine (empty without RAPL)."""
    domains: list[RaplDomain] = []
    for zone in sysfs.listdir(POWERCAP):
        if "mmio" in zone or not zone.count(":") or "rapl" not in zone:
            continue
        path = f"{POWERCAP}/{zone}"
        name = sysfs.read_text(f"{path}/name") or ""
        parts = zone.split(":")
        if name.startswith("package-") and len(parts) == 2:
            label, kind = name, "package"
        elif name == "dram" and len(parts) == 3:
            label, kind = f"dram-{parts[1]}", "dram"
        else:
            continue  # core, uncore, psys
        max_uj = sysfs.read_int(f"{path}/max_energy_range_uj")
        if not max_uj or max_uj <= 0:
            continue
        domains.append(RaplDomain(label, zone, max_uj, _max_power_w(sysfs, path, kind)))
    return sorted(domains, key=lambda d: (d.name.split("-")[0] != "package", d.name))


def read_counters(sysfs: Sysfs, domains: list[RaplDomain]) -> dict[str, int]:
    """energy_uj per domain; unreadable ones (non-root since CVE-2020-8694) left out."""
    out: dict[str, int] = {}
    for dom in domains:
        value = sysfs.read_int(f"{POWERCAP}/{dom.zone}/energy_uj")
        if value is not None and value >= 0:
            out[dom.name] = value
    return out


def counter_delta(start: int, end: int, max_range: int) -> int:
    """Energy between two readings of a counter that wraps at `max_range`.

    One wrap is detected (end < start); more cannot be seen from two readings,
    which is why callers compare the elapsed time with the wrap window.
    """
    if end >= start:
        return end - start
    return (max_range - start) + end


class RaplReader:
    """Reads every package/DRAM counter cheaply, for the agent's ticks.

    Domains are discovered once; each read is one open+read of a short file
    per domain (a few microseconds), paths resolved through Sysfs once.
    """

    def __init__(self, sysfs: Sysfs) -> None:
        self.domains = discover(sysfs)
        self._paths = [
            (dom.name, str(sysfs.path(f"{POWERCAP}/{dom.zone}/energy_uj"))) for dom in self.domains
        ]

    def read(self) -> dict[str, int]:
        """energy_uj per readable domain (unreadable ones, e.g. not root, left out)."""
        out: dict[str, int] = {}
        for name, path in self._paths:
            try:
                with open(path, "rb") as handle:
                    value = int(handle.read(32))
            except (OSError, ValueError):
                continue
            if value >= 0:
                out[name] = value
        return out
