"""The one gateway to NVML: live (pynvml, every call under a timeout) or recorded.

Feature code calls pynvml-named functions on an `Nvml` object:

    nv = open_nvml()                       # live; ProbeError when NVML is absent
    nv = open_nvml(recorded="h100.json")   # recorded data of a real machine
    for handle in nv.handles():
        joules = nv.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000

Why one gateway: a hung NVML call (a GPU falling off the bus, a stuck driver)
must not hang a Prolog, so live calls run on a worker thread and raise
ProbeError after `timeout` seconds; after one hang the object refuses further
calls instead of piling up stuck threads. And tests feed the very same code
with recordings of real machines (`RecordedNvml`), which `slurm-ai capture`
writes from a live GPU.

Recording format (JSON):

    {"source": "where the values came from",
     "system": {"nvmlSystemGetDriverVersion": "550.54.15", ...},
     "devices": [
        {"nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
         "nvmlDeviceGetPciInfo": {"busId": "00000000:18:00.0", ...},   # struct -> dict
         "nvmlDeviceGetTotalEnergyConsumption": {"seq": [1000, 61000]}, # successive calls
         "nvmlDeviceGetNvLinkState(0)": 1,        # extra arguments in the key
         "nvmlDeviceGetRetiredPages(1)": {"error": "NotSupported"},
         "mig": [ {...a MIG device, same layout...} ]},
        ...],
     "pairs": {"0,1": {"nvmlDeviceGetTopologyCommonAncestor": 0}}}

A value {"error": NAME} raises NvmlCallError(code_name=NAME); a function absent
from the recording raises NvmlCallError("NotSupported"), as a real GPU does for
an unsupported query. {"seq": [...]} returns successive values and then repeats
the last one; {"hang": true} behaves like a hung call (ProbeError).
{"per_s": R} is a counter that advances with the wall clock, R units a second
(an energy counter in mJ of a GPU drawing R mW): unlike "seq" it agrees across
processes, so a Prolog and an Epilog reading it see the energy in between.

The site recording: `[nvml] recording` in the config (a test cluster whose
fake GPUs have no driver, a demo) makes every `open_nvml()` without an explicit
source answer from that file instead of the driver, in every part (topology,
health, energy, agent). `load_config` sets it; "{node}" in the path is the node's name.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slurm_ai.errors import ProbeError

DEFAULT_TIMEOUT_S = 5.0

# The site's recording (see the module doc): process-wide, as the driver is.
_site_recording: str | None = None


def use_site_recording(path: str | None) -> None:
    """Answer every later `open_nvml()` without a source from `path` (None: live)."""
    global _site_recording
    _site_recording = path


def site_recording() -> str | None:
    return _site_recording


class NvmlCallError(ProbeError):
    """An NVML function returned an error code (NotSupported, GpuIsLost, ...)."""

    def __init__(self, function: str, code_name: str, detail: str = "") -> None:
        self.function = function
        self.code_name = code_name
        super().__init__(f"{function}: {code_name}{': ' + detail if detail else ''}")


class DeviceHandle:
    """A recorded device (or MIG instance: `parent` set)."""

    def __init__(self, index: int, data: dict[str, Any], parent: DeviceHandle | None = None):
        self.index = index
        self.data = data
        self.parent = parent
        self._seq_pos: dict[str, int] = {}

    def __repr__(self) -> str:
        if self.parent is not None:
            return f"<recorded MIG device {self.parent.index}/{self.index}>"
        return f"<recorded GPU {self.index}>"


def _struct(value: Any) -> Any:
    """Recorded dicts behave like pynvml structs (attribute access)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _struct(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_struct(v) for v in value]
    return value


