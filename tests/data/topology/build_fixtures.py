#!/usr/bin/env python3
"""Write the machine fixtures of tests/data/topology/ (capture format).

Each fixture is what `slurm-ai capture` writes on that machine: the sysfs and
procfs files the probe reads (symlinks kept, PCI devices behind their root
ports and switches), `nvml.json` (a link to tests/data/nvml/topo_<name>.json,
the NVML recording) and `env.json`. The layouts come from public
documentation of those machines; what is taken from where, and what is
reconstructed, is in each fixture's SOURCE file (written from SOURCES below).

Regenerate (idempotent):  python3 tests/data/topology/build_fixtures.py
The live capture of the development machine (this_machine/) is not made
here: it comes from `slurm-ai capture tests/data/topology/this_machine`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NVML_DIR = HERE.parent / "nvml"


def fmt(cpus: list[int]) -> str:
    out, start, prev = [], None, None
    for c in sorted(cpus):
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = c
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


class Tree:
    def __init__(self, name: str) -> None:
        self.root = HERE / name
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)

    def write(self, path: str, text: str) -> None:
        full = self.root / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text if text.endswith("\n") or not text else text + "\n")

    def mkdir(self, path: str) -> None:
        (self.root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def link(self, path: str, target: str) -> None:
        full = self.root / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.is_symlink():
            full.unlink()
        os.symlink(target, full)


def rel(from_dir: str, to: str) -> str:
    return os.path.relpath(to, from_dir)


# ---------------------------------------------------------------- CPUs


def cpus(
    tree: Tree, sockets: int, cores: int, smt: int, nps: int, dist_same: int, dist_other: int
) -> dict[int, list[int]]:
    """Linux numbering: all first threads (socket-major), then the second threads."""
    total = sockets * cores
    numa: dict[int, list[int]] = {}
    for s in range(sockets):
        for c in range(cores):
            core = s * cores + c
            threads = [core + t * total for t in range(smt)]
            node = s * nps + c // (cores // nps)
            numa.setdefault(node, []).extend(threads)
            for cpu in threads:
                base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
                tree.write(f"{base}/physical_package_id", str(s))
                tree.write(f"{base}/thread_siblings_list", fmt(threads))
    tree.write("/sys/devices/system/cpu/online", fmt(list(range(total * smt))))
    nodes = sorted(numa)
    for node in nodes:
        row = []
        for other in nodes:
            if other == node:
                row.append(10)
            elif other // nps == node // nps:
                row.append(dist_same)
            else:
                row.append(dist_other)
        tree.write(f"/sys/devices/system/node/node{node}/cpulist", fmt(numa[node]))
        tree.write(f"/sys/devices/system/node/node{node}/distance", " ".join(map(str, row)))
    return numa


# ---------------------------------------------------------------- PCI


@dataclass
class Dev:
    chain: list[str]  # ["pci0000:15", "0000:15:01.0", ..., "0000:18:00.0"]
    vendor: str
    device: str
    klass: str
    numa: int
    local_cpus: list[int] = field(default_factory=list)
    driver: str | None = None

    @property
    def bdf(self) -> str:
        return self.chain[-1]

    @property
    def sysdir(self) -> str:
        return "/sys/devices/" + "/".join(self.chain)


def pci(tree: Tree, dev: Dev) -> None:
    d = dev.sysdir
    tree.write(f"{d}/vendor", dev.vendor)
    tree.write(f"{d}/device", dev.device)
    tree.write(f"{d}/class", dev.klass)
    tree.write(f"{d}/numa_node", str(dev.numa))
    if dev.local_cpus:
        tree.write(f"{d}/local_cpulist", fmt(dev.local_cpus))
    tree.link(f"/sys/bus/pci/devices/{dev.bdf}", rel("/sys/bus/pci/devices", d))
    if dev.driver:
        tree.mkdir(f"/sys/bus/pci/drivers/{dev.driver}")
        tree.link(f"{d}/driver", rel(d, f"/sys/bus/pci/drivers/{dev.driver}"))


def netdev(
    tree: Tree,
    dev: Dev | None,
    name: str,
    state: str,
    speed: int | None,
    kind: int = 1,
    vmbus: str | None = None,
) -> None:
    base = f"{dev.sysdir}/net/{name}" if dev else f"{vmbus}/net/{name}"
    tree.write(f"{base}/operstate", state)
    tree.write(f"{base}/type", str(kind))
    if speed is not None:
        tree.write(f"{base}/speed", str(speed))
    tree.link(f"/sys/class/net/{name}", rel("/sys/class/net", base))


def ibdev(tree: Tree, dev: Dev, name: str, state: str, rate: str, layer: str) -> None:
    base = f"{dev.sysdir}/infiniband/{name}"
    tree.write(f"{base}/ports/1/state", state)
    tree.write(f"{base}/ports/1/rate", rate)
    tree.write(f"{base}/ports/1/link_layer", layer)
    tree.link(f"{base}/device", "../..")
    tree.link(f"/sys/class/infiniband/{name}", rel("/sys/class/infiniband", base))


def platform_files(
    tree: Tree,
    *,
    dmi: dict[str, str],
    hypervisor: bool,
    clocks: str,
    version: str,
    rapl: int = 0,
    model: str = "",
) -> None:
    for key, value in dmi.items():
        tree.write(f"/sys/devices/virtual/dmi/id/{key}", value)
    if dmi:
        tree.link("/sys/class/dmi/id", "../../devices/virtual/dmi/id")
    flags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush"
    flags += " mmx fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc"
    flags += " hypervisor" if hypervisor else " monitor est tm2"
    tree.write(
        "/proc/cpuinfo",
        f"processor\t: 0\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n",
    )
    tree.write("/proc/version", version)
    tree.write("/sys/devices/system/clocksource/clocksource0/available_clocksource", clocks)
    for i in range(rapl):
        tree.mkdir(f"/sys/devices/virtual/powercap/intel-rapl/intel-rapl:{i}")
        tree.link(
            f"/sys/class/powercap/intel-rapl:{i}",
            f"../../devices/virtual/powercap/intel-rapl/intel-rapl:{i}",
        )
    tree.write("/proc/self/mountinfo", "27 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw\n")
    tree.write("/proc/1/cgroup", "0::/init.scope")
    tree.write("/proc/sys/kernel/random/boot_id", "00000000-0000-4000-8000-000000000000")
    (tree.root / "env.json").write_text("{}\n")


# ---------------------------------------------------------------- NVML


def uuid(machine: int, gpu: int, prefix: str = "GPU") -> str:
    return f"{prefix}-{machine:08x}-{gpu:04x}-4{gpu:03x}-8000-{machine:04x}{gpu:08x}"


def nvml_gpu(
    name: str,
    bus: str,
    mem: int,
    uid: str,
    *,
    virt: int = 0,
    nvswitch: int = 0,
    mig: list[dict] | None = None,
) -> dict:
    data: dict = {
        "nvmlDeviceGetName": name,
        "nvmlDeviceGetUUID": uid,
        "nvmlDeviceGetPciInfo": {"busId": bus.upper().replace("0000:", "00000000:", 1)},
        "nvmlDeviceGetMemoryInfo": {"total": mem, "free": mem, "used": 0},
        "nvmlDeviceGetVirtualizationMode": virt,
        "nvmlDeviceGetMigMode": [1, 1] if mig is not None else [0, 0],
    }
    if virt == 2:
        data["nvmlDeviceGetMigMode"] = {"error": "NotSupported"}
    for link in range(nvswitch):
        data[f"nvmlDeviceGetNvLinkState({link})"] = 1
        data[f"nvmlDeviceGetNvLinkRemoteDeviceType({link})"] = 2
    if nvswitch:
        data[f"nvmlDeviceGetNvLinkState({nvswitch})"] = {"error": "InvalidArgument"}
    else:
        data["nvmlDeviceGetNvLinkState(0)"] = {"error": "NotSupported"}
    if mig is not None:
        data["mig"] = mig
        data["nvmlDeviceGetMaxMigDeviceCount"] = len(mig)
    return data


def write_nvml(tree: Tree, name: str, source: str, driver: str, devices: list[dict]) -> None:
    recording = {
        "source": source,
        "system": {"nvmlSystemGetDriverVersion": driver},
        "devices": devices,
    }
    path = NVML_DIR / f"topo_{name}.json"
    path.write_text(json.dumps(recording, indent=1, sort_keys=True) + "\n")
    tree.link("/nvml.json", f"../../nvml/topo_{name}.json")


# ---------------------------------------------------------------- machines

NVIDIA, MELLANOX, INTEL, VIRTIO = "0x10de", "0x15b3", "0x8086", "0x1af4"
GPU_CLASS, NET_CLASS, IB_CLASS = "0x030200", "0x020000", "0x020700"


def switch_pair(root: int, gpu_bus: int, nic_bus: int) -> tuple[list[str], list[str]]:
    """A GPU and a NIC behind one PCIe switch under a root port of host bridge `root`."""
    r = f"{root:02x}"
    top = [f"pci0000:{r}", f"0000:{r}:01.0", f"0000:{root + 1:02x}:00.0"]
    gpu = [*top, f"0000:{root + 2:02x}:01.0", f"0000:{gpu_bus:02x}:00.0"]
    nic = [*top, f"0000:{root + 2:02x}:00.0", f"0000:{nic_bus:02x}:00.0"]
    return gpu, nic


def dgx_h100() -> None:
    tree = Tree("dgx_h100")
    numa = cpus(tree, sockets=2, cores=56, smt=2, nps=1, dist_same=10, dist_other=21)
    # (GPU bus, compute HCA bus, mlx5 name, netdev), NUMA 0 for the first four.
    pairs = [
        (0x1B, 0x18, "mlx5_0", "ibp24s0"),
        (0x43, 0x40, "mlx5_3", "ibp64s0"),
        (0x52, 0x4F, "mlx5_4", "ibp79s0"),
        (0x61, 0x5E, "mlx5_5", "ibp94s0"),
        (0x9D, 0x9A, "mlx5_6", "ibp154s0"),
        (0xC3, 0xC0, "mlx5_9", "ibp192s0"),
        (0xD1, 0xCE, "mlx5_10", "ibp206s0"),
        (0xDF, 0xDC, "mlx5_11", "ibp220s0"),
    ]
    devices = []
    for i, (gbus, nbus, hca, nd) in enumerate(pairs):
        node = 0 if i < 4 else 1
        gchain, nchain = switch_pair(nbus - 3, gbus, nbus)
        gpu = Dev(gchain, NVIDIA, "0x2330", GPU_CLASS, node, numa[node], "nvidia")
        nic = Dev(nchain, MELLANOX, "0x1021", IB_CLASS, node, numa[node], "mlx5_core")
        pci(tree, gpu)
        pci(tree, nic)
        netdev(tree, nic, nd, "up", 400000, kind=32)
        ibdev(tree, nic, hca, "4: ACTIVE", "400 Gb/sec (4X NDR)", "InfiniBand")
        devices.append(
            nvml_gpu("NVIDIA H100 80GB HBM3", gpu.bdf, 85520809984, uuid(0x100, i), nvswitch=18)
        )
    # Storage/in-band ConnectX-7 dual port cards (RoCE) and the 10GbE management port.
    for bus, root, node, names in (
        (0x29, 0x27, 0, ("mlx5_1", "mlx5_2")),
        (0xAA, 0xA8, 1, ("mlx5_7", "mlx5_8")),
    ):
        for fn, hca in enumerate(names):
            chain = [f"pci0000:{root:02x}", f"0000:{root:02x}:01.0", f"0000:{bus:02x}:00.{fn}"]
            dev = Dev(chain, MELLANOX, "0x1021", NET_CLASS, node, numa[node], "mlx5_core")
            pci(tree, dev)
            netdev(tree, dev, f"enp{bus}s0f{fn}np{fn}", "up", 200000)
            ibdev(tree, dev, hca, "4: ACTIVE", "200 Gb/sec (4X HDR)", "Ethernet")
    mgmt = Dev(
        ["pci0000:00", "0000:00:1c.0", "0000:06:00.0"],
        INTEL,
        "0x1563",
        NET_CLASS,
        0,
        numa[0],
        "ixgbe",
    )
    pci(tree, mgmt)
    netdev(tree, mgmt, "eno3", "up", 10000)
    platform_files(
        tree,
        dmi={
            "sys_vendor": "NVIDIA",
            "product_name": "DGXH100",
            "bios_vendor": "American Megatrends International, LLC.",
            "chassis_vendor": "NVIDIA",
        },
        hypervisor=False,
        clocks="tsc hpet acpi_pm",
        version="Linux version 5.15.0-1042-nvidia (buildd@lcy02-amd64-010) #42-Ubuntu SMP",
        rapl=2,
        model="Intel(R) Xeon(R) Platinum 8480C",
    )
    write_nvml(tree, "dgx_h100", SOURCES["dgx_h100"].splitlines()[0], "535.129.03", devices)
    tree.write("/SOURCE", SOURCES["dgx_h100"])


def dgx_a100() -> None:
    tree = Tree("dgx_a100")
    numa = cpus(tree, sockets=2, cores=64, smt=2, nps=4, dist_same=12, dist_other=32)
    # One PCIe switch per GPU pair: GPU, HCA, GPU, HCA (NUMA node of each pair).
    groups = [
        (0x01, 3, [(0x07, 0x0C, "mlx5_0", "ibp12s0"), (0x0F, 0x12, "mlx5_1", "ibp18s0")]),
        (0x41, 1, [(0x47, 0x4B, "mlx5_2", "ibp75s0"), (0x4E, 0x54, "mlx5_3", "ibp84s0")]),
        (0x81, 7, [(0x87, 0x8D, "mlx5_6", "ibp141s0"), (0x90, 0x94, "mlx5_7", "ibp148s0")]),
        (0xB1, 5, [(0xB7, 0xBA, "mlx5_8", "ibp186s0"), (0xBD, 0xCC, "mlx5_9", "ibp204s0")]),
    ]
    devices = []
    index = 0
    for root, node, members in groups:
        r = f"{root:02x}"
        top = [f"pci0000:{r}", f"0000:{r}:01.1", f"0000:{root + 1:02x}:00.0"]
        for k, (gbus, nbus, hca, nd) in enumerate(members):
            sub = [*top, f"0000:{root + 2:02x}:{k * 8:02x}.0", f"0000:{gbus - 2:02x}:00.0"]
            gchain = [*sub, f"0000:{gbus - 1:02x}:00.0", f"0000:{gbus:02x}:00.0"]
            nchain = [*sub, f"0000:{gbus - 1:02x}:08.0", f"0000:{nbus:02x}:00.0"]
            gpu = Dev(gchain, NVIDIA, "0x20b0", GPU_CLASS, node, numa[node], "nvidia")
            nic = Dev(nchain, MELLANOX, "0x101b", IB_CLASS, node, numa[node], "mlx5_core")
            pci(tree, gpu)
            pci(tree, nic)
            netdev(tree, nic, nd, "up", 200000, kind=32)
            ibdev(tree, nic, hca, "4: ACTIVE", "200 Gb/sec (4X HDR)", "InfiniBand")
            devices.append(
                nvml_gpu(
                    "NVIDIA A100-SXM4-40GB", gpu.bdf, 42949672960, uuid(0xA100, index), nvswitch=12
                )
            )
            index += 1
    for fn, hca in enumerate(("mlx5_4", "mlx5_5")):
        chain = ["pci0000:e0", "0000:e0:03.1", f"0000:e1:00.{fn}"]
        dev = Dev(chain, MELLANOX, "0x101b", NET_CLASS, 6, numa[6], "mlx5_core")
        pci(tree, dev)
        netdev(tree, dev, f"enp225s0f{fn}", "up", 200000)
        ibdev(tree, dev, hca, "4: ACTIVE", "200 Gb/sec (4X HDR)", "Ethernet")
    mgmt = Dev(
        ["pci0000:c0", "0000:c0:01.1", "0000:c1:00.0"],
        INTEL,
        "0x1563",
        NET_CLASS,
        4,
        numa[4],
        "ixgbe",
    )
    pci(tree, mgmt)
    netdev(tree, mgmt, "enp193s0f0", "up", 10000)
    platform_files(
        tree,
        dmi={
            "sys_vendor": "NVIDIA",
            "product_name": "DGXA100 920-23687-2530-000",
            "bios_vendor": "American Megatrends Inc.",
        },
        hypervisor=False,
        clocks="tsc hpet acpi_pm",
        version="Linux version 5.4.0-150-generic (buildd@bos03-amd64-012) #167-Ubuntu SMP",
        model="AMD EPYC 7742 64-Core Processor",
    )
    write_nvml(tree, "dgx_a100", SOURCES["dgx_a100"].splitlines()[0], "535.104.12", devices)
    tree.write("/SOURCE", SOURCES["dgx_a100"])


def kvm_passthrough() -> None:
    tree = Tree("kvm_passthrough")
    numa = cpus(tree, sockets=2, cores=8, smt=1, nps=1, dist_same=10, dist_other=20)
    devices = []
    for i, (root, node) in enumerate(((0x40, 0), (0x80, 1))):
        r = f"{root:02x}"
        gchain = [f"pci0000:{r}", f"0000:{r}:00.0", f"0000:{root + 1:02x}:00.0"]
        gpu = Dev(gchain, NVIDIA, "0x2331", GPU_CLASS, node, numa[node], "nvidia")
        pci(tree, gpu)
        devices.append(nvml_gpu("NVIDIA H100 PCIe", gpu.bdf, 85520809984, uuid(0x4B4D, i), virt=1))
    # A ConnectX-7 virtual function passed through next to GPU 0 (no physfn in a guest).
    vf = Dev(
        ["pci0000:40", "0000:40:01.0", "0000:42:00.0"],
        MELLANOX,
        "0x101e",
        IB_CLASS,
        0,
        numa[0],
        "mlx5_core",
    )
    pci(tree, vf)
    ibdev(tree, vf, "mlx5_0", "4: ACTIVE", "400 Gb/sec (4X NDR)", "InfiniBand")
    netdev(tree, vf, "ibp66s0", "up", 400000, kind=32)
    virtio = Dev(
        ["pci0000:00", "0000:00:02.0", "0000:01:00.0"],
        VIRTIO,
        "0x1041",
        NET_CLASS,
        -1,
        [],
        "virtio-pci",
    )
    pci(tree, virtio)
    base = f"{virtio.sysdir}/virtio0/net/enp1s0"
    tree.write(f"{base}/operstate", "up")
    tree.write(f"{base}/type", "1")
    tree.link("/sys/class/net/enp1s0", rel("/sys/class/net", base))
    platform_files(
        tree,
        dmi={
            "sys_vendor": "QEMU",
            "product_name": "Standard PC (Q35 + ICH9, 2009)",
            "bios_vendor": "EFI Development Kit II / OVMF",
        },
        hypervisor=True,
        clocks="kvm-clock tsc acpi_pm",
        version="Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org) #1 SMP",
        model="Intel Xeon Processor (Sapphire Rapids)",
    )
    write_nvml(
        tree, "kvm_passthrough", SOURCES["kvm_passthrough"].splitlines()[0], "550.54.15", devices
    )
    tree.write("/SOURCE", SOURCES["kvm_passthrough"])


def azure_vgpu() -> None:
    tree = Tree("azure_vgpu")
    numa = cpus(tree, sockets=1, cores=12, smt=1, nps=1, dist_same=10, dist_other=10)
    vmbus = "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00"
    gchain = ["pci0002:00", "0002:00:00.0"]
    vmbus_gpu = f"{vmbus}/47505500-0001-0000-3130-444531303244"

    # hv_pci puts each device under its own synthetic host bridge below VMBus.
    d = f"{vmbus_gpu}/{'/'.join(gchain)}"
    for key, value in (
        ("vendor", NVIDIA),
        ("device", "0x2236"),
        ("class", GPU_CLASS),
        ("numa_node", "0"),
        ("local_cpulist", fmt(numa[0])),
    ):
        tree.write(f"{d}/{key}", value)
    tree.link("/sys/bus/pci/devices/0002:00:00.0", rel("/sys/bus/pci/devices", d))
    vf_dir = f"{vmbus}/00224840-0000-0000-0000-0000b3ad7870/pci7870:00/7870:00:02.0"
    for key, value in (
        ("vendor", MELLANOX),
        ("device", "0x1016"),
        ("class", NET_CLASS),
        ("numa_node", "0"),
    ):
        tree.write(f"{vf_dir}/{key}", value)
    tree.mkdir("/sys/bus/pci/drivers/mlx5_core")
    tree.link(f"{vf_dir}/driver", rel(vf_dir, "/sys/bus/pci/drivers/mlx5_core"))
    tree.link("/sys/bus/pci/devices/7870:00:02.0", rel("/sys/bus/pci/devices", vf_dir))
    base = f"{vf_dir}/net/enP30832s1"
    tree.write(f"{base}/operstate", "up")
    tree.write(f"{base}/type", "1")
    tree.write(f"{base}/speed", "40000")
    tree.link("/sys/class/net/enP30832s1", rel("/sys/class/net", base))
    eth0 = f"{vmbus}/000d3a6e-9c5b-000d-3a6e-9c5b000d3a6e/net/eth0"
    tree.write(f"{eth0}/operstate", "up")
    tree.write(f"{eth0}/type", "1")
    tree.write(f"{eth0}/speed", "40000")
    tree.link("/sys/class/net/eth0", rel("/sys/class/net", eth0))
    platform_files(
        tree,
        dmi={
            "sys_vendor": "Microsoft Corporation",
            "product_name": "Virtual Machine",
            "bios_vendor": "Microsoft Corporation",
            "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77",
        },
        hypervisor=True,
        clocks="hyperv_clocksource_tsc_page acpi_pm",
        version="Linux version 6.5.0-1025-azure (buildd@lcy02-amd64-049) #26~22.04.1-Ubuntu SMP",
        model="AMD EPYC 74F3V (Milan) 24-Core Processor",
    )
    devices = [nvml_gpu("NVIDIA A10-8Q", "0002:00:00.0", 8589934592, uuid(0xA10, 0), virt=2)]
    write_nvml(tree, "azure_vgpu", SOURCES["azure_vgpu"].splitlines()[0], "535.161.08", devices)
    tree.write("/SOURCE", SOURCES["azure_vgpu"])


def mig_a100() -> None:
    tree = Tree("mig_a100")
    numa = cpus(tree, sockets=2, cores=32, smt=2, nps=1, dist_same=10, dist_other=20)
    profiles = [
        [
            ("3g.40gb", 42949672960),
            ("2g.20gb", 21474836480),
            ("1g.10gb", 10737418240),
            ("1g.10gb", 10737418240),
        ],
        [("7g.80gb", 85899345920)],
    ]
    devices = []
    for i, (root, bus, node) in enumerate(((0x16, 0x17, 0), (0xC9, 0xCA, 1))):
        chain = [f"pci0000:{root:02x}", f"0000:{root:02x}:02.0", f"0000:{bus:02x}:00.0"]
        gpu = Dev(chain, NVIDIA, "0x20b5", GPU_CLASS, node, numa[node], "nvidia")
        pci(tree, gpu)
        migs = [
            {
                "nvmlDeviceGetName": f"NVIDIA A100 80GB PCIe MIG {p}",
                "nvmlDeviceGetUUID": uuid(0x3160 + i, k, "MIG"),
                "nvmlDeviceGetMemoryInfo": {"total": mem},
            }
            for k, (p, mem) in enumerate(profiles[i])
        ]
        devices.append(
            nvml_gpu("NVIDIA A100 80GB PCIe", gpu.bdf, 85899345920, uuid(0x3160, i), mig=migs)
        )
    for node, root, bus, hca in ((0, 0x30, 0x31, "mlx5_0"), (1, 0xB0, 0xB1, "mlx5_1")):
        chain = [f"pci0000:{root:02x}", f"0000:{root:02x}:02.0", f"0000:{bus:02x}:00.0"]
        dev = Dev(chain, MELLANOX, "0x101b", IB_CLASS, node, numa[node], "mlx5_core")
        pci(tree, dev)
        ibdev(tree, dev, hca, "4: ACTIVE", "200 Gb/sec (4X HDR)", "InfiniBand")
        netdev(tree, dev, f"ibp{bus}s0", "up", 200000, kind=32)
    mgmt = Dev(
        ["pci0000:00", "0000:00:1c.0", "0000:04:00.0"],
        INTEL,
        "0x1521",
        NET_CLASS,
        0,
        numa[0],
        "igb",
    )
    pci(tree, mgmt)
    netdev(tree, mgmt, "eno1", "up", 1000)
    platform_files(
        tree,
        dmi={
            "sys_vendor": "Supermicro",
            "product_name": "SYS-420GP-TNR",
            "bios_vendor": "American Megatrends International, LLC.",
        },
        hypervisor=False,
        clocks="tsc hpet acpi_pm",
        version="Linux version 5.15.0-91-generic (buildd@lcy02-amd64-045) #101-Ubuntu SMP",
        rapl=2,
        model="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
    )
    write_nvml(tree, "mig_a100", SOURCES["mig_a100"].splitlines()[0], "535.129.03", devices)
    tree.write("/SOURCE", SOURCES["mig_a100"])


SOURCES = {
    "dgx_h100": """\
