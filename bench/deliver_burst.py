"""500 two-node jobs ending at once: how many accounting calls, how long, how concurrent.

Every job's two Epilogs run in a pool of worker processes (as many nodes
finishing together would), each writing its node file and, when it completes
the set, delivering inline. The backend simulates sacct/sacctmgr latency and
logs each call's interval, from which peak concurrency is computed. Baseline
in the same run: the naive design where each completing Epilog writes its own
job straight away (no shared delivery lock, one read + one write per job).

    python bench/deliver_burst.py [--jobs 500] [--workers 16] [--read-ms 30] [--write-ms 20]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from slurm_ai.accounting.backend import JobRow
from slurm_ai.accounting.deliver import deliver_pending
from slurm_ai.accounting.outbox import Spool, node_file
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.record import AdminComment

LOG = logging.getLogger("bench")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False


class TimedBackend:
    """Simulated slurmdbd client: sleeps, stores comments as files, logs intervals."""

    name = "simulated"
    folds_case = True

    def __init__(self, root: Path, read_s: float, write_s: float) -> None:
        self.root, self.read_s, self.write_s = root, read_s, write_s

    def _log(self, kind: str, t0: float) -> None:
        line = f"{kind} {t0:.6f} {time.perf_counter():.6f}\n".encode()
        fd = os.open(self.root / "calls.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, line)
        os.close(fd)

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        t0 = time.perf_counter()
        time.sleep(self.read_s)
        out = {}
        for job in job_ids:
            path = self.root / "db" / job
            out[job] = JobRow(job, path.read_text() if path.exists() else "")
        self._log("read", t0)
        return out

    def write_admin_comment(self, job_id: str, text: str) -> None:
        t0 = time.perf_counter()
        time.sleep(self.write_s)
        (self.root / "db" / job_id).write_text(text.lower())
        self._log("write", t0)


def epilog(args: tuple[str, str, str, bool, float, float]) -> None:
    root, job, node, naive, read_s, write_s = args
    spool = Spool(Path(root) / "spool", LOG)
    backend = TimedBackend(Path(root), read_s, write_s)
    meta = {"id": job, "nodelist": "n[1-2]", "nodes_expected": 2}
    record = {"time": {"epilog_s": 0.05}, "energy": {"total_j": 1.0, "sources": []}}
    spool.write_node_file(job, node, "node", node_file(node, meta, record, {}))
    if spool.present_nodes(job) < {"n1", "n2"}:
        return
    claimed = spool.claim(job, node)
    if claimed is None:
        return
    spool.finalize(claimed)
    settings = AccountingSettings(max_writes_per_s=0)
    if naive:
        # Baseline: this Epilog delivers its own job, whatever else is running.
        from slurm_ai.accounting.deliver import Deliverer, DeliveryStats

        entry = next(e for _, e in spool.pending() if e.job_id == job)
        Deliverer(spool, backend, settings, LOG).deliver_batch([entry], DeliveryStats())
    else:
        deliver_pending(spool, backend, settings, LOG, budget_s=10.0, sweep=False)


def peak_concurrency(path: Path) -> tuple[int, int, int]:
    events, reads, writes = [], 0, 0
    for line in path.read_text().splitlines():
        kind, start, end = line.split()
        reads += kind == "read"
        writes += kind == "write"
        events += [(float(start), 1), (float(end), -1)]
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return reads, writes, peak


def run(jobs: int, workers: int, naive: bool, read_s: float, write_s: float) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="sai-burst-"))
    (root / "db").mkdir()
    tasks = [
        (str(root), str(10_000 + j), node, naive, read_s, write_s)
        for j in range(jobs)
        for node in ("n1", "n2")
    ]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(epilog, tasks, chunksize=1)
    burst_s = time.perf_counter() - t0
    # What the Epilogs left (budget spent, lock busy at the end): one sweeper run.
    t1 = time.perf_counter()
    deliver_pending(
        Spool(root / "spool", LOG),
        TimedBackend(root, read_s, write_s),
        AccountingSettings(max_writes_per_s=0),
        LOG,
    )
    sweep_s = time.perf_counter() - t1
    reads, writes, peak = peak_concurrency(root / "calls.log")
    complete = sum(
        1
        for p in (root / "db").iterdir()
        if set((AdminComment.parse(p.read_text()).record() or {}).get("nodes", {})) == {"n1", "n2"}
    )
    return {
        "reads": reads,
        "writes": writes,
        "peak": peak,
        "burst_s": burst_s,
        "sweep_s": sweep_s,
        "complete": complete,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--read-ms", type=float, default=30.0)
    parser.add_argument("--write-ms", type=float, default=20.0)
    a = parser.parse_args()
    rs, ws = a.read_ms / 1e3, a.write_ms / 1e3
    naive = run(a.jobs, a.workers, True, rs, ws)
    ours = run(a.jobs, a.workers, False, rs, ws)
    print(
        f"{a.jobs} two-node jobs ending at once, {a.workers} concurrent Epilogs, "
        f"simulated sacct {a.read_ms:g} ms / sacctmgr {a.write_ms:g} ms"
    )
    print(
        f"{'design':34s} {'calls':>6s} {'reads':>6s} {'writes':>6s} {'peak conc':>9s} "
        f"{'burst s':>8s} {'sweep s':>8s} {'complete':>8s}"
    )
    for name, r in (("naive: each Epilog writes", naive), ("slurm-ai: one deliverer", ours)):
        print(
            f"{name:34s} {r['reads'] + r['writes']:6d} {r['reads']:6d} {r['writes']:6d} "
            f"{r['peak']:9d} {r['burst_s']:8.2f} {r['sweep_s']:8.2f} {r['complete']:8d}"
        )
    print(
        f"ratios slurm-ai/naive: calls {(ours['reads'] + ours['writes']) / (naive['reads'] + naive['writes']):.2f}, "
        f"peak concurrency {ours['peak'] / naive['peak']:.2f}, "
        f"total time {(ours['burst_s'] + ours['sweep_s']) / (naive['burst_s'] + naive['sweep_s']):.2f}"
    )


if __name__ == "__main__":
    main()
