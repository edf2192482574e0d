"""Exact, compact order statistics.

Percentiles are exact, from every value kept in an `array('d')` (8 bytes a
value): 1,000,000 jobs x the 3 series kept per job (elapsed, queue wait,
busbw) is 24 MB. A bounded reservoir would cap memory for tens of millions of
jobs but makes P99 depend on a random seed: golden files, the decision
section and two runs over the same data would disagree. Exact it is, until
memory says otherwise.

Percentile definition: nearest rank (the smallest value with at least p% of
the values at or below it), so every figure is a value that was measured and
can be checked by hand.
"""

from __future__ import annotations

import itertools
import math
import operator
from array import array
from collections.abc import Iterable


class Series:
    """A growable list of floats with exact percentiles, mean and CV."""

    __slots__ = ("_sorted", "values")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.values = array("d", values)
        self._sorted = False

    def add(self, value: float) -> None:
        self.values.append(value)
        self._sorted = False

    def extend(self, other: Series) -> None:
        if other.values:
            self.values.extend(other.values)
            self._sorted = False

    def sort(self) -> None:
        """Sort the values in place. Every figure here ignores their order; sorted
        parts (workers sort theirs) make the sort of a merged series cheap:
        Timsort merges the sorted runs instead of sorting from scratch."""
        if not self._sorted:
            self.values = array("d", sorted(self.values))
            self._sorted = True

    def __len__(self) -> int:
        return len(self.values)

    def __getstate__(self) -> bytes:
        return self.values.tobytes()

    def __setstate__(self, state: bytes) -> None:
        self.values = array("d")
        self.values.frombytes(state)
        self._sorted = False

    def percentile(self, p: float) -> float | None:
        n = len(self.values)
        if n == 0:
            return None
        self.sort()
        rank = max(1, math.ceil(p / 100.0 * n))
        return self.values[min(rank, n) - 1]

    def mean(self) -> float | None:
        n = len(self.values)
        return math.fsum(self.values) / n if n else None

    def cv(self) -> float | None:
        """Coefficient of variation: population standard deviation / mean."""
        n = len(self.values)
        mean = self.mean()
        if mean is None or n < 2 or mean == 0:
            return None
        # map over C functions: no Python frame per value (a million values here).
        dev = list(map(operator.sub, self.values, itertools.repeat(mean)))
        var = math.fsum(map(operator.mul, dev, dev)) / n
        return math.sqrt(var) / mean

    def histogram(self, lo: float, hi: float, bins: int) -> list[int]:
        counts = [0] * bins
        width = (hi - lo) / bins if hi > lo else 1.0
        for v in self.values:
            i = int((v - lo) / width)
            counts[min(max(i, 0), bins - 1)] += 1
        return counts
