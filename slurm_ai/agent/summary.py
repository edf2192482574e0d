"""One job's usage on one node, summarised from the sample store.

Every query is a range scan on a time index over the job's window only, and
the heavy lifting (means, maxima, power integration with LAG, gap detection)
happens inside sqlite: summarising a 24-hour job reads that day's rows once,
never the whole store, and builds no per-sample Python objects.

Coverage is measured from the agent's ticks, never filled in: two ticks more
than GAP_FACTOR intervals apart leave a gap; so do a late first tick and an
early last one. Energy by power integration covers only the sampled time;
the NVML counter delta covers first to last sample in the window (a counter
keeps counting while the agent is down), and both are reported with the span
they cover so they can be compared.

The summary's size is bounded: at most MAX_GPUS GPU entries, MAX_GAPS gaps
and MAX_XIDS distinct XID entries, each with a count of what was left out.
"""

from __future__ import annotations

from typing import Any

from slurm_ai.agent.gpu import THROTTLE_REASONS, THROTTLED_MASK
from slurm_ai.agent.store import SampleStore

SUMMARY_VERSION = 1
GAP_FACTOR = 2.0
MAX_GPUS = 16
MAX_GAPS = 10
MAX_XIDS = 20


def _r(value: Any, digits: int = 3) -> Any:
    return round(float(value), digits) if value is not None else None


def coverage(store: SampleStore, start: float, end: float) -> dict[str, Any]:
    """Share of [start, end] the agent sampled, and the gaps (bounded list)."""
    window = max(end - start, 0.0)
    head = store.query(
        "SELECT COUNT(*), MIN(t), MAX(t), MAX(interval) FROM tick WHERE t >= ? AND t <= ?",
        (start, end),
    )[0]
    count, first, last, max_interval = int(head[0]), head[1], head[2], head[3]
    out: dict[str, Any] = {"samples": count, "interval_s": _r(max_interval)}
    if window <= 0:
        out.update(coverage=0.0, gaps=[], gaps_total=0)
        return out
    if count == 0:
        out.update(coverage=0.0, gaps=[[_r(start, 1), _r(end, 1)]], gaps_total=1)
        return out
    gaps: list[tuple[float, float]] = []
    first_interval = store.query("SELECT interval FROM tick WHERE t = ?", (first,))[0][0]
    if first - start > GAP_FACTOR * first_interval:
        gaps.append((start, first - first_interval))
    # Only the gaps come back from sqlite, not every tick of the window.
    rows = store.query(
        "SELECT prev, t, interval FROM ("
        " SELECT t, interval, LAG(t) OVER (ORDER BY t) AS prev FROM tick"
        " WHERE t >= ? AND t <= ?) WHERE prev IS NOT NULL AND t - prev > ? * interval",
        (start, end, GAP_FACTOR),
    )
    gaps.extend((float(prev), float(t) - float(interval)) for prev, t, interval in rows)
    last_interval = store.query("SELECT interval FROM tick WHERE t = ?", (last,))[0][0]
    if end - last > GAP_FACTOR * last_interval:
        gaps.append((last, end))
    missing = sum(max(b - a, 0.0) for a, b in gaps)
    out["coverage"] = round(min(max(1.0 - missing / window, 0.0), 1.0), 4)
    out["gaps"] = [[_r(a, 1), _r(b, 1)] for a, b in gaps[:MAX_GAPS]]
    out["gaps_total"] = len(gaps)
    out["uncovered_s"] = _r(missing, 1)
    return out


def cpu_usage(
    store: SampleStore, job: str, start: float, end: float, uid: int | None, ncpus: int | None
) -> dict[str, Any]:
    uid_clause, params = ("AND uid = ?", (uid,)) if uid is not None else ("", ())
    row = store.query(
        "SELECT SUM(cpu_d), MAX(nproc_t), MAX(rss_t), AVG(rss_t), MAX(ncpus_t), COUNT(*),"
        " MIN(t), MAX(t) FROM ("
        " SELECT t, SUM(cpu_d) AS cpu_d, SUM(nproc) AS nproc_t, SUM(rss) AS rss_t,"
        " MAX(ncpus) AS ncpus_t FROM job"
        f" WHERE job = ? AND t >= ? AND t <= ? {uid_clause} GROUP BY t)",
        (job, start, end, *params),
    )[0]
    cpu_s, max_procs, peak_rss, mean_rss, seen_cpus, samples = row[:6]
    out: dict[str, Any] = {"samples": int(samples or 0)}
    if not samples:
        return out
    allocated = ncpus if ncpus else (int(seen_cpus) if seen_cpus else None)
    window = end - start
    out.update(
        cpu_s=_r(cpu_s, 2),
        ncpus=allocated,
        ncpus_source="slurm" if ncpus else "affinity",
        peak_rss_bytes=int(peak_rss or 0),
        mean_rss_bytes=int(mean_rss or 0),
        max_procs=int(max_procs or 0),
        first_seen=_r(row[6], 1),
        last_seen=_r(row[7], 1),
    )
    if allocated and window > 0:
        out["efficiency"] = round(float(cpu_s or 0.0) / (allocated * window), 4)
    return out


