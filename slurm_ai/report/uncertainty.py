"""95% confidence intervals for the report's figures and comparisons. Pure: numbers in, numbers out.

The rules it implements (docs/report.md, "How sure is a figure"), each checked by
tests/report/test_uncertainty.py against hand-computed or known values:

1. Percentile (elapsed P50/P95/P99, queue-wait P95, busbw median and P5): the
   distribution-free order-statistic interval. Of n values, the number at or
   below the true p-quantile is Binomial(n, p); the interval is [x_(l), x_(u)]
   with l the largest and u the smallest rank such that P(B < l) <= 2.5% and
   P(B >= u) <= 2.5%. Exact binomial sums up to n = 1000, the normal
   approximation of the binomial above. Valid for any continuous distribution:
   elapsed times and waits are skewed, no shape is assumed.
2. A percentile is shown only where rule 1 has an interval inside the sample:
   max(p, 1-p)^n <= 2.5%, i.e. P50 from n = 6, P5/P95 from n = 72, P99 from
   n = 368 (`min_n`). Below that the report says "n too small" with n.
3. Ratio of two percentiles (VM over bare metal): percentile bootstrap with
   2000 replicates and a seed fixed per comparison (same data, same interval).
   A replicate draws each side's resampled percentile directly: the r-th
   smallest of n draws with replacement from the sorted sample is
   x_(ceil(n U)) with U ~ Beta(r, n - r + 1), the same distribution as
   resampling all n values, at O(1) per replicate instead of O(n). When both
   Beta parameters are 1000 or more (a median from 2000 jobs, a P99 from
   100,000) the Beta is drawn as its normal approximation (skewness < 0.06).
4. Cost or kWh per result (total cost / total units: a ratio of sums over
   jobs): the linearised (delta-method) variance of the ratio estimator,
   Var(R) ~ sum((c_i - R u_i)^2) / (n (n - 1) mean(u)^2), from streaming sums
   of squares and cross products (`Moments`: no per-job values kept), and the
   interval R exp(+-t se / R) on the log scale (a cost is positive and its
   error multiplicative), with Student's t at n - 1 degrees of freedom so a
   handful of jobs gives the wide interval it deserves.
5. Ratio of two such figures (independent samples): log ratio, variances add,
   t at min(n_a, n_b) - 1 degrees of freedom.
6. Verdict: an interval of the ratio that holds 1 is "no clear difference";
   otherwise the side the whole interval points to.
7. Jobs it would take to tell (rough, 80% power at 5% two-sided):
   n x ((1.96 + 0.84) se_log / log(1 + d))^2 per side, d the observed
   difference but at least 5% (a smaller tax is not worth a move), where n
   and se_log are the current sample's (se_log shrinks as 1/sqrt(n)).
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
_ALPHA_HALF = (1 - CONFIDENCE) / 2
Z_975 = 1.959963984540054
Z_80 = 0.8416212335729143  # one-sided 80% point: the power of rule 7
BOOTSTRAP_REPLICATES = 2000
MIN_EFFECT = 0.05  # rule 7: the smallest difference worth telling
_EXACT_BINOMIAL_MAX_N = 1000
_NORMAL_BETA_MIN = 1000  # rule 3: Beta(a, b) drawn as a normal when both are this large
# Student's t, two-sided 95% (97.5% point), df 1..30; above 30 the Cornish-Fisher
# expansion in t_975 is within 1e-4 of the table's values.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

NO_CLEAR_DIFFERENCE = "no clear difference"
HIGHER = "higher"
LOWER = "lower"


def t_975(df: int) -> float:
    """The 97.5% point of Student's t with df degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


# ------------------------------------------------------------ rule 1 and 2


def min_n(p: float) -> int:
    """Smallest sample with a distribution-free 95% interval for the p-th percentile."""
    q = max(p, 100.0 - p) / 100.0
    return math.ceil(math.log(_ALPHA_HALF) / math.log(q) - 1e-12)


