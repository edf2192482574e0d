"""Per-minute rollups of the sample store, and the segment queries that read them.

Why: the Epilog summarises a job's whole window. Read from the raw rows, a
24-hour job at 1 s ticks with 8 GPUs is 864k rows (1.1-1.3 s here, 3.1 s on
a VM). With rollups it reads one row per minute of the window in sqlite, and
raw rows only for the partial minutes at its edges.

A minute is `CAST(t / 60.0 AS INTEGER)` in sqlite and `int(t / 60.0)` in
Python (the same IEEE division, so the same minute for the same float). The
key is monotonic in t, so "minutes < A" and "t < start" never disagree about
a row: every range below is written in minutes plus, for the index, a time
bound one minute wider.

Every rollup row is a *segment*: the same aggregate over a run of raw rows
that a reader computes for its partial edges. Sums, counts, minima and
maxima combine by SUM/MIN/MAX; what depends on consecutive samples (power
trapezoids, tick gaps, RAPL wraps) is kept as the segment's first and last
sample plus its inner figures, and the pairs across segment boundaries are
formed at read time (LAG over the segments). So a summary over
head + rolled minutes + tail has exactly the pairs, sums and extremes of the
same summary over the raw rows (tests/agent/test_rollup.py checks it on a
synthetic day). One thing is window dependent: energy by power skips pairs
further apart than a gap (2 x the window's largest interval); a rolled minute
whose own largest inner pair spacing passes that threshold is summed again
from its raw rows.

Consistency: the writer rolls minute m once a tick of a later minute is
written (`meta.rolled_until`: every minute below it is rolled); a late tick
into a rolled minute rolls that minute again; pruning deletes the rollups of
whole deleted minutes and rolls the minute it cut through again. A reader
that finds no `rolled_until` (a store written before rollups) reads raw rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from slurm_ai.agent.gpu import THROTTLE_REASONS, THROTTLED_MASK

MINUTE_S = 60.0
KEY = "CAST(t / 60.0 AS INTEGER)"
ALL_UIDS = -1  # job_min rows that sum every uid of the job at each instant

ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS tick_min (
    m INTEGER PRIMARY KEY, n INTEGER, tmin REAL, tmax REAL, max_iv REAL,
    first_iv REAL, last_iv REAL, gaps_n INTEGER, gaps_s REAL);
CREATE TABLE IF NOT EXISTS gpu_min (
    idx INTEGER NOT NULL, m INTEGER NOT NULL, {gpu_cols},
    PRIMARY KEY (idx, m)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gpu_min_m ON gpu_min (m);
CREATE TABLE IF NOT EXISTS job_min (
    job TEXT NOT NULL, uid INTEGER NOT NULL, m INTEGER NOT NULL, n INTEGER, cpu REAL,
    nproc_x INTEGER, rss_x INTEGER, rss_s INTEGER, ncpus_x INTEGER, tmin REAL, tmax REAL,
    PRIMARY KEY (job, uid, m)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_min_m ON job_min (m);
CREATE TABLE IF NOT EXISTS rapl_min (
    domain TEXT NOT NULL, m INTEGER NOT NULL, n INTEGER, ft REAL, fu INTEGER,
    lt REAL, lu INTEGER, wraps INTEGER, max_dt REAL,
    PRIMARY KEY (domain, m)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rapl_min_m ON rapl_min (m);
"""

ROLLUP_TABLES = ("tick_min", "gpu_min", "job_min", "rapl_min")


def minute(t: float) -> int:
    return int(t / MINUTE_S)


# -- GPU columns: (name, aggregate over raw rows, how segments combine) ------

