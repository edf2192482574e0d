"""The host's side of the VM nodes (guests of the `vm` partition): their QEMU daemons,
packages, the decision whether this `up` runs them, and waiting for their boot."""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

from . import vm
from .common import run, say, wait_until, write_if_changed
from .instance import Instance
from .processes import Daemon, fail_daemon, running_pid


def vm_daemons(inst: Instance) -> list[Daemon]:
    """One QEMU per VM node (none when this instance runs without them)."""
    guests = inst.guests()
    if not guests:
        return []
    setup = inst.vm_setup()
    image, accel = vm.RootImage(Path(setup["image"])), setup["accel"]
    return [
        Daemon(
            f"vm-{node}",
            vm.qemu_argv(inst.prefix, inst.vm_net, image, node, accel),
            vm.console_log(inst.prefix, node),
            None,
            functools.partial(vm.guest_ready, inst.prefix, node),
            vm.BOOT_TIMEOUT[accel],
        )
        for node in guests
    ]


def guest_logs(inst: Instance) -> dict[str, Path]:
    """Logs the guests write through the prefix share (slurmd, munged, agent)."""
    return {
        f"{what}-{node}": inst.log_dir / (f"slurmd-{node}.log" if what == "slurmd"
                                          else f"{what}-{node}.out")
        for node in inst.guests()
        for what in ("slurmd", "munged", "agent")
    }  # fmt: skip


def ensure_vm_packages() -> None:
    """QEMU, debootstrap and friends; missing and not installable: no VM nodes."""
    missing = [
        p for p in vm.HOST_PACKAGES
        if "install ok installed" not in run(["dpkg-query", "-W", "-f=${Status}", p],
                                             check=False).stdout
    ]  # fmt: skip
    if not missing:
        return
    say(f"installing Debian packages for the VM nodes: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        if run(argv, env=env, check=False, timeout=1800).returncode != 0:
            raise vm.VmUnavailable(f"cannot install {' '.join(missing)} ({' '.join(argv[:2])})")


def prepare_vms(inst: Instance, mode: str) -> None:
    """Decide whether this `up` runs VM nodes: image, network and marker when it
    does; one line saying why not (kept in vm-nodes.reason) when it does not."""
    reason = vm.reason_file(inst.prefix)
    accel = "tcg" if mode == "tcg" else "kvm"
    try:
        if mode == "off":
            raise vm.VmUnavailable("VM nodes are off (--vms off or SLURM_AI_CLUSTER_VMS=off)")
        problem = vm.kvm_problem() if accel == "kvm" else None
        if problem is not None and mode == "any":  # KVM where it works, else emulation
            say(f"no KVM guests: {problem}; emulating them instead (--vms any)")
            accel, problem = "tcg", None
        if problem is not None:
            raise vm.VmUnavailable(problem)
        ensure_vm_packages()
        image, built_s = vm.ensure_image(say)
        if built_s is not None:
            say(f"VM root file system built in {built_s:.0f}s: {image.directory}")
        vm.network_up(inst.vm_net)
    except vm.VmUnavailable as err:
        inst.vm_marker.unlink(missing_ok=True)
        line = f"no VM nodes: {err}"
        write_if_changed(reason, line + "\n")
        say(f"{line}; partition vm runs on {', '.join(inst.nodes)}")
        return
    reason.unlink(missing_ok=True)
    if accel == "tcg":
        say("VM nodes run emulated (QEMU TCG): real guests, but their speed says nothing "
            "about KVM's")  # fmt: skip
    write_if_changed(inst.vm_marker, json.dumps({"image": str(image.directory), "accel": accel}))
    vm.write_guest_files(inst.prefix, inst.vm_net, inst.slurm_conf)


def wait_for_guests(inst: Instance, started: float) -> None:
    """Every guest printed its ready line, or fail naming it with its console."""
    for daemon in vm_daemons(inst):
        node = daemon.name.removeprefix("vm-")
        left = max(1.0, daemon.timeout - (time.monotonic() - started))
        alive = functools.partial(lambda name: running_pid(inst, name) is not None, daemon.name)
        if not wait_until(daemon.ready, left, alive=alive):
            why = "exited while booting" if not alive() else (
                f"did not boot within {daemon.timeout:.0f}s")  # fmt: skip
            fail_daemon(inst, daemon, f"(guest {node}) {why}")
        boot = vm.boot_seconds(inst.prefix, node)
        say(f"guest {node} booted in {time.monotonic() - started:.1f}s "
            f"(its kernel: {boot if boot is not None else '?'}s to slurmd)")  # fmt: skip
