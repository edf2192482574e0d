"""GPU health through NVML (slurm_ai.nvml) and the kernel log's XID lines.

Each check gives pass, warn or fail with a one-line reason naming the GPU.
A query the GPU does not support (NotSupported: row remapping on pre-Ampere,
page retirement on Ampere and later, NVLink on PCIe cards) is skipped, not
failed. An NVML call that hangs or errors otherwise yields verdict "error"
for that check, which fails open.

| check     | fail                                          | warn                        |
|-----------|-----------------------------------------------|-----------------------------|
| count     | fewer GPUs than Slurm allocated / configured   |                             |
| ecc       | volatile uncorrectable ECC errors             | aggregate uncorrectable > 0 |
| pages     | retired pages >= limit (NVIDIA's RMA line: 60)| retirement pending          |
| remap     | row remap failure, or remap pending (reset)   | uncorrectable remapped rows |
| xid       | a new XID from the fatal list (see kmsg.py)   | any other new XID           |
| throttle  | HW slowdown, HW thermal, HW power brake       | SW thermal slowdown         |
| pcie      | link width below its maximum                  | gen below max while busy    |
| nvlink    | a link down while others are up               | error counters over a limit |
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from slurm_ai.errors import ProbeError
from slurm_ai.health.kmsg import KernelRecord, Window, parse_records
from slurm_ai.health.verdict import CheckResult, Verdict
from slurm_ai.nvml import Nvml, NvmlCallError, text

# NVML enum values (fixed by the NVML ABI; used as recorded-call arguments).
MEMORY_ERROR_TYPE_UNCORRECTED = 1
VOLATILE_ECC, AGGREGATE_ECC = 0, 1
PAGE_CAUSE_SBE, PAGE_CAUSE_DBE = 0, 1
NVLINK_MAX_LINKS = 18
NVLINK_ERROR_DL_REPLAY, NVLINK_ERROR_DL_RECOVERY, NVLINK_ERROR_DL_CRC_FLIT = 0, 1, 2
NVLINK_ERROR_DL_CRC_DATA = 3

THROTTLE_IDLE = 0x1
THROTTLE_HW_SLOWDOWN = 0x8
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_HW_POWER_BRAKE = 0x80
THROTTLE_FAIL = {
    THROTTLE_HW_SLOWDOWN: "HW slowdown",
    THROTTLE_HW_THERMAL: "HW thermal slowdown",
    THROTTLE_HW_POWER_BRAKE: "HW power brake",
}

# The message must *start* with "NVRM: Xid": after a /dev/kmsg prefix of the kernel's
# own facility (priority below 8: user-space writes to /dev/kmsg carry facility 1+),
# after a dmesg timestamp, or bare. Anywhere else in a line it may be a user's text:
# the kernel prints user-chosen names (a trap in a file named "NVRM: Xid (PCI:...): 79").
_XID_RE = re.compile(
    r"(?:\s*(?P<prio>\d+),\d+,\d+,[^;]*;|\s*\[\s*[\d.]+\]\s*)?"
    r"NVRM: Xid \(PCI:([0-9A-Fa-f:.]+)\): (\d+),?\s*(.*)"
)
MAX_KMSG_RECORDS = 50000


@dataclass(frozen=True)
class GpuCheckOptions:
    expected_gpus: int = 0  # 0: unknown
    xid_fatal: list[int] = field(default_factory=list)
    xid_ignore: list[int] = field(default_factory=list)
    nvlink_error_limit: int = 100
    retired_pages_limit: int = 60


# NVML error codes on the handle lookup that mean the GPU itself is broken; any
# other error (a hang, no permission, the library) is an error of the check.
GPU_FAULT_CODES = ("GpuIsLost", "IrqIssue", "ResetRequired")


@dataclass(frozen=True)
class XidEvent:
    pci: str
    xid: int
    detail: str
    seq: int | None = None  # the kernel log record's sequence number


def parse_xids(lines: Iterable[str]) -> list[XidEvent]:
    """XID events from kernel log lines (dmesg or /dev/kmsg records)."""
    return parse_xid_records(parse_records(lines))


def parse_xid_records(records: Iterable[KernelRecord]) -> list[XidEvent]:
    events: list[XidEvent] = []
    for record in records:
        match = _XID_RE.match(record.text)
        if match and (match.group("prio") is None or int(match.group("prio")) < 8):
            events.append(
                XidEvent(match.group(2).lower(), int(match.group(3)), match.group(4), record.seq)
            )
    return events


def read_kmsg(path: str) -> list[str]:
    """The kernel log since boot. /dev/kmsg gives one record per read and
    EAGAIN at the end (non-blocking); a plain file (tests, a saved dmesg) is
    read whole. Raises OSError when unreadable (not root)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    lines: list[str] = []
    try:
        if not os.path.isfile(path):
            for _ in range(MAX_KMSG_RECORDS):
                try:
                    record = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except BrokenPipeError:  # a record was overwritten while reading
                    continue
                if not record:
                    break
                lines.append(record.decode(errors="replace").rstrip("\n"))
        else:
            with os.fdopen(os.dup(fd), "rb") as handle:
                lines = handle.read(16 * 1024 * 1024).decode(errors="replace").splitlines()
    finally:
        os.close(fd)
    return lines


