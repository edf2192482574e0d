"""Benchmark: `slurm-ai report --from` on a 1,000,000-job dump with valid records.

    python bench/report_million.py [--jobs 1000000] [--dump /var/tmp/sai-bench/dump-1M.txt]

The dump is generated once (slurm_ai.report.synth, seed 1) and reused. Each
figure is measured in this run: the baseline is reading the same file line by
line (the floor any streaming reader pays); the report runs with one worker
and with one worker per core. Peak memory is the largest process's max RSS
(report main process or a worker), from getrusage of the waited children.
Target (issue 7): at most 10 s and 1 GiB on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from slurm_ai.report.synth import dump_lines


def _gen_part(args: tuple[int, int, int]) -> str:
    jobs, seed, first = args
    lines = dump_lines(jobs, seed, first_id=first)
    next(lines)  # header once, from the parent
    return "".join(lines)


def generate(path: Path, jobs: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    part = 20000
    tasks = [(min(part, jobs - i), 1000 + i, 1000 + i) for i in range(0, jobs, part)]
    t = time.perf_counter()
    with open(tmp, "w") as out, multiprocessing.Pool() as pool:
        out.write(next(dump_lines(0, 0)))
        for text in pool.imap(_gen_part, tasks):
            out.write(text)
    tmp.rename(path)
    print(
        f"generated {jobs} jobs, {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.1f} s"
    )


def run_report(dump: Path, workers: int) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    argv = [
        sys.executable,
        "-m",
        "slurm_ai",
        "report",
        "--from",
        str(dump),
        "--format",
        "json",
        "--workers",
        str(workers),
    ]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024  # MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--dump", type=Path, default=None)
    ap.add_argument("--skip-serial", action="store_true")
    args = ap.parse_args()
    dump = args.dump or Path(f"/var/tmp/sai-bench/dump-{args.jobs}.txt")
    if not dump.exists():
        generate(dump, args.jobs)
    t = time.perf_counter()
    with open(dump, newline="") as handle:
        for _ in handle:
            pass
    base = time.perf_counter() - t
    cores = len(os.sched_getaffinity(0))
    print(f"jobs: {args.jobs}, dump {dump.stat().st_size / 1e9:.2f} GB, cores: {cores}")
    print(f"baseline (read lines only): {base:.2f} s")
    runs = [] if args.skip_serial else [1]
    runs.append(cores)
    for workers in runs:
        wall, peak = run_report(dump, workers)
        print(
            f"report --workers {workers}: {wall:.2f} s = {wall / base:.1f}x baseline, "
            f"{args.jobs / wall:,.0f} jobs/s, peak RSS {peak:.0f} MiB; "
            f"target 10 s: {'met' if wall <= 10 else f'{wall / 10:.2f}x over'}"
        )


if __name__ == "__main__":
    main()
