"""The job-scope supervisor without a cluster: one task (world 1) watching a real
child that stops, dies, exits without a verdict, or passes. The roll call
between tasks is tested on the cluster (test_health_faults_cluster.py)."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from slurm_ai.health import stepwatch
from slurm_ai.health.phases import describe, phase_fault, proc_state
from slurm_ai.health.stepwatch import RankView, Supervisor, supervise

CHILD = """
import os, signal, sys
fd = int(os.environ["SLURM_AI_HEALTH_WATCH_FD"])
os.write(fd, b"beat\\nphase {phase} 0\\n")
{then}
"""


def run_child(
    then: str, phase: str = "warmup", timeout: float = 2.0
) -> tuple[int, float, Supervisor]:
    sup = Supervisor(
        rank=0, world=1, node="n9", timeout=timeout, coordinator=None, as_json=False, job_step=""
    )
    argv = [sys.executable, "-c", CHILD.format(phase=phase, then=then)]
    began = time.monotonic()
    code = supervise(sup, argv, {"PATH": "/usr/bin:/bin"})
    return code, time.monotonic() - began, sup


def test_a_stopped_rank_is_a_named_timeout_within_the_budget(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code, took, _ = run_child("os.kill(os.getpid(), signal.SIGSTOP)")
    out = capfd.readouterr().out
    assert code == 4 and took < 2.0 + 1.0, took
    assert "verdict: timeout (rank 0 on n9 is stopped (SIGSTOP) in warm-up" in out


def test_a_rank_spinning_with_no_heartbeat_is_named_wedged(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code, took, _ = run_child("while True: pass", phase="measure")
    assert code == 4 and took < 3.0
    assert "rank 0 on n9 stopped beating (wedged) in measure" in capfd.readouterr().out


def test_a_killed_rank_fails_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    code, took, _ = run_child("os.kill(os.getpid(), signal.SIGKILL)", phase="measure", timeout=20)
    assert code == 2 and took < 5.0
    assert (
        "verdict: fail (rank 0 on n9 died (killed by SIGKILL) in measure" in capfd.readouterr().out
    )


def test_an_exit_without_a_verdict_never_reads_as_warn(capfd: pytest.CaptureFixture[str]) -> None:
    """A traceback exits 1, which the exit-code table calls warn: here it is a dead rank."""
    code, _, _ = run_child("raise SystemExit(1)", timeout=20)
    assert code == 2
    assert "died (exited 1) in warm-up" in capfd.readouterr().out


def test_a_rank_that_announces_its_verdict_passes_through(
    capfd: pytest.CaptureFixture[str],
) -> None:
    code, _, _ = run_child('print("verdict: pass"); os.write(fd, b"verdict 0\\n")', timeout=20)
    assert code == 0
    assert capfd.readouterr().out == "verdict: pass\n"


def test_phase_faults_are_exact() -> None:
    assert phase_fault("stop:1@warmup", 1, "warmup") == "stop"
    assert phase_fault("stop:1@warmup", 0, "warmup") is None
    assert phase_fault("stop:1@warmup", 1, "measure") is None
    assert phase_fault("kill:0@report", 0, "report") == "kill"
    assert phase_fault("hang:1", 1, "startup") is None  # the older faults have no phase
    assert phase_fault("stop:1@warmup", None, "warmup") is None
    assert proc_state(2**22 + 12345) == "gone"


def test_the_coordinator_names_the_worst_cause_first() -> None:
    sup = Supervisor(
        rank=0, world=3, node="n1", timeout=5, coordinator=None, as_json=False, job_step=""
    )
    assert sup.culprits(time.monotonic()) == []  # no roll call: only itself, running
    sup.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # as after open()
    now = time.monotonic()
    sup.own.phase, sup.own.state = "startup", "silent"  # MPI_Init holding the GIL
    sup.views[1] = RankView(1, "n2", "startup", "stopped", seen=now)
    names = sup.culprits(now)
    assert names == [
        describe(1, "n2", "is stopped (SIGSTOP)", "startup"),
        "rank 2 did not answer (its supervisor never reported)",
    ]
    sup.views[1] = RankView(1, "n2", "warmup", "running", seen=now)
    sup.views[2] = RankView(2, "n3", "measure", "running", seen=now - 10)
    assert names != sup.culprits(now)
    assert "rank 2 on n3 stopped answering in measure" in sup.culprits(now)
    sup.sock.close()


def test_the_watch_port_differs_from_the_rendezvous_port() -> None:
    env = {"SLURM_JOB_ID": "1234", "SLURM_STEP_ID": "3"}
    port = stepwatch.watch_port(env)
    assert 10000 <= port < 20000
    assert stepwatch.should_supervise({"SLURM_STEP_ID": "0", "SLURM_PROCID": "0"})
    assert not stepwatch.should_supervise(
        {"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", stepwatch.WATCH_FD_ENV: "5"}
    )
    assert not stepwatch.should_supervise({})
