"""Network devices from /sys/class/net and /sys/class/infiniband.

One `Nic` per PCI function: an RDMA device (mlx5_0) and its netdev (ibp24s0)
become one entry. Virtual interfaces (lo, bridges, veth, ifb) are skipped: they
carry no placement information.
"""

from __future__ import annotations

from slurm_ai.sysfs import Sysfs
from slurm_ai.topology.model import Nic
from slurm_ai.topology.pci import BDF, device_locality, path_of

NET = "/sys/class/net"
IB = "/sys/class/infiniband"

# PCI ids of SR-IOV virtual functions (mlx5 VFs of ConnectX-4..7, AWS ENA) and
# VF-only drivers: a VF seen from inside a guest has no physfn link.
VF_PCI_IDS = {
    ("0x15b3", dev)
    for dev in ("0x1012", "0x1014", "0x1016", "0x1018", "0x101a", "0x101c", "0x101e")
} | {("0x1d0f", "0xec20"), ("0x1d0f", "0xec21")}
CRAY_VENDOR = "0x17db"  # HPE Cray Cassini (Slingshot 11)
AWS_VENDOR = "0x1d0f"
VF_DRIVERS = {"iavf", "i40evf", "ixgbevf", "igbvf", "bnxt_en_vf"}


def _bus_id(chain: list[str]) -> str | None:
    return chain[-1] if chain and BDF.match(chain[-1]) else None


def _fabric_kind(sysfs: Sysfs, nic: Nic, base: str) -> None:
    """HPE Slingshot (Cray Cassini NIC, cxi driver, hsn netdevs) and AWS EFA (efa RDMA
    driver) are not InfiniBand even where they show an RDMA device."""
    vendor = sysfs.read_text(f"{base}/vendor")
    driver = nic.driver or ""
    if vendor == CRAY_VENDOR or driver.startswith("cxi"):
        nic.kind, nic.link_layer = "slingshot", "Ethernet"
    elif driver == "efa" or (vendor == AWS_VENDOR and (nic.rdma or "").startswith("efa")):
        nic.kind, nic.link_layer = "efa", None


def _pci_facts(sysfs: Sysfs, nic: Nic) -> None:
    if nic.bus_id is None:
        return
    base = f"/sys/bus/pci/devices/{nic.bus_id}"
    _, nic.numa = device_locality(sysfs, nic.bus_id)
    nic.driver = sysfs.readlink_name(f"{base}/driver")
    _fabric_kind(sysfs, nic, base)
    parent = sysfs.realpath(f"{base}/physfn")
    if parent is not None:
        # Host side: the VF links to its physical function.
        nic.sriov_vf = True
        nic.virtual_function_of = parent.rsplit("/", 1)[-1]
        return
    # Guest side: a VF passed into a VM has no physfn link; its PCI id or driver says it.
    ids = (sysfs.read_text(f"{base}/vendor"), sysfs.read_text(f"{base}/device"))
    if ids in VF_PCI_IDS or (nic.driver or "") in VF_DRIVERS:
        nic.sriov_vf = True


def _netdevs(sysfs: Sysfs) -> dict[str, Nic]:
    found: dict[str, Nic] = {}
    for name in sysfs.listdir(NET):
        resolved = sysfs.realpath(f"{NET}/{name}") or ""
        if name == "lo" or "/virtual/" in resolved:
            continue
        chain = path_of(resolved)
        nic = Nic(name=name, netdev=name, bus_id=_bus_id(chain), pci_path=chain)
        nic.state = sysfs.read_text(f"{NET}/{name}/operstate")
        speed = sysfs.read_int(f"{NET}/{name}/speed")
        nic.speed_mbps = speed if speed is not None and speed > 0 else None
        if sysfs.read_int(f"{NET}/{name}/type") == 32:
            nic.kind, nic.link_layer = "infiniband", "InfiniBand"  # IPoIB
        found[name] = nic
    return found


def read_nics(sysfs: Sysfs, warnings: list[str]) -> list[Nic]:
    netdevs = _netdevs(sysfs)
    by_bus = {n.bus_id: n for n in netdevs.values() if n.bus_id}
    nics: list[Nic] = []
    used: set[str] = set()
    for dev in sysfs.listdir(IB):
        chain = path_of(sysfs.realpath(f"{IB}/{dev}"))
        bus_id = _bus_id(chain)
        ports = sorted(int(p) for p in sysfs.listdir(f"{IB}/{dev}/ports") if p.isdigit())
        port = ports[0] if ports else None
        nic = Nic(name=dev, rdma=dev, port=port, bus_id=bus_id, pci_path=chain)
        if port is not None:
            pbase = f"{IB}/{dev}/ports/{port}"
            state = sysfs.read_text(f"{pbase}/state") or ""
            nic.state = state.split(":", 1)[-1].strip() or None
            nic.rate = sysfs.read_text(f"{pbase}/rate")
            nic.link_layer = sysfs.read_text(f"{pbase}/link_layer")
        nic.kind = "roce" if (nic.link_layer or "").lower() == "ethernet" else "infiniband"
        netdev = by_bus.get(bus_id) if bus_id else None
        if netdev is None:
            for name in sysfs.listdir(f"{IB}/{dev}/device/net"):
                netdev = netdevs.get(name)
                break
        if netdev is not None:
            nic.netdev = netdev.netdev
            nic.speed_mbps = netdev.speed_mbps
            used.add(netdev.name)
        _pci_facts(sysfs, nic)
        nics.append(nic)
    for name, nic in sorted(netdevs.items()):
        if name in used:
            continue
        if nic.bus_id is None:
            warnings.append(f"network device {name} has no PCI address; closeness unknown")
        _pci_facts(sysfs, nic)
        nics.append(nic)
    return nics
