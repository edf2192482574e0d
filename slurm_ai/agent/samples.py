"""What one sampling tick produces: plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GpuSample:
    """One GPU at one tick; None where NVML does not give the value."""

    index: int
    util: float | None = None  # % of time a kernel ran (NVML "gpu" utilisation)
    mem_util: float | None = None  # % of time device memory was read or written
    mem_used: int | None = None  # bytes
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    throttle: int | None = None  # clocks event/throttle reasons bitmask
    energy_mj: int | None = None  # NVML total energy counter (mJ since driver load)
    pcie_tx_bps: float | None = None
    pcie_rx_bps: float | None = None
    nvlink_tx_bps: float | None = None
    nvlink_rx_bps: float | None = None
    ecc_corrected: int | None = None  # volatile counters
    ecc_uncorrected: int | None = None


@dataclass(frozen=True)
class GpuInfo:
    """Static facts about a GPU, stored once per agent start."""

    index: int
    uuid: str | None
    name: str | None
    mem_total: int | None


@dataclass(frozen=True)
class GpuEvent:
    """An NVML event: an XID or an ECC error."""

    t: float
    gpu: int | None
    kind: str  # "xid" | "ecc-sbe" | "ecc-dbe" | other NVML event names
    code: int


@dataclass
class JobSample:
    """The processes of one job (and one uid) on this node at one tick."""

    job: str
    uid: int
    cpu_delta_s: float = 0.0  # CPU seconds used since the previous tick
    rss_bytes: int = 0  # sum over the job's live processes
    nproc: int = 0
    ncpus: int = 0  # CPUs the job's processes may run on (union of affinities)


@dataclass
class Tick:
    """Everything one sampling tick measured."""

    t: float
    interval_s: float
    gpus: list[GpuSample] = field(default_factory=list)
    jobs: list[JobSample] = field(default_factory=list)
    events: list[GpuEvent] = field(default_factory=list)
    rapl: dict[str, int] = field(default_factory=dict)  # RAPL energy_uj per domain
