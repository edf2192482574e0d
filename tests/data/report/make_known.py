"""Regenerate the two dumps whose answer is known (tests/report/test_known_answers.py).

    python tests/data/report/make_known.py tax > tests/data/report/known-tax.txt
    python tests/data/report/make_known.py same > tests/data/report/known-same.txt

- tax: a real 10% virtualization tax with low noise. Every job trains a fixed
  number of tokens (+-5%) on 2 GPUs; the VM partition's throughput and busbw
  are 10% lower (CV 2%), so its jobs run 1/0.9 = 1.11x longer and cost 1.11x
  more per token at the same price per GPU-hour. 400 jobs a side: enough for P99.
- same: both partitions are the same machines (the demo's case): the same
  throughput and busbw distributions with the demo's kind of noise (CV 0.3), 30
  jobs a side. The true ratio of every figure is 1.

Records are minimal v1 records; prices come from the test (the same on both sides).
"""

from __future__ import annotations

import random
import sys
from typing import Any

from slurm_ai.accounting.sacct import DELIMITER, FIELDS
from slurm_ai.record import encode_record

GPUS = 2
WATTS_PER_GPU = 500.0
T0 = 1_735_689_600


def job_line(jobid: int, part: str, cls: str, elapsed: int, tokens: float, busbw: float) -> str:
    joules = round(GPUS * WATTS_PER_GPU * elapsed, 1)
    record: dict[str, Any] = {
        "v": 1,
        "job": {"id": str(jobid), "workload": "training"},
        "nodes": {
            "n1": {
                "platform": {"class": cls},
                "gpus": [{"index": i, "model": "GPU-K"} for i in range(GPUS)],
                "energy": {
                    "total_j": joules,
                    "sources": [{"source": "nvml", "joules": joules, "quality": "measured"}],
                },
                "health": {
                    "verdict": "pass",
                    "busbw_gbps": round(busbw, 2),
                    "ranks": GPUS,
                    "size_bytes": 1 << 28,
                },
            }
        },
        "units": {"tokens": round(tokens)},
    }
    submit = T0 + jobid * 60
    start = submit + 30
    values = {
        "JobIDRaw": str(jobid), "User": "u", "Account": "a", "Partition": part, "NodeList": "n1",
        "NNodes": "1", "State": "COMPLETED", "Submit": str(submit), "Start": str(start),
        "End": str(start + elapsed), "ElapsedRaw": str(elapsed),
        "AllocTRES": f"cpu=16,node=1,gres/gpu={GPUS}", "JobName": "train",
        "AdminComment": encode_record(record),
    }  # fmt: skip
    return DELIMITER.join(values[f] for f in FIELDS) + "\n"


def main(case: str) -> None:
    if case == "tax":
        jobs, noise, vm_speed, seed = 400, 0.02, 0.9, 10
    elif case == "same":
        jobs, noise, vm_speed, seed = 30, 0.3, 1.0, 20
    else:
        raise SystemExit("usage: make_known.py tax|same")
    rng = random.Random(seed)
    out = sys.stdout
    out.write(DELIMITER.join(FIELDS) + "\n")
    jobid = 100
    for _ in range(jobs):
        for part, cls, speed in (("bare", "bare-metal", 1.0), ("vm", "vm-passthrough", vm_speed)):
            tokens = 2e8 * rng.uniform(0.95, 1.05)
            rate = 6e4 * speed * max(0.1, rng.gauss(1.0, noise))  # tokens per second
            busbw = 380.0 * speed * max(0.1, rng.gauss(1.0, noise))
            out.write(job_line(jobid, part, cls, max(60, round(tokens / rate)), tokens, busbw))
            jobid += 1


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
