"""Fixtures for the topology tests: the captured machines of tests/data/topology."""

from __future__ import annotations

import pytest
from topology_machines import MACHINES, load_machine

from slurm_ai.topology.probe import NodeProbe


@pytest.fixture(params=MACHINES)
def machine(request: pytest.FixtureRequest) -> tuple[str, NodeProbe]:
    return request.param, load_machine(request.param)
