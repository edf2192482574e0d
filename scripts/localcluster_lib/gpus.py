"""Fake GPUs of the production-shaped nodes: device files Slurm can hand out as GRES.

Each node looks like a small GPU machine: GPUS_PER_NODE character devices with
NVIDIA's major number (195), minors 0.., under <prefix>/dev.  No driver stands
behind them, so opening one gives ENXIO, while a device cgroup that denies it
gives EPERM: under ConstrainDevices=yes a task can tell its own GPU from another
job's.  All nodes of the host share the same files (as identical machines
have the same /dev/nvidiaN); Slurm's device cgroup is per job, so that is enough.
"""

from __future__ import annotations

import os
import stat
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
