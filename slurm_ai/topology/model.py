"""What a node is made of: CPUs, NUMA nodes, GPUs, NICs, and how they connect.

Plain dataclasses with `to_dict`/`from_dict` so a probed node can be cached in
the spool and rebuilt without touching the hardware again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CpuTopology:
    """Online CPUs with their socket, SMT siblings and NUMA node."""

    online: list[int] = field(default_factory=list)
    package: dict[int, int] = field(default_factory=dict)  # cpu -> socket
    siblings: dict[int, list[int]] = field(default_factory=dict)  # cpu -> SMT group
    numa_cpus: dict[int, list[int]] = field(default_factory=dict)  # node -> cpus
    numa_distance: dict[int, list[int]] = field(default_factory=dict)  # node -> row
    # CPUs processes may use (hwloc's allowed_cpuset: a restricted cgroup cpuset); empty when
    # not known (the sysfs probe: the job's cpuset is read per job by alloc.py instead).
    allowed: list[int] = field(default_factory=list)

    def numa_of(self, cpu: int) -> int | None:
        for node, cpus in self.numa_cpus.items():
            if cpu in cpus:
                return node
        return None

    def distance(self, a: int, b: int) -> int:
        """SLIT distance between NUMA nodes (10 = local); 20/unknown as remote."""
        if a == b:
            return 10
        row = self.numa_distance.get(a, [])
        nodes = sorted(self.numa_cpus) or sorted(self.numa_distance)
        if b in nodes and nodes.index(b) < len(row):
            return row[nodes.index(b)]
        return 20

    def cores(self, cpus: list[int] | set[int]) -> list[list[int]]:
        """Group `cpus` into SMT sibling groups (cores), ordered by first CPU."""
        wanted = set(cpus)
        seen: set[int] = set()
        groups: list[list[int]] = []
        for cpu in sorted(wanted):
            if cpu in seen:
                continue
            group = [c for c in self.siblings.get(cpu, [cpu]) if c in wanted] or [cpu]
            if cpu not in group:
                group = [cpu]
            seen.update(group)
            groups.append(sorted(group))
        return groups

    @property
    def sockets(self) -> list[int]:
        return sorted(set(self.package.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "online": self.online,
            "package": {str(k): v for k, v in self.package.items()},
            "siblings": {str(k): v for k, v in self.siblings.items()},
            "numa_cpus": {str(k): v for k, v in self.numa_cpus.items()},
            "numa_distance": {str(k): v for k, v in self.numa_distance.items()},
            "allowed": self.allowed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CpuTopology:
        def ints(table: dict[str, Any]) -> dict[int, Any]:
            return {int(k): v for k, v in table.items()}

        return cls(
            online=list(data.get("online", [])),
            package=ints(data.get("package", {})),
            siblings=ints(data.get("siblings", {})),
            numa_cpus=ints(data.get("numa_cpus", {})),
            numa_distance=ints(data.get("numa_distance", {})),
            allowed=list(data.get("allowed", [])),
        )


@dataclass
class MigInstance:
    index: int
    uuid: str | None = None
    name: str | None = None
    memory_bytes: int | None = None


@dataclass
class Gpu:
    index: int
    uuid: str | None = None
    model: str | None = None
    bus_id: str | None = None  # sysfs form: "0000:1b:00.0"
    numa: int | None = None
    local_cpus: list[int] = field(default_factory=list)
    pci_path: list[str] = field(default_factory=list)  # root bus ... device
    memory_bytes: int | None = None
    virt_mode: str = "unknown"  # none|passthrough|vgpu|host-vgpu|host-vsga|unknown
    mig_enabled: bool = False
    mig: list[MigInstance] = field(default_factory=list)
    nvlinks: int = 0  # active NVLinks
    nvswitch_links: int = 0  # of which go to an NVSwitch
    nvlink_peers: dict[str, int] = field(default_factory=dict)  # peer bus id -> links
    vendor: str | None = None  # nvidia | amd | intel: which runtime variables name it

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gpu:
        values = dict(data)
        values["mig"] = [MigInstance(**m) for m in data.get("mig", [])]
        return cls(**values)


@dataclass
class Nic:
    """One network PCI function: its netdev and/or RDMA device."""

    name: str  # RDMA device when there is one ("mlx5_0"), else the netdev
    netdev: str | None = None
    rdma: str | None = None
    port: int | None = None
    link_layer: str | None = None  # InfiniBand | Ethernet
    kind: str = "ethernet"  # infiniband | roce | ethernet | slingshot | efa
    bus_id: str | None = None
    pci_path: list[str] = field(default_factory=list)
    numa: int | None = None
    state: str | None = None  # up/down (netdev) or ACTIVE/DOWN (RDMA port)
    speed_mbps: int | None = None
    rate: str | None = None  # RDMA port rate text ("400 Gb/sec (4X NDR)")
    driver: str | None = None
    sriov_vf: bool = False
    virtual_function_of: str | None = None

    @property
    def is_rdma(self) -> bool:
        return self.rdma is not None

    @property
    def is_up(self) -> bool:
        return (self.state or "").upper() in ("UP", "ACTIVE", "UNKNOWN")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Nic:
        return cls(**data)


@dataclass
class NodeTopology:
    cpu: CpuTopology
    gpus: list[Gpu] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    gpu_links: dict[str, str] = field(default_factory=dict)  # "0,1" -> NV18|PIX|...
    driver: str | None = None
    nvml_source: str | None = None
    warnings: list[str] = field(default_factory=list)

    def gpu_by_index(self, index: int) -> Gpu | None:
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu.to_dict(),
            "gpus": [asdict(g) for g in self.gpus],
            "nics": [asdict(n) for n in self.nics],
            "gpu_links": self.gpu_links,
            "driver": self.driver,
            "nvml_source": self.nvml_source,
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeTopology:
        return cls(
            cpu=CpuTopology.from_dict(data.get("cpu", {})),
            gpus=[Gpu.from_dict(g) for g in data.get("gpus", [])],
            nics=[Nic.from_dict(n) for n in data.get("nics", [])],
            gpu_links=dict(data.get("gpu_links", {})),
            driver=data.get("driver"),
            nvml_source=data.get("nvml_source"),
            warnings=list(data.get("warnings", [])),
        )


# Platform classes, most specific first in platform_class(); the report groups by them and
# [platform] overrides must name one.
PLATFORM_CLASSES = ("bare-metal", "vm", "vm-passthrough", "vm-vgpu", "mig", "container")
PASSED_THROUGH_NIC_MODES = frozenset({"sriov-vf", "pf"})


@dataclass
class Fingerprint:
    hypervisor: str = "none"
    vmm: str | None = None
    cloud: str | None = None
    container: str | None = None
    gpu_mode: str = "none"
    nic_mode: str = "none"
    rapl: bool = False
    evidence: list[str] = field(default_factory=list)

    def platform_class(self) -> str:
        """The one class of PLATFORM_CLASSES this fingerprint shows (what was seen, no more)."""
        if self.container:
            return "container"
        if self.gpu_mode == "mig":
            return "mig"
        if self.gpu_mode == "vgpu":
            return "vm-vgpu"
        if self.gpu_mode == "passthrough":
            return "vm-passthrough"
        if self.hypervisor != "none":
            # A GPU or a physical NIC (function) on a VM's PCI bus can only be passed through;
            # a VM with neither (virtio only, like a CPU-only KVM guest) is a plain `vm`.
            passed = self.gpu_mode != "none" or self.nic_mode in PASSED_THROUGH_NIC_MODES
            return "vm-passthrough" if passed else "vm"
        return "bare-metal"

    def to_dict(self) -> dict[str, Any]:
        return {
            "hypervisor": self.hypervisor,
            "vmm": self.vmm,
            "cloud": self.cloud,
            "container": self.container,
            "gpu_mode": self.gpu_mode,
            "nic_mode": self.nic_mode,
            "rapl": self.rapl,
            "evidence": list(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
