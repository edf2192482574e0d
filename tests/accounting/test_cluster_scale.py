"""Records of jobs on every node of the local cluster, and of a job that loses a node.

Uses every node of the cluster's default partition, whatever their number
(`scripts/localcluster` starts two today). Counts the accounting calls each job
took from the hooks' log (`event=inline_delivery ... reads=R writes=W`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from clusterjobs import job_done, record_of, sbatch, slurm_ai, wait_for

pytestmark = pytest.mark.cluster


def _partition_nodes(hooks: Any) -> tuple[str, list[str]]:
    """(default partition, its nodes): `sinfo` as the scheduler sees them."""
    proc = hooks.cluster.run(["sinfo", "-h", "-N", "-o", "%N %P"])
    assert proc.returncode == 0, proc.stderr
    default, nodes = "", []
    for line in proc.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 2 and parts[1].endswith("*"):
            default = parts[1].rstrip("*")
            if parts[0] not in nodes:
                nodes.append(parts[0])
    assert default and nodes, proc.stdout
    return default, sorted(nodes)


def _calls(hooks: Any, job: str) -> tuple[int, int]:
    """(reads, writes) the job's Epilogs made to accounting, from the hooks' log."""
    reads = writes = 0
    for line in hooks.log_text().splitlines():
        if f" job={job} " in line and "event=inline_delivery" in line:
            reads += int(m.group(1)) if (m := re.search(r" reads=(\d+)", line)) else 0
            writes += int(m.group(1)) if (m := re.search(r" writes=(\d+)", line)) else 0
    return reads, writes


def _complete_record(hooks: Any, job: str, timeout: float = 120) -> dict[str, Any]:
    return wait_for(
        lambda: (r := record_of(hooks, job)) and r.get("complete") and r,
        timeout,
        what=f"complete record of job {job}",
    )


def _one_job_on_every_node(hooks: Any) -> tuple[str, list[str], dict[str, Any]]:
    partition, nodes = _partition_nodes(hooks)
    n = len(nodes)
    job = sbatch(hooks, "-p", partition, f"-N{n}", f"-n{n}", "--wrap", f"srun -N{n} -n{n} true")
    record = _complete_record(hooks, job)
    wait_for(lambda: _calls(hooks, job)[1] >= 1, 60, what="the inline delivery's log line")
    return job, nodes, record


def test_job_on_every_node_one_complete_record_bounded_calls(installed_hooks):
    job, nodes, record = _one_job_on_every_node(installed_hooks)
    assert record["v"] == 2 and sorted(record["nodes"]) == nodes
    assert record["summary"]["nodes"] == len(nodes)
    totals = [n["energy"]["total_j"] for n in record["nodes"].values()]
    assert record["summary"]["energy"]["total_j"] == pytest.approx(sum(totals), rel=1e-12)
    reads, writes = _calls(installed_hooks, job)
    # One write for the whole job; a read per try while slurmdbd learns of a short
    # job (inline_budget_s 10 s, a try a second): bounded, not growing with nodes.
    assert writes == 1 and 1 <= reads <= 12, (reads, writes)
    shown = slurm_ai(installed_hooks, "job", job)
    assert shown.returncode == 0 and "INCOMPLETE" not in shown.stdout, shown.stdout


def test_node_local_spools_with_gather_dir_one_record_one_write(installed_hooks):
    gather = Path(installed_hooks.cluster.prefix) / "gather"
    gather.mkdir(mode=0o700, exist_ok=True)
    settings = {"shared_spool": False, "gather_dir": str(gather)}
    with installed_hooks.configured({"accounting": settings}):
        job, nodes, record = _one_job_on_every_node(installed_hooks)
        listed = json.loads(slurm_ai(installed_hooks, "deliver", "--list", "--json").stdout)
    assert sorted(record["nodes"]) == nodes and record["complete"] is True
    assert _calls(installed_hooks, job)[1] == 1
    # The node records met in the gather directory; the spool keeps no state of the job.
    assert not (installed_hooks.spool_dir / "jobs" / job).exists()
    assert not (gather / "jobs" / job).exists() and not [w for w in listed if w["job"] == job]


def _pid(prefix: Any, name: str) -> int | None:
    try:
        return int((Path(prefix) / "run" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture
def node_restarted(installed_hooks):
    """Yields (partition, nodes, the node to kill, restart()); restart() starts its
    slurmd again (`localcluster up`) and waits until the node is back in service. It
    runs at the end in any case, so later tests have a healthy cluster."""
    cluster = installed_hooks.cluster
    partition, nodes = _partition_nodes(installed_hooks)
    if len(nodes) < 2:
        pytest.skip("needs two nodes")
    lost = nodes[-1]

    def restart() -> None:
        up = cluster.localcluster("up", timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr

        def back() -> bool:
            proc = cluster.run(["sinfo", "-h", "-n", lost, "-o", "%t"])
            state = proc.stdout.strip()
            if state.startswith(("down", "drain")):
                cluster.run(["scontrol", "update", f"nodename={lost}", "state=resume"])
            return state.startswith(("idle", "mix"))

        wait_for(back, 180, interval=2, what=f"{lost} back in service")

    try:
        yield partition, nodes, lost, restart
    finally:
        restart()


def test_killed_slurmd_record_lands_incomplete_naming_the_node(installed_hooks, node_restarted):
    partition, nodes, lost, restart = node_restarted
    hooks = installed_hooks
    n = len(nodes)
    partial_after_s = 20.0
    with hooks.configured({"accounting": {"partial_after_s": partial_after_s}}):
        job = sbatch(
            hooks, "-p", partition, f"-N{n}", f"-n{n}", "--wrap",
            f"srun -N{n} -n{n} true; sleep 8",
        )  # fmt: skip
        wait_for(
            lambda: (hooks.spool_dir / "jobs" / job / f"prolog-{lost}.json").exists(),
            90,
            what=f"{lost}'s Prolog state",
        )
        pid = _pid(hooks.cluster.prefix, f"slurmd-{lost}")
        assert pid, f"slurmd-{lost} pid file missing"
        os.kill(pid, signal.SIGKILL)  # the node is lost mid-job
        first = hooks.spool_dir / "jobs" / job / f"node-{nodes[0]}.json"
        wait_for(first.exists, 90, what=f"{nodes[0]}'s node record after the job")
        seen_at = time.time()
        # Waiting, and visible as such, before partial_after_s.
        listed = slurm_ai(hooks, "deliver", "--list")
        assert f"{job} waiting for nodes: missing {lost}" in listed.stdout, listed.stdout
        as_json = json.loads(slurm_ai(hooks, "deliver", "--list", "--json").stdout)
        mine = [w for w in as_json if w["job"] == job]
        assert mine and mine[0]["where"] == "nodes" and mine[0]["missing"] == [lost]
        assert lost in mine[0]["prolog_only"] and mine[0]["since"] <= seen_at
        shown = slurm_ai(hooks, "job", job)
        assert "waiting for nodes" in shown.stdout, shown.stdout
        assert record_of(hooks, job) is None
        # After partial_after_s the sweeper delivers it once, incomplete, naming the node.
        time.sleep(max(0.0, first.stat().st_mtime + partial_after_s + 1 - time.time()))
        swept = slurm_ai(hooks, "deliver")
        assert swept.returncode == 0, swept.stdout + swept.stderr
        record = wait_for(lambda: record_of(hooks, job), 60, what="partial record")
        assert record["complete"] is False and record["missing"] == [lost]
        assert sorted(record["nodes"]) == nodes[:-1]
        assert "prolog" in record["absent"][lost]  # its Prolog data kept
        again = slurm_ai(hooks, "deliver")
        assert "delivered=" not in again.stdout, again.stdout  # nothing delivered twice
        shown = slurm_ai(hooks, "job", job)
        assert f"INCOMPLETE: {lost} missing" in shown.stdout, shown.stdout
        assert f"node {lost} (missing)" in shown.stdout and "Prolog ran" in shown.stdout
        # The node comes back. If its Epilog runs late, its part is merged in (the
        # record then complete); either way no node is lost or counted twice.
        restart()
        wait_for(lambda: job_done(hooks, job), 180, interval=2, what="job end")
        late = hooks.spool_dir / "jobs" / job / f"node-{lost}.json"
        if late.exists():
            time.sleep(max(0.0, late.stat().st_mtime + partial_after_s + 1 - time.time()))
            assert slurm_ai(hooks, "deliver").returncode == 0
        record = record_of(hooks, job)
        assert record is not None and set(record["nodes"]) >= set(nodes[:-1])
        assert record["summary"]["nodes"] == len(record["nodes"])
        assert record["complete"] is (lost in record["nodes"])
        assert not (hooks.spool_dir / "jobs" / job).exists()
    assert "event=partial" in hooks.log_text()


def test_summarised_record_round_trips_through_real_accounting(installed_hooks, tmp_path):
    """A 512-node record (synthetic GPU nodes) written into a real job's AdminComment
    with the configured backend: summarised form, read back by sacct, `job` and the
    detail file."""
    import logging

    from slurm_ai.accounting.backend import select_backend
    from slurm_ai.accounting.deliver import deliver_pending
    from slurm_ai.accounting.detail import read_detail
    from slurm_ai.accounting.outbox import OutboxEntry, Spool
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.accounting.synth import node_records, nodelist
    from slurm_ai.config import load_config

    hooks = installed_hooks
    job = sbatch(hooks, "-N1", "-n1", "--wrap", "true")
    before = _complete_record(hooks, job)
    config = load_config(str(hooks.config_path))
    settings = AccountingSettings.from_config(config)
    settings = AccountingSettings(
        backend=settings.backend, max_writes_per_s=0, detail_dir=tmp_path / "detail"
    )
    backend = select_backend(
        settings.backend, config.slurm_env(), settings.timeout_s, settings.sacctmgr_folds_case
    )
    nodes = node_records(512, seed=512)
    spool = Spool(tmp_path / "spool", logging.getLogger("test"))
    meta = {
        "id": job,
        "nodes_expected": 512 + 1,
        "nodelist": nodelist(512) + "," + before["job"]["nodelist"],
    }
    spool.put(OutboxEntry(job=meta, nodes=nodes))
    stats = deliver_pending(spool, backend, settings, logging.getLogger("test"))
    assert (stats.reads, stats.writes, stats.delivered) == (1, 1, 1), stats
    record = record_of(hooks, job)
    assert record is not None and record["v"] == 2 and "detail" in record
    assert record["complete"] is True and record["summary"]["nodes"] == 513
    full = read_detail(record["detail"])
    assert set(full) == set(nodes) | set(before["nodes"])  # the earlier node kept
    shown = slurm_ai(hooks, "job", job)
    assert "summarised" in shown.stdout and "(verified)" in shown.stdout, shown.stdout
    assert "energy/node" in shown.stdout and "busbw/node" in shown.stdout
    info = json.loads(slurm_ai(hooks, "job", job, "--json", "--all-nodes").stdout)
    assert info["detail_status"] == "verified" and len(info["detail_nodes"]) == 513