def _bus_id_suffix(bus_id: str) -> str:
    """ "00000000:18:00.0" -> "18:00" (XID lines say PCI:0000:18:00)."""
    parts = bus_id.lower().split(":")
    return ":".join(parts[-2:]).split(".")[0] if len(parts) >= 2 else bus_id.lower()


class _Gpu:
    def __init__(self, nv: Nvml, index: int) -> None:
        self.nv = nv
        self.index = index
        self.handle = nv.nvmlDeviceGetHandleByIndex(index)
        self.label = f"gpu{index}"
        try:
            self.bus_id = text(nv.nvmlDeviceGetPciInfo(self.handle).busId)
        except (ProbeError, AttributeError):
            self.bus_id = ""

    def get(self, function: str, *args: Any) -> Any:
        """The value, or None when the GPU does not support the query."""
        try:
            return self.nv.call(function, self.handle, *args)
        except NvmlCallError as exc:
            if exc.code_name in ("NotSupported", "FunctionNotFound", "InvalidArgument"):
                return None
            raise


def _check(name: str, gpu: _Gpu, fn: Any) -> list[CheckResult]:
    try:
        return list(fn(gpu))
    except ProbeError as exc:
        return [CheckResult(name, Verdict.ERROR, f"{gpu.label}: {exc}")]
    except Exception as exc:  # an odd value from a driver: our error, never a fail
        return [CheckResult(name, Verdict.ERROR, f"{gpu.label}: {type(exc).__name__}: {exc}")]


def check_ecc(gpu: _Gpu) -> Iterable[CheckResult]:
    volatile = gpu.get("nvmlDeviceGetTotalEccErrors", MEMORY_ERROR_TYPE_UNCORRECTED, VOLATILE_ECC)
    aggregate = gpu.get("nvmlDeviceGetTotalEccErrors", MEMORY_ERROR_TYPE_UNCORRECTED, AGGREGATE_ECC)
    if volatile:
        yield CheckResult(
            "ecc", Verdict.FAIL, f"{gpu.label}: {int(volatile)} uncorrectable ECC errors since boot"
        )
    elif aggregate:
        yield CheckResult(
            "ecc",
            Verdict.WARN,
            f"{gpu.label}: {int(aggregate)} uncorrectable ECC errors (lifetime)",
        )


def check_pages(gpu: _Gpu, limit: int) -> Iterable[CheckResult]:
    sbe = gpu.get("nvmlDeviceGetRetiredPages", PAGE_CAUSE_SBE)
    dbe = gpu.get("nvmlDeviceGetRetiredPages", PAGE_CAUSE_DBE)
    total = len(sbe or []) + len(dbe or [])
    if limit > 0 and total >= limit:
        yield CheckResult(
            "pages", Verdict.FAIL, f"{gpu.label}: {total} retired pages (limit {limit})"
        )
    if gpu.get("nvmlDeviceGetRetiredPagesPendingStatus"):
        yield CheckResult(
            "pages", Verdict.WARN, f"{gpu.label}: page retirement pending (reset the GPU)"
        )


