"""scripts/demo against the local cluster (setup-deps skipped): install, jobs in both
partitions, records, report. Restores hooks.conf and removes its install afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hooks_fixture import _reconfigure

pytestmark = pytest.mark.cluster

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"


def test_demo_runs_jobs_and_prints_the_report(slurm_cluster: Any) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo runs as root")
    prefix = Path(slurm_cluster.prefix)
    etc = prefix / "etc" / "demo-test"  # not the hooks of tests/hooks_fixture.py
    hooks_conf = prefix / "etc" / "hooks.conf"
    original = hooks_conf.read_text() if hooks_conf.exists() else ""
    argv = [sys.executable, str(DEMO), "--skip-setup", "--etc", str(etc),
            "--prefix", str(prefix), "--port-base", str(slurm_cluster.port_base),
            "--name", slurm_cluster.name]  # fmt: skip
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    finally:
        hooks_conf.write_text(original)
        with contextlib.suppress(Exception):
            _reconfigure(slurm_cluster)
        subprocess.run(
            [sys.executable, "-m", "slurm_ai", "install", "--uninstall",
             "--config", str(etc / "slurm-ai" / "config.toml")],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        shutil.rmtree(etc, ignore_errors=True)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    for step in ("2/5", "3/5", "4/5", "5/5"):
        assert f"== demo {step}:" in out
    assert "on this single machine both partitions run on the same" in out
    done = [ln for ln in out.splitlines() if "record in accounting" in ln]
    assert len(done) == 8, out[-4000:]
    assert all("COMPLETED" in ln for ln in done), "\n".join(done)
    assert {ln.split()[3] for ln in done} == {"bare", "vm"}
    # The report compares the partitions with the override's class on the vm side.
    assert "vm/vm-passthrough" in out
    assert "EUR per 1M tokens" in out
    assert "slurm-ai job" in out and "workload       training" in out
