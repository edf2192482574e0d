"""The `vm` partition of the local cluster as real KVM guests (v1, v2).

What it builds, and the rules it keeps:

- Root file system: Debian (the host's release, from the host's own apt
  mirror) made by debootstrap with a Debian kernel, slurmd, munge and Open MPI,
  packed into an ext4 image with `mkfs.ext4 -d` (no loop mount needed).  It is
  cached under /var/tmp/slurm-ai-vm/<key>, where key hashes every input
  (release, mirror, package list, the guest's init script): a changed input
  builds a new image, an unchanged one is reused.  Guests boot that image with
  `snapshot=on`, so it is never written and each boot starts clean.
- Guests: QEMU with KVM, GUEST_VCPUS vCPUs and GUEST_MEMORY_MB each (the machine is
  shared), virtio disk/net/rng, 9p shares for the instance prefix (read-write:
  configs, logs, the tests' shared dir) and, read-only at the same paths, the
  checkout, the Python environment and the slurm-ai package: slurmd, the hooks
  and the agent in a guest run the host's code.  The serial console goes to
  <prefix>/log/vm-<node>.console.
- Network: only between this host and its own guests.  The script creates a
  network namespace holding a bridge and one tap per guest; a veth pair joins
  it to the host, whose end gets .1 of a /24 derived from the port base.
  Guests get no default route, so they reach nothing but the host and each
  other.  The host-side veth and the guests' NIC carry the same name, so MPI
  and gloo can be told one interface name for every node.
- Where KVM cannot run a guest (no /dev/kvm, no permission, no QEMU, no netns,
  no root fs), `unavailable_reason` says why in one line; `up` prints it and
  starts the cluster without VM nodes, and the `vm` partition falls back to
  the host's nodes.  The line is kept in <prefix>/etc/vm-nodes.reason for tests.

The guest side (`guest_boot`) runs as PID 1 in the guest after the small init
script has mounted the shares: it configures the network, starts munged,
slurmd and the agent, and reaps children forever.

Standard library only, like scripts/localcluster; run as a script by the guest's init
(`python3 scripts/localcluster_lib/vm.py guest-boot`), so it imports nothing of its package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

GUESTS = ("v1", "v2")
MIXED_PARTITION = "across"  # hidden partition holding host nodes and guests
# Two vCPUs, like the host's nodes (CPUs=2 each on this 2-core machine): the
# same job shapes fit both partitions (the fine-tuning template runs 2 tasks
# on one node) and the comparison is fair.  Idle vCPUs cost the host nothing.
GUEST_VCPUS = 2
GUEST_MEMORY_MB = 1280
GUEST_REAL_MEMORY_MB = 1024  # what slurm.conf promises; the kernel keeps the rest
CACHE_ROOT = Path("/var/tmp/slurm-ai-vm")
ROOTFS_FORMAT = 1  # bump when the build steps change in a way the key cannot see
ROOT_IMAGE_MB = 2048
# Seconds from QEMU start to the guest's "up" line, by accelerator (emulated
# guests on a busy 2-core machine are slow).
BOOT_TIMEOUT = {"kvm": 180.0, "tcg": 600.0}
ACCELS = ("kvm", "tcg")
READY_LINE = "sai-vm: up"
HOST_PACKAGES = ("qemu-system-x86", "debootstrap", "e2fsprogs", "iproute2")
# What a guest needs: a kernel, Slurm's node side, munge, Open MPI with PMIx,
# and the shared libraries the host's Python (shared in by 9p) links against.
GUEST_PACKAGES = (
    "linux-image-amd64",
    "slurmd",
    "slurm-client",
    "munge",
    "openmpi-bin",
    "libpmix2",
    "iproute2",
    "kmod",
    "procps",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "libbz2-1.0",
    "liblzma5",
    "zlib1g",
    "libncursesw6",
    "libreadline8",
    "libgdbm6",
    "libexpat1",
)
# Debian 13 renamed these for the 64-bit time_t transition (debootstrap finds no libssl3
# there: the first Debian 13 run of the VM step failed so); releases before it keep the
# old names.
T64_NAMES = {
    "libpmix2": "libpmix2t64",
    "libssl3": "libssl3t64",
    "libreadline8": "libreadline8t64",
    "libgdbm6": "libgdbm6t64",
}
RELEASES_BEFORE_T64 = ("buster", "bullseye", "bookworm")


def guest_packages(release: str) -> tuple[str, ...]:
    """GUEST_PACKAGES under the names Debian `release` gives them."""
    if release in RELEASES_BEFORE_T64:
        return GUEST_PACKAGES
    return tuple(T64_NAMES.get(name, name) for name in GUEST_PACKAGES)


# /sbin/sai-init in the image: PID 1 until the host's Python can run.  It only
# mounts what Python needs and then hands over to guest_boot (in the checkout,
# so changing the boot logic does not rebuild the image).
GUEST_INIT = r"""#!/bin/sh
# slurm-ai VM node init: mount the kernel file systems and the 9p shares, then
# hand over to the host's Python (scripts/localcluster_vm.py guest-boot).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for mod in virtio_net 9pnet_virtio 9p; do modprobe "$mod"; done
opts=trans=virtio,version=9p2000.L,msize=524288
mkdir -p "$sai_prefix"
mount -t 9p -o "$opts" prefix "$sai_prefix" || { echo "sai-vm: cannot mount prefix"; sleep 5; exit 1; }
# tag path ro|rw: code read-only and cached; a writable share stays coherent.
while read -r tag path mode; do
  case "$mode" in rw) extra="" ;; *) extra=",ro,cache=loose" ;; esac
  mkdir -p "$path" && mount -t 9p -o "$opts$extra" "$tag" "$path"