def _binom_cdf_table(n: int, q: float) -> list[float]:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, q), 0 < q < 1 (log-space terms)."""
    lq, l1q = math.log(q), math.log1p(-q)
    lg_n = math.lgamma(n + 1)
    out, acc = [], 0.0
    for k in range(n + 1):
        acc += math.exp(lg_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lq + (n - k) * l1q)
        out.append(acc)
    return out


def quantile_ranks(n: int, p: float) -> tuple[int, int] | None:
    """1-based ranks (l, u) of rule 1's interval for the p-th percentile, or None.

    None when n < min_n(p): the sample holds no such interval.
    """
    if n < min_n(p):
        return None
    q = p / 100.0
    if n <= _EXACT_BINOMIAL_MAX_N:
        cdf = _binom_cdf_table(n, q)
        # x_(l) <= true quantile fails only if B < l: P(B <= l-1) <= alpha/2.
        low = (
            max(k + 1 for k in range(n + 1) if cdf[k] <= _ALPHA_HALF)
            if cdf[0] <= _ALPHA_HALF
            else 0
        )
        # x_(u) >= true quantile fails only if B >= u: 1 - P(B <= u-1) <= alpha/2.
        high = min(k + 1 for k in range(n + 1) if 1 - cdf[k] <= _ALPHA_HALF)
    else:
        mean, sd = n * q, math.sqrt(n * q * (1 - q))
        low = math.floor(mean - Z_975 * sd)
        high = math.ceil(mean + Z_975 * sd) + 1
    return max(low, 1), min(high, n)


def quantile_ci(sorted_values: Sequence[float], p: float) -> tuple[float, float] | None:
    """Rule 1: (low, high) of the p-th percentile of already sorted values, or None."""
    ranks = quantile_ranks(len(sorted_values), p)
    if ranks is None:
        return None
    return sorted_values[ranks[0] - 1], sorted_values[ranks[1] - 1]


def nearest_rank(n: int, p: float) -> int:
    """The 1-based rank of the nearest-rank p-th percentile (stats.Series.percentile)."""
    return min(max(1, math.ceil(p / 100.0 * n)), n)


# ------------------------------------------------------------ rule 3


@dataclass(frozen=True)
class RatioCI:
    """A ratio a/b with its 95% interval and the spread behind it (rules 3 to 7)."""

    ratio: float
    low: float
    high: float
    se_log: float  # standard error of log(ratio): the input of rule 7
    n_a: int
    n_b: int

    @property
    def verdict(self) -> str:
        """Rule 6: HIGHER (a above b), LOWER, or NO_CLEAR_DIFFERENCE."""
        if self.low <= 1.0 <= self.high:
            return NO_CLEAR_DIFFERENCE
        return HIGHER if self.low > 1.0 else LOWER

    @property
    def effect(self) -> float:
        """Rule 7's difference to tell, as a fraction (0.05: 5%)."""
        observed = abs(math.log(self.ratio)) if self.ratio > 0 else 0.0
        return math.expm1(max(observed, math.log1p(MIN_EFFECT)))

    def jobs_to_tell(self) -> int | None:
        """Rule 7: jobs per side for an 80% chance to tell the difference, or None."""
        if not math.isfinite(self.se_log) or self.se_log <= 0:
            return None
        factor = ((Z_975 + Z_80) * self.se_log / math.log1p(self.effect)) ** 2
        return math.ceil(max(self.n_a, self.n_b) * factor)


def seed_for(key: str) -> int:
    """A fixed seed per comparison: the same data gives the same interval, in any order."""
    return zlib.crc32(key.encode("utf-8"))


def _resampled_quantile(rng: random.Random, sorted_values: Sequence[float], rank: int) -> float:
    n = len(sorted_values)
    a, b = rank, n - rank + 1
    if min(a, b) >= _NORMAL_BETA_MIN:
        # Beta(a, b) by its normal approximation: skewness under 2/sqrt(min(a, b)) = 0.06,
        # and a gauss costs a tenth of a betavariate (two gamma draws).
        mean = a / (a + b)
        u = rng.gauss(mean, math.sqrt(mean * (1 - mean) / (a + b + 1)))
    else:
        u = rng.betavariate(a, b)
    return sorted_values[min(max(math.ceil(n * u), 1), n) - 1]


def quantile_ratio_ci(
    a: Sequence[float],
    b: Sequence[float],
    p: float,
    seed: int,
    replicates: int = BOOTSTRAP_REPLICATES,
) -> RatioCI | None:
    """Rule 3: a's p-th percentile over b's (both sorted) with its bootstrap interval.

    None when a side is below min_n(p) or b's percentile is 0 (no ratio).
    """
    n_a, n_b = len(a), len(b)
    if n_a < min_n(p) or n_b < min_n(p):
        return None
    ra, rb = nearest_rank(n_a, p), nearest_rank(n_b, p)
    qa, qb = a[ra - 1], b[rb - 1]
    if qb <= 0 or qa < 0:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(replicates):
        den = _resampled_quantile(rng, b, rb)
        num = _resampled_quantile(rng, a, ra)
        ratios.append(num / den if den > 0 else math.inf)
    ratios.sort()
    low = ratios[max(0, math.floor(_ALPHA_HALF * replicates))]
    high = ratios[min(replicates - 1, math.ceil((1 - _ALPHA_HALF) * replicates) - 1)]
    if low > 0 and math.isfinite(high):
        se_log = (math.log(high) - math.log(low)) / (2 * Z_975)
    else:
        se_log = math.inf
    return RatioCI(qa / qb, low, high, se_log, n_a, n_b)


