"""This node's GPU checks (NVML + kernel-log XIDs), for both scopes.

Node scope (the Prolog, `healthcheck --scope node`) checks the GPUs Slurm
allocated to the job, by their node-wide index (a Prolog sees every GPU).
Job scope runs inside a step, where device cgroups may hide the GPUs the
step was not given and renumber the rest from 0: there the count check is
"NVML shows at least as many GPUs as the step has", and the allocated
indices are used only when they fit what NVML shows.

No NVML (no driver, no pynvml, a hung nvmlInit) is info "no GPU" on a node
where Slurm allocated none, and an error (fails open, never drains) where it
did. The XID cursor is read from the spool (see kmsg.py) and returned for
the caller to store when it acts on the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from slurm_ai.errors import ProbeError, SlurmAIError
from slurm_ai.health.gpu import GpuCheckOptions, read_kmsg, run_gpu_checks
from slurm_ai.health.history import HealthStore
from slurm_ai.health.kmsg import Cursor, CursorState, Window, parse_records, split
from slurm_ai.health.settings import HealthSettings
from slurm_ai.health.verdict import CheckResult, Verdict


@dataclass
class GpuPart:
    count: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    cursor: Cursor | None = None  # where the kernel log was read to (store it to advance)


def read_boot_id(path: str) -> str | None:
    from slurm_ai.sysfs import Sysfs

    value = Sysfs("/").read_text(path)
    return value[:64] if value else None


def gpu_health(
    settings: HealthSettings,
    *,
    budget: float,
    allocated: list[int] | None,
    store: HealthStore | None,
    node: str,
    nvml_recording: str | None = None,
    kernel_log: str | None = None,
    step: bool = False,
) -> GpuPart:
    """Run the GPU checks of this node; never raises for a missing or hung NVML."""
    from slurm_ai.nvml import open_nvml

    try:
        nv = open_nvml(nvml_recording, timeout=max(0.5, min(5.0, budget / 4)))
    except ProbeError as exc:
        return GpuPart(0, [_no_nvml(allocated, str(exc))])
    with nv:
        try:
            count = nv.device_count()
        except ProbeError as exc:
            return GpuPart(0, [CheckResult("count", Verdict.ERROR, f"NVML: {exc}")])
        if count == 0:
            return GpuPart(0, [_no_nvml(allocated, "NVML shows no GPU")])
        part = GpuPart(count)
        recorded = getattr(nv, "data", {}) if nvml_recording else {}
        window = _xid_window(settings, part, recorded, kernel_log, store, node)
        options = GpuCheckOptions(
            expected_gpus=settings.expected_gpus,
            xid_fatal=settings.xid_fatal,
            xid_ignore=settings.xid_ignore,
            nvlink_error_limit=settings.nvlink_error_limit,
            retired_pages_limit=settings.retired_pages_limit,
        )
        indices = allocated
        if step:
            # In a step: NVML may show only (and renumber) the step's GPUs.
            options = replace(options, expected_gpus=len(allocated or []))
            fits = (
                bool(allocated) and len(allocated or []) != count and max(allocated or [0]) < count
            )
            indices = allocated if fits else None
        part.checks += run_gpu_checks(nv, options, allocated=indices, xid_window=window)
        return part


def gpu_count(nvml_recording: str | None, budget: float) -> int:
    """GPUs NVML shows (0 without NVML): picks the backend and the ranks."""
    from slurm_ai.nvml import open_nvml

    try:
        with open_nvml(nvml_recording, timeout=max(0.5, min(5.0, budget / 4))) as nv:
            return nv.device_count()
    except ProbeError:
        return 0


def _no_nvml(allocated: list[int] | None, why: str) -> CheckResult:
    if allocated:
        return CheckResult(
            "gpu",
            Verdict.ERROR,
            f"NVML unusable while Slurm allocated {len(allocated)} GPUs: {why}",
        )
    return CheckResult("gpu", Verdict.INFO, f"no GPU ({why})"[:200])


def _xid_window(
    settings: HealthSettings,
    part: GpuPart,
    recorded: dict[str, Any],
    kernel_log: str | None,
    store: HealthStore | None,
    node: str,
) -> Window | None:
    """The kernel log split at this node's cursor; None when unreadable."""
    recorded_log = recorded.get("kernel_log")
    try:
        if isinstance(recorded_log, list) and not kernel_log:
            lines = [str(line) for line in recorded_log]  # a recorded machine's log
        else:
            lines = read_kmsg(kernel_log or settings.kmsg)
    except OSError as exc:
        part.checks.append(
            CheckResult("xid", Verdict.SKIPPED, f"kernel log unreadable: {exc.strerror or exc}")
        )
        return None
    boot = recorded.get("boot_id")
    boot_id = str(boot)[:64] if boot else read_boot_id(settings.boot_id_file)
    cursor, state = None, CursorState.UNKNOWN
    if store is not None:
        try:
            cursor, state = store.xid_cursor(node)
        except (SlurmAIError, OSError):
            cursor, state = None, CursorState.UNKNOWN
    window = split(parse_records(lines), cursor, state, boot_id)
    part.checks += [CheckResult("xid", Verdict.INFO, note) for note in window.notes]
    part.cursor = window.next_cursor
    return window


def save_cursor(store: HealthStore | None, node: str, cursor: Cursor | None) -> str | None:
    """Advance this node's XID cursor; returns a warning text when it cannot."""
    if store is None or cursor is None:
        return None
    try:
        store.save_xid_cursor(node, cursor)
    except (SlurmAIError, OSError) as exc:
        return f"XID cursor not saved (the same XIDs are judged again next time): {exc}"
    return None
