"""The nccl-tests-style math, sizes and table (pure)."""

from __future__ import annotations

import pytest

from slurm_ai.health.measure import (
    SizeResult,
    SweepResult,
    SweepSpec,
    algbw_gbps,
    bus_factor,
    expected_sum,
    fault_for_rank,
    format_table,
    parse_size,
    pattern_value,
    size_sweep,
)
from slurm_ai.health.node import HealthReport, device_kind
from slurm_ai.health.verdict import Verdict


def test_bus_factor_matches_nccl_tests() -> None:
    assert bus_factor(1) == 0.0
    assert bus_factor(2) == 1.0
    assert bus_factor(8) == pytest.approx(1.75)
    assert algbw_gbps(1_000_000_000, 0.5) == pytest.approx(2.0)
    assert algbw_gbps(10, 0.0) == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("64K", 65536),
        ("256M", 256 * 2**20),
        ("1G", 2**30),
        ("2MiB", 2 * 2**20),
        (8, 8),
    ],
)
def test_parse_size(text: str | int, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["", "abc", "-4K", "0", "12X", "1e9", "4K; rm -rf /"])
def test_parse_size_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_size_sweep_includes_max_and_aligns_to_elements() -> None:
    assert size_sweep(1024, 16384, 4, "float32") == [1024, 4096, 16384]
    assert size_sweep(1000, 10000, 4, "float32") == [1000, 4000, 10000]
    assert size_sweep(1001, 1001, 2, "float64") == [1000]
    assert size_sweep(1, 3, 2, "float32") == [4]
    with pytest.raises(ValueError):
        size_sweep(10, 5, 4, "float32")
    with pytest.raises(ValueError):
        size_sweep(1, 5, 1, "float32")


def test_pattern_sums_are_exact_small_integers() -> None:
    assert {pattern_value(i, 0) for i in range(100)} == set(range(1, 14))
    assert expected_sum(5, 3) == pattern_value(5, 0) + pattern_value(5, 1) + pattern_value(5, 2)
    assert max(expected_sum(i, 64) for i in range(13)) <= 13 * 64  # exact even in float16


def test_fault_for_rank_parses_only_known_faults() -> None:
    assert fault_for_rank("corrupt:1", 1) == "corrupt"
    assert fault_for_rank("corrupt:1", 0) is None
    assert fault_for_rank("hang:0", 0) == "hang"
    assert fault_for_rank("explode:0", 0) is None
    assert fault_for_rank("garbage", 0) is None
    assert fault_for_rank(None, 0) is None


def test_spec_json_round_trip_and_validation() -> None:
    spec = SweepSpec(sizes=[4096, 65536], iters=3, backend="gloo")
    assert SweepSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError):
        SweepSpec.from_json({"sizes": []})
    with pytest.raises(ValueError):
        SweepSpec.from_json({"sizes": [16], "dtype": "complex128"})


def test_table_has_nccl_tests_columns() -> None:
    rows = [
        SizeResult(4096, 1024, "float32", "sum", 10.0, 0.41, 0.41, 0),
        SizeResult(1048576, 262144, "float32", "sum", 100.0, 10.49, 10.49, 3),
    ]
    result = SweepResult("mpi", 2, "cpu", rows)
    text = format_table(result)
    header = text.splitlines()[2]
    for column in ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong"):
        assert column in header
    assert "   1048576       262144  float32    sum" in text
    assert "Out of bounds values : 3 FAILED" in text
    assert result.wrong == 3
    assert result.largest is rows[1] and result.smallest is rows[0]
    assert SweepResult.from_json(result.to_json()) == result


@pytest.mark.parametrize(
    ("device", "kind"),
    [("cpu", "cpu"), ("cuda:0", "gpu"), ("cuda:7", "gpu"), ("cuda", "gpu"), ("mps", None)],
)
def test_a_record_says_what_the_all_reduce_ran_on(device: str, kind: str | None) -> None:
    rows = [SizeResult(4096, 1024, "float32", "sum", 10.0, 0.41, 0.41, 0)]
    report = HealthReport(Verdict.PASS, "", "gloo", SweepResult("gloo", 2, device, rows))
    assert device_kind(device) == kind
    assert report.fragment()["device"] == kind  # the record: "cpu" or "gpu", small
    assert report.to_json()["device"] == device  # the CLI's JSON: the torch device
    assert HealthReport(Verdict.ERROR, "x").fragment()["device"] is None  # no measurement
