"""The captured machines of tests/data/topology, probed once each (imported by tests)."""

from __future__ import annotations

from pathlib import Path

from slurm_ai.topology.probe import NodeProbe, probe_node

DATA = Path(__file__).resolve().parent.parent / "data" / "topology"
MACHINES = (
    "dgx_h100",
    "dgx_a100",
    "kvm_passthrough",
    "azure_vgpu",
    "mig_a100",
    "this_machine",
    "lent_h200",
)


def machine_root(name: str) -> Path:
    return DATA / name


_CACHE: dict[str, NodeProbe] = {}


def load_machine(name: str) -> NodeProbe:
    if name not in _CACHE:
        _CACHE[name] = probe_node(machine_root(name))
    return _CACHE[name]
