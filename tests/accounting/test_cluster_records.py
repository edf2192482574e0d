"""Records in `sacct -o AdminComment` from real jobs on the local two-node cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from clusterjobs import record_of, sbatch, wait_for, wait_record
from core_parts import DEV_EXTRA, import_module

pytestmark = pytest.mark.cluster


def _validate(record: dict) -> None:
    jsonschema = import_module("jsonschema", DEV_EXTRA)
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "docs/record.schema.json").read_text()
    )
    jsonschema.validate(record, schema)


def _check_node(node: dict, *, sources: set[str]) -> None:
    t = node["time"]
    assert t["prolog_s"] > 0 and t["epilog_s"] > 0
    assert t["epilog_end"] > t["prolog_start"]
    energy = node["energy"]
    assert {s["source"] for s in energy["sources"]} >= sources
    # No RAPL, no GPU, no IPMI here: an estimate, named as such.
    assert energy["quality"] == "estimated"
    assert energy["total_j"] > 0
    cpu = next(s for s in energy["sources"] if s["source"] == "cpu-model")
    assert cpu["quality"] == "estimated" and "no RAPL" in cpu["note"]


def test_single_node_job_record(installed_hooks):
    job = sbatch(installed_hooks, "-N1", "-n1", "--wrap", "sleep 2")
    record = wait_record(installed_hooks, job, set(), timeout=90)
    record = wait_for(
        lambda: (r := record_of(installed_hooks, job)) and r["complete"] and r,
        what="complete record",
    )
    assert record["job"]["id"] == job
    _validate(record)
    assert record["job"]["nodes_expected"] == 1 and len(record["nodes"]) == 1
    node = next(iter(record["nodes"].values()))
    _check_node(node, sources={"cpu-model"})
    # Job timing from accounting, the run itself included (~2 s sleep).
    assert record["job"]["submit"] <= record["job"]["start"]
    assert node["energy"]["elapsed_s"] >= 2


def test_two_node_job_record_with_units(installed_hooks):
    script = (
        "#!/bin/sh\n"
        "srun -N2 -n2 true\n"
        f"{sys.executable} -m slurm_ai mark tokens=1.2e9 epochs=3 workload=training\n"
    )
    job = sbatch(installed_hooks, "-N2", "-n2", "--wrap", script.split("\n", 1)[1])
    record = wait_record(installed_hooks, job, {"n1", "n2"})
    assert record["complete"] is True
    assert set(record["nodes"]) == {"n1", "n2"}
    for node in record["nodes"].values():
        _check_node(node, sources={"cpu-model"})
    assert record["units"] == {"tokens": 1.2e9, "epochs": 3.0}
    assert record["job"]["workload"] == "training"
    assert record["job"]["partition"] == "bare"
    _validate(record)


def test_twenty_two_node_jobs_all_complete(installed_hooks):
    jobs = [sbatch(installed_hooks, "-N2", "-n2", "--wrap", "srun -N2 -n2 true") for _ in range(20)]
    for job in jobs:
        record = wait_record(installed_hooks, job, {"n1", "n2"}, timeout=240)
        assert set(record["nodes"]) == {"n1", "n2"}, job
        assert record["complete"] is True
