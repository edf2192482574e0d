"""One job's usage on one node, summarised from the sample store.

The window is read as segments (slurm_ai/agent/rollup.py): the agent's
per-minute rollups for every whole minute it has rolled, and raw rows only
for the partial minutes at the window's edges (and any minute not rolled
yet). Everything is aggregated inside sqlite; a 24-hour job reads ~1440
rollup rows per GPU instead of 86400 samples, with the same result as the
raw rows (`rollups=False` reads only raw rows; tests compare the two). The
whole summary is read in one read transaction, so it sees one state of the
store while the agent writes.

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

from slurm_ai.agent import rollup
from slurm_ai.agent.gpu import THROTTLE_REASONS
from slurm_ai.agent.rollup import ALL_UIDS, Split, add
from slurm_ai.agent.store import SampleStore

SUMMARY_VERSION = 1
GAP_FACTOR = 2.0
MAX_GPUS = 16
MAX_GAPS = 10
MAX_XIDS = 20


def _r(value: Any, digits: int = 3) -> Any:
    return round(float(value), digits) if value is not None else None


def _split(store: SampleStore, start: float, end: float, rollups: bool) -> Split:
    return Split(start, end, store.rolled_until() if rollups else None)


def _query(store: SampleStore) -> Any:
    return lambda sql, params: store.query(sql, params)


def coverage(
    store: SampleStore, start: float, end: float, *, rollups: bool = True
) -> dict[str, Any]:
    """Share of [start, end] the agent sampled, and the gaps (bounded list)."""
    window = max(end - start, 0.0)
    split = _split(store, start, end, rollups)
    segments = rollup.tick_segments(_query(store), split, rollups=rollups)
    count = sum(int(seg[1]) for seg in segments)
    max_interval = max((seg[4] for seg in segments), default=None)
    out: dict[str, Any] = {"samples": count, "interval_s": _r(max_interval)}
    if window <= 0:
        out.update(coverage=0.0, gaps=[], gaps_total=0)
        return out
    if count == 0:
        out.update(coverage=0.0, gaps=[[_r(start, 1), _r(end, 1)]], gaps_total=1)
        return out
    first, first_interval = float(segments[0][2]), float(segments[0][5])
    last, last_interval = float(segments[-1][3]), float(segments[-1][6])
    listed: list[tuple[float, float]] = []
    total = 0
    missing = 0.0

    def gap(a: float, b: float) -> None:
        nonlocal total, missing
        total += 1
        missing += max(b - a, 0.0)
        if len(listed) < MAX_GAPS:
            listed.append((a, b))

    if first - start > GAP_FACTOR * first_interval:
        gap(start, first - first_interval)
    previous: float | None = None
    for m, _n, tmin, tmax, _mx, first_iv, _last_iv, gaps_n, gaps_s, kind in segments:
        if previous is not None and tmin - previous > GAP_FACTOR * first_iv:
            gap(previous, tmin - first_iv)
        previous = tmax
        if not gaps_n:
            continue
        # Gaps inside a segment: counted from its figures, listed from its raw rows.
        if len(listed) < MAX_GAPS:
            where, params = (
                (rollup.minute_range(m, m + 1), {"lo": m, "hi": m + 1})
                if kind == "rolled"
                else (kind, split.params())
            )
            listed.extend(rollup.inner_gaps(_query(store), where, params, MAX_GAPS - len(listed)))
        total += int(gaps_n)
        missing += float(gaps_s)
    if end - last > GAP_FACTOR * last_interval:
        gap(last, end)
    out["coverage"] = round(min(max(1.0 - missing / window, 0.0), 1.0), 4)
    out["gaps"] = [[_r(a, 1), _r(b, 1)] for a, b in listed]
    out["gaps_total"] = total
    out["uncovered_s"] = _r(missing, 1)
    return out


def cpu_usage(
    store: SampleStore,
    job: str,
    start: float,
    end: float,
    uid: int | None,
    ncpus: int | None,
    *,
    rollups: bool = True,
) -> dict[str, Any]:
    split = _split(store, start, end, rollups)
    uid_clause = "AND uid = :uid" if uid is not None else ""
    row = store.query(
        rollup.job_segments_sql(split, uid_clause, rollups=rollups),
        split.params(job=job, uid=uid if uid is not None else ALL_UIDS),
    )[0]
    samples, cpu_s, max_procs, peak_rss, rss_sum, seen_cpus, first_seen, last_seen = row
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
        mean_rss_bytes=int((rss_sum or 0) / int(samples)),
        max_procs=int(max_procs or 0),
        first_seen=_r(first_seen, 1),
        last_seen=_r(last_seen, 1),
    )
    if allocated and window > 0:
        out["efficiency"] = round(float(cpu_s or 0.0) / (allocated * window), 4)
    return out


_BASE = [name for name, _, _ in rollup.GPU_BASE]


def _mean(row: dict[str, Any], name: str) -> float | None:
    count = row[f"{name}_c"]
    return row[f"{name}_s"] / count if count else None


_POWER = ["e_ft", "e_fp", "e_lt", "e_lp", "e_s", "e_dt"]


def gpu_usages(
    store: SampleStore,
    indices: list[int],
    start: float,
    end: float,
    max_gap: float | None = None,
    *,
    rollups: bool = True,
) -> list[dict[str, Any]]:
    """Each GPU of `indices` over the window (None values where NVML gave nothing).

    The window's segments (raw head, rolled minutes, raw tail) are read with a
    few narrow queries and combined here: sums and extremes as SQL would, and
    the power trapezoid between the last sample of one segment and the first
    of the next.
    """
    if max_gap is None:
        max_gap = GAP_FACTOR * float(
            coverage(store, start, end, rollups=rollups).get("interval_s") or 0.0
        )
    split = _split(store, start, end, rollups)
    marks = ",".join(str(int(i)) for i in indices) or "NULL"
    params = split.params(gap=max_gap)
    parts: list[dict[int, dict[str, Any]]] = []
    for where, _order in split.raw_parts():
        rows = store.query(rollup.gpu_raw_sql(where, marks).replace(":seg_m", "0"), params)
        parts.append({int(r[0]): dict(zip([*_BASE, *_POWER], r[2:-1], strict=True)) for r in rows})
    if split.rolled and rollups:
        rolled: dict[int, dict[str, Any]] = {
            int(r[0]): dict(zip(_BASE, r[1:], strict=True))
            for r in store.query(rollup.gpu_rolled_base_sql(marks), params)
        }
        recut = 0
        for r in store.query(rollup.gpu_rolled_power_sql(marks), params):
            idx = int(r[0])
            rolled[idx].update(zip(_POWER, r[1:7], strict=True))
            rolled[idx]["e_s"] = add(rolled[idx]["e_s"], r[7])
            rolled[idx]["e_dt"] = add(rolled[idx]["e_dt"], r[8])
            recut += int(r[9] or 0)
        recuts = store.query(rollup.recut_minutes_sql(marks), params) if recut else []
        for idx, e_s, e_dt in recuts:
            rolled[int(idx)]["e_s"] = add(rolled[int(idx)]["e_s"], e_s)
            rolled[int(idx)]["e_dt"] = add(rolled[int(idx)]["e_dt"], e_dt)
        parts.insert(1, rolled)
    return [
        _gpu_entry(store, index, _combine([p[index] for p in parts if index in p], max_gap),
                   start, end)
        for index in indices
    ]  # fmt: skip


def _combine(segments: list[dict[str, Any]], max_gap: float) -> dict[str, Any] | None:
    """One GPU's segments, in time order, combined into one."""
    if not segments:
        return None
    out = rollup.combine_base(segments)
    energy = covered = None
    previous: dict[str, Any] | None = None
    for seg in segments:
        energy, covered = add(energy, seg.get("e_s")), add(covered, seg.get("e_dt"))
        if seg.get("e_ft") is None:
            continue
        if previous is not None:
            spacing = seg["e_ft"] - previous["e_lt"]
            if spacing <= max_gap:
                energy = add(energy, (seg["e_fp"] + previous["e_lp"]) / 2.0 * spacing)
                covered = add(covered, spacing)
        previous = seg
    out["e_s"], out["e_dt"] = energy, covered
    return out