def _throttle_sql() -> str:
    parts = [f"SUM(CASE WHEN throttle & {bit} THEN 1 ELSE 0 END)" for bit in THROTTLE_REASONS]
    parts.append(f"SUM(CASE WHEN throttle & {THROTTLED_MASK} THEN 1 ELSE 0 END)")
    parts.append("COUNT(throttle)")
    return ", ".join(parts)


def gpu_usage(
    store: SampleStore, index: int, start: float, end: float, max_gap: float | None = None
) -> dict[str, Any]:
    """One GPU over the window (None values where NVML gave nothing)."""
    row = store.query(
        "SELECT COUNT(*), AVG(util), MAX(util), AVG(mem_util), MAX(mem_used), AVG(power_w),"
        " MAX(power_w), AVG(sm_clock), AVG(pcie_tx), AVG(pcie_rx), AVG(nvl_tx), AVG(nvl_rx),"
        f" {_throttle_sql()} FROM gpu WHERE idx = ? AND t >= ? AND t <= ?",
        (index, start, end),
    )[0]
    out: dict[str, Any] = {"index": index, "samples": int(row[0])}
    info = store.query("SELECT uuid, name, mem_total FROM gpu_info WHERE idx = ?", (index,))
    if info:
        out.update(uuid=info[0][0], model=info[0][1], mem_total_bytes=info[0][2])
    if not row[0]:
        return out
    out.update(
        util_mean=_r(row[1], 1),
        util_max=_r(row[2], 1),
        mem_util_mean=_r(row[3], 1),
        mem_max_bytes=int(row[4]) if row[4] is not None else None,
        power_mean_w=_r(row[5], 1),
        power_max_w=_r(row[6], 1),
        sm_clock_mean_mhz=_r(row[7], 0),
    )
    for key, value in zip(
        ("pcie_tx_mean_bps", "pcie_rx_mean_bps", "nvlink_tx_mean_bps", "nvlink_rx_mean_bps"),
        row[8:12],
        strict=True,
    ):
        if value is not None:
            out[key] = _r(value, 0)
    throttle_counts = row[12:]
    with_throttle = int(throttle_counts[-1] or 0)
    if with_throttle:
        shares = {
            name: round(int(count or 0) / with_throttle, 4)
            for name, count in zip(THROTTLE_REASONS.values(), throttle_counts, strict=False)
            if count
        }
        out["throttle"] = shares
        out["throttled_share"] = round(int(throttle_counts[-2] or 0) / with_throttle, 4)
    out.update(_energy(store, index, start, end, max_gap))
    out.update(_ecc(store, index, start, end))
    return out


