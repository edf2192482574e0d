"""The full node check as the hooks and Slurm's HealthCheckProgram run it:
measure, store the node's latest verdict (last.json) and history, write the
Prometheus textfile, log one line. Who acts on the verdict (drain, resume) is
the caller's business.
"""

from __future__ import annotations

import logging
from typing import Any

from slurm_ai.health.history import HealthStore
from slurm_ai.health.node import HealthReport, NodeCheckOptions, run_node_check
from slurm_ai.health.settings import HealthSettings


def run_full_check(
    settings: HealthSettings,
    store: HealthStore,
    *,
    node: str,
    boot_id: str | None,
    budget_s: float,
    partition: str | None,
    allocated_gpus: list[int] | None,
    log: logging.Logger,
    event: str,
) -> HealthReport:
    options = NodeCheckOptions(
        backend=settings.backend,
        timeout_s=budget_s,
        partition=partition,
        allocated_gpus=allocated_gpus,
        gpu_checks=settings.gpu_checks,
        node=node,
        # Whoever runs the full check acts on it: XIDs it saw are not judged again.
        advance_xid_cursor=True,
    )
    report = run_node_check(settings, options, store, record=True)
    fragment = report.fragment()
    fragment["gpus"] = allocated_gpus  # None: every GPU of the node
    try:
        store.save_last(boot_id, report.checked_at, fragment)
    except Exception as exc:  # the cache is optional
        log.warning("event=health_cache_failed error=%s", exc)
    write_textfile(settings, fragment, node, log)
    log.info(
        "event=%s verdict=%s backend=%s busbw_gbps=%s startup_s=%s measure_s=%s s=%.2f reason=%s",
        event,
        report.verdict.value,
        report.backend,
        fragment.get("busbw_gbps"),
        fragment.get("startup_s"),
        fragment.get("measure_s"),
        report.duration_s,
        report.reason,
    )
    return report


def write_textfile(
    settings: HealthSettings, fragment: dict[str, Any], node: str, log: logging.Logger
) -> None:
    if not settings.textfile_dir:
        return
    from slurm_ai.health.prom import write_textfile as write

    try:
        write(settings.textfile_dir, fragment, node)
    except Exception as exc:
        log.warning("event=health_textfile_failed error=%s", exc)


def drain_text(report: HealthReport) -> str:
    from slurm_ai.health.drain import drain_reason_for

    return drain_reason_for(report.checks, report.reason)
