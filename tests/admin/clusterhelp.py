"""Small helpers for the admin and template cluster tests: submit, wait, read records."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slurm_ai.admin.hookfiles import with_hook_block
from slurm_ai.errors import RecordError
from slurm_ai.record import AdminComment

SEP = "\x1f"
BEGIN = "# BEGIN slurm-ai install (tests/admin)"
END = "# END slurm-ai install (tests/admin)"


def paste_lines(install_output: str) -> list[str]:
    """The slurm.conf lines `slurm-ai install` printed ready to paste."""
    lines = install_output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("paste into slurm.conf"):
            return [ln for ln in lines[i + 1 :] if "=" in ln and not ln.startswith(" ")]
    return []


def with_block(text: str, block: list[str]) -> str:
    """hooks.conf with this install's lines as the cluster's only slurm-ai hooks."""
    return with_hook_block(text, BEGIN, END, block)


def sacct_fields(cluster: Any, job_id: str, fields: str) -> list[str] | None:
    proc = cluster.run(
        ["sacct", "-X", "-n", "-P", f"--delimiter={SEP}", "-j", job_id, "-o", f"JobIDRaw,{fields}"]
    )
    for line in proc.stdout.splitlines():
        parts = line.split(SEP)
        if parts and parts[0] == job_id:
            return parts[1:]
    return None


def record_of(cluster: Any, job_id: str) -> dict[str, Any] | None:
    row = sacct_fields(cluster, job_id, "AdminComment")
    try:
        return AdminComment.parse(row[0] if row else None).record()
    except RecordError:
        return None


def wait_for(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: last {value!r}")


def wait_record(cluster: Any, job_id: str, nodes: int, timeout: float = 180) -> dict[str, Any]:
    def complete() -> dict[str, Any] | None:
        record = record_of(cluster, job_id)
        return record if record and len(record.get("nodes", {})) >= nodes else None

    return wait_for(complete, timeout, f"the record of job {job_id}")


def wait_done(cluster: Any, job_ids: list[str], timeout: float = 240) -> dict[str, str]:
    def states() -> dict[str, str] | None:
        got = {j: (sacct_fields(cluster, j, "State") or ["?"])[0] for j in job_ids}
        done = all(s.split()[0] not in ("PENDING", "RUNNING", "?", "") for s in got.values())
        return got if done else None

    return wait_for(states, timeout, f"jobs {job_ids} to end")


def read_output(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def node_namespace_argv(pid: int, argv: list[str], *, uts: bool = False) -> list[str]:
    """`argv` run in the mount (and UTS) namespace of process `pid`, a node's slurmd.
    `--root` and `--wd` matter where the cluster runs inside a chroot (a fresh root of
    scripts/check-debian13): entering a mount namespace resets root and working directory
    to the namespace's own, the machine's /, where the instance's paths do not exist."""
    flags = ["--mount", "--root", "--wd"] + (["--uts"] if uts else [])
    return ["nsenter", "--target", str(pid), *flags, "--", *argv]
