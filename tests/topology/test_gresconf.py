"""gres.conf's GPU device files in Slurm's order, for the plan file's gpu_dev lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_ai.topology.gresconf import device_files, gpu_files

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
