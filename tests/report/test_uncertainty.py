"""uncertainty.py against hand-computed and known values (its rules 1 to 7)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from slurm_ai.report.uncertainty import (
    HIGHER,
    LOWER,
    NO_CLEAR_DIFFERENCE,
    Moments,
    RatioCI,
    min_n,
    per_result,
    per_result_ratio,
    quantile_ci,
    quantile_ranks,
    quantile_ratio_ci,
    seed_for,
    t_975,
)


def test_min_n_per_percentile() -> None:
    """Rule 2: max(p, 1-p)^n <= 2.5%: 0.5^6 = 1.6%, 0.95^72 = 2.5%, 0.99^368 = 2.5%."""
    assert (min_n(50), min_n(5), min_n(95), min_n(99)) == (6, 72, 72, 368)
    assert 0.5**5 > 0.025 >= 0.5**6 and 0.95**71 > 0.025 >= 0.95**72
    assert 0.99**367 > 0.025 >= 0.99**368


@pytest.mark.parametrize(
    ("n", "p", "ranks"),
    [
        # Median, from the binomial(n, 1/2) tables: n=6 -> (1, 6) at 96.9%,
        # n=10 -> (2, 9) at 97.9%, n=20 -> (6, 15) at 95.9%.
        (6, 50, (1, 6)),
        (10, 50, (2, 9)),
        (20, 50, (6, 15)),
        (5, 50, None),  # 0.5^5 = 3.1% > 2.5%: no interval, the median is not shown
        (72, 95, (64, 72)),
        (71, 95, None),
        (368, 99, (360, 368)),
    ],
)
def test_order_statistic_ranks(n: int, p: float, ranks: tuple[int, int] | None) -> None:
    assert quantile_ranks(n, p) == ranks


def _binomial_cdf(n: int, q: float) -> Callable[[int], float]:
    """P(B <= k) by exact integer binomial coefficients (not the module's log-space sums)."""

    def cdf(k: int) -> float:
        return math.fsum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1))

    return cdf


def test_ranks_are_95_percent_from_the_binomial() -> None:
    """Coverage P(l <= B < u) of the chosen ranks is at least 95%, and one rank tighter is not."""
    for n, p in ((30, 50), (100, 95), (500, 99), (999, 50)):
        got = quantile_ranks(n, p)
        assert got is not None
        low, high = got
        cdf = _binomial_cdf(n, p / 100)

        assert cdf(high - 1) - cdf(low - 1) >= 0.95
        assert cdf(low - 1) <= 0.025 < cdf(low)  # x_(l+1) would miss more than 2.5%
        assert 1 - cdf(high - 1) <= 0.025 < 1 - cdf(high - 2)


def test_normal_approximation_continues_the_exact_ranks() -> None:
    """Above n = 1000 the normal approximation is used; it differs from exact by <= 1 rank."""
    exact = quantile_ranks(1000, 50)
    approx = quantile_ranks(1001, 50)
    assert exact is not None and approx is not None
    assert abs(exact[0] - approx[0]) <= 1 and abs(exact[1] - approx[1]) <= 2
    assert quantile_ranks(10_000, 50) == (4902, 5099)  # 5000 -+ 1.96 x 50, +1 at the top


def test_median_interval_covers_95_percent_of_skewed_samples() -> None:
    """Lognormal samples of 30 (skewed like elapsed times): the true median exp(0) = 1 is inside."""
    rng = random.Random(5)
    hits = 0
    for _ in range(2000):
        values = sorted(rng.lognormvariate(0, 1) for _ in range(30))
        ci = quantile_ci(values, 50)
        assert ci is not None
        hits += ci[0] <= 1.0 <= ci[1]
    assert 0.95 <= hits / 2000 <= 0.99  # exact coverage of (10, 21) for n = 30: 95.7%


def test_t_quantiles() -> None:
    assert t_975(1) == 12.706 and t_975(2) == 4.303 and t_975(30) == 2.042
    assert t_975(40) == pytest.approx(2.021, abs=1e-3) and t_975(120) == pytest.approx(
        1.980, abs=1e-3
    )
    assert t_975(10**6) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError):
        t_975(0)


def test_quantile_ratio_bootstrap_is_reproducible_and_matches_resampling() -> None:
    """Rule 3: the Beta shortcut gives the same interval as resampling every value."""
    rng = random.Random(1)
    a = sorted(rng.lognormvariate(0.1, 0.4) for _ in range(25))
    b = sorted(rng.lognormvariate(0.0, 0.4) for _ in range(25))
    seed = seed_for("training vm/vm bare/bare elapsed_p50")
    first = quantile_ratio_ci(a, b, 50, seed)
    assert first == quantile_ratio_ci(a, b, 50, seed)  # same data, same interval
    assert first is not None and first.ratio == a[12] / b[12]
    # Brute force: resample 25 values with replacement, take the nearest-rank median.
    brute_rng = random.Random(2)
    ratios = sorted(
        sorted(brute_rng.choices(a, k=25))[12] / sorted(brute_rng.choices(b, k=25))[12]
        for _ in range(4000)
    )
    assert first.low == pytest.approx(ratios[100], rel=0.05)
    assert first.high == pytest.approx(ratios[3899], rel=0.05)
    assert quantile_ratio_ci(a[:5], b, 50, seed) is None  # 5 values: no median (rule 2)
    assert quantile_ratio_ci(a, [0.0] * 25, 50, seed) is None  # a ratio over 0 is none


