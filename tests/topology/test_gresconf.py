"""gres.conf's GPU device files in Slurm's order, for the plan file's gpu_dev lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_ai.topology.gresconf import device_files, gpu_files

MACHINE = "dgx_h100"  # a recorded machine (tests/data): 8 GPUs
GRES = """
# a site's gres.conf
AutoDetect=off
NodeName=gpu[01-02] Name=gpu Type=h100 File=/dev/nvidia[0-3]   # first four
NodeName=gpu[01-02] Name=gpu Type=h100 File=/dev/nvidia[4-7]
NodeName=gpu03 Name=gpu File=/dev/nvidia0,/dev/nvidia2
NodeName=amd1 Name=gpu File=/dev/dri/renderD[128-129]
Name=mps Count=100
"""


def test_files_follow_slurms_order_per_node() -> None:
    assert gpu_files(GRES, "gpu02") == [f"/dev/nvidia{i}" for i in range(8)]
    assert gpu_files(GRES, "gpu03") == ["/dev/nvidia0", "/dev/nvidia2"]
    assert gpu_files(GRES, "amd1") == ["/dev/dri/renderD128", "/dev/dri/renderD129"]
    assert gpu_files(GRES, "login1") == []
    # A line without NodeName= is every node's.
    assert gpu_files("Name=gpu File=/dev/nvidia[00-01]", "x") == ["/dev/nvidia00", "/dev/nvidia01"]
    with pytest.raises(ValueError, match="bad range"):
        gpu_files("Name=gpu File=/dev/nvidia[a-b]", "x")


def test_device_files_fall_back_to_the_nvidia_default(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    files, why = device_files(str(conf), "n1", 2)
    assert files == ["/dev/nvidia0", "/dev/nvidia1"] and "no " in why
    (tmp_path / "gres.conf").write_text(GRES)
    assert device_files(str(conf), "gpu03", 2) == (
        ["/dev/nvidia0", "/dev/nvidia2"], str(tmp_path / "gres.conf"))  # fmt: skip
    files, why = device_files(str(conf), "n1", 1)
    assert files == ["/dev/nvidia0"] and "names no GPU file for n1" in why
    (tmp_path / "gres.conf").write_text("NodeName=n1 Name=gpu File=/dev/nvidia[x]\n")
    files, why = device_files(str(conf), "n1", 1)
    assert files == ["/dev/nvidia0"] and "bad range" in why


def _deny(monkeypatch: pytest.MonkeyPatch, allowed: set[str]) -> None:
    """The device cgroup's answer to access(): EPERM for every file not in `allowed`."""
    import errno

    from slurm_ai.topology import gresconf

    monkeypatch.setattr(
        gresconf, "_errno_of_access", lambda path: 0 if path in allowed else errno.EPERM
    )


def test_confined_gpus_are_the_ones_the_device_cgroup_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slurm_ai.topology.gresconf import confined_gpus

    (tmp_path / "gres.conf").write_text(GRES)
    conf = str(tmp_path / "slurm.conf")
    _deny(monkeypatch, {"/dev/nvidia5"})  # a --gpus-per-task=1 task given GPU 5
    assert confined_gpus(conf, "gpu01", 8) == [5]
    _deny(monkeypatch, {"/dev/nvidia0", "/dev/nvidia2"})
    assert confined_gpus(conf, "gpu03", 2) is None  # all of the node's: nothing to tell
    assert confined_gpus(conf, "gpu01", 8) == [0, 2]
    _deny(monkeypatch, set())
    assert confined_gpus(conf, "gpu01", 8) is None  # none: a step without GPUs
    _deny(monkeypatch, {"/dev/nvidia0"})
    assert confined_gpus(conf, "gpu01", 4) is None  # gres.conf disagrees with NVML's count


def test_a_task_planned_over_its_own_gpus_gets_no_sharing_warning() -> None:
    from topology_machines import load_machine

    from slurm_ai.topology.plan import JobAllocation, compute_plan

    topo = load_machine(MACHINE).topology
    cpus = list(topo.cpu.online)
    shared = compute_plan(topo, JobAllocation(cpus=cpus, gpus=[4], ntasks=2))
    assert "2 ranks share 1 GPU(s)" in shared.all_warnings()
    # Each of two --gpus-per-task tasks plans over its own GPU: sharing it is the design.
    own = compute_plan(topo, JobAllocation(cpus=cpus, gpus=[4], ntasks=2, task_gpus=True))
    assert "2 ranks share 1 GPU(s)" not in own.all_warnings()
    assert own.rank(1).gpus == [4] and own.rank(1).cpus == shared.rank(1).cpus
