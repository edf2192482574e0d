"""Benchmark: `slurm-ai report --from` on a 1,000,000-job dump with valid records.

    python bench/report_million.py [--jobs 1000000] [--dump /var/tmp/sai-bench/dump-1M.txt]

The dump is generated once (slurm_ai.report.synth, seed 1) and reused; a dump
of an older token format is regenerated. Each figure is measured in this run:
the baseline is reading the same file line by line (the floor any streaming
reader pays); the report runs with one worker per core, with one worker, and
(when msgspec is installed) with the json.loads-only decoding that a machine
without msgspec gets. Peak memory is the largest process's max RSS (report
main process or a worker), from getrusage of the waited children; CPU is
their user+sys time, which other load on the machine does not inflate the way
it does wall time (the load average is printed for that reason).
Target (issue 7): at most 10 s and 1 GiB on the 2-core dev machine; issue 13
keeps it with the 95% intervals on, and runs the report once without them
(aggregate.INTERVALS off) right before, to show what they cost. Where the
optional isal package is installed, one run inflates with zlib instead, to show
what ISA-L saves.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path

from slurm_ai.record import is_token
from slurm_ai.report import slim as slim_module
from slurm_ai.report.slim import available as msgspec_available
from slurm_ai.report.synth import dump_lines

# A report run with the optional msgspec decoding switched off (forked workers inherit it).
NO_MSGSPEC = (
    "import sys; from slurm_ai.report import facts; facts.slim_available = False; "
    "from slurm_ai.cli import main; main(sys.argv[1:], prog_name='slurm-ai')"
)
# A report run without the 95% intervals (issue 13): the figures alone, as before them.
NO_INTERVALS = (
    "import sys; from slurm_ai.report import aggregate; aggregate.INTERVALS = False; "
    "from slurm_ai.cli import main; main(sys.argv[1:], prog_name='slurm-ai')"
)
# A report run with zlib's inflate where ISA-L's (the optional isal package) is installed.
ZLIB_INFLATE = (
    "import sys, zlib; from slurm_ai.report import facts; "
    "facts.inflate, facts.inflate_errors = zlib.decompress, (zlib.error,); "
    "from slurm_ai.cli import main; main(sys.argv[1:], prog_name='slurm-ai')"
)


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


def current(dump: Path) -> bool:
    """Does the dump hold tokens of the current format (else: regenerate)?"""
    with open(dump, "rb") as handle:
        handle.readline()
        line = handle.readline().decode("utf-8", "replace").rstrip("\n")
    return is_token(line.rsplit(" ", 1)[-1].rsplit("\x1f", 1)[-1]) and "sai1:" in line


def run_report(
    dump: Path, workers: int, slim: bool = True, intervals: bool = True, fast_inflate: bool = True
) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    head = [sys.executable, "-m", "slurm_ai"]
    if not slim:
        head = [sys.executable, "-c", NO_MSGSPEC]
    elif not intervals:
        head = [sys.executable, "-c", NO_INTERVALS]
    elif not fast_inflate:
        head = [sys.executable, "-c", ZLIB_INFLATE]
    argv = [
        *head,
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
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # ru_maxrss of children is the largest process so far: the bench's own
    # children before this run are the dump generators, smaller than a report.
    return wall, cpu, after.ru_maxrss / 1024  # MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--dump", type=Path, default=None)
    ap.add_argument("--skip-serial", action="store_true")
    args = ap.parse_args()
    dump = args.dump or Path(f"/var/tmp/sai-bench/dump-{args.jobs}.txt")
    if not dump.exists() or not current(dump):
        generate(dump, args.jobs)
    t = time.perf_counter()
    with open(dump, newline="") as handle:
        for _ in handle:
            pass
    base = time.perf_counter() - t
    cores = len(os.sched_getaffinity(0))
    print(f"jobs: {args.jobs}, dump {dump.stat().st_size / 1e9:.2f} GB, cores: {cores}")
    print(f"baseline (read lines only): {base:.2f} s; load average {os.getloadavg()[0]:.2f}")
    # (workers, msgspec, intervals, ISA-L): intervals off first, then on, so the two
    # runs that differ only by the intervals sit next to each other in time; then
    # zlib's inflate right after, for the same reason.
    isal = slim_module.inflate is not zlib.decompress
    runs = [(cores, True, False, isal), (cores, True, True, isal)]
    if isal:
        runs.append((cores, True, True, False))
    else:
        print("isal not installed: records are inflated by zlib (pip install 'slurm-ai[report]')")
    if not args.skip_serial:
        runs.append((1, True, True, isal))
    if msgspec_available():
        runs.append((cores, False, True, isal))
    else:
        print("msgspec not installed: every record goes through json.loads")
    for workers, slim, intervals, fast_inflate in runs:
        wall, cpu, peak = run_report(dump, workers, slim, intervals, fast_inflate)
        how = "msgspec" if slim and msgspec_available() else "json.loads"
        how += ", ISA-L" if fast_inflate else ", zlib"
        how += ", intervals" if intervals else ", no intervals"
        print(
            f"report --workers {workers} ({how}): {wall:.2f} s = {wall / base:.1f}x baseline, "
            f"{args.jobs / wall:,.0f} jobs/s, CPU {cpu:.1f} s = {cpu / args.jobs * 1e6:.1f} us/job, "
            f"peak RSS {peak:.0f} MiB; "
            f"target 10 s: {'met' if wall <= 10 else f'{wall / 10:.2f}x over'}; "
            f"load average now {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
