"""Shared pytest fixtures for slurm-ai.

`slurm_cluster` gives tests marked `cluster` the real local Slurm cluster of
scripts/localcluster.  Each developer may run an own instance side by side:
set SLURM_AI_CLUSTER_PREFIX / SLURM_AI_CLUSTER_PORT_BASE / SLURM_AI_CLUSTER_NAME
(the same variables scripts/localcluster reads).  Set SLURM_AI_TEST_NO_START=1
to never start a cluster from the tests (they skip when it is not up).

`--require-core` (.ci/run sets it) turns each skip for a missing core part
(tests/core_parts.py) into a failure: on a CI machine a core feature must be tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from cluster_support import SlurmCluster, cluster_from_env
from core_parts import (  # noqa: F401 (the hooks that make --require-core work)
    MARKER,
    SETUP_DEPS,
    missing,
    pytest_addoption,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the real local Slurm cluster")
    config.addinivalue_line(
        "markers", f"{MARKER}(part, present, install): skip (CI: fail) without a core part"
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
                missing(
                    "Slurm packages (slurm-wlm, slurmdbd, munge, mariadb-server)",
                    f"{SETUP_DEPS}, then scripts/localcluster up as root",
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
            missing(
                f"a running local cluster: scripts/localcluster up failed (exit "
                f"{up.returncode}):\n{_output(up)[-4000:]}",
                SETUP_DEPS,
            )
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(cluster.slurm_conf))
    try:
        yield cluster
    finally:
        mp.undo()
