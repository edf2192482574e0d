"""The per-job summary: known inputs give known figures; gaps stay gaps; size is bounded."""

from __future__ import annotations

import json
from pathlib import Path

from slurm_ai.agent.samples import GpuEvent, GpuSample, JobSample, Tick
from slurm_ai.agent.store import SampleStore
from slurm_ai.agent.summary import MAX_GAPS, MAX_GPUS, MAX_XIDS, summarise


def _fill(store: SampleStore, times: list[float], *, gpus: int = 1, uid: int = 1000) -> None:
    for t in times:
        store.write_tick(
            Tick(
                t=t,
                interval_s=1.0,
                gpus=[
                    GpuSample(index=i, util=12.0, mem_used=2 << 30, power_w=100.0,
                              throttle=0x4 if int(t) % 4 == 0 else 0, energy_mj=int(t * 100_000))
                    for i in range(gpus)
                ],
                jobs=[JobSample(job="77", uid=uid, cpu_delta_s=0.5, rss_bytes=int(t) << 20,
                                nproc=2, ncpus=4),
                      JobSample(job="77", uid=666, cpu_delta_s=9.0, rss_bytes=1 << 40, nproc=1)],
            ),
            [],
        )  # fmt: skip


def test_constant_load_gives_exact_figures(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "s")
    _fill(store, [float(t) for t in range(100, 161)])
    usage = summarise(store, job="77", gpus=[0], start=100.0, end=160.0, uid=1000, ncpus=2)
    assert usage["coverage"] == 1.0 and usage["gaps"] == []
    gpu = usage["gpus"][0]
    assert gpu["util_mean"] == 12.0 and gpu["power_mean_w"] == 100.0
    assert gpu["energy_power_j"] == 6000.0  # 100 W x 60 s
    assert gpu["energy_counter_j"] == 6000.0  # counter rises 100 J/s
    assert gpu["throttle"] == {"sw_power_cap": round(16 / 61, 4)}
    cpu = usage["cpu"]
    # The fake uid-666 rows (a user faking SLURM_JOB_ID) are not counted.
    assert cpu["cpu_s"] == 30.5 and usage["peak_rss_bytes"] == 160 << 20
    assert usage["cpu_efficiency"] == round(30.5 / (2 * 60), 4)
    assert cpu["ncpus_source"] == "slurm"
    without_slurm = summarise(store, job="77", gpus=[], start=100.0, end=160.0, uid=1000)
    assert without_slurm["cpu"]["ncpus"] == 4 and without_slurm["cpu"]["ncpus_source"] == "affinity"
    assert "gpus" not in without_slurm


def test_agent_down_leaves_gaps_never_filled(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "s")
    times = [float(t) for t in range(100, 121)] + [float(t) for t in range(141, 151)]
    _fill(store, times)
    usage = summarise(store, job="77", gpus=[0], start=100.0, end=160.0, uid=1000)
    # Ticks cover (t-1, t]: 120 -> 141 leaves (120, 140] open; 150 -> 160 is open too.
    assert usage["gaps"] == [[120.0, 140.0], [150.0, 160.0]]
    assert usage["coverage"] == round(1 - 30 / 60, 4)
    assert any("gaps not filled" in note for note in usage["notes"])
    gpu = usage["gpus"][0]
    assert gpu["energy_power_j"] == 2900.0  # only sampled time: (20 + 9) s x 100 W
    assert gpu["energy_power_covered_s"] == 29.0
    assert gpu["energy_counter_j"] == 5000.0  # the counter spans 100 -> 150
    assert gpu["energy_counter_span_s"] == 50.0


def test_no_samples_at_all(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "s")
    usage = summarise(store, job="77", gpus=[0], start=100.0, end=160.0)
    assert usage["coverage"] == 0.0 and usage["gaps_total"] == 1
    assert usage["cpu"] == {"samples": 0}
    assert "no GPU sample in the window" in usage["notes"]


def test_summary_size_is_bounded(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "s")
    t = 0.0
    for i in range(300):  # a gap every other tick, 200 distinct XIDs, 64 GPUs
        t += 5.0 if i % 2 else 1.0
        store.write_tick(
            Tick(t=t, interval_s=1.0,
                 gpus=[GpuSample(index=g, util=50.0, power_w=200.0) for g in range(64)],
                 events=[GpuEvent(t=t, gpu=i % 64, kind="xid", code=i)] if i < 200 else []),
            [],
        )  # fmt: skip
    usage = summarise(store, job="9", gpus=list(range(64)), start=0.0, end=t)
    assert len(usage["gaps"]) == MAX_GAPS and usage["gaps_total"] > 100
    assert len(usage["xids"]) == MAX_XIDS and usage["xids_omitted"] == 200 - MAX_XIDS
    assert len(usage["gpus"]) == MAX_GPUS and usage["gpus_omitted"] == 64 - MAX_GPUS
    assert len(json.dumps(usage)) < 16_000