def _energy(
    store: SampleStore, index: int, start: float, end: float, max_gap: float | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if max_gap is None:
        interval = store.query(
            "SELECT MAX(interval) FROM tick WHERE t >= ? AND t <= ?", (start, end)
        )[0][0]
        max_gap = GAP_FACTOR * float(interval or 0.0)
    # Trapezoids between consecutive samples; a pair further apart than a gap is skipped.
    row = store.query(
        "SELECT SUM((power_w + prev_p) / 2.0 * (t - prev_t)), SUM(t - prev_t) FROM ("
        " SELECT t, power_w, LAG(t) OVER w AS prev_t, LAG(power_w) OVER w AS prev_p"
        " FROM gpu WHERE idx = ? AND t >= ? AND t <= ? AND power_w IS NOT NULL"
        " WINDOW w AS (ORDER BY t))"
        " WHERE prev_t IS NOT NULL AND t - prev_t <= ?",
        (index, start, end, max_gap),
    )[0]
    if row[0] is not None:
        out["energy_power_j"] = _r(row[0], 1)
        out["energy_power_covered_s"] = _r(row[1], 1)
    first = store.query(
        "SELECT t, energy_mj FROM gpu WHERE idx = ? AND t >= ? AND t <= ?"
        " AND energy_mj IS NOT NULL ORDER BY t LIMIT 1",
        (index, start, end),
    )
    last = store.query(
        "SELECT t, energy_mj FROM gpu WHERE idx = ? AND t >= ? AND t <= ?"
        " AND energy_mj IS NOT NULL ORDER BY t DESC LIMIT 1",
        (index, start, end),
    )
    if first and last and last[0][0] > first[0][0]:
        delta = int(last[0][1]) - int(first[0][1])
        if delta >= 0:  # a reset counter (driver reload) gives no delta
            out["energy_counter_j"] = _r(delta / 1000.0, 1)
            out["energy_counter_span_s"] = _r(last[0][0] - first[0][0], 1)
    return out


def _ecc(store: SampleStore, index: int, start: float, end: float) -> dict[str, Any]:
    row = store.query(
        "SELECT MAX(ecc_c) - MIN(ecc_c), MAX(ecc_u) - MIN(ecc_u) FROM gpu"
        " WHERE idx = ? AND t >= ? AND t <= ?",
        (index, start, end),
    )[0]
    if row[0] is None and row[1] is None:
        return {}
    return {"ecc": {"corrected": row[0], "uncorrected": row[1]}}


def xid_events(
    store: SampleStore, gpus: list[int], start: float, end: float
) -> tuple[list[dict[str, Any]], int]:
    marks = ",".join("?" for _ in gpus) or "NULL"
    rows = store.query(
        "SELECT gpu, kind, code, COUNT(*), MIN(t) FROM event"
        f" WHERE t >= ? AND t <= ? AND (gpu IN ({marks}) OR gpu IS NULL)"
        " GROUP BY gpu, kind, code ORDER BY MIN(t)",
        (start, end, *gpus),
    )
    entries = [
        {"gpu": gpu, "kind": kind, "code": code, "count": int(count), "first": _r(first, 1)}
        for gpu, kind, code, count, first in rows
    ]
    return entries[:MAX_XIDS], len(entries)


def _overall(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """Job-level GPU figures over this node's GPUs."""
    measured = [g for g in gpus if g.get("samples")]
    if not measured:
        return {}

    def values(key: str) -> list[float]:
        return [float(g[key]) for g in measured if g.get(key) is not None]

    out: dict[str, Any] = {}
    if values("util_mean"):
        out["util_mean"] = round(sum(values("util_mean")) / len(values("util_mean")), 1)
        out["util_max"] = max(values("util_max"))
    if values("mem_max_bytes"):
        out["mem_max_bytes"] = int(max(values("mem_max_bytes")))
    if values("power_mean_w"):
        out["power_mean_w"] = round(sum(values("power_mean_w")), 1)  # node total
        out["power_max_w"] = round(sum(values("power_max_w")), 1)
    for key in ("energy_power_j", "energy_counter_j"):
        if values(key):
            out[key] = round(sum(values(key)), 1)
    if values("throttled_share"):
        out["throttled_share"] = max(values("throttled_share"))
    return out


def summarise(
    store: SampleStore,
    *,
    job: str,
    gpus: list[int],
    start: float,
    end: float,
    node: str | None = None,
    uid: int | None = None,
    ncpus: int | None = None,
) -> dict[str, Any]:
    """The "usage" fragment of one node record (see module doc)."""
    cover = coverage(store, start, end)
    out: dict[str, Any] = {
        "v": SUMMARY_VERSION,
        "source": "agent",
        "window": {"start": _r(start, 1), "end": _r(end, 1), "s": _r(end - start, 1)},
        **cover,
    }
    if node:
        out["node"] = node
    cpu = cpu_usage(store, job, start, end, uid, ncpus)
    out["cpu"] = cpu
    if "efficiency" in cpu:
        out["cpu_efficiency"] = cpu["efficiency"]
    if "peak_rss_bytes" in cpu:
        out["peak_rss_bytes"] = cpu["peak_rss_bytes"]
    notes: list[str] = []
    if not cpu.get("samples"):
        notes.append("no process of this job was sampled on this node")
    if gpus:
        wanted = sorted(set(gpus))
        max_gap = GAP_FACTOR * float(cover.get("interval_s") or 0.0)
        entries = [gpu_usage(store, index, start, end, max_gap) for index in wanted[:MAX_GPUS]]
        out["gpus"] = entries
        if len(wanted) > MAX_GPUS:
            out["gpus_omitted"] = len(wanted) - MAX_GPUS
        out["gpu"] = _overall(entries)
        xids, total = xid_events(store, wanted, start, end)
        out["xids"] = xids
        if total > len(xids):
            out["xids_omitted"] = total - len(xids)
        if not any(e.get("samples") for e in entries):
            notes.append("no GPU sample in the window")
    if cover.get("coverage", 0.0) < 1.0 and cover.get("gaps_total"):
        notes.append(f"agent samples cover {cover['coverage']:.0%} of the job: gaps not filled in")
    out["notes"] = notes
    return out


def first_job_sample(store: SampleStore, job: str) -> float | None:
    """When the agent first saw the job's processes (index lookup)."""
    row = store.query("SELECT MIN(t) FROM job WHERE job = ?", (job,))
    return float(row[0][0]) if row and row[0][0] is not None else None
