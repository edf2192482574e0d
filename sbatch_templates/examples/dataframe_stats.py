"""A data-science payload: group-by statistics over a synthetic table with NumPy.

Replace with your notebook's batch work; keep the `mark` call (samples processed).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import mark


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--mark", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(42)
    keys = rng.integers(0, args.groups, args.rows)
    values = rng.normal(10.0, 3.0, args.rows)
    started = time.perf_counter()
    counts = np.bincount(keys, minlength=args.groups)
    sums = np.bincount(keys, weights=values, minlength=args.groups)
    squares = np.bincount(keys, weights=values * values, minlength=args.groups)
    means = sums / np.maximum(counts, 1)
    stds = np.sqrt(np.maximum(squares / np.maximum(counts, 1) - means**2, 0.0))
    elapsed = time.perf_counter() - started
    print(
        f"rows={args.rows} groups={args.groups} mean-of-means={means.mean():.3f} "
        f"mean-std={stds.mean():.3f} in {elapsed * 1000:.1f} ms"
    )
    if args.mark:
        mark(samples=args.rows)


if __name__ == "__main__":
    main()
