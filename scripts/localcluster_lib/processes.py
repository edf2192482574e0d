"""Processes we own: pid files, the environment marker, start and stop."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .common import MARK_VAR, STOP_TIMEOUT, ClusterError, say, tail, wait_until
from .instance import Instance


@dataclasses.dataclass(frozen=True)
class Daemon:
    """One daemon of the instance: how to start it and where it logs."""

    name: str  # munged, mysqld, slurmdbd, slurmctld, slurmd-n1 ...
    argv: tuple[str, ...]
    log: Path  # the daemon's own log
    port: int | None  # TCP port it listens on, if any
    ready: Callable[[], bool]  # readiness probe
    timeout: float = 60.0  # seconds to become ready (START_TIMEOUT)


def pid_file(inst: Instance, name: str) -> Path:
    return inst.run_dir / f"{name}.pid"


def out_file(inst: Instance, name: str) -> Path:
    """stdout/stderr of the daemon (start-up errors before its log opens)."""
    return inst.log_dir / f"{name}.out"


def _program(name: str) -> str:
    """Executable of daemon `name` (slurmd-n1 -> slurmd, mysqld -> mariadbd)."""
    if name.startswith("agent-"):
        return Path(sys.executable).name  # the agent is `python -m slurm_ai agent`
    if name.startswith("vm-"):
        return "qemu-system-x86_64"
    return {"mysqld": "mariadbd"}.get(name, name.split("-", 1)[0])


def _read_environ(proc: Path) -> bytes:
    """/proc/PID/environ, read again while it is empty: a process in the middle of an exec
    (unshare -> localcluster _node-exec -> slurmd) shows an empty environment for a moment,
    long enough on a loaded machine to take a starting daemon for one that exited."""
    deadline = time.monotonic() + 2.0
    while True:
        data = (proc / "environ").read_bytes()
        if data or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def _proc_is_ours(pid: int, inst: Instance, program: str) -> bool:
    """Alive, not a zombie, and started by this instance (environment marker).

    Non-root callers (e.g. `status` as a user) cannot read a root process's
    environment; for them, the program name in /proc/PID/cmdline has to do."""
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        # State is the field after the ')' closing the command name.
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        try:
            environ = _read_environ(proc).split(b"\0")
        except PermissionError:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            return Path(argv0).name == program
    except (OSError, IndexError):
        return False
    return f"{MARK_VAR}={inst.prefix}".encode() in environ


def running_pid(inst: Instance, name: str) -> int | None:
    """Pid of our running daemon `name`, or None (stale pid files are ignored)."""
    try:
        pid = int(pid_file(inst, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _proc_is_ours(pid, inst, _program(name)) else None


def spawn(inst: Instance, daemon: Daemon) -> int:
    """Start a daemon in the foreground of its own session, record its pid."""
    out = open(out_file(inst, daemon.name), "ab")  # noqa: SIM115 (child keeps it)
    try:
        proc = subprocess.Popen(
            list(daemon.argv),
            env=inst.client_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(inst.prefix),
            close_fds=True,
        )
    finally:
        out.close()
    pid_file(inst, daemon.name).write_text(f"{proc.pid}\n")
    # We never wait for it: it outlives this script.  Forget the Popen object
    # quietly so Python does not warn about a still-running child.
    proc.returncode = 0
    return proc.pid


def stop(inst: Instance, name: str) -> bool:
    """SIGTERM our daemon, wait for it to exit (SIGKILL after a timeout)."""
    pid = running_pid(inst, name)
    if pid is None:
        pid_file(inst, name).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        return not _proc_is_ours(pid, inst, _program(name))

    if not wait_until(gone, STOP_TIMEOUT, interval=0.2):
        say(f"{name} (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:.0f}s; sending SIGKILL")
        os.kill(pid, signal.SIGKILL)
        wait_until(gone, 10.0, interval=0.2)
    with contextlib.suppress(ChildProcessError):  # reap it if it is our child
        os.waitpid(pid, os.WNOHANG)
    pid_file(inst, name).unlink(missing_ok=True)
    return True


def fail_daemon(inst: Instance, daemon: Daemon, why: str) -> NoReturn:
    """Report a daemon that did not come up, with the tail of its logs."""
    parts = [f"{daemon.name} {why}", f"--- last lines of {daemon.log} ---", tail(daemon.log)]
    # Its stdout/stderr mostly repeats the log; show it when it says more
    # (errors from before the log was opened, e.g. unshare, mount, bad options).
    out = out_file(inst, daemon.name)
    out_tail = tail(out) if out.exists() and out.stat().st_size > 0 else ""
    log_text = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
    last = out_tail.strip().splitlines()[-1:] if out_tail else []
    if last and last[0].split(": ", 1)[-1] not in log_text:
        parts += [f"--- last lines of {out} ---", out_tail]
    raise ClusterError("\n".join(parts))


def start_daemon(inst: Instance, daemon: Daemon, wait: bool = True) -> None:
    """Start one daemon (unless already running) and wait until it is ready
    (the guests are waited for later, all together: wait=False)."""
    pid = running_pid(inst, daemon.name)
    if pid is not None:
        if wait and not wait_until(
            daemon.ready, daemon.timeout, alive=lambda: running_pid(inst, daemon.name) is not None
        ):
            fail_daemon(inst, daemon, f"(pid {pid}) is running but not responding")
        return
    if daemon.name.startswith("vm-"):  # a fresh console per boot
        daemon.log.unlink(missing_ok=True)
    pid = spawn(inst, daemon)
    say(f"started {daemon.name} (pid {pid})")
    if not wait:
        return
    ok = wait_until(
        daemon.ready, daemon.timeout, alive=lambda: running_pid(inst, daemon.name) is not None
    )
    if not ok:
        if running_pid(inst, daemon.name) is None:
            fail_daemon(inst, daemon, "exited during start-up")
        fail_daemon(inst, daemon, f"did not become ready within {daemon.timeout:.0f}s")
