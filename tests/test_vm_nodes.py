"""The `vm` partition's KVM guests (v1, v2) on the real local cluster: they join
Slurm, run jobs, are detected as VMs from their own DMI, and MPI and
torch.distributed work between guests and between a host node and a guest.

Where KVM cannot run a guest, the instance has no VM nodes and these tests skip
with the one line `localcluster up` printed; in CI on a machine whose /dev/kvm
works they fail instead (the VM nodes must have come up there). .ci/run runs them
in a step of their own, against an instance started with `--vms any` (emulated
guests where KVM cannot boot them), with SLURM_AI_TEST_REQUIRE_VMS=1: they never
skip there."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from cluster_support import LOCALCLUSTER, SlurmCluster
from hooks_fixture import InstalledHooks, installed_hooks  # noqa: F401  (the fixture)

from slurm_ai import cbuild
from slurm_ai.topology import spank

sys.path.insert(0, str(LOCALCLUSTER.parent))
from localcluster_lib import vm

pytestmark = pytest.mark.cluster

GUESTS = vm.GUESTS
# Set by .ci/run's VM step, which starts its instance with guests under KVM or, where KVM
# cannot boot them, QEMU's emulator: there a missing guest is a failure, never a skip.
REQUIRE_VMS = "SLURM_AI_TEST_REQUIRE_VMS"


@pytest.fixture(scope="module")
def vm_cluster(slurm_cluster: SlurmCluster) -> SlurmCluster:
    """The session cluster, when it runs VM nodes."""
    if (slurm_cluster.prefix / "etc" / "vm-nodes").exists():
        return slurm_cluster
    reason_path = vm.reason_file(slurm_cluster.prefix)
    reason = reason_path.read_text().strip() if reason_path.exists() else "no VM nodes"
    if os.environ.get("CI") and vm.kvm_problem() is None:
        pytest.fail(f"/dev/kvm runs guests here, yet the cluster has no VM nodes: {reason}")
    if os.environ.get(REQUIRE_VMS):  # .ci/run's VM step started guests (KVM or emulated)
        pytest.fail(f"{REQUIRE_VMS} is set, yet the cluster has no VM nodes: {reason}")
    pytest.skip(reason)


def _addr(cluster: SlurmCluster, node: str) -> str:
    out = cluster.run(["scontrol", "show", "node", node, "-o"])
    assert out.returncode == 0, out.stderr
    fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
    return fields["NodeAddr"]


def test_guests_are_idle_in_the_vm_partition_and_hosts_in_bare(vm_cluster: SlurmCluster) -> None:
    out = vm_cluster.run(["sinfo", "-h", "-N", "-o", "%N %P %T"])
    assert out.returncode == 0, out.stderr
    seen = {tuple(line.split()) for line in out.stdout.splitlines()}
    for node in GUESTS:
        assert (node, "vm", "idle") in seen, out.stdout
    assert {n for n, p, _ in seen if p == "vm"} == set(GUESTS), out.stdout
    assert {n for n, p, _ in seen if p == "bare*"} == {"n1", "n2"}, out.stdout


def test_srun_on_two_guests_names_both(vm_cluster: SlurmCluster) -> None:
    out = vm_cluster.run(["srun", "-p", "vm", "-N2", "hostname"], timeout=180)
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == list(GUESTS)


def test_a_guest_has_its_own_kernel_cgroups_and_network(vm_cluster: SlurmCluster) -> None:
    script = textwrap.dedent(
        """\
        import os, socket
        print("boot", open("/proc/sys/kernel/random/boot_id").read().strip())
        print("cgroup2", os.path.exists("/sys/fs/cgroup/cgroup.controllers"))
        print("cpus", os.cpu_count())
        print("host", socket.gethostname())
        """
    )
    out = vm_cluster.run(
        ["srun", "-p", "vm", "-w", "v1", "-N1", sys.executable, "-c", script], timeout=180
    )
    assert out.returncode == 0, out.stderr
    facts = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert facts["host"] == "v1"
    assert facts["cgroup2"] == "True"
    assert facts["cpus"] == str(vm.GUEST_VCPUS)
    # Its own kernel: a boot id of its own, not the host's.
    assert facts["boot"] != Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_probe_in_a_guest_names_kvm_from_dmi(vm_cluster: SlurmCluster) -> None:
    out = vm_cluster.run(
        ["srun", "-p", "vm", "-w", "v1", "-N1", sys.executable, "-m", "slurm_ai", "probe",
         "--json"],
        timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout)
    platform = probe.get("platform", probe)
    assert platform["hypervisor"] == "kvm", platform
    assert platform["class"].startswith("vm"), platform
    assert platform.get("container") in (None, "", "none"), platform
    evidence = " ".join(platform["evidence"])
    assert "DMI names 'qemu'" in evidence, evidence  # sys_vendor QEMU, SeaBIOS


MPI_SCRIPT = """\
import socket
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1, op=MPI.SUM)
print(f"{socket.gethostname()} rank {comm.Get_rank()}/{comm.Get_size()} sum {total}")
"""

GLOO_SCRIPT = """\
import os, socket, sys
import torch
import torch.distributed as dist
rank, size = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
dist.init_process_group("gloo", init_method=f"tcp://{sys.argv[1]}:{sys.argv[2]}",
                        rank=rank, world_size=size)
