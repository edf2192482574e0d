"""The bounded per-node sample store: one sqlite file, pruned to a byte cap.

Why sqlite rather than a fixed-size ring file: a tick holds a variable number
of rows (one per GPU, one per running job, any XID events), and the Epilog
must read one job's time window out of days of data quickly. sqlite gives
both for free: tables keyed by time (a 24-hour job is a range scan on an
index, never a full scan), atomic commits (a killed agent leaves no torn
record), and it is in the standard library. What a ring file would give by
construction, the size bound, is enforced here twice:

- soft: every `CHECK_EVERY` ticks, when the used pages pass 90% of
  `max_bytes`, the oldest 20% of ticks (and every row of those instants) are
  deleted. sqlite reuses the freed pages, so the file stops growing;
- hard: `PRAGMA max_page_count` makes sqlite refuse to grow the file past
  `max_bytes`; an insert that hits it prunes and retries once.

The write-ahead log is checkpointed by sqlite and truncated to
`journal_size_limit` (4 MiB), so the directory holds at most about
`max_bytes` + 4 MiB. Data older than `retention_s` is dropped as well.

Per-minute rollups (slurm_ai/agent/rollup.py) are written in the same
transaction as the tick that completes a minute, and kept consistent with
pruning: the Epilog reads them for the whole minutes of a job's window.

RAPL energy counters (`rapl` table, one row per domain and tick) let the
energy Epilog step count counter wraps over a long job.

Times are epoch seconds (float). Readers (the Epilog) open the file read-only
while the agent writes: WAL mode lets them run without blocking each other;
`read_snapshot()` gives a reader one consistent state for many queries.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slurm_ai.agent import rollup
from slurm_ai.agent.samples import GpuInfo, Tick
from slurm_ai.errors import SpoolError
from slurm_ai.spool import ensure_private_dir

STORE_FILE = "samples.sqlite"
SCHEMA_VERSION = 2  # 2: per-minute rollups, RAPL readings
PAGE_SIZE = 4096
WAL_LIMIT_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_RETENTION_S = 14 * 86400.0
CHECK_EVERY = 30
MIN_MAX_BYTES = 64 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tick (t REAL PRIMARY KEY, interval REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gpu (
    idx INTEGER NOT NULL, t REAL NOT NULL,
    util REAL, mem_util REAL, mem_used INTEGER, power_w REAL, sm_clock REAL,
    throttle INTEGER, energy_mj INTEGER, pcie_tx REAL, pcie_rx REAL,
    nvl_tx REAL, nvl_rx REAL, ecc_c INTEGER, ecc_u INTEGER,
    PRIMARY KEY (idx, t)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gpu_t ON gpu (t);
CREATE TABLE IF NOT EXISTS job (
    job TEXT NOT NULL, t REAL NOT NULL, uid INTEGER NOT NULL,
    cpu_d REAL NOT NULL, rss INTEGER NOT NULL, nproc INTEGER NOT NULL, ncpus INTEGER NOT NULL,
    PRIMARY KEY (job, t, uid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_t ON job (t);
CREATE TABLE IF NOT EXISTS event (t REAL NOT NULL, gpu INTEGER, kind TEXT, code INTEGER);
CREATE INDEX IF NOT EXISTS event_t ON event (t);
CREATE TABLE IF NOT EXISTS gpu_info (
    idx INTEGER PRIMARY KEY, uuid TEXT, name TEXT, mem_total INTEGER, seen REAL);
CREATE TABLE IF NOT EXISTS rapl (
    domain TEXT NOT NULL, t REAL NOT NULL, uj INTEGER NOT NULL,
    PRIMARY KEY (domain, t)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rapl_t ON rapl (t);
CREATE TABLE IF NOT EXISTS proc_state (
    pid INTEGER NOT NULL, ctime REAL NOT NULL, job TEXT NOT NULL, uid INTEGER NOT NULL,
    cpu REAL NOT NULL, PRIMARY KEY (pid, ctime)) WITHOUT ROWID;
"""

_TIMED_TABLES = ("tick", "gpu", "job", "event", "rapl")


def store_path(directory: str | os.PathLike[str]) -> Path:
    return Path(directory) / STORE_FILE


def _is_full(exc: sqlite3.OperationalError) -> bool:
    return "full" in str(exc).lower()


