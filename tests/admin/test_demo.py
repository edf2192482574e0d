"""scripts/demo against the local cluster (setup-deps skipped): install, jobs in both
partitions, records, report. Restores hooks.conf and removes its install afterwards."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hooks_fixture import change_hooks_conf, quiesce

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"


@pytest.mark.cluster
def test_demo_runs_jobs_and_prints_the_report(slurm_cluster: Any) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo runs as root")
    prefix = Path(slurm_cluster.prefix)
    etc = prefix / "etc" / "demo-test"  # not the hooks of tests/hooks_fixture.py
    config = etc / "slurm-ai" / "config.toml"  # nor the default demo's config
    hooks_conf = prefix / "etc" / "hooks.conf"
    original = hooks_conf.read_text() if hooks_conf.exists() else ""
    # One round (8 jobs) keeps the test short; the demo then sets [report] min_jobs = 1.
    # Started as on a fresh machine: with setup (scripts/setup-deps finds everything there
    # and installs slurm-ai again) and by an interpreter that cannot import slurm_ai (-S:
    # no site-packages), as the first run's interpreter cannot see what setup installs.
    argv = [sys.executable, "-S", str(DEMO), "--etc", str(etc), "--config",
            str(config), "--rounds", "1", "--prefix", str(prefix),
            "--port-base", str(slurm_cluster.port_base), "--name", slurm_cluster.name]  # fmt: skip
    cannot = subprocess.run([sys.executable, "-S", "-c", "import slurm_ai"], cwd=DEMO.parent,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert cannot.returncode != 0 and "No module named 'slurm_ai'" in cannot.stderr
    quiesce(slurm_cluster)  # the demo changes the hooks: not under an earlier test's job
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    finally:
        with contextlib.suppress(Exception):
            change_hooks_conf(slurm_cluster, original)
        subprocess.run(
            [sys.executable, "-m", "slurm_ai", "install", "--uninstall", "--config", str(config)],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        shutil.rmtree(etc, ignore_errors=True)
    out = proc.stdout
    # Exit 0 also means the demo's own checks of the report held (no PROBLEM lines).
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert "PROBLEM" not in out
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"== demo {step}:" in out
    # Steps 2-5 ran in the interpreter started after the install.
    assert out.index("== demo: continuing in a fresh interpreter") < out.index("== demo 2/5:")
    if (prefix / "etc" / "vm-nodes").exists():  # the vm partition ran in KVM/QEMU guests
        assert "partition vm ran in real virtual machines v1, v2" in out
    else:
        assert "on this single machine both partitions run on the same" in out
    # The config really carries the demo's settings, and the shims use it.
    assert f"checked: {config} carries the demo's" in out
    assert "report.min_jobs = 1" in out and 'health.backend = "mpi"' in out
    done = [ln for ln in out.splitlines() if "record in accounting" in ln]
    assert len(done) == 8, out[-4000:]
    assert all("COMPLETED" in ln for ln in done), "\n".join(done)
    assert {ln.split()[3] for ln in done} == {"bare", "vm"}
    # The report covers this run's jobs only, with the overrides' classes and prices.
    report = out.split("slurm_ai report --start", 1)[1].split("== demo 5/5: slurm-ai job", 1)[0]
    assert re.search(r"^jobs: 8  with record: 8  no record: 0 ", report, re.M), report[:600]
    assert "prices: none configured" not in report and "prices: EUR 0.25/kWh" in report
    assert "bare/bare-metal" in report and "vm/vm-passthrough" in report
    assert "EUR per 1M tokens" in report
    # busbw from the Prolog's health check on both sides, and the tax table has its row.
    busbw_jobs = re.search(r"^busbw jobs\s+(\d+)\s+(\d+)\s*$", report, re.M)
    assert busbw_jobs and busbw_jobs.groups() == ("4", "4"), report
    assert re.search(r"^  cpu, 2 ranks, 1MiB: bare metal", report, re.M), report
    # One group per what the all-reduce ran on, ranks and size: the training job's whole
    # nodes carry the fake GPUs, but its check ran on the CPUs (no CUDA): keyed "cpu" too.
    vm_rows = re.findall(r"^  vm-passthrough\s+\(n=(\d+)\)\s", report, re.M)
    assert sum(map(int, vm_rows)) == 4, report
    assert "reading the busbw tax: vm-passthrough/bare-metal = " in out
    # The lowered minimum is said; the same machines under both labels (and one job a
    # side per workload) give no clear difference in every workload's cost per result.
    assert "The demo lowers [report] min_jobs from 20 to 1" in out
    decision = report.split("Decision (95% intervals; at least 1 jobs per partition)", 1)[1]
    assert "too few jobs to say" not in decision
    assert decision.count("vm/vm-passthrough: no clear difference") == 4, decision
    assert "costs more" not in decision and "costs less" not in decision
    assert "slurm-ai job" in out and "workload       training" in out
    assert "health       pass busbw" in out


def test_demo_refuses_a_config_without_its_settings(tmp_path: Path) -> None:
    """An edited (kept) config or shims pointing elsewhere stop the demo before any job."""
    if os.geteuid() != 0:
        pytest.skip("the demo runs as root")
    config = tmp_path / "config.toml"
    config.write_text('[prices]\ncost_per_kwh = 0.1\n[platform.partitions.vm]\nclass = "mig"\n')
    etc = tmp_path / "etc"
    (etc / "prolog.d").mkdir(parents=True)
    (etc / "prolog.d" / "50-slurm-ai").write_text("#!/bin/sh\nexec true --config /elsewhere\n")
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--jobs-only", "--config", str(config), "--etc", str(etc),
         "--prefix", str(tmp_path / "prefix")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    err = proc.stderr
    assert "do not carry the demo's settings" in err
    assert "prices.cost_per_kwh = 0.1 (the demo needs 0.25)" in err
    assert "platform.partitions.vm.class = 'mig' (the demo needs 'vm-passthrough')" in err
    assert "health.enabled = None (the demo needs True)" in err
    assert f"{etc / 'prolog.d' / '50-slurm-ai'} does not run with --config {config}" in err
    assert "slurm-ai-taskprolog" in err  # missing shim
    assert "sbatch" not in proc.stdout  # no job was submitted
    # The failing step is named, with what to do next.
    assert "demo: step 3/5 (installing the slurm-ai hooks into the cluster) failed." in err
    assert "what to do: the message above names the file or setting" in err
