"""When the Prolog runs the check (pure: the caller passes the cache and clock).

every_job   every job that passes the filters
after_boot  the first job after each boot (boot_id changes), then the cached result
interval    at most once per `interval_hours` per node, then the cached result

Filters: `partitions` (empty: all) and `min_gpus` on this node. A cached
result that is not pass or warn is never reused: after an admin resumes a
drained node the next job checks it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slurm_ai.health.settings import HealthSettings
from slurm_ai.slurmenv import JobEnv


@dataclass(frozen=True)
class Decision:
    run: bool
    why: str
    cached: dict[str, Any] | None = None


def decide(
    settings: HealthSettings,
    job: JobEnv,
    last: dict[str, Any] | None,
    boot_id: str | None,
    now: float,
) -> Decision:
    if not settings.enabled:
        return Decision(False, "health check disabled ([health] enabled = false)")
    if settings.partitions and job.partition not in settings.partitions:
        return Decision(False, f"partition {job.partition or '?'} not in [health] partitions")
    if settings.min_gpus and len(job.gpus) < settings.min_gpus:
        return Decision(False, f"job has {len(job.gpus)} GPUs here, fewer than {settings.min_gpus}")
    if settings.when == "every_job":
        return Decision(True, "every job")
    usable = (
        last is not None
        and isinstance(last.get("health"), dict)
        and last["health"].get("verdict") in ("pass", "warn")
    )
    if settings.when == "after_boot":
        if usable and last is not None and boot_id and last.get("boot_id") == boot_id:
            return Decision(False, "already checked since boot", cached=last["health"])
        return Decision(True, "first job after boot")
    checked_at = last.get("checked_at") if usable and last is not None else None
    if (
        isinstance(checked_at, (int, float))
        and 0 <= now - checked_at < settings.interval_hours * 3600
    ):
        assert last is not None
        return Decision(
            False,
            f"checked {int((now - checked_at) / 60)} min ago (interval {settings.interval_hours:g} h)",
            cached=last["health"],
        )
    return Decision(True, f"no check in the last {settings.interval_hours:g} h")
