"""AMD GPUs, HPE Slingshot and AWS EFA NICs: found, and planned by the same locality rules.

No such machine was captured for this project: the sysfs trees below are built from
the published PCI ids (AMD 0x1002 display controllers, HPE Cray Cassini 0x17db with
its `hsn` netdevs, AWS EFA 0x1d0f with its `efa` RDMA driver), the hardware absent here.
"""

from __future__ import annotations

import os
from pathlib import Path

from topology_checks import check_plan

from slurm_ai.topology.hwloc_xml import parse_hwloc_xml
from slurm_ai.topology.plan import JobAllocation, compute_plan
from slurm_ai.topology.probe import probe_node

NODE_CPUS = {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}


def write(root: Path, path: str, text: str) -> None:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text + "\n")


def link(root: Path, path: str, target: str) -> None:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(root / target.lstrip("/"), full.parent), full)


def node(root: Path) -> None:
    write(root, "/sys/devices/system/cpu/online", "0-7")
    for numa, cpus in NODE_CPUS.items():
        write(root, f"/sys/devices/system/node/node{numa}/cpulist", f"{cpus[0]}-{cpus[-1]}")
        write(
            root, f"/sys/devices/system/node/node{numa}/distance", "10 21" if numa == 0 else "21 10"
        )
        for cpu in cpus:
            base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
            write(root, f"{base}/physical_package_id", str(numa))
            write(root, f"{base}/thread_siblings_list", str(cpu))


def device(root: Path, chain: list[str], vendor: str, klass: str, numa: int, driver: str) -> str:
    sysdir = "/sys/devices/" + "/".join(chain)
    write(root, f"{sysdir}/vendor", vendor)
    write(root, f"{sysdir}/class", klass)
    write(root, f"{sysdir}/numa_node", str(numa))
    cpus = NODE_CPUS[numa]
    write(root, f"{sysdir}/local_cpulist", f"{cpus[0]}-{cpus[-1]}")
    link(root, f"/sys/bus/pci/devices/{chain[-1]}", sysdir)
    (root / f"sys/bus/pci/drivers/{driver}").mkdir(parents=True, exist_ok=True)
    link(root, f"{sysdir}/driver", f"/sys/bus/pci/drivers/{driver}")
    return sysdir


def netdev(root: Path, sysdir: str, name: str, kind: int = 1) -> None:
    write(root, f"{sysdir}/net/{name}/operstate", "up")
    write(root, f"{sysdir}/net/{name}/type", str(kind))
    link(root, f"/sys/class/net/{name}", f"{sysdir}/net/{name}")


def amd_slingshot_node(root: Path) -> None:
    """Two AMD Instinct GPUs and two Slingshot NICs, one of each per NUMA node."""
    node(root)
    for numa, bus in ((0, "01"), (1, "81")):
        host = "00" if numa == 0 else "80"
        bridge = [f"pci0000:{host}", f"0000:{host}:01.0"]
        device(root, [*bridge, f"0000:{bus}:00.0"], "0x1002", "0x038000", numa, "amdgpu")
        device(root, [*bridge, f"0000:{bus}:00.1"], "0x1002", "0x040300", numa, "snd")
        nic = device(root, [*bridge, f"0000:{int(bus, 16) + 1:02x}:00.0"], "0x17db", "0x020000",
                     numa, "cxi_ss1")  # fmt: skip
        netdev(root, nic, f"hsn{numa}")
    mgmt = device(root, ["pci0000:00", "0000:00:1c.0"], "0x8086", "0x020000", 0, "igb")
    netdev(root, mgmt, "eno1")


