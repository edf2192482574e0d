"""Read a whole node (live, or a tree written by `slurm-ai capture`), cached per boot.

A captured tree is a directory holding the sysfs/procfs subset under its own
`sys/` and `proc/` (symlinks kept), `nvml.json` (an NVML recording, see
slurm_ai.nvml) and `env.json` (the few environment variables the fingerprint
reads). `probe --root DIR` and `plan --root DIR` read it in place of the host.

The Prolog must stay fast, so the live probe is cached in the spool keyed by
the kernel's boot id and refreshed after `cache_max_age_s`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slurm_ai import jsontext
from slurm_ai.errors import ProbeError, SlurmAIError
from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.cpu import read_cpu_topology
from slurm_ai.topology.model import Fingerprint, NodeTopology
from slurm_ai.topology.nics import read_nics

if TYPE_CHECKING:
    from slurm_ai.nvml import Nvml

CACHE_VERSION = 1
ENV_KEYS = ("KUBERNETES_SERVICE_HOST", "container")
DEFAULT_NVML_TIMEOUT_S = 5.0


@dataclass
class NodeProbe:
    topology: NodeTopology
    fingerprint: Fingerprint
    boot_id: str | None = None
    cached: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "boot_id": self.boot_id,
            "written": time.time(),
            "topology": self.topology.to_dict(),
            "fingerprint": self.fingerprint.to_dict(),
        }


def nvidia_present(sysfs: Sysfs) -> bool:
    """Cheap check before loading pynvml: the NVIDIA driver is loaded."""
    return sysfs.exists("/proc/driver/nvidia") or (
        sysfs.is_live and Path("/dev/nvidiactl").exists()
    )


def open_node_nvml(
    sysfs: Sysfs, root_dir: Path | None, timeout: float
) -> tuple[Nvml | None, str | None]:
    """NVML for this root: the recording of a captured tree, the site's recording
    (`[nvml] recording`), or the live one."""
    from slurm_ai.nvml import open_nvml, site_recording

    if root_dir is not None:
        recording = root_dir / "nvml.json"
        if recording.exists():
            try:
                return open_nvml(recorded=recording), None
            except ProbeError as exc:
                return None, str(exc)
        return None, "no nvml.json in the captured tree"
    if site_recording() is None and not nvidia_present(sysfs):
        return None, "no NVIDIA driver loaded"
    try:
        return open_nvml(timeout=timeout), None
    except ProbeError as exc:
        return None, str(exc)


def captured_env(root_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((root_dir / "env.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if k in ENV_KEYS}


def probe_node(
    root: str | os.PathLike[str] = "/",
    *,
    env: Mapping[str, str] | None = None,
    nvml_timeout: float = DEFAULT_NVML_TIMEOUT_S,
    with_gpus: bool = True,
    with_fingerprint: bool = True,
    sysfs: Sysfs | None = None,
    nvml: Nvml | None = None,
) -> NodeProbe:
    """Probe a node; never raises for missing files or a failing NVML (warnings).

    `sysfs` and `nvml` replace the ones derived from `root` (capture passes
    recording wrappers).
    """
    sysfs = sysfs or Sysfs(root)
    root_dir = None if sysfs.is_live else Path(root)
    if env is None:
        env = captured_env(root_dir) if root_dir is not None else dict(os.environ)
    warnings: list[str] = []
    cpu = read_cpu_topology(sysfs, warnings)
    nics = read_nics(sysfs, warnings)
    topo = NodeTopology(cpu=cpu, nics=nics, warnings=warnings)
    if with_gpus:
        from slurm_ai.topology.gpus import gpu_links, read_gpus

        nv, why = (
            (nvml, None) if nvml is not None else open_node_nvml(sysfs, root_dir, nvml_timeout)
        )
        try:
            topo.gpus = read_gpus(nv, sysfs, warnings, nvml_error=why)
            if nv is not None:
                topo.nvml_source = nv.source
                try:
                    driver = nv.call("nvmlSystemGetDriverVersion")
                    topo.driver = driver.decode() if isinstance(driver, bytes) else str(driver)
                except ProbeError:
                    pass
        except SlurmAIError as exc:
            warnings.append(f"GPU probe failed: {exc}")
        finally:
            if nv is not None:
                nv.close()
        topo.gpu_links = gpu_links(topo.gpus)
    fingerprint = Fingerprint()
    if with_fingerprint:
        # virt (and the config module it uses) loads only when a fingerprint is wanted.
        from slurm_ai.topology.virt import detect

        fingerprint = detect(sysfs, topo, env)
    boot_id = sysfs.read_text("/proc/sys/kernel/random/boot_id")
    return NodeProbe(topology=topo, fingerprint=fingerprint, boot_id=boot_id)


def cache_path(spool_dir: Path) -> Path:
    return spool_dir / "topology" / "node.json"


def load_cached(spool_dir: Path, max_age_s: float) -> NodeProbe | None:
    """The cached live probe, if written in this boot, recent enough, and from the
    NVML source in use now (a site recording set or removed since is a new probe)."""
    from slurm_ai.nvml import site_recording
    from slurm_ai.spool import read_bytes_nofollow

    try:
        data = jsontext.loads(read_bytes_nofollow(cache_path(spool_dir), max_bytes=8 << 20))
    except (OSError, ValueError, SlurmAIError):
        return None
    boot_id = Sysfs("/").read_text("/proc/sys/kernel/random/boot_id")
    if (
        not isinstance(data, dict)
        or data.get("version") != CACHE_VERSION
        or data.get("boot_id") != boot_id
        or data.get("nvml_site") != site_recording()
        or time.time() - float(data.get("written", 0)) > max_age_s
    ):
        return None
    try:
        topo = NodeTopology.from_dict(data["topology"])
        fingerprint = Fingerprint.from_dict(data["fingerprint"])
    except (KeyError, TypeError, ValueError):
        return None
    return NodeProbe(topology=topo, fingerprint=fingerprint, boot_id=boot_id, cached=True)


def store_cache(spool_dir: Path, probe: NodeProbe) -> str | None:
    """Write the cache; returns a note instead of raising when the spool refuses."""
    from slurm_ai.nvml import site_recording
    from slurm_ai.spool import atomic_write_json, ensure_private_dir

    try:
        ensure_private_dir(cache_path(spool_dir).parent)
        atomic_write_json(cache_path(spool_dir), {**probe.to_dict(), "nvml_site": site_recording()})
    except SlurmAIError as exc:
        return f"fingerprint cache not written: {exc}"
    return None


def probe_live_cached(
    spool_dir: Path, *, max_age_s: float, nvml_timeout: float, refresh: bool = False
) -> NodeProbe:
    if not refresh:
        cached = load_cached(spool_dir, max_age_s)
        if cached is not None:
            return cached
    probe = probe_node("/", nvml_timeout=nvml_timeout)
    note = store_cache(spool_dir, probe)
    if note:
        probe.notes.append(note)
    return probe