def gpu_usage(
    store: SampleStore,
    index: int,
    start: float,
    end: float,
    max_gap: float | None = None,
    *,
    rollups: bool = True,
) -> dict[str, Any]:
    return gpu_usages(store, [index], start, end, max_gap, rollups=rollups)[0]


def _gpu_entry(
    store: SampleStore, index: int, row: dict[str, Any] | None, start: float, end: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "samples": int(row["n"] or 0) if row else 0}
    info = store.query("SELECT uuid, name, mem_total FROM gpu_info WHERE idx = ?", (index,))
    if info:
        out.update(uuid=info[0][0], model=info[0][1], mem_total_bytes=info[0][2])
    if row is None or not out["samples"]:
        return out
    out.update(
        util_mean=_r(_mean(row, "util"), 1),
        util_max=_r(row["util_x"], 1),
        mem_util_mean=_r(_mean(row, "mu"), 1),
        mem_max_bytes=int(row["mem_x"]) if row["mem_x"] is not None else None,
        power_mean_w=_r(_mean(row, "p"), 1),
        power_max_w=_r(row["p_x"], 1),
        sm_clock_mean_mhz=_r(_mean(row, "clk"), 0),
    )
    for key, name in (
        ("pcie_tx_mean_bps", "ptx"),
        ("pcie_rx_mean_bps", "prx"),
        ("nvlink_tx_mean_bps", "ntx"),
        ("nvlink_rx_mean_bps", "nrx"),
    ):
        value = _mean(row, name)
        if value is not None:
            out[key] = _r(value, 0)
    with_throttle = int(row["thr_c"] or 0)
    if with_throttle:
        out["throttle"] = {
            name: round(int(row[f"thr_{bit}"]) / with_throttle, 4)
            for bit, name in THROTTLE_REASONS.items()
            if row[f"thr_{bit}"]
        }
        out["throttled_share"] = round(int(row["thr_any"] or 0) / with_throttle, 4)
    if row["e_s"] is not None:
        out["energy_power_j"] = _r(row["e_s"], 1)
        out["energy_power_covered_s"] = _r(row["e_dt"], 1)
    out.update(_energy_counter(store, index, start, end))
    if row["eccc_hi"] is not None or row["eccu_hi"] is not None:
        corrected = row["eccc_hi"] - row["eccc_lo"] if row["eccc_hi"] is not None else None
        uncorrected = row["eccu_hi"] - row["eccu_lo"] if row["eccu_hi"] is not None else None
        out["ecc"] = {"corrected": corrected, "uncorrected": uncorrected}
    return out


def _energy_counter(store: SampleStore, index: int, start: float, end: float) -> dict[str, Any]:
    """NVML counter delta, first to last read in the window (two index lookups)."""
    out: dict[str, Any] = {}
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
    rollups: bool = True,
) -> dict[str, Any]:
    """The "usage" fragment of one node record (see module doc)."""
    with store.read_snapshot():
        return _summarise(store, job, gpus, start, end, node, uid, ncpus, rollups)


def _summarise(
    store: SampleStore,
    job: str,
    gpus: list[int],
    start: float,
    end: float,
    node: str | None,
    uid: int | None,
    ncpus: int | None,
    rollups: bool,
) -> dict[str, Any]:
    cover = coverage(store, start, end, rollups=rollups)
    out: dict[str, Any] = {
        "v": SUMMARY_VERSION,
        "source": "agent",
        "window": {"start": _r(start, 1), "end": _r(end, 1), "s": _r(end - start, 1)},
        **cover,
    }
    if node:
        out["node"] = node
    cpu = cpu_usage(store, job, start, end, uid, ncpus, rollups=rollups)
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
        entries = gpu_usages(store, wanted[:MAX_GPUS], start, end, max_gap, rollups=rollups)
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
