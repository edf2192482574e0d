"""The hwloc XML reader: other projects' machines, v1/v2/v3, this host, bad files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hwloc_corpus import ALL_XML, HWLOC_XML, LSTOPO, MPIBIND_MACHINES, V1, needs_lstopo, run_tool

from slurm_ai.sysfs import parse_cpu_list
from slurm_ai.topology.hwloc_xml import (
    HwlocXmlError,
    parse_bitmap,
    parse_hwloc_xml,
    read_hwloc_xml,
)
from slurm_ai.topology.probe import probe_node


def test_bitmaps() -> None:
    assert parse_bitmap("0x00000003") == {0, 1}
    assert parse_bitmap("0x00000100,0x0") == {40}
    assert parse_bitmap("0x1,,0x0") == {64}  # an empty word is zero
    assert parse_bitmap("0xf...f,0x00000001") == {0}  # infinite tail dropped
    assert parse_bitmap("") == set()
    with pytest.raises(HwlocXmlError, match="bad bitmap word"):
        parse_bitmap("0xzz")


def test_lassen_restricted_cpuset_gpus_and_hcas() -> None:
    topo = read_hwloc_xml(MPIBIND_MACHINES["coral-lassen"])
    cpu = topo.cpu
    assert len(cpu.online) == 160 and cpu.sockets == [0, 8]
    assert cpu.allowed == parse_cpu_list("8-87,96-175")  # the PUs hwloc lists are the allowed
    assert cpu.siblings[8] == [8, 9, 10, 11]  # SMT4
    assert cpu.numa_cpus == {0: parse_cpu_list("8-87"), 8: parse_cpu_list("96-175")}
    assert cpu.numa_distance == {0: [10, 40], 8: [40, 10]}
    assert [(g.index, g.bus_id, g.numa, g.vendor) for g in topo.gpus] == [
        (0, "0004:04:00.0", 0, "nvidia"),
        (1, "0004:05:00.0", 0, "nvidia"),
        (2, "0035:03:00.0", 8, "nvidia"),
        (3, "0035:04:00.0", 8, "nvidia"),
    ]
    assert topo.gpus[0].uuid == "GPU-04732404-7fc3-5ae6-cddd-c879b3a379bb"
    assert topo.gpus[0].model == "Tesla V100-SXM2-16GB"
    assert topo.gpus[0].local_cpus == parse_cpu_list("8-87")
    # By PCIe only (the file has no NVLink data): one PLX switch per socket's pair.
    assert topo.gpu_links["0,1"] == "PIX" and topo.gpu_links["0,2"] == "SYS"
    # Host bridge, then bridges, then the device: the same shape as the sysfs path.
    assert topo.gpus[0].pci_path == [
        "pci0004:00", "0004:00:00.0", "0004:01:00.0", "0004:02:0a.0", "0004:04:00.0"
    ]  # fmt: skip
    hcas = {n.name: n for n in topo.nics if n.rdma}
    assert sorted(hcas) == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]
    assert hcas["mlx5_0"].netdev == "hsi0" and hcas["mlx5_0"].kind == "infiniband"
    assert hcas["mlx5_0"].state == "ACTIVE" and hcas["mlx5_0"].numa == 0
    assert hcas["mlx5_2"].numa == 8


def test_corona_amd_gpus_by_opencl_and_eight_numa_nodes() -> None:
    topo = read_hwloc_xml(MPIBIND_MACHINES["epyc-corona"])
    assert sorted(topo.cpu.numa_cpus) == list(range(8))
    assert [g.numa for g in topo.gpus] == [1, 2, 5, 7]
    assert {g.vendor for g in topo.gpus} == {"amd"} and topo.gpus[0].model == "Vega 20"
    assert topo.cpu.numa_distance[0] == [10, 16, 16, 16, 32, 32, 32, 32]
    (hca,) = [n for n in topo.nics if n.rdma]
    assert (hca.name, hca.netdev, hca.numa) == ("mlx5_0", "hsi0", 3)


def test_quartz_without_smt() -> None:
    topo = read_hwloc_xml(MPIBIND_MACHINES["cts1-quartz"])
    assert len(topo.cpu.online) == 36 and len(topo.cpu.cores(topo.cpu.online)) == 36
    assert not topo.gpus
    (hfi,) = [n for n in topo.nics if n.rdma]
    assert hfi.name == "hfi1_0" and hfi.numa == 1  # Omni-Path, read as an RDMA NIC


def test_interleaved_numbering_and_roce() -> None:
    topo = read_hwloc_xml(HWLOC_XML["24em64t-2n6c2t-pci"])
    assert topo.cpu.numa_cpus[0] == list(range(0, 24, 2))  # CPUs interleaved over nodes
    assert topo.cpu.siblings[0] == [0, 12]
    (hca,) = [n for n in topo.nics if n.rdma]
    assert (hca.name, hca.netdev, hca.kind) == ("mlx4_0", "eth2", "roce")  # a MAC netdev


@pytest.mark.parametrize(
    ("v1", "v2"),
    [
        ("coral-lassen-v1.xml", MPIBIND_MACHINES["coral-lassen"]),
        ("24em64t-2n6c2t-pci-v1.xml", HWLOC_XML["24em64t-2n6c2t-pci"]),
    ],
)
def test_v1_reads_as_v2(v1: str, v2: Path) -> None:
    old = read_hwloc_xml(V1 / v1)
    assert "<topology>" in (V1 / v1).read_text()[:200]  # really v1: no version attribute
    assert old.to_dict() == read_hwloc_xml(v2).to_dict()


def to_v3(text: str) -> str:
    """The same machine as hwloc 3.0 writes it: the OS device type as a bit mask."""
    bits = {"0": 1, "1": 4, "2": 16, "3": 32, "4": 64, "5": 8}
    text = text.replace('<topology version="2.0">', '<topology version="3.0">')
    return re.sub(r'osdev_type="(\d)"', lambda m: f'osdev_type="{bits[m.group(1)]}"', text)


@pytest.mark.parametrize("name", sorted(ALL_XML))
def test_v3_osdev_bits_read_as_v2(name: str) -> None:
    text = ALL_XML[name].read_text()
    v3 = parse_hwloc_xml(to_v3(text).encode(), "v3")
    assert v3.to_dict() == read_hwloc_xml(ALL_XML[name]).to_dict()


def test_v3_bits_are_not_v2_numbers() -> None:
    # osdev_type 4 is a GPU in v3 and a DMA engine in v2: the version decides.
    text = MPIBIND_MACHINES["coral-lassen"].read_text()
    v3 = to_v3(text).replace('name="cuda0" subtype="CUDA" osdev_type="8"', 'name="cuda0" x="1"')
    assert len(parse_hwloc_xml(v3.encode()).gpus) == 4  # nvml0 (4 = GPU) still names GPU 0
    as_v2 = v3.replace('version="3.0"', 'version="2.0"')
    assert len(parse_hwloc_xml(as_v2.encode()).gpus) == 0  # 4 read as v2 = DMA: no GPU


BAD = {
    "entity": (
        b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><topology>&a;</topology>',
        "entities",
    ),
    "internal subset": (b'<?xml version="1.0"?><!DOCTYPE t [ ]><topology/>', "internal subset"),
    "external entity": (
        b'<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]><topology>&x;</topology>',
        "entities",
    ),
    "undefined entity": (b"<topology>&x;</topology>", "not well-formed"),
    "truncated": (b'<topology version="2.0"><object type="Machine">', "not well-formed"),
    "empty": (b"", "not well-formed"),
    "not hwloc": (b"<html><body/></html>", "not an hwloc topology"),
    "version": (b'<topology version="9.0"><object type="Machine"/></topology>', "not supported"),
    "no machine": (b'<topology version="2.0"></topology>', "one top object"),
    "no pu": (b'<topology version="2.0"><object type="Machine"/></topology>', "no PU"),
    "bad index": (
        b'<topology version="2.0"><object type="Machine"><object type="PU" os_index="x"/>'
        b"</object></topology>",
        "not a number",
    ),
    "bad cpuset": (
        b'<topology version="2.0"><object type="Machine" allowed_cpuset="0xqq">'
        b'<object type="PU" os_index="0"/></object></topology>',
        "bad bitmap",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_with_a_reason(case: str) -> None:
    data, reason = BAD[case]
    with pytest.raises(HwlocXmlError, match=reason):
        parse_hwloc_xml(data, "bad.xml")


def test_missing_and_oversized_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HwlocXmlError, match="cannot read"):
        read_hwloc_xml(tmp_path / "absent.xml")
    import slurm_ai.topology.hwloc_xml as reader

    monkeypatch.setattr(reader, "MAX_BYTES", 1000)
    with pytest.raises(HwlocXmlError, match="over the"):
        read_hwloc_xml(MPIBIND_MACHINES["coral-lassen"])


@needs_lstopo
def test_this_host_lstopo_agrees_with_the_sysfs_probe(tmp_path: Path) -> None:
    """Checks that hold on any host: the two readings of one machine agree."""
    assert LSTOPO is not None
    xml = tmp_path / "host.xml"
    run_tool([LSTOPO, "--whole-system", "--of", "xml", "-f", str(xml)])
    ours = read_hwloc_xml(xml)
    probed = probe_node("/", with_gpus=False, with_fingerprint=False).topology
    a, b = ours.cpu, probed.cpu
    assert a.online == b.online
    assert a.package == b.package
    assert a.siblings == b.siblings
    assert {n: c for n, c in a.numa_cpus.items() if c} == {
        n: c for n, c in b.numa_cpus.items() if c
    }
    if len(b.numa_distance) > 1:
        assert a.numa_distance == b.numa_distance
    # The cgroup cpuset hwloc reports holds this process's affinity.
    assert set(os.sched_getaffinity(0)) <= set(a.allowed) <= set(a.online)
    # Every PCI network function the kernel shows is in hwloc's tree, at the same place.
    by_bus = {n.bus_id: n for n in ours.nics}
    for nic in probed.nics:
        if nic.bus_id is None:
            continue
        assert nic.bus_id in by_bus, f"{nic.name} ({nic.bus_id}) not in lstopo's XML"
        assert by_bus[nic.bus_id].pci_path == nic.pci_path
        if nic.numa is not None:
            assert by_bus[nic.bus_id].numa == nic.numa