# ------------------------------------------------------------ rules 4 and 5


@dataclass
class Moments:
    """Streaming sums of one job-level 4-vector (u, e, n, g) and its products.

    u = result units of the job (1 for "per job"), e = energy J, n = node-seconds,
    g = GPU-seconds: a job's cost is a e + b n + c g for its partition's prices,
    so these sums give the variance of any cost (or kWh) per unit (rule 4).
    """

    jobs: int = 0
    u: float = 0.0
    e: float = 0.0
    n: float = 0.0
    g: float = 0.0
    uu: float = 0.0
    ue: float = 0.0
    un: float = 0.0
    ug: float = 0.0
    ee: float = 0.0
    en: float = 0.0
    eg: float = 0.0
    nn: float = 0.0
    ng: float = 0.0
    gg: float = 0.0

    def add(self, u: float, e: float, n: float, g: float) -> None:
        # add_sums' lines repeated, not called: this runs per job and unit in the hot loop.
        self.jobs += 1
        self.u += u
        self.e += e
        self.n += n
        self.g += g
        self.uu += u * u
        self.ue += u * e
        self.un += u * n
        self.ug += u * g
        self.ee += e * e
        self.en += e * n
        self.eg += e * g
        self.nn += n * n
        self.ng += n * g
        self.gg += g * g

    def add_sums(self, u: float, e: float, n: float, g: float) -> None:
        """The first moments only: the figures without their intervals (bench/report_million.py)."""
        self.jobs += 1
        self.u += u
        self.e += e
        self.n += n
        self.g += g

    def merge(self, o: Moments) -> None:
        for name in Moments.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(o, name))


# Prices of a part as per-job cost coefficients: cost = a e + b n + c g.
Coefficients = tuple[float, float, float]


@dataclass(frozen=True)
class PerResult:
    """Rule 4's figure: total cost / total units, its interval and what rule 5 needs."""

    value: float
    low: float | None
    high: float | None
    se_log: float | None
    jobs: int


def per_result(
    parts: Sequence[tuple[Moments, Coefficients]], scale: float = 1.0, spread: bool = True
) -> PerResult | None:
    """Rule 4 over parts of jobs priced differently (one part per partition).

    scale divides the units (cost per 1M tokens: scale 1e6); without spread, the
    figure alone (Moments.add_sums kept no products). None without units.
    """
    jobs = 0
    cost = units = sq_cost = cross = sq_units = 0.0
    for m, (a, b, c) in parts:
        jobs += m.jobs
        cost += a * m.e + b * m.n + c * m.g
        units += m.u
        sq_cost += (
            a * a * m.ee + b * b * m.nn + c * c * m.gg
            + 2 * (a * b * m.en + a * c * m.eg + b * c * m.ng)
        )  # fmt: skip
        cross += a * m.ue + b * m.un + c * m.ug
        sq_units += m.uu
    if jobs == 0 or units <= 0:
        return None
    ratio = cost / units
    value = ratio * scale
    if jobs < 2 or ratio <= 0 or not spread:
        return PerResult(value, None, None, None, jobs)
    # sum((c_i - R u_i)^2); the mean of c_i - R u_i is 0 by the choice of R.
    residual = max(sq_cost - 2 * ratio * cross + ratio * ratio * sq_units, 0.0)
    mean_units = units / jobs
    se = math.sqrt(residual / (jobs * (jobs - 1))) / mean_units
    se_log = se / ratio
    t = t_975(jobs - 1)
    return PerResult(
        value, value * math.exp(-t * se_log), value * math.exp(t * se_log), se_log, jobs
    )


def per_result_ratio(a: PerResult, b: PerResult) -> RatioCI | None:
    """Rule 5: a over b with the interval of the log ratio; None without both spreads."""
    if a.se_log is None or b.se_log is None or a.value <= 0 or b.value <= 0:
        return None
    ratio = a.value / b.value
    se_log = math.hypot(a.se_log, b.se_log)
    t = t_975(max(min(a.jobs, b.jobs) - 1, 1))
    return RatioCI(
        ratio, ratio * math.exp(-t * se_log), ratio * math.exp(t * se_log), se_log, a.jobs, b.jobs
    )
