"""Node power from IPMI DCMI (`ipmitool dcmi power reading`).

A reading is instantaneous power, not a counter: two readings (Prolog and
Epilog) give an estimate, never a measurement.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from slurm_ai.errors import CommandError, ProbeError
from slurm_ai.proc import run_command

_READING = re.compile(r"Instantaneous power reading:\s*([0-9]+(?:\.[0-9]+)?)\s*Watts", re.I)


def parse_dcmi(text: str) -> float:
    """Watts from `ipmitool dcmi power reading` output; ProbeError if absent."""
    match = _READING.search(text)
    if not match:
        raise ProbeError("no 'Instantaneous power reading' in ipmitool output")
    watts = float(match.group(1))
    if watts <= 0 or watts > 100_000:
        raise ProbeError(f"implausible DCMI power reading {watts} W")
    return watts


def available(mode: str) -> str | None:
    """Path of ipmitool when IPMI should be used ("auto": only with /dev/ipmi*)."""
    if mode == "off":
        return None
    tool = shutil.which("ipmitool", path="/usr/bin:/usr/sbin:/bin:/sbin")
    if tool is None:
        return None
    if mode == "auto" and not any(Path(f"/dev/ipmi{i}").exists() for i in range(2)):
        return None
    return tool


def read_power_w(tool: str, timeout_s: float) -> float:
    try:
        result = run_command([tool, "dcmi", "power", "reading"], timeout=timeout_s)
    except CommandError as exc:
        raise ProbeError(f"ipmitool: {exc}") from exc
    return parse_dcmi(result.stdout)