_THROTTLE_COLS = [
    (f"thr_{bit}", f"SUM(CASE WHEN throttle & {bit} THEN 1 ELSE 0 END)", "SUM")
    for bit in THROTTLE_REASONS
]
GPU_BASE: list[tuple[str, str, str]] = [
    ("n", "COUNT(*)", "SUM"),
    ("util_s", "SUM(util)", "SUM"),
    ("util_c", "COUNT(util)", "SUM"),
    ("util_x", "MAX(util)", "MAX"),
    ("mu_s", "SUM(mem_util)", "SUM"),
    ("mu_c", "COUNT(mem_util)", "SUM"),
    ("mem_x", "MAX(mem_used)", "MAX"),
    ("p_s", "SUM(power_w)", "SUM"),
    ("p_c", "COUNT(power_w)", "SUM"),
    ("p_x", "MAX(power_w)", "MAX"),
    ("clk_s", "SUM(sm_clock)", "SUM"),
    ("clk_c", "COUNT(sm_clock)", "SUM"),
    ("ptx_s", "SUM(pcie_tx)", "SUM"),
    ("ptx_c", "COUNT(pcie_tx)", "SUM"),
    ("prx_s", "SUM(pcie_rx)", "SUM"),
    ("prx_c", "COUNT(pcie_rx)", "SUM"),
    ("ntx_s", "SUM(nvl_tx)", "SUM"),
    ("ntx_c", "COUNT(nvl_tx)", "SUM"),
    ("nrx_s", "SUM(nvl_rx)", "SUM"),
    ("nrx_c", "COUNT(nvl_rx)", "SUM"),
    *_THROTTLE_COLS,
    ("thr_any", f"SUM(CASE WHEN throttle & {THROTTLED_MASK} THEN 1 ELSE 0 END)", "SUM"),
    ("thr_c", "COUNT(throttle)", "SUM"),
    ("eccc_lo", "MIN(ecc_c)", "MIN"),
    ("eccc_hi", "MAX(ecc_c)", "MAX"),
    ("eccu_lo", "MIN(ecc_u)", "MIN"),
    ("eccu_hi", "MAX(ecc_u)", "MAX"),
]
_PW = "power_w IS NOT NULL"


def _power_cols(threshold: bool) -> list[tuple[str, str]]:
    """First/last power sample and inner trapezoids of a segment.

    `threshold`: a raw read for a known window skips pairs further apart than
    :gap (and reports no max spacing); a rollup keeps every inner pair and its
    largest spacing, so a reader can tell whether the window's threshold
    would have skipped one.
    """
    pair = f"{_PW} AND pt IS NOT NULL" + (" AND t - pt <= :gap" if threshold else "")
    return [
        ("e_ft", f"MIN(CASE WHEN {_PW} THEN t END)"),
        ("e_fp", f"MAX(CASE WHEN {_PW} AND pt IS NULL THEN power_w END)"),
        ("e_lt", f"MAX(CASE WHEN {_PW} THEN t END)"),
        ("e_lp", f"MAX(CASE WHEN {_PW} AND nt IS NULL THEN power_w END)"),
        ("e_s", f"SUM(CASE WHEN {pair} THEN (power_w + pp) / 2.0 * (t - pt) END)"),
        ("e_dt", f"SUM(CASE WHEN {pair} THEN t - pt END)"),
        ("e_mx", "NULL" if threshold else f"MAX(CASE WHEN {pair} THEN t - pt END)"),
    ]


GPU_COLS = [name for name, _, _ in GPU_BASE] + [name for name, _ in _power_cols(False)]


def rollup_schema() -> str:
    return ROLLUP_SCHEMA.format(gpu_cols=", ".join(GPU_COLS))


def _gpu_segment_sql(where: str, *, per_minute: bool, threshold: bool) -> str:
    """One row per GPU (and minute): the segment aggregate of the rows in `where`."""
    part = f"idx, {KEY}" if per_minute else "idx"
    cols = [agg for _, agg, _ in GPU_BASE] + [agg for _, agg in _power_cols(threshold)]
    return (
        f"SELECT idx, {'m' if per_minute else ':seg_m'}, {', '.join(cols)} FROM ("
        f" SELECT *, {KEY} AS m, LAG(t) OVER pw AS pt, LAG(power_w) OVER pw AS pp,"
        f" LEAD(t) OVER pw AS nt FROM gpu WHERE {where}"
        f" WINDOW pw AS (PARTITION BY {part}, power_w IS NULL ORDER BY t))"
        f" GROUP BY {'idx, m' if per_minute else 'idx'}"
    )


