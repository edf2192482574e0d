"""GPU health checks on recorded NVML data of (constructed) H100 nodes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from slurm_ai.health.gpu import (
    GpuCheckOptions,
    parse_xids,
    read_kmsg,
    run_gpu_checks,
)
from slurm_ai.health.settings import DEFAULT_XID_FATAL, DEFAULT_XID_IGNORE
from slurm_ai.health.verdict import CheckResult, Verdict
from slurm_ai.nvml import open_nvml

OPTIONS = GpuCheckOptions(
    expected_gpus=8, xid_fatal=DEFAULT_XID_FATAL, xid_ignore=DEFAULT_XID_IGNORE
)


def checks_of(
    path: str, options: GpuCheckOptions = OPTIONS, allocated: list[int] | None = None
) -> list[CheckResult]:
    data = json.loads(Path(path).read_text())
    return run_gpu_checks(
        open_nvml(data), options, allocated=allocated, kernel_log=data.get("kernel_log")
    )


def test_healthy_node_passes_with_idle_gen1_link_and_user_xid(
    recording: Callable[[str], str],
) -> None:
    checks = checks_of(recording("ok"))
    assert [(c.check, c.verdict) for c in checks] == [("gpu", Verdict.PASS)]


@pytest.mark.parametrize(
    ("name", "check", "needle"),
    [
        ("ecc", "ecc", "gpu1: 2 uncorrectable ECC errors since boot"),
        ("remap", "remap", "gpu2: row remap pending"),
        ("remapfail", "remap", "gpu6: row remapping failed"),
        ("pcie", "pcie", "gpu3: PCIe link x8 below x16"),
        ("throttle", "throttle", "gpu4: HW slowdown, HW thermal slowdown"),
        ("nvlink", "nvlink", "gpu5: NVLink 3 down (17/18 up)"),
        ("xid", "xid", "gpu7: Xid 79"),
        ("missing", "count", "7 GPUs visible, 8 expected"),
    ],
)
def test_each_recorded_fault_fails_with_a_readable_reason(
    recording: Callable[[str], str], name: str, check: str, needle: str
) -> None:
    checks = checks_of(recording(name))
    failed = [c for c in checks if c.verdict is Verdict.FAIL]
    assert [c.check for c in failed] == [check]
    assert needle in failed[0].reason


def test_only_allocated_gpus_are_checked_and_count_follows_slurm(
    recording: Callable[[str], str],
) -> None:
    opts = GpuCheckOptions(xid_fatal=DEFAULT_XID_FATAL, xid_ignore=DEFAULT_XID_IGNORE)
    assert checks_of(recording("ecc"), opts, allocated=[0, 2])[0].verdict is Verdict.PASS
    assert checks_of(recording("ecc"), opts, allocated=[1])[0].check == "ecc"
    missing = checks_of(recording("missing"), opts, allocated=[7])
    assert missing[0].reason == "7 GPUs visible, 8 expected"


def test_warnings_and_xid_lists() -> None:
    data = json.loads(
        Path(__file__)
        .resolve()
        .parent.parent.joinpath("data", "nvml", "health_h100_ok.json")
        .read_text()
    )
    dev = data["devices"][0]
    dev["nvmlDeviceGetTotalEccErrors(1,1)"] = 3  # lifetime only: warn
    dev["nvmlDeviceGetCurrentClocksEventReasons"] = 0x20  # SW thermal: warn, busy
    dev["nvmlDeviceGetNvLinkErrorCounter(2,1)"] = 5000
    data["kernel_log"].append("NVRM: Xid (PCI:0000:18:00): 31, pid=1, MMU Fault")  # ignored
    data["kernel_log"].append("NVRM: Xid (PCI:0000:18:00): 94, pid=1, Contained ECC error")
    checks = run_gpu_checks(open_nvml(data), OPTIONS, kernel_log=data["kernel_log"])
    got = {(c.check, c.verdict) for c in checks}
    assert got == {
        ("ecc", Verdict.WARN),
        ("throttle", Verdict.WARN),
        ("pcie", Verdict.WARN),  # Gen1 while busy is a real downgrade
        ("nvlink", Verdict.WARN),
        ("xid", Verdict.WARN),
    }


def test_nvml_faults_are_errors_not_crashes() -> None:
    data = {
        "devices": [
            {
                "nvmlDeviceGetRemappedRows": {"hang": True},
                "nvmlDeviceGetTotalEccErrors(1,0)": {"error": "GpuIsLost"},
            },
        ]
    }
    checks = run_gpu_checks(open_nvml(data), GpuCheckOptions())
    assert {c.check: c.verdict for c in checks} == {"ecc": Verdict.ERROR, "remap": Verdict.ERROR}
    # A PCIe card without NVLink, nothing supported: nothing to report.
    bare = run_gpu_checks(open_nvml({"devices": [{}]}), GpuCheckOptions())
    assert [(c.check, c.verdict) for c in bare] == [("gpu", Verdict.PASS)]


def test_parse_xids_and_read_kmsg_file(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(
        "4,1,2,-;NVRM: Xid (PCI:0000:3B:00): 48, pid=9, DBE (double bit error)\n"
        "6,2,3,-;eth0: link up\n"
        "NVRM: Xid (PCI:0000:3b:00): bogus\n"
    )
    events = parse_xids(read_kmsg(str(log)))
    assert [(e.pci, e.xid) for e in events] == [("0000:3b:00", 48)]
    link = tmp_path / "link"
    link.symlink_to(log)
    with pytest.raises(OSError):
        read_kmsg(str(link))


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/dev/kmsg").exists(), reason="needs /dev/kmsg")
def test_read_live_kmsg_does_not_block() -> None:
    try:
        lines = read_kmsg("/dev/kmsg")
    except OSError as exc:
        pytest.skip(f"/dev/kmsg unreadable here: {exc}")
    assert isinstance(lines, list)
