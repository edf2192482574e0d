"""scripts/localcluster on the real machine: the session cluster does real work
(scheduling, accounting, MPI over PMIx, torch.distributed), and a throwaway
instance exercises status/down/up and the failure paths."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_support import SlurmCluster
from core_parts import SETUP_DEPS, import_module, missing

pytestmark = pytest.mark.cluster

NODES = ("n1", "n2")
DAEMONS = ("munged", "mysqld", "slurmdbd", "slurmctld", "slurmd-n1", "slurmd-n2")


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ports_free(base: int) -> bool:
    for port in range(base, base + 7):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def daemon_pids(cluster: SlurmCluster) -> dict[str, str]:
    run_dir = cluster.prefix / "run"
    return {d: (run_dir / f"{d}.pid").read_text().strip() for d in DAEMONS}


# ---------------------------------------------------------------- session cluster


def test_sinfo_lists_both_nodes_idle_in_both_partitions(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %P %T"])
    assert out.returncode == 0, out.stderr
    # Slurm 24.11 shows an idle node that backfill has set aside for a pending job (one
    # another test left queued) as "planned": idle all the same.
    seen = {
        (node, part, "idle" if state == "planned" else state)
        for node, part, state in (line.split() for line in out.stdout.splitlines())
    }
    # The vm partition holds the KVM guests where the instance has them
    # (tests/test_vm_nodes.py), else the same host nodes as bare.
    has_guests = (slurm_cluster.prefix / "etc" / "vm-nodes").exists()
    for node in NODES:
        for part in ("bare*",) if has_guests else ("bare*", "vm"):  # bare is the default
            assert (node, part, "idle") in seen, out.stdout


def test_cluster_is_registered_in_accounting(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"])
    assert out.returncode == 0, out.stderr
    assert slurm_cluster.name in out.stdout.split()


def test_batch_job_runs_and_sacct_records_it(slurm_cluster: SlurmCluster) -> None:
    sub = slurm_cluster.run(
        [
            "sbatch",
            "--parsable",
            "-N1",
            "-p",
            "vm",
            "-J",
            "lc-batch",
            "-o",
            str(slurm_cluster.shared_dir / "lc-batch-%j.out"),
            "--wrap",
            "hostname; echo batch-ok",
        ]
    )
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().split(";")[0]

    def record() -> list[str]:
        out = slurm_cluster.run(
            [
                "sacct",
                "-n",
                "-X",
                "-P",
                "-j",
                job_id,
                "--format=JobID,JobName,Partition,State,ExitCode,NodeList",
            ]
        )
        return out.stdout.strip().split("|") if out.returncode == 0 else []

    # A short job may first show up as a placeholder ("allocation", no
    # partition) until slurmctld's job-start record reaches slurmdbd: poll on both.
    assert wait_for(lambda: record()[1:4] == ["lc-batch", "vm", "COMPLETED"], 90), record()
    fields = record()
    assert fields[:3] == [job_id, "lc-batch", "vm"]
    assert fields[4] == "0:0"
    assert fields[5] in slurm_cluster.partition_nodes("vm")
    output = (slurm_cluster.shared_dir / f"lc-batch-{job_id}.out").read_text()
    assert output.split() == [fields[5], "batch-ok"]


MPI_SCRIPT = """
    import socket
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    value = np.array([comm.Get_rank() + 1.0])
    total = np.zeros(1)
    comm.Allreduce(value, total, op=MPI.SUM)
    print(f"rank={comm.Get_rank()} size={comm.Get_size()} "
          f"host={socket.gethostname()} sum={total[0]:.0f}", flush=True)
"""

TORCH_SCRIPT = """
    import os, socket, sys
    import torch
    import torch.distributed as dist
    rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[1]}",
                            rank=rank, world_size=world)
    tensor = torch.tensor([rank + 1.0])
    dist.all_reduce(tensor)
    print(f"rank={rank} size={world} host={socket.gethostname()} sum={tensor.item():.0f}",
          flush=True)
    dist.destroy_process_group()
