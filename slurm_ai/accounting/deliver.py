"""Delivery: from the spool into AdminComment, from one place, rate-limited.

Only one delivery runs at a time per spool (an flock on outbox/.deliver.lock):
with a shared spool that is one writer for the whole cluster, so a burst of
jobs ending together becomes one process working through the outbox in
batches (one `sacct` read per `batch_size` jobs, one `sacctmgr` write per job,
at most `max_writes_per_s`), never a burst of concurrent slurmdbd writes. An
Epilog that finds the lock taken leaves its entry to the holder, which keeps
draining until the outbox is empty or its time budget is spent.

Every write merges with the record already in AdminComment (nodes delivered
earlier are kept; foreign content such as `JS1:...` is kept verbatim), so
re-delivery is idempotent and a late node never removes another.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai import spool as spoolmod
from slurm_ai.accounting import held
from slurm_ai.accounting.backend import AccountingBackend, JobRow, fold_like_sacctmgr
from slurm_ai.accounting.detail import DetailError, prune, read_detail, write_detail
from slurm_ai.accounting.outbox import OutboxEntry, Spool, merge_units, valid_job_id
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.errors import AccountingError, RecordError, SpoolError
from slurm_ai.record import (
    MAX_TOKEN_CHARS,
    AdminComment,
    encode_record,
    expected_names,
    finite_json,
    merge_node_records,
)

# Full form is tried only below this much JSON: past it the token could not fit
# (records compress about 5-10x and hex doubles), and compressing megabytes to
# find that out would cost the writer a second at 4,096 nodes.
FULL_FORM_MAX_JSON = 12 * MAX_TOKEN_CHARS
# sacct states of a job that has not ended (its Epilogs have not run yet).
STILL_RUNNING = ("RUNNING", "PENDING", "SUSPENDED", "REQUEUE", "RESIZING", "COMPLETING")
# Nodes kept in full in a summarised record: the first failed ones, for `slurm-ai job`.
SUMMARISED_KEEP_NODES = 8


@dataclass
class DeliveryStats:
    delivered: int = 0
    unchanged: int = 0
    waiting: int = 0
    failed: int = 0
    verified: int = 0
    reads: int = 0
    writes: int = 0
    finalized: int = 0
    partial: int = 0
    quarantined: int = 0
    pruned: int = 0  # detail files past their retention removed
    released: int = 0  # held node records moved into the spool (held.py)
    held_error: str = ""  # why held files stayed held (the spool still unwritable)
    lock_busy: bool = False
    backend_down: str = ""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (0, "", [], False)}


@contextlib.contextmanager
def delivery_lock(spool: Spool, wait_s: float = 0.0) -> Iterator[bool]:
    """Yield True when this process is the (only) deliverer, False when busy."""
    spoolmod.ensure_private_dir(spool.outbox_dir)
    fd = os.open(spool.outbox_dir / ".deliver.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)


def names_for_log(names: list[str], limit: int = 32) -> str:
    """At most `limit` node names and how many more: a log line per event stays short
    at 4,096 nodes (every Epilog of a job logs one)."""
    more = len(names) - limit
    return ",".join(names[:limit]) + (f",+{more}" if more > 0 else "")


def build_record(
    entry: OutboxEntry,
    row: JobRow,
    previous: dict[str, Any] | None,
    previous_detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    job = dict(entry.job)
    for key, value in (
        ("submit", row.submit),
        ("start", row.start),
        ("end", row.end),
        ("elapsed_s", row.elapsed_s),
    ):
        if value is not None:
            job[key] = value
    prev_units = previous.get("units") if isinstance(previous, dict) else None
    units = merge_units(prev_units if isinstance(prev_units, dict) else {}, entry.units)
    return merge_node_records(
        job,
        entry.nodes,
        previous=previous,
        units=units,
        previous_detail=previous_detail,
        absent=entry.absent,
    )


def encode_fitting(record: dict[str, Any], detail_dir: Path | None = None) -> str:
    """Encode in full form when it fits AdminComment, else in summarised form.

    Summarised: every node record goes to a detail file under `detail_dir`
    (detail.py), the record keeps its summary, the pointer and the first
    failed nodes in full. Nothing is dropped; RecordError when the record is
    too large and there is no detail directory, or the summarised form still
    does not fit (it is bounded: see summary.py).
    """
    nodes = record.get("nodes")
    nodes = nodes if isinstance(nodes, dict) else {}
    record.pop("detail", None)
    nodes_json = finite_json(nodes)
    if len(nodes_json) <= FULL_FORM_MAX_JSON:
        try:
            return encode_record(record)
        except RecordError:
            if detail_dir is None:
                raise
    if detail_dir is None:
        raise RecordError(
            f"record of {len(nodes)} nodes does not fit AdminComment and no detail directory"
        )
    job = record.get("job") if isinstance(record.get("job"), dict) else {}
    assert isinstance(job, dict)
    pointer = write_detail(
        detail_dir, str(job.get("cluster") or ""), str(job.get("id")), nodes, nodes_json
    )
    summary = record.get("summary") if isinstance(record.get("summary"), dict) else {}
    assert isinstance(summary, dict)
    failed = summary.get("health", {}).get("failed", {}).get("nodes", [])
    keep = [n for n in failed if n in nodes][:SUMMARISED_KEEP_NODES]
    short = {**record, "nodes": {n: nodes[n] for n in keep}, "detail": pointer}
    try:
        return encode_record(short)
    except RecordError:
        short["nodes"] = {}
        return encode_record(short)


class Deliverer:
    """Works through the outbox with one backend, under the delivery lock."""

    def __init__(
        self,
        spool: Spool,
        backend: AccountingBackend,
        settings: AccountingSettings,
        log: logging.Logger,
        clock: Any = time,
    ) -> None:
        self.spool = spool
        self.backend = backend
        self.settings = settings
        self.log = log
        self.clock = clock
        self._last_write = 0.0
        self.detail_dir = settings.detail_dir or spool.root / "detail"

    # -- sweeping the job directories ------------------------------------
    def sweep_jobs(self, stats: DeliveryStats, now: float | None = None) -> None:
        """Finalize complete sets an Epilog did not, partial sets past their wait,
        claims left by a crash, and drop job directories that never got a node."""
        now = self.clock.time() if now is None else now
        self.release_held(stats)
        self.spool.remove_done()
        orphans: list[str] = []
        for name in _listdir(self.spool.claimed_dir):
            path = self.spool.claimed_dir / name
            if now - _mtime(path, now) > 60:
                self.spool.finalize(path)
                stats.finalized += 1
        for job_id in _listdir(self.spool.jobs_dir):
            job_dir = self.spool.jobs_dir / job_id
            if not valid_job_id(job_id) or not job_dir.is_dir() or job_dir.is_symlink():
                self.spool.quarantine(job_dir, "unexpected entry in jobs/")
                stats.quarantined += 1
                continue
            node_paths = list(self.spool.node_files(job_dir))
            if not node_paths:
                if now - _mtime(job_dir, now) > self.settings.stale_after_s:
                    shutil.rmtree(job_dir, ignore_errors=True)
                    self.log.info("event=stale_job_dir job=%s removed", job_id)
                elif now - _mtime(job_dir, now) > self.settings.partial_after_s:
                    orphans.append(job_id)  # Prolog state only: running, or every node lost
                continue
            expected = self._expected(node_paths)
            present = {p.name[5:-5] for p in node_paths}
            newest = max(_mtime(p, now) for p in node_paths)
            complete = expected is not None and expected <= present
            if not complete and now - newest < self.settings.partial_after_s:
                continue
            claimed = self.spool.claim(job_id, "sweep")
            if claimed is None:
                continue
            entry = self.spool.finalize(claimed)
            stats.finalized += 1
            if not complete:
                stats.partial += 1
                missing = sorted((expected or set()) - present)
                self.log.warning(
                    "event=partial job=%s nodes=%d missing=%s",
                    job_id,
                    len(present),
                    names_for_log(missing) or "?",
                )
            elif entry is None:
                stats.quarantined += 1
        if orphans:
            self._sweep_lost(orphans[: self.settings.batch_size], stats, now)

    def release_held(self, stats: DeliveryStats) -> None:
        """Node records a hook held while the spool was not writable (held.py): into
        the spool, then on as from the Epilog. Node-local without a gather directory,
        this node's part is the whole set here: claimed and merged at once; otherwise
        it joins its job's set, which the sweep below finalizes when complete."""
        failed: list[str] = []
        released = held.release(self.settings.hold_dir, self.spool, self.log, failed)
        stats.held_error = failed[0] if failed else ""
        for job_id in released:
            stats.released += 1
            if self.settings.gathers:
                continue
            claimed = self.spool.claim(job_id, "held")
            if claimed is not None and self.spool.finalize(claimed) is not None:
                stats.finalized += 1

    def _sweep_lost(self, job_ids: list[str], stats: DeliveryStats, now: float) -> None:
        """Jobs whose every node ran its Prolog and none its Epilog (all nodes lost):
        once accounting says the job ended more than partial_after_s ago, deliver a
        record naming every node missing, with their Prolog data. One sacct read for
        up to batch_size such directories per sweep (running jobs look the same here)."""
        try:
            stats.reads += 1
            rows = self.backend.read(job_ids)
        except AccountingError as exc:
            self.log.warning("event=lost_check_skipped reason=%s", " ".join(str(exc).split()))
            return
        for job_id in job_ids:
            row = rows.get(job_id)
            if row is None:
                continue  # unknown to accounting: left to stale_after_s
            if (
                row.end is None
                or row.state.startswith(STILL_RUNNING)
                or now - row.end < self.settings.partial_after_s  # Epilogs may be writing
            ):
                # Checked: not again before partial_after_s, so that other directories
                # get their turn in the next sweeps' reads.
                with contextlib.suppress(OSError):
                    os.utime(self.spool.jobs_dir / job_id, (now, now))
                continue
            claimed = self.spool.claim(job_id, "lost")
            if claimed is None:
                continue
            entry = self.spool.finalize(claimed, lost=True)
            stats.finalized += 1
            stats.partial += 1
            self.log.warning(
                "event=partial job=%s nodes=0 missing=%s",
                job_id,
                names_for_log(sorted(entry.absent)) if entry else "?",
            )

    def _expected(self, node_paths: list[Path]) -> set[str] | None:
        for path in node_paths:
            try:
                data = spoolmod.read_json(path)
            except (SpoolError, FileNotFoundError):
                continue
            job = data.get("job") if isinstance(data, dict) else None
            if isinstance(job, dict):
                return expected_names(job)
        return None

    # -- delivering the outbox ------------------------------------------
    def drain(self, stats: DeliveryStats, budget_s: float | None) -> None:
        """Deliver pending entries in batches until none is left or time is up."""
        start = self.clock.monotonic()
        tried: set[str] = set()
        while True:
            batch: list[OutboxEntry] = []
            for _, entry in self.spool.pending():
                if entry.job_id in tried:
                    continue
                now = self.clock.time()
                if entry.verify_after is not None and now < entry.verify_after:
                    continue
                batch.append(entry)
                if len(batch) >= self.settings.batch_size:
                    break
            if not batch:
                return
            tried.update(e.job_id for e in batch)
            if not self.deliver_batch(batch, stats):
                return
            if budget_s is not None and self.clock.monotonic() - start > budget_s:
                self.log.info("event=deliver_budget_spent left_for=sweeper")
                return

    def deliver_batch(self, batch: list[OutboxEntry], stats: DeliveryStats) -> bool:
        """One sacct read for the batch, one write per entry; False once the backend
        is down (the rest waits)."""
        try:
            stats.reads += 1
            rows = self.backend.read([e.job_id for e in batch])
        except AccountingError as exc:
            self._backend_down(batch, stats, str(exc))
            return False
        for entry in batch:
            row = rows.get(entry.job_id)
            if row is None:
                stats.waiting += 1
                self._retry_later(entry, "job not in accounting yet")
                continue
            try:
                self._deliver_one(entry, row, stats)
            except AccountingError as exc:
                if "not in accounting yet" in str(exc):
                    stats.waiting += 1
                    self._retry_later(entry, str(exc))
                    continue
                self._backend_down([entry], stats, str(exc))
                return False
        return True

    def _deliver_one(self, entry: OutboxEntry, row: JobRow, stats: DeliveryStats) -> None:
        comment = AdminComment.parse(row.admin_comment)
        try:
            previous = comment.record()
        except RecordError as exc:
            self.log.warning("event=corrupt_token job=%s replaced reason=%s", entry.job_id, exc)
            previous = None
        if entry.verify_after is not None:
            have = set(previous.get("nodes", {})) if isinstance(previous, dict) else set()
            if isinstance(previous, dict) and isinstance(previous.get("detail"), dict):
                with contextlib.suppress(DetailError):
                    have |= set(read_detail(previous["detail"]))
            if set(entry.nodes) <= have:
                self.spool.remove(entry)
                stats.verified += 1
                self.log.info("event=verified job=%s nodes=%s", entry.job_id, ",".join(entry.nodes))
                return
        folds = bool(getattr(self.backend, "folds_case", False))
        if (
            folds
            and self.settings.foreign_case == "protect"
            and fold_like_sacctmgr(comment.foreign) != comment.foreign
        ):
            # sacctmgr would lowercase the other tool's content (e.g. JS1:<base64>)
            # and destroy it: keep our record in the spool instead.
            stats.failed += 1
            self._retry_later(
                entry,
                "foreign AdminComment content would be lowercased by "
                "sacctmgr; not written ([accounting] foreign_case)",
            )
            self.log.warning("event=foreign_protected job=%s not_written", entry.job_id)
            return
        previous_detail = None
        if isinstance(previous, dict) and isinstance(previous.get("detail"), dict):
            try:
                previous_detail = read_detail(previous["detail"])
            except DetailError as exc:
                # Merging without it would drop the nodes only the file holds: wait.
                stats.failed += 1
                self._retry_later(entry, f"record in accounting is summarised: {exc}")
                self.log.warning("event=detail_unreadable job=%s reason=%s", entry.job_id, exc)
                return
        record = build_record(entry, row, previous, previous_detail)
        try:
            token = encode_fitting(record, self.detail_dir)
        except (RecordError, DetailError) as exc:
            stats.failed += 1
            self._retry_later(entry, f"record not written: {exc}")
            self.log.error("event=record_not_written job=%s reason=%s", entry.job_id, exc)
            return
        text = comment.with_token(token)
        stored = fold_like_sacctmgr(text) if folds else text
        if stored == row.admin_comment:
            stats.unchanged += 1
        else:
            self._pace()
            stats.writes += 1
            self.backend.write_admin_comment(entry.job_id, text)
            stats.delivered += 1
        self.log.info(
            "event=delivered job=%s nodes=%d complete=%s bytes=%d backend=%s",
            entry.job_id,
            len(record["nodes"]),
            record["complete"],
            len(text),
            self.backend.name,
        )
        if not self.settings.gathers and len(expected_names(entry.job) or ()) > 1:
            # Node-local spools: other nodes write the same job too. Keep the
            # entry until a read-back after the settle time shows our nodes.
            entry.verify_after = self.clock.time() + self.settings.settle_s
            self.spool.update(entry)
        else:
            self.spool.remove(entry)

    def _pace(self) -> None:
        rate = self.settings.max_writes_per_s
        if rate <= 0:
            return
        wait = self._last_write + 1.0 / rate - self.clock.monotonic()
        if wait > 0:
            self.clock.sleep(wait)
        self._last_write = self.clock.monotonic()

    def _retry_later(self, entry: OutboxEntry, why: str) -> None:
        entry.attempts += 1
        entry.last_error = why[:300]
        with contextlib.suppress(SpoolError):
            self.spool.update(entry)

    def _backend_down(self, entries: list[OutboxEntry], stats: DeliveryStats, why: str) -> None:
        stats.backend_down = why[:300]
        stats.failed += len(entries)
        for entry in entries:
            self._retry_later(entry, why)
        self.log.warning(
            "event=backend_down jobs_waiting=%d reason=%s", len(entries), " ".join(why.split())
        )


