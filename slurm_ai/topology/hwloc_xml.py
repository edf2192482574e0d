"""Read an hwloc XML topology (`lstopo --of xml`, format v1, v2 or v3) into `NodeTopology`.

Our own reader of hwloc's published format, so an admin can ask what slurm-ai would
do on a node from its lstopo file alone (`slurm-ai probe|plan --topology FILE.xml`):

- CPUs: every PU object (its OS index), its Core (SMT siblings), its Package
  (`Socket` in old v1 files); `allowed_cpuset` of the root (a restricted cpuset).
- NUMA nodes: their `cpuset` (memory children in v2, tree levels in v1), SLIT
  latencies from `distances2` (v2/v3) or `distances` (v1).
- PCI devices: bus id, the chain of bridges above them (named as sysfs names it, so
  `pci.hops` works on both), and their locality: the nearest non-I/O ancestor's
  cpuset and nodeset (hwloc attaches a device there).
- GPUs: PCI devices with a compute OS device: `nvml*`/`cuda*` (NVIDIA), `rsmi*`
  (AMD), `opencl*d*` of type GPU, `ze*` (Intel); vendor, model, UUID; GPU pairs named
  by their PCIe relation (the file has no NVLink data).
- NICs: PCI functions with an OpenFabrics (RDMA) and/or network OS device, one
  `Nic` each as the sysfs probe builds them; Slingshot (Cray Cassini, `cxi*`/`hsn*`)
  and AWS EFA are told apart by name and PCI vendor.

The OS device type is a number in v1/v2 and a bit mask in v3 (hwloc 3.0); both are
decoded. Admins may pass files they did not write: a document type with an
internal subset or any entity declaration is refused before parsing (no entity
expansion, no external fetch), the size is capped, and every fault is a
`HwlocXmlError` with the file and the reason, never a traceback.

Not imported on the Prolog path: only the CLI, tests and benchmarks load it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from slurm_ai.errors import SlurmAIError
from slurm_ai.topology.gpus import gpu_links
from slurm_ai.topology.model import CpuTopology, Gpu, Nic, NodeTopology

MAX_BYTES = 64 << 20  # lstopo files of the largest nodes are a few MB

# v1/v2 OS device type numbers and v3 bits (hwloc 3.0 made the type a mask).
OSDEV_V2 = {0: "storage", 1: "gpu", 2: "network", 3: "openfabrics", 4: "dma", 5: "coproc"}
OSDEV_V3 = {
    1 << 0: "storage",
    1 << 1: "memory",
    1 << 2: "gpu",
    1 << 3: "coproc",
    1 << 4: "network",
    1 << 5: "openfabrics",
    1 << 6: "dma",
}
IO_TYPES = frozenset({"Bridge", "PCIDev", "OSDev", "Misc"})
PACKAGE_TYPES = frozenset({"Package", "Socket"})
# Compute OS devices, by the name hwloc's backends give them; DRM nodes (card0,
# renderD128) are GPU-typed too but also exist for a BMC's VGA chip: not compute.
GPU_NAME = re.compile(r"^(nvml|rsmi|cuda|opencl\d+d|ze)(\d+)$")
GPU_NAME_RANK = {"nvml": 0, "rsmi": 1, "cuda": 2, "ze": 3}  # which numbering wins
PCI_VENDORS = {"10de": "nvidia", "1002": "amd", "8086": "intel"}
CRAY_VENDOR = "17db"  # HPE Cray Cassini (Slingshot 11)
AWS_VENDOR = "1d0f"
IB_PORT_STATES = {"1": "DOWN", "2": "INIT", "3": "ARMED", "4": "ACTIVE", "5": "ACTIVE_DEFER"}
HEX_WORD = re.compile(r"^0x[0-9a-fA-F]{1,8}$")


class HwlocXmlError(SlurmAIError):
    """The file is not an hwloc topology this reader accepts (the message says why)."""


def parse_bitmap(text: str | None) -> set[int]:
    """hwloc's bitmap text ("0x0000ffff,,0xffffff00": 32-bit words, most significant
    first, empty words zero) -> set of indices. An infinite tail ("0xf...f,") is dropped."""
    if not text:
        return set()
    words = text.strip().split(",")
    if words and words[0].lower() == "0xf...f":
        words = words[1:]
    result: set[int] = set()
    for position, word in enumerate(reversed(words)):
        if not word:
            continue
        if not HEX_WORD.match(word):
            raise HwlocXmlError(f"bad bitmap word {word!r} in {text[:60]!r}")
        value = int(word, 16)
        base = 32 * position
        while value:
            low = value & -value
            result.add(base + low.bit_length() - 1)
            value ^= low
    return result


def _refuse_declarations(data: bytes, source: str) -> None:
    """defusedxml's rule, without the dependency: no entities, no internal DTD subset."""
    if b"<!ENTITY" in data:
        raise HwlocXmlError(f"{source}: refused: the file declares XML entities")
    start = data.find(b"<!DOCTYPE")
    if start >= 0:
        end = data.find(b">", start)
        if end < 0 or b"[" in data[start:end]:
            raise HwlocXmlError(f"{source}: refused: a document type with an internal subset")


