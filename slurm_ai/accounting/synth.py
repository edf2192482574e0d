"""Seeded synthetic node records of GPU nodes, for the record-size tests and the bench.

Shaped like the Epilog's node records (hooks/epilog.py, docs/record.md): 8 GPUs
with their own NVML energy, two RAPL packages, a health verdict with busbw and
provenance, the plan, timing and usage, every figure varied per node.
"""

from __future__ import annotations

import random
from typing import Any


def node_record(rng: random.Random, index: int, gpus: int = 8) -> dict[str, Any]:
    elapsed = 3600.0 + rng.uniform(-2, 2)
    gpu_list = [
        {
            "index": g,
            "uuid": f"GPU-{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-"
            f"{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}",
            "model": "NVIDIA H100 80GB HBM3",
            "energy_j": round(rng.uniform(1.5e6, 2.5e6), 1),
        }
        for g in range(gpus)
    ]
    sources: list[dict[str, Any]] = [
        {
            "source": "nvml",
            "domain": f"gpu{g['index']}",
            "joules": g["energy_j"],
            "quality": "measured",
        }
        for g in gpu_list
    ] + [
        {
            "source": "rapl",
            "domain": f"package-{p}",
            "joules": round(rng.uniform(4e5, 9e5), 1),
            "quality": "measured",
        }
        for p in range(2)
    ]
    verdict = "pass" if rng.random() > 0.01 else rng.choice(["fail", "timeout"])
    return {
        "platform": {"class": "bare-metal", "evidence": ["dmi: Dell PowerEdge XE9680"]},
        "gpus": gpu_list,
        "energy": {
            "total_j": round(sum(float(s["joules"]) for s in sources), 1),
            "quality": "measured",
            "elapsed_s": round(elapsed, 3),
            "sources": sources,
        },
        "health": {
            "verdict": verdict,
            "backend": "nccl",
            "device": "gpu",
            "busbw_gbps": round(
                rng.gauss(470, 8) if verdict == "pass" else rng.uniform(50, 200), 2
            ),
            "ranks": gpus,
            "size_bytes": 268435456,
            "provenance": {"source": "cached", "age_s": rng.randint(60, 3000), "why": None},
        },
        "plan": {"ranks": gpus, "gpus": list(range(gpus)), "cpus_per_rank": 12, "numa": [0, 1]},
        "time": {
            "prolog_start": 1.7e9 + index * 0.001,
            "prolog_s": round(rng.uniform(0.05, 0.2), 4),
            "epilog_s": round(rng.uniform(0.05, 0.3), 4),
        },
        "usage": {"coverage": round(rng.uniform(0.9, 1.0), 3), "cpu_efficiency": 0.2},
    }


def node_records(count: int, seed: int = 1, gpus: int = 8) -> dict[str, dict[str, Any]]:
    """{"gpu00001": record, ...}: `count` varied GPU nodes."""
    rng = random.Random(seed)
    return {f"gpu{i:05d}": node_record(rng, i, gpus) for i in range(1, count + 1)}


def nodelist(count: int) -> str:
    return f"gpu[00001-{count:05d}]" if count > 1 else "gpu00001"
