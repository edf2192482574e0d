"""Fixtures for the agent tests: real job-like processes, agent subprocesses, hooks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agenthelp import BUSY
from hooks_fixture import installed_hooks  # noqa: F401  (re-exported fixture, issue 5)


@pytest.fixture
def spawn_job_process() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a real process that looks like a job task (env), killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        job: str, node: str, busy_s: float = 0.0, mem: int = 1 << 20, linger_s: float = 30.0
    ) -> subprocess.Popen[bytes]:
        env = dict(os.environ, SLURM_JOB_ID=job, SLURMD_NODENAME=node)
        proc = subprocess.Popen(
            [sys.executable, "-c", BUSY, str(busy_s), str(mem), str(linger_s)], env=env
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def agent_process() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `slurm-ai agent` as a subprocess; SIGTERM then SIGKILL at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, config: Path | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "slurm_ai"]
        if config is not None:
            argv += ["--config", str(config)]
        proc = subprocess.Popen(
            [*argv, "agent", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
