"""Virtualization fingerprint: hypervisor, cloud, container, GPU and NIC mode.

Every conclusion carries the evidence it rests on (files read, values seen),
because an operator comparing bare metal with VMs must be able to check why a
node was put in a class. There is no CPUID here (Python cannot issue it without
native code), so the hypervisor comes from files: DMI strings, the cpuinfo
`hypervisor` flag, the clock sources the kernel offers (kvm-clock,
hyperv_clocksource, xen), /sys/hypervisor, and virtio devices. An admin
override ([platform] in the config, per node or per partition) wins and says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slurm_ai.config import Section
from slurm_ai.errors import ConfigError
from slurm_ai.slurmenv import expand_hostlist
from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.model import PLATFORM_CLASSES, Fingerprint, NodeTopology

OVERRIDABLE = ("class", "hypervisor", "vmm", "cloud", "container", "gpu_mode", "nic_mode")
DMI_FIELDS = (
    "sys_vendor",
    "product_name",
    "product_version",
    "board_vendor",
    "bios_vendor",
    "bios_version",
    "chassis_vendor",
    "chassis_asset_tag",
)
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
# gVisor reports this fixed kernel identity in /proc/version.
GVISOR_VERSION = re.compile(r"Linux version 4\.4\.0 #1 SMP Sun Jan 10 15:06:54 PST 2016")

# Paravirtual clock sources a guest kernel offers, by hypervisor.
PV_CLOCKS = (
    ("kvm-clock", "kvm"),
    ("hyperv_clocksource_tsc_page", "hyperv"),
    ("xen", "xen"),
    ("vmware-clock", "vmware"),
)
# (DMI substring, hypervisor) checked against vendor/product/bios strings.
DMI_HYPERVISORS = (
    ("vmware", "vmware"),
    ("virtualbox", "virtualbox"),
    ("innotek", "virtualbox"),
    ("qemu", "kvm"),
    ("kvm", "kvm"),
    ("seabios", "kvm"),
    ("bochs", "kvm"),
    ("openstack", "kvm"),
    ("google compute engine", "kvm"),
    ("hvm domu", "xen"),
    ("xen", "xen"),
    ("parallels", "parallels"),
    ("bhyve", "bhyve"),
    ("cloud hypervisor", "kvm"),
)
DMI_CLOUDS = (
    ("amazon ec2", "aws"),
    ("google", "gcp"),
    ("oraclecloud", "oci"),
    ("alibaba cloud", "alibaba"),
    ("openstack", "openstack"),
    ("digitalocean", "digitalocean"),
    ("hetzner", "hetzner"),
    ("scaleway", "scaleway"),
    ("ibm:cloud", "ibm"),
    ("tencent cloud", "tencent"),
)


def _dmi(sysfs: Sysfs) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in DMI_FIELDS:
        value = sysfs.read_text(f"/sys/class/dmi/id/{name}")
        if value:
            values[name] = value
    return values


def _hypervisor(sysfs: Sysfs, dmi: dict[str, str], fp: Fingerprint) -> None:
    ev = fp.evidence
    version = sysfs.read_text("/proc/version") or ""
    if GVISOR_VERSION.search(version):
        fp.hypervisor = "gvisor"
        ev.append("/proc/version is gVisor's fixed 'Linux version 4.4.0 ... 2016' string")
        return
    xen = sysfs.read_text("/sys/hypervisor/type")
    if xen:
        fp.hypervisor = xen.lower()
        ev.append(f"/sys/hypervisor/type = {xen}")
    identity = " ".join(
        dmi.get(k, "") for k in ("sys_vendor", "product_name", "bios_vendor", "board_vendor")
    ).lower()
    if fp.hypervisor == "none":
        for needle, name in DMI_HYPERVISORS:
            if needle in identity:
                fp.hypervisor = name
                ev.append(f"DMI names {needle!r}: {identity.strip()[:80]}")
                break
    if (
        fp.hypervisor == "none"
        and "microsoft" in identity
        and "virtual machine" in dmi.get("product_name", "").lower()
    ):
        fp.hypervisor = "hyperv"
        ev.append(f"DMI product_name = {dmi.get('product_name')}")
    cpuinfo = sysfs.read_text("/proc/cpuinfo") or ""
    flag = bool(re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.MULTILINE))
    if flag:
        ev.append("/proc/cpuinfo has the 'hypervisor' flag (running under a hypervisor)")
    clocks = (
        sysfs.read_text("/sys/devices/system/clocksource/clocksource0/available_clocksource") or ""
    ).split()
    clock_hv = next((hv for clock, hv in PV_CLOCKS if clock in clocks), None)
    if clock_hv:
        ev.append(f"clock source {' '.join(clocks)} offers a {clock_hv} paravirtual clock")
        if fp.hypervisor == "none":
            fp.hypervisor = clock_hv
    virtio = [
        bus
        for bus in sysfs.listdir("/sys/bus/pci/devices")
        if sysfs.read_text(f"/sys/bus/pci/devices/{bus}/vendor") == "0x1af4"
    ]
    platform_devs = sysfs.listdir("/sys/bus/platform/devices")
    mmio = [d for d in platform_devs if "virtio" in d.lower()]
    if virtio:
        ev.append(f"{len(virtio)} virtio PCI device(s) (vendor 0x1af4)")
    if fp.hypervisor == "none" and not flag:
        vendor = " ".join(dmi.get(k, "") for k in ("sys_vendor", "product_name")).strip()
        ev.append("no 'hypervisor' flag in /proc/cpuinfo" + (f"; DMI: {vendor}" if vendor else ""))
    if fp.hypervisor == "none" and flag:
        fp.hypervisor = "kvm" if (virtio or mmio) else "unknown"
    if fp.hypervisor == "kvm" and not dmi:
        # Minimal KVM VMMs (Firecracker, cloud-hypervisor) expose no SMBIOS/DMI.
        vmgenid = [d for d in platform_devs if d.startswith("AMZNC10C")]
        if mmio or vmgenid:
            fp.vmm = "firecracker"
            what = "virtio-mmio devices" if mmio else "ACPI AMZNC10C (VM generation id)"
            ev.append(f"no DMI tables and {what}: a minimal KVM VMM, likely Firecracker")


def _cloud(dmi: dict[str, str], fp: Fingerprint) -> None:
    if dmi.get("chassis_asset_tag") == AZURE_ASSET_TAG:
        fp.cloud = "azure"
        fp.evidence.append(f"DMI chassis_asset_tag {AZURE_ASSET_TAG} is Azure's")
        return
    identity = " ".join(dmi.values()).lower()
    for needle, name in DMI_CLOUDS:
        if needle in identity:
            fp.cloud = name
            fp.evidence.append(f"DMI names {needle!r}: cloud {name}")
            break
    product = dmi.get("product_name", "").lower()
    if fp.cloud == "aws" and product.endswith(".metal"):
        fp.hypervisor = "none"
        fp.evidence.append(f"DMI product_name {product} is an EC2 bare-metal instance")


def _container(sysfs: Sysfs, env: Mapping[str, str], fp: Fingerprint) -> None:
    ev = fp.evidence
    cgroup = sysfs.read_text("/proc/1/cgroup") or ""
    run_container = sysfs.read_text("/run/systemd/container")
    if env.get("KUBERNETES_SERVICE_HOST") or "kubepods" in cgroup:
        fp.container = "kubernetes"
        ev.append("KUBERNETES_SERVICE_HOST set or kubepods in /proc/1/cgroup")
    elif sysfs.exists("/run/.containerenv") or "libpod" in cgroup:
        fp.container = "podman"
        ev.append("/run/.containerenv exists (podman)")
    elif sysfs.exists("/.dockerenv") or "docker" in cgroup:
        fp.container = "docker"
        ev.append("/.dockerenv exists (docker)")
    elif "lxc" in cgroup or run_container == "lxc":
        fp.container = "lxc"
        ev.append("lxc in /proc/1/cgroup or /run/systemd/container")
    elif run_container:
        fp.container = run_container
        ev.append(f"/run/systemd/container = {run_container}")
    if fp.hypervisor == "gvisor" and not fp.container:
        fp.container = "gvisor"
    mountinfo = sysfs.read_text("/proc/self/mountinfo") or ""
    root = re.search(r"^\S+ \S+ \S+ \S+ / .* - (\S+) ", mountinfo, re.MULTILINE)
    if root and root.group(1) == "overlay":
        ev.append("root filesystem is overlay (container image)")
        if not fp.container:
            fp.container = "unknown"


def _gpu_mode(topo: NodeTopology, fp: Fingerprint) -> None:
    if not topo.gpus:
        fp.gpu_mode = "none"
        return
    modes = {g.virt_mode for g in topo.gpus}
    if any(g.mig_enabled for g in topo.gpus):
        fp.gpu_mode = "mig"
        migs = ",".join(str(g.index) for g in topo.gpus if g.mig_enabled)
        fp.evidence.append(f"NVML: MIG mode enabled on GPU {migs}")
    elif "vgpu" in modes:
        fp.gpu_mode = "vgpu"
        fp.evidence.append("NVML virtualization mode VGPU (a vGPU guest)")
    elif "passthrough" in modes:
        fp.gpu_mode = "passthrough"
        fp.evidence.append("NVML virtualization mode PASSTHROUGH")
    elif "host-vgpu" in modes or "host-vsga" in modes:
        fp.gpu_mode = "host-vgpu"
        fp.evidence.append("NVML virtualization mode HOST_VGPU (a vGPU hypervisor host)")
    elif modes == {"none"}:
        fp.gpu_mode = "bare"
        fp.evidence.append("NVML virtualization mode NONE")
    elif fp.hypervisor != "none":
        fp.gpu_mode = "passthrough"
        fp.evidence.append("GPU on a VM's PCI bus, NVML mode unknown: passthrough assumed")
    else:
        fp.gpu_mode = "bare"


def _nic_mode(topo: NodeTopology, fp: Fingerprint) -> None:
    physical = [n for n in topo.nics if n.bus_id]
    vfs = [n.name for n in physical if n.sriov_vf]
    if vfs:
        fp.nic_mode = "sriov-vf"
        fp.evidence.append(f"SR-IOV virtual function(s): {', '.join(vfs)}")
    elif physical and all((n.driver or "").startswith("virtio") for n in physical):
        fp.nic_mode = "virtio"
        fp.evidence.append("only virtio network devices")
    elif physical:
        fp.nic_mode = "pf"
    else:
        fp.nic_mode = "none"


def detect(sysfs: Sysfs, topo: NodeTopology, env: Mapping[str, str]) -> Fingerprint:
    """Detect the fingerprint from files (no override applied)."""
    fp = Fingerprint()
    dmi = _dmi(sysfs)
    if not dmi:
        fp.evidence.append("no DMI tables (/sys/class/dmi/id absent)")
    _hypervisor(sysfs, dmi, fp)
    _cloud(dmi, fp)
    _container(sysfs, env, fp)
    _gpu_mode(topo, fp)
    _nic_mode(topo, fp)
    fp.rapl = any(d.startswith("intel-rapl") for d in sysfs.listdir("/sys/class/powercap"))
    return fp


def summary(platform: Mapping[str, Any]) -> str:
    """ "container (docker) on KVM (firecracker), no RAPL"-style one-liner."""
    parts: list[str] = []
    if platform.get("container"):
        parts.append(f"container ({platform['container']}) on")
    hv = str(platform.get("hypervisor") or "none")
    host = "bare metal" if hv == "none" else hv.upper() if hv in ("kvm", "xen") else hv
    if platform.get("vmm"):
        host += f" ({platform['vmm']})"
    if platform.get("cloud"):
        host += f" in {platform['cloud']}"
    parts.append(host)
    text_ = " ".join(parts)
    text_ += ", RAPL" if platform.get("rapl") else ", no RAPL"
    if platform.get("gpu_mode") not in (None, "none"):
        text_ += f", GPU {platform['gpu_mode']}"
    return text_


def _override_tables(
    section: Section, node: str | None, partition: str | None
) -> list[tuple[str, Mapping[str, Any]]]:
    """Matching override tables, lowest precedence first: global, partition, node."""
    values = section.values
    tables: list[tuple[str, Mapping[str, Any]]] = [
        ("[platform]", {k: v for k, v in values.items() if k in OVERRIDABLE})
    ]
    partitions = values.get("partitions", {})
    if (
        partition
        and isinstance(partitions, Mapping)
        and isinstance(partitions.get(partition), Mapping)
    ):
        tables.append((f"[platform.partitions.{partition}]", partitions[partition]))
    nodes = values.get("nodes", {})
    if node and isinstance(nodes, Mapping):
        for pattern, table in nodes.items():
            try:
                hosts = expand_hostlist(pattern)
            except ValueError as exc:
                raise ConfigError(f"[platform.nodes] bad hostlist {pattern!r}: {exc}") from exc
            if node in hosts and isinstance(table, Mapping):
                tables.append((f'[platform.nodes."{pattern}"]', table))
    return tables


def platform_record(
    fp: Fingerprint,
    section: Section | None = None,
    node: str | None = None,
    partition: str | None = None,
) -> dict[str, Any]:
    """The node record's "platform" entry, with the admin override applied."""
    record: dict[str, Any] = fp.to_dict()
    record["class"] = fp.platform_class()
    record["override"] = False
    if section is not None:
        detected = dict(record)
        for where, table in _override_tables(section, node, partition):
            for key, value in table.items():
                if key not in OVERRIDABLE:
                    continue
                if not isinstance(value, str):
                    raise ConfigError(f"{where} {key}: expected a string")
                if key == "class" and value not in PLATFORM_CLASSES:
                    raise ConfigError(
                        f"{where} class = {value!r}: expected one of {', '.join(PLATFORM_CLASSES)}"
                    )
                record[key] = value
                record["override"] = True
                record["evidence"].append(
                    f"override: {where} {key} = {value} (detected: {detected.get(key)})"
                )
    record["summary"] = summary(record)
    return record
