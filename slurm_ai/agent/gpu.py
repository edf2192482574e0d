"""Per-GPU sampling through the NVML gateway (live or recorded).

Every query may be unsupported on a given GPU (vGPU, MIG, consumer boards,
VMs without events). A query that answers NotSupported (or any NVML error code
that will not change: NoPermission, FunctionNotFound) is remembered per GPU
and not asked again, which keeps a tick cheap on GPUs that give little. Other
errors leave the value None for this tick only.

Counters (PCIe bytes, NVLink KiB) become rates by differencing two ticks; a
counter that goes backwards (driver reload) gives no rate for that tick.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from slurm_ai.agent.samples import GpuEvent, GpuInfo, GpuSample
from slurm_ai.errors import ProbeError
from slurm_ai.nvml import Nvml, NvmlCallError, text

log = logging.getLogger("slurm_ai.agent")

NVML_CLOCK_SM = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0

# nvmlDeviceGetFieldValues ids (nvml.h): cumulative counters.
FI_PCIE_TX_BYTES = 197
FI_PCIE_RX_BYTES = 198
FI_NVLINK_DATA_TX_KIB = 138
FI_NVLINK_DATA_RX_KIB = 139
FIELD_IDS = [FI_PCIE_TX_BYTES, FI_PCIE_RX_BYTES, FI_NVLINK_DATA_TX_KIB, FI_NVLINK_DATA_RX_KIB]
NVML_SUCCESS = 0

# nvmlEventType bits this agent listens for.
EVENT_SBE = 1
EVENT_DBE = 2
EVENT_XID = 8
EVENT_KINDS = {EVENT_SBE: "ecc-sbe", EVENT_DBE: "ecc-dbe", EVENT_XID: "xid"}

# Throttle (clocks event) reason bits, as named in nvml.h.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
}
# Reasons that mean "slower than it could be" (idle and app clocks do not).
THROTTLED_MASK = 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80

PERMANENT_ERRORS = {"NotSupported", "FunctionNotFound", "NoPermission", "NotFound"}


def _field_value(entry: Any) -> float | None:
    """One nvmlFieldValue_t (or its recorded dict) -> number, None when it failed."""
    if getattr(entry, "nvmlReturn", NVML_SUCCESS) != NVML_SUCCESS:
        return None
    value = getattr(entry, "value", None)
    if isinstance(value, (int, float)):
        return float(value)
    kind = getattr(entry, "valueType", 3)
    member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}.get(
        int(kind), "ullVal"
    )
    raw = getattr(value, member, None)
    return float(raw) if isinstance(raw, (int, float)) else None


class GpuSampler:
    """Samples every GPU NVML shows; owns the per-GPU "unsupported" memory."""

    def __init__(self, nv: Nvml, *, events: bool = True) -> None:
        self.nv = nv
        self.handles: list[Any] = list(nv.handles())
        self._unsupported: list[set[str]] = [set() for _ in self.handles]
        self._last_counters: list[dict[int, tuple[float, float]]] = [{} for _ in self.handles]
        self._event_set: Any = None
        self._event_error: str | None = None
        if events:
            self._setup_events()

    # -- helpers ------------------------------------------------------------

    def _ask(self, index: int, function: str, *args: Any) -> Any:
        key = function if not args else f"{function}{args}"
        if key in self._unsupported[index]:
            return None
        try:
            return getattr(self.nv, function)(self.handles[index], *args)
        except NvmlCallError as exc:
            if exc.code_name in PERMANENT_ERRORS:
                self._unsupported[index].add(key)
            return None
        except ProbeError as exc:  # a hang: the gateway refuses further calls
            log.warning("GPU %d: %s", index, exc)
            return None

    def info(self) -> list[GpuInfo]:
        infos = []
        for index in range(len(self.handles)):
            uuid = self._ask(index, "nvmlDeviceGetUUID")
            name = self._ask(index, "nvmlDeviceGetName")
            mem = self._ask(index, "nvmlDeviceGetMemoryInfo")
            infos.append(
                GpuInfo(
                    index=index,
                    uuid=text(uuid) if uuid is not None else None,
                    name=text(name) if name is not None else None,
                    mem_total=int(mem.total) if mem is not None else None,
                )
            )
        return infos

    # -- sampling -----------------------------------------------------------

    def sample(self, now: float, *, slow: bool = True) -> list[GpuSample]:
        """All GPUs; `slow` adds the costly or slow-moving counters (energy, ECC)."""
        return [self._sample_one(index, now, slow) for index in range(len(self.handles))]

    def _sample_one(self, index: int, now: float, slow: bool) -> GpuSample:
        s = GpuSample(index=index)
        util = self._ask(index, "nvmlDeviceGetUtilizationRates")
        if util is not None:
            s.util = float(util.gpu)
            s.mem_util = float(util.memory)
        mem = self._ask(index, "nvmlDeviceGetMemoryInfo")
        if mem is not None:
            s.mem_used = int(mem.used)
        power = self._ask(index, "nvmlDeviceGetPowerUsage")
        if power is not None:
            s.power_w = float(power) / 1000.0
        clock = self._ask(index, "nvmlDeviceGetClockInfo", NVML_CLOCK_SM)
        if clock is not None:
            s.sm_clock_mhz = float(clock)
        s.throttle = self._throttle(index)
        if slow:
            # The energy counter costs ~4.6 ms CPU per call on a lent H200 VM (driver
            # 580), 15x any other query: read it with the slow counters only.
            energy = self._ask(index, "nvmlDeviceGetTotalEnergyConsumption")
            if energy is not None:
                s.energy_mj = int(energy)
            corrected = self._ask(
                index,
                "nvmlDeviceGetTotalEccErrors",
                NVML_MEMORY_ERROR_TYPE_CORRECTED,
                NVML_VOLATILE_ECC,
            )
            uncorrected = self._ask(
                index,
                "nvmlDeviceGetTotalEccErrors",
                NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                NVML_VOLATILE_ECC,
            )
            s.ecc_corrected = int(corrected) if corrected is not None else None
            s.ecc_uncorrected = int(uncorrected) if uncorrected is not None else None
        self._throughput(index, now, s)
        return s

    def _throttle(self, index: int) -> int | None:
        # Newer drivers name it "clocks event reasons"; older only "throttle reasons".
        for function in (
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
        ):
            value = self._ask(index, function)
            if value is not None:
                return int(value)
        return None

    def _throughput(self, index: int, now: float, s: GpuSample) -> None:
        values = self._ask(index, "nvmlDeviceGetFieldValues", FIELD_IDS)
        if values is None:
            return
        try:
            entries = list(values)
        except TypeError:  # a malformed answer: no throughput this tick
            return
        last = self._last_counters[index]
        rates: dict[int, float] = {}
        for field_id, entry in zip(FIELD_IDS, entries, strict=False):
            value = _field_value(entry)
            if value is None:
                continue
            previous = last.get(field_id)
            last[field_id] = (now, value)
            if previous is not None and now > previous[0] and value >= previous[1]:
                rates[field_id] = (value - previous[1]) / (now - previous[0])
        s.pcie_tx_bps = rates.get(FI_PCIE_TX_BYTES)
        s.pcie_rx_bps = rates.get(FI_PCIE_RX_BYTES)
        if FI_NVLINK_DATA_TX_KIB in rates:
            s.nvlink_tx_bps = rates[FI_NVLINK_DATA_TX_KIB] * 1024
        if FI_NVLINK_DATA_RX_KIB in rates:
            s.nvlink_rx_bps = rates[FI_NVLINK_DATA_RX_KIB] * 1024

    # -- events (XID, ECC) --------------------------------------------------

    def _setup_events(self) -> None:
        try:
            self._event_set = self.nv.nvmlEventSetCreate()
        except ProbeError as exc:
            self._event_error = str(exc)
            return
        registered = 0
        for index, handle in enumerate(self.handles):
            wanted = EVENT_XID | EVENT_DBE | EVENT_SBE
            try:
                supported = int(self.nv.nvmlDeviceGetSupportedEventTypes(handle))
                wanted &= supported
            except ProbeError:
                pass  # unknown: try registering all of them
            if not wanted:
                continue
            try:
                self.nv.nvmlDeviceRegisterEvents(handle, wanted, self._event_set)
                registered += 1
            except ProbeError as exc:
                log.info("GPU %d: no NVML events: %s", index, exc)
        if not registered:
            self._event_error = "no GPU accepted event registration"

    @property
    def events_available(self) -> bool:
        return self._event_set is not None and self._event_error is None

    def poll_events(self, now: float, limit: int = 64) -> list[GpuEvent]:
        """Drain pending events without waiting (timeout 0 ms); bounded per tick."""
        if not self.events_available:
            return []
        events: list[GpuEvent] = []
        for _ in range(limit):
            try:
                data = self._wait()
            except NvmlCallError as exc:
                if exc.code_name != "Timeout":
                    log.info("NVML event wait: %s", exc)
                break
            except ProbeError as exc:
                log.warning("NVML event wait: %s", exc)
                self._event_error = str(exc)
                break
            kind_bits = int(getattr(data, "eventType", 0))
            kind = EVENT_KINDS.get(kind_bits, f"event-{kind_bits}")
            events.append(
                GpuEvent(
                    t=now,
                    gpu=self._event_gpu(getattr(data, "device", None)),
                    kind=kind,
                    code=int(getattr(data, "eventData", 0) or 0),
                )
            )
        return events

    def _wait(self) -> Any:
        waiter: Callable[..., Any]
        try:
            waiter = self.nv.nvmlEventSetWait_v2
            return waiter(self._event_set, 0)
        except NvmlCallError as exc:
            if exc.code_name != "FunctionNotFound":
                raise
        return self.nv.nvmlEventSetWait(self._event_set, 0)

    def _event_gpu(self, device: Any) -> int | None:
        index = getattr(device, "index", None)  # a recorded handle knows its index
        if isinstance(index, int):
            return index
        if device is None:
            return None
        try:
            return int(self.nv.nvmlDeviceGetIndex(device))
        except ProbeError:
            return None

    def close(self) -> None:
        if self._event_set is not None:
            with contextlib.suppress(ProbeError):
                self.nv.nvmlEventSetFree(self._event_set)
            self._event_set = None
