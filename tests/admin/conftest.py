"""Admin test fixtures: a temporary node root and an install into it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from adminroot import TmpRoot


@pytest.fixture
def tmp_root(tmp_path: Path) -> TmpRoot:
    return TmpRoot(tmp_path / "node")


@pytest.fixture
def installed(tmp_root: TmpRoot) -> Callable[[], TmpRoot]:
    def make() -> TmpRoot:
        tmp_root.write_slurm_conf()
        # The temporary root's plugstack.conf.d is not one srun loads (see
        # test_spank_plugin_registered_* and tests/topology/test_spank_cluster.py).
        result = tmp_root.install("--no-spank")
        assert result.exit_code == 0, result.output
        return tmp_root

    return make
