"""Delivery on the local cluster: foreign AdminComment, slurmdbd down, corrupt spool files."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from clusterjobs import admin_comment, job_done, record_of, sbatch, slurm_ai, wait_for, wait_record
from core_parts import TOOLCHAIN, TOOLCHAIN_PACKAGES, missing
from hooks_fixture import quiesce

from slurm_ai import spool
from slurm_ai.accounting import native
from slurm_ai.accounting.backend import SlurmCliBackend, sacctmgr_folds_case, slurm_version

pytestmark = pytest.mark.cluster


def _set_foreign_while_running(hooks, text: str) -> str:
    job = sbatch(hooks, "-N1", "-n1", "--wrap", "sleep 4")
    wait_for(
        lambda: (
            hooks.cluster.run(["squeue", "-h", "-j", job, "-o", "%T"]).stdout.strip() == "RUNNING"
        ),
        60,
        what="job running",
    )
    proc = hooks.cluster.run(["scontrol", "update", f"JobId={job}", f"AdminComment={text}"])
    assert proc.returncode == 0, proc.stderr
    return job


def test_foreign_admin_comment_kept(installed_hooks):
    job = _set_foreign_while_running(installed_hooks, "js1:abc123")
    record = wait_record(installed_hooks, job, set())
    assert record["complete"]
    assert admin_comment(installed_hooks, job).split(" ")[0] == "js1:abc123"


def test_mixed_case_foreign_content_kept_by_native_writer(installed_hooks):
    # backend "auto" writes through the native helper (accounting/native.py) where a
    # compiler and the Slurm headers exist: jobstats' JS1 base64 keeps its case.
    if native.find_compiler() is None or native.find_slurm_headers() is None:
        missing(TOOLCHAIN, TOOLCHAIN_PACKAGES)
    job = _set_foreign_while_running(installed_hooks, "JS1:H4sIAbC")
    record = wait_record(installed_hooks, job, set())
    assert record["complete"]
    foreign, token = admin_comment(installed_hooks, job).split(" ")
    assert foreign == "JS1:H4sIAbC" and token.startswith("sai1:")
    assert re.search(rf"event=delivered job={job} .*backend=native", installed_hooks.log_text())


def test_auto_case_folding_matches_this_sacctmgr(installed_hooks):
    # `sacctmgr_folds_case = "auto"` decides from the Slurm version; check the decision
    # against what this cluster's sacctmgr really does (22.05 folds, 24.11 keeps case).
    job = sbatch(installed_hooks, "-N1", "-n1", "--wrap", "true")
    wait_record(installed_hooks, job, set())  # the Epilog is done with the job
    env = {"SLURM_CONF": str(installed_hooks.cluster.slurm_conf)}
    SlurmCliBackend(env=env).write_admin_comment(job, "CaseProbe")
    stored = wait_for(
        lambda: (c := admin_comment(installed_hooks, job)) and c.lower() == "caseprobe" and c,
        30,
        what="the probe comment stored",
    )
    assert sacctmgr_folds_case(None, env) is (stored == "caseprobe"), (slurm_version(env), stored)


def test_mixed_case_foreign_content_is_protected_with_cli(installed_hooks):
    # A sacctmgr that lowercases what it stores (22.05) would destroy JS1 base64: the
    # setting says it folds (auto says so before 24.11), so nothing may be written.
    settings = {"backend": "slurm-cli", "sacctmgr_folds_case": True}
    with installed_hooks.configured({"accounting": settings}):
        job = _set_foreign_while_running(installed_hooks, "JS1:H4sIAbC")
        wait_for(
            lambda: f"event=foreign_protected job={job} " in installed_hooks.log_text(),
            60,
            what="protect log line",
        )
        assert admin_comment(installed_hooks, job) == "JS1:H4sIAbC"
        pending = json.loads(slurm_ai(installed_hooks, "deliver", "--list", "--json").stdout)
        mine = [p for p in pending if p["job"] == job]
        assert mine and "lowercased" in mine[0]["last_error"]
        # Leave no waiting entry (a later delivery with the native writer would write it).
        os.unlink(installed_hooks.spool_dir / "outbox" / f"{job}.json")


def _pid(prefix, name: str) -> int | None:
    try:
        return int((prefix / "run" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture
def slurmdbd_stopped(installed_hooks):
    """Stop this instance's slurmdbd; `localcluster up` restarts it afterwards."""
    cluster = installed_hooks.cluster
    quiesce(cluster)  # an earlier test's job must not lose its delivery to this
    pid = _pid(cluster.prefix, "slurmdbd")
    assert pid, "slurmdbd pid file missing"
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, what="slurmdbd exit")

    def restart() -> None:
        up = cluster.localcluster("up", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr

    try:
        yield restart
    finally:
        pid_now = _pid(cluster.prefix, "slurmdbd")
        if pid_now is None or not Path(f"/proc/{pid_now}").exists():
            restart()


def test_slurmdbd_down_record_waits_then_delivered(installed_hooks, slurmdbd_stopped):
    with installed_hooks.configured({"accounting": {"timeout_s": 8.0}}):
        job = sbatch(installed_hooks, "-N2", "-n2", "--wrap", "srun -N2 -n2 true")
        wait_for(lambda: job_done(installed_hooks, job), 120, what="job end")
        entry = installed_hooks.spool_dir / "outbox" / f"{job}.json"
        wait_for(
            lambda: entry.exists() and json.loads(entry.read_text())["attempts"] > 0,
            60,
            what="record waiting in the outbox",
        )
        waiting = json.loads(entry.read_text())
        assert set(waiting["nodes"]) == {"n1", "n2"}
        down = slurm_ai(installed_hooks, "deliver")
        assert down.returncode == 3, down.stdout + down.stderr
        slurmdbd_stopped()

        def delivered() -> bool:
            slurm_ai(installed_hooks, "deliver")
            return not entry.exists()

        wait_for(delivered, 120, interval=2, what="delivery after slurmdbd restart")
    record = record_of(installed_hooks, job)
    assert record and set(record["nodes"]) == {"n1", "n2"} and record["complete"]
    again = json.loads(slurm_ai(installed_hooks, "deliver", "--json").stdout or "{}")
    assert "writes" not in again  # idempotent: nothing left to write


def test_corrupt_spool_file_quarantined_and_sweep_goes_on(installed_hooks):
    job = sbatch(installed_hooks, "-N1", "-n1", "--wrap", "true")
    first = wait_record(installed_hooks, job, set())
    node = next(iter(first["nodes"]))
    outbox = installed_hooks.spool_dir / "outbox"
    # A corrupt entry beside a valid one that re-delivers this job with an extra node.
    spool.atomic_write_bytes(outbox / "999999.json", b"{not json")
    extra = {
        "v": 1,
        "job": {"id": job, "nodes_expected": 1},
        "nodes": {"nX": {"time": {}}},
        "units": {},
        "queued": time.time(),
        "attempts": 0,
        "last_error": "",
    }
    spool.atomic_write_json(outbox / f"{job}.json", extra)
    out = slurm_ai(installed_hooks, "deliver")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (outbox / "999999.json").exists()
    assert any(
        p.name.endswith("999999.json") for p in (installed_hooks.spool_dir / "corrupt").iterdir()
    )
    assert "event=quarantine" in installed_hooks.log_text()
    record = record_of(installed_hooks, job)
    assert set(record["nodes"]) == {node, "nX"}  # merged: nothing removed
