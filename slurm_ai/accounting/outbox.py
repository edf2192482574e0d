"""The delivery spool: per-job node records, the single-writer claim, the outbox.

Layout under the spool directory (root-only, see slurm_ai.spool):

    jobs/<jobid>/prolog-<node>.json   what the Prolog's steps returned (state)
    jobs/<jobid>/node-<node>.json     the node record the Epilog built
    claimed/<jobid>.<tag>/            a job directory taken by its single writer
    done/<jobid>.<tag>/               a large merged claim, removed by the sweeper
    outbox/<jobid>.json               a merged job record waiting for delivery
    corrupt/                          files moved aside (never deleted)

Single writer: every node's Epilog writes its node file, then lists the job
directory. The one that sees every expected node renames the whole job
directory into claimed/ - rename is atomic, so exactly one node wins even when
all finish at once - merges the node files into one outbox entry, and removes
the claimed directory. `slurm-ai deliver` (the sweeper) does the same for a job
whose set stays incomplete past `partial_after_s` (a node that never ran its
Epilog); a straggler arriving later starts a new job directory, and delivery
merges it with the record already in accounting, so no node is ever lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai import spool
from slurm_ai.errors import SpoolError

ENTRY_VERSION = 1
# An outbox entry holds every node record of its job: a 4,096-node job with 8 GPUs a
# node is about 12 MB of JSON. Node files keep spool.MAX_JSON_BYTES (4 MiB) each.
ENTRY_MAX_BYTES = 256 * 1024 * 1024
# A merged claim with more node files than this is left in done/ for the sweeper.
INLINE_REMOVE_FILES = 256
_JOB_ID = re.compile(r"^[0-9]+(?:_[0-9]+)?(?:\+[0-9]+)?$")
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_job_id(job_id: str | None) -> bool:
    return bool(job_id) and bool(_JOB_ID.match(str(job_id)))


def valid_node(node: str | None) -> bool:
    return bool(node) and bool(_NODE.match(str(node)))


@dataclass
class OutboxEntry:
    """One job's merged record waiting in outbox/<jobid>.json."""

    job: dict[str, Any]
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    units: dict[str, float] = field(default_factory=dict)
    queued: float = field(default_factory=time.time)
    attempts: int = 0
    last_error: str = ""
    # Node-local spools: delivered, kept until a read-back after this time shows our nodes.
    verify_after: float | None = None
    # Expected nodes without a node file when the set was finalized: what is known
    # of them (their Prolog's data) and why they are missing.
    absent: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        return str(self.job["id"])

    def to_json(self) -> dict[str, Any]:
        return {
            "v": ENTRY_VERSION,
            "job": self.job,
            "nodes": self.nodes,
            "units": self.units,
            "queued": self.queued,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "verify_after": self.verify_after,
            "absent": self.absent,
        }

    @classmethod
    def from_json(cls, data: Any) -> OutboxEntry:
        if not isinstance(data, dict) or data.get("v") != ENTRY_VERSION:
            raise SpoolError("not an outbox entry of a known version")
        job, nodes, units = data.get("job"), data.get("nodes"), data.get("units", {})
        if not isinstance(job, dict) or not valid_job_id(str(job.get("id", ""))):
            raise SpoolError("outbox entry has no valid job id")
        if not isinstance(nodes, dict) or not all(
            valid_node(k) and isinstance(v, dict) for k, v in nodes.items()
        ):
            raise SpoolError("outbox entry has malformed nodes")
        if not isinstance(units, dict):
            raise SpoolError("outbox entry has malformed units")
        verify = data.get("verify_after")
        absent = data.get("absent") or {}
        if not isinstance(absent, dict) or not all(
            valid_node(k) and isinstance(v, dict) for k, v in absent.items()
        ):
            raise SpoolError("outbox entry has malformed absent nodes")
        return cls(
            job=job,
            nodes=nodes,
            units=units,
            queued=float(data.get("queued") or 0.0),
            attempts=int(data.get("attempts") or 0),
            last_error=str(data.get("last_error") or ""),
            verify_after=float(verify) if isinstance(verify, (int, float)) else None,
            absent=absent,
        )

    def absorb(self, other: OutboxEntry) -> None:
        """Fold another pending entry of the same job into this one."""
        self.job = {**other.job, **self.job}
        self.nodes = {**other.nodes, **self.nodes}
        self.units = merge_units(other.units, self.units)
        self.queued = min(self.queued, other.queued)
        self.attempts = max(self.attempts, other.attempts)
        self.verify_after = None
        self.absent = {
            n: a for n, a in {**other.absent, **self.absent}.items() if n not in self.nodes
        }