# -- ranges ------------------------------------------------------------------


def minute_range(lo: int, hi: int) -> str:
    """Rows of minutes [lo, hi): an index range a minute wider, then the exact key."""
    return f"t >= :lo * 60.0 - 60.0 AND t < :hi * 60.0 + 60.0 AND {KEY} >= :lo AND {KEY} < :hi"


HEAD = f"t >= :start AND t < :a * 60.0 + 60.0 AND {KEY} < :a"
TAIL = f"t >= :r * 60.0 - 60.0 AND t <= :end AND {KEY} >= :r"
WHOLE = "t >= :start AND t <= :end"


# -- writing -----------------------------------------------------------------


def roll(db: sqlite3.Connection, lo: int, hi: int) -> None:
    """(Re)compute the rollups of minutes [lo, hi) from the raw rows (inside a transaction)."""
    if hi <= lo:
        return
    p = {"lo": lo, "hi": hi}
    for table in ROLLUP_TABLES:
        db.execute(f"DELETE FROM {table} WHERE m >= :lo AND m < :hi", p)
    where = minute_range(lo, hi)
    db.execute(
        "INSERT INTO tick_min SELECT m, COUNT(*), MIN(t), MAX(t), MAX(interval),"
        " MAX(CASE WHEN pt IS NULL THEN interval END), MAX(CASE WHEN nt IS NULL THEN interval END),"
        " SUM(CASE WHEN t - pt > 2.0 * interval THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN t - pt > 2.0 * interval THEN t - interval - pt ELSE 0 END) FROM ("
        f" SELECT t, interval, {KEY} AS m, LAG(t) OVER w AS pt, LEAD(t) OVER w AS nt"
        f" FROM tick WHERE {where} WINDOW w AS (PARTITION BY {KEY} ORDER BY t)) GROUP BY m",
        p,
    )
    db.execute(
        f"INSERT INTO gpu_min {_gpu_segment_sql(where, per_minute=True, threshold=False)}", p
    )
    job_cols = "COUNT(*), SUM(cpu_d), MAX(np), MAX(rss), SUM(rss), MAX(nc), MIN(t), MAX(t)"
    db.execute(
        f"INSERT INTO job_min SELECT job, uid, m, {job_cols} FROM ("
        f" SELECT job, uid, t, {KEY} AS m, cpu_d, nproc AS np, rss, ncpus AS nc FROM job"
        f" WHERE {where}) GROUP BY job, uid, m",
        p,
    )
    db.execute(
        f"INSERT INTO job_min SELECT job, {ALL_UIDS}, m, {job_cols} FROM ("
        f" SELECT job, t, {KEY} AS m, SUM(cpu_d) AS cpu_d, SUM(nproc) AS np, SUM(rss) AS rss,"
        f" MAX(ncpus) AS nc FROM job WHERE {where} GROUP BY job, t) GROUP BY job, m",
        p,
    )
    db.execute(
        "INSERT INTO rapl_min SELECT domain, m, COUNT(*), MIN(t),"
        " MAX(CASE WHEN pt IS NULL THEN uj END), MAX(t), MAX(CASE WHEN nt IS NULL THEN uj END),"
        " SUM(CASE WHEN uj < pu THEN 1 ELSE 0 END), MAX(t - pt) FROM ("
        f" SELECT domain, t, uj, {KEY} AS m, LAG(t) OVER w AS pt, LAG(uj) OVER w AS pu,"
        f" LEAD(t) OVER w AS nt FROM rapl WHERE {where}"
        f" WINDOW w AS (PARTITION BY domain, {KEY} ORDER BY t)) GROUP BY domain, m",
        p,
    )


