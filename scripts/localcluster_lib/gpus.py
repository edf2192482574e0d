"""Fake GPUs of the production-shaped nodes: device files Slurm can hand out as GRES.

Each node looks like a small GPU machine: GPUS_PER_NODE character devices with
NVIDIA's major number (195), minors 0.., under <prefix>/dev.  No driver stands
behind them, so opening one gives ENXIO, while a device cgroup that denies it
gives EPERM: under ConstrainDevices=yes a task can tell its own GPU from another
job's.  All nodes of the host share the same files (as identical machines
have the same /dev/nvidiaN); Slurm's device cgroup is per job, so that is enough.

slurm-ai sees the same GPUs through an NVML recording per node
(<prefix>/etc/nvml/<node>.json, `[nvml] recording = <prefix>/etc/nvml/{node}.json`
in slurm-ai's config): an idle H200 as NVML read it on a lent GPU machine, with
its own UUID, minor number = index, and each GPU on a NUMA node of this host
(round robin), so that the plan pins tasks next to it onto real CPUs. Its energy
counter advances with the wall clock at the idle power, so the Prolog and the
Epilog (separate processes) see the energy in between.
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from pathlib import Path

from .common import ClusterError, write_if_changed
from .instance import Instance

NVIDIA_MAJOR = 195
GPUS_PER_NODE = 2


def device_dir(inst: Instance) -> Path:
    return inst.prefix / "dev"


def device_files(inst: Instance) -> list[Path]:
    return [device_dir(inst) / f"nvidia{i}" for i in range(GPUS_PER_NODE)]


def make_devices(inst: Instance) -> None:
    """mknod c 195 N for each fake GPU (kept when already right)."""
    device_dir(inst).mkdir(mode=0o755, exist_ok=True)
    for minor, path in enumerate(device_files(inst)):
        try:
            st = path.lstat()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(NVIDIA_MAJOR, minor):
                continue
            path.unlink()
        except FileNotFoundError:
            pass
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, minor))
            os.chmod(path, 0o666)  # as the driver makes them: the device cgroup decides
        except OSError as err:
            raise ClusterError(
                f"cannot make the fake GPU {path}: mknod(c {NVIDIA_MAJOR} {minor}) failed "
                f"with {os.strerror(err.errno or 0)} (errno {err.errno}); start with --lab "
                "for a cluster without GPUs"
            ) from err


def gres_conf_text(inst: Instance) -> str:
    files = device_files(inst)
    return (
        f"# Written by scripts/localcluster for instance {inst.name!r}: {GPUS_PER_NODE} fake GPUs\n"
        "# per node (character devices 195:N, no driver), handed out by Slurm itself.\n"
        "AutoDetect=off\n"
        f"NodeName={','.join(inst.nodes)} Name=gpu "
        f"File={files[0].parent}/nvidia[0-{len(files) - 1}]\n"
    )


def write_gres_conf(inst: Instance) -> None:
    write_if_changed(inst.etc / "gres.conf", gres_conf_text(inst))


# An idle NVIDIA H200 as NVML read it on the lent GPU machine (tests/data/nvml/
# agent_h200_load.json, its first samples): 80 W, 615 MiB used, clock event reason
# 0x1 (GPU idle), PCIe gen 1 at idle of gen 5 x16, no ECC error.
IDLE_POWER_MW = 80_000
H200_MEMORY_B = 150_754_820_096
H200_IDLE_USED_B = 644_939_776


def recording_dir(inst: Instance) -> Path:
    """Where instance.py's `nvml_recording` points: one file per node."""
    return inst.etc / "nvml"


def host_numa_nodes(root: Path = Path("/sys/devices/system/node")) -> list[int]:
    nodes = sorted(
        int(m.group(1)) for p in root.glob("node*") if (m := re.fullmatch(r"node(\d+)", p.name))
    )
    return nodes or [0]


def fake_gpu(inst: Instance, node: str, index: int, numa: int) -> dict[str, object]:
    gpu_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"slurm-ai-localcluster/{inst.name}/{node}/{index}")
    return {
        "nvmlDeviceGetName": "NVIDIA H200",
        "nvmlDeviceGetUUID": f"GPU-{gpu_uuid}",
        "nvmlDeviceGetMinorNumber": index,
        "nvmlDeviceGetPciInfo": {"busId": f"00000000:{0x18 + 0x20 * index:02X}:00.0"},
        "nvmlDeviceGetNumaNodeId": numa,
        "nvmlDeviceGetMemoryInfo": {"total": H200_MEMORY_B, "used": H200_IDLE_USED_B},
        "nvmlDeviceGetUtilizationRates": {"gpu": 0, "memory": 0},
        "nvmlDeviceGetPowerUsage": IDLE_POWER_MW,
        "nvmlDeviceGetTotalEnergyConsumption": {"per_s": IDLE_POWER_MW},
        "nvmlDeviceGetCurrentClocksEventReasons": 1,
        "nvmlDeviceGetCurrPcieLinkGeneration": 1,
        "nvmlDeviceGetMaxPcieLinkGeneration": 5,
        "nvmlDeviceGetCurrPcieLinkWidth": 16,
        "nvmlDeviceGetMaxPcieLinkWidth": 16,
        "nvmlDeviceGetTotalEccErrors(1,0)": 0,
        "nvmlDeviceGetTotalEccErrors(1,1)": 0,
        "nvmlDeviceGetRemappedRows": [0, 0, 0, 0],
        "nvmlDeviceGetMigMode": {"error": "NotSupported"},
    }


def recording(inst: Instance, node: str) -> dict[str, object]:
    numa = host_numa_nodes()
    return {
        "source": f"scripts/localcluster {inst.name!r} node {node}: {GPUS_PER_NODE} fake GPUs "
        f"(device files {device_dir(inst)}/nvidia*), idle H200 values as read on a lent GPU",
        "system": {"nvmlSystemGetDriverVersion": "580.159.04"},
        "devices": [fake_gpu(inst, node, i, numa[i % len(numa)]) for i in range(GPUS_PER_NODE)],
        "kernel_log": [],  # no XID: the host's own kernel log is not these GPUs'
    }


def write_recordings(inst: Instance) -> None:
    recording_dir(inst).mkdir(mode=0o755, exist_ok=True)
    for node in inst.nodes:
        text = json.dumps(recording(inst, node), indent=1) + "\n"
        write_if_changed(recording_dir(inst) / f"{node}.json", text)
