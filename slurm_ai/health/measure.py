"""The all-reduce measurement, as nccl-tests `all_reduce_perf` does it (pure logic).

For each size: fill every rank's buffer with a known pattern, all-reduce once
and count the elements that differ from the expected sum (#wrong), then run
`warmup` untimed and `iters` timed all-reduces between barriers (CUDA events on
a GPU) and report the time per iteration averaged over ranks (nccl-tests'
default `-a 1`).

    algbw = size / time            busbw = algbw * 2(n-1)/n

busbw is the figure comparable across rank counts; with one rank it is 0 by
definition (nothing crosses a link), so algbw is reported too.

The pattern is small integers (1..13 per rank), so sums are exact in every
float type and the check needs no tolerance. Backends implement `Collective`
with their own array library; this module never imports one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int32": 4}
PATTERN_MOD = 13
# Test-only fault injection (see FAULT_ENV): the faulty rank adds this to every
# CORRUPT_STRIDE-th element of its input, as a flipped bit in memory would.
CORRUPT_STRIDE = 1021
CORRUPT_DELTA = 1000
FAULT_ENV = "SLURM_AI_HEALTH_FAULT"  # "corrupt:R" | "hang:R" | "crash:R" | "coldstart:R"


def pattern_value(index: int, rank: int) -> int:
    """What rank `rank` puts at element `index` (backends vectorise this)."""
    return (index + 3 * rank) % PATTERN_MOD + 1


def expected_sum(index: int, world: int) -> int:
    return sum(pattern_value(index, r) for r in range(world))


def bus_factor(ranks: int) -> float:
    """nccl-tests' all-reduce bus factor 2(n-1)/n (0 for one rank)."""
    return 2.0 * (ranks - 1) / ranks if ranks > 0 else 0.0


def algbw_gbps(size_bytes: int, seconds: float) -> float:
    return size_bytes / seconds / 1e9 if seconds > 0 else 0.0


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGkmg]?)(i?[Bb])?\s*$")


def parse_size(text: str | int) -> int:
    """ "256M" -> 268435456 (K/M/G are powers of 1024, as in nccl-tests)."""
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"size must be positive, got {text}")
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text[:40]!r} (examples: 4096, 64K, 256M, 1G)")
    number = float(match.group(1))
    scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2).upper()]
    value = int(number * scale)
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


def size_sweep(min_bytes: int, max_bytes: int, factor: int, dtype: str) -> list[int]:
    """Sizes from min to max multiplying by `factor`, each a whole number of elements;
    max is always included (the threshold is judged there)."""
    elem = DTYPE_BYTES[dtype]
    if factor < 2:
        raise ValueError("size factor must be at least 2")
    if min_bytes > max_bytes:
        raise ValueError(f"min size {min_bytes} is larger than max size {max_bytes}")
    sizes: list[int] = []
    size = min_bytes
    while size < max_bytes:
        sizes.append(max(elem, size - size % elem))
        size *= factor
    sizes.append(max(elem, max_bytes - max_bytes % elem))
    return sorted(set(sizes))


def format_bytes(size: int) -> str:
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


@dataclass(frozen=True)
class SweepSpec:
    """What every rank runs; JSON-able so a launcher can pass it to workers."""

    sizes: list[int]
    dtype: str = "float32"
    warmup: int = 2
    iters: int = 5
    backend: str = "mpi"  # mpi | gloo | nccl
    fault: str | None = None
    bench: dict[str, Any] | None = None  # gpubench.BenchSpec as JSON (torch backends)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSpec:
        sizes = [int(s) for s in data["sizes"]]
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError("sweep needs positive sizes")
        dtype = str(data.get("dtype", "float32"))
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"unknown dtype {dtype!r}")
        return cls(
            sizes=sizes,
            dtype=dtype,
            warmup=max(0, int(data.get("warmup", 2))),
            iters=max(1, int(data.get("iters", 5))),
            backend=str(data.get("backend", "mpi")),
            fault=data.get("fault"),
            bench=data["bench"] if isinstance(data.get("bench"), dict) else None,
        )


@dataclass(frozen=True)
class SizeResult:
    size_bytes: int
    count: int
    dtype: str
    redop: str
    time_us: float
    algbw_gbps: float
    busbw_gbps: float
    wrong: int


