"""GPUs through NVML (slurm_ai.nvml), placed in the PCI tree through sysfs.

NVML gives identity (index, UUID, model, bus id), memory, MIG and
virtualization mode and NVLinks; sysfs gives the NUMA node, local CPUs and PCI
path of the bus id, which is what the affinity plan uses. Without NVML the
GPUs are still found on the PCI bus (vendor 0x10de, display class), numbered in
bus order as NVML and Slurm's AutoDetect=nvml do, with a warning.
"""

from __future__ import annotations

from typing import Any

from slurm_ai.errors import ProbeError
from slurm_ai.nvml import Nvml, NvmlCallError, text
from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.model import Gpu, MigInstance
from slurm_ai.topology.pci import device_locality, device_path, normalize_bus_id, relation

VIRT_MODES = {0: "none", 1: "passthrough", 2: "vgpu", 3: "host-vgpu", 4: "host-vsga"}
NVLINK_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS on Hopper
NVLINK_DEVICE_SWITCH = 2  # NVML_NVLINK_DEVICE_TYPE_SWITCH
NVIDIA_VENDOR = "0x10de"
AMD_VENDOR = "0x1002"
VENDOR_NAMES = {NVIDIA_VENDOR: "nvidia", AMD_VENDOR: "amd"}
# VGA, 3D and (AMD Instinct) display controllers; not audio or other functions.
GPU_CLASSES = ("0x0300", "0x0302", "0x0380")


def _try(nv: Nvml, function: str, *args: Any) -> Any:
    """One optional NVML query: None when unsupported (ProbeError for hangs passes)."""
    try:
        return nv.call(function, *args)
    except NvmlCallError:
        return None


def place_in_pci_tree(gpu: Gpu, sysfs: Sysfs) -> None:
    if gpu.bus_id is None:
        return
    # The raw numa_node (None for -1): the plan derives a node from local_cpus itself.
    gpu.local_cpus, numa = device_locality(sysfs, gpu.bus_id)
    gpu.numa = numa if numa is not None else gpu.numa
    gpu.pci_path = device_path(sysfs, gpu.bus_id)


