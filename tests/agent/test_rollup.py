"""Per-minute rollups give exactly the raw-row summary, over a synthetic day of samples.

The day has what makes rollups hard: jittered times, an interval change
(10 s, then 1 s, then 10 s), agent-down gaps of 30 s, 5 min and 1 h, values
NVML did not give (None), throttle bits, ECC and energy counters, two jobs and
a second uid, RAPL counters that wrap, a late tick into an already rolled
minute (clock stepped back), and retention pruning that cuts a minute in two.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from slurm_ai.agent.samples import GpuEvent, GpuSample, JobSample, Tick
from slurm_ai.agent.store import SampleStore
from slurm_ai.agent.summary import gpu_usages, summarise

T0 = 1_700_000_017.3
DAY = 86_400.0
RAPL_MAX = 65_532_610_987


def _times() -> list[tuple[float, float]]:
    """(tick time, the agent's interval then)."""
    rng = random.Random(7)
    times: list[tuple[float, float]] = []
    t = T0
    while t < T0 + DAY:
        step = 1.0 if T0 + 20_000 <= t < T0 + 23_600 else 10.0  # an hour at 1 s
        t += step + rng.uniform(-0.3, 0.3) * (step / 10)
        if T0 + 30_000 <= t < T0 + 30_030:
            continue  # a 30 s hole (3 ticks)
        if T0 + 40_000 <= t < T0 + 40_300:
            continue  # 5 min
        if T0 + 60_000 <= t < T0 + 63_600:
            continue  # 1 h
        times.append((round(t, 3), step))
    return times


def _tick(rng: random.Random, t: float, i: int, interval: float) -> Tick:
    gpus = []
    for g in range(3):
        gpus.append(
            GpuSample(
                index=g,
                util=None if rng.random() < 0.05 else rng.uniform(0, 100),
                mem_util=rng.uniform(0, 100),
                mem_used=rng.randrange(1 << 30, 80 << 30),
                power_w=None if rng.random() < 0.05 else rng.uniform(60, 700),
                sm_clock_mhz=rng.choice([345.0, 1410.0, 1980.0]),
                throttle=rng.choice([0, 0x4, 0x8 | 0x20, 0x1, None]),
                energy_mj=int((t - T0) * 300_000) if i % 12 == 0 else None,
                pcie_tx_bps=rng.uniform(0, 1e10) if g != 2 else None,
                ecc_corrected=i // 500 if g == 1 else None,
                ecc_uncorrected=0 if g == 1 else None,
            )
        )
    jobs = [
        JobSample(job="501", uid=1000, cpu_delta_s=rng.uniform(0, 8), rss_bytes=rng.randrange(1 << 34),
                  nproc=rng.randrange(1, 9), ncpus=8),
        JobSample(job="501", uid=1234, cpu_delta_s=1.0, rss_bytes=1 << 20, nproc=1, ncpus=1),
        JobSample(job="502", uid=1000, cpu_delta_s=0.5, rss_bytes=1 << 25, nproc=2, ncpus=2),
    ]  # fmt: skip
    events = [GpuEvent(t=t, gpu=1, kind="xid", code=79)] if i % 997 == 0 else []
    energy = int((t - T0) * 250e6)  # 250 W: the AMD counter wraps every ~262 s
    return Tick(t=t, interval_s=interval, gpus=gpus, jobs=jobs, events=events,
                rapl={"package-0": energy % RAPL_MAX})  # fmt: skip


@pytest.fixture(scope="module")
def day_store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    rng = random.Random(11)
    store = SampleStore(tmp_path_factory.mktemp("day") / "n1", max_bytes=512 * 2**20)
    times = _times()
    for i, (t, interval) in enumerate(times):
        store.write_tick(_tick(rng, t, i, interval), [])
        if i == len(times) // 2:
            # The clock stepped back 5 minutes: a late tick into a rolled minute.
            store.write_tick(_tick(rng, t - 300.5, i, interval), [])
    # Retention cuts the first minute-and-a-bit, mid-minute.
    store.prune_older_than(T0 + 95.0)
    return store


def _windows() -> list[tuple[float, float]]:
    rng = random.Random(3)
    fixed = [
        (T0, T0 + DAY),  # more than the data (before the cut, after the end)
        (T0 + 95.0, T0 + DAY - 1),
        (T0 + 19_990.7, T0 + 23_700.2),  # the 1 s stretch and both interval changes
        (T0 + 29_950.0, T0 + 40_500.0),  # the 30 s and 5 min holes
        (T0 + 59_000.0, T0 + 64_000.0),  # the hour-long hole
        (T0 + 61_000.0, T0 + 62_000.0),  # inside the hole: no sample
        (T0 + 43_190.0, T0 + 43_260.0),  # around the late tick
        (T0 + 100.0, T0 + 130.0),  # under a minute
    ]
    random_windows = []
    for _ in range(30):
        a = T0 + rng.uniform(0, DAY)
        random_windows.append((a, min(a + rng.expovariate(1 / 7200), T0 + DAY)))
    return fixed + random_windows


def test_rollups_were_written_and_kept_consistent(day_store: SampleStore) -> None:
    assert day_store.rolled_until() is not None
    (minutes,) = day_store.query("SELECT COUNT(*) FROM tick_min")[0]
    assert minutes > 1000
    # No rollup of a pruned minute; the minute the cut went through matches its raw rows.
    (first_minute,) = day_store.query("SELECT MIN(m) FROM tick_min")[0]
    (first_tick,) = day_store.query("SELECT MIN(t) FROM tick")[0]
    assert first_minute == int(first_tick / 60.0)
    (n,) = day_store.query("SELECT n FROM tick_min WHERE m = ?", (first_minute,))[0]
    assert (
        n
        == day_store.query(
            "SELECT COUNT(*) FROM tick WHERE CAST(t / 60.0 AS INTEGER) = ?", (first_minute,)
        )[0][0]
    )


@pytest.mark.parametrize("window", _windows())
def test_summary_from_rollups_equals_the_raw_row_summary(
    day_store: SampleStore, window: tuple[float, float]
) -> None:
    start, end = window
    for uid in (1000, None):
        args: dict[str, Any] = {
            "job": "501",
            "gpus": [0, 1, 2, 7],
            "start": start,
            "end": end,
            "uid": uid,
        }
        fast = summarise(day_store, **args, ncpus=8)
        raw = summarise(day_store, **args, ncpus=8, rollups=False)
        assert fast == raw
    # A tight gap threshold: minutes with a wider spacing are recut from raw rows.
    tight = gpu_usages(day_store, [0, 1, 2], start, end, 2.0)
    assert tight == gpu_usages(day_store, [0, 1, 2], start, end, 2.0, rollups=False)
    fast_chain = day_store.rapl_chain("package-0", start, end)
    raw_chain = day_store.rapl_chain("package-0", start, end, rollups=False)
    assert fast_chain == raw_chain


def test_the_day_summary_sees_the_holes(day_store: SampleStore) -> None:
    usage = summarise(day_store, job="501", gpus=[0], start=T0 + 95, end=T0 + DAY - 1, uid=1000)
    assert usage["gaps_total"] == 3
    assert 0.95 < usage["coverage"] < 0.96  # 1 h + 5 min + 30 s missing of ~24 h
    chain = day_store.rapl_chain("package-0", T0 + 95, T0 + DAY - 1)
    assert chain is not None and chain["max_dt"] > 3600 and chain["wraps"] > 300


def test_rollups_stay_consistent_at_the_size_bound(tmp_path: Path) -> None:
    # A small cap: prunes (soft) and full-store retries (hard) happen all along.
    store = SampleStore(tmp_path / "n1", max_bytes=256 * 1024)
    rng = random.Random(5)
    t = 0.0
    for i in range(4000):
        t = T0 + i * 1.0
        store.write_tick(_tick(rng, t, i, 1.0), [])
    assert store.rolled_until() == int(t / 60.0)
    rolled = dict(store.query("SELECT m, n FROM tick_min"))
    raw = dict(
        store.query(
            "SELECT CAST(t / 60.0 AS INTEGER) AS m, COUNT(*) FROM tick"
            " WHERE CAST(t / 60.0 AS INTEGER) < ? GROUP BY m",
            (store.rolled_until(),),
        )
    )
    assert rolled == raw and len(rolled) > 3
    first = store.query("SELECT MIN(t) FROM tick")[0][0]
    args: dict[str, Any] = {"job": "501", "gpus": [0, 1], "start": first, "end": t, "uid": 1000}
    assert summarise(store, **args) == summarise(store, **args, rollups=False)
    store.close()