@dataclass
class SweepResult:
    backend: str
    ranks: int
    device: str
    rows: list[SizeResult] = field(default_factory=list)
    # Start-up (library import, communicator, CUDA context) apart from the
    # measurement itself, slowest rank; None from workers that predate them.
    startup_s: float | None = None
    measure_s: float | None = None
    # The GPU-local benchmark of every rank (gpubench.py), in rank order.
    local: list[dict[str, Any]] = field(default_factory=list)

    @property
    def wrong(self) -> int:
        return sum(r.wrong for r in self.rows)

    @property
    def largest(self) -> SizeResult | None:
        return max(self.rows, key=lambda r: r.size_bytes) if self.rows else None

    @property
    def smallest(self) -> SizeResult | None:
        return min(self.rows, key=lambda r: r.size_bytes) if self.rows else None

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "ranks": self.ranks,
            "device": self.device,
            "rows": [asdict(r) for r in self.rows],
            "startup_s": self.startup_s,
            "measure_s": self.measure_s,
            "local": self.local,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepResult:
        rows = [
            SizeResult(**{k: row[k] for k in SizeResult.__dataclass_fields__})
            for row in data["rows"]
        ]
        result = cls(str(data["backend"]), int(data["ranks"]), str(data["device"]), rows)
        for key in ("startup_s", "measure_s"):
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(result, key, float(value))
        local = data.get("local")
        if isinstance(local, list):
            result.local = [entry for entry in local if isinstance(entry, dict)]
        return result


class Collective(Protocol):
    """One rank's view of a communicator, implemented per backend."""

    rank: int
    world: int
    backend: str
    device: str

    def prepare(self, count: int, dtype: str) -> None:
        """Allocate the buffers for `count` elements."""

    def fill(self, corrupt: bool) -> None:
        """Write the pattern (corrupted when `corrupt`: fault injection)."""

    def allreduce(self) -> None:
        """One sum all-reduce of the prepared buffer."""

    def count_wrong(self) -> int:
        """Elements of the last result that differ from the expected sum."""

    def timed(self, iters: int) -> float:
        """Seconds per all-reduce over `iters` back-to-back calls (after a barrier)."""

    def sum_int(self, value: int) -> int: ...

    def mean_float(self, value: float) -> float: ...

    def max_int(self, value: int) -> int: ...

    def max_float(self, value: float) -> float: ...

    def allgather_text(self, text: str) -> list[str]:
        """Every rank's `text`, in rank order (small results, e.g. GPU checks)."""
        ...


def fault_for_rank(fault: str | None, rank: int) -> str | None:
    """The injected fault for this rank ("corrupt", "hang", "crash") or None."""
    if not fault or ":" not in fault:
        return None
    kind, _, target = fault.partition(":")
    kinds = ("corrupt", "hang", "crash", "coldstart")
    return kind if target.strip() == str(rank) and kind in kinds else None


def run_sweep(
    coll: Collective, spec: SweepSpec, on_phase: Callable[[str], None] | None = None
) -> SweepResult:
    """The measurement loop; every rank calls it, every rank gets the same rows.
    `on_phase("warmup" | "measure")` tells a watcher where this rank is (phases.py)."""
    phase = on_phase or (lambda name: None)
    corrupt = fault_for_rank(spec.fault, coll.rank) == "corrupt"
    elem = DTYPE_BYTES[spec.dtype]
    result = SweepResult(coll.backend, coll.world, coll.device)
    factor = bus_factor(coll.world)
    for size in spec.sizes:
        count = max(1, size // elem)
        coll.prepare(count, spec.dtype)
        coll.fill(corrupt)
        coll.allreduce()
        wrong = coll.sum_int(coll.count_wrong())
        if spec.warmup:
            phase("warmup")
            coll.timed(spec.warmup)
        phase("measure")
        seconds = coll.mean_float(coll.timed(spec.iters))
        algbw = algbw_gbps(count * elem, seconds)
        result.rows.append(
            SizeResult(
                size_bytes=count * elem,
                count=count,
                dtype=spec.dtype,
                redop="sum",
                time_us=seconds * 1e6,
                algbw_gbps=algbw,
                busbw_gbps=algbw * factor,
                wrong=wrong,
            )
        )
    return result


def format_table(result: SweepResult, rows: Sequence[SizeResult] | None = None) -> str:
    """The nccl-tests table: size count type redop root time algbw busbw #wrong."""
    lines = [
        f"# all-reduce: backend {result.backend}, {result.ranks} ranks, device {result.device}",
        "#",
        f"# {'size':>12} {'count':>12} {'type':>8} {'redop':>6} {'root':>5}"
        f" {'time':>10} {'algbw':>8} {'busbw':>8} {'#wrong':>7}",
        f"# {'(B)':>12} {'(elements)':>12} {'':>8} {'':>6} {'':>5}"
        f" {'(us)':>10} {'(GB/s)':>8} {'(GB/s)':>8} {'':>7}",
    ]
    for row in rows if rows is not None else result.rows:
        lines.append(
            f"  {row.size_bytes:>12} {row.count:>12} {row.dtype:>8} {row.redop:>6} {-1:>5}"
            f" {row.time_us:>10.1f} {row.algbw_gbps:>8.2f} {row.busbw_gbps:>8.2f} {row.wrong:>7}"
        )
    if result.rows:
        avg = sum(r.busbw_gbps for r in result.rows) / len(result.rows)
        lines.append(
            f"# Out of bounds values : {result.wrong} {'OK' if not result.wrong else 'FAILED'}"
        )
        lines.append(f"# Avg bus bandwidth    : {avg:.3f}")
    return "\n".join(lines)
