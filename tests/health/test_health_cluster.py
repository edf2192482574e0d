"""On the real local Slurm cluster: job scope across n1 and n2, node scope on one
node, and a threshold that cannot be met draining a node through the Prolog."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from health_helpers import needs_mpi, needs_torch

pytestmark = pytest.mark.cluster

HC = [
    "slurm-ai",
    "healthcheck",
    "--min-size",
    "4K",
    "--max-size",
    "1M",
    "--iters",
    "3",
    "--timeout",
    "60",
]


def srun(
    cluster: Any, args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return cluster.run(["srun", "--immediate=60", *args], env=env, timeout=timeout)


@pytest.fixture
def job_config() -> Iterator[tuple[dict[str, str], Path]]:
    """SLURM_AI_CONFIG for the ranks: a private spool both nodes can see (the
    nodes have their own /tmp, so not under pytest's tmp_path). Tests pass it as
    `slurm-ai --config` (see with_config): with the hooks installed, the TaskProlog
    exports the site's SLURM_AI_CONFIG over a job's own."""
    base = Path(tempfile.mkdtemp(prefix="sai-health-test-", dir="/var/tmp"))
    spool = base / "spool"
    spool.mkdir(mode=0o700)
    config = base / "config.toml"
    config.write_text(f'[spool]\ndir = "{spool}"\n[health]\nbudget_s = 60\n')
    os.chmod(base, 0o755)
    try:
        yield {"SLURM_AI_CONFIG": str(config)}, spool
    finally:
        shutil.rmtree(base, ignore_errors=True)


def with_config(env: dict[str, str], args: list[str]) -> list[str]:
    """HC-style args with `--config` from the job_config fixture put after `slurm-ai`."""
    i = args.index("slurm-ai")
    return [*args[: i + 1], "--config", env["SLURM_AI_CONFIG"], *args[i + 1 :]]


def assert_no_gpu_info_per_node(data: dict[str, Any]) -> None:
    """Each node's GPU checks ran once and are in the verdict: here no GPU (info)."""
    gpu = sorted(c["reason"].split(":")[0] for c in data["checks"] if c["check"] == "gpu")
    assert gpu == ["n1", "n2"], data["checks"]
    assert all(
        c["verdict"] == "info" and "no GPU" in c["reason"]
        for c in data["checks"]
        if c["check"] == "gpu"
    )


def result_json(stdout: str) -> dict[str, Any]:
    start = stdout.index("{")
    return json.loads(stdout[start:])


def assert_verified_pass(data: dict[str, Any], backend: str, ranks: int) -> None:
    assert data["verdict"] == "pass", data
    assert data["backend"] == backend and data["ranks"] == ranks
    assert data["busbw_gbps"] > 0 and data["wrong"] == 0
    assert all(row["wrong"] == 0 and row["busbw_gbps"] > 0 for row in data["rows"])


@needs_torch
def test_gloo_job_scope_across_two_nodes(slurm_cluster: Any) -> None:
    out = srun(
        slurm_cluster,
        ["-N2", "-n4", "-w", "n[1-2]", *HC, "--scope", "job", "--backend", "gloo", "--json"],
    )
    assert out.returncode == 0, out.stderr
    data = result_json(out.stdout)
    assert_verified_pass(data, "gloo", 4)
    assert_no_gpu_info_per_node(data)  # 4 ranks, GPU checks once per node


@needs_mpi
def test_mpi_job_scope_across_two_nodes(slurm_cluster: Any) -> None:
    out = srun(
        slurm_cluster,
        [
            "-N2",
            "-n2",
            "-w",
            "n[1-2]",
            "--mpi=pmix",
            *HC,
            "--scope",
            "job",
            "--backend",
            "mpi",
            "--json",
        ],
    )
    assert out.returncode == 0, out.stderr
    data = result_json(out.stdout)
    assert_verified_pass(data, "mpi", 2)
    assert_no_gpu_info_per_node(data)


JOB_MPI = ["-N2", "-n2", "-w", "n[1-2]", "-p", "bare", "--mpi=pmix"]


@needs_mpi
def test_job_scope_fails_on_a_recorded_gpu_fault(
    slurm_cluster: Any, job_config: tuple[dict[str, str], Path], recording: Callable[[str], str]
) -> None:
    """The test hook --nvml-recording feeds each node's GPU checks with a recorded
    H100 node whose kernel log has Xid 79: the job-scope verdict fails on it."""
    env, _ = job_config
    args = with_config(env, [*JOB_MPI, *HC, "--scope", "job", "--backend", "mpi", "--json"])
    out = srun(slurm_cluster, [*args, "--nvml-recording", recording("xid")], env=env)
    assert out.returncode == 2, (out.stdout, out.stderr)
    data = result_json(out.stdout)
    assert data["verdict"] == "fail" and data["wrong"] == 0
    assert re.match(r"xid: n[12]: gpu7: Xid 79", data["reason"]), data["reason"]
    failed = sorted(c["reason"][:2] for c in data["checks"] if c["verdict"] == "fail")
    assert failed == ["n1", "n2"]
    # A plain job-scope check does not move the XID cursor: the Prolog still sees it.
    again = srun(slurm_cluster, [*args, "--nvml-recording", recording("xid")], env=env)
    assert again.returncode == 2, again.stdout
    ok = srun(slurm_cluster, [*args, "--nvml-recording", recording("ok")], env=env)
    assert ok.returncode == 0, ok.stdout
    healthy = result_json(ok.stdout)
    gpu = sorted(c["reason"] for c in healthy["checks"] if c["check"] == "gpu")
    assert gpu == ["n1: 8 GPUs healthy", "n2: 8 GPUs healthy"], healthy["checks"]


@needs_mpi
def test_job_scope_uses_and_extends_the_job_history(
    slurm_cluster: Any, job_config: tuple[dict[str, str], Path]
) -> None:
    env, spool = job_config
    args = with_config(
        env, [*JOB_MPI, *HC, "--scope", "job", "--backend", "mpi", "--json", "--record"]
    )
    out = srun(slurm_cluster, args, env=env)
    assert out.returncode == 0, (out.stdout, out.stderr)
    history = spool / "health" / "history" / "job" / "bare.json"
    entries = json.loads(history.read_text())["entries"]
    assert len(entries) == 1 and entries[0]["nodes"] == 2 and entries[0]["ranks"] == 2
    assert entries[0]["size_bytes"] == 1048576 and entries[0]["verdict"] == "pass"
    # A history of a much faster fabric: this run is an outlier against it.
    fast = {**entries[0], "busbw_gbps": 1.0e6}
    history.write_text(json.dumps({"version": 1, "entries": [fast] * 12}))
    out = srun(slurm_cluster, args, env=env)
    assert out.returncode == 2, (out.stdout, out.stderr)
    data = result_json(out.stdout)
    assert data["calibration"]["samples"] == 12 and data["calibration"]["median"] == 1.0e6
    assert data["reason"].startswith("allreduce-outlier: busbw "), data["reason"]
    # The failed run was recorded, but failed runs never enter the statistics.
    assert len(json.loads(history.read_text())["entries"]) == 13


@pytest.mark.parametrize(
    "backend", [pytest.param("mpi", marks=needs_mpi), pytest.param("gloo", marks=needs_torch)]
)
def test_node_scope_on_one_node(slurm_cluster: Any, backend: str) -> None:
    out = srun(
        slurm_cluster,
        ["-N1", "-n1", "-w", "n2", *HC, "--scope", "node", "--backend", backend, "--json"],
    )
    assert out.returncode == 0, out.stderr
    assert_verified_pass(result_json(out.stdout), backend, 2)


@needs_mpi
def test_job_scope_hung_rank_times_out_and_leaves_nothing(slurm_cluster: Any) -> None:
    # A mark of this run: another suite on the machine may run this very test.
    mark = uuid.uuid4().hex
    env = {"SLURM_AI_HEALTH_FAULT": "hang:1", "SLURM_AI_TEST_RUN": mark}
    out = srun(
        slurm_cluster,
        [
            "-N2",
            "-n2",
            "-w",
            "n[1-2]",
            "--mpi=pmix",
            *HC,
            "--scope",
            "job",
            "--backend",
            "mpi",
            "--timeout",
            "5",
        ],
        env=env,
    )
    assert out.returncode == 4, (out.stdout, out.stderr)
    assert "verdict: timeout" in out.stdout
    time.sleep(1)
    left = [
        p
        for p in psutil.process_iter(["cmdline", "environ"])
        if "healthcheck" in " ".join(p.info["cmdline"] or [])
        and (p.info["environ"] or {}).get("SLURM_AI_TEST_RUN") == mark
    ]
    assert left == []


def _job_state(cluster: Any, job_id: str) -> tuple[str, str]:
    out = cluster.run(["squeue", "-h", "-j", job_id, "-o", "%T|%r"]).stdout.strip()
    state, _, reason = out.partition("|")
    return state, reason


@needs_mpi
def test_impossible_floor_drains_the_node_and_requeues_the_job(
    slurm_cluster: Any, installed_hooks: Any
) -> None:
    health = {
        "enabled": True,
        "when": "every_job",
        "backend": "mpi",
        "min_size": "4K",
        "cpu_max_size": "64K",
        "iters": 1,
        "min_busbw_gbps": 1e9,
        "budget_s": 60,
    }
    steps = {"steps": ["topology", "health", "agent", "energy"]}
    job_id = ""
    try:
        with installed_hooks.configured({"hooks": steps, "health": health}):
            sub = slurm_cluster.run(
                [
                    "sbatch",
                    "--parsable",
                    "-N1",
                    "-w",
                    "n1",
                    "-p",
                    "bare",
                    "-o",
                    "/dev/null",
                    "--wrap",
                    "true",
                ]
            )
            assert sub.returncode == 0, sub.stderr
            job_id = sub.stdout.strip().split(";")[0]
            deadline = time.monotonic() + 90
            reasons = ""
            while time.monotonic() < deadline:
                reasons = slurm_cluster.run(["sinfo", "-R", "-h", "-o", "%n|%E"]).stdout
                if re.search(r"^n1\|slurm_ai: ", reasons, re.M):
                    break
                time.sleep(1)
            assert re.search(
                r"^n1\|slurm_ai: allreduce-busbw: busbw [0-9.]+ GB/s", reasons, re.M
            ), reasons + installed_hooks.log_text()[-2000:]
            # The job is requeued (held), not lost.
            deadline = time.monotonic() + 60
            state = ""
            while time.monotonic() < deadline:
                state, why = _job_state(slurm_cluster, job_id)
                if state == "PENDING":
                    break
                time.sleep(1)
            assert state == "PENDING", (state, why)
            acct = slurm_cluster.run(["scontrol", "show", "job", job_id]).stdout
            assert "Requeue=1" in acct or "Restarts=1" in acct or "held" in why.lower(), acct
    finally:
        if job_id:
            slurm_cluster.run(["scancel", job_id])
        slurm_cluster.run(["scontrol", "update", "nodename=n1", "state=resume"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "n1" not in slurm_cluster.run(["sinfo", "-R", "-h", "-o", "%n"]).stdout:
                break
            time.sleep(0.5)