"""


def parse_ranks(stdout: str) -> dict[int, dict[str, str]]:
    ranks = {}
    for line in stdout.splitlines():
        if line.startswith("rank="):
            fields = dict(item.split("=", 1) for item in line.split())
            ranks[int(fields["rank"])] = fields
    return ranks


def check_two_node_allreduce(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    ranks = parse_ranks(out.stdout)
    assert sorted(ranks) == [0, 1], out.stdout
    assert all(r["size"] == "2" and r["sum"] == "3" for r in ranks.values()), out.stdout
    assert sorted(r["host"] for r in ranks.values()) == ["n1", "n2"], out.stdout


def test_mpi4py_allreduce_over_pmix_on_two_nodes(slurm_cluster: SlurmCluster) -> None:
    import_module("mpi4py", SETUP_DEPS)
    script = slurm_cluster.shared_dir / "lc_mpi_allreduce.py"
    script.write_text(textwrap.dedent(MPI_SCRIPT))
    out = slurm_cluster.run(
        ["srun", "-N2", "-n2", "--mpi=pmix", "python3", str(script)], timeout=180
    )
    check_two_node_allreduce(out)


def test_torch_gloo_allreduce_on_two_nodes(slurm_cluster: SlurmCluster) -> None:
    import_module("torch", SETUP_DEPS)
    script = slurm_cluster.shared_dir / "lc_torch_allreduce.py"
    script.write_text(textwrap.dedent(TORCH_SCRIPT))
    # Both "nodes" share the loopback network, so the rendezvous is 127.0.0.1.
    out = slurm_cluster.run(
        ["srun", "-N2", "-n2", "python3", str(script), str(free_port())],
        env={"GLOO_SOCKET_IFNAME": "lo"},
        timeout=300,
    )
    check_two_node_allreduce(out)


def test_second_up_changes_nothing(slurm_cluster: SlurmCluster) -> None:
    if os.geteuid() != 0:
        pytest.skip("localcluster up needs root")
    conf = slurm_cluster.slurm_conf
    before = (daemon_pids(slurm_cluster), conf.stat().st_mtime_ns)
    out = slurm_cluster.localcluster("up")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "already up" in out.stdout and "nothing changed" in out.stdout
    assert (daemon_pids(slurm_cluster), conf.stat().st_mtime_ns) == before


def test_env_prints_slurm_conf(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.localcluster("env")
    assert out.returncode == 0
    assert out.stdout.strip() == f"export SLURM_CONF={slurm_cluster.slurm_conf}"
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.slurm_conf)


def test_slurm_conf_ends_with_hooks_include(slurm_cluster: SlurmCluster) -> None:
    lines = slurm_cluster.slurm_conf.read_text().strip().splitlines()
    hooks = slurm_cluster.prefix / "etc" / "hooks.conf"
    assert lines[-1] == f"Include {hooks}"
    assert hooks.exists()


# ---------------------------------------------------------------- throwaway instance


@pytest.fixture(scope="module")
def spare(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """A second, throwaway instance (own prefix and ports) for down/up and
    failure tests, so that the session cluster stays up.  Brought down and
    removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("starting a throwaway instance needs root")
    base = next((b for b in range(slurm_cluster.port_base + 100, 30000, 10) if ports_free(b)), None)
    if base is None:
        pytest.skip("no free block of 7 ports for a throwaway instance")
    # Not under pytest's /tmp: the per-node /tmp dirs are bind-mounted from here.
    prefix = Path(f"/var/tmp/slurm-ai-test-{os.getpid()}")
    cluster = dataclasses.replace(slurm_cluster, prefix=prefix, port_base=base, name="saitest")
    # Without VM nodes: this instance tests the host side; guests are
    # tests/test_vm_nodes.py's, on the session cluster.
    env = pytest.MonkeyPatch()
    env.setenv("SLURM_AI_CLUSTER_VMS", "off")
    try:
        yield cluster
    finally:
        cluster.localcluster("down", timeout=180)
        env.undo()
        shutil.rmtree(prefix, ignore_errors=True)


def test_status_of_stopped_instance_exits_3(spare: SlurmCluster) -> None:
    out = spare.localcluster("status")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "stopped" in out.stdout


def test_busy_port_is_named_and_nothing_starts(spare: SlurmCluster) -> None:
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", spare.port_base))  # the slurmctld port
        blocker.listen()
        out = spare.localcluster("up")
    assert out.returncode not in (0, 2), out.stdout + out.stderr
    assert "slurmctld" in out.stderr and str(spare.port_base) in out.stderr
    status = spare.localcluster("status")
    assert status.returncode == 3 and "stopped" in status.stdout


def test_up_down_up(spare: SlurmCluster) -> None:
    for round_ in (1, 2):
        up = spare.localcluster("up")
        assert up.returncode == 0, f"round {round_}: {up.stdout}{up.stderr}"
        assert "no VM nodes: VM nodes are off" in up.stdout  # said in one line
        status = spare.localcluster("status")
        assert status.returncode == 0, status.stdout
        job = spare.run(["srun", "-N2", "-n2", "hostname"], timeout=120)
        assert sorted(job.stdout.split()) == ["n1", "n2"], job.stdout + job.stderr
        pids = daemon_pids(spare)
        down = spare.localcluster("down", timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        for pid in pids.values():  # gone, or a zombie nobody reaps
            with contextlib.suppress(FileNotFoundError):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                assert state in ("Z", "X"), f"pid {pid} still running after down"
        status = spare.localcluster("status")
        assert status.returncode == 3 and "stopped" in status.stdout


def test_dead_daemon_is_named_with_its_log(spare: SlurmCluster) -> None:
    # hooks.conf is included by slurm.conf and never rewritten by `up`: a
    # partition with an unknown node makes slurmctld (and only it) exit.
    hooks = spare.prefix / "etc" / "hooks.conf"
    saved = hooks.read_text()
    hooks.write_text(saved + "PartitionName=broken Nodes=n9\n")
    try:
        out = spare.localcluster("up")
        assert out.returncode not in (0, 2), out.stdout + out.stderr
        assert "slurmctld" in out.stderr and "exited" in out.stderr, out.stderr
        assert "Invalid node names in partition broken" in out.stderr, out.stderr
        assert "is up" not in out.stdout
        assert spare.localcluster("status").returncode == 3
    finally:
        hooks.write_text(saved)
        spare.localcluster("down", timeout=180)


def test_non_root_gets_a_clear_error(spare: SlurmCluster) -> None:
    setpriv = shutil.which("setpriv")
    # A python the unprivileged user can run (pyenv's lives under /root).
    python = next(
        (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None
    )
    if setpriv is None or python is None:
        missing(
            "setpriv and a system python3 (/usr/bin/python3)", f"util-linux python3 ({SETUP_DEPS})"
        )
    out = spare.localcluster(
        "up",
        python=python,
        prefix_argv=[setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"],
    )
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "must run as root" in lines[0], out.stderr
