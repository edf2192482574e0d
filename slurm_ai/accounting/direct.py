"""The last resort for a node record that neither the spool nor the hold directory takes.

A node whose disks are all full or read-only (the spool's and the hold directory's:
say /var and /run both full) would lose its part of every job that ends meanwhile.
Rather than lose it, the Epilog writes it straight into the job's AdminComment, merged
with what is there (as every delivery merges: nodes delivered earlier are kept, the
record names the nodes still missing), within its inline budget.

Nothing is kept on disk for this path, so nothing retries it: a write that fails too
(slurmdbd down, the job not in accounting before the budget is spent) is the one case
where a node's part is lost, logged as `event=node_record_lost` with all three errors;
the job's record then names the node missing. It takes no delivery lock (the lock is a
file in the spool): a write of another node racing this one can, rarely, undo one of
the two, which the node-local spools' read-back does not cover here either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slurm_ai.accounting.backend import AccountingBackend
from slurm_ai.accounting.deliver import Deliverer, DeliveryStats
from slurm_ai.accounting.outbox import OutboxEntry, Spool, parse_node_file
from slurm_ai.accounting.settings import AccountingSettings

RETRY_S = 1.0  # a job can end before slurmctld has told slurmdbd of it


class MemoryOutbox(Spool):
    """An outbox of entries kept in memory: the Deliverer's bookkeeping, no disk."""

    def __init__(self, root: Path, log: logging.Logger | None = None) -> None:
        super().__init__(root, log)
        self.entries: dict[str, OutboxEntry] = {}

    def put(self, entry: OutboxEntry) -> None:
        self.entries[entry.job_id] = entry

    def update(self, entry: OutboxEntry) -> None:
        self.entries[entry.job_id] = entry

    def remove(self, entry: OutboxEntry, delivered: OutboxEntry | None = None) -> None:
        self.entries.pop(entry.job_id, None)

    def pending(self) -> Iterator[tuple[Path, OutboxEntry]]:
        for entry in list(self.entries.values()):
            yield self.root / "outbox" / f"{entry.job_id}.json", entry


def deliver_node_file(
    node_data: dict[str, Any],
    backend: AccountingBackend,
    settings: AccountingSettings,
    log: logging.Logger,
    *,
    spool_root: Path,
    budget_s: float,
    clock: Any = time,
) -> tuple[bool, str]:
    """Write one node file's record into its job's AdminComment, merged with what is
    there. (True, "") once written (or already there); else (False, why).

    `spool_root` names where detail files are (`[accounting] detail_dir` unset): a job
    too large for AdminComment keeps its nodes there, read to merge and, full disk
    permitting, written (else the reason says why nothing was)."""
    node, record, job, units = parse_node_file(node_data)
    entry = OutboxEntry(job=job, nodes={node: record}, units=units)
    outbox = MemoryOutbox(spool_root, log)
    deliverer = Deliverer(outbox, backend, settings, log, clock=clock)
    deadline = clock.monotonic() + budget_s
    while True:
        stats = DeliveryStats()
        deliverer.deliver_batch([entry], stats)
        if stats.delivered or stats.unchanged:
            return True, ""
        why = stats.backend_down or entry.last_error or "not written"
        if stats.backend_down or not stats.waiting or clock.monotonic() + RETRY_S > deadline:
            return False, why
        clock.sleep(RETRY_S)
