"""Subcommands and the command line of scripts/localcluster."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import vm
from .common import (
    DEFAULT_NAME,
    DEFAULT_PORT_BASE,
    DEFAULT_PREFIX,
    EXIT_DOWN,
    EXIT_OK,
    EXIT_USAGE,
    NODES_TIMEOUT,
    ClusterError,
    run,
    say,
    slurm_version,
    tail,
    wait_until,
    write_if_changed,
)
from .config import make_dirs, write_configs
from .daemons import (
    check_ports,
    daemons,
    ensure_cluster_registered,
    prepare_munge,
    prepare_mysql,
    setup_mysql_user,
)
from .guests import guest_logs, prepare_vms, wait_for_guests
from .instance import DEFAULT_NODES, DEFAULT_SHAPE, MAX_NODES, SHAPES, Instance, port_span
from .nodes import (
    cmd_node_exec,
    node_serving,
    node_states,
    nodes_serving,
    remove_node_cgroups,
    slurmd_start_times,
    wait_for_nodes,
)
from .packages import ensure_packages, require_root
from .processes import fail_daemon, out_file, pid_file, running_pid, start_daemon, stop

DESCRIPTION = "Bring up a real two-node Slurm cluster on loopback, for development and tests."


def _describe(settings: dict[str, object]) -> str:
    return f"{settings.get('nodes')} nodes, shape {settings.get('shape')}"


def recorded_instance(inst: Instance) -> Instance:
    """The instance as its last `up` made it (node count, shape)."""
    recorded = inst.recorded()
    nodes, shape = recorded.get("nodes"), recorded.get("shape")
    return dataclasses.replace(
        inst,
        node_count=nodes if isinstance(nodes, int) else DEFAULT_NODES,
        shape=shape if shape in SHAPES else DEFAULT_SHAPE,
    )


def all_running(inst: Instance) -> bool:
    return all(running_pid(inst, d.name) is not None for d in daemons(inst))


def healthy(inst: Instance) -> bool:
    return all_running(inst) and nodes_serving(inst)


# --------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------


def cmd_up(inst: Instance, vms: str = "auto") -> int:
    require_root()
    before = recorded_instance(inst)  # as the last `up` made it (2 lab nodes before any)
    if before.settings() != inst.settings():
        running = [d.name for d in daemons(before) if running_pid(before, d.name) is not None]
        if running:
            raise ClusterError(
                f"cluster {inst.name!r} at {inst.prefix} runs with {_describe(before.settings())}, "
                f"not {_describe(inst.settings())}: `localcluster down` first "
                f"(running: {', '.join(running)})"
            )
    elif inst.slurm_conf.exists() and healthy(inst):
        say(f"cluster {inst.name!r} at {inst.prefix} is already up; nothing changed")
        return EXIT_OK
    started = time.monotonic()
    ensure_packages()
    make_dirs(inst)
    write_if_changed(inst.settings_file, json.dumps(inst.settings()) + "\n")
    prepare_vms(inst, vms)
    make_dirs(inst)
    write_configs(inst)
    check_ports(inst)
    prepare_munge(inst)
    prepare_mysql(inst)
    guests_started = time.monotonic()
    for daemon in daemons(inst):
        start_daemon(inst, daemon, wait=not daemon.name.startswith("vm-"))
        if daemon.name == "mysqld":
            setup_mysql_user(inst)
        elif daemon.name == "slurmdbd":
            ensure_cluster_registered(inst)
    wait_for_guests(inst, guests_started)
    wait_for_nodes(inst)
    if not all_running(inst):  # never claim success over a dead daemon
        dead = [d for d in daemons(inst) if running_pid(inst, d.name) is None]
        fail_daemon(inst, dead[0], "died after start-up")
    say(
        f"cluster {inst.name!r} is up in {time.monotonic() - started:.0f}s: nodes "
        f"{', '.join(inst.nodes)} in partition bare, {', '.join(inst.guests() or inst.nodes)} in vm"
    )
    say(f"use it with: export SLURM_CONF={inst.slurm_conf}")
    return EXIT_OK


def cmd_reconfigure(inst: Instance) -> int:
    """scontrol reconfigure, then wait until every node's slurmd runs the new slurm.conf.

    Slurm 23.11 and later restart slurmctld and every slurmd in place, and
    `scontrol reconfigure` returns before they have: for a moment the old slurmctld
    still answers (nodes idle) and the old slurmd still starts jobs, with the old
    Prolog= (seen on Debian 13: a test's job ran the hooks of the config before).
    There the wait is for each node's SlurmdStartTime to reach the request. Before
    23.11 slurmd re-reads slurm.conf in place: the wait is for the nodes to serve.
    """
    restarts = slurm_version() >= (23, 11)
    asked = math.floor(time.time())  # SlurmdStartTime has whole seconds
    proc = run(["scontrol", "reconfigure"], env=inst.client_env(), check=False, timeout=60)
    if proc.returncode != 0:
        raise ClusterError(f"scontrol reconfigure failed: {proc.stderr.strip()}")

    def reconfigured() -> bool:
        states, started = node_states(inst), slurmd_start_times(inst)
        return all(
            node_serving(states.get(node, "")) and (not restarts or started.get(node, 0.0) >= asked)
            for node in inst.all_nodes()
        )

    if not wait_until(reconfigured, NODES_TIMEOUT, interval=0.5):
        raise ClusterError(
            f"the nodes did not come back with the new configuration within "
            f"{NODES_TIMEOUT:.0f}s after scontrol reconfigure: {node_states(inst)}"
        )
    say("reconfigured: every slurmd runs the new slurm.conf")
    return EXIT_OK


def cmd_down(inst: Instance) -> int:
    require_root()
    names = [d.name for d in reversed(daemons(inst))]
    # Agents started by a Python that has slurm-ai (e.g. a venv) must stop even
    # when `down` runs under one that lacks it and so does not list them.
    agents = [f"agent-{n}" for n in inst.nodes if pid_file(inst, f"agent-{n}").exists()]
    names = [a for a in agents if a not in names] + names
    stopped = [name for name in names if stop(inst, name)]
    if vm.network_down(inst.vm_net):
        stopped.append(f"guest network {inst.vm_net.netns}")
    for line in remove_node_cgroups(inst):
        say(f"note: node cgroup left behind: {line}")
    if stopped:
        say(f"stopped {', '.join(stopped)}")
    else:
        say(f"nothing of instance {inst.name!r} at {inst.prefix} was running")
    return EXIT_OK


def cmd_status(inst: Instance) -> int:
    up = 0
    all_daemons = daemons(inst)
    for daemon in all_daemons:
        pid = running_pid(inst, daemon.name)
        state = f"running (pid {pid})" if pid else "stopped"
        port = f" port {daemon.port}" if daemon.port else ""
        print(f"{daemon.name:<12} {state}{port}")
        up += pid is not None
    nodes_ok = False
    if running_pid(inst, "slurmctld") is not None:
        states = node_states(inst)
        for node in inst.all_nodes():
            boot = vm.boot_seconds(inst.prefix, node) if node in inst.guests() else None
            kind = "KVM guest" if boot is not None and inst.vm_setup()["accel"] == "kvm" else (
                "emulated guest")  # fmt: skip
            booted = f" ({kind}, booted in {boot:.1f}s)" if boot is not None else ""
            print(f"node {node:<7} {states.get(node, 'missing')}{booted}")
        nodes_ok = all(node_serving(states.get(n, "")) for n in inst.all_nodes())
    reason = vm.reason_file(inst.prefix)
    if reason.exists():
        print(reason.read_text().strip())
    if up == len(all_daemons) and nodes_ok:
        print(f"cluster {inst.name}: up (SLURM_CONF={inst.slurm_conf})")
        return EXIT_OK
    print(f"cluster {inst.name}: {'stopped' if up == 0 else 'partial'}")
    return EXIT_DOWN


def cmd_logs(inst: Instance, which: str | None, lines: int) -> int:
    known = {d.name: d for d in daemons(inst)}
    extra = guest_logs(inst)
    if which is not None and which not in known and which not in extra:
        raise ClusterError(
            f"unknown daemon {which!r}; one of: {', '.join([*known, *extra])}", EXIT_USAGE
        )
    for name, path in extra.items():
        if which in (None, name):
            print(f"==> {path} <==")
            print(tail(path, lines))
    for name, daemon in known.items():
        if which in (None, name):
            print(f"==> {daemon.log} <==")
            print(tail(daemon.log, lines))
            # stdout/stderr repeats the log of a running daemon: show it only
            # when the daemon died before writing its log.
            out = out_file(inst, name)
            log_empty = not daemon.log.exists() or daemon.log.stat().st_size == 0
            if log_empty and out.exists() and out.stat().st_size > 0:
                print(f"==> {out} <==")
                print(tail(out, lines))
    return EXIT_OK


def cmd_env(inst: Instance) -> int:
    print(f"export SLURM_CONF={inst.slurm_conf}")
    return EXIT_OK


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="localcluster", description=DESCRIPTION)
    parser.add_argument(
        "--prefix",
        default=env.get("SLURM_AI_CLUSTER_PREFIX", DEFAULT_PREFIX),
        help=f"instance directory (env SLURM_AI_CLUSTER_PREFIX; default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(env.get("SLURM_AI_CLUSTER_PORT_BASE", DEFAULT_PORT_BASE)),
        help="first of the ports used: slurmctld, mysqld, slurmdbd, the VM guests' slurmd, "
        "then one slurmd per node (N+4 ports with --nodes N; instances' port bases must be "
        "at least that far apart, 10 leaves room for 6 nodes) "
        f"(env SLURM_AI_CLUSTER_PORT_BASE; default {DEFAULT_PORT_BASE})",
    )
    parser.add_argument(
        "--name",
        default=env.get("SLURM_AI_CLUSTER_NAME", DEFAULT_NAME),
        help=f"ClusterName (env SLURM_AI_CLUSTER_NAME; default {DEFAULT_NAME})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="install packages if needed and start the cluster")
    up.add_argument(
        "--vms",
        choices=("auto", "any", "tcg", "off"),
        default=env.get("SLURM_AI_CLUSTER_VMS", "auto"),
        help="run the vm partition in KVM guests where KVM works (auto, the default), "
        "in emulated guests (tcg: slow, for testing where KVM cannot boot them), in KVM "
        "guests where KVM works and emulated ones elsewhere (any), or never (off); "
        "env SLURM_AI_CLUSTER_VMS",
    )
    shape = up.add_mutually_exclusive_group()
    shape.add_argument(
        "--production",
        dest="shape",
        action="store_const",
        const="production",
        help="the shape of a shared GPU site: cgroup-confined shared nodes (proctrack/cgroup, "
        "task/cgroup, CR_Core_Memory, PrologFlags=Alloc,Contain), 2 fake GPUs per node as "
        "GRES under ConstrainDevices, a node-local /var/spool (docs/localcluster.md); "
        "the default",
    )
    shape.add_argument(
        "--lab",
        dest="shape",
        action="store_const",
        const="lab",
        help="the lab shape: whole CPUs, no cgroups, no GRES, one spool for all nodes "
        "(env SLURM_AI_CLUSTER_SHAPE=lab|production; default: what the last `up` used, "
        "else production)",
    )
    up.add_argument(
        "--nodes",
        type=int,
        default=None,
        help=f"number of host nodes n1..nN (env SLURM_AI_CLUSTER_NODES; default: what the "
        f"last `up` of this instance used, else {DEFAULT_NODES}); a running instance with "
        "another count must go `down` first",
    )
    sub.add_parser("down", help="stop the daemons this instance started")
    sub.add_parser(
        "reconfigure",
        help="scontrol reconfigure, and wait until every slurmd runs the new slurm.conf",
    )
    sub.add_parser("status", help="show daemons and nodes; exit 3 unless all up")
    logs = sub.add_parser("logs", help="show the tail of the daemon logs")
    logs.add_argument(
        "daemon",
        nargs="?",
        help="one of munged, mysqld, slurmdbd, slurmctld, slurmd-n1, slurmd-n2, "
        "and with VM nodes vm-v1, vm-v2 (serial consoles), slurmd-v1, slurmd-v2 ...",
    )
    logs.add_argument("-n", "--lines", type=int, default=20)
    sub.add_parser("env", help="print the export line for SLURM_CONF")
    node = sub.add_parser("_node-exec", help=argparse.SUPPRESS)
    node.add_argument("node")
    node.add_argument("argv", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def make_instance(args: argparse.Namespace) -> Instance:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", args.name):
        raise ClusterError(
            f"bad --name {args.name!r}: lower-case letters, digits, "
            "underscore (a Slurm ClusterName)",
            EXIT_USAGE,
        )
    inst = recorded_instance(Instance(Path(args.prefix).absolute(), args.port_base, args.name))
    if args.command == "up":
        nodes = args.nodes
        if nodes is None and os.environ.get("SLURM_AI_CLUSTER_NODES"):
            try:
                nodes = int(os.environ["SLURM_AI_CLUSTER_NODES"])
            except ValueError:
                raise ClusterError(
                    f"bad SLURM_AI_CLUSTER_NODES {os.environ['SLURM_AI_CLUSTER_NODES']!r}: "
                    "a number of nodes",
                    EXIT_USAGE,
                ) from None
        if nodes is not None:
            if not 1 <= nodes <= MAX_NODES:
                raise ClusterError(f"bad --nodes {nodes}: 1..{MAX_NODES}", EXIT_USAGE)
            inst = dataclasses.replace(inst, node_count=nodes)
        shape = args.shape or os.environ.get("SLURM_AI_CLUSTER_SHAPE") or None
        if shape is not None:
            if shape not in SHAPES:
                raise ClusterError(
                    f"bad SLURM_AI_CLUSTER_SHAPE {shape!r}: one of {', '.join(SHAPES)}", EXIT_USAGE
                )
            inst = dataclasses.replace(inst, shape=shape)
    last = 65535 - port_span(inst.node_count) + 1
    if not 1024 <= args.port_base <= last:
        raise ClusterError(f"bad --port-base {args.port_base}: 1024..{last}", EXIT_USAGE)
    if args.command == "_node-exec" and args.node not in inst.nodes:
        raise ClusterError(
            f"unknown node {args.node!r}: one of {', '.join(inst.nodes)}", EXIT_USAGE
        )
    return inst


def main(argv: Sequence[str]) -> int:
    try:
        args = parse_args(argv)
        inst = make_instance(args)
        if args.command == "up":
            return cmd_up(inst, args.vms)
        if args.command == "down":
            return cmd_down(inst)
        if args.command == "reconfigure":
            return cmd_reconfigure(inst)
        if args.command == "status":
            return cmd_status(inst)
        if args.command == "logs":
            return cmd_logs(inst, args.daemon, args.lines)
        if args.command == "env":
            return cmd_env(inst)
        if args.command == "_node-exec":
            node_argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            cmd_node_exec(inst, args.node, node_argv)
        return EXIT_USAGE
    except ClusterError as err:
        print(f"localcluster: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
