"""Benchmark: `slurm-ai report --from` on a 1,000,000-job dump with valid records.

    python bench/report_million.py [--jobs 1000000] [--dump PATH] [--record-version 2]
        [--compare-v1] [--short] [--skip-serial]

The dump is generated once (slurm_ai.report.synth, seed 1) and reused; a dump
of an older token format is regenerated. Its records are the hooks' current
format (v2: summary, nodes in full for these small jobs) unless
--record-version 1 asks for the older v1 form. --compare-v1 also runs the C
extension with intervals on a v1 dump of the same jobs first (the figure of
the v1 era, for comparison in the same run); --short keeps only the C and the
Python (msgspec) runs with intervals. Each figure is measured in this run:
the baseline is reading the same file line by line (the floor any streaming
reader pays); then the report, one worker per core: with the C extension
(slurm_ai/report/native/*.c) without and with the 95% intervals, then without
the extension (the pure-Python path: msgspec and ISA-L where installed, then
zlib), with one worker, and with json.loads for every record (no msgspec).
Each run is one `python -c` process that switches a part off first (facts.
fast_available, slim_available, aggregate.INTERVALS); its wall time, its CPU
(user+sys of the report and its workers, from wait4) and its peak RSS (the
largest of those processes, this run alone). CPU per job is the figure other
load on the shared machine inflates least; the load average is printed with
each row for that reason.
Target (issue 7): at most 10 s and 1 GiB on the 2-core dev machine; issue 13
keeps it with the 95% intervals on.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

from slurm_ai.errors import RecordError
from slurm_ai.record import decode_token, is_token
from slurm_ai.report import facts
from slurm_ai.report import slim as slim_module
from slurm_ai.report.slim import available as msgspec_available
from slurm_ai.report.synth import dump_lines

# Each report runs as `python -c RUN % SETUP`: SETUP switches a part off before the CLI
# starts (forked workers inherit it).
RUN = "import sys; %s; from slurm_ai.cli import main; main(sys.argv[1:], prog_name='slurm-ai')"
# The C extension off (rows and records): the pure-Python path (msgspec and ISA-L where
# installed).
NO_C = (
    "from slurm_ai.report import dumpfile, facts; "
    "facts.fast_available = dumpfile.fast_available = False"
)
# The optional msgspec decoding off as well: json.loads for every record.
NO_MSGSPEC = f"{NO_C}; facts.slim_available = False"
# Without the 95% intervals (issue 13): the figures alone, as before them.
NO_INTERVALS = "from slurm_ai.report import aggregate; aggregate.INTERVALS = False"
# The Python path with zlib's inflate where ISA-L's (the optional isal package) is installed.
ZLIB_INFLATE = (
    f"{NO_C}; import zlib; facts.inflate, facts.inflate_errors = zlib.decompress, (zlib.error,)"
)


def _gen_part(args: tuple[int, int, int, int]) -> str:
    jobs, seed, first, version = args
    lines = dump_lines(jobs, seed, first_id=first, version=version)
    next(lines)  # header once, from the parent
    return "".join(lines)


def generate(path: Path, jobs: int, version: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    part = 20000
    tasks = [(min(part, jobs - i), 1000 + i, 1000 + i, version) for i in range(0, jobs, part)]
    t = time.perf_counter()
    with open(tmp, "w") as out, multiprocessing.Pool() as pool:
        out.write(next(dump_lines(0, 0)))
        for text in pool.imap(_gen_part, tasks):
            out.write(text)
    tmp.rename(path)
    print(
        f"generated {jobs} jobs (record v{version}), {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.1f} s"
    )


def current(dump: Path, version: int) -> bool:
    """Does the dump hold tokens of the current format and `version` (else: regenerate)?"""
    with open(dump, "rb") as handle:
        handle.readline()
        line = handle.readline().decode("utf-8", "replace").rstrip("\n")
    token = line.rsplit(" ", 1)[-1].rsplit("\x1f", 1)[-1]
    if not (is_token(token) and "sai1:" in line):
        return False
    try:
        return decode_token(token).get("v") == version
    except RecordError:
        return False


def ready_dump(jobs: int, version: int, path: Path | None) -> Path:
    dump = path or Path(f"/var/tmp/sai-bench/dump-v{version}-{jobs}.txt")
    if not dump.exists() or not current(dump, version):
        generate(dump, jobs, version)
    return dump


def run_report(dump: Path, workers: int, setup: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one report run, its workers included."""
    argv = [sys.executable, "-c", RUN % (setup or "pass")]
    argv += ["report", "--from", str(dump), "--format", "json", "--workers", str(workers)]
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    # wait4's usage covers the report and the workers it waited for: user+sys time, and
    # the largest max RSS of them (the main process or one worker), of this run alone.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"report failed: exit {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--dump", type=Path, default=None)
    ap.add_argument("--skip-serial", action="store_true")
    ap.add_argument("--record-version", type=int, choices=(1, 2), default=2)
    ap.add_argument("--compare-v1", action="store_true", help="also the C run on a v1 dump")
    ap.add_argument("--short", action="store_true", help="only C and Python, with intervals")
    ap.add_argument("--workers", type=int, default=0, help="default: one per core")
    args = ap.parse_args()
    dump = ready_dump(args.jobs, args.record_version, args.dump)
    v1_dump = ready_dump(args.jobs, 1, None) if args.compare_v1 else None
    t = time.perf_counter()
    with open(dump, newline="") as handle:
        for _ in handle:
            pass
    base = time.perf_counter() - t
    cores = args.workers or len(os.sched_getaffinity(0))
    print(
        f"jobs: {args.jobs}, record v{args.record_version}, dump {dump.stat().st_size / 1e9:.2f} GB, cores: {cores}"
    )
    print(f"baseline (read lines only): {base:.2f} s; load average {os.getloadavg()[0]:.2f}")
    # (workers, label, setup). Pairs that differ by one thing run next to each other
    # in time (the machine is shared): intervals off then on; C then pure Python.
    c_built = facts.fast_available
    isal = slim_module.inflate is not zlib.decompress
    c_name = f"C extension ({_fastrow_inflater()})" if c_built else "no C extension built"
    # (workers, label, setup, dump)
    runs: list[tuple[int, str, str, Path]] = []
    if v1_dump is not None:
        runs.append((cores, f"v1 dump, {c_name}, intervals", "", v1_dump))
    if not args.short:
        runs.append((cores, f"{c_name}, no intervals", NO_INTERVALS, dump))
    runs.append((cores, f"{c_name}, intervals", "", dump))
    if c_built and args.short:
        python = "Python, " + ("msgspec" if msgspec_available() else "json.loads")
        runs.append((cores, f"{python}, {'ISA-L' if isal else 'zlib'}, intervals", NO_C, dump))
    elif c_built:
        python = "Python, " + ("msgspec" if msgspec_available() else "json.loads")
        runs.append((cores, f"{python}, {'ISA-L' if isal else 'zlib'}, intervals", NO_C, dump))
        if isal:
            runs.append((cores, f"{python}, zlib, intervals", ZLIB_INFLATE, dump))
    else:
        print("the C extension is not built: python3 setup.py build_ext --inplace")
    if not isal:
        print("isal not installed: Python inflates with zlib (pip install 'slurm-ai[report]')")
    if not args.skip_serial and not args.short and cores > 1:
        runs.append((1, f"{c_name}, intervals", "", dump))
    if msgspec_available() and not args.short:
        runs.append((cores, "Python, json.loads, intervals", NO_MSGSPEC, dump))
    for workers, label, setup, path in runs:
        wall, cpu, peak = run_report(path, workers, setup)
        print(
            f"report --workers {workers} ({label}): {wall:.2f} s = {wall / base:.1f}x baseline, "
            f"{args.jobs / wall:,.0f} jobs/s, CPU {cpu:.1f} s = {cpu / args.jobs * 1e6:.1f} us/job, "
            f"peak RSS {peak:.0f} MiB; "
            f"target 10 s: {'met' if wall <= 10 else f'{wall / 10:.2f}x over'}; "
            f"load average now {os.getloadavg()[0]:.2f}",
            flush=True,
        )


def _fastrow_inflater() -> str:
    return str(getattr(facts._fastrow, "INFLATER", "?"))


if __name__ == "__main__":
    main()