def to_jsonable(value: Any) -> Any:
    """pynvml results (ctypes structs, bytes, lists) -> plain JSON values."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    fields = getattr(value, "_fields_", None)
    if fields is not None:
        out: dict[str, Any] = {}
        for field in fields:
            name = field[0]
            if name.startswith("_") or name == "version":
                continue
            try:
                out[name] = to_jsonable(getattr(value, name))
            except Exception:  # a field some drivers cannot fill
                continue
        return out
    if hasattr(value, "__dict__"):
        return {k: to_jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def text(value: Any) -> str:
    """pynvml returns str or bytes depending on its version; normalise."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Nvml:
    """Common interface; use open_nvml()."""

    source: str = "unknown"

    def call(self, function: str, *args: Any) -> Any:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml"):
            return lambda *args: self.call(name, *args)
        if name.startswith("NVML_"):
            import pynvml  # constants only; cheap compared with nvmlInit

            return getattr(pynvml, name)
        raise AttributeError(name)

    def device_count(self) -> int:
        return int(self.call("nvmlDeviceGetCount"))

    def handles(self) -> Iterator[Any]:
        for index in range(self.device_count()):
            yield self.call("nvmlDeviceGetHandleByIndex", index)

    def close(self) -> None:
        """Release NVML (live) or nothing (recorded)."""

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordedNvml(Nvml):
    """NVML answered from a recording of a real machine (see module doc)."""

    def __init__(self, data: dict[str, Any], source: str = "recording") -> None:
        self.data = data
        self.source = str(data.get("source", source))
        self._devices = [DeviceHandle(i, d) for i, d in enumerate(data.get("devices", []))]

    @classmethod
    def from_file(cls, path: str | Path) -> RecordedNvml:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ProbeError(f"cannot read NVML recording {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ProbeError(f"NVML recording {path} is not a JSON object")
        return cls(data, source=str(path))

    def _value(self, function: str, holder: dict[str, Any], key: str, seq_owner: Any) -> Any:
        if key not in holder:
            raise NvmlCallError(function, "NotSupported")
        value = holder[key]
        if isinstance(value, dict) and "error" in value and len(value) == 1:
            raise NvmlCallError(function, str(value["error"]))
        if isinstance(value, dict) and value.get("hang"):
            raise ProbeError(f"{function} did not answer (recorded hang)")
        if isinstance(value, dict) and "seq" in value and isinstance(value["seq"], list):
            positions = (
                seq_owner.setdefault("__seq__", {})
                if isinstance(seq_owner, dict)
                else seq_owner._seq_pos
            )
            pos = positions.get(key, 0)
            seq = value["seq"]
            positions[key] = pos + 1
            value = seq[min(pos, len(seq) - 1)]
            if isinstance(value, dict) and "error" in value:
                raise NvmlCallError(function, str(value["error"]))
        if isinstance(value, dict) and isinstance(value.get("per_s"), (int, float)):
            return int(time.time() * value["per_s"])
        return _struct(value)

    def call(self, function: str, *args: Any) -> Any:
        if function == "nvmlDeviceGetCount":
            return len(self._devices)
        if function == "nvmlDeviceGetHandleByIndex":
            index = int(args[0])
            if not 0 <= index < len(self._devices):
                raise NvmlCallError(function, "InvalidArgument", f"no GPU {index}")
            return self._devices[index]
        if function in ("nvmlDeviceGetHandleByPciBusId", "nvmlDeviceGetHandleByUUID"):
            getter = (
                "nvmlDeviceGetPciInfo" if function.endswith("PciBusId") else "nvmlDeviceGetUUID"
            )
            wanted = text(args[0]).lower()
            for handle in self._devices:
                raw = handle.data.get(getter)
                value = raw.get("busId") if isinstance(raw, dict) else raw
                if isinstance(value, str) and value.lower() == wanted:
                    return handle
            raise NvmlCallError(function, "NotFound")
        if function == "nvmlDeviceGetMigDeviceHandleByIndex":
            parent, index = args[0], int(args[1])
            migs = parent.data.get("mig", [])
            if not 0 <= index < len(migs):
                raise NvmlCallError(function, "NotFound")
            return DeviceHandle(index, migs[index], parent=parent)
        if function == "nvmlDeviceGetMaxMigDeviceCount" and "mig" in args[0].data:
            return len(args[0].data["mig"])
        if args and isinstance(args[0], DeviceHandle):
            handle = args[0]
            if len(args) > 1 and isinstance(args[1], DeviceHandle):
                pair = f"{handle.index},{args[1].index}"
                holder = self.data.get("pairs", {}).get(pair) or self.data.get("pairs", {}).get(
                    f"{args[1].index},{handle.index}", {}
                )
                return self._value(function, holder, function, handle)
            key = function if len(args) == 1 else f"{function}({','.join(map(str, args[1:]))})"
            return self._value(function, handle.data, key, handle)
        key = function if not args else f"{function}({','.join(map(str, args))})"
        return self._value(function, self.data.get("system", {}), key, self.data)


class LiveNvml(Nvml):
    """The real NVML through pynvml, each call bounded by a timeout.

    Calls run on one long-lived worker thread (a queue hand-off costs tens of
    microseconds; starting a thread per call cost ~0.17 ms, which the agent
    pays for every query of every tick). If a call hangs, the worker is
    abandoned (a daemon thread: it cannot block exit) and the object refuses
    further calls instead of queueing them behind the stuck one.
    """

    source = "nvml"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout = timeout
        self._hung: str | None = None
        self._open = False
        try:
            import pynvml
        except ImportError as exc:
            raise ProbeError("pynvml is not installed (pip install nvidia-ml-py)") from exc
        self._pynvml = pynvml
        self._jobs: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._serve, name="nvml", daemon=True)
        self._worker.start()
        self._run(pynvml.nvmlInit, "nvmlInit")
        self._open = True

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, future = job
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # delivered to the caller
                future.set_exception(exc)

    def _run(self, fn: Callable[..., Any], name: str, *args: Any) -> Any:
        if self._hung:
            raise ProbeError(f"NVML unusable: {self._hung} hung earlier")
        future: Future[Any] = Future()
        self._jobs.put((fn, args, future))
        try:
            return future.result(timeout=self.timeout)
        except TimeoutError:
            self._hung = name
            raise ProbeError(f"{name} did not answer within {self.timeout:g} s") from None
        except self._pynvml.NVMLError as exc:
            raise NvmlCallError(name, _error_name(self._pynvml, exc), str(exc)) from exc

    def call(self, function: str, *args: Any) -> Any:
        fn = getattr(self._pynvml, function, None)
        if fn is None:
            raise NvmlCallError(function, "FunctionNotFound", "not in this nvidia-ml-py")
        return self._run(fn, function, *args)

    def close(self) -> None:
        if self._open and not self._hung:
            with contextlib.suppress(ProbeError):
                self._run(self._pynvml.nvmlShutdown, "nvmlShutdown")
            self._open = False
        if not self._hung:
            self._jobs.put(None)  # let the worker end


def _error_name(pynvml: Any, exc: Exception) -> str:
    """NVML_ERROR_NOT_SUPPORTED -> "NotSupported" (the pynvml class names)."""
    code = getattr(exc, "value", None)
    for name in dir(pynvml):
        if name.startswith("NVML_ERROR_") and getattr(pynvml, name) == code:
            return "".join(part.capitalize() for part in name[len("NVML_ERROR_") :].split("_"))
    return type(exc).__name__


def open_nvml(
    recorded: str | Path | dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> Nvml:
    """Open NVML: from `recorded`, else the site recording, else live.

    Raises ProbeError when NVML is unavailable (no driver, no GPU, no pynvml).
    """
    if recorded is None:
        recorded = _site_recording
    if recorded is None:
        return LiveNvml(timeout=timeout)
    if isinstance(recorded, dict):
        return RecordedNvml(recorded)
    return RecordedNvml.from_file(recorded)