def check_remap(gpu: _Gpu) -> Iterable[CheckResult]:
    rows = gpu.get("nvmlDeviceGetRemappedRows")
    if rows is None:
        return
    corrected, uncorrected, pending, failure = (int(v) for v in list(rows)[:4])
    if failure:
        yield CheckResult(
            "remap", Verdict.FAIL, f"{gpu.label}: row remapping failed (no spare rows left)"
        )
    elif pending:
        yield CheckResult(
            "remap", Verdict.FAIL, f"{gpu.label}: row remap pending, GPU reset needed"
        )
    elif uncorrected:
        yield CheckResult(
            "remap",
            Verdict.WARN,
            f"{gpu.label}: {uncorrected} rows remapped for uncorrectable errors "
            f"({corrected} correctable)",
        )


def check_throttle(gpu: _Gpu) -> Iterable[CheckResult]:
    reasons = gpu.get("nvmlDeviceGetCurrentClocksEventReasons")
    if reasons is None:
        reasons = gpu.get("nvmlDeviceGetCurrentClocksThrottleReasons")
    if reasons is None:
        return
    reasons = int(reasons)
    active = [label for bit, label in THROTTLE_FAIL.items() if reasons & bit]
    if active:
        yield CheckResult(
            "throttle", Verdict.FAIL, f"{gpu.label}: {', '.join(active)} (reasons 0x{reasons:x})"
        )
    elif reasons & THROTTLE_SW_THERMAL:
        yield CheckResult("throttle", Verdict.WARN, f"{gpu.label}: SW thermal slowdown")


