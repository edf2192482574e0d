"""The one place slurm-ai runs subprocesses.

Always an argv list (never a shell string: hooks run as root and see
user-controlled job names and comments), always a timeout, and errors mapped
into the slurm_ai exception tree.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slurm_ai.errors import CommandError, CommandTimeout

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    check: bool = True,
    input_text: str | None = None,
) -> CommandResult:
    """Run `argv` and return its output.

    `extra_env` is merged over `env` (or over os.environ when `env` is None).
    Raises CommandTimeout when the timeout passes (the child is killed),
    CommandError when the command cannot start or, with `check`, exits non-zero.
    """
    args = [str(a) for a in argv]
    if not args:
        raise ValueError("run_command needs a non-empty argv")
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    try:
        completed = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandTimeout(args, timeout) from exc
    except OSError as exc:
        raise CommandError(args, None, str(exc)) from exc
    result = CommandResult(args, completed.returncode, completed.stdout, completed.stderr)
    if check and completed.returncode != 0:
        raise CommandError(args, completed.returncode, completed.stderr or completed.stdout)
    return result


def run_group(
    commands: Sequence[Sequence[str]],
    *,
    timeout: float,
    envs: Sequence[Mapping[str, str]] | None = None,
    max_output: int = 1024 * 1024,
    grace: float = 1.0,
    fail_fast: bool = False,
    before_kill: Callable[[], None] | None = None,
) -> list[CommandResult]:
    """Run several commands at once as ONE new process group, with one hard timeout.

    For workers that must live and die together (the local all-reduce ranks,
    or an `mpirun` and the ranks it forks): on timeout the whole group and
    every descendant found under it are sent SIGTERM, then after `grace`
    seconds SIGKILL, so nothing is left behind; then CommandTimeout is raised.
    The group being new, a kill of the caller's group (slurmd ending a Prolog
    or HealthCheckProgram that ran too long) would miss it: each command
    therefore dies with the calling thread (PR_SET_PDEATHSIG; call this from
    the thread that lives as long as the workers should).
    Results come back in the order of `commands` (never `check`ed: callers
    read the return codes). `envs[i]` is the full environment of command i.
    With `fail_fast`, the first command to exit non-zero ends the others too
    (ranks waiting for a dead peer would otherwise wait until the timeout).
    `before_kill` runs at the timeout while the processes still exist (a caller
    reads which of them were stopped or silent, to name them).
    """
    import tempfile

    if not commands or any(not argv for argv in commands):
        raise ValueError("run_group needs non-empty argv lists")
    if envs is not None and len(envs) != len(commands):
        raise ValueError("run_group: one env per command")
    with contextlib.ExitStack() as files:
        outputs = [
            (
                files.enter_context(tempfile.TemporaryFile()),
                files.enter_context(tempfile.TemporaryFile()),
            )
            for _ in commands
        ]
        procs, timed_out = _start_and_wait(
            commands, envs, outputs, timeout, grace, fail_fast, before_kill
        )
        if timed_out:
            partial = []
            for out, _ in outputs:
                out.seek(0)
                partial.append(out.read(max_output).decode(errors="replace"))
            raise CommandTimeout([str(a) for a in commands[0]], timeout, partial)
        results = []
        for argv, proc, (out, err) in zip(commands, procs, outputs, strict=True):
            out.seek(0)
            err.seek(0)
            results.append(
                CommandResult(
                    [str(a) for a in argv],
                    proc.returncode,
                    out.read(max_output).decode(errors="replace"),
                    err.read(max_output).decode(errors="replace"),
                )
            )
        return results


def _start_and_wait(
    commands: Sequence[Sequence[str]],
    envs: Sequence[Mapping[str, str]] | None,
    outputs: Sequence[tuple[Any, Any]],
    timeout: float,
    grace: float,
    fail_fast: bool,
    before_kill: Callable[[], None] | None = None,
) -> tuple[list[subprocess.Popen[bytes]], bool]:
    import signal
    import time

    procs: list[subprocess.Popen[bytes]] = []
    die_with_us = _die_with_parent_preexec()
    leader = 0
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        for i, argv in enumerate(commands):
            out, err = outputs[i]
            try:
                proc = subprocess.Popen(
                    [str(a) for a in argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=dict(envs[i]) if envs is not None else None,
                    process_group=leader,  # 0: a new group led by the first command
                    preexec_fn=die_with_us,
                )
            except OSError as exc:
                raise CommandError([str(a) for a in argv], None, str(exc)) from exc
            procs.append(proc)
            if not leader:
                leader = proc.pid
        # Wait without reaping (WNOWAIT): the leader stays a zombie until the
        # end, so its pid (the group id) cannot be reused before killpg below.
        pending = {p.pid for p in procs}
        while pending:
            failed = False
            for pid in list(pending):
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is not None:
                    pending.discard(pid)
                    failed = failed or info.si_code != os.CLD_EXITED or info.si_status != 0
            if not pending or (fail_fast and failed):
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.02)
    finally:
        if timed_out and before_kill is not None:
            with contextlib.suppress(Exception):  # naming the culprit never blocks the kill
                before_kill()
        if procs:
            # Also after a normal end: no straggler may outlive the check.
            _kill_group(leader, procs, signal.SIGTERM if timed_out else signal.SIGKILL, grace)
            for proc in procs:
                proc.wait()
    return procs, timed_out


def _kill_group(leader: int, procs: Sequence[Any], first_signal: int, grace: float) -> None:
    """Signal the group and every descendant (some may have left the group)."""
    import signal
    import time

    import psutil

    descendants: dict[int, psutil.Process] = {}
    for proc in procs:
        try:
            for child in psutil.Process(proc.pid).children(recursive=True):
                descendants[child.pid] = child
        except psutil.Error:
            continue
    targets = list(descendants.values())

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, sig)
        for child in targets:
            with contextlib.suppress(psutil.Error):
                child.send_signal(sig)

    send(first_signal)
    if first_signal != signal.SIGKILL:
        end = time.monotonic() + grace
        while time.monotonic() < end and any(_alive(c) for c in targets):
            time.sleep(0.05)
        send(signal.SIGKILL)
    psutil.wait_procs(targets, timeout=grace)


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent() -> bool:
    """Have the kernel SIGKILL this process when its parent (thread) exits;
    False where that cannot be asked (no prctl)."""
    import signal

    prctl = _prctl()
    return prctl is not None and prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL)) == 0


def _die_with_parent_preexec() -> Any:
    """die_with_parent as a preexec_fn: prctl is looked up here, in the parent,
    so the child between fork and exec only makes two system calls; a parent
    already gone by then (the window right after fork) ends the child at once."""
    import signal

    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, kill)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
