"""On the real local cluster: jobs run in both partitions show up in `report` with their records.

Records are written into AdminComment (with scontrol while the job runs: see
_run_job for why not sacctmgr), beside foreign text holding '|' and spaces;
one job has no record.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner

from slurm_ai.cli import main
from slurm_ai.record import encode_record

pytestmark = pytest.mark.cluster


def _run_job(cluster: Any, partition: str, comment: str | None) -> str:
    """A real batch job; its AdminComment set with scontrol while it runs.

    sacctmgr (the Epilog's path) lowercases AdminComment on Slurm 22.05, which
    ruins a base64 token; scontrol keeps case but only while the job runs.
    """
    proc = cluster.run(["sbatch", "--parsable", "-p", partition, "-N1", "--wrap", "sleep 3"])
    assert proc.returncode == 0, proc.stderr
    jobid = proc.stdout.strip().split(";")[0]
    if comment is not None:
        deadline = time.monotonic() + 60
        while True:
            upd = cluster.run(["scontrol", "update", f"JobId={jobid}", f"AdminComment={comment}"])
            if upd.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert upd.returncode == 0, upd.stderr
    return jobid


def _wait_done(cluster: Any, jobids: list[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = cluster.run(
            ["sacct", "-a", "-X", "-n", "-P", "--format=State", "-j", ",".join(jobids)]
        )
        states = out.stdout.split()
        if len(states) == len(jobids) and all(s == "COMPLETED" for s in states):
            return
        time.sleep(1)
    raise AssertionError(f"jobs {jobids} did not complete: {out.stdout}")


def _record(jobid: str, partition: str, cls: str, busbw: float) -> dict[str, Any]:
    return {
        "v": 1,
        "job": {"id": jobid, "partition": partition, "workload": "inference"},
        "nodes": {
            "n1": {
                "platform": {"class": cls},
                "gpus": [],
                "energy": {
                    "total_j": 1800.0,
                    "sources": [{"source": "cpu-model", "joules": 1800.0, "quality": "estimated"}],
                },
                "health": {
                    "verdict": "pass",
                    "backend": "gloo",
                    "busbw_gbps": busbw,
                    "ranks": 2,
                    "size_bytes": 1048576,
                },
            }
        },
        "units": {"requests": 1000.0},
    }


def _report(args: list[str]) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["report", "--format", "json", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_jobs_in_both_partitions_show_up_in_report(slurm_cluster: Any) -> None:
    bare = _run_job(
        slurm_cluster,
        "bare",
        "other-tool | note " + encode_record(_record("b", "bare", "bare-metal", 10.0)),
    )
    vm = _run_job(slurm_cluster, "vm", encode_record(_record("v", "vm", "vm-passthrough", 8.0)))
    plain = _run_job(slurm_cluster, "vm", None)
    _wait_done(slurm_cluster, [bare, vm, plain])

    for jobid, status in ((bare, "ok"), (vm, "ok"), (plain, "no record")):
        res = CliRunner().invoke(main, ["job", jobid, "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["record_status"] == status

    # The live report (streaming sacct) has both partitions with their records.
    r = _report(["--start", "now-1hour", "--workers", "1"])
    groups = {(g["partition"], g["platform"]): g for g in r["groups"]}
    assert groups[("bare", "bare-metal")]["jobs"] >= 1
    assert groups[("vm", "vm-passthrough")]["jobs"] >= 1
    assert groups[("vm", "no record")]["jobs"] >= 1
    assert r["summary"]["no_record"] >= 1
    assert r["summary"]["with_record"] >= 2 and r["summary"]["foreign_comment"] >= 1
    assert any(t["platform"] == "vm-passthrough" and t["model"] == "cpu" for t in r["tax"]["busbw"])
    only_vm = _report(["--start", "now-1hour", "--partition", "vm"])
    assert {g["partition"] for g in only_vm["groups"]} == {"vm"}


def test_sacctmgr_lowercased_token_is_counted_unparsed(slurm_cluster: Any) -> None:
    jobid = _run_job(slurm_cluster, "bare", None)
    _wait_done(slurm_cluster, [jobid])
    token = encode_record(_record(jobid, "bare", "bare-metal", 1.0))
    proc = slurm_cluster.run(
        [
            "sacctmgr",
            "-i",
            "modify",
            "job",
            "where",
            f"jobid={jobid}",
            "set",
            f"AdminComment={token}",
        ]
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = CliRunner().invoke(main, ["job", jobid, "--json"], catch_exceptions=False)
    raw = json.loads(res.output)
    assert raw["record_status"] == "unparsed", raw  # the value came back lowercased
    assert raw["reason"] == "token lowercased (sacctmgr)"