done < "$sai_prefix/vm/$sai_node.mounts"
. "$sai_prefix/vm/$sai_node.boot"
exec "$SAI_PYTHON" "$SAI_SCRIPT" guest-boot "$sai_prefix" "$sai_node"
"""


class VmUnavailable(Exception):
    """VM nodes cannot run here; the message is the one line `up` prints."""


@dataclasses.dataclass(frozen=True)
class VmNet:
    """Addresses of one instance's guest network (derived from its port base)."""

    port_base: int

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        # One /24 per port base (bases are at least 10 apart, so never shared).
        return ipaddress.IPv4Network(
            f"10.{(self.port_base >> 8) & 255}.{self.port_base & 255}.0/24"
        )

    @property
    def host_addr(self) -> str:
        return str(self.subnet.network_address + 1)

    def guest_addr(self, node: str) -> str:
        return str(self.subnet.network_address + 11 + GUESTS.index(node))

    @property
    def netns(self) -> str:
        return f"sai{self.port_base}"

    @property
    def ifname(self) -> str:
        """Host-side veth and each guest's NIC: one name for MPI/gloo on all nodes."""
        return f"sai{self.port_base}"

    @property
    def slurmd_port(self) -> int:
        return self.port_base + 3  # the instance's port plan: see localcluster_lib/instance.py

    def guest_mac(self, node: str) -> str:
        index = GUESTS.index(node) + 1
        return f"52:54:00:{(self.port_base >> 8) & 255:02x}:{self.port_base & 255:02x}:{index:02x}"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _run(argv: Sequence[str], timeout: float = 60.0, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise VmUnavailable(f"{' '.join(argv[:3])} failed (exit {proc.returncode}): {last[0]}")
    return proc.stdout


def kvm_problem(sys_module: Path = Path("/sys/module")) -> str | None:
    """Why /dev/kvm cannot run a Debian guest here, or None when it can.

    A VM is created and destroyed through the KVM API, as QEMU would.  That is
    not enough: a KVM backed by PVM (kvm_pvm, nested virtualization without
    VMX/SVM, as in some cloud sandboxes) creates VMs but runs only PVM-built
    guest kernels; a stock Debian kernel hangs right after its real-mode setup.
    Hardware KVM is kvm_intel or kvm_amd."""
    kvm_get_api_version, kvm_create_vm = 0xAE00, 0xAE01
    hardware = [m for m in ("kvm_intel", "kvm_amd") if (sys_module / m).exists()]
    if not hardware and (sys_module / "kvm_pvm").exists():
        return (
            "/dev/kvm is PVM (kvm_pvm), which boots only PVM guest kernels, not Debian's "
            "(`--vms tcg` runs the guests emulated instead)"
        )
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return f"/dev/kvm cannot be opened ({err.strerror})"
    try:
        if fcntl.ioctl(fd, kvm_get_api_version) != 12:
            return "/dev/kvm speaks an unknown KVM API version"
        vm_fd = fcntl.ioctl(fd, kvm_create_vm, 0)
        os.close(vm_fd)
    except OSError as err:
        return f"/dev/kvm cannot create a VM ({err.strerror})"
    finally:
        os.close(fd)
    return None


def host_release() -> str:
    """Debian codename of the host (the guests run the same release)."""
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\w+)", text, re.MULTILINE)
    if not match:
        raise VmUnavailable("cannot tell the Debian release from /etc/os-release")
    return match.group(1)


