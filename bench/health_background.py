"""Background health mode: what the Prolog costs with the health step on and a
fresh cached verdict, and the full check's start-up versus measurement, cold
and warm. Everything is measured in this one command, as ratios.

    python bench/health_background.py [--runs 20] [--backend gloo] [--checks 4]

1. Prolog wall time (a fresh `python -I -m slurm_ai.hooks prolog` process, as
   slurmd runs it): health step off, and on in background mode with a fresh
   verdict in the spool (GPU checks on: NVML health, XIDs, count; no torch,
   no workers). Medians and P90, as ratios to a bare `python -I -c pass`;
   targets: under 150 ms median on CPU, under 300 ms on GPU.
2. The full node check (`slurm-ai healthcheck --json`, what the
   HealthCheckProgram and the Epilog refresh run): the first run (cold: page
   cache, and on GPUs the CUDA/NCCL initialisation) and `--checks - 1` warm
   runs, each split into start-up (import, communicator, CUDA) and
   measurement as the workers report them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hooks_walltime import timed

PY = sys.executable
JOB = {
    "PATH": "/usr/bin:/bin",  # slurmd gives hooks almost nothing
    "SLURMD_NODENAME": "n1",
    "SLURM_JOB_NODELIST": "n1",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_JOB_UID": str(os.getuid()),
    "SLURM_JOB_CPUS_PER_NODE": "1",
    "SLURM_JOB_PARTITION": "bare",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
}


def write_config(tmp: Path, health_on: bool) -> Path:
    config = tmp / ("on.toml" if health_on else "off.toml")
    steps = (
        '["topology", "health", "agent", "energy"]'
        if health_on
        else ('["topology", "agent", "energy"]')
    )
    config.write_text(
        f'[spool]\ndir = "{tmp}/spool"\n[log]\nfile = "{tmp}/log/x.log"\n'
        f'[accounting]\nmark_dir = "{tmp}/marks"\ndeliver_inline = false\n'
        f"[hooks]\nsteps = {steps}\n"
        '[health]\nenabled = true\nwhen = "background"\ngpu_checks = true\n'
    )
    return config


def fresh_verdict(spool: Path) -> None:
    from slurm_ai.health.history import HealthStore

    now = time.time()
    HealthStore(spool).save_last(None, now, {"verdict": "pass", "checked_at": now})


def prolog_times(runs: int, tmp: Path) -> dict[str, list[float]]:
    on, off = write_config(tmp, True), write_config(tmp, False)
    (tmp / "spool").mkdir(mode=0o700, exist_ok=True)
    cases = {
        "python -I -c pass": ([PY, "-I", "-c", "pass"], {}),
        "prolog, health step off": (
            [PY, "-I", "-m", "slurm_ai.hooks", "prolog", "--config", str(off)],
            JOB,
        ),
        "prolog, health on (cached verdict)": (
            [PY, "-I", "-m", "slurm_ai.hooks", "prolog", "--config", str(on)],
            JOB,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs):
        fresh_verdict(tmp / "spool")
        for name, (argv, env) in cases.items():
            times[name].append(timed(argv, {**env, "SLURM_JOB_ID": str(i + 1)} if env else {}))
    return times


def full_checks(
    backend: str, checks: int, config: Path | None = None, timeout_s: float = 120
) -> list[dict[str, Any]]:
    """Run the full node check `checks` times: wall time, start-up/measure split, bench."""
    rows = []
    prefix = ["--config", str(config)] if config else []
    for _ in range(checks):
        began = time.perf_counter()
        proc = subprocess.run(
            [PY, "-m", "slurm_ai", *prefix, "healthcheck", "--json", "--backend", backend,
             "--timeout", f"{timeout_s:g}"],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        wall = time.perf_counter() - began
        try:
            data = json.loads(proc.stdout[proc.stdout.index("{") :])
        except ValueError:
            print(f"healthcheck gave no JSON (exit {proc.returncode}): {proc.stderr[-300:]}")
            continue
        rows.append(
            {
                "wall_s": wall,
                "startup_s": data.get("startup_s") or float("nan"),
                "measure_s": data.get("measure_s") or float("nan"),
                "verdict": data.get("verdict"),
                "reason": data.get("reason"),
                "bench": data.get("bench") or [],
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--checks", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sai-bench-health-"))
    times = prolog_times(args.runs, tmp)
    base = statistics.median(times["python -I -c pass"])
    print(f"# 1. Prolog, {args.runs} runs each, interleaved; ratio = median / bare python start")
    print(f"{'case':40s} {'median ms':>10s} {'p90 ms':>8s} {'ratio':>7s}")
    for name, values in times.items():
        med = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"{name:40s} {med * 1e3:10.1f} {p90 * 1e3:8.1f} {med / base:7.2f}")
    on = statistics.median(times["prolog, health on (cached verdict)"])
    off = statistics.median(times["prolog, health step off"])
    print(
        f"health step with a cached verdict adds {(on - off) * 1e3:.1f} ms ({on / off:.2f} x off)"
    )
    print(f"\n# 2. full check ({args.backend}): first run cold, then warm")
    print(f"{'run':>4s} {'verdict':>9s} {'wall s':>7s} {'startup s':>9s} {'measure s':>9s}")
    rows = full_checks(args.backend, args.checks)
    for i, row in enumerate(rows):
        print(
            f"{i + 1:>4d} {row['verdict']!s:>9s} {row['wall_s']:7.2f} {row['startup_s']:9.2f} "
            f"{row['measure_s']:9.2f}" + ("  (cold)" if i == 0 else "")
        )
    if len(rows) > 1:
        warm = statistics.median(r["wall_s"] for r in rows[1:])
        startup = statistics.median(r["startup_s"] for r in rows[1:])
        print(
            f"warm median {warm:.2f} s, of which worker start-up {startup:.2f} s "
            f"({100 * startup / warm:.0f} %); the Prolog with a cached verdict is "
            f"{warm / on:.0f} x faster than running the check in it"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
