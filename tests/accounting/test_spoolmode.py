"""[accounting] shared_spool decided by what the spool is (slurm_ai.accounting.spoolmode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurm_ai.accounting.settings import AccountingSettings, spool_mode
from slurm_ai.accounting.spoolmode import MARKER, decide, mount_of
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError

# Recorded /proc/self/mountinfo lines of a GPU node: root on ext4, /var/spool on its
# own local disk, home directories and a shared scratch over NFS and Lustre.
MOUNTINFO = """\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
40 22 259:3 / /var/spool rw,relatime shared:20 - xfs /dev/nvme1n1 rw
51 22 0:50 / /home rw,relatime shared:30 - nfs4 fs1:/home rw,vers=4.2
52 22 0:51 / /lustre rw,relatime shared:31 - lustre 10.0.0.1@o2ib:/scratch rw
53 22 0:52 / /mnt/with\\040space rw,relatime shared:32 - nfs fs2:/x rw
"""


def test_the_configured_value_wins(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text("")
    assert decide(False, tmp_path, MOUNTINFO).shared is False
    assert decide(True, Path("/var/spool/slurm-ai"), MOUNTINFO).shared is True
    assert "shared_spool = false" in decide(False, tmp_path, MOUNTINFO).why


def test_filesystem_type_decides_without_a_marker() -> None:
    local = decide("auto", Path("/var/spool/slurm-ai"), MOUNTINFO)
    assert not local.shared and "xfs" in local.why and local.name == "node-local"
    shared = decide(None, Path("/lustre/slurm-ai/spool"), MOUNTINFO)
    assert shared.shared and "lustre" in shared.why and shared.name == "shared"
    assert decide("auto", Path("/home/spool"), MOUNTINFO).shared


def test_mount_points_with_escaped_characters() -> None:
    assert mount_of(Path("/mnt/with space/s"), MOUNTINFO) == (Path("/mnt/with space"), "nfs")
    assert mount_of(Path("/var/spoolx"), MOUNTINFO) == (Path("/"), "ext4")


def test_a_marker_above_the_spool_on_its_mount_means_shared(tmp_path: Path) -> None:
    spool = tmp_path / "a" / "spool"  # need not exist yet: install makes it
    info = f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / {tmp_path} rw - ext4 /dev/sdb rw\n"
    assert not decide("auto", spool, info).shared
    (tmp_path / MARKER).write_text("")
    mode = decide("auto", spool, info)
    assert mode.shared and str(tmp_path / MARKER) in mode.why


def test_a_marker_beyond_the_spools_mount_is_not_seen(tmp_path: Path) -> None:
    # The spool's own mount (a node's local disk) starts below the marker.
    (tmp_path / MARKER).write_text("")
    local = tmp_path / "local"
    (local / "spool").mkdir(parents=True)
    info = f"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 8:2 / {local} rw - xfs /dev/sdb rw\n"
    mode = decide("auto", local / "spool", info)
    assert not mode.shared and "xfs" in mode.why


def test_bad_value_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        decide("yes", tmp_path, MOUNTINFO)


def test_settings_take_the_decision(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    auto = Config(path=None, data={"spool": {"dir": str(spool)}})
    assert AccountingSettings.from_config(auto).shared_spool == spool_mode(auto).shared
    (tmp_path / MARKER).write_text("")
    assert AccountingSettings.from_config(auto).shared_spool is True
    fixed = Config(
        path=None, data={"spool": {"dir": str(spool)}, "accounting": {"shared_spool": False}}
    )
    assert AccountingSettings.from_config(fixed).shared_spool is False


def test_doctor_says_which_mode_and_why(tmp_path: Path) -> None:
    from slurm_ai.admin.doctor import _spool_mode_check

    spool = tmp_path / "spool"
    (tmp_path / MARKER).write_text("")
    check = _spool_mode_check(Config(path=None, data={"spool": {"dir": str(spool)}}))
    assert check.name == "spool-mode" and check.status == "info"
    assert check.message.startswith("shared: marker ") and MARKER in check.message
    fixed = {"spool": {"dir": str(spool)}, "accounting": {"shared_spool": False}}
    check = _spool_mode_check(Config(path=None, data=fixed))
    assert check.message == "node-local: [accounting] shared_spool = false"
    bad = {"spool": {"dir": str(spool)}, "accounting": {"shared_spool": "yes"}}
    assert _spool_mode_check(Config(path=None, data=bad)).status == "fail"
