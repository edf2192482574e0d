"""Aggregation against figures computed by hand, and bad input counted, never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurm_ai.accounting.sacct import DELIMITER, FIELDS, read_rows
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError
from slurm_ai.record import encode_record
from slurm_ai.report import facts
from slurm_ai.report.aggregate import MIN_JOBS
from slurm_ai.report.dumpfile import Dump
from slurm_ai.report.pipeline import aggregate_file, aggregate_rows
from slurm_ai.report.prices import load_prices
from slurm_ai.report.stats import Series

D = DELIMITER


def node(cls: str, total_j: float, measured_j: float, verdict: str, busbw: float) -> dict[str, Any]:
    return {
        "platform": {"class": cls},
        "gpus": [{"index": 0, "model": "GPU-X"}, {"index": 1, "model": "GPU-X"}],
        "energy": {
            "total_j": total_j,
            "sources": [
                {"source": "nvml", "joules": measured_j, "quality": "measured"},
                {"source": "cpu-model", "joules": total_j - measured_j, "quality": "estimated"},
            ],
        },
        "health": {"verdict": verdict, "busbw_gbps": busbw, "ranks": 2, "size_bytes": 1024},
    }


def line(
    jobid: str,
    part: str,
    state: str,
    submit: int,
    start: int,
    elapsed: int,
    record: dict[str, Any] | None,
) -> str:
    values = {
        "JobIDRaw": jobid, "User": "u", "Account": "a", "Partition": part, "NodeList": "n1",
        "NNodes": "1", "State": state, "Submit": str(submit), "Start": str(start),
        "End": str(start + elapsed), "ElapsedRaw": str(elapsed),
        "AllocTRES": "cpu=8,node=1,gres/gpu=2", "JobName": "j",
        "AdminComment": encode_record(record) if record else "",
    }  # fmt: skip
    return D.join(values[f] for f in FIELDS) + "\n"


def rec(jobid: str, n: dict[str, Any], tokens: float) -> dict[str, Any]:
    return {
        "v": 1,
        "job": {"id": jobid, "workload": "training"},
        "nodes": {"n1": n},
        "units": {"tokens": tokens},
    }


HAND_DUMP = [
    D.join(FIELDS) + "\n",
    line(
        "1",
        "bare",
        "COMPLETED",
        0,
        60,
        3600,
        rec("1", node("bare-metal", 3.6e6, 2.7e6, "pass", 100.0), 2e6),
    ),
    line(
        "2",
        "bare",
        "FAILED",
        0,
        120,
        7200,
        rec("2", node("bare-metal", 7.2e6, 7.2e6, "fail", 300.0), 4e6),
    ),
    line(
        "3",
        "vm",
        "COMPLETED",
        0,
        0,
        3600,
        rec("3", node("vm-passthrough", 3.6e6, 3.6e6, "pass", 150.0), 1e6),
    ),
    line("4", "vm", "COMPLETED", 0, 0, 3600, None),
]
PRICES = {
    "prices": {
        "cost_per_kwh": 0.25, "pue": 1.3, "co2_kg_per_kwh": 0.35,
        "partitions": {
            "bare": {"cost_per_gpu_hour": 1.80},
            "vm": {"cost_per_kwh": 0.30, "cost_per_node_hour": 0.10, "cost_per_gpu_hour": 1.60},
        },
    }
}  # fmt: skip


def report_of(lines: list[str], workers: int = 1) -> dict[str, Any]:
    layout, rows = read_rows(lines)
    return aggregate_rows(layout, rows, workers=workers).finish(load_prices(Config(None, PRICES)))


def group(report: dict[str, Any], part: str, plat: str) -> dict[str, Any]:
    return next(g for g in report["groups"] if (g["partition"], g["platform"]) == (part, plat))


def test_hand_computed_bare_metal_group() -> None:
    r = report_of(HAND_DUMP)
    g = group(r, "bare", "bare-metal")
    assert g["jobs"] == 2
    assert g["node_hours"] == 3.0 and g["gpu_hours"] == 6.0
    assert g["kwh"] == 3.0 and g["kwh_per_gpu_hour"] == 0.5
    # 3 kWh x PUE 1.3 x 0.25 + 6 GPU-h x 1.80 = 0.975 + 10.8
    assert g["cost"] == pytest.approx(11.775)
    assert g["cost_per_gpu_hour"] == pytest.approx(1.9625)
    assert g["cost_per_job"] == pytest.approx(5.8875)
    assert g["co2_kg"] == pytest.approx(1.365)
    # busbw [100, 300]: mean 200, population sd 100; two values support no percentile
    # (a median needs 6: uncertainty rule 2), so none is shown.
    busbw = g["busbw_gbps"]
    assert busbw["n"] == 2 and busbw["cv"] == 0.5
    assert all(busbw[k] is None for k in ("median", "median_low", "p5", "p95", "p95_high"))
    elapsed = g["elapsed_s"]  # completed jobs only
    assert elapsed["n"] == 1 and elapsed["p50"] is None and elapsed["p99"] is None
    assert elapsed["cv"] is None and elapsed["p99_over_p50"] is None
    assert g["wait_s"]["n"] == 2 and g["wait_s"]["p95"] is None
    assert g["energy_measured_share"] == pytest.approx(0.917, abs=1e-3)  # 9.9 of 10.8 MJ
    assert g["health"] == {"checked": 2, "failed": 1, "failure_rate": 0.5}
    (tokens,) = g["per_unit"]
    assert tokens["cost"] == pytest.approx(11.775 / 6) and tokens["kwh"] == 0.5


def test_hand_computed_vm_group_tax_and_decision() -> None:
    r = report_of(HAND_DUMP)
    vm = group(r, "vm", "vm-passthrough")
    # 1 kWh x 1.3 x 0.30 + 1 node-h x 0.10 + 2 GPU-h x 1.60
    assert vm["cost"] == pytest.approx(3.69)
    nr = group(r, "vm", "no record")
    assert nr["jobs"] == 1 and nr["kwh"] == 0.0 and nr["cost"] == pytest.approx(3.3)
    (bw,) = r["tax"]["busbw"]
    assert (bw["model"], bw["ranks"], bw["size_bytes"], bw["platform"]) == (
        "GPU-X",
        2,
        1024,
        "vm-passthrough",
    )
    # One and two busbw values: no median, so no ratio, and the row says why.
    assert bw["ratio"] is None and bw["verdict"] == "too few jobs"
    assert bw["jobs"] == 1 and bw["bare_metal_jobs"] == 2
    (cost,) = r["tax"]["cost_per_result"]
    assert cost["unit"] == "tokens" and cost["ratio"] == pytest.approx(3.69 / 1.9625, rel=1e-3)
    # One VM job: a figure, but no interval (rule 4 needs two jobs), so no verdict.
    assert cost["per_result_low"] is None and cost["verdict"] == "too few jobs"
    (dec,) = r["decision"]
    assert dec["workload"] == "training" and dec["reference"] == "bare/bare-metal"
    (comp,) = dec["comparisons"]
    assert (
        comp["cost"]["verdict"] == "too few jobs"
        and comp["elapsed_p99"]["verdict"] == "too few jobs"
    )
    assert "too few jobs to say" in dec["verdict"]
    assert r["summary"]["no_record"] == 1 and r["summary"]["with_record"] == 3


def test_decision_with_enough_jobs() -> None:
    """Identical jobs a side: no noise, so the interval is the point and the verdict is clear."""
    lines = _few_jobs(MIN_JOBS)
    (dec,) = report_of(lines)["decision"]
    (comp,) = dec["comparisons"]
    # vm: 1.11 h x (1.6/GPU-h x 2 + 0.1/node-h) + 1 kWh x 1.3 x 0.3 = 4.057 per 1M tokens;
    # bare: 1 h x 1.8 x 2 + 1 kWh x 1.3 x 0.25 = 3.925.
    assert comp["cost"]["ratio"] == pytest.approx(4.0567 / 3.925, abs=0.005)  # 3 digits
    assert comp["cost"]["ratio_low"] == comp["cost"]["ratio_high"] == comp["cost"]["ratio"]
    assert comp["cost"]["verdict"] == "higher" and "VM costs more" in comp["cost"]["says"]
    assert comp["elapsed_p50"]["verdict"] == "higher"  # 4000 s against 3600 s
    assert comp["elapsed_p99"]["verdict"] == "too few jobs"  # 20 jobs: no P99 (needs 368)


def _few_jobs(n: int) -> list[str]:
    lines = [D.join(FIELDS) + "\n"]
    for i in range(n):
        lines.append(
            line(
                str(100 + i),
                "bare",
                "COMPLETED",
                0,
                0,
                3600,
                rec("x", node("bare-metal", 3.6e6, 3.6e6, "pass", 300.0), 1e6),
            )
        )
        lines.append(
            line(
                str(200 + i),
                "vm",
                "COMPLETED",
                0,
                0,
                4000,
                rec("y", node("vm-passthrough", 3.6e6, 3.6e6, "pass", 250.0), 1e6),
            )
        )
    return lines  # fmt: skip


@pytest.mark.parametrize(("min_jobs", "decides"), [(None, False), (4, False), (3, True), (1, True)])
def test_decision_minimum_from_config(min_jobs: int | None, decides: bool) -> None:
    """[report] min_jobs replaces the default 20: 3 jobs a side decide only with min_jobs <= 3."""
    data: dict[str, Any] = {k: dict(v) for k, v in PRICES.items()}
    if min_jobs is not None:
        data["report"] = {"min_jobs": min_jobs}
    layout, rows = read_rows(_few_jobs(3))
    r = aggregate_rows(layout, rows, workers=1).finish(load_prices(Config(None, data)))
    assert r["summary"]["min_jobs"] == (min_jobs or MIN_JOBS)
    (dec,) = r["decision"]
    (comp,) = dec["comparisons"]
    if decides:
        assert comp["cost"]["verdict"] == "higher"
        assert "vm/vm-passthrough" in dec["verdict"] and "n=3/3" in dec["verdict"]
    else:
        assert comp["cost"]["verdict"] == "too few jobs"
        assert f"need {min_jobs or MIN_JOBS} a side" in dec["verdict"]


def test_min_jobs_validation() -> None:
    assert load_prices(Config(None, {})).min_jobs == MIN_JOBS == 20
    for bad in (0, -3):
        with pytest.raises(ConfigError, match=r"\[report\] min_jobs"):
            load_prices(Config(None, {"report": {"min_jobs": bad}}))
    with pytest.raises(ConfigError, match="min_jobs"):
        load_prices(Config(None, {"report": {"min_jobs": "few"}}))


def _prices() -> Any:
    return load_prices(Config(None, PRICES))


@pytest.mark.parametrize("slim", [True, False])
def test_one_or_many_workers_file_or_stream_same_report(
    data_dir: Path, slim: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if slim and not facts.slim_available:
        pytest.skip("msgspec not installed: only the json.loads path exists")
    monkeypatch.setattr(facts, "slim_available", slim)
    path = data_dir / "dump.txt"
    lines = path.read_text().splitlines(keepends=True)
    layout, rows = read_rows(lines)
    expected = aggregate_rows(layout, rows, workers=1).finish(_prices())
    layout, rows = read_rows(lines)
    streamed = aggregate_rows(layout, rows, workers=2, chunk_rows=7).finish(_prices())
    assert streamed == expected
    for workers in (1, 2):
        for chunk_bytes in (499, 4099, 1 << 20):
            got = aggregate_file(Dump.open(str(path)), workers=workers, chunk_bytes=chunk_bytes)
            assert got.finish(_prices()) == expected, (workers, chunk_bytes)


def test_slim_and_full_decoding_agree(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not facts.slim_available:
        pytest.skip("msgspec not installed: only the json.loads path exists")
    dump = Dump.open(str(data_dir / "dump.txt"))
    slim = aggregate_file(dump, workers=1).finish(_prices())
    monkeypatch.setattr(facts, "slim_available", False)
    assert aggregate_file(dump, workers=1).finish(_prices()) == slim


def test_series_nearest_rank() -> None:
    s = Series(float(v) for v in range(1, 101))
    assert (s.percentile(5), s.percentile(50), s.percentile(99), s.percentile(100)) == (
        5.0,
        50.0,
        99.0,
        100.0,
    )
    assert Series().percentile(50) is None and Series([1.0]).cv() is None


def test_prices_validation() -> None:
    assert not load_prices(Config(None, {})).configured
    with pytest.raises(ConfigError, match="pue"):
        load_prices(Config(None, {"prices": {"pue": 0.5}}))
    with pytest.raises(ConfigError, match="cost_per_kwh"):
        load_prices(Config(None, {"prices": {"cost_per_kwh": "cheap"}}))


def test_equal_figures_are_no_clear_difference() -> None:
    """Same elapsed on both sides: no clear difference, not a win for the first partition."""
    lines = [D.join(FIELDS) + "\n"]
    for i in range(6):
        for jobid, part, cls in (
            (100 + i, "bare", "bare-metal"),
            (200 + i, "vm", "vm-passthrough"),
        ):
            lines.append(
                line(str(jobid), part, "COMPLETED", 0, 0, 3600,
                     rec("x", node(cls, 3.6e6, 3.6e6, "pass", 300.0), 1e6))
            )  # fmt: skip
    data: dict[str, Any] = {k: dict(v) for k, v in PRICES.items()}
    data["report"] = {"min_jobs": 3}
    layout, rows = read_rows(lines)
    r = aggregate_rows(layout, rows, workers=1).finish(load_prices(Config(None, data)))
    (dec,) = r["decision"]
    (comp,) = dec["comparisons"]
    assert comp["elapsed_p50"]["verdict"] == "no clear difference"
    assert comp["elapsed_p50"]["ratio"] == 1.0
    assert "shorter" not in dec["verdict"] and "longer" not in dec["verdict"]
