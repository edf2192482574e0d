"""Job-scope rendezvous from the Slurm environment."""

from __future__ import annotations

import pytest

from slurm_ai.health.errors import HealthCheckError
from slurm_ai.health.rendezvous import (
    PORT_BASE,
    PORT_SPAN,
    job_rendezvous,
    parse_node_addr,
    port_for_job,
)

STEP = {
    "SLURM_PROCID": "1",
    "SLURM_NTASKS": "2",
    "SLURM_LOCALID": "0",
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_ID": "3",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_LAUNCH_NODE_IPADDR": "10.0.0.7",
}


def test_resolvable_first_node_is_master() -> None:
    rdv = job_rendezvous(STEP, resolves=lambda host: host == "gpu07")
    assert (rdv.rank, rdv.world, rdv.master_addr) == (1, 2, "gpu07")
    assert rdv.master_port == port_for_job("4242", "3") == PORT_BASE + (4242 * 16 + 3) % PORT_SPAN
    assert rdv.init_method == f"tcp://gpu07:{rdv.master_port}"
    assert port_for_job("4242", "4") != rdv.master_port  # the next step gets another port


def test_unresolvable_names_fall_back_to_nodeaddr_then_launch_ip() -> None:
    never = lambda host: False  # noqa: E731
    rdv = job_rendezvous(
        STEP, resolves=never, node_addr=lambda n: "192.168.1.8" if n == "gpu07" else None
    )
    assert rdv.master_addr == "192.168.1.8"
    assert job_rendezvous(STEP, resolves=never, node_addr=lambda n: None).master_addr == "10.0.0.7"
    override = {
        **STEP,
        "SLURM_AI_HEALTH_MASTER_ADDR": "fd00::1",
        "SLURM_AI_HEALTH_MASTER_PORT": "29400",
    }
    rdv = job_rendezvous(override, resolves=never)
    assert rdv.init_method == "tcp://[fd00::1]:29400"
    assert job_rendezvous(STEP, master_addr="127.0.0.1", resolves=never).master_addr == "127.0.0.1"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {**STEP, "SLURM_PROCID": "x"},
        {**STEP, "SLURM_PROCID": "5"},
        {**STEP, "SLURM_JOB_ID": ""},
        {k: v for k, v in STEP.items() if k != "SLURM_LAUNCH_NODE_IPADDR"},
        {**STEP, "SLURM_AI_HEALTH_MASTER_ADDR": "host; rm -rf /"},
        {**STEP, "SLURM_STEP_NODELIST": "gpu[07-", "SLURM_LAUNCH_NODE_IPADDR": ""},
    ],
)
def test_garbage_env_is_a_clear_error(env: dict[str, str]) -> None:
    with pytest.raises(HealthCheckError):
        job_rendezvous(env, resolves=lambda host: False)


def test_parse_node_addr() -> None:
    line = "NodeName=n1 Arch=x86_64 CoresPerSocket=1 NodeAddr=127.0.0.1 NodeHostName=n1 Version=22.05.8"
    assert parse_node_addr(line) == "127.0.0.1"
    assert parse_node_addr("NodeName=n1 State=IDLE") is None