def test_amd_gpus_and_slingshot_nics_from_sysfs(tmp_path: Path) -> None:
    amd_slingshot_node(tmp_path)
    topo = probe_node(tmp_path, with_fingerprint=False).topology
    assert [(g.index, g.bus_id, g.vendor, g.numa) for g in topo.gpus] == [
        (0, "0000:01:00.0", "amd", 0),
        (1, "0000:81:00.0", "amd", 1),
    ]  # the audio functions beside them are not GPUs
    assert any("AMD GPU(s) found on the PCI bus" in w for w in topo.warnings)
    kinds = {n.name: n.kind for n in topo.nics}
    assert kinds == {"hsn0": "slingshot", "hsn1": "slingshot", "eno1": "ethernet"}
    alloc = JobAllocation(cpus=list(range(8)), gpus=[0, 1], ntasks=2)
    plan = compute_plan(topo, alloc)
    check_plan(topo, alloc, plan)
    assert [r.nics for r in plan.ranks] == [["hsn0"], ["hsn1"]]
    assert [r.cpus for r in plan.ranks] == [NODE_CPUS[0], NODE_CPUS[1]]
    rank = plan.ranks[1].env
    assert rank["ROCR_VISIBLE_DEVICES"] == "1,0" and rank["HIP_VISIBLE_DEVICES"] == "0,1"
    assert rank["CUDA_VISIBLE_DEVICES"] == "0,1"  # HIP reads it too: counts inside ROCr's list
    assert "NCCL_IB_HCA" not in rank and "UCX_NET_DEVICES" not in rank  # not verbs devices


def test_efa_is_not_infiniband(tmp_path: Path) -> None:
    node(tmp_path)
    bridge = ["pci0000:00", "0000:00:01.0"]
    device(tmp_path, [*bridge, "0000:01:00.0"], "0x10de", "0x030200", 0, "nvidia")
    efa = device(tmp_path, [*bridge, "0000:02:00.0"], "0x1d0f", "0x020000", 0, "efa")
    base = f"{efa}/infiniband/rdmap2s0"
    write(tmp_path, f"{base}/ports/1/state", "4: ACTIVE")
    write(tmp_path, f"{base}/ports/1/link_layer", "Unspecified")
    link(tmp_path, "/sys/class/infiniband/rdmap2s0", base)
    topo = probe_node(tmp_path, with_fingerprint=False).topology
    (nic,) = topo.nics
    assert (nic.name, nic.kind) == ("rdmap2s0", "efa")
    plan = compute_plan(topo, JobAllocation(cpus=list(range(8)), gpus=[0], ntasks=1))
    assert plan.ranks[0].nics == ["rdmap2s0"]
    assert "NCCL_IB_HCA" not in plan.ranks[0].env
    assert plan.ranks[0].env["CUDA_VISIBLE_DEVICES"] == "0"


SLINGSHOT_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<topology version="2.0">
  <object type="Machine" os_index="0" cpuset="0x3" allowed_cpuset="0x3" nodeset="0x1">
    <object type="Package" os_index="0" cpuset="0x3" nodeset="0x1">
      <object type="NUMANode" os_index="0" cpuset="0x3" nodeset="0x1"/>
      <object type="Core" os_index="0" cpuset="0x3" nodeset="0x1">
        <object type="PU" os_index="0" cpuset="0x1"/>
        <object type="PU" os_index="1" cpuset="0x2"/>
      </object>
      <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="0000:[00-02]">
        <object type="PCIDev" pci_busid="0000:01:00.0" pci_type="0380 [1002:74a1] [1002:74a1] 00">
          <object type="OSDev" name="rsmi0" osdev_type="1">
            <info name="GPUModel" value="AMD Instinct MI300X"/>
            <info name="AMDUUID" value="4fff74a1-0000-1000-80b9-4a4b1ab4f0ba"/>
          </object>
        </object>
        <object type="PCIDev" pci_busid="0000:02:00.0" pci_type="0200 [17db:0501] [17db:0501] 02">
          <object type="OSDev" name="hsn0" osdev_type="2"/>
          <object type="OSDev" name="cxi0" osdev_type="3"/>
        </object>
      </object>
    </object>
  </object>
</topology>
"""


def test_rsmi_gpu_and_slingshot_in_hwloc_xml() -> None:
    topo = parse_hwloc_xml(SLINGSHOT_XML)
    (gpu,) = topo.gpus
    assert (gpu.vendor, gpu.model, gpu.uuid) == (
        "amd",
        "AMD Instinct MI300X",
        "4fff74a1-0000-1000-80b9-4a4b1ab4f0ba",
    )
    (nic,) = topo.nics
    assert (nic.name, nic.netdev, nic.kind) == ("cxi0", "hsn0", "slingshot")
    plan = compute_plan(topo, JobAllocation(cpus=[0, 1], gpus=[0], ntasks=1))
    assert plan.ranks[0].nics == ["cxi0"] and "NCCL_IB_HCA" not in plan.ranks[0].env
    assert plan.ranks[0].env["ROCR_VISIBLE_DEVICES"] == "0"
