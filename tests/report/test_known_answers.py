"""Dumps whose answer is known (tests/data/report/make_known.py): the report must find it.

- known-tax.txt: the VM partition is 10% slower (throughput and busbw), low noise:
  "VM costs more", busbw "lower", elapsed percentiles "longer".
- known-same.txt: both partitions the same machines, noisy, 30 jobs a side:
  "no clear difference" everywhere, with the jobs it would take to tell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from slurm_ai.cli import main

SAME_PRICES = """
[prices]
cost_per_kwh = 0.25
[prices.partitions.bare]
cost_per_gpu_hour = 2.0
[prices.partitions.vm]
cost_per_gpu_hour = 2.0
"""


def report(data_dir: Path, tmp_path: Path, name: str, fmt: str = "json") -> str:
    cfg = tmp_path / "prices.toml"
    cfg.write_text(SAME_PRICES)
    args = ["--config", str(cfg), "report", "--from", str(data_dir / name), "--format", fmt]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def comparison(data: dict[str, Any]) -> dict[str, Any]:
    (dec,) = data["decision"]
    assert dec["workload"] == "training" and dec["reference"] == "bare/bare-metal"
    (comp,) = dec["comparisons"]
    return comp


def test_a_real_10_percent_tax_is_found(data_dir: Path, tmp_path: Path) -> None:
    data = json.loads(report(data_dir, tmp_path, "known-tax.txt"))
    comp = comparison(data)
    cost = comp["cost"]
    # Same price per GPU-hour, 1/0.9 = 1.11x the GPU-hours per token.
    assert cost["verdict"] == "higher" and cost["ratio_low"] > 1.08 and cost["ratio_high"] < 1.14
    assert cost["says"].startswith("VM costs more")
    for key in ("elapsed_p50", "elapsed_p95", "elapsed_p99"):  # 400 a side: P99 is shown
        assert comp[key]["verdict"] == "higher", key
        assert 1.05 < comp[key]["ratio_low"] <= comp[key]["ratio_high"] < 1.17, key
    (bw,) = data["tax"]["busbw"]
    assert (
        bw["verdict"] == "lower" and 0.88 < bw["ratio_low"] < bw["ratio"] < bw["ratio_high"] < 0.92
    )
    (tax,) = data["tax"]["cost_per_result"]
    assert tax["verdict"] == "higher" and tax["jobs"] == tax["bare_metal_jobs"] == 400
    text = report(data_dir, tmp_path, "known-tax.txt", "table")
    assert "VM costs more, x1.11" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_same_machines_give_no_clear_difference(data_dir: Path, tmp_path: Path) -> None:
    data = json.loads(report(data_dir, tmp_path, "known-same.txt"))
    comp = comparison(data)
    cost = comp["cost"]
    assert cost["verdict"] == "no clear difference"
    assert cost["ratio_low"] < 1 < cost["ratio_high"]
    assert cost["jobs_to_tell"] > 30 and "jobs a side would tell" in cost["says"]
    assert comp["elapsed_p50"]["verdict"] == "no clear difference"
    assert comp["elapsed_p99"]["verdict"] == "too few jobs"  # 30 jobs: no P99 (needs 368)
    (bw,) = data["tax"]["busbw"]
    assert bw["verdict"] == "no clear difference"
    text = report(data_dir, tmp_path, "known-same.txt", "table")
    assert "no clear difference" in text and "costs more" not in text
    assert "n too small for P95 elapsed (needs 72), P99 elapsed (needs 368)" in text


@pytest.mark.parametrize("name", ["known-tax.txt", "known-same.txt"])
def test_csv_carries_intervals_and_n(data_dir: Path, tmp_path: Path, name: str) -> None:
    rows = report(data_dir, tmp_path, name, "csv").splitlines()
    assert any(",elapsed_s.p50_low," in r for r in rows)
    assert any(r.startswith("decision,") and ",cost.ratio_low," in r for r in rows)
    assert any(r.startswith("tax-busbw,") and ",ratio_high," in r for r in rows)