def deliver_pending(
    spool: Spool,
    backend: AccountingBackend,
    settings: AccountingSettings,
    log: logging.Logger,
    *,
    budget_s: float | None = None,
    wait_s: float = 0.0,
    sweep: bool = True,
) -> DeliveryStats:
    """One delivery run: sweep job directories, then drain the outbox."""
    stats = DeliveryStats()
    start = time.monotonic()
    for round_no in range(3):
        with delivery_lock(spool, wait_s if round_no == 0 else 0.0) as mine:
            if not mine:
                stats.lock_busy = round_no == 0
                return stats
            deliverer = Deliverer(spool, backend, settings, log)
            fallback = getattr(backend, "fallback_reason", "")
            if fallback and round_no == 0:
                log.info("event=backend_fallback backend=%s reason=%s", backend.name, fallback)
            if sweep and round_no == 0:
                deliverer.sweep_jobs(stats)
                stats.pruned = prune(deliverer.detail_dir, settings.detail_retention_days)
            left = None if budget_s is None else budget_s - (time.monotonic() - start)
            deliverer.drain(stats, left)
        # An Epilog that found the lock taken just before we let go left its entry
        # to us: look once more after releasing, so nothing waits for the sweeper.
        if stats.backend_down or not _has_fresh_entries(spool):
            break
    return stats


def _has_fresh_entries(spool: Spool) -> bool:
    return any(e.attempts == 0 and e.verify_after is None for _, e in spool.pending())


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(path) if not n.startswith("."))
    except OSError:
        return []


def _mtime(path: Path, default: float) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return default
