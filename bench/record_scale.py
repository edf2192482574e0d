"""Job records from 2 to 4,096 nodes (8 GPUs a node): size, merge, encode, calls per job.

For each node count, synthetic node records (slurm_ai.accounting.synth: seeded,
varied, 8 GPUs each with NVML energy, 2 RAPL packages, health, plan, usage) go
through the real shared-spool path in a temporary spool:

- each node's Epilog: write its node file, list the job directory (timed on
  one ordinary node, with all others already there: the worst listing);
- the completing node's Epilog: claim, merge the node files into the outbox,
  deliver with an in-memory backend that counts its calls (timed whole);
- the merge (record.merge_node_records) and the encode (deliver.encode_fitting,
  detail file included) timed alone, and the record's size in AdminComment.

Baseline in the same run: the 2-node job; figures are printed as ratios to it.
The v1 writer's encode (every node in full, dropping parts when too large) is
tried too and shows where it fails. Goals (issue 21): record under 16 KiB and
merge under 1 s at 4,096 nodes, calls per job constant.

    python bench/record_scale.py [--nodes 2,64,512,4096] [--gpus 8]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slurm_ai.accounting.backend import JobRow
from slurm_ai.accounting.deliver import deliver_pending, encode_fitting
from slurm_ai.accounting.outbox import Spool, node_file
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.accounting.synth import node_records, nodelist
from slurm_ai.errors import RecordError
from slurm_ai.record import decode_token, encode_record, merge_node_records

LOG = logging.getLogger("bench")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False
V1_SHRINK = ("usage", "plan", "platform", "gpus")


class CountingBackend:
    name = "counting"
    folds_case = False

    def __init__(self) -> None:
        self.comments: dict[str, str] = {}
        self.reads = self.writes = 0

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        self.reads += 1
        return {j: JobRow(j, self.comments.get(j, "")) for j in job_ids}

    def write_admin_comment(self, job_id: str, text: str) -> None:
        self.writes += 1
        self.comments[job_id] = text


def v1_size(nodes: dict[str, Any], job: dict[str, Any]) -> str:
    """The v1 writer's answer: every node in full, parts dropped until it fits."""
    record = {"v": 1, "job": job, "nodes": {k: dict(v) for k, v in nodes.items()}, "units": {}}
    for drop in (None, *V1_SHRINK):
        if drop:
            for node in record["nodes"].values():
                node.pop(drop, None)
        try:
            return f"{len(encode_record(record))} B" + (f" (dropped to {drop})" if drop else "")
        except RecordError:
            continue
    return "does not fit"


def one(count: int, gpus: int, root: Path) -> dict[str, Any]:
    job_id = str(1000 + count)
    job = {"id": job_id, "cluster": "bench", "nodes_expected": count, "nodelist": nodelist(count)}
    nodes = node_records(count, seed=count, gpus=gpus)
    names = sorted(nodes)
    spool = Spool(root / "spool", LOG)
    spool.ensure()
    settings = AccountingSettings(max_writes_per_s=0, detail_dir=root / "detail")
    for name in names[:-2]:
        spool.write_node_file(job_id, name, "node", node_file(name, job, nodes[name], {}))
    # One ordinary node's Epilog: its node file, then the listing (not yet complete).
    t0 = time.perf_counter()
    name = names[-2] if count > 1 else names[-1]
    spool.write_node_file(job_id, name, "node", node_file(name, job, nodes[name], {}))
    spool.present_nodes(job_id)
    ordinary_s = time.perf_counter() - t0
    # The completing node's Epilog: node file, listing, claim, merge, deliver.
    backend = CountingBackend()
    t0 = time.perf_counter()
    if count > 1:
        last = names[-1]
        spool.write_node_file(job_id, last, "node", node_file(last, job, nodes[last], {}))
    assert spool.present_nodes(job_id) >= set(names)
    claimed = spool.claim(job_id, "epilog")
    assert claimed is not None
    spool.finalize(claimed)
    stats = deliver_pending(spool, backend, settings, LOG, sweep=False)
    completing_s = time.perf_counter() - t0
    token = backend.comments[job_id]
    record = decode_token(token)
    assert record["summary"]["nodes"] == count and record["complete"] is True
    # Merge and encode alone.
    t0 = time.perf_counter()
    merged = merge_node_records(job, nodes)
    merge_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    encode_fitting(merged, root / "detail2")
    encode_s = time.perf_counter() - t0
    return {
        "nodes": count,
        "bytes": len(token),
        "form": "summarised" if "detail" in record else "full",
        "detail_bytes": record.get("detail", {}).get("bytes", 0),
        "merge_s": merge_s,
        "encode_s": encode_s,
        "ordinary_epilog_s": ordinary_s,
        "completing_epilog_s": completing_s,
        "calls": stats.reads + stats.writes,
        "v1": v1_size(nodes, job),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="2,16,64,256,512,1024,4096")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    rows = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="record-scale-") as tmp:
            rows.append(one(count, args.gpus, Path(tmp)))
    base = rows[0]
    print(f"{args.gpus} GPUs a node; ratios against the {base['nodes']}-node job of this run")
    print(
        f"{'nodes':>6} {'record':>8} {'x':>5} {'form':>10} {'detail':>9} {'merge s':>8} {'x':>6} "
        f"{'encode s':>8} {'x':>6} {'epilog s':>8} {'last s':>7} {'calls':>5}  v1 writer"
    )
    for r in rows:
        print(
            f"{r['nodes']:>6} {r['bytes']:>8} {r['bytes'] / base['bytes']:>5.2f} {r['form']:>10} "
            f"{r['detail_bytes']:>9} {r['merge_s']:>8.4f} {r['merge_s'] / base['merge_s']:>6.0f} "
            f"{r['encode_s']:>8.4f} {r['encode_s'] / base['encode_s']:>6.0f} "
            f"{r['ordinary_epilog_s']:>8.4f} {r['completing_epilog_s']:>7.3f} {r['calls']:>5}  "
            f"{r['v1']}"
        )
    top = rows[-1]
    print(
        f"goals at {top['nodes']} nodes: record {top['bytes']} B < 16384: "
        f"{top['bytes'] < 16384}; merge {top['merge_s']:.3f} s < 1 s: {top['merge_s'] < 1}; "
        f"calls per job {sorted({r['calls'] for r in rows})} (constant: "
        f"{len({r['calls'] for r in rows}) == 1})"
    )


if __name__ == "__main__":
    main()