def _nvlinks(nv: Nvml, handle: Any, gpu: Gpu) -> None:
    for link in range(NVLINK_MAX_LINKS):
        try:
            state = nv.call("nvmlDeviceGetNvLinkState", handle, link)
        except NvmlCallError:
            break  # no more links (or no NVLink at all)
        if not state:
            continue
        gpu.nvlinks += 1
        if _try(nv, "nvmlDeviceGetNvLinkRemoteDeviceType", handle, link) == NVLINK_DEVICE_SWITCH:
            gpu.nvswitch_links += 1
            continue
        remote = _try(nv, "nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
        peer = normalize_bus_id(getattr(remote, "busId", None))
        if peer:
            gpu.nvlink_peers[peer] = gpu.nvlink_peers.get(peer, 0) + 1


def _memory(nv: Nvml, handle: Any) -> int | None:
    info = _try(nv, "nvmlDeviceGetMemoryInfo", handle)
    total = getattr(info, "total", None)
    return int(total) if isinstance(total, int) else None


def _mig(nv: Nvml, handle: Any, gpu: Gpu) -> None:
    mode = _try(nv, "nvmlDeviceGetMigMode", handle)
    current = mode[0] if isinstance(mode, (list, tuple)) and mode else None
    gpu.mig_enabled = current == 1
    if not gpu.mig_enabled:
        return
    count = _try(nv, "nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    for index in range(int(count)):
        mig = _try(nv, "nvmlDeviceGetMigDeviceHandleByIndex", handle, index)
        if mig is None:
            continue  # an empty slot: fewer instances than the maximum
        uuid = _try(nv, "nvmlDeviceGetUUID", mig)
        name = _try(nv, "nvmlDeviceGetName", mig)
        gpu.mig.append(
            MigInstance(
                index=index,
                uuid=text(uuid) if uuid is not None else None,
                name=text(name) if name is not None else None,
                memory_bytes=_memory(nv, mig),
            )
        )


def read_gpus_nvml(nv: Nvml, sysfs: Sysfs, warnings: list[str]) -> list[Gpu]:
    gpus: list[Gpu] = []
    for index in range(nv.device_count()):
        try:
            handle = nv.call("nvmlDeviceGetHandleByIndex", index)
        except NvmlCallError as exc:
            warnings.append(f"GPU {index}: {exc}")
            continue
        gpu = Gpu(index=index)
        uuid = _try(nv, "nvmlDeviceGetUUID", handle)
        gpu.uuid = text(uuid) if uuid is not None else None
        name = _try(nv, "nvmlDeviceGetName", handle)
        gpu.model = text(name) if name is not None else None
        pci = _try(nv, "nvmlDeviceGetPciInfo", handle)
        gpu.bus_id = normalize_bus_id(getattr(pci, "busId", None))
        gpu.memory_bytes = _memory(nv, handle)
        mode = _try(nv, "nvmlDeviceGetVirtualizationMode", handle)
        gpu.virt_mode = VIRT_MODES.get(mode, "unknown") if isinstance(mode, int) else "unknown"
        numa = _try(nv, "nvmlDeviceGetNumaNodeId", handle)
        gpu.numa = numa if isinstance(numa, int) and numa >= 0 else None
        _mig(nv, handle, gpu)
        _nvlinks(nv, handle, gpu)
        gpu.vendor = "nvidia"
        place_in_pci_tree(gpu, sysfs)
        gpus.append(gpu)
    return gpus


def read_gpus_sysfs(sysfs: Sysfs, vendor: str = NVIDIA_VENDOR) -> list[Gpu]:
    """Display/3D controllers of one vendor on the PCI bus, in bus order."""
    found: list[str] = []
    for bus_id in sysfs.listdir("/sys/bus/pci/devices"):
        base = f"/sys/bus/pci/devices/{bus_id}"
        if sysfs.read_text(f"{base}/vendor") != vendor:
            continue
        klass = sysfs.read_text(f"{base}/class") or ""
        if klass.startswith(GPU_CLASSES):
            found.append(bus_id)
    gpus = []
    for index, bus_id in enumerate(sorted(found)):
        gpu = Gpu(index=index, bus_id=bus_id, vendor=VENDOR_NAMES[vendor])
        place_in_pci_tree(gpu, sysfs)
        gpus.append(gpu)
    return gpus


def read_gpus(
    nv: Nvml | None,
    sysfs: Sysfs,
    warnings: list[str],
    nvml_error: str | None = None,
) -> list[Gpu]:
    if nv is not None:
        try:
            return read_gpus_nvml(nv, sysfs, warnings)
        except ProbeError as exc:
            nvml_error = str(exc)
    gpus = read_gpus_sysfs(sysfs, NVIDIA_VENDOR)
    if gpus:
        warnings.append(
            f"NVML unavailable ({nvml_error or 'not opened'}): {len(gpus)} NVIDIA GPU(s) "
            "found on the PCI bus, numbered in bus order; no UUID, MIG or NVLink data"
        )
        return gpus
    gpus = read_gpus_sysfs(sysfs, AMD_VENDOR)
    if gpus:
        # No ROCm SMI reader: bus order is how rocm-smi and Slurm's AutoDetect=rsmi
        # number the GPUs of one node in the machines we know, not a promise.
        warnings.append(
            f"{len(gpus)} AMD GPU(s) found on the PCI bus, numbered in bus order; "
            "no UUID (slurm-ai has no ROCm SMI reader)"
        )
    return gpus


def gpu_links(gpus: list[Gpu]) -> dict[str, str]:
    """How each pair connects, as nvidia-smi topo -m names it."""
    links: dict[str, str] = {}
    for i, a in enumerate(gpus):
        for b in gpus[i + 1 :]:
            links[f"{a.index},{b.index}"] = link_kind(a, b)
    return links


def link_kind(a: Gpu, b: Gpu) -> str:
    if a.nvswitch_links and b.nvswitch_links:
        return f"NV{min(a.nvswitch_links, b.nvswitch_links)}"
    direct = a.nvlink_peers.get(b.bus_id or "", 0)
    if direct:
        return f"NV{direct}"
    pcie = relation(a.pci_path, b.pci_path)
    if pcie is not None:
        return pcie
    if a.numa is not None and a.numa == b.numa:
        return "NODE"
    return "SYS"
