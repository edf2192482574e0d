"""Daemons lost around a job's end, on the real cluster: the record still lands once.

- slurmctld restarted while both nodes' Epilogs run (a site Epilog script beside ours
  keeps the job COMPLETING for a few seconds, so the restart falls inside the window;
  slurmd runs the Epilog= glob in reverse alphabetical order, so ours runs after it,
  while the controller is away or just back);
- slurmd of one node killed right after the job's record landed, then started again:
  the restart neither writes a second record nor changes the one there;
- slurmdbd killed (SIGKILL) while the Epilogs of a few jobs write their records, and
  started again a few seconds later: every job gets one complete record.

- slurmd of one node killed before a two-node job: the job ends once the node is found
  not responding, its other node's part lands naming it missing; a job submitted while
  the node is down pends, runs once slurmd is back, and gets one complete record.

The lost-node case (slurmd killed during the job) is in test_cluster_delivery's
incomplete-record tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterjobs import (
    admin_comment,
    job_done,
    record_of,
    sbatch,
    slurm_ai,
    wait_for,
    wait_record,
)
from hooks_fixture import quiesce, replace_file

pytestmark = pytest.mark.cluster

SLOW_EPILOG_S = 8


def _pid(cluster: Any, daemon: str) -> int:
    return int((Path(cluster.prefix) / "run" / f"{daemon}.pid").read_text().split()[0])


def _stop(cluster: Any, daemon: str, sig: int = signal.SIGTERM) -> None:
    pid = _pid(cluster, daemon)
    os.kill(pid, sig)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, what=f"{daemon} to stop")


def _start_missing(cluster: Any) -> None:
    """`localcluster up` starts what is not running and leaves the rest alone."""
    up = cluster.localcluster("up", timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr


def _state(cluster: Any, job: str) -> str:
    proc = cluster.run(["squeue", "-h", "-j", job, "-o", "%T"])
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _record_within(hooks: Any, job: str, seconds: float) -> bool:
    """Whether the job's record is in accounting within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if record_of(hooks, job):
            return True
        time.sleep(0.5)
    return False


def _records_in_accounting(hooks: Any, job: str) -> int:
    """How many slurm-ai records the job's AdminComment holds (one word each)."""
    text = admin_comment(hooks, job) or ""
    return sum(1 for word in text.split() if word.startswith("sai"))


@pytest.fixture
def slow_epilog(installed_hooks: Any) -> Iterator[Path]:
    """A site Epilog script that sleeps, beside slurm-ai's (the Epilog= glob runs both)."""
    script = installed_hooks.layout.epilog_dir / "90-test-slow-site-epilog"
    quiesce(installed_hooks.cluster)
    replace_file(script, f"#!/bin/sh\nsleep {SLOW_EPILOG_S}\nexit 0\n", 0o755)
    try:
        yield script
    finally:
        quiesce(installed_hooks.cluster)
        with contextlib.suppress(FileNotFoundError):
            script.unlink()


def test_controller_restarted_while_epilogs_run(installed_hooks: Any, slow_epilog: Path) -> None:
    cluster = installed_hooks.cluster
    job = sbatch(installed_hooks, "-N2", "-n2", "-p", "bare", "--wrap", "srun -N2 -n2 true")
    wait_for(lambda: _state(cluster, job) == "COMPLETING", 90, 0.2, what="the job's Epilogs")
    _stop(cluster, "slurmctld")
    try:
        _start_missing(cluster)
    finally:
        with contextlib.suppress(Exception):
            _start_missing(cluster)
    record = wait_record(installed_hooks, job, {"n1", "n2"}, timeout=180)
    assert record["complete"] is True, record
    assert set(record["nodes"]) == {"n1", "n2"}
    assert _records_in_accounting(installed_hooks, job) == 1
    for node in ("n1", "n2"):
        state = cluster.run(["sinfo", "-h", "-n", node, "-o", "%T"]).stdout.strip()
        assert not state.startswith(("drain", "down")), (node, state)


