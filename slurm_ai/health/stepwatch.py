"""--scope job under srun: who times out whom.

A rank cannot end itself when it is stopped, wedged in a driver or spinning
with the GIL held, and srun waits for every task. So each srun task is a small
*supervisor* (this module: no torch, no MPI) that runs the real rank as its
child (the same command line, marked by WATCH_FD_ENV) and:

- reads the child's phase and heartbeat from a pipe (phases.py);
- reports them every ROLLCALL_S to rank 0's supervisor, the *coordinator*, by
  UDP on the first node (port `watch_port`), which acknowledges each report;
- at the deadline kills its child and exits 4 (timeout). The coordinator
  prints the one verdict, naming the ranks and nodes that did not answer
  (no report for SILENT_S), were stopped, stopped beating, died, or fell
  behind the others' phase; another rank prints it only when the coordinator
  itself stopped answering (the lowest such rank first: a later one waits
  STAGGER_S per rank, and `srun -K` ends the step at the first exit).
- when its child dies (killed, crashed), the verdict is `fail` naming it,
  at once rather than at the deadline. The other ranks' MPI must not abort the
  step meanwhile (RANK_ENV).

The step must end even when a supervisor itself is stopped: `srun -K`
(--kill-on-bad-exit) kills every task once one exits non-zero, which the
timeout (4) and fail (2) exits are; without -K the coordinator cancels the
step (`scancel -s KILL JOB.STEP`) a moment after its verdict when some rank
did not answer, so srun cannot wait forever (srun then exits 137).

Worst case: budget + GRACE_S (the coordinator's last roll call) + srun's
kill of the step, about 0.1 s on the local cluster (bench/healthcheck_faults.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slurm_ai.health.phases import PHASE_NAMES, PHASES, SILENT_S, describe, proc_state
from slurm_ai.health.rendezvous import PORT_SPAN, port_for_job

WATCH_FD_ENV = "SLURM_AI_HEALTH_WATCH_FD"
WATCH_OFF_ENV = "SLURM_AI_HEALTH_NO_WATCH"  # "1": run the rank in this process (tests)
ROLLCALL_S = 0.25
GRACE_S = 0.5  # after the deadline, before a non-coordinator gives up on the coordinator
STAGGER_S = 0.3
CANCEL_AFTER_S = 1.0
MAX_OUTPUT = 1 << 20
WATCH_PORT_BASE = 10000  # rendezvous ports are 20000..29999; these 10000..19999
# An MPI rank whose peer died must not abort: under Slurm 24.11 with PMIx 5 (Debian 13,
# Open MPI 5) the abort reaches slurmstepd's PMIx error handler, which kills the whole
# step (`STEP ... CANCELLED`, srun exits 14 or 137), every supervisor with it, before the
# coordinator names the rank that died. Open MPI then loops instead ("Looping forever
# (MCA parameter opal_abort_delay is < 0)" on the rank's stderr), and its supervisor
# ends it after the verdict. Open MPI 4.1 reads the same parameter.
RANK_ENV = {"OMPI_MCA_mpi_abort_delay": "-1"}


def watch_port(env: Mapping[str, str]) -> int:
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "0"
    step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")
    return WATCH_PORT_BASE + (port_for_job(job, step) - 20000) % PORT_SPAN


@dataclass
class RankView:
    rank: int
    node: str = "?"
    phase: str | None = None
    state: str = "running"  # running | stopped | silent | dead
    seen: float = 0.0  # monotonic time of the last report (coordinator)
    exit: str = ""


@dataclass
class Outcome:
    code: int
    verdict: str
    reason: str
    print_it: bool
    # Some task stopped answering (its supervisor frozen): without srun -K, srun would
    # wait for it forever, so the task that prints cancels the step (cancel_step_later).
    unanswered: bool = False


@dataclass
class Supervisor:
    rank: int
    world: int
    node: str
    timeout: float
    coordinator: tuple[str, int] | None  # None: no roll call (no address): local view only
    as_json: bool
    job_step: str  # "JOB.STEP" for the fallback scancel
    first_node: str = "the first node"
    scancel: str = "scancel"
    slurm_env: Mapping[str, str] = field(default_factory=dict)
    views: dict[int, RankView] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.own = RankView(self.rank, self.node, None)
        self.views[self.rank] = self.own
        self.started = time.monotonic()
        self.last_beat = time.monotonic()
        self.coord_seen = time.monotonic()
        self.sock: socket.socket | None = None
        # The exit code the rank announced with its verdict: any other exit (a
        # traceback's 1, faulthandler's 1, a signal) is a rank that died.
        self.verdict_code: int | None = None
        self.decided: int | None = None  # this task's exit code once it is known
        self.child_out = bytearray()
        self.announced: int | None = None  # non-coordinator: the coordinator's "end CODE"
        self.addrs: dict[int, Any] = {}  # coordinator: where each rank reports from

    # -- the roll call -------------------------------------------------------------
    def open(self) -> None:
        if self.coordinator is None or self.world < 2:
            return
        family = socket.AF_INET6 if ":" in self.coordinator[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if self.rank == 0:
            try:
                sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", self.coordinator[1]))
            except OSError as exc:
                sock.close()
                print(f"slurm-ai healthcheck: no roll call: {exc}", file=sys.stderr, flush=True)
                return
        sock.setblocking(False)
        self.sock = sock

    def _report(self) -> bytes:
        view = self.own
        return json.dumps(
            {"r": self.rank, "n": self.node, "p": view.phase, "s": view.state, "x": view.exit}
        ).encode()

    def exchange(self) -> None:
        """Send this rank's view (non-coordinators) and read what came in."""
        if self.sock is None:
            return
        if self.rank != 0 and self.coordinator is not None:
            with contextlib.suppress(OSError):
                self.sock.sendto(self._report(), self.coordinator)
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now = time.monotonic()
            if self.rank != 0:
                self.coord_seen = now  # an acknowledgement: the coordinator is alive
                if data.startswith(b"end ") and data[4:].strip().isdigit():
                    # The step's exit code, before srun -K's kill reaches this task.
                    self.decided = self.announced = int(data[4:])
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                item = json.loads(data)
                rank = int(item["r"])
                if 0 < rank < self.world:
                    view = self.views.setdefault(rank, RankView(rank))
                    view.node = str(item.get("n", "?"))[:64]
                    view.phase = item.get("p") if item.get("p") in PHASES else view.phase
                    view.state = str(item.get("s", "running"))[:16]
                    view.exit = str(item.get("x", ""))[:100]
                    view.seen = now
                    self.addrs[rank] = addr
                    with contextlib.suppress(OSError):
                        self.sock.sendto(b"ack", addr)

    # -- the child -----------------------------------------------------------------
    def read_child(self, fd: int) -> bool:
        """Read phase lines and beats; False at EOF (the child is gone)."""
        data = _read_ready(fd)
        if data is None:
            return True
        if not data:
            return False
        for line in data.decode(errors="replace").splitlines():
            parts = line.split()
            if parts and parts[0] == "beat":
                self.last_beat = time.monotonic()
            elif len(parts) == 2 and parts[0] == "verdict" and parts[1].isdecimal():
                self.verdict_code = int(parts[1])
            elif len(parts) >= 2 and parts[0] == "phase" and parts[1] in PHASES:
                self.own.phase = parts[1]
                self.last_beat = time.monotonic()
        return True

    def read_output(self, fd: int) -> bool:
        """Collect the rank's stdout; False at EOF."""
        data = _read_ready(fd)
        if data is None:
            return True
        if len(self.child_out) < MAX_OUTPUT:
            self.child_out += data
        return bool(data)

    def announce(self, code: int) -> None:
        """Coordinator: tell every rank the step's exit code before exiting (srun -K
        then ends them with SIGTERM, and each exits with this code, not 143)."""
        if self.sock is None or self.rank != 0:
            return
        for addr in self.addrs.values():
            with contextlib.suppress(OSError):
                self.sock.sendto(f"end {code}".encode(), addr)

    def forward_output(self) -> None:
        with contextlib.suppress(OSError):
            sys.stdout.buffer.write(bytes(self.child_out))
            sys.stdout.flush()

    def collect(self, seconds: float) -> None:
        """Roll calls for `seconds`: what the other ranks know (who died)."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.exchange()
            time.sleep(ROLLCALL_S / 2)

    def child_state(self, pid: int) -> str:
        state = proc_state(pid)
        if state == "stopped":
            return "stopped"
        if time.monotonic() - self.last_beat > SILENT_S:
            return "silent"
        return "running"

    # -- the verdict ---------------------------------------------------------------
    def culprits(self, now: float) -> list[str]:
        out: list[str] = []
        views = dict(self.views)
        # Without a roll call (no master address, the port taken) only this rank is known.
        ranks = range(self.world) if self.sock is not None else [self.rank]
        for rank in ranks:
            view = views.get(rank)
            if view is None:
                out.append(f"rank {rank} did not answer (its supervisor never reported)")
                continue
            if rank != self.rank and now - view.seen > SILENT_S:
                out.append(describe(rank, view.node, "stopped answering", view.phase))
            elif view.state == "stopped":
                out.append(describe(rank, view.node, "is stopped (SIGSTOP)", view.phase))
            elif view.state == "dead":
                out.append(describe(rank, view.node, f"died ({view.exit})", view.phase))
        if out:
            return out
        # A rank blocked in C with the GIL held (MPI_Init waiting for a peer) is silent
        # too: blame silence only when nothing stronger explains the hang.
        out = [
            describe(r, v.node, "stopped beating (wedged)", v.phase)
            for r, v in sorted(views.items())
            if v.state == "silent"
        ]
        if out:
            return out
        order = {name: i for i, name in enumerate(PHASES)}
        levels = {r: order.get(v.phase or "", -1) for r, v in views.items()}
        least = min(levels.values())
        if len(set(levels.values())) > 1:
            return [
                describe(r, views[r].node, "fell behind the others", views[r].phase)
                for r, level in sorted(levels.items())
                if level == least
            ]
        return []

    def timeout_outcome(self, now: float) -> Outcome:
        names = self.culprits(now) if self.rank == 0 or self.sock is None else []
        if self.rank != 0 and self.sock is not None:
            names = [f"rank 0 on {self.first_node} (the coordinator) stopped answering"]
        phases = {v.phase for v in self.views.values()}
        common = phases.pop() if len(phases) == 1 else None
        where = f" in {PHASE_NAMES.get(common, common)}" if common else ""
        who = "; ".join(names) if names else f"all {self.world} ranks still waiting{where}"
        reason = f"{who}: the all-reduce across the job did not finish within {self.timeout:g} s"
        unanswered = any("answer" in name for name in names)
        return Outcome(4, "timeout", reason, self.rank == 0, unanswered)

    def emit(self, outcome: Outcome) -> None:
        if not outcome.print_it:
            print(
                f"slurm-ai healthcheck: rank {self.rank} on {self.node}: {outcome.verdict}",
                file=sys.stderr,
                flush=True,
            )
            return
        if self.as_json:
            text = json.dumps(
                {
                    "scope": "job",
                    "duration_s": round(time.monotonic() - self.started, 3),
                    "verdict": outcome.verdict,
                    "reason": outcome.reason,
                    "checks": [
                        {"check": "allreduce", "verdict": outcome.verdict, "reason": outcome.reason}
                    ],
                },
                allow_nan=False,
            )
            print(text, flush=True)
        else:
            print(f"verdict: {outcome.verdict} ({outcome.reason})", flush=True)

    def cancel_step_later(self) -> None:
        """Without srun -K a stopped task keeps srun waiting: cancel the step shortly
        after this process exits (with -K srun has ended it by then; scancel then
        finds nothing and says so)."""
        if not self.job_step or not all(p.isdecimal() for p in self.job_step.split(".")):
            return
        code = (
            "import subprocess,sys,time;time.sleep(float(sys.argv[3]));"
            "subprocess.run([sys.argv[1],'-Q','-s','KILL',sys.argv[2]],timeout=10,check=False)"
        )
        with contextlib.suppress(OSError):
            subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-c",
                    code,
                    self.scancel,
                    self.job_step,
                    str(CANCEL_AFTER_S),
                ],
                env={**os.environ, **self.slurm_env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # SIGKILL ends a stopped process too
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited {code}"


def supervise(sup: Supervisor, argv: list[str], env: Mapping[str, str]) -> int:
    """Run the rank as a child; returns this task's exit code."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    child_env = {**env, **RANK_ENV, WATCH_FD_ENV: str(write_fd)}
    from slurm_ai.proc import _die_with_parent_preexec

    started = time.monotonic()
    deadline = started + sup.timeout
    # The rank's stdout comes here, not to srun: a rank that fails because a peer died
    # (gloo: connection reset) would print "error"; the coordinator prints the cause.
    proc = subprocess.Popen(
        argv,
        env=child_env,
        pass_fds=(write_fd,),
        stdout=subprocess.PIPE,
        preexec_fn=_die_with_parent_preexec(),
    )
    os.close(write_fd)
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    os.set_blocking(out_fd, False)
    sup.open()

    # srun forwards SIGTERM/SIGINT (scancel, Ctrl-C): end the rank with us.
    def end(signum: int, frame: object) -> None:
        # srun -K ending the step after the verdict: exit with the decided code (srun
        # reports the highest exit code of the step, and 143 would hide the timeout).
        _kill(proc)
        with contextlib.suppress(Exception):
            sup.exchange()  # the coordinator's "end CODE" may be waiting
        if sup.decided is None and time.monotonic() >= deadline:
            sup.decided = 4  # ended after the deadline: a timeout (this task was stopped)
        os._exit(sup.decided if sup.decided is not None else 128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, end)
    open_pipe = True
    next_roll = 0.0
    last_tick = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            frozen, last_tick = now - last_tick > SILENT_S, now
            if frozen and now >= deadline:
                # This task itself was stopped past its deadline (kill -STOP, then srun
                # -K's SIGCONT): a peer has given the verdict; add none of our own.
                sup.decided = 4
                _kill(proc)
                print(
                    f"slurm-ai healthcheck: rank {sup.rank} on {sup.node} was stopped "
                    "past the deadline",
                    file=sys.stderr,
                    flush=True,
                )
                return 4
            if open_pipe:
                open_pipe = sup.read_child(read_fd)
            sup.read_output(out_fd)
            code = proc.poll()
            if code is not None:
                while open_pipe:  # the verdict line may still be in the pipe
                    open_pipe = sup.read_child(read_fd) and bool(
                        select.select([read_fd], [], [], 0.2)[0]
                    )
                while sup.read_output(out_fd) and select.select([out_fd], [], [], 0.2)[0]:
                    pass
                return _child_ended(sup, proc, code, deadline)
            sup.own.state = sup.child_state(proc.pid)
            if now >= next_roll:
                sup.exchange()
                next_roll = now + ROLLCALL_S
                if sup.rank == 0 and any(v.state == "dead" for v in sup.views.values()):
                    return _finish(sup, proc, _dead_outcome(sup))
            if now >= deadline:
                return _at_deadline(sup, proc)
            wait = [read_fd, out_fd] if open_pipe else [out_fd]
            timeout = max(0.0, min(0.05, deadline - now))
            if sup.sock is not None:
                wait.append(sup.sock.fileno())
            if wait:
                select.select(wait, [], [], timeout)
            else:
                time.sleep(timeout)
    finally:
        with contextlib.suppress(OSError):
            os.close(read_fd)
        if sup.sock is not None:
            sup.sock.close()