def test_per_result_by_hand() -> None:
    """Rule 4: jobs (u, cost) = (1, 2), (1, 4), (2, 6): R = 12/4 = 3, residuals -1, 1, 0."""
    m = Moments()
    for u, cost in ((1, 2.0), (1, 4.0), (2, 6.0)):
        m.add(u, cost, 0.0, 0.0)
    fig = per_result([(m, (1.0, 0.0, 0.0))])
    assert fig is not None and fig.value == 3.0 and fig.jobs == 3
    se = math.sqrt(2 / (3 * 2)) / (4 / 3)  # sqrt(sum z^2 / (n (n-1))) / mean(u)
    assert fig.se_log == pytest.approx(se / 3)
    assert fig.low == pytest.approx(3 * math.exp(-4.303 * se / 3))
    assert fig.high == pytest.approx(3 * math.exp(4.303 * se / 3))
    scaled = per_result([(m, (1.0, 0.0, 0.0))], scale=1e6)
    assert (
        scaled is not None
        and scaled.value == pytest.approx(3e6)
        and scaled.low == pytest.approx(fig.low * 1e6)
    )
    one = Moments()
    one.add(1, 5.0, 0.0, 0.0)
    single = per_result([(one, (1.0, 0.0, 0.0))])
    assert (
        single is not None and single.value == 5.0 and single.low is None
    )  # no spread from one job
    assert per_result([(Moments(), (1.0, 0.0, 0.0))]) is None


def test_per_result_prices_parts_separately() -> None:
    """Parts priced differently give the figure of the jobs priced one by one."""
    rng = random.Random(3)
    jobs = [
        (rng.uniform(1, 3), rng.uniform(1e6, 2e6), rng.uniform(1, 5), rng.uniform(0, 8))
        for _ in range(40)
    ]
    coef_a, coef_b = (2e-7, 0.1, 0.5), (3e-7, 0.0, 0.4)
    part_a, part_b, priced = Moments(), Moments(), Moments()
    for i, (u, e, n, g) in enumerate(jobs):
        coef = coef_a if i % 2 else coef_b
        (part_a if i % 2 else part_b).add(u, e, n, g)
        priced.add(u, coef[0] * e + coef[1] * n + coef[2] * g, 0.0, 0.0)
    split = per_result([(part_a, coef_a), (part_b, coef_b)])
    whole = per_result([(priced, (1.0, 0.0, 0.0))])
    assert split is not None and whole is not None
    assert split.value == pytest.approx(whole.value) and split.se_log == pytest.approx(whole.se_log)
    merged = Moments()
    merged.merge(part_a)
    merged.merge(part_a)
    doubled = Moments()
    for i, (u, e, n, g) in enumerate(jobs):
        if i % 2:
            doubled.add(u, e, n, g)
            doubled.add(u, e, n, g)
    for name in Moments.__dataclass_fields__:  # float sums in another order: approx
        assert getattr(merged, name) == pytest.approx(getattr(doubled, name), rel=1e-12), name


def test_ratio_verdicts_and_jobs_to_tell() -> None:
    """Rules 5 to 7 on figures built by hand."""
    same = RatioCI(1.0, 0.8, 1.25, 0.1, 10, 10)
    assert same.verdict == NO_CLEAR_DIFFERENCE
    # (1.96 + 0.84) x 0.1 / ln(1.05) = 5.742; squared x 10 jobs = 330 jobs a side.
    assert same.jobs_to_tell() == 330 and same.effect == pytest.approx(0.05)
    assert RatioCI(1.2, 1.1, 1.3, 0.04, 50, 50).verdict == HIGHER
    assert RatioCI(0.8, 0.7, 0.9, 0.06, 50, 50).verdict == LOWER
    assert RatioCI(1.0, 1.0, 1.0, 0.0, 5, 5).jobs_to_tell() is None  # no spread: nothing to add
    m_a, m_b = Moments(), Moments()
    for cost in (10.0, 12.0, 11.0, 13.0):
        m_a.add(1, cost, 0.0, 0.0)
        m_b.add(1, cost * 1.5, 0.0, 0.0)
    a, b = per_result([(m_a, (1.0, 0.0, 0.0))]), per_result([(m_b, (1.0, 0.0, 0.0))])
    assert a is not None and b is not None
    ratio = per_result_ratio(b, a)
    assert ratio is not None and ratio.ratio == pytest.approx(1.5)
    assert ratio.se_log == pytest.approx(math.hypot(a.se_log or 0, b.se_log or 0))
    assert ratio.low == pytest.approx(1.5 * math.exp(-3.182 * ratio.se_log))  # t at 4 - 1 df
    assert ratio.verdict == HIGHER


def test_large_samples_draw_the_beta_as_a_normal() -> None:
    """Rule 3 above 1000 on both Beta parameters: the interval matches the order-statistic one."""
    rng = random.Random(4)
    a = sorted(rng.lognormvariate(0, 0.5) for _ in range(5000))
    b = [1.0] * 5000  # a constant reference: the ratio's interval is a's median interval
    ci = quantile_ratio_ci(a, b, 50, seed=7)
    exact = quantile_ci(a, 50)
    assert ci is not None and exact is not None
    assert ci.low == pytest.approx(exact[0], rel=0.01) and ci.high == pytest.approx(
        exact[1], rel=0.01
    )
