"""On the real local cluster: jobs run in both partitions show up in `report` with their records.

Records reach AdminComment the way the Epilog delivers them, after the job
ended: `sacctmgr -i modify job where jobid=N set AdminComment=...` (which
lower-cases the value on Slurm 22.05: the hex token survives that). One record
sits beside foreign text holding '|' and spaces; one job has no record.
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


def _run_job(cluster: Any, partition: str) -> str:
    proc = cluster.run(["sbatch", "--parsable", "-p", partition, "-N1", "--wrap", "sleep 1"])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def _wait_done(cluster: Any, jobids: list[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = cluster.run(
            ["sacct", "-a", "-X", "-n", "-P", "--format=State,Partition", "-j", ",".join(jobids)]
        )
        rows = [line.split("|") for line in out.stdout.split()]
        # A short job first shows as a placeholder row with no partition: wait for the real one.
        if len(rows) == len(jobids) and all(r[0] == "COMPLETED" and r[1] for r in rows):
            return
        time.sleep(1)
    raise AssertionError(f"jobs {jobids} did not complete: {out.stdout}")


def _deliver(cluster: Any, jobid: str, comment: str) -> None:
    """Set AdminComment of an ended job in accounting, and wait until sacct shows it."""
    argv = ["sacctmgr", "-i", "modify", "job", "where", f"jobid={jobid}"]
    proc = cluster.run([*argv, "set", f"AdminComment={comment}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = cluster.run(["sacct", "-a", "-X", "-n", "-P", "--format=AdminComment", "-j", jobid])
        if out.stdout.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"AdminComment of job {jobid} never showed in sacct")


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


def test_jobs_in_both_partitions_show_up_in_report(
    slurm_cluster: Any, installed_hooks: Any
) -> None:
    # The records here are written by the test itself; the installed hooks (other
    # tests of this session install them) must deliver nothing for these jobs.
    quiet_hooks = {"hooks": {"steps": []}, "accounting": {"deliver_inline": False}}
    with installed_hooks.configured(quiet_hooks):
        bare = _run_job(slurm_cluster, "bare")
        vm = _run_job(slurm_cluster, "vm")
        plain = _run_job(slurm_cluster, "vm")
        _wait_done(slurm_cluster, [bare, vm, plain])
        bare_token = encode_record(_record(bare, "bare", "bare-metal", 10.0))
        _deliver(slurm_cluster, bare, "other-tool | note " + bare_token)
        _deliver(slurm_cluster, vm, encode_record(_record(vm, "vm", "vm-passthrough", 8.0)))

        for jobid, status in ((bare, "ok"), (vm, "ok"), (plain, "no record")):
            res = CliRunner().invoke(main, ["job", jobid, "--json"], catch_exceptions=False)
            assert res.exit_code == 0, res.output
            raw = json.loads(res.output)
            assert raw["record_status"] == status, raw
        raw = json.loads(CliRunner().invoke(main, ["job", bare, "--json"]).output)
        assert raw["record"]["job"]["id"] == bare and raw["foreign_comment"] is True
        assert raw["sacct"]["Partition"] == "bare"
        text = CliRunner().invoke(main, ["job", vm]).output
        assert "vm-passthrough" in text and "busbw 8 GB/s" in text

        # The live report (streaming sacct) has both partitions with their records.
        r = _report(["--start", "now-1hour", "--workers", "1"])
        groups = {(g["partition"], g["platform"]): g for g in r["groups"]}
        assert groups[("bare", "bare-metal")]["jobs"] >= 1
        assert groups[("vm", "vm-passthrough")]["jobs"] >= 1
        assert groups[("vm", "no record")]["jobs"] >= 1
        assert r["summary"]["no_record"] >= 1
        assert r["summary"]["with_record"] >= 2 and r["summary"]["foreign_comment"] >= 1
        assert any(
            t["platform"] == "vm-passthrough" and t["model"] == "cpu" for t in r["tax"]["busbw"]
        )
        only_vm = _report(["--start", "now-1hour", "--partition", "vm"])
        assert {g["partition"] for g in only_vm["groups"]} == {"vm"}