NVIDIA DGX H100 layout (2x Xeon Platinum 8480C, 8x H100 SXM5 on NVSwitch, 8 ConnectX-7 compute HCAs).
From public documentation: NVIDIA DGX H100 User Guide (CPU, GPU and network port tables);
NVIDIA DGX BasePOD deployment guide (compute ConnectX-7 PCI buses 18,40,4f,5e,9a,c0,ce,dc);
published `nvidia-smi topo -m` outputs (GPUs 0-3 on NUMA 0, 4-7 on NUMA 1, NV18 between all
pairs; each GPU shares a PCIe switch with one compute HCA, GPU bus = HCA bus + 3: 1b,43,52,61,
9d,c3,d1,df); the usual DGX H100 `ibdev2netdev` naming where the storage cards take mlx5_1/2 and
mlx5_7/8, so compute HCAs are mlx5_0,3,4,5,6,9,10,11 (HCA numbering is NOT GPU order).
Reconstructed, not copied from a machine: the bridge bus numbers between host bridge and
devices, the management port, UUIDs (synthetic), boot id. CPU numbering is the Linux default
(0-55 socket 0, 56-111 socket 1, 112-223 their SMT siblings).
Written by tests/data/topology/build_fixtures.py.
""",
    "dgx_a100": """\
NVIDIA DGX A100 layout (2x AMD EPYC 7742, NPS4: 8 NUMA nodes, 8x A100 SXM4 on NVSwitch).
From public documentation: NVIDIA DGX A100 User Guide and published `nvidia-smi topo -m` of DGX
A100: GPU0/1 on NUMA 3 (CPUs 48-63,176-191), GPU2/3 on NUMA 1, GPU4/5 on NUMA 7, GPU6/7 on
NUMA 5 (GPU NUMA order is NOT index order); GPU buses 07,0f,47,4e,87,90,b7,bd; compute HCAs
ibp12s0, ibp18s0, ibp75s0, ibp84s0, ibp141s0, ibp148s0, ibp186s0, ibp204s0 (mlx5_0-3,6-9), storage
mlx5_4/5 at e1:00.0/1; two GPUs and two HCAs behind each PCIe switch; SLIT distances 10/12/32.
Reconstructed: bridge bus numbers, management port, UUIDs (synthetic), boot id.
Written by tests/data/topology/build_fixtures.py.
""",
    "kvm_passthrough": """\
