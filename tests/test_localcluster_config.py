"""scripts/localcluster_lib without a cluster: the port plan for N nodes and the
slurm.conf it renders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from localcluster_lib import config
from localcluster_lib.instance import Instance, port_span


def ports(inst: Instance) -> list[int]:
    return [
        inst.ctld_port,
        inst.mysql_port,
        inst.dbd_port,
        inst.vm_net.slurmd_port,
        *(inst.node_port(n) for n in inst.nodes),
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 6, 16])
def test_n_nodes_get_distinct_ports_inside_the_span(count: int) -> None:
    inst = Instance(Path("/var/tmp/x"), 7000, "x", node_count=count)
    used = ports(inst)
    assert len(set(used)) == len(used) == port_span(count)
    assert min(used) == 7000 and max(used) == 7000 + port_span(count) - 1
    assert inst.nodes == tuple(f"n{i}" for i in range(1, count + 1))


def test_instances_a_span_apart_never_share_a_port() -> None:
    first = Instance(Path("/var/tmp/a"), 7000, "a", node_count=6)
    second = Instance(Path("/var/tmp/b"), 7000 + port_span(6), "b", node_count=6)
    assert not set(ports(first)) & set(ports(second))
    assert port_span(6) <= 10  # the documented 10 apart holds up to 6 nodes


def test_slurm_conf_lists_every_node_with_its_port_and_spool(tmp_path: Path) -> None:
    inst = Instance(tmp_path, 7000, "x", node_count=3)
    text = config.slurm_conf_text(inst)
    names = [ln.split()[0] for ln in text.splitlines() if ln.startswith("NodeName=")]
    assert names == ["NodeName=n1", "NodeName=n2", "NodeName=n3"]
    assert "Port=7006 " in next(ln for ln in text.splitlines() if ln.startswith("NodeName=n3"))
    bare = next(ln for ln in text.splitlines() if ln.startswith("PartitionName=bare"))
    assert "Nodes=n1,n2,n3 " in bare
    assert f"SlurmdSpoolDir={tmp_path}/spool/%n" in text.splitlines()


def test_the_shared_spool_marker_names_slurm_ais() -> None:
    from slurm_ai.accounting.spoolmode import MARKER

    assert config.SHARED_SPOOL_MARKER == MARKER
