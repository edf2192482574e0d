"""Shared pytest fixtures for slurm-ai.

`slurm_cluster` gives tests marked `cluster` the real local Slurm cluster of
scripts/localcluster.  Each developer may run an own instance side by side:
set SLURM_AI_CLUSTER_PREFIX / SLURM_AI_CLUSTER_PORT_BASE / SLURM_AI_CLUSTER_NAME
(the same variables scripts/localcluster reads).  Set SLURM_AI_TEST_NO_START=1
to never start a cluster from the tests (they skip when it is not up).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCALCLUSTER = REPO / "scripts" / "localcluster"

DEFAULT_PREFIX = "/var/tmp/slurm-ai-cluster"
DEFAULT_PORT_BASE = 6817
DEFAULT_NAME = "sai"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the real local Slurm cluster")


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


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return (proc.stdout + proc.stderr).strip()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The session's local Slurm cluster, started if needed and allowed."""
    cluster = cluster_from_env()
    status = cluster.localcluster("status", timeout=120)
    if status.returncode != 0:
        if os.geteuid() != 0:
            if shutil.which("slurmctld") is None:
                pytest.skip(
                    "Slurm packages missing (slurm-wlm, slurmdbd, munge, "
                    "mariadb-server); run scripts/localcluster up as root"
                )
            pytest.skip(
                f"local Slurm cluster at {cluster.prefix} is not up and tests "
                "are not root; run `sudo scripts/localcluster up`"
            )
        if os.environ.get("SLURM_AI_TEST_NO_START"):
            pytest.skip(
                f"local Slurm cluster at {cluster.prefix} is not up and "
                "SLURM_AI_TEST_NO_START is set; run scripts/localcluster up"
            )
        up = cluster.localcluster("up", timeout=1800)
        if up.returncode != 0:
            pytest.skip(
                f"scripts/localcluster up failed (exit {up.returncode}):\n{_output(up)[-4000:]}"
            )
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(cluster.slurm_conf))
    try:
        yield cluster
    finally:
        mp.undo()
