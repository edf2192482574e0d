"""`slurm-ai capture DIR`: record this node so it can become a test case.

The probe runs once against the live host through recording wrappers: every
sysfs/procfs path it reads (files, directory listings, symlinks along the way)
is copied under DIR with symlinks kept as symlinks, and every NVML answer is
written to DIR/nvml.json in the RecordedNvml format. Only what the probe reads
is copied, so a capture is small and holds no unrelated host data. DIR then
reads back with `probe --root DIR` / `plan --root DIR`. See docs/capture.md.
"""

from __future__ import annotations

import json
import os
import platform as pyplatform
import time
from pathlib import Path
from typing import Any

from slurm_ai.errors import ProbeError
from slurm_ai.nvml import Nvml, NvmlCallError, to_jsonable
from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.probe import ENV_KEYS, probe_node

MAX_FILE_BYTES = 256 * 1024
# Not worth copying: large or private.
SKIP_FILES = {"/proc/self/mountinfo", "/proc/cpuinfo"}
STRUCTURAL = {
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetMigDeviceHandleByIndex",
}


class RecordingSysfs(Sysfs):
    """A live Sysfs that remembers every path the probe touched."""

    def __init__(self) -> None:
        super().__init__("/")
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        self.links: set[str] = set()

    def read_text(self, host_path: str, default: str | None = None) -> str | None:
        self.files.add(host_path)
        return super().read_text(host_path, default)

    def exists(self, host_path: str) -> bool:
        self.links.add(host_path)
        return super().exists(host_path)

    def listdir(self, host_path: str) -> list[str]:
        self.dirs.add(host_path)
        return super().listdir(host_path)

    def realpath(self, host_path: str) -> str | None:
        self.links.add(host_path)
        return super().realpath(host_path)

    def readlink_name(self, host_path: str) -> str | None:
        self.links.add(host_path)
        return super().readlink_name(host_path)


class RecordingNvml(Nvml):
    """Live NVML that writes down every answer in the RecordedNvml layout."""

    def __init__(self, live: Nvml) -> None:
        self.live = live
        self.source = "capture"
        self.handles_: dict[int, tuple[int, int | None]] = {}  # id(handle) -> (gpu, mig)
        self.data: dict[str, Any] = {"system": {}, "devices": []}

    def _device(self, gpu: int, mig: int | None) -> dict[str, Any]:
        while len(self.data["devices"]) <= gpu:
            self.data["devices"].append({})
        device = self.data["devices"][gpu]
        if mig is None:
            return device
        migs = device.setdefault("mig", [])
        while len(migs) <= mig:
            migs.append({})
        return migs[mig]

    def call(self, function: str, *args: Any) -> Any:
        error: NvmlCallError | None = None
        value: Any = None
        try:
            value = self.live.call(function, *args)
        except NvmlCallError as exc:
            error = exc
        if function == "nvmlDeviceGetHandleByIndex" and error is None:
            self.handles_[id(value)] = (int(args[0]), None)
            self._device(int(args[0]), None)
        elif function == "nvmlDeviceGetMigDeviceHandleByIndex" and error is None:
            parent = self.handles_.get(id(args[0]))
            if parent is not None:
                self.handles_[id(value)] = (parent[0], int(args[1]))
                self._device(parent[0], int(args[1]))
        elif function not in STRUCTURAL:
            owner = self.handles_.get(id(args[0])) if args else None
            stored = {"error": error.code_name} if error is not None else to_jsonable(value)
            if owner is not None:
                rest = args[1:]
                key = function if not rest else f"{function}({','.join(map(str, rest))})"
                self._device(*owner)[key] = stored
            else:
                key = function if not args else f"{function}({','.join(map(str, args))})"
                self.data["system"][key] = stored
        if error is not None:
            raise error
        return value

    def close(self) -> None:
        self.live.close()


