"""Node records held back while the spool cannot be written.

A spool that cannot be written (a filesystem remounted read-only after errors, a full
disk, a directory an admin made immutable) would lose the node's part of every job
that ends meanwhile: the Epilog builds the node record and then fails to store it.
Instead the hooks write what the spool refused into `[accounting] hold_dir` (default
`/run/slurm-ai/held`: another filesystem, tmpfs on a systemd host, root-only), one
directory per job, the same file names as in the spool:

    <hold_dir>/<jobid>/prolog-<node>.json   the Prolog's state (spool unwritable at start)
    <hold_dir>/<jobid>/node-<node>.json     the Epilog's node record

and log `event=node_record_held` (`event=prolog_state_held`). The next `slurm-ai
deliver` on that node (the timer) whose spool is writable again moves them into the
spool and hands the node record over as the Epilog would have; delivery merges it
with the record already in accounting (`missing` shrinks, `complete` becomes true).
`slurm-ai deliver --list` shows held jobs. What is held in a tmpfs is lost at a
reboot; the log line names it. Where the hold directory refuses too, the Epilog writes
its node record straight into accounting (direct.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai import spool as spoolmod
from slurm_ai.accounting.outbox import Spool, valid_job_id, valid_node
from slurm_ai.errors import SpoolError

KINDS = ("prolog", "node")


@dataclass
class HeldJob:
    job_id: str
    nodes: list[str] = field(default_factory=list)  # nodes with a held node record
    prolog_only: list[str] = field(default_factory=list)  # held Prolog state only
    since: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job": self.job_id, "where": "held", "nodes": self.nodes}
        if self.prolog_only:
            out["prolog_only"] = self.prolog_only
        if self.since is not None:
            out["since"] = self.since
        return out

    def line(self, now: float) -> str:
        text = f"{self.job_id} held on this node (spool was not writable):"
        if self.nodes:
            text += f" node record of {','.join(self.nodes)}"
        if self.prolog_only:
            text += f"{';' if self.nodes else ''} Prolog state of {','.join(self.prolog_only)}"
        if self.since is not None:
            text += f"; since {max(0, round(now - self.since))} s ago"
        return text + "; delivered by the next `slurm-ai deliver` once the spool is writable"


def hold(hold_dir: Path, job_id: str, node: str, kind: str, data: dict[str, Any]) -> Path:
    """Write a file the spool refused into the hold directory; SpoolError if that fails too."""
    if not valid_job_id(job_id) or not valid_node(node) or kind not in KINDS:
        raise SpoolError(f"not holding {kind} file of job {job_id[:40]!r} node {node[:40]!r}")
    spoolmod.ensure_private_dir(hold_dir)
    job_dir = spoolmod.ensure_private_dir(hold_dir / job_id)
    path = job_dir / f"{kind}-{node}.json"
    spoolmod.atomic_write_json(path, data)
    return path


def read_held_prolog_state(hold_dir: Path, job_id: str, node: str) -> dict[str, Any]:
    """The Prolog state held for this node ({} if none or unreadable)."""
    if not valid_job_id(job_id) or not valid_node(node):
        return {}
    try:
        data = spoolmod.read_json(hold_dir / job_id / f"prolog-{node}.json")
    except (FileNotFoundError, SpoolError):
        return {}
    return data if isinstance(data, dict) else {}


def forget_prolog_state(hold_dir: Path, job_id: str, node: str) -> None:
    """Drop a held Prolog state the Epilog has used (and the job's hold dir once empty)."""
    if not valid_job_id(job_id) or not valid_node(node):
        return
    job_dir = hold_dir / job_id
    with contextlib.suppress(OSError):
        (job_dir / f"prolog-{node}.json").unlink()
    with contextlib.suppress(OSError):
        job_dir.rmdir()


def held_jobs(hold_dir: Path) -> list[HeldJob]:
    """What the hold directory keeps, per job (read-only; damaged entries skipped)."""
    out: list[HeldJob] = []
    for job_id in _listdir(hold_dir):
        job_dir = hold_dir / job_id
        if not valid_job_id(job_id) or job_dir.is_symlink() or not job_dir.is_dir():
            continue
        held = HeldJob(job_id)
        prolog: list[str] = []
        for name in _listdir(job_dir):
            kind, _, rest = name.partition("-")
            if kind in KINDS and rest.endswith(".json"):
                node = rest[:-5]
                (held.nodes if kind == "node" else prolog).append(node)
                with contextlib.suppress(OSError):
                    mtime = os.lstat(job_dir / name).st_mtime
                    held.since = mtime if held.since is None else min(held.since, mtime)
        held.prolog_only = [n for n in prolog if n not in held.nodes]
        if held.nodes or held.prolog_only:
            out.append(held)
    return out


def release(
    hold_dir: Path, spool: Spool, log: logging.Logger, failed: list[str] | None = None
) -> list[str]:
    """Move held files into the (writable again) spool: jobs/<id>/<kind>-<node>.json.

    Returns the job ids whose node record was moved (the caller hands them over). A
    file is removed from the hold only after the spool has it (an atomic, fsynced
    write); a spool still unwritable (read-only, or full: its directories can still be
    made, its files not) leaves everything held, logs once and appends the error to
    `failed`, so that the caller does not report "nothing pending".
    """
    released: list[str] = []
    for job_id in _listdir(hold_dir):
        job_dir = hold_dir / job_id
        if not valid_job_id(job_id) or job_dir.is_symlink() or not job_dir.is_dir():
            continue
        moved_node = False
        names = _listdir(job_dir)
        with_record = {n[5:-5] for n in names if n.startswith("node-") and n.endswith(".json")}
        for name in names:
            kind, _, rest = name.partition("-")
            node = rest[:-5] if rest.endswith(".json") else ""
            if kind not in KINDS or not valid_node(node):
                continue
            path = job_dir / name
            try:
                data = spoolmod.read_json(path)
            except FileNotFoundError:
                continue
            except SpoolError as exc:
                spool.quarantine(path, f"held file unreadable: {exc}")
                continue
            if not isinstance(data, dict):
                spool.quarantine(path, "held file is not a JSON object")
                continue
            if kind == "prolog" and node in with_record:
                # The node record holds what the Prolog measured: the state is done with.
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                spool.write_node_file(job_id, node, kind, data)
            except SpoolError as exc:
                error = " ".join(str(exc).split())[:300]
                log.warning(
                    "event=held_still spool=%s error=%s held_in=%s", spool.root, error, hold_dir
                )
                if failed is not None:
                    failed.append(error)
                return released
            with contextlib.suppress(OSError):
                path.unlink()
            log.info(
                "event=held_released job=%s node=%s kind=%s held_s=%.0f",
                job_id,
                node,
                kind,
                time.time() - float(data.get("written") or time.time()),
            )
            moved_node = moved_node or kind == "node"
        with contextlib.suppress(OSError):
            job_dir.rmdir()
        if not _listdir(job_dir) and job_dir.exists():
            shutil.rmtree(job_dir, ignore_errors=True)
        if moved_node:
            released.append(job_id)
    return released


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except OSError:
        return []