KVM/QEMU guest (q35, OVMF) with 2x H100 PCIe passed through (vfio-pci), one per guest NUMA node.
Built from the libvirt/QEMU documentation of pxb-pcie expander buses with a numa_node property
(each GPU behind its own expander host bridge 0000:40 / 0000:80), the NVML virtualization mode a
passthrough guest reports (NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH = 1), a ConnectX-7 SR-IOV
virtual function (PCI id 15b3:101e, no physfn link inside a guest) and a virtio-net NIC.
DMI strings are QEMU's defaults. Reconstructed: all bus numbers, UUIDs (synthetic), boot id.
Written by tests/data/topology/build_fixtures.py.
""",
    "azure_vgpu": """\
Azure NV12ads A10 v5 VM (Hyper-V, 12 vCPUs, 1/3 of an A10 as vGPU profile A10-8Q).
From public documentation: Azure NVadsA10 v5 size page (12 vCPUs, 8 GiB GPU memory partition),
Azure's chassis asset tag 7783-7084-3265-9085-8269-3286-77 and Hyper-V DMI strings, hv_pci
placing each passed device under its own PCI domain below VMBus, accelerated networking as a
Mellanox ConnectX-4 Lx virtual function (15b3:1016) beside the synthetic eth0 (no PCI address),
NVML virtualization mode VGPU (2) in a vGPU guest and MIG not supported there.
Reconstructed: VMBus instance GUIDs, PCI domain numbers, UUID (synthetic), boot id.
Written by tests/data/topology/build_fixtures.py.
""",
    "mig_a100": """\
Bare-metal 2-socket Xeon Gold 6338 server (Supermicro SYS-420GP-TNR) with 2x A100 80GB PCIe in MIG mode.
From public documentation: NVIDIA MIG user guide (A100 80GB profiles 1g.10gb, 2g.20gb, 3g.40gb,
7g.80gb; MIG device names and MIG- UUIDs; Slurm's AutoDetect=nvml lists each MIG instance as its
own GPU), Supermicro SYS-420GP-TNR spec (2 sockets, PCIe GPUs per socket). GPU 0 holds
3g.40gb + 2g.20gb + 2x 1g.10gb, GPU 1 one 7g.80gb; one ConnectX-6 HDR HCA per socket.
Reconstructed: bus numbers, UUIDs (synthetic), boot id.
Written by tests/data/topology/build_fixtures.py.
""",
}


if __name__ == "__main__":
    dgx_h100()
    dgx_a100()
    kvm_passthrough()
    azure_vgpu()
    mig_a100()
    print("fixtures written under", HERE)
