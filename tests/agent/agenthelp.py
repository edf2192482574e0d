"""Shared helpers for the agent tests (a unique module name: conftest.py is ambiguous)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NVML_DATA = REPO / "tests" / "data" / "nvml"
H200_TRACE = NVML_DATA / "agent_h200_load.json"
XID_TRACE = NVML_DATA / "agent_8gpu_xid.json"

# A job task: hold MEM bytes, burn BUSY seconds of CPU (CPU time, not wall time: on a
# loaded machine a second of wall time may hold a fifth of that), then linger.
BUSY = (
    "import sys, time\n"
    "hold = bytearray(int(sys.argv[2]))\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end:\n"
    "    pass\n"
    "time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 0)\n"
)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, step: float = 0.1) -> bool:
    """Poll until predicate() is true (a wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