def test_slurmd_killed_after_the_job_changes_nothing(installed_hooks: Any) -> None:
    cluster = installed_hooks.cluster
    job = sbatch(installed_hooks, "-N2", "-n2", "-p", "bare", "--wrap", "srun -N2 -n2 true")
    record = wait_record(installed_hooks, job, {"n1", "n2"}, timeout=120)
    assert record["complete"] is True
    before = admin_comment(installed_hooks, job)
    quiesce(cluster)
    _stop(cluster, "slurmd-n2")
    try:
        _start_missing(cluster)
    finally:
        with contextlib.suppress(Exception):
            _start_missing(cluster)
    wait_for(
        lambda: cluster.run(["sinfo", "-h", "-n", "n2", "-o", "%T"]).stdout.strip() == "idle",
        90,
        what="n2 idle again",
    )
    # A later job on both nodes runs and gets its record; the first one is as it was.
    later = sbatch(installed_hooks, "-N2", "-n2", "-p", "bare", "--wrap", "srun -N2 -n2 true")
    assert wait_record(installed_hooks, later, {"n1", "n2"}, timeout=120)["complete"] is True
    assert admin_comment(installed_hooks, job) == before
    assert record_of(installed_hooks, job) == record
    assert _records_in_accounting(installed_hooks, job) == 1


def test_slurmdbd_killed_while_epilogs_write(installed_hooks: Any) -> None:
    cluster = installed_hooks.cluster
    quiesce(cluster)
    # Short accounting timeouts: a write to the dead slurmdbd fails fast and waits in the
    # outbox for the deliver timer, which retries once slurmdbd is back.
    with installed_hooks.configured({"accounting": {"timeout_s": 8.0}}):
        jobs = [
            sbatch(installed_hooks, "-N2", "-n2", "-p", "bare", "--wrap", "srun -N2 -n2 true")
            for _ in range(3)
        ]
        wait_for(
            lambda: any(_state(cluster, job) == "COMPLETING" for job in jobs),
            120,
            0.1,
            what="a job's Epilogs",
        )
        _stop(cluster, "slurmdbd", signal.SIGKILL)
        try:
            wait_for(lambda: all(_state(cluster, job) == "" for job in jobs), 120, what="jobs end")
        finally:
            _start_missing(cluster)

        # What the site's deliver timer does (docs/operations.md): the writes that failed
        # while slurmdbd was away wait in the outbox until a deliver run finds it back.
        def all_delivered() -> bool:
            slurm_ai(installed_hooks, "deliver")
            return all(record_of(installed_hooks, job) for job in jobs)

        wait_for(all_delivered, 180, interval=2, what="every record after slurmdbd is back")
        for job in jobs:
            record = wait_record(installed_hooks, job, {"n1", "n2"}, timeout=30)
            assert record["complete"] is True, (job, record)
            assert _records_in_accounting(installed_hooks, job) == 1, job
        assert "nothing pending" in slurm_ai(installed_hooks, "deliver", "--list").stdout
        # slurmctld resends its backlog to the restarted slurmdbd for a while (seen on Slurm
        # 24.11: for over a minute a new job was not in accounting 9 s after it ended, so its
        # record waited for a deliver run): leave only once a new job's record lands by its
        # own Epilog again, as it does on a healthy cluster.
        deadline = time.monotonic() + 240
        while True:
            probe = sbatch(installed_hooks, "-N1", "-n1", "-p", "bare", "--wrap", "true")
            if _record_within(installed_hooks, probe, 20.0):
                break
            slurm_ai(installed_hooks, "deliver")  # the probe's record, for the tests after
            assert time.monotonic() < deadline, "accounting did not catch up in 240 s"


# ---- slurmd of one node killed before a job

SLURMD_TIMEOUT_S = 60  # scripts/localcluster's SlurmdTimeout


def _node_state(cluster: Any, node: str) -> str:
    """The node's state as `sinfo -N` shows it (one line per partition: the first)."""
    lines = cluster.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"]).stdout.split()
    return lines[0] if lines else ""


def _final_state(cluster: Any, job: str) -> str:
    proc = cluster.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State"])
    return proc.stdout.strip()


