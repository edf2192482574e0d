"""On the real local cluster: agents on n1 and n2, a two-node CPU job, its usage.

The agents run as subprocesses of the test (one per node, each with its own
store under the instance's shared directory, which both node namespaces see).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agenthelp import BUSY, wait_for

from slurm_ai.agent.hook import epilog_step
from slurm_ai.agent.store import SampleStore, store_path
from slurm_ai.config import Config
from slurm_ai.errors import SlurmAIError
from slurm_ai.hooks.context import HookContext
from slurm_ai.record import AdminComment
from slurm_ai.slurmenv import JobEnv

pytestmark = pytest.mark.cluster
NODES = ("n1", "n2")
INTERVAL = 0.3
MEM = 64 << 20


class Agents:
    def __init__(self, root: Path, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        self.root = root
        self.procs = procs

    @property
    def store_template(self) -> str:
        return str(self.root / "{node}")

    def job_rows(self, node: str, job: str, min_rss: int = 0) -> int:
        """Samples of `job` on `node` (with at least `min_rss` bytes resident)."""
        try:
            with SampleStore(self.root / node, readonly=True) as store:
                query = "SELECT COUNT(*) FROM job WHERE job = ? AND rss >= ?"
                return int(store.query(query, (job, min_rss))[0][0])
        except SlurmAIError:
            return 0


@pytest.fixture
def agents(slurm_cluster: Any, agent_process: Callable[..., Any]) -> Iterator[Agents]:
    root = slurm_cluster.shared_dir / f"agent-test-{uuid.uuid4().hex[:8]}"
    root.mkdir(mode=0o700)
    procs = {
        node: agent_process("--node", node, "--store", str(root / "{node}"),
                            "--interval", str(INTERVAL))
        for node in NODES
    }  # fmt: skip
    assert wait_for(lambda: all(store_path(root / n).exists() for n in NODES), timeout=30)
    yield Agents(root, procs)
    import shutil

    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    shutil.rmtree(root, ignore_errors=True)


def _script(cluster: Any, busy_s: float) -> Path:
    task = cluster.shared_dir / "agent_busy.py"
    task.write_text(BUSY)
    script = cluster.shared_dir / f"agent_job_{uuid.uuid4().hex[:8]}.sh"
    import sys

    script.write_text(f"#!/bin/sh\nsrun {sys.executable} {task} {busy_s} {MEM} 0\n")
    script.chmod(0o755)
    return script


def _submit(cluster: Any, busy_s: float, *extra: str, env: dict[str, str] | None = None) -> str:
    out = cluster.shared_dir / "agent_job_%j.out"
    proc = cluster.run(
        ["sbatch", "--parsable", "-N2", "--ntasks-per-node=1", "-c1", "-p", "bare",
         "-o", str(out), *extra, str(_script(cluster, busy_s))], env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def _times(cluster: Any, job: str) -> tuple[float, float]:
    """The job's start and end from accounting, once slurmdbd has the end (on a loaded
    machine sacct may still say "Unknown" after `sbatch --wait` returned)."""
    times: list[tuple[float, float]] = []

    def recorded() -> bool:
        out = cluster.run(
            ["sacct", "-X", "-n", "-P", "-j", job, "-o", "Start,End"],
            env={"SLURM_TIME_FORMAT": "%s"},
        ).stdout.split()
        fields = out[0].split("|") if out else []
        if len(fields) == 2 and all(f.isdigit() for f in fields):
            times.append((float(fields[0]), float(fields[1])))
        return bool(times)

    assert wait_for(recorded, timeout=60, step=0.5), f"job {job} has no end in sacct"
    return times[0]


def _done(cluster: Any, job: str) -> bool:
    proc = cluster.run(["squeue", "-h", "-j", job, "-o", "%T"])
    return proc.returncode == 0 and not proc.stdout.strip()


def _usage(agents: Agents, job: str, node: str, start: float, end: float) -> dict[str, Any]:
    env = {"SLURM_JOB_ID": job, "SLURMD_NODENAME": node, "SLURM_JOB_UID": str(os.getuid()),
           "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_CPUS_PER_NODE": "1(x2)"}  # fmt: skip
    ctx = HookContext(
        config=Config(
            path=None, data={"agent": {"store_dir": agents.store_template, "interval_s": INTERVAL}}
        ),
        job=JobEnv.from_environ(env),
        node=node,
        spool_dir=agents.root,
        log=logging.getLogger("test"),
        prolog_state={"agent": {"_start": start}},
    )
    return epilog_step(ctx, env, now=end)["usage"]


def test_two_node_cpu_job_usage_from_real_samples(slurm_cluster: Any, agents: Agents) -> None:
    job = _submit(slurm_cluster, 4.0, "--wait")
    start, end = _times(slurm_cluster, job)
    for node in NODES:
        usage = _usage(agents, job, node, start, end)
        assert usage["cpu"]["samples"] > 3, usage
        assert usage["cpu"]["ncpus"] == 1
        # 4 CPU-s of busy loop (CPU time: a loaded machine stretches the wall time) on 1
        # CPU; the samples may miss the last interval before the task ends.
        assert 3.0 <= usage["cpu"]["cpu_s"] <= usage["window"]["s"] * 1.05, usage
        assert 0.0 < usage["cpu_efficiency"] <= 1.05, usage
        assert usage["peak_rss_bytes"] >= MEM, usage
        assert usage["coverage"] > 0.9, usage
        assert usage["cpu"]["max_procs"] >= 1


def test_agent_killed_mid_job_gives_partial_coverage(slurm_cluster: Any, agents: Agents) -> None:
    job = _submit(slurm_cluster, 8.0)
    # Kill it once it has sampled the job holding its memory (a loaded machine can take a
    # few samples before the task has even allocated it).
    assert wait_for(lambda: agents.job_rows("n1", job, min_rss=MEM) >= 2, timeout=60)
    agents.procs["n1"].send_signal(signal.SIGKILL)  # no clean shutdown
    agents.procs["n1"].wait(timeout=10)
    assert wait_for(lambda: _done(slurm_cluster, job), timeout=90)
    start, end = _times(slurm_cluster, job)
    killed = _usage(agents, job, "n1", start, end)
    assert 0.0 < killed["coverage"] < 0.9, killed
    assert killed["gaps_total"] >= 1 and killed["gaps"][-1][1] == round(end, 1)
    assert any("gaps not filled" in note for note in killed["notes"])
    assert killed["peak_rss_bytes"] >= MEM  # what was sampled is kept
    alive = _usage(agents, job, "n2", start, end)
    assert alive["coverage"] > 0.9


def _record(cluster: Any, job: str) -> dict[str, Any] | None:
    out = cluster.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "AdminComment"]).stdout.strip()
    try:
        return AdminComment.parse(out.splitlines()[0] if out else None).record()
    except Exception:
        return None


def test_end_to_end_record_holds_usage(
    slurm_cluster: Any, agents: Agents, installed_hooks: Any
) -> None:
    with installed_hooks.configured(
        {"agent": {"store_dir": agents.store_template, "interval_s": INTERVAL}}
    ):
        job = _submit(slurm_cluster, 4.0, "--wait", env=installed_hooks.env())
        box: dict[str, Any] = {}

        def complete() -> bool:
            record = _record(slurm_cluster, job)
            if record and set(record.get("nodes", {})) >= set(NODES):
                box["record"] = record
                return True
            return False

        assert wait_for(complete, timeout=120, step=1.0), installed_hooks.log_text()[-3000:]
    for node in NODES:
        usage = box["record"]["nodes"][node]["usage"]
        assert usage["source"] == "agent" and usage["window"]["from"] == "prolog", usage
        assert usage["cpu"]["samples"] > 3
        # The TaskProlog pins both "nodes'" tasks to CPU 0 of this one machine, so
        # each gets at most half a core: a lower bound than in the direct test.
        assert 0.1 < usage["cpu_efficiency"] <= 1.05, usage
        assert usage["peak_rss_bytes"] >= MEM
        assert usage["coverage"] > 0.8


def test_end_to_end_agent_down_epilog_does_not_fail(
    slurm_cluster: Any, agents: Agents, installed_hooks: Any
) -> None:
    for proc in agents.procs.values():
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    missing = str(agents.root / "nothing-here-{node}")
    with installed_hooks.configured({"agent": {"store_dir": missing}}):
        job = _submit(slurm_cluster, 1.0, "--wait", env=installed_hooks.env())
        box: dict[str, Any] = {}

        def complete() -> bool:
            record = _record(slurm_cluster, job)
            if record and set(record.get("nodes", {})) >= set(NODES):
                box["record"] = record
                return True
            return False

        assert wait_for(complete, timeout=120, step=1.0), installed_hooks.log_text()[-3000:]
    states = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %t"]).stdout
    assert "drain" not in states
    for node in NODES:
        usage = box["record"]["nodes"][node]["usage"]
        assert usage["coverage"] == 0.0 and "no agent data" in usage["notes"][0]
