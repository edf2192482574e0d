"""Configuration rendering: slurm.conf, slurmdbd.conf, cgroup.conf, mpi.conf and the
instance's directories."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
from pathlib import Path

from . import gpus, vm
from .common import ACCT_DB, run, slurm_version, write_if_changed
from .instance import PARTITIONS, Instance

# slurm_ai.accounting.spoolmode.MARKER (this package must not import slurm_ai).
SHARED_SPOOL_MARKER = ".slurm-ai-shared-spool"


def make_dirs(inst: Instance) -> None:
    for path in (
        inst.etc,
        inst.log_dir,
        inst.run_dir,
        inst.slurm_run_dir,
        inst.munge_dir,
        inst.mysql_dir,
        inst.state_dir,
        inst.spool_dir,
        *(inst.node_tmp(n) for n in inst.nodes),
        inst.prefix / "agent",
    ):
        path.mkdir(parents=True, exist_ok=True)
    # The prefix is one filesystem every node sees (the shared filesystem of this
    # cluster): slurm-ai's marker says so, so that a slurm-ai spool below it is taken
    # as shared ([accounting] shared_spool = "auto"); a production node's own
    # /var/spool is not below it and is node-local.
    write_if_changed(inst.prefix / SHARED_SPOOL_MARKER, "written by scripts/localcluster\n")
    # munged refuses a key/socket directory that others can write to; others
    # must reach the socket though, so that non-root users can submit jobs.
    os.chmod(inst.munge_dir, 0o755)
    for node in inst.nodes if inst.production else ():
        inst.node_var_spool(node).mkdir(parents=True, exist_ok=True)
        os.chmod(inst.node_var_spool(node), 0o755)  # as /var/spool
    for node in inst.nodes:
        # A node's /tmp must behave like /tmp: world-writable with sticky bit.
        os.chmod(inst.node_tmp(node), 0o1777)
        (inst.spool_dir / node).mkdir(exist_ok=True)
    for node in inst.guests():  # mount points of the guests' local tmpfs
        (inst.spool_dir / node).mkdir(exist_ok=True)
        (inst.prefix / "agent" / node).mkdir(exist_ok=True)


def node_cpus() -> int:
    # slurmd compares CPUs= with what it detects; with task/affinity it counts
    # the CPUs it may run on, which is what nproc reports.
    return len(os.sched_getaffinity(0))


def node_memory_mb() -> int:
    """A modest RealMemory: a quarter of the machine per node, at most 2 GiB."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        total_kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError):
        return 512
    return max(256, min(2048, total_kb // 1024 // 4))


def host_name() -> str:
    # slurmctld/slurmdbd refuse to start unless SlurmctldHost/DbdHost name
    # this host (short name), so the real hostname goes there and the
    # address is pinned to loopback.
    return socket.gethostname().split(".")[0]


def shape_lines(inst: Instance, cpus: int, mem: int) -> list[str]:
    """What differs between the two shapes (docs/localcluster.md says why)."""
    if not inst.production:
        return [
            # The lab: whole CPUs counted, no cgroups: track processes by parent pid.
            "ProctrackType=proctrack/linuxproc",
            # task/affinity needs only sched_setaffinity, which works in containers.
            "TaskPlugin=task/affinity",
            "SelectTypeParameters=CR_CPU",
        ]
    return [
        # A shared GPU site: jobs confined to their cgroups (cores, memory, devices),
        # nodes shared by jobs (cores and memory are what a job asks for).
        "ProctrackType=proctrack/cgroup",
        "TaskPlugin=task/cgroup,task/affinity",
        "SelectTypeParameters=CR_Core_Memory",
        # Without a default a job that names no memory would get the whole node's.
        f"DefMemPerCPU={max(1, mem // max(1, cpus))}",
        # Contain: the extern step holds every process of the job on the node (ssh
        # adopted by pam_slurm_adopt, too) in the job's cgroup; it implies Alloc, the
        # Prolog at allocation on every node of the job rather than at its first step.
        "PrologFlags=Alloc,Contain",
        "GresTypes=gpu",
    ]


def cgroup_conf_text(inst: Instance) -> str | None:
    """cgroup.conf for this instance's shape and Slurm, None for none."""
    if inst.production:
        # The host mounts cgroup v1 read-write; the guests (if any) mount cgroup2 and
        # have no systemd: autodetect lets each slurmd pick what its node has.
        plugin = "autodetect" if inst.guests() else "cgroup/v1"
        lines = [f"CgroupPlugin={plugin}", "ConstrainCores=yes", "ConstrainRAMSpace=yes",
                 "ConstrainDevices=yes"]  # fmt: skip
        if inst.guests():
            lines.append("IgnoreSystemd=yes")
        return "\n".join(lines) + "\n"
    if slurm_version() >= (24, 5):
        # 24.05+ slurmd loads a cgroup plugin unconditionally; the lab uses no
        # cgroups, and 22.05 rejects "disabled", so only write it on 24.05+.
        return "CgroupPlugin=disabled\n"
    if inst.guests():
        # 22.05 on a guest (cgroup2 mounted, no systemd): slurmd builds its own
        # cgroup tree instead of asking systemd over dbus.  The host's nodes
        # have no cgroup2 and never load the plugin, so they are unaffected.
        return "IgnoreSystemd=yes\n"
    return None


def slurm_conf_text(inst: Instance) -> str:
    host = host_name()
    cpus, mem = node_cpus(), node_memory_mb()
    addr = inst.node_addr
    lines = [
        f"# Written by scripts/localcluster for instance {inst.name!r} at {inst.prefix}.",
        "# Rewritten by every `localcluster up`: put site additions into hooks.conf.",
        f"ClusterName={inst.name}",
        f"SlurmctldHost={host}({addr})",
        f"SlurmctldPort={inst.ctld_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={inst.munge_socket}",
        f"StateSaveLocation={inst.state_dir}",
        f"SlurmdSpoolDir={inst.spool_dir}/%n",
        f"SlurmctldPidFile={inst.slurm_run_dir}/slurmctld.pid",
        f"SlurmdPidFile={inst.slurm_run_dir}/slurmd-%n.pid",
        f"SlurmctldLogFile={inst.log_dir}/slurmctld.log",
        f"SlurmdLogFile={inst.log_dir}/slurmd-%n.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        *shape_lines(inst, cpus, mem),
        "SelectType=select/cons_tres",
        "SchedulerType=sched/backfill",
        "MpiDefault=none",
        "ReturnToService=2",
        "MailProg=/bin/true",
        "TmpFS=/tmp",
        "SlurmctldTimeout=60",
        "SlurmdTimeout=60",
        "InactiveLimit=0",
        "KillWait=10",
        "MinJobAge=300",
        "PrologEpilogTimeout=120",
        f"JobAcctGatherType=jobacct_gather/{'cgroup' if inst.production else 'linux'}",
        "JobAcctGatherFrequency=30",
        "AccountingStorageType=accounting_storage/slurmdbd",
        f"AccountingStorageHost={addr}",
        f"AccountingStoragePort={inst.dbd_port}",
        # With slurmdbd this names the munge socket for accounting traffic
        # (sacctmgr, sacct, slurmctld->slurmdbd); AuthInfo does not cover it.
        f"AccountingStoragePass={inst.munge_socket}",
        "JobCompType=jobcomp/none",
        # SPANK plugins come from plugstack.conf.d, as Debian's /etc/slurm has it.
        f"PlugStackConfig={inst.etc}/plugstack.conf",
    ]
    for node in inst.nodes:
        lines.append(
            f"NodeName={node} NodeAddr={addr} NodeHostname={node} "
            f"Port={inst.node_port(node)} CPUs={cpus} RealMemory={mem} "
            f"{f'Gres=gpu:{gpus.GPUS_PER_NODE} ' if inst.production else ''}State=UNKNOWN"
        )
    if inst.guests():
        lines.extend(vm.slurm_conf_lines(inst.vm_net))
    members = {"bare": inst.nodes, "vm": inst.guests() or inst.nodes}
    # Sharing nodes by memory: a guest has far less than the host's DefMemPerCPU share.
    guest_mem = (
        f" DefMemPerCPU={vm.GUEST_REAL_MEMORY_MB // vm.GUEST_VCPUS}"
        if inst.production and inst.guests()
        else ""
    )
    for i, part in enumerate(PARTITIONS):
        default = "YES" if i == 0 else "NO"
        lines.append(
            f"PartitionName={part} Nodes={','.join(members[part])} Default={default} "
            f"MaxTime=INFINITE State=UP{guest_mem if part == 'vm' else ''}"
        )
    if inst.guests():
        # Host nodes and guests in one job (MPI between n1 and v1); hidden, so
        # sinfo and the report show bare and vm as before.
        lines.append(
            f"PartitionName={vm.MIXED_PARTITION} Nodes={','.join(inst.all_nodes())} Default=NO "
            f"MaxTime=INFINITE State=UP Hidden=YES{guest_mem}"
        )
    # Must stay last: the toolkit's installer adds Prolog=/Epilog= lines there.
    lines.append(f"Include {inst.hooks_conf}")
    return "\n".join(lines) + "\n"


def slurmdbd_conf_text(inst: Instance, password: str) -> str:
    return (
        "\n".join(
            [
                f"# Written by scripts/localcluster for instance {inst.name!r}.",
                "AuthType=auth/munge",
                f"AuthInfo=socket={inst.munge_socket}",
                f"DbdHost={host_name()}",
                "DbdAddr=127.0.0.1",
                f"DbdPort={inst.dbd_port}",
                "SlurmUser=root",
                "DebugLevel=info",
                f"LogFile={inst.log_dir}/slurmdbd.log",
                f"PidFile={inst.slurm_run_dir}/slurmdbd.pid",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={inst.mysql_port}",
                "StorageUser=slurm",
                f"StoragePass={password}",
                f"StorageLoc={ACCT_DB}",
            ]
        )
        + "\n"
    )


def db_password(inst: Instance) -> str:
    """Per-instance MariaDB password for slurmdbd, generated once."""
    if inst.db_secret.exists():
        return inst.db_secret.read_text().strip()
    password = secrets.token_hex(16)
    write_if_changed(inst.db_secret, password + "\n", 0o600)
    return password


def openmpi_major() -> int | None:
    """Major version of the installed Open MPI (`ompi_info --version`), or None."""
    if shutil.which("ompi_info") is None:
        return None
    proc = run(["ompi_info", "--version"], check=False, timeout=30)
    match = re.search(r"Open MPI v(\d+)\.", proc.stdout)
    return int(match.group(1)) if match else None


# All "nodes" share the host's network namespace and talk over 127.0.0.1.
# Open MPI 5 (Debian 13) excludes loopback from its TCP BTL and then cannot
# pair the remaining interfaces between n1 and n2 ("Unable to find reachable
# pairing between local and remote interfaces"): every cross-node message of
# `srun --mpi=pmix` fails.  mpi.conf's PMIxEnv puts this into the environment
# of every PMIx job.  Open MPI 4.1 (Debian 12) works as is and is left alone.
OMPI5_PMIX_ENV = "OMPI_MCA_btl_tcp_if_include=lo"


def mpi_conf_text(inst: Instance) -> str | None:
    """mpi.conf for this instance, or None when none is needed."""
    if inst.guests():
        return (
            f"# Written by scripts/localcluster for instance {inst.name!r}: MPI's TCP\n"
            "# traffic between host nodes and VM nodes uses the guest network.\n"
            f"PMIxEnv={vm.pmix_env(inst.vm_net)}\n"
        )
    major = openmpi_major()
    if major is None or major < 5:
        return None
    return (
        f"# Written by scripts/localcluster for instance {inst.name!r} (Open MPI {major}):\n"
        "# the nodes share one host, so MPI's TCP traffic must use loopback.\n"
        f"PMIxEnv={OMPI5_PMIX_ENV}\n"
    )


def write_configs(inst: Instance) -> None:
    write_if_changed(inst.slurm_conf, slurm_conf_text(inst))
    # slurmdbd insists on 0600 and owner SlurmUser (root) since it holds a password.
    write_if_changed(inst.slurmdbd_conf, slurmdbd_conf_text(inst, db_password(inst)), 0o600)
    cgroup_text = cgroup_conf_text(inst)
    if cgroup_text is not None:
        write_if_changed(inst.cgroup_conf, cgroup_text)
    else:
        inst.cgroup_conf.unlink(missing_ok=True)
    if inst.production:
        gpus.make_devices(inst)
        gpus.write_gres_conf(inst)
        gpus.write_recordings(inst)
    else:
        (inst.etc / "gres.conf").unlink(missing_ok=True)
    if inst.guests():  # the host's /etc/hosts plus the nodes, for the host's nodes
        host_hosts = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
        lines = vm.hosts_lines(inst.vm_net, inst.nodes)
        kept = [ln for ln in host_hosts.splitlines() if ln not in lines]
        write_if_changed(inst.etc / "hosts", "\n".join([*kept, *lines]) + "\n")
    mpi_text = mpi_conf_text(inst)
    if mpi_text is not None:
        write_if_changed(inst.mpi_conf, mpi_text)
    else:
        inst.mpi_conf.unlink(missing_ok=True)
    (inst.etc / "plugstack.conf.d").mkdir(mode=0o755, exist_ok=True)
    write_if_changed(inst.etc / "plugstack.conf", f"include {inst.etc}/plugstack.conf.d/*.conf\n")
    if not inst.hooks_conf.exists():  # created once, never overwritten
        inst.hooks_conf.write_text(
            "# Prolog=/Epilog=/TaskProlog= lines for this cluster go here; "
            "then `scontrol reconfigure`.\n"
        )


# --------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------
