"""Paths and ports of one cluster instance."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from . import vm
from .common import MARK_VAR

DEFAULT_NODES = 2
SHAPES = ("lab", "production")
# What a GPU site runs (docs/localcluster.md); `--lab` where a test needs the old shape.
DEFAULT_SHAPE = "production"
MAX_NODES = 64
PARTITIONS = ("bare", "vm")  # first one is the default partition


def node_names(count: int) -> tuple[str, ...]:
    """n1 .. nN."""
    return tuple(f"n{i}" for i in range(1, count + 1))


def port_span(nodes: int) -> int:
    """Ports one instance uses from its base (see Instance): instances' port bases must
    be at least this far apart (6 with the default 2 nodes; the docs say 10, which
    leaves room for up to 6 nodes)."""
    return 4 + nodes


@dataclasses.dataclass(frozen=True)
class Instance:
    """Paths and ports of one cluster instance, all derived from its settings."""

    prefix: Path
    port_base: int
    name: str
    node_count: int = DEFAULT_NODES
    shape: str = DEFAULT_SHAPE  # SHAPES: how Slurm runs on the nodes (see config.py)

    # Port plan: base+0 slurmctld, +1 mysqld, +2 slurmdbd, +3 the VM guests' slurmd
    # (each on its own guest address), +4 .. +3+N slurmd n1 .. nN.  The fixed part
    # comes first so that a bigger N only grows the end: port_span(N) = N + 4.
    @property
    def nodes(self) -> tuple[str, ...]:
        return node_names(self.node_count)

    @property
    def ctld_port(self) -> int:
        return self.port_base

    @property
    def mysql_port(self) -> int:
        return self.port_base + 1

    @property
    def dbd_port(self) -> int:
        return self.port_base + 2

    def node_port(self, node: str) -> int:
        return self.port_base + 4 + self.nodes.index(node)

    @property
    def settings_file(self) -> Path:
        """What `up` was asked for (node count, shape), read by every later command."""
        return self.etc / "instance.json"

    def recorded(self) -> dict[str, object]:
        """The settings the last `up` recorded, {} before the first."""
        try:
            data = json.loads(self.settings_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def production(self) -> bool:
        return self.shape == "production"

    def settings(self) -> dict[str, object]:
        settings: dict[str, object] = {"nodes": self.node_count, "shape": self.shape}
        if self.production:
            # slurm-ai's `[nvml] recording` for the fake GPUs (gpus.py writes the files).
            settings["nvml_recording"] = f"{self.etc}/nvml/{{node}}.json"
        return settings

    @property
    def etc(self) -> Path:
        return self.prefix / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def slurmdbd_conf(self) -> Path:
        return self.etc / "slurmdbd.conf"

    @property
    def cgroup_conf(self) -> Path:
        return self.etc / "cgroup.conf"

    @property
    def mpi_conf(self) -> Path:
        return self.etc / "mpi.conf"

    @property
    def hooks_conf(self) -> Path:
        return self.etc / "hooks.conf"

    @property
    def db_secret(self) -> Path:
        return self.etc / "db.secret"

    @property
    def log_dir(self) -> Path:
        return self.prefix / "log"

    @property
    def run_dir(self) -> Path:
        """Our own pid files (one per daemon we started)."""
        return self.prefix / "run"

    @property
    def slurm_run_dir(self) -> Path:
        """Pid files the daemons write themselves (kept apart from ours)."""
        return self.prefix / "run" / "daemon"

    @property
    def munge_dir(self) -> Path:
        return self.prefix / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munged.sock"

    @property
    def mysql_dir(self) -> Path:
        return self.prefix / "mysql"

    @property
    def mysql_data(self) -> Path:
        return self.mysql_dir / "data"

    @property
    def mysql_socket(self) -> Path:
        return self.mysql_dir / "mysqld.sock"

    @property
    def state_dir(self) -> Path:
        return self.prefix / "state" / "slurmctld"

    @property
    def spool_dir(self) -> Path:
        return self.prefix / "spool"

    def node_tmp(self, node: str) -> Path:
        return self.prefix / "tmp" / node

    def node_var_spool(self, node: str) -> Path:
        """Production shape: the node's own /var/spool (its local disk), so that
        /var/spool/slurm-ai, the toolkit's default spool, is node-local."""
        return self.prefix / "nodes" / node / "var-spool"

    @property
    def vm_net(self) -> vm.VmNet:
        return vm.VmNet(self.port_base)

    @property
    def vm_marker(self) -> Path:
        """Present while this instance runs VM nodes (written by `up`)."""
        return self.etc / "vm-nodes"

    def guests(self) -> tuple[str, ...]:
        """The VM nodes of this instance: v1, v2, or none."""
        return vm.GUESTS if self.vm_marker.exists() else ()

    def vm_setup(self) -> dict[str, str]:
        """{"image": cached image dir, "accel": kvm|tcg} of the VM nodes."""
        setup: dict[str, str] = json.loads(self.vm_marker.read_text())
        return setup

    def all_nodes(self) -> tuple[str, ...]:
        return self.nodes + self.guests()

    @property
    def node_addr(self) -> str:
        """Where the host's daemons are reached: loopback, or the host's address
        on the guest network when there are guests (they must reach it too)."""
        return self.vm_net.host_addr if self.guests() else "127.0.0.1"

    def client_env(self) -> dict[str, str]:
        """Environment for Slurm clients and daemons of this instance."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.slurm_conf)
        env[MARK_VAR] = str(self.prefix)
        return env


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------