@pytest.fixture
def n2_back(installed_hooks: Any) -> Iterator[None]:
    """Whatever the test did to n2: its slurmd running and the node in service after."""
    cluster = installed_hooks.cluster
    quiesce(cluster)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            _start_missing(cluster)
        with contextlib.suppress(Exception):
            if _node_state(cluster, "n2").startswith(("down", "drain")):
                cluster.run(["scontrol", "update", "nodename=n2", "state=resume"])
        with contextlib.suppress(Exception):
            wait_for(lambda: _node_state(cluster, "n2") == "idle", 120, what="n2 idle again")


def test_slurmd_killed_before_a_two_node_job(installed_hooks: Any, n2_back: None) -> None:
    cluster = installed_hooks.cluster
    hooks = installed_hooks
    with hooks.configured({"accounting": {"partial_after_s": 5.0}}):
        _stop(cluster, "slurmd-n2", signal.SIGKILL)
        t0 = time.monotonic()
        # Before slurmctld notices (SlurmdTimeout), n2 still looks idle: the job gets
        # n1 and n2, its srun cannot reach n2 and fails, and the job stays COMPLETING
        # until n2 is declared not responding; then it ends, n2 DOWN.
        early = sbatch(hooks, "-N2", "-n2", "-p", "bare", "--wrap", "srun -N2 -n2 true")
        wait_for(lambda: job_done(hooks, early), SLURMD_TIMEOUT_S + 180, 1, what="job to end")
        ended_s = time.monotonic() - t0
        assert ended_s < SLURMD_TIMEOUT_S + 120, ended_s
        assert _final_state(cluster, early) in ("FAILED", "NODE_FAIL"), _final_state(cluster, early)
        # n2 is NOT_RESPONDING ("*", reason "Not responding"): DOWN, or MIXED while
        # the controller still counts the failed job's CPUs there (both seen on 22.05).
        seen: list[str] = []

        def n2_not_responding() -> bool:
            proc = cluster.run(["sinfo", "-h", "-N", "-n", "n2", "-o", "%T|%E"])
            seen.append(proc.stdout.split("\n")[0])
            state, _, reason = seen[-1].partition("|")
            return state.endswith("*") and reason == "Not responding"

        wait_for(n2_not_responding, 90, 1, what=f"n2 not responding (seen {set(seen)})")
        assert not _node_state(cluster, "n1").startswith(("drain", "down")), "n1 drained"

        # n1's part waits for n2, then lands incomplete, naming n2 missing and why.
        def early_record() -> dict[str, Any] | None:
            slurm_ai(hooks, "deliver")
            return record_of(hooks, early)

        first = wait_for(early_record, 90, 2, what=f"the record of job {early}")
        assert first["complete"] is False, first
        assert set(first["nodes"]) == {"n1"} and first["missing"] == ["n2"], first
        assert "no Epilog record" in first["absent"]["n2"]["why"], first["absent"]
        assert _records_in_accounting(hooks, early) == 1

        # While n2 is down, a two-node job pends (it is not started on n1 alone).
        later = sbatch(hooks, "-N2", "-n2", "-p", "bare", "--wrap", "srun -N2 -n2 true")
        time.sleep(5)
        assert _state(cluster, later) == "PENDING", _state(cluster, later)
        assert record_of(hooks, later) is None

        _start_missing(cluster)  # slurmd back: n2 returns to service (ReturnToService=2)
        t1 = time.monotonic()
        record = wait_record(hooks, later, {"n1", "n2"}, timeout=180)
        assert time.monotonic() - t1 < 180
        assert record["complete"] is True, record
        assert _final_state(cluster, later) == "COMPLETED"
        assert _records_in_accounting(hooks, later) == 1
        assert not _node_state(cluster, "n2").endswith("*"), _node_state(cluster, "n2")
        # n2's return wrote nothing into the earlier job's record.
        slurm_ai(hooks, "deliver")
        assert record_of(hooks, early) == first
        assert _records_in_accounting(hooks, early) == 1
