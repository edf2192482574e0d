"""Helpers for submitting jobs and reading their records back in cluster tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from slurm_ai.errors import RecordError
from slurm_ai.record import AdminComment

SEP = "\x1f"


def sbatch(hooks: Any, *args: str) -> str:
    proc = hooks.cluster.run(["sbatch", "--parsable", "-o", "/dev/null", *args], env=hooks.env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def admin_comment(hooks: Any, job_id: str) -> str | None:
    proc = hooks.cluster.run(
        ["sacct", "-X", "-n", "-P", f"--delimiter={SEP}", "-j", job_id, "-o",
         "JobIDRaw,AdminComment"]
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        parts = line.split(SEP, 1)
        if len(parts) == 2 and parts[0] == job_id:
            return parts[1]
    return None


def record_of(hooks: Any, job_id: str) -> dict[str, Any] | None:
    try:
        return AdminComment.parse(admin_comment(hooks, job_id)).record()
    except RecordError:
        return None


def wait_for(
    fn: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: last {value!r}")


def wait_record(hooks: Any, job_id: str, nodes: set[str], timeout: float = 90.0) -> dict[str, Any]:
    def complete() -> dict[str, Any] | None:
        record = record_of(hooks, job_id)
        if record and set(record.get("nodes", {})) >= nodes:
            return record
        return None

    return wait_for(complete, timeout, what=f"record of job {job_id} with nodes {nodes}")


def job_done(hooks: Any, job_id: str) -> bool:
    proc = hooks.cluster.run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    return proc.returncode == 0 and not proc.stdout.strip()


def slurm_ai(hooks: Any, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurm_ai", "--config", str(hooks.config_path), *args],
        env=hooks.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