# -- reading -----------------------------------------------------------------


class Split:
    """A window [start, end] cut into a raw head, rolled minutes [a, r), a raw tail."""

    def __init__(self, start: float, end: float, rolled_until: int | None) -> None:
        self.start, self.end = start, end
        self.a = minute(start) + 1 if rolled_until is not None else 0
        self.r = min(minute(end), rolled_until) if rolled_until is not None else 0
        self.rolled = rolled_until is not None and self.a < self.r

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "a": self.a, "r": self.r, **extra}

    def raw_parts(self) -> list[tuple[str, int]]:
        """(where, segment order key) of the raw parts, in time order."""
        if not self.rolled:
            return [(WHOLE, 0)]
        return [(HEAD, self.a - 1), (TAIL, self.r)]


def gpu_raw_sql(where: str, marks: str) -> str:
    """A raw segment per GPU: (idx, *GPU_BASE, e_ft, e_fp, e_lt, e_lp, e_s, e_dt, e_mx)."""
    return _gpu_segment_sql(f"idx IN ({marks}) AND {where}", per_minute=False, threshold=True)


def gpu_rolled_base_sql(marks: str) -> str:
    """The rolled minutes' GPU_BASE aggregates combined, one row per GPU (narrow, no sort)."""
    cols = ", ".join(f"{op}({name})" for name, _, op in GPU_BASE)
    return (
        f"SELECT idx, {cols} FROM gpu_min WHERE idx IN ({marks}) AND m >= :a AND m < :r"
        " GROUP BY idx"
    )


def gpu_rolled_power_sql(marks: str) -> str:
    """The rolled minutes' power as one segment per GPU: (idx, e_ft, e_fp, e_lt, e_lp,
    inner e_s, inner e_dt, edge e_s, edge e_dt, minutes to recut).

    Inner trapezoids of a minute count when its largest spacing is within :gap
    (the others are recut from raw rows: recut_minutes_sql); pairs across
    minutes come from LAG over the minutes that have power samples.
    """
    ok = "(e_mx IS NULL OR e_mx <= :gap)"
    edge = "e_ft - plt <= :gap"
    return (
        "SELECT idx, MIN(e_ft), MAX(CASE WHEN plt IS NULL THEN e_fp END), MAX(e_lt),"
        " MAX(CASE WHEN nm IS NULL THEN e_lp END),"
        f" SUM(CASE WHEN {ok} THEN e_s END), SUM(CASE WHEN {ok} THEN e_dt END),"
        f" SUM(CASE WHEN {edge} THEN (e_fp + plp) / 2.0 * (e_ft - plt) END),"
        f" SUM(CASE WHEN {edge} THEN e_ft - plt END), SUM(e_mx > :gap) FROM ("
        " SELECT idx, e_ft, e_fp, e_lt, e_lp, e_s, e_dt, e_mx, LAG(e_lt) OVER w AS plt,"
        " LAG(e_lp) OVER w AS plp, LEAD(m) OVER w AS nm FROM gpu_min"
        f" WHERE idx IN ({marks}) AND m >= :a AND m < :r AND e_ft IS NOT NULL"
        " WINDOW w AS (PARTITION BY idx ORDER BY m)) GROUP BY idx"
    )


def recut_minutes_sql(marks: str) -> str:
    """Inner trapezoids, cut at :gap, of the rolled minutes whose spacing passes :gap."""
    return (
        "SELECT idx, SUM((power_w + pp) / 2.0 * (t - pt)), SUM(t - pt) FROM ("
        " SELECT g.idx, g.t, g.power_w, LAG(g.t) OVER w AS pt, LAG(g.power_w) OVER w AS pp"
        " FROM gpu_min b JOIN gpu g ON g.idx = b.idx AND g.t >= b.m * 60.0 - 60.0"
        f" AND g.t < b.m * 60.0 + 120.0 AND CAST(g.t / 60.0 AS INTEGER) = b.m"
        f" WHERE b.idx IN ({marks}) AND b.m >= :a AND b.m < :r AND b.e_mx > :gap"
        " AND g.power_w IS NOT NULL WINDOW w AS (PARTITION BY g.idx, b.m ORDER BY g.t))"
        " WHERE pt IS NOT NULL AND t - pt <= :gap GROUP BY idx"
    )


