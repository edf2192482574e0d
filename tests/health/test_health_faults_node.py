"""A rank stopped or killed in the node-scope modes: the Prolog's full check, Slurm's
HealthCheckProgram (run as slurmd runs it: `python -I -m slurm_ai.hooks
healthcheck`), and `srun ... healthcheck --scope node` on the real cluster.

The launcher holds the deadline (launcher.py): each case asserts the bound
(budget + MARGIN_S), a verdict that is timeout (stopped) or error (killed) and
names the rank, node and phase, no drain, and no process left.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from health_helpers import needs_mpi

from slurm_ai.config import Config
from slurm_ai.health.hook import prolog_step
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv

MARGIN_S = 3.0
BUDGET_S = 5.0
HEALTH = {
    "enabled": True,
    "backend": "mpi",
    "when": "every_job",
    "min_size": "4K",
    "cpu_max_size": "64K",
    "iters": 3,
    "gpu_checks": False,
    "budget_s": BUDGET_S,
    "background_budget_s": BUDGET_S,
}
ENV = {
    "SLURM_JOB_ID": "77",
    "SLURM_JOB_PARTITION": "bare",
    "SLURMD_NODENAME": "n1",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
}
PROGRAM_BUDGET_S = 10.0
WORDS = {"startup": "start-up", "warmup": "warm-up", "measure": "measure", "report": "report"}


def leftovers(mark: str) -> list[int]:
    found: list[int] = []
    for _ in range(20):
        found = []
        for proc in psutil.process_iter(["pid", "environ"]):
            try:
                if (proc.info["environ"] or {}).get("SLURM_AI_TEST_RUN") == mark:
                    found.append(proc.info["pid"])
            except psutil.Error:
                continue
        if not found:
            return []
        time.sleep(0.25)
    return found


@pytest.fixture
def mark(monkeypatch: pytest.MonkeyPatch) -> str:
    """A mark the check's processes inherit, to find any that outlive it."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("SLURM_AI_TEST_RUN", value)
    return value


@needs_mpi
@pytest.mark.parametrize(
    ("fault", "verdict", "words"),
    [
        ("stop:1@startup", "timeout", "rank 1 on {node} is stopped (SIGSTOP) in start-up"),
        ("stop:0@measure", "timeout", "rank 0 on {node} is stopped (SIGSTOP) in measure"),
        ("stop:1@report", "timeout", "rank 1 on {node} is stopped (SIGSTOP) in report"),
        ("kill:1@warmup", "error", "rank 1 on {node} died"),
    ],
)
def test_the_prologs_full_check_ends_on_time_and_names_the_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mark: str, fault: str, verdict: str, words: str
) -> None:
    monkeypatch.setenv("SLURM_AI_HEALTH_FAULT", fault)
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    config = Config(None, {"spool": {"dir": str(spool)}, "health": HEALTH})
    ctx = HookContext(config, JobEnv.from_environ(ENV), "n1", spool, logging.getLogger("t"))
    began = time.monotonic()
    out = prolog_step(ctx)
    took = time.monotonic() - began
    assert out is not None
    health = out["health"]
    assert health["verdict"] == verdict, health
    assert words.format(node=socket.gethostname()) in health["reason"], health["reason"]
    assert ctx.drain_reasons == []  # a hung or dead rank says nothing certain of the node
    assert took < BUDGET_S + MARGIN_S, took
    assert leftovers(mark) == []


@needs_mpi
def test_the_health_check_program_stores_a_named_timeout(tmp_path: Path, mark: str) -> None:
    """As slurmd runs it: `python -m slurm_ai.hooks healthcheck`, almost no environment."""
    from slurm_ai.health.history import HealthStore

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    config = tmp_path / "config.toml"
    lines = [
        f'[spool]\ndir = "{spool}"',
        f'[log]\nfile = "{tmp_path / "log"}"',
        '[slurm]\nscontrol = "/bin/false"',  # no controller here: no drain, no resume
        "[health]",
    ]
    # The program's least budget (program.MIN_BUDGET_S): less and it does not run.
    for key, value in {**HEALTH, "background_budget_s": PROGRAM_BUDGET_S}.items():
        text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{key} = {text}")
    config.write_text("\n".join(lines) + "\n")
    env = {
        "PATH": os.environ["PATH"],
        "SLURMD_NODENAME": "n1",
        "SLURM_AI_HEALTH_FAULT": "stop:1@warmup",
        "SLURM_AI_TEST_RUN": mark,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    began = time.monotonic()
    proc = subprocess.run(
        # As the shim runs it, but without -I: PYTHONPATH makes it this checkout's code
        # (-I would import whichever slurm_ai is installed).
        [sys.executable, "-m", "slurm_ai.hooks", "healthcheck", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr  # slurmd ignores it; the program acts itself
    stored = HealthStore(spool).last()
    assert stored is not None
    last = stored["health"]
    assert last["verdict"] == "timeout", last
    assert f"rank 1 on {socket.gethostname()} is stopped (SIGSTOP) in warm-up" in last["reason"]
    assert took < PROGRAM_BUDGET_S + MARGIN_S, took
    assert leftovers(mark) == []


@pytest.mark.cluster
@needs_mpi
@pytest.mark.parametrize(("fault", "rank", "phase"), [("stop:0@warmup", 0, "warmup")])
def test_node_scope_under_srun_names_the_stopped_rank(
    slurm_cluster: Any, fault: str, rank: int, phase: str
) -> None:
    mark = uuid.uuid4().hex
    argv = ["srun", "--immediate=60", "-N1", "-n1", "-w", "n2", "slurm-ai", "healthcheck"]
    argv += ["--scope", "node", "--backend", "mpi", "--min-size", "4K", "--max-size", "64K"]
    argv += ["--iters", "3", "--no-gpu-checks", "--timeout", f"{BUDGET_S:g}"]
    began = time.monotonic()
    out = slurm_cluster.run(
        argv, env={"SLURM_AI_HEALTH_FAULT": fault, "SLURM_AI_TEST_RUN": mark}, timeout=120
    )
    took = time.monotonic() - began
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert f"rank {rank} on n2 is stopped (SIGSTOP) in {WORDS[phase]}" in out.stdout
    assert took < BUDGET_S + MARGIN_S + 3.0, took  # + srun's allocation and launch
    assert leftovers(mark) == []