def merge_units(*parts: dict[str, Any]) -> dict[str, Any]:
    """Job totals reported by `slurm-ai mark`, possibly from several nodes.

    Each node reports the job's total so far; the largest wins (summing would
    count a total marked on every node once per node).
    """
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                old = out.get(key)
                out[key] = value if not isinstance(old, (int, float)) else max(old, value)
    return out


class Spool:
    """Paths and operations on the delivery spool."""

    def __init__(self, root: Path, log: logging.Logger | None = None) -> None:
        self.root = root
        self.log = log or logging.getLogger("slurm_ai.accounting")

    # -- layout ---------------------------------------------------------
    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def claimed_dir(self) -> Path:
        return self.root / "claimed"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def done_dir(self) -> Path:
        return self.root / "done"

    def job_dir(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise SpoolError(f"invalid job id {job_id[:40]!r}")
        return self.jobs_dir / job_id

    def ensure(self) -> None:
        spool.ensure_private_dir(self.root)
        for sub in (self.jobs_dir, self.claimed_dir, self.outbox_dir):
            spool.ensure_private_dir(sub)

    def ensure_job_dir(self, job_id: str) -> Path:
        path = self.job_dir(job_id)
        spool.ensure_private_dir(self.jobs_dir)
        spool.ensure_private_dir(path)
        return path

    def drop_job_dir(self, job_id: str) -> None:
        """Remove a job directory of this spool (node-local Prolog state after the Epilog)."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    # -- node files -----------------------------------------------------
    def write_node_file(self, job_id: str, node: str, kind: str, data: dict[str, Any]) -> Path:
        """Write prolog-<node>.json or node-<node>.json atomically (retries once
        when the sweeper moved the job directory away in between)."""
        if not valid_node(node):
            raise SpoolError(f"invalid node name {node[:40]!r}")
        for attempt in (1, 2):
            path = self.ensure_job_dir(job_id) / f"{kind}-{node}.json"
            try:
                spool.atomic_write_json(path, data)
                return path
            except SpoolError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def read_prolog_state(self, job_id: str, node: str) -> dict[str, Any]:
        path = self.job_dir(job_id) / f"prolog-{node}.json"
        try:
            data = spool.read_json(path)
        except FileNotFoundError:
            return {}
        except SpoolError as exc:
            self.quarantine(path, str(exc))
            return {}
        return data if isinstance(data, dict) else {}

    def node_files(self, directory: Path) -> Iterator[Path]:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(directory)):
                if name.startswith("node-") and name.endswith(".json"):
                    yield directory / name

    def present_nodes(self, job_id: str) -> set[str]:
        return {p.name[5:-5] for p in self.node_files(self.job_dir(job_id))}

    # -- the single-writer claim ---------------------------------------
    def claim(self, job_id: str, tag: str) -> Path | None:
        """Atomically take the job directory; None when another writer has it."""
        spool.ensure_private_dir(self.claimed_dir)
        target = self.claimed_dir / f"{job_id}.{tag}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.job_dir(job_id), target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SpoolError(f"cannot claim job {job_id}: {exc.strerror}") from exc
        return target

    def finalize(self, claimed: Path, lost: bool = False) -> OutboxEntry | None:
        """Merge the node files of a claimed job directory into the outbox.

        `lost`: a job that ended with no node file at all (every node lost): the
        entry holds no node, every expected node absent with its Prolog data.
        """
        nodes: dict[str, dict[str, Any]] = {}
        job: dict[str, Any] = {}
        units: dict[str, Any] = {}
        seen: set[str] = set()
        rejected: dict[str, str] = {}  # node -> why its node file was quarantined
        # Re-list until stable: an Epilog that raced the rename may land a file late.
        for _ in range(3):
            fresh = [p for p in self.node_files(claimed) if p.name not in seen]
            if not fresh:
                break
            for path in fresh:
                seen.add(path.name)
                try:
                    data = spool.read_json(path)
                    node, record, njob, nunits = parse_node_file(data)
                except SpoolError as exc:
                    self.quarantine(path, str(exc))
                    rejected[path.name[5:-5]] = _one_line(str(exc))[:200]
                    continue
                nodes[node] = record
                job = {**njob, **job}
                units = merge_units(units, nunits)
            time.sleep(0.01)
        entry = None
        if not nodes and lost:
            job = _prolog_job(claimed)
        if nodes or (lost and job):
            absent = self._absent_nodes(claimed, job, nodes, rejected)
            entry = OutboxEntry(job=job, nodes=nodes, units=units, absent=absent)
            self.put(entry)
        self._discard(claimed, len(seen))
        return entry

    def _discard(self, claimed: Path, files: int) -> None:
        """Remove a merged claim. A large one (thousands of node files; unlink costs
        about 1 ms a file on a slow or network filesystem) is renamed into done/ for
        the sweeper to remove, off the completing Epilog's time."""
        if files > INLINE_REMOVE_FILES:
            with contextlib.suppress(OSError):
                spool.ensure_private_dir(self.done_dir)
                os.rename(claimed, self.done_dir / claimed.name)
                return
        shutil.rmtree(claimed, ignore_errors=True)

    def remove_done(self, limit: int = 20) -> int:
        """The sweeper's part of _discard: remove up to `limit` merged claims."""
        removed = 0
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(self.done_dir))[:limit]:
                shutil.rmtree(self.done_dir / name, ignore_errors=True)
                removed += 1
        return removed

    def _absent_nodes(
        self,
        claimed: Path,
        job: dict[str, Any],
        nodes: dict[str, Any],
        rejected: dict[str, str],
    ) -> dict[str, dict[str, Any]]:
        """Expected nodes without a node file: why, and what their Prolog left."""
        from slurm_ai.record import expected_names

        names = expected_names(job)
        if not names:
            return {}
        absent: dict[str, dict[str, Any]] = {}
        for node in sorted(names - set(nodes)):
            if not valid_node(node):
                continue
            known: dict[str, Any] = {
                "why": f"its node record was quarantined: {rejected[node]}"
                if node in rejected
                else "no Epilog record (node lost, slurmd down or Epilog failed)"
            }
            path = claimed / f"prolog-{node}.json"
            try:
                state = spool.read_json(path)
            except FileNotFoundError:
                known["why"] += "; no Prolog data either"
            except SpoolError as exc:
                self.quarantine(path, str(exc))
                known["why"] += "; its Prolog data is corrupt (quarantined)"
            else:
                if isinstance(state, dict):
                    known["prolog"] = prolog_known(state)
            absent[node] = known
        return absent

    # -- the outbox -----------------------------------------------------
    @contextlib.contextmanager
    def outbox_lock(self) -> Iterator[None]:
        """Short lock for read-modify-write of outbox entries."""
        spool.ensure_private_dir(self.outbox_dir)
        fd = os.open(self.outbox_dir / ".entries.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def entry_path(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise SpoolError(f"invalid job id {job_id[:40]!r}")
        return self.outbox_dir / f"{job_id}.json"

    def put(self, entry: OutboxEntry) -> None:
        """Add to the outbox, folding into an entry already waiting for that job."""
        with self.outbox_lock():
            path = self.entry_path(entry.job_id)
            try:
                old = OutboxEntry.from_json(spool.read_json(path, max_bytes=ENTRY_MAX_BYTES))
                entry.absorb(old)
            except FileNotFoundError:
                pass
            except SpoolError as exc:
                self.quarantine(path, str(exc))
            spool.atomic_write_json(path, entry.to_json())

    def update(self, entry: OutboxEntry) -> None:
        """Rewrite an entry after a failed or to-be-verified delivery."""
        with self.outbox_lock():
            spool.atomic_write_json(self.entry_path(entry.job_id), entry.to_json())

    def remove(self, entry: OutboxEntry, delivered: OutboxEntry | None = None) -> None:
        """Drop a delivered entry unless new nodes were folded in meanwhile."""
        with self.outbox_lock():
            path = self.entry_path(entry.job_id)
            try:
                current = OutboxEntry.from_json(spool.read_json(path, max_bytes=ENTRY_MAX_BYTES))
            except (FileNotFoundError, SpoolError):
                return
            if set(current.nodes) - set(entry.nodes) or current.units != entry.units:
                return  # a straggler arrived during delivery: deliver again next time
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def pending(self) -> Iterator[tuple[Path, OutboxEntry]]:
        """Outbox entries, oldest file first; corrupt ones quarantined."""
        try:
            names = [n for n in os.listdir(self.outbox_dir) if n.endswith(".json")]
        except FileNotFoundError:
            return
        paths = [self.outbox_dir / n for n in names if not n.startswith(".")]
        with_mtime = []
        for path in paths:
            with contextlib.suppress(OSError):
                with_mtime.append((path.stat().st_mtime, path))
        for _, path in sorted(with_mtime):
            try:
                entry = OutboxEntry.from_json(spool.read_json(path, max_bytes=ENTRY_MAX_BYTES))
            except FileNotFoundError:
                continue
            except SpoolError as exc:
                self.quarantine(path, str(exc))
                continue
            if path.name != f"{entry.job_id}.json":
                self.quarantine(path, "outbox file name does not match its job id")
                continue
            yield path, entry

    def quarantine(self, path: Path, reason: str) -> None:
        moved = spool.quarantine(path, self.root, reason)
        self.log.warning(
            "event=quarantine file=%s moved_to=%s reason=%s", path, moved, _one_line(reason)
        )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def parse_node_file(data: Any) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    if not isinstance(data, dict) or data.get("v") != ENTRY_VERSION:
        raise SpoolError("not a node file of a known version")
    node, record, job = data.get("node"), data.get("record"), data.get("job")
    units = data.get("units") or {}
    if not isinstance(node, str) or not valid_node(node):
        raise SpoolError("node file has no valid node name")
    if not isinstance(record, dict) or not isinstance(job, dict) or not isinstance(units, dict):
        raise SpoolError("node file is malformed")
    if not valid_job_id(str(job.get("id", ""))):
        raise SpoolError("node file has no valid job id")
    return node, record, job, units


def node_file(
    node: str, job: dict[str, Any], record: dict[str, Any], units: dict[str, Any]
) -> dict[str, Any]:
    """What an Epilog writes as node-<node>.json."""
    return {
        "v": ENTRY_VERSION,
        "node": node,
        "job": job,
        "record": record,
        "units": units,
        "written": time.time(),
    }


def prolog_known(state: dict[str, Any]) -> dict[str, Any]:
    """What a node's Prolog state tells of a node whose Epilog never reported:
    its node-record fields (platform, plan, health...) and Prolog timing."""
    from slurm_ai.hooks.epilog import build_node_record

    record = build_node_record(state, {}, [], 0.0, 0.0)
    timing = record.get("time")
    if isinstance(timing, dict):
        timing.pop("epilog_end", None)
        timing.pop("epilog_s", None)
    errors = record.get("errors")
    if isinstance(errors, list):
        record["errors"] = [e for e in errors if e != "no Prolog state for this node"]
        if not record["errors"]:
            del record["errors"]
    return record


def _prolog_job(claimed: Path) -> dict[str, Any]:
    """The job metadata a Prolog state file in a claimed directory holds ({} if none)."""
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(claimed)):
            if name.startswith("prolog-") and name.endswith(".json"):
                try:
                    data = spool.read_json(claimed / name)
                except (OSError, SpoolError):
                    continue
                job = data.get("job") if isinstance(data, dict) else None
                if isinstance(job, dict) and valid_job_id(str(job.get("id", ""))):
                    return job
    return {}