tensor = torch.tensor([rank + 1.0])
dist.all_reduce(tensor)
print(f"{socket.gethostname()} rank {rank} sum {tensor.item():.0f}")
dist.destroy_process_group()
"""


@pytest.mark.parametrize("nodes", [("v1", "v2"), ("n1", "v1")], ids=["v1+v2", "n1+v1"])
def test_mpi4py_allreduce_across(vm_cluster: SlurmCluster, nodes: tuple[str, str]) -> None:
    pytest.importorskip("mpi4py")
    script = vm_cluster.shared_dir / "vm_mpi_allreduce.py"
    script.write_text(MPI_SCRIPT)
    out = vm_cluster.run(
        ["srun", "-p", vm.MIXED_PARTITION, "-w", ",".join(nodes), "-N2", "-n2", "--mpi=pmix",
         sys.executable, str(script)],
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.split("\n")
    assert sorted(ln.split()[0] for ln in lines if ln) == sorted(nodes), out.stdout
    assert all(ln.endswith("sum 3") for ln in lines if ln), out.stdout


@pytest.mark.parametrize("nodes", [("v1", "v2"), ("n1", "v1")], ids=["v1+v2", "n1+v1"])
def test_torch_gloo_allreduce_across(vm_cluster: SlurmCluster, nodes: tuple[str, str]) -> None:
    pytest.importorskip("torch")
    script = vm_cluster.shared_dir / "vm_gloo_allreduce.py"
    script.write_text(GLOO_SCRIPT)
    ifname = vm.VmNet(vm_cluster.port_base).ifname
    out = vm_cluster.run(
        ["srun", "-p", vm.MIXED_PARTITION, "-w", ",".join(nodes), "-N2", "-n2", sys.executable,
         str(script), _addr(vm_cluster, nodes[0]), str(29400 + vm_cluster.port_base % 500)],
        env={"GLOO_SOCKET_IFNAME": ifname},
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln]
    assert sorted(ln.split()[0] for ln in lines) == sorted(nodes), out.stdout
    assert all(ln.endswith("sum 3") for ln in lines), out.stdout


def test_status_and_logs_cover_the_guests(vm_cluster: SlurmCluster) -> None:
    status = vm_cluster.localcluster("status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    for node in GUESTS:
        assert f"vm-{node}" in status.stdout and "running (pid" in status.stdout
        assert f"node {node}" in status.stdout
    accel = json.loads((vm_cluster.prefix / "etc" / "vm-nodes").read_text())["accel"]
    kind = "KVM guest" if accel == "kvm" else "emulated guest"
    assert status.stdout.count(f"({kind}, booted in ") == len(GUESTS), status.stdout
    logs = vm_cluster.localcluster("logs", "vm-v1", "-n", "5000", timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert "Linux version" in logs.stdout  # the guest kernel's own boot log
    assert vm.READY_LINE in logs.stdout
    slurmd = vm_cluster.localcluster("logs", "slurmd-v2", timeout=60)
    assert slurmd.returncode == 0 and "slurmd-v2.log" in slurmd.stdout, slurmd.stderr


SPANK_PRINT = (
    "import os; print('TASK', os.environ['SLURMD_NODENAME'], os.environ['SLURM_LOCALID'], "
    "sorted(os.sched_getaffinity(0)))"
)


def test_spank_plugin_pins_tasks_inside_a_guest(
    vm_cluster: SlurmCluster, request: pytest.FixtureRequest
) -> None:
    """The plugin (built on the host, shared in by 9p) loads in the guest's slurmstepd,
    reads the plan its own Prolog wrote, and pins each task of a plain srun. The guests
    share the host nodes' slurm.conf: under the production shape their slurmd confines
    jobs with cgroup v2 (CgroupPlugin=autodetect, each guest's own kernel), under the
    lab shape with Slurm's affinity masks only."""
    if cbuild.find_compiler() is None or cbuild.find_slurm_include(spank.HEADERS) is None:
        pytest.fail("needs gcc and libslurm-dev (scripts/setup-deps installs both)")
    # Asked for here, after vm_cluster: where there are no guests, nothing is installed.
    hooks: InstalledHooks = request.getfixturevalue("installed_hooks")
    path = spank.build_plugin(vm_cluster.prefix / "spank")
    conf = vm_cluster.prefix / "etc" / "plugstack.conf.d" / spank.CONF_NAME
    conf.write_text(spank.conf_line(path, hooks.spool_dir, "auto"))
    try:
        out = vm_cluster.run(
            ["srun", "-p", "vm", "-w", "v1", "-N1", "-n2",
             "--sai-bind=verbose", sys.executable, "-c", SPANK_PRINT],
            env=hooks.env(),
            timeout=300,
        )  # fmt: skip
    finally:
        conf.unlink(missing_ok=True)
    assert out.returncode == 0, out.stderr
    sets = {}
    for line in out.stdout.splitlines():
        if line.startswith("TASK "):
            _, node, local, cpus = line.split(" ", 3)
            assert node == "v1"
            sets[int(local)] = json.loads(cpus)
    # A plain srun (no --cpu-bind: --cpu-bind=none is the user's "do not bind", which the
    # plugin respects, docs/spank.md): each task has one CPU of its own, and the plugin's
    # verbose lines say it planned each task.
    assert sorted(sets) == [0, 1] and all(len(c) == 1 for c in sets.values()), out.stdout
    assert sets[0] != sets[1], out.stdout
    lines = [ln for ln in out.stderr.splitlines() if re.match(r"slurm-ai: task \d+: CPUs ", ln)]
    assert len(lines) == 2 and not any("unchanged" in line for line in lines), out.stderr