def add(*values: Any) -> Any:
    """Sum that keeps SQL's meaning of NULL: None only when every part is None."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _extreme(op: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if op == "MAX" else min(present)


def combine_base(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """GPU_BASE aggregates of several segments of one GPU, combined as SQL would."""
    out: dict[str, Any] = {}
    for name, _, op in GPU_BASE:
        values = [row[name] for row in rows]
        out[name] = add(*values) if op == "SUM" else _extreme(op, values)
    return out


def job_segments_sql(split: Split, uid_clause: str, *, rollups: bool = True) -> str:
    cols = "COUNT(*), SUM(cpu_d), MAX(np), MAX(rss), SUM(rss), MAX(nc), MIN(t), MAX(t)"
    parts = [
        f"SELECT {order}, {cols} FROM (SELECT t, SUM(cpu_d) AS cpu_d, SUM(nproc) AS np,"
        f" SUM(rss) AS rss, MAX(ncpus) AS nc FROM job WHERE job = :job AND {where}"
        f" {uid_clause} GROUP BY t)"
        for where, order in split.raw_parts()
    ]
    if split.rolled and rollups:
        parts.insert(
            1,
            "SELECT m, n, cpu, nproc_x, rss_x, rss_s, ncpus_x, tmin, tmax FROM job_min"
            " WHERE job = :job AND uid = :uid AND m >= :a AND m < :r",
        )
    return (
        "WITH seg (m, n, cpu, np, rss, rss_s, nc, tmin, tmax) AS"
        f" ({' UNION ALL '.join(parts)})"
        " SELECT SUM(n), SUM(cpu), MAX(np), MAX(rss), SUM(rss_s), MAX(nc), MIN(tmin), MAX(tmax)"
        " FROM seg"
    )


def tick_segments(query: Any, split: Split, *, rollups: bool = True) -> list[tuple[Any, ...]]:
    """Segments of the tick table in time order:
    (m, n, tmin, tmax, max_iv, first_iv, last_iv, gaps_n, gaps_s, kind)."""
    out: list[tuple[Any, ...]] = []
    for index, (where, order) in enumerate(split.raw_parts()):
        if index == 1 and split.rolled and rollups:
            out.extend(
                (*row, "rolled")
                for row in query(
                    "SELECT m, n, tmin, tmax, max_iv, first_iv, last_iv, gaps_n, gaps_s"
                    " FROM tick_min WHERE m >= :a AND m < :r ORDER BY m",
                    split.params(),
                )
            )
        row = query(
            "SELECT COUNT(*), MIN(t), MAX(t), MAX(interval),"
            " MAX(CASE WHEN pt IS NULL THEN interval END),"
            " MAX(CASE WHEN nt IS NULL THEN interval END),"
            " SUM(CASE WHEN t - pt > 2.0 * interval THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN t - pt > 2.0 * interval THEN t - interval - pt ELSE 0 END) FROM ("
            " SELECT t, interval, LAG(t) OVER w AS pt, LEAD(t) OVER w AS nt FROM tick"
            f" WHERE {where} WINDOW w AS (ORDER BY t))",
            split.params(),
        )[0]
        if row[0]:
            out.append((order, *row, where))
    return out


def inner_gaps(
    query: Any, where: str, params: dict[str, Any], limit: int
) -> Sequence[tuple[float, float]]:
    """The first `limit` gaps between consecutive ticks inside one segment."""
    rows = query(
        "SELECT pt, t - interval FROM (SELECT t, interval, LAG(t) OVER (ORDER BY t) AS pt"
        f" FROM tick WHERE {where}) WHERE pt IS NOT NULL AND t - pt > 2.0 * interval"
        " ORDER BY t LIMIT :limit",
        {**params, "limit": limit},
    )
    return [(float(a), float(b)) for a, b in rows]


# -- RAPL counter readings ---------------------------------------------------

_RAPL_RAW = (
    "SELECT COUNT(*), MIN(t), MAX(CASE WHEN pt IS NULL THEN uj END), MAX(t),"
    " MAX(CASE WHEN nt IS NULL THEN uj END), SUM(CASE WHEN uj < pu THEN 1 ELSE 0 END),"
    " MAX(t - pt) FROM (SELECT t, uj, LAG(t) OVER w AS pt, LAG(uj) OVER w AS pu,"
    " LEAD(t) OVER w AS nt FROM rapl WHERE domain = :domain AND {where}"
    " WINDOW w AS (ORDER BY t))"
)


def rapl_segments(
    db: sqlite3.Connection, split: Split, domain: str, *, rollups: bool = True
) -> list[tuple[Any, ...]]:
    """(n, first t, first uj, last t, last uj, inner wraps, inner max spacing, where, params)."""
    out: list[tuple[Any, ...]] = []
    params = split.params(domain=domain)
    for index, (where, _order) in enumerate(split.raw_parts()):
        if index == 1 and split.rolled and rollups:
            for m, *row in db.execute(
                "SELECT m, n, ft, fu, lt, lu, wraps, max_dt FROM rapl_min"
                " WHERE domain = :domain AND m >= :a AND m < :r ORDER BY m",
                params,
            ):
                out.append((*row, minute_range(m, m + 1), {"domain": domain, "lo": m, "hi": m + 1}))
        row = db.execute(_RAPL_RAW.format(where=where), params).fetchone()
        if row and row[0]:
            out.append((*row, where, params))
    return out


def combine_rapl(segments: list[tuple[Any, ...]], db: sqlite3.Connection) -> dict[str, Any] | None:
    """Chain the segments: readings, wraps between consecutive ones, largest spacing."""
    if not segments:
        return None
    wraps = 0
    widest = (-1.0, 0.0, 0.0)  # (spacing, from, to)
    inner_widest: tuple[float, str, dict[str, Any]] | None = None
    previous: tuple[float, int] | None = None
    count = 0
    for n, ft, fu, lt, lu, inner_wraps, max_dt, where, params in segments:
        count += int(n)
        wraps += int(inner_wraps or 0)
        if previous is not None:
            wraps += int(fu) < previous[1]
            if ft - previous[0] > widest[0]:
                widest = (ft - previous[0], previous[0], ft)
        if max_dt is not None and (inner_widest is None or max_dt > inner_widest[0]):
            inner_widest = (float(max_dt), where, params)
        previous = (float(lt), int(lu))
    if inner_widest is not None and inner_widest[0] >= widest[0]:
        # Where the widest spacing inside a segment is (one more query, rare);
        # of equal spacings the earliest is reported.
        _, where, params = inner_widest
        row = db.execute(
            "SELECT pt, t FROM (SELECT t, LAG(t) OVER (ORDER BY t) AS pt FROM rapl"
            f" WHERE domain = :domain AND {where}) WHERE pt IS NOT NULL"
            " ORDER BY t - pt DESC, t LIMIT 1",
            params,
        ).fetchone()
        if inner_widest[0] > widest[0] or float(row[0]) < widest[1]:
            widest = (inner_widest[0], float(row[0]), float(row[1]))
    first, last = segments[0], segments[-1]
    return {
        "n": count,
        "first": (float(first[1]), int(first[2])),
        "last": (float(last[3]), int(last[4])),
        "wraps": wraps,
        "max_dt": max(widest[0], 0.0),
        "gap": (widest[1], widest[2]) if widest[0] >= 0 else None,
    }
