"""Round tick values for the HTML charts' axes.

A reader compares a dot with the gridline beside it, so the ticks sit at round
values (1, 2, 2.5 or 5 times a power of ten) inside the drawn range, never at
the range's own ends (0.293 h, 0.951); a ratio axis on a log scale gets the
same round values where the range is narrow (0.95, 1, 1.05) and 1-2-5 steps
per decade where it spans more than a factor of 4.
"""

from __future__ import annotations

import math

STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
COUNT = 5  # intervals an axis is cut into, at most


def round_step(span: float, count: int) -> float:
    """The smallest round step that cuts span into at most `count` intervals."""
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(s * power for s in STEPS if s * power >= raw * (1 - 1e-9))


def ticks(lo: float, hi: float, log: bool = False) -> list[tuple[float, str]]:
    """(value, label) of an axis' ticks over [lo, hi] (log: a ratio axis, lo > 0)."""
    values = ratio_ticks(lo, hi) if log else linear_ticks(lo, hi)
    stepped = not log or lo <= 0 or hi / lo <= 4  # evenly stepped (else 1-2-5 per decade)
    step = round_step(hi - lo, COUNT) if stepped and len(values) > 1 else None
    return [(v, tick_label(v, step)) for v in values]


def linear_ticks(lo: float, hi: float, count: int = COUNT) -> list[float]:
    """Round values in [lo, hi], at most count + 1 of them, evenly stepped."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi)):  # one value (every job alike): one tick
        return [lo]
    step = round_step(hi - lo, count)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    # k * step, not repeated additions: no 0.30000000000000004 on the axis
    return [_clean(k * step, step) for k in range(first, last + 1)]


def ratio_ticks(lo: float, hi: float, count: int = COUNT) -> list[float]:
    """Round ratios in [lo, hi] for a log axis (lo > 0)."""
    if lo <= 0 or hi <= lo:
        return linear_ticks(lo, hi, count)
    if hi / lo <= 4:
        return [t for t in linear_ticks(lo, hi, count) if t > 0]
    ticks = [
        _clean(m * 10.0**e, 10.0**e)
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1.0, 2.0, 5.0)
    ]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) > count + 1:
        inside = [t for t in inside if _mantissa(t) == 1.0] or inside
    return inside


def tick_label(value: float, step: float | None = None) -> str:
    """A tick's text with the decimals its step needs (0.95, 1.00, 2.5k); without a
    step (1-2-5 ticks), the shortest text of the value."""
    scale, suffix = (1000.0, "k") if abs(value) >= 10_000 and (step or 1000) >= 1000 else (1.0, "")
    if step is None:
        return f"{value / scale:g}{suffix}"
    step /= scale
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if _mantissa(step) == 2.5:
        decimals += 1  # 0.25, 2.5: one digit more than the power of ten says
    return f"{value / scale + 0.0:.{decimals}f}{suffix}"  # + 0.0: no "-0"


def _clean(value: float, step: float) -> float:
    """value rounded to the step's decimals (a float's tail dropped)."""
    decimals = max(0, -math.floor(math.log10(step)) + 2)
    return round(value, decimals) + 0.0  # + 0.0: no "-0"


def _mantissa(value: float) -> float:
    return round(value / 10.0 ** math.floor(math.log10(value)), 6)
