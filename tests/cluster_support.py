"""The local Slurm cluster as tests see it (shared by tests/conftest.py and tests).

A module with a unique name: test files import `SlurmCluster` from here, never
from `conftest` (several conftest.py files exist, one per test folder).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOCALCLUSTER = REPO / "scripts" / "localcluster"

DEFAULT_PREFIX = "/var/tmp/slurm-ai-cluster"
DEFAULT_PORT_BASE = 6817
DEFAULT_NAME = "sai"


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """One localcluster instance, as seen by tests."""

    prefix: Path
    port_base: int
    name: str

    @property
    def slurm_conf(self) -> Path:
        return self.prefix / "etc" / "slurm.conf"

    @property
    def shared_dir(self) -> Path:
        """A directory every node sees (each node has its own private /tmp)."""
        path = self.prefix / "shared"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def instance_settings(self) -> dict[str, Any]:
        """What its last `up` recorded (shape, nodes, the fake GPUs' NVML recording)."""
        try:
            data = json.loads((self.prefix / "etc" / "instance.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def production(self) -> bool:
        return self.instance_settings().get("shape") == "production"

    def prolog_flags(self) -> list[str]:
        """The PrologFlags its slurm.conf sets (before any hooks.conf block)."""
        for line in self.slurm_conf.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key.strip().lower() == "prologflags":
                return [flag for flag in value.strip().split(",") if flag]
        return []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.slurm_conf)
        env.update(extra or {})
        return env

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (argv list) against this instance; output captured."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        kw["env"] = self.env(kw.get("env"))
        return subprocess.run(list(argv), check=False, **kw)

    def partition_nodes(self, partition: str) -> set[str]:
        """Nodes of a partition (`vm` holds the KVM guests where the instance has them)."""
        out = self.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%N"])
        assert out.returncode == 0, out.stderr
        return set(out.stdout.split())

    def localcluster(
        self,
        *args: str,
        timeout: float = 600,
        python: str | None = None,
        prefix_argv: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run scripts/localcluster for this instance (explicit options, not env)."""
        argv = [
            *prefix_argv,
            python or sys.executable,
            str(LOCALCLUSTER),
            "--prefix",
            str(self.prefix),
            "--port-base",
            str(self.port_base),
            "--name",
            self.name,
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def cluster_from_env() -> SlurmCluster:
    env = os.environ
    return SlurmCluster(
        prefix=Path(env.get("SLURM_AI_CLUSTER_PREFIX", DEFAULT_PREFIX)),
        port_base=int(env.get("SLURM_AI_CLUSTER_PORT_BASE", DEFAULT_PORT_BASE)),
        name=env.get("SLURM_AI_CLUSTER_NAME", DEFAULT_NAME),
    )