def check_pcie(gpu: _Gpu) -> Iterable[CheckResult]:
    width, max_width = (
        gpu.get("nvmlDeviceGetCurrPcieLinkWidth"),
        gpu.get("nvmlDeviceGetMaxPcieLinkWidth"),
    )
    if width is not None and max_width and int(width) < int(max_width):
        yield CheckResult(
            "pcie", Verdict.FAIL, f"{gpu.label}: PCIe link x{int(width)} below x{int(max_width)}"
        )
    gen = gpu.get("nvmlDeviceGetCurrPcieLinkGeneration")
    max_gen = gpu.get("nvmlDeviceGetMaxPcieLinkGeneration")
    if gen is not None and max_gen and int(gen) < int(max_gen):
        # An idle GPU trains its link down to save power: normal, not a fault.
        reasons = gpu.get("nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is None:
            reasons = gpu.get("nvmlDeviceGetCurrentClocksThrottleReasons")
        if not (reasons is not None and int(reasons) & THROTTLE_IDLE):
            yield CheckResult(
                "pcie",
                Verdict.WARN,
                f"{gpu.label}: PCIe gen {int(gen)} below gen {int(max_gen)} while not idle",
            )


def check_nvlink(gpu: _Gpu, error_limit: int) -> Iterable[CheckResult]:
    states: dict[int, int] = {}
    for link in range(NVLINK_MAX_LINKS):
        state = gpu.get("nvmlDeviceGetNvLinkState", link)
        if state is None:
            continue
        states[link] = int(state)
    if not states or not any(states.values()):
        return  # no NVLink (PCIe card), or no bridge fitted
    down = [link for link, up in states.items() if not up]
    if down:
        yield CheckResult(
            "nvlink",
            Verdict.FAIL,
            f"{gpu.label}: NVLink {','.join(map(str, down))} down "
            f"({len(states) - len(down)}/{len(states)} up)",
        )
    if error_limit <= 0:
        return
    for link, up in states.items():
        if not up:
            continue
        counts = {
            name: gpu.get("nvmlDeviceGetNvLinkErrorCounter", link, counter)
            for name, counter in (
                ("replay", NVLINK_ERROR_DL_REPLAY),
                ("recovery", NVLINK_ERROR_DL_RECOVERY),
                ("crc-flit", NVLINK_ERROR_DL_CRC_FLIT),
                ("crc-data", NVLINK_ERROR_DL_CRC_DATA),
            )
        }
        over = {k: int(v) for k, v in counts.items() if v is not None and int(v) > error_limit}
        if over:
            detail = ", ".join(f"{k} {v}" for k, v in over.items())
            yield CheckResult(
                "nvlink", Verdict.WARN, f"{gpu.label}: NVLink {link} errors: {detail}"
            )


def check_xids(
    events: list[XidEvent],
    bus_ids: dict[str, str],
    fatal: list[int],
    ignore: list[int],
    *,
    old: list[XidEvent] | None = None,
    datable: bool = True,
) -> list[CheckResult]:
    """Judge the new kernel-log XIDs (`events`); `old` ones (read by an earlier
    check) are info only. Not `datable` (no cursor to tell old from new):
    fatal XIDs warn instead of fail. `bus_ids` maps "18:00" -> "gpu0"."""
    results: list[CheckResult] = []
    seen: set[tuple[str, int]] = set()
    for event in events:
        if event.xid in ignore:
            continue
        who = _xid_owner(event, bus_ids)
        if (who, event.xid) in seen:
            continue
        seen.add((who, event.xid))
        text = f"{who}: Xid {event.xid}: {event.detail[:80]}".rstrip(": ")
        if event.xid not in fatal:
            results.append(CheckResult("xid", Verdict.WARN, text))
        elif datable:
            results.append(CheckResult("xid", Verdict.FAIL, text))
        else:
            results.append(
                CheckResult(
                    "xid", Verdict.WARN, f"{text} (new or old unknown: no XID cursor readable)"
                )
            )
    earlier: dict[tuple[str, int], int] = {}
    for event in old or []:
        if event.xid not in ignore:
            key = (_xid_owner(event, bus_ids), event.xid)
            earlier[key] = earlier.get(key, 0) + 1
    for (who, xid), count in earlier.items():
        times = f" ({count} times)" if count > 1 else ""
        results.append(
            CheckResult("xid", Verdict.INFO, f"{who}: Xid {xid}{times} before the last check")
        )
    return results


def _xid_owner(event: XidEvent, bus_ids: dict[str, str]) -> str:
    suffix = ":".join(event.pci.split(":")[-2:])
    return bus_ids.get(suffix, f"PCI {event.pci}")


def run_gpu_checks(
    nv: Nvml,
    options: GpuCheckOptions,
    *,
    allocated: list[int] | None = None,
    kernel_log: list[str] | None = None,
    xid_window: Window | None = None,
) -> list[CheckResult]:
    """Every GPU check on the GPUs `allocated` (all when None). XIDs come from
    `xid_window` (the log split at the cursor) or, without one, every XID in
    `kernel_log` is judged."""
    results: list[CheckResult] = []
    try:
        count = nv.device_count()
    except ProbeError as exc:
        return [CheckResult("count", Verdict.ERROR, f"cannot count GPUs: {exc}")]
    expected = options.expected_gpus or (max(allocated) + 1 if allocated else 0)
    if expected and count < expected:
        results.append(
            CheckResult("count", Verdict.FAIL, f"{count} GPUs visible, {expected} expected")
        )
    indices = [i for i in (allocated if allocated else range(count)) if 0 <= i < count]
    bus_ids: dict[str, str] = {}
    for index in indices:
        try:
            gpu = _Gpu(nv, index)
        except NvmlCallError as exc:
            broken = exc.code_name in GPU_FAULT_CODES
            verdict = Verdict.FAIL if broken else Verdict.ERROR
            results.append(CheckResult("count", verdict, f"gpu{index}: not reachable: {exc}"))
            continue
        except ProbeError as exc:  # a hung NVML: says nothing certain about the GPU
            results.append(CheckResult("count", Verdict.ERROR, f"gpu{index}: {exc}"))
            continue
        if gpu.bus_id:
            bus_ids[_bus_id_suffix(gpu.bus_id)] = gpu.label
        results += _check("ecc", gpu, check_ecc)
        results += _check("pages", gpu, lambda g: check_pages(g, options.retired_pages_limit))
        results += _check("remap", gpu, check_remap)
        results += _check("throttle", gpu, check_throttle)
        results += _check("pcie", gpu, check_pcie)
        results += _check("nvlink", gpu, lambda g: check_nvlink(g, options.nvlink_error_limit))
    if xid_window is not None:
        results += check_xids(
            parse_xid_records(xid_window.new),
            bus_ids,
            options.xid_fatal,
            options.xid_ignore,
            old=parse_xid_records(xid_window.old),
            datable=xid_window.datable,
        )
    elif kernel_log is not None:
        results += check_xids(
            parse_xids(kernel_log), bus_ids, options.xid_fatal, options.xid_ignore
        )
    if not any(r.verdict.severity for r in results):
        results.insert(0, CheckResult("gpu", Verdict.PASS, f"{len(indices)} GPUs healthy"))
    return results