def _dead_outcome(sup: Supervisor) -> Outcome:
    dead = [v for _, v in sorted(sup.views.items()) if v.state == "dead"]
    # Killed by a signal first: a rank that exited because its peer vanished is a
    # consequence, not the cause.
    dead.sort(key=lambda v: not v.exit.startswith("killed"))
    names = [describe(v.rank, v.node, f"died ({v.exit})", v.phase) for v in dead]
    return Outcome(2, "fail", "; ".join(names) + ": the all-reduce across the job failed", True)


def _finish(sup: Supervisor, proc: subprocess.Popen[bytes], outcome: Outcome) -> int:
    sup.decided = outcome.code
    # The verdict first: killing a PMIx client, or the others' exits after the
    # announcement, make srun end the step, this task included.
    sup.emit(outcome)
    _kill(proc)
    sup.announce(outcome.code)
    if outcome.print_it and outcome.unanswered and sup.world > 1:
        sup.cancel_step_later()
    return outcome.code


def _await_coordinator(sup: Supervisor, seconds: float) -> int | None:
    """A non-coordinator's end: keep reporting until the coordinator announces the
    step's exit code (then exit with it), or `seconds` pass (it stopped answering)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sup.exchange()
        if sup.announced is not None:
            return sup.announced
        time.sleep(ROLLCALL_S / 4)
    return None


def _child_ended(sup: Supervisor, proc: subprocess.Popen[bytes], code: int, deadline: float) -> int:
    judged = 0 <= code <= 4 and sup.verdict_code == code
    if not judged:
        sup.own.state, sup.own.exit = "dead", _exit_text(code)
        sup.decided = 2
    if sup.rank == 0:
        if sup.sock is not None and (not judged or code >= 3):
            # An error or death of rank 0 may be a peer's death seen from here.
            sup.collect(2 * ROLLCALL_S + 0.1)
        if not judged or any(v.state == "dead" for v in sup.views.values()):
            return _finish(sup, proc, _dead_outcome(sup))
        sup.decided = code
        sup.forward_output()
        sup.announce(code)
        return code  # rank 0 judged; its verdict is in its output
    if judged:
        sup.decided = code
        sup.forward_output()
    if sup.sock is None:
        return code if judged else _finish(sup, proc, _dead_outcome(sup))
    wait = max(0.0, deadline - time.monotonic()) + GRACE_S + 2 * ROLLCALL_S
    announced = _await_coordinator(sup, wait + sup.rank * STAGGER_S)
    if announced is not None:
        return announced
    if judged:
        return code
    return _finish(sup, proc, _dead_outcome(sup))  # the coordinator is gone: say it here


def _at_deadline(sup: Supervisor, proc: subprocess.Popen[bytes]) -> int:
    if sup.rank == 0:
        sup.exchange()
        outcome = sup.timeout_outcome(time.monotonic())
        return _finish(sup, proc, outcome)
    # This rank's view stays as it was (stopped, silent, its phase) for the coordinator,
    # whose deadline may come a little later than this one.
    # The rank is killed only after the verdict is out (see _finish).
    sup.decided = 4
    announced = _await_coordinator(sup, GRACE_S + 2 * ROLLCALL_S + (sup.rank - 1) * STAGGER_S)
    if announced is not None:
        _kill(proc)
        return announced
    outcome = sup.timeout_outcome(time.monotonic())
    outcome.print_it = True  # the coordinator stopped answering: someone must say so
    return _finish(sup, proc, outcome)


def child_reporter_fd(env: Mapping[str, str]) -> int | None:
    """In the rank (the child): the pipe to its supervisor."""
    value = env.get(WATCH_FD_ENV, "")
    return int(value) if value.isdecimal() else None


def should_supervise(env: Mapping[str, str]) -> bool:
    """A task of a real srun step that is not itself the supervised rank."""
    return (
        WATCH_FD_ENV not in env
        and env.get(WATCH_OFF_ENV) != "1"
        and bool(env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"))
        and bool(env.get("SLURM_PROCID"))
    )


def make_supervisor(
    env: Mapping[str, str],
    timeout: float,
    as_json: bool,
    coordinator_addr: Callable[[], str | None],
    scancel: str,
    slurm_env: Mapping[str, str],
) -> Supervisor:
    procid = env.get("SLURM_PROCID", "0")
    world_text = env.get("SLURM_NTASKS") or env.get("SLURM_NPROCS") or "1"
    rank = int(procid) if procid.isdecimal() else 0
    world = int(world_text) if world_text.isdecimal() else 1
    node = env.get("SLURMD_NODENAME") or socket.gethostname()
    addr = coordinator_addr() if world > 1 else None
    from slurm_ai.slurmenv import expand_hostlist

    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    try:
        first = expand_hostlist(nodelist)[0] if nodelist else "the first node"
    except (ValueError, IndexError):
        first = "the first node"
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    step = env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID") or ""
    return Supervisor(
        rank=rank,
        world=world,
        node=node,
        timeout=timeout,
        coordinator=(addr, watch_port(env)) if addr else None,
        as_json=as_json,
        job_step=f"{job}.{step}" if job and step else "",
        first_node=first,
        scancel=scancel,
        slurm_env=slurm_env,
    )


def _read_ready(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now: None when nothing yet, b"" at its end (or when
    it cannot be read any more), else the bytes."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""