def _copy_path(host_path: str, dest: Path) -> None:
    """Recreate host_path under dest, keeping every symlink on the way."""
    parts = [p for p in host_path.split("/") if p]
    current = "/"
    for index, part in enumerate(parts):
        current = os.path.join(current, part)
        target = dest / current.lstrip("/")
        if os.path.islink(current):
            link = os.readlink(current)
            if not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, target)
            # Follow the link on the host and materialise its target too.
            resolved = os.path.realpath(current)
            rest = "/".join(parts[index + 1 :])
            _copy_path(resolved + ("/" + rest if rest else ""), dest)
            return
        if os.path.isdir(current):
            target.mkdir(parents=True, exist_ok=True)
        elif os.path.isfile(current) and index == len(parts) - 1:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(current, "rb") as handle:
                    data = handle.read(MAX_FILE_BYTES)
            except OSError:
                return  # unreadable (permissions, a sysfs attribute that errors)
            target.write_bytes(data)


def _first_cpuinfo_block(text: str) -> str:
    return text.split("\n\n", 1)[0] + "\n"


def _root_mount_line(text: str) -> str:
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            return line + "\n"
    return ""


def capture(dest: Path, *, with_nvml: bool = True, note: str = "") -> dict[str, Any]:
    """Capture the live node into `dest` (created; must be empty or absent)."""
    if dest.exists() and any(dest.iterdir()):
        raise ProbeError(f"{dest} is not empty: capture into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    sysfs = RecordingSysfs()
    recorder: RecordingNvml | None = None
    nvml_note = "NVML not recorded"
    if with_nvml:
        from slurm_ai.topology.probe import nvidia_present

        if nvidia_present(sysfs):
            from slurm_ai.nvml import LiveNvml

            try:  # the driver itself, never the site's recording
                recorder = RecordingNvml(LiveNvml())
                nvml_note = "NVML recorded"
            except ProbeError as exc:
                nvml_note = f"NVML unavailable: {exc}"
        else:
            nvml_note = "no NVIDIA driver loaded"
    result = probe_node("/", sysfs=sysfs, nvml=recorder, env=dict(os.environ))
    for path in sorted(sysfs.dirs):
        if os.path.isdir(path):
            _copy_path(path, dest)
            for name in sysfs.listdir(path):
                full = os.path.join(path, name)
                if os.path.islink(full) or os.path.isdir(full):
                    _copy_path(full, dest)
    for path in sorted(sysfs.links | sysfs.files):
        if path in SKIP_FILES:
            continue
        if os.path.lexists(path):
            _copy_path(path, dest)
    # Keep only what the fingerprint reads from these two (they can be large).
    for path, keep in (
        ("/proc/cpuinfo", _first_cpuinfo_block),
        ("/proc/self/mountinfo", _root_mount_line),
    ):
        text = sysfs.read_text(path)
        if text is not None:
            target = dest / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(keep(text))
    if recorder is not None:
        recorder.data["source"] = (
            f"captured live by slurm-ai capture on {pyplatform.node()} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
        )
        (dest / "nvml.json").write_text(json.dumps(recorder.data, indent=1, sort_keys=True))
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    (dest / "env.json").write_text(json.dumps(env, indent=1, sort_keys=True) + "\n")
    source = [
        "Captured live with `slurm-ai capture` (slurm_ai/topology/capture.py).",
        f"Host: {pyplatform.node()}; kernel {pyplatform.release()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
        f"{nvml_note}. Only the files the probe reads are copied; symlinks are kept.",
    ]
    if note:
        source.append(note)
    (dest / "SOURCE").write_text("\n".join(source) + "\n")
    files = links = 0
    for base, dirnames, filenames in os.walk(dest):  # does not follow symlinks
        for name in dirnames + filenames:
            if os.path.islink(os.path.join(base, name)):
                links += 1
            elif name in filenames:
                files += 1
    return {
        "files": files,
        "links": links,
        "gpus": len(result.topology.gpus),
        "nics": len(result.topology.nics),
        "nvml": nvml_note,
    }
