#!/usr/bin/env python3
"""The Prolog's and the SPANK plugin's per-task cost on a production-shaped cluster
(cgroups, shared nodes, PrologFlags=Alloc,Contain, node-local spool) against the lab
shape (no cgroups, one spool), in one run.

Brings up two throwaway instances of scripts/localcluster, one after the other (one
cluster at a time on a shared machine): `--lab` and `--production`, 2 nodes each, with
slurm-ai's hooks and SPANK plugin installed as on a site. On each it runs the same jobs
in turn: `sbatch -N1 -n2 -c1` whose step is `srun --sai-bind=verbose true`. It reads

- the Prolog's own time per job from the hooks' log (`event=prolog_done s=...`), and the
  topology step's share of it (under Contain the job's CPUs come from `scontrol show
  job -d`, since the job cgroup does not exist yet);
- the plugin's own time per task from its verbose line (`(in X ms)`), which the noise
  of a shared machine does not blur.

Prints medians per shape and the ratio production / lab. Root only.

    python3 bench/cgroup_shape.py [--jobs 20] [--port-base 7157]

Shared machines make single timings noisy: compare the two shapes of one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
LOCALCLUSTER = REPO / "scripts" / "localcluster"


class Instance:
    def __init__(self, shape: str, prefix: Path, port_base: int) -> None:
        self.shape, self.prefix, self.port_base = shape, prefix, port_base
        self.env = dict(os.environ, SLURM_CONF=str(prefix / "etc" / "slurm.conf"))
        self.env["SLURM_AI_CLUSTER_VMS"] = "off"

    def localcluster(self, *args: str) -> None:
        argv = [sys.executable, str(LOCALCLUSTER), "--prefix", str(self.prefix),
                "--port-base", str(self.port_base), "--name", f"bench{self.shape[0]}", *args]  # fmt: skip
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"localcluster {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")

    def slurm(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=300)

    @property
    def log(self) -> Path:
        return self.prefix / "log" / "slurm-ai" / "slurm-ai.log"

    def install(self) -> None:
        """Hooks and plugin as `slurm-ai install` puts them on a site."""
        from slurm_ai.admin.hookfiles import (
            HookLayout,
            default_config,
            render_all,
            render_slurm_conf_lines,
        )
        from slurm_ai.admin.slurmconf import load_slurm_conf
        from slurm_ai.topology import spank

        etc = self.prefix / "etc"
        # The lab keeps one spool in the (shared) prefix; production nodes their own disk.
        spool = "/var/spool/slurm-ai" if self.shape == "production" else str(
            self.prefix / "spool" / "slurm-ai")  # fmt: skip
        layout = HookLayout(etc_dir=etc, config_path=etc / "slurm-ai" / "config.toml",
                            python=sys.executable)  # fmt: skip
        config = default_config(spool_dir=spool, log_file=str(self.log),
                                slurm_conf=str(etc / "slurm.conf"),
                                mark_dir=str(Path(spool).parent / "slurm-ai-marks"),
                                health=False, extra={"hooks": {"steps": ["topology", "energy"]}})  # fmt: skip
        for path, (text, mode) in render_all(layout, config).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        spools = ([self.prefix / "nodes" / n / "var-spool" / "slurm-ai" for n in ("n1", "n2")]
                  if self.shape == "production" else [Path(spool)])  # fmt: skip
        for path in spools:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = (load_slurm_conf(etc / "slurm.conf").get("PrologFlags") or "").split(",")
        (etc / "hooks.conf").write_text(render_slurm_conf_lines(layout, prolog_flags=flags))
        plugin = spank.build_plugin(self.prefix / "spank")
        (etc / "plugstack.conf.d" / spank.CONF_NAME).write_text(
            spank.conf_line(plugin, Path(spool), "auto")
        )
        self.localcluster("reconfigure")

    def run_jobs(self, jobs: int) -> tuple[list[float], list[float], list[float]]:
        """(Prolog s per job, its topology step s, plugin ms per task)."""
        out_dir = self.prefix / "shared"
        out_dir.mkdir(exist_ok=True)
        plugin_ms: list[float] = []
        ids = []
        for i in range(jobs + 1):  # the first job warms caches and is dropped
            out = out_dir / f"bench-{i}.out"
            proc = self.slurm("sbatch", "--parsable", "--wait", "-N1", "-n2", "-c1",
                              f"--output={out}", "--wrap",
                              "srun --sai-bind=verbose true")  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"sbatch failed: {proc.stderr}")
            if i:
                ids.append(proc.stdout.strip().split(";")[0])
                text = out.read_text(errors="replace")
                plugin_ms += [float(m) for m in re.findall(r"\(in ([0-9.]+) ms\)", text)]
        time.sleep(1)
        prolog, topo = [], []
        log = self.log.read_text(errors="replace")
        for job in ids:
            match = re.search(
                rf"job={job} .*event=prolog_done s=([0-9.]+) steps=\S*topology:([0-9.]+)", log
            )
            if match:
                prolog.append(float(match.group(1)))
                topo.append(float(match.group(2)))
        warned = sum(
            f"job={j} " in ln and "not visible" in ln for j in ids for ln in log.splitlines()
        )
        if warned:
            print(f"  note: {warned} {self.shape} jobs planned over all CPUs (see the log)")
        return prolog, topo, plugin_ms


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--port-base", type=int, default=7157)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it starts throwaway clusters")
    results: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for i, shape in enumerate(("lab", "production")):
        inst = Instance(shape, Path(f"/var/tmp/slurm-ai-bench-{shape}-{os.getpid()}"),
                        args.port_base + 10 * i)  # fmt: skip
        try:
            start = time.monotonic()
            inst.localcluster("up", f"--{shape}")
            inst.install()
            print(f"{shape}: up and installed in {time.monotonic() - start:.0f}s; "
                  f"{args.jobs} jobs", flush=True)  # fmt: skip
            results[shape] = inst.run_jobs(args.jobs)
        finally:
            inst.localcluster("down")
            shutil.rmtree(inst.prefix, ignore_errors=True)
    lab, prod = results["lab"], results["production"]
    print(f"\n{'median per job/task':<34}{'lab':>10}{'production':>12}{'ratio':>8}")
    for name, scale, index, unit in (("Prolog (whole)", 1000, 0, "ms"),
                                     ("Prolog topology step", 1000, 1, "ms"),
                                     ("SPANK plugin per task", 1, 2, "ms")):  # fmt: skip
        a, b = median(lab[index]) * scale, median(prod[index]) * scale
        print(f"{name + ' (' + unit + ')':<34}{a:>10.2f}{b:>12.2f}{b / a:>8.2f}")
    print(f"samples: lab {len(lab[0])} jobs / {len(lab[2])} tasks, "
          f"production {len(prod[0])} jobs / {len(prod[2])} tasks")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
