"""The [health] config section, read once into a typed object.

[health]
enabled = false            # the Prolog runs the check only when true
when = "background"        # background | every_job | after_boot | interval
interval_hours = 24.0      # for when = "interval": at most once per N hours per node
max_age_hours = 24.0       # background: a full verdict older than this is stale
background_budget_s = 50.0 # HealthCheckProgram / Epilog refresh (slurmd kills the program at 60 s)
epilog_refresh = true      # background: the Epilog re-runs a stale check on the job's GPUs
auto_resume = true         # HealthCheckProgram resumes nodes drained with our reason on pass
partitions = []            # only jobs in these partitions (empty: all)
min_gpus = 0               # only jobs with at least this many GPUs on the node
budget_s = 10.0            # hard wall-clock limit of the whole node check
backend = "auto"           # auto | mpi | gloo | nccl
ranks = 0                  # node scope ranks (0: one per GPU, or 2 on CPU)
cpu_max_size = "16M"       # sweep on CPUs: min_size .. cpu_max_size
gpu_max_size = "256M"      # sweep on GPUs (peak busbw needs large messages)
min_size = "64K"
size_factor = 4
iters = 5                  # timed iterations per size (GPUs: 20)
warmup = 2
dtype = "float32"
min_busbw_gbps = 0.0       # fixed floor at the largest size (0: none)
max_small_time_us = 0.0    # fixed ceiling at the smallest size (0: none)
calibrate = true           # also judge against this partition's history
calib_min_samples = 10
calib_k = 3.0              # outlier: below median - k * 1.4826 * MAD ...
calib_min_drop = 0.10      # ... and more than 10 % below the median
outlier_verdict = "fail"   # fail | warn
history_max = 500
gpu_checks = true
expected_gpus = 0          # GPUs this node must show (0: what Slurm allocated)
xid_fatal = [48, 56, 57, 58, 62, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 95, 109, 119, 120, 140]
xid_ignore = [13, 31, 43, 45]
kmsg = "/dev/kmsg"         # where the kernel log (NVRM Xid lines) is read
boot_id_file = "/proc/sys/kernel/random/boot_id"  # a new boot id restarts the XID cursor
nvlink_error_limit = 100
retired_pages_limit = 60
textfile_dir = ""          # node_exporter textfile collector dir ("": off)
mpirun = "mpirun"
local_bench = "gpu"        # GEMM + memory bandwidth per GPU: gpu | always | off
bench_gemm_n = 8192        # square GEMM size (bf16 on GPUs, float32 on CPUs)
bench_mem_size = "1G"      # device buffer copied for the bandwidth
bench_seconds = 2.0        # per measurement
gemm_min_fraction = 0.5    # floor: this fraction of the published dense bf16 peak
mem_min_fraction = 0.5     # floor: this fraction of the published memory bandwidth
gemm_min_tflops = 0.0      # absolute floors (0: none); the higher floor applies
mem_min_gbps = 0.0

[health.floors.gpu-bare]   # per-partition floors override the defaults
min_busbw_gbps = 350.0
max_small_time_us = 100.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slurm_ai.config import Config, Section
from slurm_ai.errors import ConfigError
from slurm_ai.health.gpubench import BenchFloors
from slurm_ai.health.measure import DTYPE_BYTES, parse_size

DEFAULT_XID_FATAL = [
    48,
    56,
    57,
    58,
    62,
    64,
    65,
    68,
    69,
    73,
    74,
    79,
    80,
    81,
    92,
    95,
    109,
    119,
    120,
    140,
]
DEFAULT_XID_IGNORE = [13, 31, 43, 45]
# A check longer than an hour is a mistake (slurmd kills a HealthCheckProgram after 60 s).
MAX_BUDGET_S = 3600.0
HOURS_HIGH = 10 * 8760.0  # ten years
WHEN = ("background", "every_job", "after_boot", "interval")
LOCAL_BENCH = ("gpu", "always", "off")


def _size(section: Section, key: str, default: str) -> int:
    value = section.values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"[{section.name}] {key}: expected a size like 256M")
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"[{section.name}] {key}: {exc}") from exc


@dataclass(frozen=True)
class Floors:
    min_busbw_gbps: float = 0.0
    max_small_time_us: float = 0.0


@dataclass(frozen=True)
class HealthSettings:
    enabled: bool = False
    when: str = "background"
    interval_hours: float = 24.0
    max_age_hours: float = 24.0
    background_budget_s: float = 50.0
    epilog_refresh: bool = True
    auto_resume: bool = True
    partitions: list[str] = field(default_factory=list)
    min_gpus: int = 0
    budget_s: float = 10.0
    backend: str = "auto"
    ranks: int = 0
    min_size: int = 64 * 1024
    cpu_max_size: int = 16 * 1024**2
    gpu_max_size: int = 256 * 1024**2
    size_factor: int = 4
    iters: int = 5
    warmup: int = 2
    dtype: str = "float32"
    floors: Floors = Floors()
    partition_floors: dict[str, Floors] = field(default_factory=dict)
    calibrate: bool = True
    calib_min_samples: int = 10
    calib_k: float = 3.0
    calib_min_drop: float = 0.10
    outlier_verdict: str = "fail"
    history_max: int = 500
    gpu_checks: bool = True
    expected_gpus: int = 0
    xid_fatal: list[int] = field(default_factory=lambda: list(DEFAULT_XID_FATAL))
    xid_ignore: list[int] = field(default_factory=lambda: list(DEFAULT_XID_IGNORE))
    kmsg: str = "/dev/kmsg"
    boot_id_file: str = "/proc/sys/kernel/random/boot_id"
    nvlink_error_limit: int = 100
    retired_pages_limit: int = 60
    textfile_dir: str = ""
    mpirun: str = "mpirun"
    local_bench: str = "gpu"
    bench_gemm_n: int = 8192
    bench_mem_size: int = 1024**3
    bench_seconds: float = 2.0
    bench_floors: BenchFloors = field(default_factory=BenchFloors)

    def floors_for(self, partition: str | None) -> Floors:
        if partition and partition in self.partition_floors:
            return self.partition_floors[partition]
        return self.floors

    @classmethod
    def from_config(cls, config: Config) -> HealthSettings:
        s = config.section("health")
        when = s.get_str("when", "background")
        if when not in WHEN:
            raise ConfigError(f"[health] when: expected one of {', '.join(WHEN)}, got {when!r}")
        dtype = s.get_str("dtype", "float32")
        if dtype not in DTYPE_BYTES:
            raise ConfigError(f"[health] dtype: unknown type {dtype!r}")
        outlier = s.get_str("outlier_verdict", "fail")
        if outlier not in ("fail", "warn"):
            raise ConfigError("[health] outlier_verdict: expected fail or warn")
        floors = Floors(
            s.get_float("min_busbw_gbps", 0.0),
            s.get_float("max_small_time_us", 0.0),
        )
        table = s.get_table("floors")
        partition_floors: dict[str, Floors] = {}
        for name in table.values:
            part = table.get_table(name)
            partition_floors[name] = Floors(
                part.get_float("min_busbw_gbps", floors.min_busbw_gbps),
                part.get_float("max_small_time_us", floors.max_small_time_us),
            )
        budget = s.get_float("budget_s", 10.0, high=MAX_BUDGET_S, positive=True)
        background_budget = s.get_float(
            "background_budget_s", 50.0, high=MAX_BUDGET_S, positive=True
        )
        local_bench = s.get_str("local_bench", "gpu")
        if local_bench not in LOCAL_BENCH:
            raise ConfigError(f"[health] local_bench: expected one of {', '.join(LOCAL_BENCH)}")
        return cls(
            enabled=s.get_bool("enabled", False),
            when=when,
            interval_hours=s.get_float("interval_hours", 24.0, high=HOURS_HIGH),
            max_age_hours=s.get_float("max_age_hours", 24.0, high=HOURS_HIGH),
            background_budget_s=background_budget,
            epilog_refresh=s.get_bool("epilog_refresh", True),
            auto_resume=s.get_bool("auto_resume", True),
            partitions=s.get_str_list("partitions", []),
            min_gpus=s.get_int("min_gpus", 0, high=4096),
            budget_s=budget,
            backend=s.get_str("backend", "auto"),
            ranks=s.get_int("ranks", 0, high=256),
            min_size=_size(s, "min_size", "64K"),
            cpu_max_size=_size(s, "cpu_max_size", "16M"),
            gpu_max_size=_size(s, "gpu_max_size", "256M"),
            size_factor=max(2, s.get_int("size_factor", 4, high=1024)),
            iters=max(1, s.get_int("iters", 5, high=10000)),
            warmup=max(0, s.get_int("warmup", 2, high=1000)),
            dtype=dtype,
            floors=floors,
            partition_floors=partition_floors,
            calibrate=s.get_bool("calibrate", True),
            calib_min_samples=max(3, s.get_int("calib_min_samples", 10, high=100000)),
            calib_k=s.get_float("calib_k", 3.0, high=100.0),
            calib_min_drop=s.get_float("calib_min_drop", 0.10, high=1.0),
            outlier_verdict=outlier,
            history_max=max(10, s.get_int("history_max", 500, high=1000000)),
            gpu_checks=s.get_bool("gpu_checks", True),
            expected_gpus=s.get_int("expected_gpus", 0, high=4096),
            xid_fatal=s.get_int_list("xid_fatal", DEFAULT_XID_FATAL),
            xid_ignore=s.get_int_list("xid_ignore", DEFAULT_XID_IGNORE),
            kmsg=s.get_str("kmsg", "/dev/kmsg"),
            boot_id_file=s.get_str("boot_id_file", "/proc/sys/kernel/random/boot_id"),
            nvlink_error_limit=s.get_int("nvlink_error_limit", 100),
            retired_pages_limit=s.get_int("retired_pages_limit", 60),
            textfile_dir=s.get_str("textfile_dir", ""),
            mpirun=s.get_str("mpirun", "mpirun"),
            local_bench=local_bench,
            bench_gemm_n=max(16, s.get_int("bench_gemm_n", 8192, high=65536)),
            bench_mem_size=_size(s, "bench_mem_size", "1G"),
            bench_seconds=max(0.01, s.get_float("bench_seconds", 2.0, high=MAX_BUDGET_S)),
            bench_floors=BenchFloors(
                gemm_min_tflops=s.get_float("gemm_min_tflops", 0.0),
                mem_min_gbps=s.get_float("mem_min_gbps", 0.0),
                gemm_min_fraction=s.get_float("gemm_min_fraction", 0.5, high=1.0),
                mem_min_fraction=s.get_float("mem_min_fraction", 0.5, high=1.0),
            ),
        )
