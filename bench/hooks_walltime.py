"""Wall time of the Prolog and Epilog (health step off) against a do-nothing Python.

Runs each hook as slurmd would (a fresh `python -I -m slurm_ai.hooks HOOK
--config C` process, fake job environment, a private spool in a temp dir, no
delivery) and prints medians as ratios to `python -I -c pass` measured in the
same run, then the imports that dominate the Prolog.

    python bench/hooks_walltime.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sai-bench-"))
    config = tmp / "c.toml"
    config.write_text(
        f'[spool]\ndir = "{tmp}/spool"\n[log]\nfile = "{tmp}/log/x.log"\n'
        f'[accounting]\nmark_dir = "{tmp}/marks"\ndeliver_inline = false\n'
        '[hooks]\nsteps = ["topology", "agent", "energy"]\n'
    )
    py = sys.executable
    base_env = {"PATH": "/usr/bin:/bin"}  # slurmd gives hooks almost nothing
    job = {
        "SLURM_JOB_ID": "1",
        "SLURMD_NODENAME": "n1",
        "SLURM_JOB_NODELIST": "n1",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_UID": str(os.getuid()),
        "SLURM_JOB_CPUS_PER_NODE": "1",
        "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
    }
    cases = {
        "python -I -c pass": ([py, "-I", "-c", "pass"], {}),
        "prolog (python -m slurm_ai.hooks)": (
            [py, "-I", "-m", "slurm_ai.hooks", "prolog", "--config", str(config)],
            job,
        ),
        "epilog (python -m slurm_ai.hooks)": (
            [py, "-I", "-m", "slurm_ai.hooks", "epilog", "--config", str(config)],
            {**job, "SLURM_SCRIPT_CONTEXT": "epilog_slurmd"},
        ),
        "prolog via click CLI (slurm-ai prolog)": (
            [py, "-I", "-m", "slurm_ai", "--config", str(config), "prolog"],
            job,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(args.runs):
        for name, (argv, env) in cases.items():
            job_env = {**base_env, **env}
            if "SLURM_JOB_ID" in env:
                job_env["SLURM_JOB_ID"] = str(i + 1)  # prolog then epilog of job i+1
            times[name].append(timed(argv, job_env))
    baseline = statistics.median(times["python -I -c pass"])
    print(f"{'case':42s} {'median ms':>10s} {'p90 ms':>8s} {'x baseline':>10s}")
    for name, values in times.items():
        med = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"{name:42s} {med * 1e3:10.1f} {p90 * 1e3:8.1f} {med / baseline:10.2f}")
    # What dominates: self+children import time of the Prolog's biggest imports.
    proc = subprocess.run(
        [py, "-I", "-X", "importtime", "-m", "slurm_ai.hooks", "prolog", "--config", str(config)],
        env={**base_env, **job, "SLURM_JOB_ID": "999999"},
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line.split("|")
            try:
                rows.append((int(parts[1]), parts[2].rstrip()))
            except ValueError:
                continue
    total = sum(us for us, name in rows if not name.startswith("  "))
    print(f"\nPrologs's top-level imports: {total / 1e3:.1f} ms in total; largest (cumulative):")
    for us, name in sorted(rows, reverse=True)[:8]:
        print(f"  {us / 1e3:7.1f} ms {name.strip()}")


if __name__ == "__main__":
    main()
