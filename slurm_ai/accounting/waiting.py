"""What the spool holds that accounting does not have yet, per job.

Three places a job's parts wait (outbox.py): `jobs/<id>/` (node files of a set
still waiting for its other nodes' Epilogs), `claimed/<id>.*` (being merged)
and `outbox/<id>.json` (merged, waiting for slurmdbd). `slurm-ai deliver
--list`, `slurm-ai doctor` and `slurm-ai job` read this so that a job whose
record has not landed is visible, with the nodes it waits for and since when.
Read-only; never raises for a damaged spool (unreadable files are skipped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai import spool as spoolmod
from slurm_ai.accounting.outbox import ENTRY_MAX_BYTES, OutboxEntry, Spool, valid_job_id
from slurm_ai.errors import SpoolError
from slurm_ai.record import expected_names

# Node names listed per job; the rest are counted (a 4,096-node job waits for few).
LIST_NODES = 32


@dataclass
class WaitingJob:
    job_id: str
    where: str  # "nodes" (waiting for Epilogs), "outbox" (waiting for slurmdbd)
    have: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    missing_count: int = 0
    prolog_only: list[str] = field(default_factory=list)  # missing nodes whose Prolog ran
    since: float | None = None  # first node file (or outbox entry) written
    partial_at: float | None = None  # when the sweeper delivers it incomplete
    attempts: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (None, [], "", 0)} | {
            "job": self.job_id,
            "where": self.where,
        }

    def line(self, now: float) -> str:
        def names(items: list[str], count: int) -> str:
            more = count - len(items)
            return ",".join(items) + (f" (+{more} more)" if more > 0 else "")

        if self.where == "nodes":
            text = (
                f"{self.job_id} waiting for nodes: missing {names(self.missing, self.missing_count)}"
                f"; reported {len(self.have)}"
            )
            if self.since is not None:
                text += f"; since {_ago(now - self.since)}"
            if self.prolog_only:
                text += f"; Prolog data kept for {','.join(self.prolog_only[:LIST_NODES])}"
            if self.partial_at is not None:
                text += (
                    f"; delivered incomplete in {max(0, round(self.partial_at - now))} s"
                    " if still missing"
                )
            return text
        text = (
            f"{self.job_id} waiting for accounting: nodes={len(self.have)} attempts={self.attempts}"
        )
        if self.missing_count:
            text += f" incomplete, missing {names(self.missing, self.missing_count)}"
        if self.since is not None:
            text += f"; queued {_ago(now - self.since)}"
        return text + (f"; {self.last_error}" if self.last_error else "")


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def waiting_for_nodes(spool: Spool, job_id: str, partial_after_s: float) -> WaitingJob | None:
    """The job's set in jobs/<id>/ (None when there is none)."""
    try:
        job_dir = spool.job_dir(job_id)
        names = os.listdir(job_dir)
    except (OSError, SpoolError):
        return None
    have: list[str] = []
    prolog: set[str] = set()
    mtimes: list[float] = []
    expected: set[str] | None = None
    for name in sorted(names):
        path = job_dir / name
        if name.startswith("prolog-") and name.endswith(".json"):
            prolog.add(name[7:-5])
            if expected is None:
                expected = _expected(path)
        elif name.startswith("node-") and name.endswith(".json"):
            have.append(name[5:-5])
            try:
                mtimes.append(os.lstat(path).st_mtime)
            except OSError:
                continue
            if expected is None:
                expected = _expected(path)
    if not have and not prolog:
        return None
    missing = sorted((expected or set()) - set(have))
    return WaitingJob(
        job_id=job_id,
        where="nodes",
        have=have,
        missing=missing[:LIST_NODES],
        missing_count=len(missing),
        prolog_only=sorted(prolog & set(missing))[:LIST_NODES],
        since=min(mtimes) if mtimes else None,
        partial_at=max(mtimes) + partial_after_s if mtimes else None,
    )


def _expected(path: Path) -> set[str] | None:
    try:
        data = spoolmod.read_json(path)
    except (OSError, SpoolError):
        return None
    job = data.get("job") if isinstance(data, dict) else None
    return expected_names(job) if isinstance(job, dict) else None


def job_waiting(spool: Spool, job_id: str, partial_after_s: float) -> WaitingJob | None:
    """One job's parts in the spool: its outbox entry first, else its set of node files."""
    if not valid_job_id(job_id):
        return None
    try:
        path = spool.entry_path(job_id)
        entry = OutboxEntry.from_json(spoolmod.read_json(path, max_bytes=ENTRY_MAX_BYTES))
    except (OSError, SpoolError):
        entry = None
    if entry is not None:
        return _outbox_waiting(path, entry)
    waiting = waiting_for_nodes(spool, job_id, partial_after_s)
    return waiting if waiting is not None and waiting.have else None


def _outbox_waiting(path: Path, entry: OutboxEntry) -> WaitingJob:
    missing = sorted((expected_names(entry.job) or set()) - set(entry.nodes))
    return WaitingJob(
        job_id=entry.job_id,
        where="outbox",
        have=sorted(entry.nodes),
        missing=missing[:LIST_NODES],
        missing_count=len(missing),
        since=entry.queued or None,
        attempts=entry.attempts,
        last_error=entry.last_error,
    )


def waiting_jobs(spool: Spool, partial_after_s: float) -> list[WaitingJob]:
    """Every job waiting in the spool: sets waiting for nodes, then the outbox."""
    found: list[WaitingJob] = []
    try:
        job_ids = sorted(n for n in os.listdir(spool.jobs_dir) if valid_job_id(n))
    except OSError:
        job_ids = []
    for job_id in job_ids:
        waiting = waiting_for_nodes(spool, job_id, partial_after_s)
        if waiting is not None and waiting.have:
            found.append(waiting)
    for path, entry in spool.pending():
        found.append(_outbox_waiting(path, entry))
    return found