class SampleStore:
    """Writer (the agent) or reader (the Epilog, `readonly=True`) of one node's store."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        readonly: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        self.directory = Path(directory)
        self.path = store_path(directory)
        self.readonly = readonly
        self.max_bytes = max(int(max_bytes), MIN_MAX_BYTES)
        self.retention_s = retention_s
        self._ticks_since_check = 0
        self._rolled_until: int | None = None
        try:
            if readonly:
                if not self.path.is_file() or self.path.is_symlink():
                    raise SpoolError(f"no sample store at {self.path}")
                # mode=ro: the Epilog must never create or change the agent's store.
                self.db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=5.0, isolation_level=None
                )
                self.db.execute("PRAGMA query_only = ON")
            else:
                ensure_private_dir(self.directory)
                self.db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None)
                os.chmod(self.path, 0o600)
                self._setup_writer()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open sample store {self.path}: {exc}") from exc

    # -- writer -------------------------------------------------------------

    def _setup_writer(self) -> None:
        db = self.db
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        db.executescript(_SCHEMA + rollup.rollup_schema())
        self._rolled_until = self.rolled_until()
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        max_pages = max(self.max_bytes // page_size, 16)
        # The hard cap; an existing larger file is pruned down first.
        self.prune_to_bound(force_target=max_pages)
        db.execute(f"PRAGMA max_page_count = {max(max_pages, self._page_count())}")
        db.execute(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )

    def _page_count(self) -> int:
        return int(self.db.execute("PRAGMA page_count").fetchone()[0])

    def _used_pages(self) -> int:
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return self._page_count() - free

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            self._rolled_until = self.rolled_until()  # the cached value may have moved
            raise
        self.db.execute("COMMIT")

    def write_tick(self, tick: Tick, proc_state: list[tuple[int, float, str, int, float]]) -> None:
        """Store one tick atomically, with the CPU tracker's state (for restarts)."""
        try:
            self._write_tick(tick, proc_state)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise SpoolError(f"sample store {self.path}: {exc}") from exc
            # The hard cap was hit between two soft checks: make room, retry once.
            self.prune_oldest(0.2)
            try:
                self._write_tick(tick, proc_state)
            except sqlite3.Error as exc2:
                raise SpoolError(f"sample store {self.path}: {exc2}") from exc2
        except sqlite3.Error as exc:
            raise SpoolError(f"sample store {self.path}: {exc}") from exc
        self._ticks_since_check += 1
        if self._ticks_since_check >= CHECK_EVERY:
            self._ticks_since_check = 0
            self.prune_to_bound()
            self.prune_older_than(tick.t - self.retention_s)

    def _write_tick(self, tick: Tick, proc_state: list[tuple[int, float, str, int, float]]) -> None:
        t = tick.t
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO tick (t, interval) VALUES (?, ?)", (t, tick.interval_s)
            )
            db.executemany(
                "INSERT OR REPLACE INTO gpu VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        g.index, t, g.util, g.mem_util, g.mem_used, g.power_w, g.sm_clock_mhz,
                        g.throttle, g.energy_mj, g.pcie_tx_bps, g.pcie_rx_bps,
                        g.nvlink_tx_bps, g.nvlink_rx_bps, g.ecc_corrected, g.ecc_uncorrected,
                    )
                    for g in tick.gpus
                ],
            )  # fmt: skip
            db.executemany(
                "INSERT OR REPLACE INTO job VALUES (?,?,?,?,?,?,?)",
                [
                    (j.job, t, j.uid, j.cpu_delta_s, j.rss_bytes, j.nproc, j.ncpus)
                    for j in tick.jobs
                ],
            )
            db.executemany(
                "INSERT INTO event VALUES (?,?,?,?)",
                [(e.t, e.gpu, e.kind, e.code) for e in tick.events],
            )
            db.executemany(
                "INSERT OR REPLACE INTO rapl VALUES (?,?,?)",
                [(domain, t, uj) for domain, uj in tick.rapl.items()],
            )
            db.execute("DELETE FROM proc_state")
            db.executemany("INSERT OR REPLACE INTO proc_state VALUES (?,?,?,?,?)", proc_state)
            self._roll_for(t)

    # -- rollups ------------------------------------------------------------

    def rolled_until(self) -> int | None:
        """Every minute below this one has its rollups; None: no rollups (old store)."""
        try:
            row = self.db.execute("SELECT v FROM meta WHERE k = 'rolled_until'").fetchone()
        except sqlite3.Error:
            return None
        try:
            return int(row[0]) if row else None
        except (TypeError, ValueError):
            return None

    def _set_rolled_until(self, value: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('rolled_until', ?)", (str(value),)
        )
        self._rolled_until = value

    def _roll_for(self, t: float) -> None:
        """After writing a tick at t (inside its transaction): roll completed minutes."""
        current = rollup.minute(t)
        done = self._rolled_until
        if done is None:  # a new store, or one written before rollups: roll its history
            row = self.db.execute("SELECT MIN(t) FROM tick").fetchone()
            first = rollup.minute(float(row[0])) if row and row[0] is not None else current
            rollup.roll(self.db, min(first, current), current)
            self._set_rolled_until(current)
        elif current > done:
            rollup.roll(self.db, done, current)
            self._set_rolled_until(current)
        elif current < done:  # a late tick (clock stepped back) into a rolled minute
            rollup.roll(self.db, current, current + 1)

    def roll_up_to(self, t: float) -> None:
        """Roll every minute before t's (bulk-loaded data, e.g. the benchmark)."""
        with self._transaction():
            self._roll_for(t)

    def write_gpu_info(self, infos: list[GpuInfo], seen: float) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO gpu_info VALUES (?,?,?,?,?)",
                [(i.index, i.uuid, i.name, i.mem_total, seen) for i in infos],
            )

    def load_proc_state(self) -> list[tuple[int, float, str, int, float]]:
        rows = self.db.execute("SELECT pid, ctime, job, uid, cpu FROM proc_state").fetchall()
        return [(int(p), float(c), str(j), int(u), float(cpu)) for p, c, j, u, cpu in rows]

    def prune_older_than(self, cutoff: float) -> None:
        with self._transaction() as db:
            for table in _TIMED_TABLES:
                db.execute(f"DELETE FROM {table} WHERE t < ?", (cutoff,))
            # Rollups of wholly deleted minutes go; the minute cut through is rolled again.
            if cutoff == float("inf"):
                for table in rollup.ROLLUP_TABLES:
                    db.execute(f"DELETE FROM {table}")
                return
            cut = rollup.minute(cutoff)
            for table in rollup.ROLLUP_TABLES:
                db.execute(f"DELETE FROM {table} WHERE m < ?", (cut,))
            if self._rolled_until is not None and cut < self._rolled_until:
                rollup.roll(db, cut, cut + 1)

    def prune_oldest(self, fraction: float) -> None:
        """Delete the oldest `fraction` of ticks and every row from those instants."""
        count = int(self.db.execute("SELECT COUNT(*) FROM tick").fetchone()[0])
        drop = max(1, int(count * fraction))
        row = self.db.execute(
            "SELECT t FROM tick ORDER BY t LIMIT 1 OFFSET ?", (min(drop, max(count - 1, 0)),)
        ).fetchone()
        # Nothing ordered by ticks (or a single tick): drop every timed row.
        cutoff = float("inf") if row is None or count <= 1 else float(row[0])
        self.prune_older_than(cutoff)

    def prune_to_bound(self, force_target: int | None = None) -> None:
        """Soft bound: keep used pages under 90% of the cap, newest data kept."""
        page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        limit = force_target or max(self.max_bytes // page_size, 16)
        for _ in range(20):
            if self._used_pages() <= int(limit * 0.9):
                return
            before = int(self.db.execute("SELECT COUNT(*) FROM tick").fetchone()[0])
            self.prune_oldest(0.2)
            if before == 0:
                return

    # -- reader -------------------------------------------------------------

    @contextlib.contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Many queries against one state of the store (a WAL read transaction)."""
        if self.db.in_transaction:
            yield
            return
        try:
            self.db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise SpoolError(f"sample store {self.path}: {exc}") from exc
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("COMMIT")

    def rapl_chain(
        self, domain: str, start: float, end: float, *, rollups: bool = True
    ) -> dict[str, Any] | None:
        """The agent's readings of one RAPL counter inside [start, end].

        {"n", "first": (t, uj), "last": (t, uj), "wraps", "max_dt", "gap": (t0, t1)}:
        wraps counted between consecutive readings, the largest spacing and where
        it is. None when there is no reading (or no rapl table: an old store).
        """
        split = rollup.Split(start, end, self.rolled_until() if rollups else None)
        try:
            segments = rollup.rapl_segments(self.db, split, domain, rollups=rollups)
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return None
            raise SpoolError(f"sample store {self.path}: {exc}") from exc
        try:
            return rollup.combine_rapl(segments, self.db)
        except sqlite3.Error as exc:
            raise SpoolError(f"sample store {self.path}: {exc}") from exc

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"sample store {self.path}: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
