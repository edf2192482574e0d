"""Synthetic sacct dumps with valid records, for the benchmark and demos.

Deterministic for a seed. The shape follows a mixed AI cluster: partition
"bare" (bare-metal), "vm" (vm-passthrough) and "vgpu" (vm-vgpu) with H100s,
1- to 16-GPU jobs, four workload classes, NCCL busbw around 380 GB/s on bare
metal and a lower, noisier figure in VMs, energy from NVML (measured) and a
CPU model (estimated). These are made-up figures to exercise the report, not
measurements; real records come from the hooks.

    python -m slurm_ai.report.synth --jobs 1000000 --seed 1 > dump.txt

Records are the hooks' current format (v2: built by record.merge_node_records
and encoded by accounting.deliver.encode_fitting, as the deliverer does), or
with `version=1` the older v1 form (every node, no summary) for comparison.
The jobs (rows, node records, units) are the same for either version.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import click

from slurm_ai.accounting.sacct import DELIMITER, FIELDS
from slurm_ai.record import encode_record, merge_node_records

VERSIONS = (1, 2)  # record formats a dump can hold (2: what the hooks write now)

MODEL = "NVIDIA H100 80GB HBM3"
PARTITIONS = (  # name, class, share of jobs, busbw mean, busbw sd, nodes
    ("bare", "bare-metal", 0.45, 380.0, 12.0, ("b1", "b2", "b3", "b4")),
    ("vm", "vm-passthrough", 0.45, 345.0, 30.0, ("v1", "v2", "v3", "v4")),
    ("vgpu", "vm-vgpu", 0.10, 250.0, 40.0, ("g1", "g2")),
)
SHAPES = ((0, 1, 0.10), (1, 1, 0.35), (2, 1, 0.15), (4, 1, 0.15), (8, 1, 0.20), (8, 2, 0.05))
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z


def _pick(rng: random.Random, items: tuple[Any, ...], weight_index: int) -> Any:
    r = rng.random()
    for item in items:
        r -= item[weight_index]
        if r <= 0:
            return item
    return items[-1]


def _workload(rng: random.Random, gpus: int, nnodes: int) -> str:
    if gpus == 0:
        return "data-science"
    if nnodes > 1 or gpus == 8:
        return "training" if rng.random() < 0.8 else "fine-tuning"
    return rng.choice(("fine-tuning", "inference", "inference", "training"))


def make_job(
    rng: random.Random, jobid: int, version: int = 2
) -> tuple[dict[str, str], dict[str, Any]]:
    """One sacct row (without AdminComment) and its record (format `version`)."""
    part, cls, _, bw_mean, bw_sd, hosts = _pick(rng, PARTITIONS, 2)
    gpus_per_node, nnodes, _ = _pick(rng, SHAPES, 2)
    workload = _workload(rng, gpus_per_node, nnodes)
    vm = cls != "bare-metal"
    submit = T0 + jobid * 30 + rng.randrange(30)
    wait = int(rng.expovariate(1 / (120 if not vm else 90)))
    base = {"training": 14400, "fine-tuning": 3600, "inference": 1800, "data-science": 2400}
    elapsed = max(60, int(rng.lognormvariate(0, 0.35) * base[workload] * (1.06 if vm else 1.0)))
    start = submit + wait
    end = start + elapsed
    nodes = rng.sample(hosts, nnodes) if nnodes <= len(hosts) else list(hosts[:nnodes])
    ranks = gpus_per_node * nnodes
    busbw = max(5.0, rng.gauss(bw_mean, bw_sd)) if ranks >= 2 else None
    verdict = "pass"
    if busbw is not None and rng.random() < (0.01 if not vm else 0.03):
        verdict, busbw = "fail", busbw * 0.3
    node_records: dict[str, Any] = {}
    for host in nodes:
        gpu_list = []
        sources: list[dict[str, Any]] = []
        for g in range(gpus_per_node):
            joules = elapsed * rng.uniform(250, 600)
            gpu_list.append(
                {
                    "index": g,
                    "uuid": f"GPU-{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4a1b-9c2d-{rng.getrandbits(48):012x}",
                    "model": MODEL,
                    "energy_j": round(joules, 1),
                }
            )
            sources.append(
                {
                    "source": "nvml",
                    "domain": f"gpu{g}",
                    "joules": round(joules, 1),
                    "quality": "measured",
                    "note": "",
                }
            )
        cpu_j = elapsed * rng.uniform(150, 300)
        sources.append(
            {
                "source": "cpu-model",
                "domain": "cpu",
                "joules": round(cpu_j, 1),
                "quality": "estimated",
                "note": "TDP x utilisation",
            }
        )
        # Provenance as the Prolog writes it (no random draw: other figures stay put).
        unchecked = {"source": "unchecked", "age_s": None, "why": "single rank"}
        health: dict[str, Any] = {
            "verdict": "skipped",
            "reason": "single rank",
            "provenance": unchecked,
        }
        if busbw is not None:
            health = {
                "verdict": verdict,
                "backend": "nccl",
                "device": "gpu",
                "busbw_gbps": round(busbw, 2),
                "algbw_gbps": round(busbw * ranks / (2 * (ranks - 1)), 2),
                "size_bytes": 268435456,
                "ranks": ranks,
                "reason": "" if verdict == "pass" else "busbw below threshold",
                "cached": False,
                "checked_at": start,
                "provenance": {"source": "fresh", "age_s": 0.0, "why": None},
            }
        node_records[host] = {
            "platform": {
                "class": cls,
                "hypervisor": "kvm" if vm else None,
                "cloud": None,
                "container": None,
                "gpu_mode": "vgpu" if cls == "vm-vgpu" else "passthrough" if vm else "native",
                "nic_mode": "sriov" if vm else "native",
                "override": False,
                "evidence": ["cpuinfo hypervisor flag", "dmi: QEMU"]
                if vm
                else ["no hypervisor flag"],
            },
            "gpus": gpu_list,
            "energy": {"total_j": round(sum(s["joules"] for s in sources), 1), "sources": sources},
            "time": {
                "prolog_start": start,
                "prolog_s": 1.1,
                "epilog_end": end + 2,
                "epilog_s": 0.7,
                "health_s": 3.9,
            },
            "health": health,
            "plan": {
                "ranks": gpus_per_node,
                "gpus": list(range(gpus_per_node)),
                "cpus_per_rank": 12,
                "numa": [g // 4 for g in range(gpus_per_node)],
                "nics": ["mlx5_0"],
                "warnings": [],
            },
            "usage": {
                "coverage": 0.97,
                "cpu_efficiency": round(rng.random(), 2),
                "peak_rss_bytes": rng.randrange(1 << 30, 1 << 36),
            },
        }
    units: dict[str, float] = {}
    if workload in ("training", "fine-tuning"):
        rate = 3000.0 * max(ranks, 1) * (0.9 if vm else 1.0)
        units = {
            "tokens": round(rate * elapsed * rng.uniform(0.9, 1.1)),
            "epochs": rng.choice((1, 2, 3)),
        }
    elif workload == "inference":
        units = {
            "requests": float(
                int(elapsed * max(ranks, 1) * rng.uniform(2, 4) * (0.92 if vm else 1.0))
            )
        }
    else:
        units = {"samples": float(int(elapsed * rng.uniform(50, 100)))}
    user = f"user{rng.randrange(40):02d}"
    account = f"proj{rng.randrange(8)}"
    job = {
        "id": str(jobid),
        "cluster": "synth",
        "partition": part,
        "user": user,
        "account": account,
        "nodes_expected": nnodes,
        "submit": submit,
        "start": start,
        "end": end,
        "exit_code": 0,
        "workload": workload,
    }
    if version == 1:
        record = {"v": 1, "job": job, "nodes": node_records, "units": units, "complete": True}
    else:  # as the deliverer builds it: sacct's times, then every node merged and summarised
        job["elapsed_s"] = elapsed
        record = merge_node_records(job, node_records, units=units)
    total_gpus = ranks
    tres = f"billing={max(total_gpus, 1)},cpu={max(total_gpus, 1) * 12},mem={64 * nnodes}G,node={nnodes}"
    if total_gpus:
        tres += f",gres/gpu={total_gpus}"
    row = {
        "JobIDRaw": str(jobid),
        "User": user,
        "Account": account,
        "Partition": part,
        "NodeList": ",".join(nodes),
        "NNodes": str(nnodes),
        "State": "COMPLETED" if verdict == "pass" else "FAILED",
        "Submit": str(submit),
        "Start": str(start),
        "End": str(end),
        "ElapsedRaw": str(elapsed),
        "AllocTRES": tres,
        "JobName": f"{workload}-{jobid}",
    }
    return row, record


def dump_lines(jobs: int, seed: int, first_id: int = 1000, version: int = 2) -> Iterator[str]:
    """Header then one line per job, in the default sacct layout."""
    from slurm_ai.accounting.deliver import encode_fitting  # v2 only; heavier imports

    if version not in VERSIONS:
        raise ValueError(f"record version {version}: not one of {VERSIONS}")
    rng = random.Random(seed)
    yield DELIMITER.join(FIELDS) + "\n"
    for i in range(jobs):
        row, record = make_job(rng, first_id + i, version)
        comment = encode_record(record) if version == 1 else encode_fitting(record)
        if i % 50 == 7:  # another tool's content beside ours (Princeton jobstats)
            comment = "JS1:H4sIAAAAAAAAA6tWKkktLlGyUlAqS8wpTgUA " + comment
        row["AdminComment"] = comment
        yield DELIMITER.join(row[f] for f in FIELDS) + "\n"


def write_dump(out: TextIO, jobs: int, seed: int, version: int = 2) -> None:
    for line in dump_lines(jobs, seed, version=version):
        out.write(line)


@click.command()
@click.option("--jobs", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--record-version", "version", type=click.Choice(["1", "2"]), default="2", show_default=True
)
def main(jobs: int, seed: int, version: str) -> None:
    """Write a synthetic sacct dump with valid records to stdout."""
    write_dump(sys.stdout, jobs, seed, int(version))


if __name__ == "__main__":  # pragma: no cover
    main()
