"""The nodes: each slurmd in its own namespaces (hostname, /tmp), and their states."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
import socket
import sys
from pathlib import Path
from typing import NoReturn

from .common import CHECKOUT, NODES_TIMEOUT, ClusterError, run, say, wait_until
from .daemons import daemons
from .instance import Instance
from .processes import fail_daemon


def node_states(inst: Instance) -> dict[str, str]:
    """Node -> compact state from sinfo (e.g. idle, alloc, down*), {} on error."""
    proc = run(["sinfo", "-h", "-N", "-o", "%N %T"], env=inst.client_env(), check=False, timeout=20)
    states: dict[str, str] = {}
    if proc.returncode != 0:
        return states
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1].lower()
    return states


def node_serving(state: str) -> bool:
    """slurmd responds and the node is not down (drained still counts: a drain
    is an admin decision, e.g. a failed health check, not a broken cluster)."""
    return (
        bool(state)
        and "*" not in state
        and not state.startswith(("down", "unknown", "future", "fail", "not_responding", "inval"))
    )


def nodes_serving(inst: Instance) -> bool:
    states = node_states(inst)
    return all(node_serving(states.get(n, "")) for n in inst.all_nodes())


def wait_for_nodes(inst: Instance) -> None:
    """Wait until n1 and n2 serve (idle on a fresh cluster); resume a node
    left down by an earlier stop."""

    def all_idle() -> bool:
        states = node_states(inst)
        for node in inst.all_nodes():
            if states.get(node) == "down":  # responding, but down since a restart
                run(
                    ["scontrol", "update", f"nodename={node}", "state=resume"],
                    env=inst.client_env(),
                    check=False,
                )
        # Drained nodes are never resumed here: only the admin undoes a drain.
        return all(node_serving(states.get(n, "")) for n in inst.all_nodes())

    if not wait_until(all_idle, NODES_TIMEOUT, interval=1.0):
        states = node_states(inst)
        for daemon in daemons(inst):
            if not daemon.name.startswith(("slurmd-", "vm-")):
                continue
            node = daemon.name.split("-", 1)[1]
            if not node_serving(states.get(node, "")):
                if daemon.name.startswith("vm-"):  # its slurmd log says more than QEMU's console
                    daemon = dataclasses.replace(daemon, log=inst.log_dir / f"slurmd-{node}.log")
                fail_daemon(
                    inst,
                    daemon,
                    f"node {node} is {states.get(node, 'missing')!r}, "
                    f"not idle after {NODES_TIMEOUT:.0f}s",
                )
    states = node_states(inst)
    for node in inst.all_nodes():
        if states.get(node) != "idle":
            say(f"note: node {node} is {states.get(node)!r} (not idle)")


def slurmd_start_times(inst: Instance) -> dict[str, float]:
    """Node -> SlurmdStartTime (epoch seconds, this machine's time zone), {} on error."""
    proc = run(["scontrol", "-o", "show", "node"], env=inst.client_env(), check=False, timeout=20)
    times: dict[str, float] = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        name = re.search(r"\bNodeName=(\S+)", line)
        start = re.search(r"\bSlurmdStartTime=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", line)
        if name and start:
            stamp = datetime.datetime.strptime(start.group(1), "%Y-%m-%dT%H:%M:%S")
            times[name.group(1)] = stamp.timestamp()
    return times


def paths_to_keep_under_tmp() -> list[Path]:
    """Code the nodes must still see once their private /tmp hides the real one:
    this checkout, the installed slurm-ai package and the Python environment, when
    they live under /tmp (a CI clone or a venv there). Outermost paths only."""
    import importlib.util

    candidates = [CHECKOUT, Path(sys.prefix).resolve()]
    spec = importlib.util.find_spec("slurm_ai")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).resolve().parent.parent)
    tmp = Path("/tmp").resolve()
    inside = sorted({c for c in candidates if c != tmp and c.is_relative_to(tmp)})
    return [c for c in inside if not any(c != o and c.is_relative_to(o) for o in inside)]


# Controllers of the cgroup v1 hierarchy Slurm's cgroup plugins use (cpuset: cores,
# memory: RAM, devices: GPUs, freezer: proctrack, cpuacct: jobacct_gather).
CGROUP_V1 = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpuset", "memory", "devices", "freezer", "cpuacct", "pids")


