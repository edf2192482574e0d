"""Which device file is each GPU of this node, in Slurm's numbering: gres.conf's File=.

Slurm's device cgroup (ConstrainDevices=yes) allows a job, step or task the device
files of its GPUs. The SPANK plugin finds the GPUs a task may open by asking for
each file (access(): the device cgroup answers it), since Slurm's own variables
count from 0 inside such a cgroup. The files come from the node's gres.conf
`Name=gpu File=...` lines, in the order Slurm numbers them (lines in order, a
bracket range in ascending order); without File= lines for the node (AutoDetect=nvml
finds the GPUs itself) the NVIDIA default `/dev/nvidia<index>` is used (the driver
numbers minors in PCI bus order, as Slurm's NVML detection orders the GPUs).
"""

from __future__ import annotations

import errno
import functools
import os
import re
from pathlib import Path
from typing import Any

from slurm_ai.slurmenv import expand_hostlist

MAX_BYTES = 1 << 20
_BRACKET = re.compile(r"^(?P<head>[^\[]*)\[(?P<ranges>[0-9,\-]+)\](?P<tail>[^\[\]]*)$")


def gres_conf_path(slurm_conf: str | None) -> Path:
    """gres.conf beside slurm.conf (as slurmd reads it)."""
    conf = slurm_conf or os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    return Path(conf).parent / "gres.conf"


def _expand_files(value: str) -> list[str]:
    """`/dev/nvidia[0-3]` or `/dev/nvidia0,/dev/nvidia1` -> the files, in order."""
    out: list[str] = []
    match = _BRACKET.match(value)
    if match is None:
        if "[" in value or "]" in value:
            raise ValueError(f"File={value}: bad range")
        return [f for f in value.split(",") if f]
    for part in match["ranges"].split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"File={value}: bad range {part!r}")
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        for n in range(int(lo), int(hi or lo) + 1):
            out.append(f"{match['head']}{n:0{width}d}{match['tail']}")
    return out


def gpu_files(text: str, node: str) -> list[str]:
    """The GPU device files gres.conf gives `node`, in Slurm's order. ValueError on a
    line it cannot read."""
    files: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = dict((k.lower(), v) for k, _, v in (w.partition("=") for w in line.split()) if v)
        if fields.get("name") != "gpu" or "file" not in fields:
            continue
        nodes = fields.get("nodename")
        if nodes is not None and node not in expand_hostlist(nodes):
            continue
        files.extend(_expand_files(fields["file"]))
    return files


def device_files(slurm_conf: str | None, node: str, gpus: int) -> tuple[list[str], str]:
    """(files by Slurm's GPU index, where they came from). Never raises: an unreadable
    gres.conf falls back to the NVIDIA default, and says so."""
    path = gres_conf_path(slurm_conf)
    default = [f"/dev/nvidia{i}" for i in range(gpus)]
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_BYTES).decode("utf-8", "replace")
    except FileNotFoundError:
        return default, f"no {path}: /dev/nvidia<index>"
    except OSError as exc:
        return default, f"{path} unreadable ({exc.strerror}): /dev/nvidia<index>"
    try:
        files = gpu_files(text, node)
    except ValueError as exc:
        return default, f"{path}: {exc}: /dev/nvidia<index>"
    if not files:
        return default, f"{path} names no GPU file for {node}: /dev/nvidia<index>"
    return files, str(path)


def step_denies_every_gpu(slurm_conf: str | None, node: str) -> str | None:
    """Why this process may open none of the node's GPUs (its device cgroup answers
    access() with EPERM for each of gres.conf's files), or None: a step that Slurm
    gave no GPU on a node whose GPUs are other jobs'."""
    try:
        text = gres_conf_path(slurm_conf).read_text(errors="replace")[:MAX_BYTES]
        files = gpu_files(text, node)
    except (OSError, ValueError):
        return None
    if not files:
        return None
    for path in files:
        try:
            os.close(os.open(path, os.O_PATH))  # exists (O_PATH opens no driver)
        except OSError:
            return None
        if _errno_of_access(path) != errno.EPERM:
            return None
    return f"none of the node's {len(files)} GPUs is this step's (device cgroup)"


def confined_gpus(slurm_conf: str | None, node: str, gpus: int) -> list[int] | None:
    """The node's GPUs (Slurm's numbering) this process may open, when its device cgroup
    allows it only some of them: a task of `--gpus-per-task` under ConstrainDevices,
    which Slurm's variables name 0 whichever GPU it is. None when it may open all of
    them or none (nothing to tell), or without a GPU file for each: Slurm's variables as
    they are. What the SPANK plugin's sai_confined_gpus answers, for `slurm-ai bind` and
    the TaskProlog."""
    files, _ = device_files(slurm_conf, node, gpus)
    if len(files) != gpus or gpus < 2:
        return None
    # As the plugin's may_open(): only the device cgroup's EPERM is a "no".
    own = [index for index, path in enumerate(files) if _errno_of_access(path) != errno.EPERM]
    return own if 0 < len(own) < len(files) else None


@functools.cache
def _libc() -> Any:
    """libc through ctypes, loaded once per process (a task probes every GPU file)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _errno_of_access(path: str) -> int:
    """access()'s errno (os.access hides it): the device cgroup's EPERM, or other."""
    import ctypes

    if _libc().access(os.fsencode(path), os.R_OK | os.W_OK) == 0:
        return 0
    return ctypes.get_errno()
