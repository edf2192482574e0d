#!/usr/bin/env python3
"""Reading an hwloc XML file and planning 8 tasks, against the sysfs probe of a
recorded machine doing the same, in one run.

    python3 bench/hwloc_xml_plan.py [--runs 30]

Rows (each: read the node, then `compute_plan` for 8 tasks over all its CPUs/GPUs):
- baseline: the sysfs probe with its recorded NVML (`probe_node` without the
  fingerprint: what `plan` reads) of tests/data/topology/dgx_h100, our recorded
  8-GPU machine;
- a ~200 KB hwloc XML: Debian's lstopo writes a synthetic 2-socket, 16-NUMA-node,
  144-core, 288-PU machine with its caches (`lstopo -i "pack:2 l3:8 numa:1 l2:9
  l1d:1 l1i:1 core:1 pu:2" --of xml`), the size of a large node's lstopo file;
- mpibind's epyc-corona.xml (104 KB, 4 GPUs, I/O tree), a real machine.
Prints the median per run and each row's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from slurm_ai.topology.hwloc_xml import read_hwloc_xml  # noqa: E402
from slurm_ai.topology.model import NodeTopology  # noqa: E402
from slurm_ai.topology.plan import JobAllocation, compute_plan, gpu_units  # noqa: E402
from slurm_ai.topology.probe import probe_node  # noqa: E402

RECORDED = REPO / "tests" / "data" / "topology" / "dgx_h100"
CORONA = REPO / "tests" / "data" / "hwloc" / "mpibind" / "epyc-corona.xml"
SYNTHETIC = "pack:2 l3:8 numa:1 l2:9 l1d:1 l1i:1 core:1 pu:2"
NTASKS = 8


def plan8(topo: NodeTopology) -> int:
    cpus = topo.cpu.allowed or topo.cpu.online
    gpus = [u.index for u in gpu_units(topo)]
    plan = compute_plan(topo, JobAllocation(cpus=cpus, gpus=gpus, ntasks=NTASKS))
    assert len(plan.ranks) == NTASKS and all(r.cpus for r in plan.ranks)
    return len(gpus)


def timed(runs: int, work: Callable[[], NodeTopology]) -> tuple[float, int]:
    samples, gpus = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        gpus = plan8(work())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), gpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    lstopo = shutil.which("lstopo") or shutil.which("lstopo-no-graphics")
    if lstopo is None:
        sys.exit("lstopo not found: install Debian's hwloc (scripts/setup-deps)")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "synthetic.xml"
        subprocess.run([lstopo, "-i", SYNTHETIC, "--of", "xml", "-f", str(big)], check=True)
        rows: list[tuple[str, Callable[[], NodeTopology]]] = [
            (
                "sysfs probe, recorded dgx_h100",
                lambda: probe_node(RECORDED, with_fingerprint=False).topology,
            ),
            (f"hwloc XML synthetic ({big.stat().st_size // 1024} KB)", lambda: read_hwloc_xml(big)),
            (
                f"hwloc XML epyc-corona ({CORONA.stat().st_size // 1024} KB)",
                lambda: read_hwloc_xml(CORONA),
            ),
        ]
        results = []
        for name, work in rows:
            work()  # warm: imports and file cache
            results.append((name, *timed(args.runs, work)))
    base = results[0][1]
    print(f"read node + plan {NTASKS} tasks, median of {args.runs} runs")
    for name, median, gpus in results:
        print(f"  {name:44s} {median * 1e3:8.2f} ms  ({gpus} GPUs)  x{median / base:.2f}")


if __name__ == "__main__":
    main()
