#!/usr/bin/env python3
"""Task start with the SPANK plugin versus without it, and versus `bind` (target:
the plugin adds at most 5 ms per task at the median).

Inside one allocation of the local cluster (so scheduling and the Prolog are
out of the measurement), runs `srun -n2 true` steps in rotation:

- without the plugin (its plugstack.conf.d file absent);
- with the plugin, pinning (`bind=auto`, the job's plan file in place);
- with the plugin loaded but `--sai-bind=off` (the cost of loading it);
- without the plugin, each task wrapped in `python3 -m slurm_ai.topology.bind`
  and in `slurm-ai bind` (what job scripts pay today).

The two tasks of a step start in parallel, so a step's added time is what
each task waited. Prints medians, the added ms per step against the step
without the plugin, and the ratio; then the plugin's own time in each task
as it reports it (--sai-bind=verbose), which the noise of a shared machine
does not blur; and, first, the C core's time per task on the recorded
machines (harness, no Slurm). Root only (it registers the plugin and
writes the plan file into a private spool of its own, removed at the end).

    export SLURM_CONF=<prefix>/etc/slurm.conf    # scripts/localcluster env
    python3 bench/spank_task_start.py [--runs 30]

Shared machines make single timings noisy: compare the cases of one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INNER = "--inner"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def inner(runs: int, gap: float, conf: Path, conf_text: str, spool: Path) -> None:
    """In the allocation: write the job's plan, then time the cases in rotation."""
    from slurm_ai.topology import planfile
    from slurm_ai.topology.probe import probe_node
    from slurm_ai.topology.settings import TopologySettings

    job_dir = spool / "jobs" / os.environ["SLURM_JOB_ID"]
    job_dir.mkdir(parents=True, mode=0o700)
    planfile.write(job_dir, planfile.render(probe_node("/").topology, [], TopologySettings()))
    true = shutil.which("true") or "/bin/true"
    entry = shutil.which("slurm-ai")
    cli = [entry] if entry else [sys.executable, "-m", "slurm_ai"]
    # Slurm's own binding stays on in every case: the tasks are pinned to the
    # same CPUs either way, so what differs is the plugin's (or bind's) cost,
    # not where a task may run on a busy machine.
    step = ["srun", "-n2"]
    cases = {
        "no plugin": (False, [*step, true]),
        # "loaded, off" runs first after the file appears, so that "plugin"
        # does not also carry whatever the first step after that costs.
        "plugin loaded, off": (True, [*step, "--sai-bind=off", true]),
        "plugin": (True, [*step, true]),
        "bind -m, no click": (
            False,
            [*step, sys.executable, "-m", "slurm_ai.topology.bind", "-q", "--", true],
        ),
        "slurm-ai bind": (False, [*step, *cli, "bind", "-q", "--", true]),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs + 1):  # the first round warms caches and is dropped
        for name, (with_plugin, argv) in cases.items():
            if with_plugin:
                conf.write_text(conf_text)
            else:
                conf.unlink(missing_ok=True)
            samples[name].append(timed(argv))
            # Untimed: slurmctld must release the step before the next one
            # starts, or srun waits and retries ("Requested nodes are busy"),
            # which lands on whichever case comes next.
            time.sleep(gap)
    conf.write_text(conf_text)
    inside = plugin_ms(step, true, runs, gap)
    conf.unlink(missing_ok=True)
    pinned = (job_dir / planfile.PINNED_NAME).exists()
    base = statistics.median(samples["no plugin"][1:])
    print(f"steps per case: {runs} (srun -n2, 2 tasks in parallel); plugin pinned: {pinned}")
    print(f"{'case':<20}{'median ms':>11}{'added ms':>10}{'ratio':>8}")
    for name, values in samples.items():
        med = statistics.median(values[1:])
        print(f"{name:<20}{med * 1000:>11.1f}{(med - base) * 1000:>10.1f}{med / base:>8.2f}")
    added = statistics.median(samples["plugin"][1:]) - base
    print(f"step median with the plugin minus without: {added * 1000:+.1f} ms (noisy when shared)")
    own = statistics.median(inside)
    verdict = "meets" if own <= 5.0 else "MISSES"
    print(
        f"plugin's own time inside each task (--sai-bind=verbose, {len(inside)} tasks): "
        f"median {own:.2f} ms, max {max(inside):.2f} ms: {verdict} the 5 ms target"
    )


def plugin_ms(step: list[str], true: str, runs: int, gap: float) -> list[float]:
    """The time the plugin reports spending in each task (its verbose line)."""
    times = []
    for _ in range(runs):
        time.sleep(gap)
        err = subprocess.run(
            [*step, "--sai-bind=verbose", true], capture_output=True, text=True, check=True
        ).stderr
        times += [float(m) for m in re.findall(r"\(in ([0-9.]+) ms\)", err)]
    return times


def core_work(repeat: int) -> None:
    """The plugin's work per task (read, parse, plan) on the recorded machines, in C."""
    from slurm_ai.topology import planfile, spank
    from slurm_ai.topology.plan import gpu_units
    from slurm_ai.topology.probe import probe_node
    from slurm_ai.topology.settings import TopologySettings

    data = Path(__file__).resolve().parent.parent / "tests" / "data" / "topology"
    with tempfile.TemporaryDirectory() as tmp:
        harness = spank.build_harness(Path(tmp))
        for name in ("dgx_h100", "mig_a100", "this_machine"):
            topo = probe_node(data / name).topology
            gpus = [u.index for u in gpu_units(topo)]
            plan = Path(tmp) / name
            plan.write_text(planfile.render(topo, gpus, TopologySettings()))
            ntasks = max(1, len(gpus))
            cpus = ",".join(map(str, topo.cpu.online))
            env = [f"SLURM_STEP_GPUS={','.join(map(str, gpus))}"] if gpus else []
            out = subprocess.run(
                [str(harness), "--repeat", str(repeat), str(plan), str(ntasks), "0", cpus, *env],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            us = float(out.split("us_per_task ")[1])
            size = plan.stat().st_size
            print(f"plugin work per task, {name} ({len(topo.cpu.online)} CPUs, {len(gpus)} GPU "
                  f"units, {size} B plan, rank 0 of {ntasks}): {us:.0f} us")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.5, help="untimed seconds between steps")
    parser.add_argument(INNER, nargs=3, metavar=("CONF", "CONF_TEXT_FILE", "SPOOL"))
    args = parser.parse_args()
    if args.inner:
        conf, text_file, spool = args.inner
        inner(args.runs, args.gap, Path(conf), Path(text_file).read_text(), Path(spool))
        return
    core_work(2000)
    if os.geteuid() != 0 or "SLURM_CONF" not in os.environ:
        sys.exit("run as root with SLURM_CONF set (scripts/localcluster env)")
    from slurm_ai.topology import spank

    etc = Path(os.environ["SLURM_CONF"]).parent
    conf = etc / "plugstack.conf.d" / "zz-bench-spank.conf"
    with tempfile.TemporaryDirectory(prefix="sai-bench-spank-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        root.chmod(0o700)
        plugin = spank.build_plugin(root / "build")
        text_file = root / "conf.txt"
        text_file.write_text(spank.conf_line(plugin, root / "spool", "auto"))
        argv = ["salloc", "-N1", "-n2", sys.executable, __file__, "--runs", str(args.runs),
                "--gap", str(args.gap)]  # fmt: skip
        try:
            subprocess.run(
                [*argv, INNER, str(conf), str(text_file), str(root / "spool")], check=True
            )
        finally:
            conf.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