def _osdev_types(value: str | None, major: int) -> set[str]:
    if value is None or not value.strip().isdigit():
        return set()
    number = int(value)
    if major >= 3:
        return {name for bit, name in OSDEV_V3.items() if number & bit}
    return {OSDEV_V2[number]} if number in OSDEV_V2 else set()


def _infos(elem: ET.Element) -> dict[str, str]:
    return {i.get("name", ""): i.get("value", "") for i in elem.findall("info")}


def _int(value: str | None, what: str, source: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise HwlocXmlError(f"{source}: {what} is not a number: {value!r}") from None


@dataclass
class _Place:
    """Where a PCI device sits: the bridges above it and its non-I/O ancestor's sets."""

    path: list[str] = field(default_factory=list)
    cpus: set[int] = field(default_factory=set)
    nodes: set[int] = field(default_factory=set)


@dataclass
class _State:
    source: str
    major: int
    pu_core: dict[int, int] = field(default_factory=dict)  # PU -> core key
    pu_package: dict[int, int] = field(default_factory=dict)
    numa: dict[int, set[int]] = field(default_factory=dict)  # node -> cpuset
    numa_order: list[int] = field(default_factory=list)  # document (logical) order
    numa_gp: dict[str, int] = field(default_factory=dict)  # gp_index -> os_index
    pci: list[tuple[ET.Element, _Place]] = field(default_factory=list)
    v1_distances: list[ET.Element] = field(default_factory=list)


def _host_bridge_name(elem: ET.Element) -> str | None:
    """A host bridge's root bus as sysfs names it ("pci0000:00") from bridge_pci."""
    match = re.match(r"^([0-9a-fA-F]{4,8}):\[([0-9a-fA-F]{2})-", elem.get("bridge_pci", ""))
    return f"pci{match.group(1).lower()}:{match.group(2).lower()}" if match else None


def _walk(root: ET.Element, state: _State) -> None:
    # (element, nearest non-I/O ancestor's element, PCI path, package os index, core key)
    stack: list[tuple[ET.Element, ET.Element, list[str], int | None, int | None]] = [
        (root, root, [], None, None)
    ]
    core_keys = 0
    while stack:
        elem, anchor, path, package, core = stack.pop()
        kind = elem.get("type", "")
        if kind in PACKAGE_TYPES:
            package = _int(
                elem.get("os_index", str(len(set(state.pu_package.values())))),
                "Package os_index",
                state.source,
            )
        elif kind == "Core":
            core_keys += 1
            core = core_keys
        elif kind == "PU":
            pu = _int(elem.get("os_index"), "PU os_index", state.source)
            if core is None:  # no Core level (some VMs, v1 files): a PU is its own core
                core_keys += 1
                core = core_keys
            state.pu_core[pu] = core
            state.pu_package[pu] = package if package is not None else 0
        elif kind == "NUMANode":
            node = _int(elem.get("os_index"), "NUMANode os_index", state.source)
            state.numa[node] = parse_bitmap(elem.get("cpuset"))
            state.numa_order.append(node)
            if elem.get("gp_index"):
                state.numa_gp[elem.get("gp_index", "")] = node
        if kind == "Bridge":
            name = elem.get("pci_busid") or _host_bridge_name(elem)
            path = [*path, name.lower()] if name else path
        elif kind == "PCIDev":
            busid = (elem.get("pci_busid") or "").lower()
            place = _Place(
                path=[*path, busid],
                cpus=parse_bitmap(anchor.get("cpuset")),
                nodes=parse_bitmap(anchor.get("nodeset")),
            )
            state.pci.append((elem, place))
            path = place.path
        elif kind not in IO_TYPES:
            anchor = elem
        state.v1_distances.extend(elem.findall("distances"))
        for child in reversed(elem.findall("object")):
            stack.append((child, anchor, path, package, core))


def _distances(tree: ET.Element, state: _State, nodes: list[int]) -> dict[int, list[int]]:
    """NUMA latencies, each row ordered by sorted node id (as the sysfs probe stores them)."""
    matrix: dict[tuple[int, int], int] = {}
    for dist in tree.iter("distances2"):
        if dist.get("type") != "NUMANode":
            continue
        kind = int(dist.get("kind", "0") or 0)
        if dist.get("name") not in (None, "NUMALatency") or not kind & 4:
            continue  # not latencies (bandwidth, or a user's own matrix)
        ids = " ".join(i.text or "" for i in dist.findall("indexes")).split()
        values = " ".join(v.text or "" for v in dist.findall("u64values")).split()
        if dist.get("indexing") == "gp":
            ids = [str(state.numa_gp.get(i, -1)) for i in ids]
        count = len(ids)
        if count * count != len(values):
            raise HwlocXmlError(f"{state.source}: NUMA distance matrix of the wrong size")
        for a in range(count):
            for b in range(count):
                matrix[(int(ids[a]), int(ids[b]))] = _int(
                    values[a * count + b], "distance", state.source
                )
        break
    if not matrix and state.v1_distances:
        dist = state.v1_distances[0]
        count = _int(dist.get("nbobjs"), "nbobjs", state.source)
        try:
            base = float(dist.get("latency_base", "1") or 1)
        except ValueError:
            raise HwlocXmlError(f"{state.source}: latency_base is not a number") from None
        try:
            latencies = [float(v.get("value", "0")) for v in dist.findall("latency")]
        except ValueError:
            raise HwlocXmlError(f"{state.source}: a v1 distance is not a number") from None
        order = state.numa_order
        if count == len(order) and len(latencies) == count * count:
            for a in range(count):
                for b in range(count):
                    matrix[(order[a], order[b])] = round(latencies[a * count + b] * base)
    if not all((a, b) in matrix for a in nodes for b in nodes):
        return {}
    return {a: [matrix[(a, b)] for b in nodes] for a in nodes}


def _pci_vendor(elem: ET.Element) -> str:
    match = re.search(r"\[([0-9a-fA-F]{4}):", elem.get("pci_type", ""))
    return match.group(1).lower() if match else ""


def _place_numa(place: _Place, numa: dict[int, set[int]]) -> int | None:
    nodes = place.nodes & set(numa)
    if len(nodes) == 1:
        return next(iter(nodes))
    if not nodes:
        # No nodeset (old files): the node whose CPUs are exactly the locality's.
        exact = [n for n, cpus in numa.items() if cpus and cpus == place.cpus]
        return exact[0] if len(exact) == 1 else None
    return None


# A GPU's compute OS devices (backend prefix -> its index and infos), and the Gpu.
_FoundGpu = tuple[dict[str, tuple[int, dict[str, str]]], Gpu]


def _gpu_of(elem: ET.Element, place: _Place, state: _State, online: set[int]) -> _FoundGpu | None:
    """(numbering key, Gpu) for a PCI device with a compute OS device, else None."""
    found: dict[str, tuple[int, dict[str, str]]] = {}
    for osdev in elem.findall("object"):
        if osdev.get("type") != "OSDev":
            continue
        types = _osdev_types(osdev.get("osdev_type"), state.major)
        match = GPU_NAME.match(osdev.get("name", ""))
        if not match or not types & {"gpu", "coproc"}:
            continue
        infos = _infos(osdev)
        if match.group(1).startswith("opencl") and infos.get("OpenCLDeviceType", "GPU") != "GPU":
            continue
        prefix = "opencl" if match.group(1).startswith("opencl") else match.group(1)
        found.setdefault(prefix, (int(match.group(2)), infos))
    if not found:
        return None
    infos = {}
    for _, extra in found.values():
        infos.update(extra)
    vendor = PCI_VENDORS.get(_pci_vendor(elem))
    if vendor is None:
        text = infos.get("GPUVendor", "").lower()
        vendor = "amd" if "advanced micro" in text else "nvidia" if "nvidia" in text else None
    gpu = Gpu(
        index=-1,
        uuid=infos.get("NVIDIAUUID") or infos.get("AMDUUID") or None,
        model=infos.get("GPUModel") or _infos(elem).get("PCIDevice") or None,
        bus_id=(elem.get("pci_busid") or "").lower() or None,
        numa=_place_numa(place, state.numa),
        local_cpus=sorted(place.cpus & online),
        pci_path=place.path,
        vendor=vendor,
    )
    return found, gpu


def _number_gpus(found: list[_FoundGpu]) -> list[Gpu]:
    """Slurm's numbering: the index of the backend every GPU has (nvml, then rsmi, ...),
    as AutoDetect=nvml/rsmi count them; else PCI bus order."""
    for prefix in (*GPU_NAME_RANK, "opencl"):
        if found and all(prefix in names for names, _ in found):
            ordered = sorted(found, key=lambda item: (item[0][prefix][0], item[1].bus_id or ""))
            break
    else:
        ordered = sorted(found, key=lambda item: item[1].bus_id or "")
    gpus = [gpu for _, gpu in ordered]
    for index, gpu in enumerate(gpus):
        gpu.index = index
    return gpus


def _nic_of(elem: ET.Element, place: _Place, state: _State) -> Nic | None:
    netdevs: list[tuple[str, dict[str, str]]] = []
    rdma: list[tuple[str, dict[str, str]]] = []
    for osdev in elem.findall("object"):
        if osdev.get("type") != "OSDev":
            continue
        types = _osdev_types(osdev.get("osdev_type"), state.major)
        name = osdev.get("name", "")
        if "openfabrics" in types:
            rdma.append((name, _infos(osdev)))
        elif "network" in types:
            netdevs.append((name, _infos(osdev)))
    if not netdevs and not rdma:
        return None
    vendor = _pci_vendor(elem)
    netdev = netdevs[0][0] if netdevs else None
    address = netdevs[0][1].get("Address", "") if netdevs else ""
    octets = len(address.split(":")) if address else 0
    nic = Nic(
        name=rdma[0][0] if rdma else netdev or "",
        netdev=netdev,
        bus_id=(elem.get("pci_busid") or "").lower() or None,
        pci_path=place.path,
        numa=_place_numa(place, state.numa),
        state="UNKNOWN",  # a netdev's operstate is not in the file
    )
    if rdma:
        name, infos = rdma[0]
        nic.rdma = name
        nic.port = 1
        ports = sorted(int(m.group(1)) for k in infos if (m := re.match(r"^Port(\d+)State$", k)))
        if ports:
            nic.port = ports[0]
            nic.state = IB_PORT_STATES.get(infos[f"Port{ports[0]}State"], "DOWN")
        else:
            nic.state = None
        if octets == 6:
            nic.kind, nic.link_layer = "roce", "Ethernet"
        else:
            nic.kind, nic.link_layer = "infiniband", "InfiniBand"
    elif octets == 20:
        nic.kind, nic.link_layer = "infiniband", "InfiniBand"  # IPoIB without its HCA
    names = " ".join(n for n in (nic.rdma, nic.netdev) if n)
    if vendor == CRAY_VENDOR or re.search(r"\b(cxi|hsn)\d", names):
        nic.kind, nic.link_layer = "slingshot", "Ethernet"
    elif vendor == AWS_VENDOR and (nic.rdma or "").startswith(("efa", "rdmap")):
        nic.kind, nic.link_layer = "efa", None
    return nic


def parse_hwloc_xml(data: bytes, source: str = "<hwloc xml>") -> NodeTopology:
    if len(data) > MAX_BYTES:
        raise HwlocXmlError(f"{source}: {len(data)} bytes, over the {MAX_BYTES >> 20} MiB limit")
    _refuse_declarations(data, source)
    try:
        tree = ET.fromstring(data)
    except ET.ParseError as exc:
        raise HwlocXmlError(f"{source}: not well-formed XML: {exc}") from None
    try:
        return _build(tree, source)
    except (ValueError, KeyError, IndexError) as exc:  # a value our checks did not name
        raise HwlocXmlError(f"{source}: unreadable value: {exc}") from None


def _build(tree: ET.Element, source: str) -> NodeTopology:
    if tree.tag != "topology":
        raise HwlocXmlError(f"{source}: not an hwloc topology (root element <{tree.tag}>)")
    version = tree.get("version", "1.0")
    major = _int(version.split(".", 1)[0], "topology version", source)
    if major not in (1, 2, 3):
        raise HwlocXmlError(f"{source}: hwloc XML version {version} is not supported")
    machines = tree.findall("object")
    if len(machines) != 1:
        raise HwlocXmlError(f"{source}: expected one top object, found {len(machines)}")
    top = machines[0]
    if top.get("type") == "System" or len(top.findall("object[@type='Machine']")) > 1:
        raise HwlocXmlError(f"{source}: several machines in one file: export one node")
    state = _State(source=source, major=major)
    _walk(top, state)
    if not state.pu_core:
        raise HwlocXmlError(f"{source}: no PU objects: not a machine's topology")
    online = set(state.pu_core)
    cpu = CpuTopology(online=sorted(online), package=dict(sorted(state.pu_package.items())))
    by_core: dict[int, list[int]] = {}
    for pu, core in state.pu_core.items():
        by_core.setdefault(core, []).append(pu)
    for members in by_core.values():
        for pu in members:
            cpu.siblings[pu] = sorted(members)
    cpu.siblings = dict(sorted(cpu.siblings.items()))
    warnings: list[str] = []
    if state.numa:
        cpu.numa_cpus = {n: sorted(state.numa[n] & online) for n in sorted(state.numa)}
    else:
        cpu.numa_cpus = {0: sorted(online)}
        warnings.append("no NUMA nodes in the hwloc file; treating the node as one NUMA node")
    cpu.numa_distance = _distances(tree, state, sorted(cpu.numa_cpus))
    if not cpu.numa_distance and len(cpu.numa_cpus) == 1:
        cpu.numa_distance = {next(iter(cpu.numa_cpus)): [10]}
    allowed = top.get("allowed_cpuset")
    if allowed is not None:
        cpu.allowed = sorted(parse_bitmap(allowed) & online)
    found: list[_FoundGpu] = []
    nics: list[Nic] = []
    for elem, place in state.pci:
        gpu = _gpu_of(elem, place, state, online)
        if gpu is not None:
            found.append(gpu)
        nic = _nic_of(elem, place, state)
        if nic is not None:
            nics.append(nic)
    gpus = _number_gpus(found)
    return NodeTopology(cpu=cpu, gpus=gpus, nics=nics, gpu_links=gpu_links(gpus), warnings=warnings)


def read_hwloc_xml(path: str | Path) -> NodeTopology:
    """Read FILE.xml; HwlocXmlError (with the path) for anything it cannot take."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise HwlocXmlError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return parse_hwloc_xml(data, source)
