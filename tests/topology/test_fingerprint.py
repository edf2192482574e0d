"""Virtualization fingerprint of each recorded machine, with evidence and overrides."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from topology_machines import DATA, load_machine

from slurm_ai.config import Section
from slurm_ai.errors import ConfigError
from slurm_ai.topology.capture import capture
from slurm_ai.topology.model import PLATFORM_CLASSES
from slurm_ai.topology.probe import probe_node
from slurm_ai.topology.virt import platform_record

EXPECTED = {
    # name: (class, hypervisor, cloud, container, gpu_mode, nic_mode, rapl)
    "dgx_h100": ("bare-metal", "none", None, None, "bare", "pf", True),
    "dgx_a100": ("bare-metal", "none", None, None, "bare", "pf", False),
    "kvm_passthrough": ("vm-passthrough", "kvm", None, None, "passthrough", "sriov-vf", False),
    "azure_vgpu": ("vm-vgpu", "hyperv", "azure", None, "vgpu", "sriov-vf", False),
    "mig_a100": ("mig", "none", None, None, "mig", "pf", True),
    "this_machine": ("container", "kvm", None, "docker", "none", "virtio", False),
    "lent_h200": ("container", "kvm", None, "docker", "passthrough", "virtio", False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_platform_class_and_evidence(name: str) -> None:
    record = platform_record(load_machine(name).fingerprint)
    klass, hv, cloud, container, gpu_mode, nic_mode, rapl = EXPECTED[name]
    assert record["class"] == klass
    assert record["hypervisor"] == hv
    assert record["cloud"] == cloud
    assert record["container"] == container
    assert record["gpu_mode"] == gpu_mode
    assert record["nic_mode"] == nic_mode
    assert record["rapl"] is rapl
    assert record["override"] is False
    assert record["evidence"], "every fingerprint says what it rests on"


def test_this_machine_is_a_container_on_kvm_without_rapl() -> None:
    record = platform_record(load_machine("this_machine").fingerprint)
    assert record["summary"].startswith("container (docker) on KVM")
    assert record["summary"].endswith("no RAPL")
    evidence = " ".join(record["evidence"])
    assert "hypervisor" in evidence and "kvm-clock" in evidence and ".dockerenv" in evidence


def test_live_host_matches_its_capture(tmp_path: Path) -> None:
    # Whatever host runs this (bare metal, VM, container): the live probe and a capture of it
    # agree, the class is one of the known ones, and each conclusion shows its evidence.
    # The exact answers per machine are pinned above, on the recorded machines.
    capture(tmp_path / "cap", with_nvml=False)
    live = platform_record(probe_node("/").fingerprint)
    replay = platform_record(probe_node(tmp_path / "cap").fingerprint)
    assert replay == live
    assert live["class"] in PLATFORM_CLASSES and live["evidence"]
    assert live["summary"]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.M):
        assert live["hypervisor"] != "none", live["evidence"]
        assert live["class"] != "bare-metal"
    if Path("/.dockerenv").exists():
        assert live["container"] == "docker" and live["class"] == "container"
    powercap = Path("/sys/class/powercap")
    has_rapl = powercap.is_dir() and any(
        p.name.startswith("intel-rapl") for p in powercap.iterdir()
    )
    assert live["rapl"] is has_rapl


def test_override_node_beats_partition_beats_global() -> None:
    fp = load_machine("this_machine").fingerprint
    section = Section(
        "platform",
        {
            "class": "bare-metal",
            "partitions": {"vm": {"class": "vm-passthrough", "hypervisor": "vmware"}},
            "nodes": {"n[1-2]": {"class": "vm-vgpu"}},
        },
    )
    record = platform_record(fp, section, node="n2", partition="vm")
    assert record["class"] == "vm-vgpu" and record["hypervisor"] == "vmware"
    assert record["override"] is True
    assert any(
        '[platform.nodes."n[1-2]"] class = vm-vgpu (detected: container)' in e
        for e in record["evidence"]
    )
    record = platform_record(fp, section, node="n9", partition="bare")
    assert record["class"] == "bare-metal"
    assert platform_record(fp, Section("platform", {}), node="n1")["override"] is False


def test_bad_override_is_a_config_error() -> None:
    fp = load_machine("this_machine").fingerprint
    with pytest.raises(ConfigError, match="expected one of"):
        platform_record(fp, Section("platform", {"class": "cloudy"}))
    with pytest.raises(ConfigError, match="bad hostlist"):
        platform_record(fp, Section("platform", {"nodes": {"n[1-": {"class": "mig"}}}), node="n1")


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(DATA / name, dest, symlinks=True)
    return dest


def test_kubernetes_podman_gvisor_firecracker(tmp_path: Path) -> None:
    root = _copy("kvm_passthrough", tmp_path)
    (root / "run").mkdir()
    (root / "run" / ".containerenv").write_text("")
    assert probe_node(root).fingerprint.container == "podman"
    fp = probe_node(root, env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).fingerprint
    assert fp.container == "kubernetes"
    (root / "proc" / "version").write_text(
        "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016\n"
    )
    fp = probe_node(root).fingerprint
    assert fp.hypervisor == "gvisor"
    # Firecracker: no DMI, virtio-mmio devices on the platform bus.
    fc = _copy("this_machine", tmp_path)
    platform_dir = fc / "sys" / "bus" / "platform" / "devices"
    for entry in platform_dir.iterdir():
        entry.unlink()
    (platform_dir / "virtio_mmio.0").mkdir()
    fp = probe_node(fc).fingerprint
    assert fp.hypervisor == "kvm" and fp.vmm == "firecracker"
    assert any("virtio-mmio" in e for e in fp.evidence)


def test_lent_h200_gpu_numa_from_local_cpus() -> None:
    # Real capture: numa_node is -1 in this guest and NVML's NUMA id is NotSupported,
    # so the plan places the GPU by its local_cpulist.
    from slurm_ai.topology.plan import JobAllocation, compute_plan

    topo = load_machine("lent_h200").topology
    gpu = topo.gpus[0]
    assert gpu.model == "NVIDIA H200" and gpu.bus_id == "0000:00:06.0" and gpu.numa is None
    assert gpu.virt_mode == "passthrough"
    plan = compute_plan(topo, JobAllocation(cpus=topo.cpu.online, gpus=[0]))
    assert plan.ranks[0].numa == 0 and plan.ranks[0].env["CUDA_VISIBLE_DEVICES"] == "0"
    assert not plan.all_warnings()


def test_vm_class_names_what_was_passed_through(tmp_path: Path) -> None:
    # This machine's KVM guest without its container: virtio only, no GPU, so nothing is
    # passed through and the class says `vm`, not `vm-passthrough`.
    guest = _copy("this_machine", tmp_path)
    (guest / ".dockerenv").unlink()
    record = platform_record(probe_node(guest).fingerprint)
    assert (record["class"], record["hypervisor"], record["gpu_mode"]) == ("vm", "kvm", "none")
    assert record["nic_mode"] == "virtio" and record["summary"].startswith("KVM")
    # A passed-through NIC (SR-IOV VF or a whole function) or GPU makes it vm-passthrough.
    fp = probe_node(guest).fingerprint
    for nic_mode, gpu_mode in (("sriov-vf", "none"), ("pf", "none"), ("virtio", "passthrough")):
        fp.nic_mode, fp.gpu_mode = nic_mode, gpu_mode
        assert fp.platform_class() == "vm-passthrough", (nic_mode, gpu_mode)
