"""A rank tells its watcher where it is: phase changes and a heartbeat.

A rank cannot time itself out when it is stopped (SIGSTOP), spinning in C with
the GIL held, or stuck in a driver: its own watchdog thread never runs. So the
rank only *reports*, and a process that is not stuck decides: the launcher for
node-scope workers (files in its report directory), the rank's own supervisor
for `--scope job` under srun (a pipe, stepwatch.py).

Phases, in order: startup (backend import, communicator), warmup, measure
(per size, the first one counts for the name), report (the last collectives).
A heartbeat thread beats every BEAT_S; a watcher that sees no beat for
SILENT_S calls the rank not responding (a rank blocked in a collective still
beats: MPI and gloo waits release the GIL).

Test-only fault injection (SLURM_AI_HEALTH_FAULT, never in production):
"stop:R@PHASE" makes rank R SIGSTOP itself on entering PHASE, "kill:R@PHASE"
SIGKILL itself, "stopall:R@PHASE" stop its supervisor (the srun task) first,
then itself: the faults an admin injects with kill -STOP / kill -9.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

PHASES = ("startup", "warmup", "measure", "report")
PHASE_NAMES = {"startup": "start-up", "warmup": "warm-up", "measure": "measure", "report": "report"}
BEAT_S = 0.2
SILENT_S = 1.5  # no beat for this long: not responding (a stopped or wedged process)
FAULT_KINDS = ("stop", "kill", "stopall")


def phase_fault(fault: str | None, rank: int | None, phase: str) -> str | None:
    """The fault to inject now ("stop" | "kill" | "stopall") or None."""
    if not fault or "@" not in fault or rank is None:
        return None
    head, _, at = fault.partition("@")
    kind, _, target = head.partition(":")
    if kind in FAULT_KINDS and target.strip() == str(rank) and at.strip() == phase:
        return kind
    return None


def inject(kind: str | None) -> None:
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "stopall":
        with contextlib.suppress(OSError):
            os.kill(os.getppid(), signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)
    elif kind == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)


class PhaseReporter:
    """The rank side: `phase(name)` on each change; a daemon thread beats.

    `write(line)` is the sink (a pipe to the supervisor, or files for the
    launcher); errors of the sink never stop the check."""

    def __init__(
        self, write: Callable[[str], None], rank: int | None, fault: str | None = None
    ) -> None:
        self._write = write
        self.rank = rank
        self._fault = fault
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="slurm-ai-beat", daemon=True)
        self._thread.start()

    def _send(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._write(line)

    def _beat(self) -> None:
        while True:
            self._send("beat")
            time.sleep(BEAT_S)

    def phase(self, name: str, rank: int | None = None) -> None:
        if rank is not None:
            self.rank = rank
        first = name not in self._seen
        self._seen.add(name)
        self._send(f"phase {name} {self.rank if self.rank is not None else '-'}")
        if first:
            inject(phase_fault(self._fault, self.rank, name))


def pipe_writer(fd: int) -> Callable[[str], None]:
    def write(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    return write


def file_writer(directory: str, key: str) -> Callable[[str], None]:
    """Node scope: `phase.<key>` holds "PHASE RANK PID"; `beat.<key>`'s mtime is the beat."""
    root = Path(directory)
    beat = root / f"beat.{key}"
    phase = root / f"phase.{key}"

    def write(line: str) -> None:
        if line == "beat":
            if not beat.exists():
                beat.touch(mode=0o600)
            os.utime(beat)
            return
        _, name, rank = line.split(" ", 2)
        tmp = root / f".phase.{key}"
        tmp.write_text(f"{name} {rank} {os.getpid()}")
        os.replace(tmp, phase)

    return write


def proc_state(pid: int) -> str:
    """'stopped', 'gone', 'zombie' or 'running' from /proc (no psutil: light)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
    if state in ("T", "t"):
        return "stopped"
    if state in ("Z", "X"):
        return "zombie"
    return "running"


def describe(rank: int | None, node: str, why: str, phase: str | None) -> str:
    who = f"rank {rank}" if rank is not None else "a rank"
    where = f" in {PHASE_NAMES.get(phase or '', phase)}" if phase else " before start-up"
    return f"{who} on {node} {why}{where}"