def host_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the host's apt already uses (deb822 or one-line form)."""
    sources = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in sources:
        with contextlib.suppress(OSError):
            text = path.read_text()
            for match in re.finditer(r"^(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
                uri = match.group(1)
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    raise VmUnavailable("no Debian mirror in /etc/apt sources for debootstrap")


# --------------------------------------------------------------------------
# Root file system: built once per set of inputs
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RootImage:
    """A cached guest image: kernel, initrd and the ext4 root."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def root(self) -> Path:
        return self.directory / "root.ext4"

    @property
    def stamp(self) -> Path:
        return self.directory / "inputs.json"

    def complete(self) -> bool:
        return self.stamp.exists() and all(
            p.exists() for p in (self.kernel, self.initrd, self.root)
        )


def image_inputs(release: str, mirror: str) -> dict[str, object]:
    return {
        "format": ROOTFS_FORMAT,
        "release": release,
        "mirror": mirror,
        "packages": sorted(guest_packages(release)),
        "init": GUEST_INIT,
        "size_mb": ROOT_IMAGE_MB,
    }


def image_for(inputs: dict[str, object]) -> RootImage:
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return RootImage(CACHE_ROOT / f"{inputs['release']}-{key}")


def ensure_image(say: object) -> tuple[RootImage, float | None]:
    """The cached image for today's inputs, built when missing.  Returns the
    image and the build time in seconds (None when it came from the cache)."""
    inputs = image_inputs(host_release(), host_mirror())
    image = image_for(inputs)
    if image.complete():
        return image, None
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE_ROOT, 0o755)
    with open(CACHE_ROOT / ".lock", "w") as lock:  # one builder at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.complete():
            return image, None
        start = time.monotonic()
        if callable(say):
            say(f"building the VM root file system {image.directory} (first run, minutes)")
        _build_image(image, inputs)
        return image, time.monotonic() - start


def _build_image(image: RootImage, inputs: dict[str, object]) -> None:
    work = image.directory.with_name(image.directory.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(image.directory, ignore_errors=True)
    rootfs = work / "rootfs"
    work.mkdir(parents=True)
    log = work / "debootstrap.log"
    packages = ",".join(guest_packages(str(inputs["release"])))
    with open(log, "wb") as out:
        proc = subprocess.run(
            [
                "debootstrap", "--variant=minbase", f"--include={packages}",
                str(inputs["release"]), str(rootfs), str(inputs["mirror"]),
            ],
            stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise VmUnavailable(f"debootstrap failed (exit {proc.returncode}): {last[0]} (see {log})")
    # Slurm's mpi_pmix plugin dlopens the unversioned libpmix.so that only
    # libpmix-dev ships, and that package's dependencies (automake via an
    # alternative) are more than debootstrap resolves: link it by hand.
    for lib in rootfs.glob("usr/lib/*/pmix2/lib/libpmix.so.2"):
        lib.with_name("libpmix.so").symlink_to(lib.name)
    init = rootfs / "sbin" / "sai-init"
    init.write_text(GUEST_INIT)
    os.chmod(init, 0o755)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise VmUnavailable(f"no kernel in {rootfs}/boot after debootstrap")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.exists():
        _run(["chroot", str(rootfs), "update-initramfs", "-c", "-k", version], timeout=600)
    shutil.copy2(kernels[-1], work / "vmlinuz")
    shutil.copy2(initrd, work / "initrd.img")
    # Apt's package cache is not needed at run time: keep the image small.
    for cached in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        cached.unlink()
    _run(
        ["mkfs.ext4", "-q", "-L", "sai-root", "-d", str(rootfs), str(work / "root.ext4"),
         f"{ROOT_IMAGE_MB}M"],
        timeout=900,
    )  # fmt: skip
    shutil.rmtree(rootfs)
    (work / "inputs.json").write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n")
    os.replace(work, image.directory)


# --------------------------------------------------------------------------
# Network: namespace, bridge, taps, veth to the host
# --------------------------------------------------------------------------


def netns_exists(net: VmNet) -> bool:
    return Path(f"/run/netns/{net.netns}").exists()


def subnet_conflict(routes: str, net: VmNet) -> str | None:
    """The route (from `ip -4 -o route show table all`) that already covers the
    guest subnet, or None.  Default routes do not count: a more specific route
    wins, and ours is more specific."""
    for line in routes.splitlines():
        words = line.split()
        if not words:
            continue
        dest = (
            words[1]
            if words[0] in ("local", "broadcast", "unicast") and len(words) > 1
            else words[0]
        )
        if dest == "default" or f" dev {net.ifname} " in f" {line} ":
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.IPv4Network(dest, strict=False).overlaps(net.subnet):
                return line.strip()
    return None


def network_up(net: VmNet) -> None:
    """Create (or keep) the namespace, bridge, taps and veth; idempotent."""
    if netns_exists(net) and _link_exists(net.ifname):
        return
    network_down(net)
    conflict = subnet_conflict(_run(["ip", "-4", "-o", "route", "show", "table", "all"]), net)
    if conflict is not None:
        raise VmUnavailable(f"the guest subnet {net.subnet} is already routed here: {conflict}")
    ns = ["ip", "netns", "exec", net.netns]
    _run(["ip", "netns", "add", net.netns])
    _run([*ns, "ip", "link", "set", "lo", "up"])
    _run([*ns, "ip", "link", "add", "br0", "type", "bridge"])
    _run(["ip", "link", "add", net.ifname, "type", "veth", "peer", "name", "uplink",
          "netns", net.netns])  # fmt: skip
    _run([*ns, "ip", "link", "set", "uplink", "master", "br0"])
    for node in GUESTS:
        _run([*ns, "ip", "tuntap", "add", f"tap-{node}", "mode", "tap"])
        _run([*ns, "ip", "link", "set", f"tap-{node}", "master", "br0"])
        _run([*ns, "ip", "link", "set", f"tap-{node}", "up"])
    _run([*ns, "ip", "link", "set", "uplink", "up"])
    _run([*ns, "ip", "link", "set", "br0", "up"])
    _run(["ip", "addr", "add", f"{net.host_addr}/{net.subnet.prefixlen}", "dev", net.ifname])
    _run(["ip", "link", "set", net.ifname, "up"])


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def network_down(net: VmNet) -> bool:
    """Remove the namespace (taps, bridge and veth go with it)."""
    existed = netns_exists(net) or _link_exists(net.ifname)
    if _link_exists(net.ifname):
        _run(["ip", "link", "del", net.ifname], check=False)
    if netns_exists(net):
        _run(["ip", "netns", "del", net.netns], check=False)
    return existed


# --------------------------------------------------------------------------
# Guests as seen from the host
# --------------------------------------------------------------------------


def vm_dir(prefix: Path) -> Path:
    return prefix / "vm"


def reason_file(prefix: Path) -> Path:
    """One line: why this instance has no VM nodes (absent when it has them)."""
    return prefix / "etc" / "vm-nodes.reason"


def console_log(prefix: Path, node: str) -> Path:
    return prefix / "log" / f"vm-{node}.console"


def shared_code_paths() -> list[Path]:
    """Host paths a guest must see at the same place to run slurmd's hooks, the
    agent and jobs: this checkout, the Python environment (venv and its base, all
    of pyenv when the base is a pyenv version), and the slurm-ai package.
    Outermost paths only."""
    import importlib.util

    base = Path(sys.base_prefix).resolve()
    if base.parent.name == "versions":  # pyenv: its shims on PATH (torchrun) need all of it
        base = base.parent.parent
    candidates = {Path(__file__).resolve().parents[2], Path(sys.prefix).resolve(), base}
    spec = importlib.util.find_spec("slurm_ai")
    if spec is not None and spec.origin:
        candidates.add(Path(spec.origin).resolve().parent.parent)
    paths = sorted(candidates)
    return [p for p in paths if not any(p != o and p.is_relative_to(o) for o in paths)]


def write_guest_files(prefix: Path, net: VmNet, slurm_conf: Path) -> None:
    """Per-guest files the init script and guest_boot read from the prefix share."""
    directory = vm_dir(prefix)
    directory.mkdir(parents=True, exist_ok=True)
    code = shared_code_paths()
    for node in GUESTS:
        checkout = Path(__file__).resolve().parents[2]
        (directory / f"{node}.mounts").write_text(
            "".join(
                f"code{i} {path} {'rw' if path == checkout else 'ro'}\n"
                for i, path in enumerate(code)
            )
        )
        boot = {
            "SAI_PYTHON": sys.executable,
            "SAI_SCRIPT": str(Path(__file__).resolve()),
        }
        (directory / f"{node}.boot").write_text(
            "".join(f"{k}={shlex.quote(v)}\n" for k, v in boot.items())
        )
        config = {
            "node": node,
            "addr": f"{net.guest_addr(node)}/{net.subnet.prefixlen}",
            "ifname": net.ifname,
            "mac": net.guest_mac(node),
            "hosts": hosts_lines(net),
            "slurm_conf": str(slurm_conf),
            "munge_key": str(prefix / "munge" / "munge.key"),
            "munge_dir": str(prefix / "munge"),
            "local_dirs": [str(prefix / "spool" / node), str(prefix / "agent" / node)],
            "agent_store": str(prefix / "agent" / "{node}"),
            "python": sys.executable,
        }
        (directory / f"{node}.json").write_text(json.dumps(config, indent=1) + "\n")


def hosts_lines(net: VmNet, host_nodes: Sequence[str] = ("n1", "n2")) -> list[str]:
    """/etc/hosts lines naming every node by its address on the guest network:
    guests get them as their /etc/hosts, the host's nodes on top of the host's
    (torch's rendezvous, for one, resolves the node's own hostname)."""
    return [
        f"{net.host_addr} {' '.join(host_nodes)}",
        *(f"{net.guest_addr(g)} {g}" for g in GUESTS),
    ]


def qemu_argv(
    prefix: Path, net: VmNet, image: RootImage, node: str, accel: str = "kvm"
) -> tuple[str, ...]:
    """QEMU for one guest, started inside the instance's network namespace
    (`ip netns exec` execs QEMU, so the recorded pid is QEMU's).  accel is kvm
    (hardware virtualization, the CPU passed through) or tcg (emulation)."""
    shares: list[str] = [
        "-virtfs", f"local,path={prefix},mount_tag=prefix,security_model=passthrough,id=prefix",
    ]  # fmt: skip
    checkout = Path(__file__).resolve().parents[2]
    for i, path in enumerate(shared_code_paths()):
        # The checkout is where jobs of tests and the demo start (their cwd,
        # where sbatch writes slurm-%j.out): writable, as on the host's nodes.
        readonly = "" if path == checkout else "readonly=on,"
        shares += [
            "-virtfs",
            f"local,path={path},mount_tag=code{i},security_model=passthrough,{readonly}id=code{i}",
        ]
    cmdline = (
        f"root=/dev/vda rw console=ttyS0 panic=-1 init=/sbin/sai-init "
        f"sai_prefix={prefix} sai_node={node}"
    )
    return (
        "ip", "netns", "exec", net.netns,
        "qemu-system-x86_64", "-name", f"sai-{node}", "-machine", f"q35,accel={accel}",
        "-cpu", "host" if accel == "kvm" else "max", "-smp", str(GUEST_VCPUS), "-m", str(GUEST_MEMORY_MB),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{console_log(prefix, node)}",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline,
        "-drive", f"file={image.root},if=virtio,format=raw,snapshot=on",
        "-netdev", f"tap,id=net0,ifname=tap-{node},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={net.guest_mac(node)}",
        "-device", "virtio-rng-pci",
        *shares,
    )  # fmt: skip


def guest_ready(prefix: Path, node: str) -> bool:
    try:
        return READY_LINE in console_log(prefix, node).read_text(errors="replace")
    except OSError:
        return False


def boot_seconds(prefix: Path, node: str) -> float | None:
    """The guest's own boot time (kernel start to slurmd started), from its console."""
    with contextlib.suppress(OSError):
        text = console_log(prefix, node).read_text(errors="replace")
        match = re.search(re.escape(READY_LINE) + r" after ([\d.]+) s", text)
        if match:
            return float(match.group(1))
    return None


def slurm_conf_lines(net: VmNet, cpus: int = GUEST_VCPUS) -> list[str]:
    """NodeName lines of the guests (their own addresses; one slurmd port)."""
    return [
        f"NodeName={node} NodeAddr={net.guest_addr(node)} NodeHostname={node} "
        f"Port={net.slurmd_port} CPUs={cpus} RealMemory={GUEST_REAL_MEMORY_MB} State=UNKNOWN"
        for node in GUESTS
    ]


def pmix_env(net: VmNet) -> str:
    """Open MPI must use the guest network: the one interface name every node has."""
    return f"OMPI_MCA_btl_tcp_if_include={net.ifname}"


# --------------------------------------------------------------------------
# Inside the guest (PID 1)
# --------------------------------------------------------------------------


def _console(message: str) -> None:
    print(f"sai-vm: {message}", flush=True)


def guest_boot(prefix: Path, node: str) -> None:
    """Configure the guest, start munged, slurmd and the agent, then reap."""
    config = json.loads((vm_dir(prefix) / f"{node}.json").read_text())
    import socket

    socket.sethostname(node)
    # NIC: rename to the shared interface name, give it its address; no route out.
    nic = next(
        p.name
        for p in Path("/sys/class/net").iterdir()
        if p.name != "lo" and (p / "address").read_text().strip() == config["mac"]
    )
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", nic, "name", config["ifname"]],
        ["ip", "addr", "add", config["addr"], "dev", config["ifname"]],
        ["ip", "link", "set", config["ifname"], "up"],
    ):
        subprocess.run(argv, check=True)
    Path("/etc/hosts").write_text("\n".join(["127.0.0.1 localhost", *config["hosts"]]) + "\n")
    Path("/etc/hostname").write_text(node + "\n")
    # Sockets, sqlite and the spool stay on guest-local tmpfs, not on 9p.
    munge_dir = Path(config["munge_dir"])
    key = Path(config["munge_key"]).read_bytes()
    for path in [munge_dir, *map(Path, config["local_dirs"])]:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(path)], check=True)
    key_path = munge_dir / "munge.key"
    key_path.write_bytes(key)
    os.chmod(key_path, 0o400)
    # Slurm's cgroup/v2 plugin without systemd (IgnoreSystemd=yes) puts its
    # stepd scope under system.slice, which must exist, with the controllers
    # it delegates enabled from the root down.
    cgroup = Path("/sys/fs/cgroup")
    controllers = " ".join(f"+{c}" for c in (cgroup / "cgroup.controllers").read_text().split())
    (cgroup / "system.slice").mkdir(exist_ok=True)
    for level in (cgroup, cgroup / "system.slice"):
        (level / "cgroup.subtree_control").write_text(controllers)
    env = dict(os.environ, SLURM_CONF=config["slurm_conf"], PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    log_dir = prefix / "log"

    def start(name: str, argv: list[str]) -> None:
        out = open(log_dir / f"{name}-{node}.out", "ab")  # noqa: SIM115 (child keeps it)
        subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        out.close()

    start("munged", ["munged", "--foreground", "--force", f"--socket={munge_dir}/munged.sock",
                     f"--key-file={key_path}", f"--pid-file={munge_dir}/munged.pid",
                     f"--seed-file={munge_dir}/munged.seed", "--log-file=/dev/null"])  # fmt: skip
    for _ in range(100):
        if (munge_dir / "munged.sock").exists():
            break
        time.sleep(0.1)
    start("slurmd", ["slurmd", "-D", "-N", node, "-f", config["slurm_conf"]])
    start("agent", [config["python"], "-m", "slurm_ai", "agent", "--node", node,
                    "--store", config["agent_store"], "--interval", "5"])  # fmt: skip
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    _console(f"up after {uptime:.1f} s (slurmd, munged, agent started)")
    while True:  # PID 1: reap every orphan
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(1)


def main(argv: Sequence[str]) -> int:
    if len(argv) == 3 and argv[0] == "guest-boot":
        guest_boot(Path(argv[1]), argv[2])
        return 0
    print("usage: vm.py guest-boot PREFIX NODE (run by the guest's init)")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