def node_cgroup_name(inst: Instance, node: str) -> str:
    """The node's own cgroup below each controller's root: one per instance and node,
    so that instances on one host (all with nodes n1, n2) never share slurm_n1/. The
    hierarchy is the machine's, chroots included: the same prefix in two roots (two
    fresh roots of scripts/check-debian13 running the README at once) are two
    instances, told apart by their root directory (its device and inode)."""
    root = os.stat("/")
    identity = f"{inst.prefix}\0{root.st_dev}:{root.st_ino}"
    digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
    return f"sai-{digest}-{node}"


def enter_node_cgroups(inst: Instance, node: str) -> None:
    """Production shape, inside the node's mount namespace: move this process into the
    node's own cgroup of every controller and bind-mount that cgroup over the
    controller's mount point, so that it is the root slurmd sees; the cgroup namespace
    (`unshare --cgroup`, next) makes /proc/PID/cgroup paths relative to it too."""
    name = node_cgroup_name(inst, node)
    for ctrl in CONTROLLERS:
        top = CGROUP_V1 / ctrl
        if not (top / "cgroup.procs").exists():
            continue
        child = top / name
        step = "mkdir"
        try:
            child.mkdir(exist_ok=True)
            if ctrl == "cpuset":  # an empty cpuset takes no task: inherit the root's
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    step = f"write {knob}"
                    if not (child / knob).read_text().strip():
                        (child / knob).write_text((top / knob).read_text())
            step = "write cgroup.procs"
            (child / "cgroup.procs").write_text(f"{os.getpid()}\n")
        except OSError as err:
            raise ClusterError(
                f"node {node}: cannot make its own cgroup {child} ({step}: "
                f"{os.strerror(err.errno or 0)}, errno {err.errno}); start with --lab"
            ) from err
        run(["mount", "--bind", str(child), str(top)])


def remove_node_cgroups(inst: Instance) -> list[str]:
    """After `down`: remove the nodes' cgroups bottom-up; what cannot go (a process
    still in it) is returned, one line each."""
    left = []
    for node in inst.nodes:
        for ctrl in CONTROLLERS:
            top = CGROUP_V1 / ctrl / node_cgroup_name(inst, node)
            if not top.is_dir():
                continue
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for path in [*dirs, top]:
                try:
                    path.rmdir()
                except OSError as err:
                    left.append(f"{path}: {os.strerror(err.errno or 0)}")
                    break
    return left


def cmd_node_exec(inst: Instance, node: str, argv: list[str]) -> NoReturn:
    """Internal: runs inside `unshare --uts --mount`; give the node its own
    hostname, /tmp and /dev/shm (and in the production shape its own /var/spool), then
    become slurmd (or the node's agent)."""
    node_tmp = inst.node_tmp(node)
    keep = paths_to_keep_under_tmp()
    for path in keep:
        # Mounted onto the node's /tmp dir first, then carried along by --rbind:
        # the mounts exist only in this node's (private) mount namespace.
        target = node_tmp / path.relative_to(Path("/tmp").resolve())
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", str(path), str(target)])
    run(["mount", "--rbind" if keep else "--bind", str(node_tmp), "/tmp"])
    # Its own /dev/shm too, as a real node has: Open MPI names its shared-memory
    # segments there after the host name and the job id (vader_segment.n1.<job>.<rank>),
    # the same in every instance on this machine, so nodes n1 of two instances
    # running job N at once would open each other's segments.
    run(["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", "/dev/shm"])
    if inst.guests():  # the node names resolve on every node, as on a real cluster
        run(["mount", "--bind", str(inst.etc / "hosts"), "/etc/hosts"])
    if inst.production:  # the node's local disk: its own /var/spool (slurm-ai's spool)
        run(["mount", "--bind", str(inst.node_var_spool(node)), "/var/spool"])
        enter_node_cgroups(inst, node)
        argv = ["unshare", "--cgroup", "--", *argv]  # execs argv: the pid stays slurmd's
    socket.sethostname(node)
    os.execvp(argv[0], argv)  # noqa: S606 (argv list, no shell)
