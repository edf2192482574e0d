"""`slurm-ai install` and `doctor` on the real local cluster: install, paste the printed
lines into the instance's hooks.conf, reconfigure, run a job, find its record.

Installs into its own directories under the instance prefix (not those of
tests/hooks_fixture.py), and restores hooks.conf and removes the install afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clusterhelp import paste_lines, wait_done, wait_record, with_block
from hooks_fixture import change_hooks_conf, quiesce, replace_file

pytestmark = pytest.mark.cluster


@dataclass
class ClusterInstall:
    cluster: Any
    etc: Path
    config: Path
    spool: Path
    install_output: str

    def slurm_ai(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "slurm_ai", *args],
            env=self.cluster.env({"SLURM_AI_CONFIG": str(self.config)}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _install_args(prefix: Path, base: str) -> list[str]:
    etc = prefix / "etc" / base
    return [
        "install", "--slurm-etc", str(etc), "--config", str(etc / "slurm-ai" / "config.toml"),
        "--slurm-conf", str(prefix / "etc" / "slurm.conf"),
        "--spool", str(prefix / "spool" / base), "--mark-dir", str(prefix / "marks" / base),
        "--log-file", str(prefix / "log" / base / "slurm-ai.log"),
        "--systemd-dir", str(etc / "systemd"),
        # Its etc is not the cluster's plugstack.conf.d: tests/topology/test_spank_cluster.py
        # registers the plugin where srun loads it.
        "--no-spank",
        "--set", "accounting.max_writes_per_s=50",
        "--set", "platform.partitions.vm.class=vm-passthrough",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cluster_install(slurm_cluster: Any) -> Iterator[ClusterInstall]:
    if os.geteuid() != 0:
        pytest.skip("installing hooks into the local cluster needs root")
    prefix = Path(slurm_cluster.prefix)
    base = "sai-install-test"
    etc = prefix / "etc" / base
    args = _install_args(prefix, base)
    hooks_conf = prefix / "etc" / "hooks.conf"
    original = hooks_conf.read_text() if hooks_conf.exists() else ""
    # Another fixture's hooks go first (Slurm 24.11 would run both sets), so that install
    # prints every line this cluster then lacks (PrologFlags=Alloc included).
    # (Written, not yet reconfigured: install reads the files, Slurm does not need to.)
    quiesce(slurm_cluster)
    replace_file(hooks_conf, with_block(original, []))
    proc = subprocess.run(
        [sys.executable, "-m", "slurm_ai", *args],
        env=slurm_cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 3:
        replace_file(hooks_conf, original)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # slurm.conf lacks our lines
    block = paste_lines(proc.stdout)
    assert f"Prolog={etc}/prolog.d/*" in block, proc.stdout
    inst = ClusterInstall(slurm_cluster, etc, etc / "slurm-ai" / "config.toml",
                          prefix / "spool" / base, proc.stdout)  # fmt: skip
    try:
        change_hooks_conf(slurm_cluster, with_block(original, block))
        yield inst
    finally:
        with contextlib.suppress(Exception):
            change_hooks_conf(slurm_cluster, original)
        undo = inst.slurm_ai("install", "--config", str(inst.config), "--uninstall")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        for leftover in (prefix / "spool" / base, prefix / "marks" / base, prefix / "log" / base):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(etc, ignore_errors=True)


def test_install_then_slurm_conf_complete(cluster_install: ClusterInstall) -> None:
    prefix = Path(cluster_install.cluster.prefix)
    again = cluster_install.slurm_ai(*_install_args(prefix, "sai-install-test"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to change" in again.stdout
    assert "slurm.conf has every line slurm-ai needs" in again.stdout


def test_doctor_passes_on_the_cluster(cluster_install: ClusterInstall) -> None:
    proc = cluster_install.slurm_ai(
        "doctor", "--config", str(cluster_install.config), "--slurm-etc", str(cluster_install.etc)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("PASS")]
    for name in ("config", "hook-prolog", "hook-python", "spool", "slurmdbd", "admincomment"):
        assert name in passed, proc.stdout


def test_a_job_leaves_a_record(cluster_install: ClusterInstall) -> None:
    cluster = cluster_install.cluster
    proc = cluster.run(
        ["sbatch", "--parsable", "-p", "vm", "-N2", "-o", "/dev/null", "--wrap", "srun true"]
    )
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    states = wait_done(cluster, [job])
    assert states[job] == "COMPLETED"
    record = wait_record(cluster, job, nodes=2)
    # Both nodes of the vm partition: n1, n2, or the KVM guests v1, v2 (tests/test_vm_nodes.py).
    assert set(record["nodes"]) == cluster.partition_nodes("vm")
    for node in record["nodes"].values():
        # The admin override written by `install --set` reached the hooks.
        ok = node["platform"]["class"] == "vm-passthrough" and node["platform"]["override"]
        assert ok, _whose_hooks(cluster_install, job, node["platform"])
    assert record["job"]["partition"] == "vm"
    # The hooks used this install's spool, not another one.
    assert cluster_install.spool.is_dir()


def _whose_hooks(inst: ClusterInstall, job: str, platform: dict[str, Any]) -> str:
    """Which install's hooks logged the job (a record without the override was once seen
    on Debian 13, cause unproven): the evidence to read when it fails again."""
    prefix = Path(inst.cluster.prefix)
    logs = sorted(prefix.glob("log/*/slurm-ai.log"))
    seen = {
        str(log): [ln for ln in log.read_text(errors="replace").splitlines() if f"job={job} " in ln]
        for log in logs
    }
    hooks_conf = (prefix / "etc" / "hooks.conf").read_text(errors="replace")
    return (
        f"platform {platform}\nhook log lines of job {job}: {seen}\nhooks.conf now:\n{hooks_conf}"
    )
