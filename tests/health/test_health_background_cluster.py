"""On the real local cluster: the full check off the jobs' critical path.

- slurmd itself runs our HealthCheckProgram: an impossible floor drains the
  nodes with our reason, lifting it resumes them, and a node an admin drained
  for another reason stays drained;
- the Epilog refreshes a stale verdict; the next job's Prolog then uses it
  (cached, with its age) without starting an all-reduce;
- a job whose check could not run carries "unchecked" and the reason in its record.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from health_helpers import needs_mpi
from hooks_fixture import change_hooks_conf, replace_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "accounting"))
from clusterjobs import record_of, sbatch, wait_for

from slurm_ai.admin.hookfiles import render_health_check_lines, render_shim

pytestmark = pytest.mark.cluster

# mpi on CPUs: a quick, real all-reduce between two local ranks.
CHECK = {
    "enabled": True,
    "backend": "mpi",
    "min_size": "4K",
    "cpu_max_size": "64K",
    "iters": 1,
    "local_bench": "off",
    # These tests are about who runs the check and acts on it: fixed floors only.
    # The partition's history from other tests, on a busy 2-core machine, would
    # make a calibrated outlier (and a drain) a matter of luck.
    "calibrate": False,
}
STEPS = {"steps": ["topology", "health", "agent", "energy"]}
PROGRAM_BEGIN = "# BEGIN slurm-ai HealthCheckProgram (test)"
PROGRAM_END = "# END slurm-ai HealthCheckProgram (test)"


def _reasons(cluster: Any) -> dict[str, str]:
    out = cluster.run(["sinfo", "-R", "-h", "-N", "-o", "%N|%E"]).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


@pytest.fixture(autouse=True)
def resume_our_drains(installed_hooks: Any) -> Iterator[None]:
    """A failing test must not leave a node drained by us for the tests after it."""
    yield
    for node, reason in _reasons(installed_hooks.cluster).items():
        if reason.startswith("slurm_ai: "):
            installed_hooks.cluster.run(["scontrol", "update", f"nodename={node}", "state=resume"])


@pytest.fixture
def health_program(installed_hooks: Any) -> Iterator[Any]:
    """Our HealthCheckProgram in slurm.conf (every 10 s) for the test's duration."""
    cluster = installed_hooks.cluster
    layout = installed_hooks.layout
    replace_file(layout.healthcheck_shim, render_shim(layout, "healthcheck"), 0o755)
    hooks_conf = Path(cluster.prefix) / "etc" / "hooks.conf"
    original = hooks_conf.read_text()
    block = render_health_check_lines(layout, interval=10)
    change_hooks_conf(cluster, f"{original.rstrip()}\n{PROGRAM_BEGIN}\n{block}{PROGRAM_END}\n")
    try:
        yield installed_hooks
    finally:
        change_hooks_conf(cluster, original)
        for node in ("n1", "n2"):
            cluster.run(["scontrol", "update", f"nodename={node}", "state=resume"])


@needs_mpi
def test_health_check_program_drains_resumes_and_leaves_an_admins_drain(
    health_program: Any,
) -> None:
    hooks, cluster = health_program, health_program.cluster
    with hooks.configured({"hooks": STEPS, "health": {**CHECK, "min_busbw_gbps": 1e9}}):
        drained = wait_for(
            lambda: (
                (r := _reasons(cluster)).get("n1", "").startswith("slurm_ai: ")
                and r.get("n2", "").startswith("slurm_ai: ")
                and r
            ),
            timeout=120,
            what="both nodes drained by the HealthCheckProgram",
        )
        assert re.match(r"slurm_ai: allreduce-busbw: busbw [0-9.]+ GB/s", drained["n1"]), drained
        # An admin takes n2 for maintenance: its reason is no longer ours.
        cluster.run(["scontrol", "update", "nodename=n2", "state=drain", "reason=admin: PSU"])
        with hooks.configured({"hooks": STEPS, "health": CHECK}):  # the floor is lifted
            wait_for(
                lambda: "n1" not in _reasons(cluster),
                timeout=120,
                what="n1 resumed by the HealthCheckProgram",
            )
            # Two more rounds of checks: n2 passes them too, and stays drained.
            log_mark = len(hooks.log_text())
            wait_for(
                lambda: hooks.log_text()[log_mark:].count("event=left_as_is") >= 2,
                timeout=90,
                what="two checks of n2 that left it drained",
            )
            assert _reasons(cluster).get("n2", "").startswith("admin: PSU")
    log = hooks.log_text()
    assert "healthcheck[" in log and "event=resumed was=slurm_ai: allreduce-busbw" in log


