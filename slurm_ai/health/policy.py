"""When the Prolog runs the check (pure: the caller passes the cache and clock).

background  never in the Prolog: it runs the quick GPU checks and reads the
            node's latest full verdict (`latest`); the full check runs as
            Slurm's HealthCheckProgram and in the Epilog when that verdict
            is older than `max_age_hours`
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
    background: bool = False  # the Prolog reads the latest full verdict instead


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
    if settings.when == "background":
        return Decision(False, "the full check runs off the job's start", background=True)
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


# A stored "unchecked" (a cold start, say) is not reused either: the next
# Epilog or HealthCheckProgram run tries again.
USABLE = ("pass", "warn")


@dataclass(frozen=True)
class Latest:
    """The node's latest full verdict as a job sees it."""

    health: dict[str, Any] | None  # the stored fragment when fresh and usable
    age_s: float | None
    why: str  # why there is none to use ("" when usable)

    @property
    def usable(self) -> bool:
        return self.health is not None


def latest(
    settings: HealthSettings,
    last: dict[str, Any] | None,
    now: float,
    boot_id: str | None = None,
    job_gpus: list[int] | None = None,
) -> Latest:
    """Is the stored full verdict (last.json) fresh enough to stand for this job?

    Not when absent, older than max_age_hours, from the future (a clock step),
    from before the node's last boot (`boot_id`, the current one, differs from
    the stored one: a node that crashed and came back is checked again), or a
    verdict that must not be reused (fail, error, timeout, unchecked: after an
    admin resumes a drained node it is checked again), or a check of some GPUs
    only (an Epilog's refresh: its `gpus`) for a job with others (`job_gpus`;
    None: the job's GPUs are not known, so every GPU counts)."""
    if last is None or not isinstance(last.get("health"), dict):
        return Latest(None, None, "no full check on this node yet")
    checked_at = last.get("checked_at")
    if not isinstance(checked_at, (int, float)) or isinstance(checked_at, bool):
        return Latest(None, None, "the stored verdict has no time")
    age = now - float(checked_at)
    verdict = str(last["health"].get("verdict"))
    stored_boot = last.get("boot_id")
    if boot_id and isinstance(stored_boot, str) and stored_boot and stored_boot != boot_id:
        return Latest(None, round(age, 1), "the node rebooted since its last full check")
    checked = last["health"].get("gpus")
    if isinstance(checked, list) and (job_gpus is None or not set(job_gpus) <= set(checked)):
        shown = ",".join(str(g) for g in job_gpus) if job_gpus is not None else "all"
        return Latest(
            None,
            round(age, 1),
            f"the last full check covered GPUs {','.join(map(str, checked))}, not {shown}",
        )
    if age < 0:
        return Latest(None, round(age, 1), "the stored verdict is from the future (clock step)")
    if age > settings.max_age_hours * 3600:
        return Latest(
            None,
            round(age, 1),
            f"the last full check is {age / 3600:.1f} h old (max_age_hours "
            f"{settings.max_age_hours:g})",
        )
    if verdict not in USABLE:
        return Latest(None, round(age, 1), f"the last full check was {verdict}: re-check pending")
    return Latest(last["health"], round(age, 1), "")


# Verdicts that mean "the full check could not judge this node".
NOT_JUDGED = frozenset({"unchecked", "skipped", "error", "timeout"})


def provenance(source: str, verdict: str, reason: str, age_s: float | None) -> dict[str, Any]:
    """record["nodes"][n]["health"]["provenance"]: what the job's verdict rests on.

    source: fresh (measured for this job), cached (the node's latest full
    verdict, `age_s` old) or unchecked (`why` says why nothing judged it).
    """
    why: str | None = None
    if source != "unchecked" and verdict in NOT_JUDGED:
        source, why = "unchecked", f"{verdict}: {reason}"[:200]
    elif source == "unchecked":
        why = reason[:200]
    return {"source": source, "age_s": age_s, "why": why}
