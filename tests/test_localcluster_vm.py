"""scripts/localcluster_lib/vm.py without a cluster: the guest network plan, the
root-image cache key, the mirror and route parsing, the guests' slurm.conf lines."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from localcluster_lib import vm

# `ip -4 -o route show table all` of a container host (recorded).
ROUTES = """\
default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1
local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2
"""


def test_each_port_base_gets_its_own_private_subnet() -> None:
    bases = range(6817, 6817 + 10 * 200, 10)  # instances are at least 10 ports apart
    subnets = [vm.VmNet(b).subnet for b in bases]
    assert len(set(subnets)) == len(subnets)
    for subnet in subnets:
        assert subnet.prefixlen == 24 and subnet.is_private
        assert subnet.subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))


def test_host_and_guests_are_distinct_addresses_of_the_subnet() -> None:
    net = vm.VmNet(7417)
    addrs = [net.host_addr, *(net.guest_addr(g) for g in vm.GUESTS)]
    assert len(set(addrs)) == len(addrs)
    assert all(ipaddress.IPv4Address(a) in net.subnet for a in addrs)
    assert net.host_addr.endswith(".1")


def test_interface_names_fit_the_kernel_limit_and_macs_are_local() -> None:
    for base in (1024, 6817, 65528):
        net = vm.VmNet(base)
        assert len(net.ifname) <= 15 and len(net.netns) <= 15
        macs = {net.guest_mac(g) for g in vm.GUESTS}
        assert len(macs) == len(vm.GUESTS)
        for mac in macs:
            first = int(mac.split(":")[0], 16)
            assert not first & 1  # unicast
            assert len(mac.split(":")) == 6


def test_image_key_follows_every_input() -> None:
    base = vm.image_inputs("bookworm", "http://mirror.invalid/debian")
    same = vm.image_for(dict(base))
    assert vm.image_for(base) == same
    changed = [
        {**base, "release": "trixie"},
        {**base, "mirror": "http://other.invalid/debian"},
        {**base, "packages": [*base["packages"], "strace"]},  # type: ignore[list-item]
        {**base, "init": str(base["init"]) + "\n# changed"},
        {**base, "format": vm.ROOTFS_FORMAT + 1},
    ]
    dirs = {vm.image_for(c).directory for c in changed}
    assert same.directory not in dirs and len(dirs) == len(changed)
    assert same.directory.parent == vm.CACHE_ROOT


def test_image_is_incomplete_until_every_file_is_there(tmp_path: Path) -> None:
    image = vm.RootImage(tmp_path / "img")
    image.directory.mkdir()
    for path in (image.kernel, image.initrd, image.root):
        assert not image.complete()
        path.write_bytes(b"x")
    assert not image.complete()  # no stamp: a build that died half-way
    image.stamp.write_text("{}")
    assert image.complete()


def test_mirror_comes_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.invalid/archive/debian/2025\n"
        "URIs: http://mirror.invalid/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
    )
    assert vm.host_mirror(tmp_path) == "http://mirror.invalid/debian"


def test_mirror_comes_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian/ bookworm main\n"
    )
    assert vm.host_mirror(tmp_path) == "http://mirror.invalid/debian/"


def test_no_mirror_is_a_one_line_reason(tmp_path: Path) -> None:
    with pytest.raises(vm.VmUnavailable, match="no Debian mirror"):
        vm.host_mirror(tmp_path)


def test_guest_subnet_is_free_on_a_usual_host() -> None:
    assert vm.subnet_conflict(ROUTES, vm.VmNet(7417)) is None


def test_a_route_over_the_guest_subnet_is_named() -> None:
    net = vm.VmNet(7417)
    routes = ROUTES + "10.0.0.0/8 via 192.0.2.1 dev eth0\n"
    assert vm.subnet_conflict(routes, net) == "10.0.0.0/8 via 192.0.2.1 dev eth0"


def test_our_own_route_is_no_conflict() -> None:
    net = vm.VmNet(7417)
    own = f"{net.subnet} dev {net.ifname} proto kernel scope link src {net.host_addr}\n"
    assert vm.subnet_conflict(ROUTES + own, net) is None


def test_guest_node_lines_name_their_own_addresses() -> None:
    net = vm.VmNet(7417)
    lines = vm.slurm_conf_lines(net)
    assert len(lines) == len(vm.GUESTS)
    for node, line in zip(vm.GUESTS, lines, strict=True):
        fields = dict(f.split("=", 1) for f in line.split())
        assert fields["NodeName"] == node and fields["NodeHostname"] == node
        assert fields["NodeAddr"] == net.guest_addr(node)
        assert fields["CPUs"] == str(vm.GUEST_VCPUS)
        assert int(fields["RealMemory"]) < vm.GUEST_MEMORY_MB


def test_qemu_runs_in_the_namespace_with_kvm_and_a_throwaway_disk(tmp_path: Path) -> None:
    net = vm.VmNet(7417)
    image = vm.RootImage(tmp_path / "img")
    argv = vm.qemu_argv(tmp_path / "prefix", net, image, "v1")
    assert argv[:4] == ("ip", "netns", "exec", net.netns)
    joined = " ".join(argv)
    assert "accel=kvm" in joined
    assert f"file={image.root},if=virtio,format=raw,snapshot=on" in argv
    assert f"mac={net.guest_mac('v1')}" in joined
    # Writable: the prefix and the checkout (jobs start there); the Python is read-only.
    shares = [argv[i + 1] for i, a in enumerate(argv) if a == "-virtfs"]
    assert shares[0].startswith(f"local,path={tmp_path / 'prefix'},mount_tag=prefix,")
    checkout = Path(vm.__file__).resolve().parents[2]
    writable = {s.split(",")[1] for s in shares if "readonly=on" not in s}
    assert writable == {f"path={tmp_path / 'prefix'}", f"path={checkout}"}, shares
    python = Path(sys.base_prefix).resolve()
    assert any(
        python.is_relative_to(s.split(",")[1].removeprefix("path=")) and "readonly=on" in s
        for s in shares
    ), shares


def test_shared_code_paths_cover_python_and_checkout_without_nesting() -> None:
    paths = vm.shared_code_paths()
    for path in paths:
        assert not any(path != o and path.is_relative_to(o) for o in paths)
    needed = [Path(sys.executable).resolve(), Path(vm.__file__).resolve()]
    for target in needed:
        assert any(target.is_relative_to(p) for p in paths), (target, paths)


def test_kvm_problem_is_none_or_one_line() -> None:
    problem = vm.kvm_problem()
    if not Path("/dev/kvm").exists():
        assert problem is not None and "/dev/kvm" in problem
    if problem is not None:
        assert "\n" not in problem and "/dev/kvm" in problem


def test_pvm_backed_kvm_is_named_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "kvm").mkdir()
    (tmp_path / "kvm_pvm").mkdir()
    problem = vm.kvm_problem(tmp_path)
    assert problem is not None and "\n" not in problem
    assert "kvm_pvm" in problem and "--vms tcg" in problem


def test_hardware_kvm_module_leaves_the_answer_to_dev_kvm(tmp_path: Path) -> None:
    (tmp_path / "kvm_intel").mkdir()
    (tmp_path / "kvm_pvm").mkdir()  # loaded too, but hardware KVM is there
    problem = vm.kvm_problem(tmp_path)
    assert problem is None or problem.startswith("/dev/kvm")
