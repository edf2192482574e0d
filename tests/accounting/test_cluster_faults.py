"""Daemons lost around a job's end, on the real cluster: the record still lands once.

- slurmctld restarted while both nodes' Epilogs run (a site Epilog script beside ours
  keeps the job COMPLETING for a few seconds, so the restart falls inside the window;
  slurmd runs the Epilog= glob in reverse alphabetical order, so ours runs after it,
  while the controller is away or just back);
- slurmd of one node killed right after the job's record landed, then started again:
  the restart neither writes a second record nor changes the one there;
- slurmdbd killed (SIGKILL) while the Epilogs of a few jobs write their records, and
  started again a few seconds later: every job gets one complete record.

- the spool's disk full while a job's Prolog and Epilog run (a 1 MiB tmpfs mounted over
  the spool directory in n1's mount namespace, filled until ENOSPC): the job runs and
  ends on time, no drain, each hook logs one line naming the spool and "No space left
  on device", the node files wait in [accounting] hold_dir (another filesystem), and
  once space is freed one `slurm-ai deliver` on the node lands the record, complete,
  once; a second pass changes nothing;
- slurmd of one node killed before a two-node job: the job ends once the node is found
  not responding, its other node's part lands naming it missing; a job submitted while
  the node is down pends, runs once slurmd is back, and gets one complete record.

The lost-node case (slurmd killed during the job) is in test_cluster_delivery's
incomplete-record tests.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from hooks_fixture import hold_dir, quiesce, replace_file

from tests.admin.clusterhelp import node_namespace_argv

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


# ---- the spool's disk full


@dataclass
class FullSpool:
    """A full tmpfs mounted over the spool directory in n1's mount namespace (each node
    of the local cluster has its own, private: a mount made from here would not reach
    n1). Only the spool directory itself: the hold directory is on another filesystem."""

    hooks: Any
    pid: int  # n1's slurmd: its mount namespace has the tmpfs
    spool: Path  # the spool as n1 sees it
    hold: Path  # [accounting] hold_dir as n1 sees it
    filler: Path

    def seen(self, path: Path) -> Path:
        """`path` as n1 sees it, from here."""
        return Path(f"/proc/{self.pid}/root") / path.relative_to("/")

    def on_node(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run argv in n1's mount and UTS namespaces (as the node's deliver timer would)."""
        return subprocess.run(
            node_namespace_argv(self.pid, list(argv), uts=True),
            env=self.hooks.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def slurm_ai(self, *args: str) -> subprocess.CompletedProcess[str]:
        config = str(self.hooks.config_path)
        return self.on_node(sys.executable, "-m", "slurm_ai", "--config", config, *args)

    def free_bytes(self) -> int:
        fs = os.statvfs(self.seen(self.spool))
        return fs.f_bavail * fs.f_frsize


def _fill(path: Path) -> None:
    """Write `path` until its filesystem says ENOSPC."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as handle:
        try:
            for _ in range(4096):  # 256 MiB at most: the tmpfs is 1 MiB
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
            return
    raise AssertionError(f"{path} never filled up")


@pytest.fixture
def full_spool(installed_hooks: Any) -> Iterator[FullSpool]:
    if shutil.which("nsenter") is None:
        pytest.skip("nsenter (util-linux) is needed to mount into a node's namespace")
    cluster = installed_hooks.cluster
    spool = Path(cluster.prefix) / "spool" / "full-spool-test"
    quiesce(cluster)
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(mode=0o700, parents=True)
    pid = _pid(cluster, "slurmd-n1")
    fs = FullSpool(installed_hooks, pid, spool, Path(hold_dir(cluster)), spool / "filler")
    try:
        with _full_tmpfs(fs, spool, fs.filler):
            assert fs.free_bytes() == 0
            # What the hooks hold must not land on the full filesystem.
            fs.seen(fs.hold).mkdir(mode=0o700, parents=True, exist_ok=True)
            assert os.stat(fs.seen(fs.hold)).st_dev != os.stat(fs.seen(spool)).st_dev
            yield fs
    finally:
        quiesce(cluster)
        shutil.rmtree(spool, ignore_errors=True)


@contextlib.contextmanager
def _full_tmpfs(fs: FullSpool, path: Path, filler: Path) -> Iterator[None]:
    """A 1 MiB tmpfs over `path` in n1's namespace, filled up by `filler`."""
    mount = fs.on_node("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(path))
    assert mount.returncode == 0, mount.stderr
    try:
        _fill(fs.seen(filler))
        yield
    finally:
        with contextlib.suppress(Exception):
            fs.on_node("umount", "-l", str(path))


def _job_lines(hooks: Any, job: str) -> list[str]:
    return [line for line in hooks.log_text().splitlines() if f" job={job} " in line]


def test_spool_full_while_hooks_run_is_held_then_lands_once_space_is_freed(
    full_spool: FullSpool,
) -> None:
    fs, hooks = full_spool, full_spool.hooks
    with hooks.configured({"spool": {"dir": str(fs.spool)}}):
        t0 = time.monotonic()
        job = sbatch(hooks, "-N1", "-n1", "-w", "n1", "-p", "bare", "--wrap", "srun -n1 true")
        wait_for(lambda: job_done(hooks, job), 120, what=f"job {job} to end")
        assert time.monotonic() - t0 < 90
        done = hooks.cluster.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State,ExitCode"])
        assert done.stdout.split() == ["COMPLETED|0:0"], done.stdout
        state = hooks.cluster.run(["sinfo", "-h", "-n", "n1", "-o", "%T"]).stdout.strip()
        assert not state.startswith(("drain", "down")), state
        # Prolog and Epilog: one error line each, naming the spool and the error (the
        # Prolog's steps warn about their own spool files besides: the topology cache,
        # the SPANK plugin's task plan).
        lines = _job_lines(hooks, job)
        errors = [line for line in lines if " ERROR " in line]
        assert len(errors) == 2, lines
        assert all(f"spool={fs.spool} " in line for line in errors), errors
        assert all("No space left on device (ENOSPC)" in line for line in errors), errors
        assert "event=prolog_state_held" in errors[0], errors
        assert "event=node_record_held" in errors[1], errors
        assert not [line for line in lines if "internal_error" in line or "Traceback" in line]
        # The Epilog used the held Prolog state; its node record waits in the hold dir.
        held = fs.seen(fs.hold) / job
        assert sorted(os.listdir(held)) == ["node-n1.json", "prolog-n1.json"]
        assert record_of(hooks, job) is None
        listing = fs.slurm_ai("deliver", "--list")
        assert f"{job} held on this node" in listing.stdout, listing
        assert "node record of n1" in listing.stdout, listing.stdout
        doctor = fs.slurm_ai("doctor")
        assert f"{job} held on this node" in doctor.stdout, doctor.stdout
        space = [line for line in doctor.stdout.splitlines() if "spool-space" in line]
        assert len(space) == 1 and space[0].startswith("WARN"), doctor.stdout
        assert "ENOSPC" in space[0], space
        assert f"{fs.spool}: 0.0 MiB free" in space[0], space
        # A deliver pass while the disk is still full: nothing moves, nothing is lost.
        still = fs.slurm_ai("deliver")
        assert still.returncode == 1, still
        assert "nothing pending" not in still.stdout, still
        assert "No space left on device (ENOSPC)" in still.stderr, still
        assert f"1 job(s) held in {fs.hold}" in still.stderr, still
        assert (held / "node-n1.json").exists()
        assert record_of(hooks, job) is None

        fs.seen(fs.filler).unlink()
        freed = fs.slurm_ai("deliver")
        assert freed.returncode == 0, freed
        record = wait_record(hooks, job, {"n1"}, timeout=60)
        assert record["complete"] is True and not record.get("missing"), record
        assert "errors" not in record["nodes"]["n1"], record["nodes"]["n1"]
        assert record["nodes"]["n1"]["time"]["prolog_s"] > 0, record["nodes"]["n1"]
        assert _records_in_accounting(hooks, job) == 1
        assert not held.exists()
        assert "nothing pending" in fs.slurm_ai("deliver", "--list").stdout
        doctor = fs.slurm_ai("doctor")
        space = [line for line in doctor.stdout.splitlines() if "spool-space" in line]
        assert len(space) == 1 and space[0].startswith("PASS"), doctor.stdout
        assert f"PASS  held-records           nothing held in {fs.hold}" in doctor.stdout
        before = admin_comment(hooks, job)
        again = fs.slurm_ai("deliver")
        assert again.returncode == 0, again
        assert admin_comment(hooks, job) == before
        assert _records_in_accounting(hooks, job) == 1


def test_spool_and_hold_dir_both_full_the_epilog_writes_into_accounting(
    full_spool: FullSpool,
) -> None:
    """Every local disk of n1 full (the spool's and the hold directory's): the node's
    part goes straight into AdminComment (accounting/direct.py); the Prolog's state,
    which had nowhere to go, is named missing in the node's record."""
    fs, hooks = full_spool, full_spool.hooks
    fs.on_node("mkdir", "-p", "-m", "0700", str(fs.hold))
    with (
        _full_tmpfs(fs, fs.hold, fs.hold / "filler"),
        hooks.configured({"spool": {"dir": str(fs.spool)}}),
    ):
        job = sbatch(hooks, "-N1", "-n1", "-w", "n1", "-p", "bare", "--wrap", "srun -n1 true")
        wait_for(lambda: job_done(hooks, job), 120, what=f"job {job} to end")
        done = hooks.cluster.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "State,ExitCode"])
        assert done.stdout.split() == ["COMPLETED|0:0"], done.stdout
        record = wait_record(hooks, job, {"n1"}, timeout=60)
        assert record["complete"] is True, record
        assert "no Prolog state for this node" in record["nodes"]["n1"]["errors"], record
        assert _records_in_accounting(hooks, job) == 1
        lines = _job_lines(hooks, job)
        prolog = [line for line in lines if "event=spool_write_failed" in line]
        assert prolog and "hold_error=" in prolog[0] and "ENOSPC" in prolog[0], lines
        [direct] = [line for line in lines if "event=node_record_written_direct" in line]
        assert f"spool={fs.spool} " in direct and "ENOSPC" in direct, direct
        assert "spool_copy=none" in direct, direct
        assert not [line for line in lines if "node_record_lost" in line or "Traceback" in line]
        held = fs.slurm_ai("deliver", "--list")
        assert f"{job} held" not in held.stdout, held.stdout
        state = hooks.cluster.run(["sinfo", "-h", "-n", "n1", "-o", "%T"]).stdout.strip()
        assert not state.startswith(("drain", "down")), state


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
