"""Chart ticks at round values inside the drawn range."""

from __future__ import annotations

import math
import random

import pytest

from slurm_ai.report.axis import linear_ticks, ratio_ticks, round_step, tick_label, ticks


def is_round(value: float) -> bool:
    """1, 2, 2.5 or 5 times a power of ten, a multiple of that, or 0."""
    if value == 0:
        return True
    mantissa = f"{abs(value):.12e}".split("e")[0].rstrip("0").rstrip(".")
    return len(mantissa.replace(".", "")) <= 3


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.0, 1.2285, [0.0, 0.25, 0.5, 0.75, 1.0]),  # the elapsed chart that showed 0.293 h
        (313.0, 410.0, [320.0, 340.0, 360.0, 380.0, 400.0]),
        (0.0046, 0.0052, [0.0046, 0.0048, 0.005, 0.0052]),
        (-3.0, 3.0, [-2.0, 0.0, 2.0]),
    ],
)
def test_linear_ticks(lo: float, hi: float, expected: list[float]) -> None:
    assert linear_ticks(lo, hi) == expected


def test_ratio_ticks_narrow_and_wide() -> None:
    assert ratio_ticks(0.951, 1.18) == [1.0, 1.05, 1.1, 1.15]  # was 0.951, 1, 1.06...
    assert ratio_ticks(0.3, 3.0) == [0.5, 1.0, 2.0]
    assert ratio_ticks(0.05, 30.0) == [0.1, 1.0, 10.0]


def test_random_ranges_give_few_round_ticks_inside() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        lo = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-8, 0)
        hi = lo + (abs(lo) or 1.0) * 10 ** rng.uniform(-6, 2)
        values = linear_ticks(lo, hi)
        assert 1 <= len(values) <= 6, (lo, hi, values)
        assert all(lo - 1e-9 * abs(lo) <= t <= hi + 1e-9 * abs(hi) for t in values), (lo, hi)
        step = round_step(hi - lo, 5)
        assert is_round(step)
        assert all(abs(t / step - round(t / step)) < 1e-6 for t in values), (lo, hi, values)
        labels = [label for _, label in ticks(lo, hi)]
        assert len(set(labels)) == len(labels), labels  # every label tells its tick apart
        if lo > 0:
            assert all(t > 0 for t in ratio_ticks(lo, hi))


def test_degenerate_ranges() -> None:
    assert linear_ticks(5.0, 5.0) == [5.0]
    assert linear_ticks(380.0, 380.0 + 1e-9) == [380.0]  # every busbw alike
    assert linear_ticks(math.nan, 1.0) == []
    assert ratio_ticks(0.0, 2.0) == linear_ticks(0.0, 2.0)


def test_labels_carry_the_decimals_of_their_step() -> None:
    assert [label for _, label in ticks(0.0, 1.2285)] == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert [label for _, label in ticks(0.951, 1.18, log=True)] == ["1.00", "1.05", "1.10", "1.15"]
    assert [label for _, label in ticks(0.0, 150_000.0)] == ["0", "50k", "100k", "150k"]
    assert [label for _, label in ticks(0.05, 30.0, log=True)] == ["0.1", "1", "10"]
    assert tick_label(-0.0, 0.5) == "0.0" and tick_label(2.5, None) == "2.5"
