"""On the real local Slurm cluster: job scope across n1 and n2, node scope on one
node, and a threshold that cannot be met draining a node through the Prolog."""

from __future__ import annotations

import json
import re
import time
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


def srun(cluster: Any, args: list[str], env: dict[str, str] | None = None, timeout: float = 120):
    return cluster.run(["srun", "--immediate=60", *args], env=env, timeout=timeout)


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
        ["-N2", "-n2", "-w", "n[1-2]", *HC, "--scope", "job", "--backend", "gloo", "--json"],
    )
    assert out.returncode == 0, out.stderr
    assert_verified_pass(result_json(out.stdout), "gloo", 2)


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
    assert_verified_pass(result_json(out.stdout), "mpi", 2)


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
    env = {"SLURM_AI_HEALTH_FAULT": "hang:1"}
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
        and (p.info["environ"] or {}).get("SLURM_AI_HEALTH_FAULT") == "hang:1"
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