def test_a_restarted_node_is_checked_before_it_takes_jobs(installed_hooks: Any) -> None:
    """slurmd runs the program once at start-up, before it registers, then every
    HealthCheckInterval. With the interval an hour, only the start-up run can drain
    a restarted n1, and n2, not restarted, keeps its state."""
    import os
    import signal

    cluster, layout = installed_hooks.cluster, installed_hooks.layout
    replace_file(layout.healthcheck_shim, render_shim(layout, "healthcheck"), 0o755)
    hooks_conf = Path(cluster.prefix) / "etc" / "hooks.conf"
    original = hooks_conf.read_text()
    block = render_health_check_lines(layout, interval=3600)
    try:
        with installed_hooks.configured({"hooks": STEPS, "health": CHECK}):
            change_hooks_conf(
                cluster, f"{original.rstrip()}\n{PROGRAM_BEGIN}\n{block}{PROGRAM_END}\n"
            )
        # From now on every check fails; the next run must be n1's start-up run.
        with installed_hooks.configured(
            {"hooks": STEPS, "health": {**CHECK, "min_busbw_gbps": 1e9}}
        ):
            pid_file = Path(cluster.prefix) / "run" / "slurmd-n1.pid"
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            wait_for(
                lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="slurmd-n1 to stop"
            )
            up = cluster.localcluster("up", timeout=300)
            assert up.returncode == 0, up.stdout + up.stderr
            reasons = wait_for(
                lambda: (r := _reasons(cluster)).get("n1", "").startswith("slurm_ai: ") and r,
                timeout=120,
                what="n1 drained by its start-up check",
            )
            assert re.match(r"slurm_ai: allreduce-busbw: busbw [0-9.]+ GB/s", reasons["n1"])
            assert "n2" not in reasons, reasons  # no periodic run drained n2
    finally:
        change_hooks_conf(cluster, original)
        cluster.run(["scontrol", "update", "nodename=n1", "state=resume"])


def _job(hooks: Any, node: str = "n1") -> str:
    # The whole node, its GPUs too (production shape): the Epilog refreshes a verdict
    # only on GPUs the job had, never on GPUs other jobs may be using.
    return sbatch(hooks, "-N1", "-n1", "-w", node, "-p", "bare", "--exclusive", "--wrap", "true")


def _node_health(hooks: Any, job: str) -> dict[str, Any]:
    record = wait_for(
        lambda: (r := record_of(hooks, job)) and r.get("complete") and r,
        timeout=120,
        what=f"record of job {job}",
    )
    return record["nodes"]["n1"]["health"]


@needs_mpi
def test_epilog_refreshes_a_stale_verdict_and_the_next_prolog_uses_it(
    installed_hooks: Any,
) -> None:
    hooks = installed_hooks
    last = hooks.spool_dir / "health" / "last.json"
    stale = {
        "boot_id": None,
        "checked_at": time.time() - 30 * 3600,
        "health": {"verdict": "pass", "checked_at": time.time() - 30 * 3600},
    }
    last.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    last.write_text(json.dumps(stale))
    last.chmod(0o600)
    with hooks.configured({"hooks": STEPS, "health": {**CHECK, "max_age_hours": 24}}):
        first = _job(hooks)
        health = _node_health(hooks, first)
        assert health["provenance"]["source"] == "unchecked"
        assert re.match(r"the last full check is 30\.0 h old", health["provenance"]["why"])
        assert health["verdict"] == "unchecked"
        # The Epilog ran the full check on the job's (free) CPUs/GPUs and stored it.
        assert health["refresh"]["verdict"] == "pass", health
        stored = json.loads(last.read_text())
        assert time.time() - stored["checked_at"] < 300
        assert stored["health"]["backend"] == "mpi"
        log_mark = len(hooks.log_text())
        second = _job(hooks)
        health = _node_health(hooks, second)
        assert health["provenance"]["source"] == "cached"
        assert 0 <= health["provenance"]["age_s"] < 300
        assert health["verdict"] == "pass" and health["backend"] == "mpi"
        assert "refresh" not in health
        log = hooks.log_text()[log_mark:]
        prolog = [ln for ln in log.splitlines() if f"job={second}" in ln and " prolog[" in ln]
        assert any("event=health_quick" in ln for ln in prolog), prolog
        # No all-reduce in the second job's Prolog or Epilog.
        assert not any(
            re.search(r"event=health(_refreshed)? verdict", ln) for ln in log.splitlines()
        )


@needs_mpi
def test_a_check_that_could_not_run_is_recorded_unchecked_with_the_reason(
    installed_hooks: Any,
) -> None:
    hooks = installed_hooks
    broken = {**CHECK, "when": "every_job", "mpirun": "/nonexistent/mpirun"}
    with hooks.configured({"hooks": STEPS, "health": broken}):
        job = _job(hooks)
        health = _node_health(hooks, job)
    assert health["verdict"] == "error"
    assert health["provenance"]["source"] == "unchecked"
    assert health["provenance"]["why"] == (
        "error: allreduce: backend mpi needs mpi4py, numpy and mpirun, not found here"
    )
    assert "n1" not in _reasons(hooks.cluster)  # our own failure never drains
