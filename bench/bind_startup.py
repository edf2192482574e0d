#!/usr/bin/env python3
"""Time `slurm-ai bind` adds to a command's start (target: under 50 ms median).

Runs `true` directly and through `slurm-ai bind -- true` (with a fake Slurm
task environment, so the plan is really computed and applied), alternating,
and prints medians, the added time and the ratio to the direct start. Also
times `python -c pass` as the interpreter floor and `slurm-ai --help` as
the cost of click plus the lazy group.

    python3 bench/bind_startup.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    true = shutil.which("true") or "/bin/true"
    entry = shutil.which("slurm-ai")
    cli = [entry] if entry else [sys.executable, "-m", "slurm_ai"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    task_env = {**env, "SLURM_JOB_ID": "1", "SLURM_LOCALID": "0", "SLURM_STEP_TASKS_PER_NODE": "1"}
    cases = {
        "direct: true": ([true], env),
        "python -c pass": ([sys.executable, "-c", "pass"], env),
        "slurm-ai --help": ([*cli, "--help"], env),
        "bind outside Slurm": ([*cli, "bind", "-q", "--", true], env),
        "bind in a task": ([*cli, "bind", "-q", "--", true], task_env),
        "bind -m, no click": (
            [sys.executable, "-m", "slurm_ai.topology.bind", "-q", "--", true],
            task_env,
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for argv, e in cases.values():
        timed(argv, e)  # warm the page cache
    for _ in range(args.runs):
        for name, (argv, e) in cases.items():
            samples[name].append(timed(argv, e))
    base = statistics.median(samples["direct: true"])
    print(f"runs per case: {args.runs}; launcher: {' '.join(cli)}")
    print(f"{'case':<22}{'median ms':>11}{'added ms':>10}{'ratio':>8}")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"{name:<22}{med * 1000:>11.1f}{(med - base) * 1000:>10.1f}{med / base:>8.1f}")
    for name in ("bind in a task", "bind -m, no click"):
        added = statistics.median(samples[name]) - base
        verdict = "meets" if added < 0.050 else "MISSES"
        print(f"{name}: adds {added * 1000:.1f} ms median: {verdict} the 50 ms target")


if __name__ == "__main__":
    main()
