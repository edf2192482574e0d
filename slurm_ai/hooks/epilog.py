"""The node Epilog: end the steps, build this node's record, hand it to delivery.

Exit status: always 0 (an Epilog failure drains the node in Slurm).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slurm_ai.errors import SlurmAIError, SpoolError
from slurm_ai.hooks import runner
from slurm_ai.hooks.context import HookContext

# A step's fragment lands in the node record in one of two ways: a dict whose
# keys are all node-record fields is spread into the record (topology returns
# {"platform": ..., "plan": ...}, the agent {"usage": ...}); anything else is
# stored under the step's default key. The energy fragment's "gpus" list is
# lifted to the node's "gpus".
RECORD_FIELDS = frozenset({"platform", "plan", "health", "energy", "gpus", "usage"})
DEFAULT_KEY = {"topology": "topology", "health": "health", "agent": "usage", "energy": "energy"}


def public(fragment: Any) -> Any:
    """A fragment without its private keys ("_..." is step state, not record)."""
    if isinstance(fragment, dict):
        return {k: v for k, v in fragment.items() if not str(k).startswith("_")}
    return fragment


def build_node_record(
    prolog_state: dict[str, Any],
    fragments: dict[str, Any],
    errors: list[str],
    epilog_start: float,
    epilog_s: float,
) -> dict[str, Any]:
    """The v1 node record from the Prolog's state and the Epilog's fragments."""
    prolog_steps = prolog_state.get("steps") if isinstance(prolog_state.get("steps"), dict) else {}
    record: dict[str, Any] = {}
    for name in runner.STEPS:
        fragment = fragments.get(name)
        if fragment is None:
            fragment = (prolog_steps or {}).get(name)
        fragment = public(fragment)
        if fragment in (None, {}, []):
            continue
        if isinstance(fragment, dict) and set(fragment) <= RECORD_FIELDS:
            record.update(fragment)
        elif name == "energy" and isinstance(fragment, dict):
            fragment = dict(fragment)
            gpus = fragment.pop("gpus", None)
            record["energy"] = fragment
            if gpus:
                record["gpus"] = gpus
        else:
            record[DEFAULT_KEY.get(name, name)] = fragment
    timing: dict[str, Any] = {}
    ptime = prolog_state.get("time")
    if isinstance(ptime, dict):
        timing.update({k: v for k, v in ptime.items() if isinstance(v, (int, float))})
    timing["epilog_end"] = round(epilog_start + epilog_s, 3)
    timing["epilog_s"] = round(epilog_s, 4)
    record["time"] = timing
    all_errors = [*prolog_state.get("errors", []), *errors] if prolog_state else list(errors)
    if all_errors:
        record["errors"] = [str(e)[:200] for e in all_errors[: runner.MAX_ERRORS]]
    if not prolog_state:
        record["errors"] = [*record.get("errors", []), "no Prolog state for this node"]
    return record


def run_epilog(config_path: str | None, environ: Mapping[str, str]) -> int:
    """The whole Epilog; always exit 0 (an Epilog failure would drain the node)."""
    return runner.run_hook("epilog", config_path, environ, _epilog)


def _epilog(
    config: Any,
    job: Any,
    node: str,
    environ: Mapping[str, str],
    log: Any,
    started: float,
    t0: float,
) -> int:
    from slurm_ai.accounting import held, marks
    from slurm_ai.accounting.outbox import Spool, node_file
    from slurm_ai.accounting.settings import AccountingSettings

    settings = AccountingSettings.from_config(config)
    spool = Spool(config.spool_dir, log)
    prolog_state = spool.read_prolog_state(job.job_id, node)
    held_prolog = False
    if not prolog_state:
        # The spool was not writable when the Prolog ran: its state was held.
        prolog_state = held.read_held_prolog_state(settings.hold_dir, job.job_id, node)
        held_prolog = bool(prolog_state)
    ctx = HookContext(config, job, node, config.spool_dir, log, env=dict(environ))
    steps = prolog_state.get("steps")
    ctx.prolog_state = steps if isinstance(steps, dict) else {}
    fragments, errors, durations = runner.run_steps(ctx, "epilog", runner.step_names(config))

    units, problem = marks.read_units(
        settings.mark_dir, job.job_id, job.uid, settings.mark_max_bytes
    )
    if problem:
        log.warning("event=mark_ignored reason=%s", runner.one_line(problem))
    marks.cleanup(settings.mark_dir, job.job_id)
    meta = runner.job_meta(ctx)
    # srun/sbatch --sai-workload (an explicit choice) wins over `slurm-ai mark workload=`.
    workload = marks.option_workload(ctx.job_dir) or units.pop("workload", None)
    units.pop("workload", None)
    if workload:
        meta["workload"] = workload

    record = build_node_record(prolog_state, fragments, errors, started, time.perf_counter() - t0)
    delivery = Spool(settings.delivery_root(config.spool_dir), log)
    data = node_file(node, meta, record, units)
    try:
        delivery.write_node_file(job.job_id, node, "node", data)
    except SpoolError as exc:
        # A read-only or full spool must not lose this node's part of the job: keep it
        # in the hold directory for the next `slurm-ai deliver` (accounting/held.py).
        try:
            where = held.hold(settings.hold_dir, job.job_id, node, "node", data)
        except SpoolError as hold_exc:
            # Both refused (every local disk full): straight into accounting.
            write_direct(data, settings, config, log, delivery.root, exc, hold_exc)
            return 0
        log.error(
            "event=node_record_held spool=%s spool_error=%s held_in=%s "
            "left_for=slurm-ai_deliver_once_the_spool_is_writable",
            delivery.root,
            runner.one_line(exc),
            where,
        )
        return 0
    if held_prolog:
        held.forget_prolog_state(settings.hold_dir, job.job_id, node)
    if delivery.root != spool.root:
        # Node-local spool with a gather directory: the record went there; this
        # node's Prolog state is done with.
        spool.drop_job_dir(job.job_id)
    log.info(
        "event=node_record_written s=%.3f steps=%s errors=%d",
        time.perf_counter() - t0,
        ",".join(f"{k}:{v:.3f}" for k, v in durations.items()),
        len(errors),
    )
    try:
        hand_over(delivery, settings, config, job.job_id, meta, log)
    except SlurmAIError as exc:
        log.error("event=handover_failed error=%s left_for=sweeper", runner.one_line(exc))
    return 0


def write_direct(
    data: dict[str, Any],
    settings: Any,
    config: Any,
    log: Any,
    spool_root: Path,
    spool_exc: Exception,
    hold_exc: Exception,
) -> None:
    """The node record into AdminComment without the spool (accounting/direct.py)."""
    from slurm_ai.accounting.backend import select_backend
    from slurm_ai.accounting.direct import deliver_node_file

    t0 = time.perf_counter()
    try:
        backend = select_backend(
            settings.backend, config.slurm_env(), settings.timeout_s, settings.sacctmgr_folds_case
        )
        written, why = deliver_node_file(
            data, backend, settings, log, spool_root=spool_root, budget_s=settings.inline_budget_s
        )
    except SlurmAIError as exc:
        written, why = False, str(exc)
    errors = (
        f"spool={spool_root} spool_error={runner.one_line(spool_exc)} "
        f"hold_error={runner.one_line(hold_exc)}"
    )
    if written:
        log.error(
            "event=node_record_written_direct s=%.3f %s written_to=accounting spool_copy=none",
            time.perf_counter() - t0,
            errors,
        )
    else:
        log.error("event=node_record_lost %s direct_error=%s", errors, runner.one_line(why))


def hand_over(
    spool: Any, settings: Any, config: Any, job_id: str, meta: dict[str, Any], log: Any
) -> None:
    """Single writer: the node that completes the set claims it and delivers."""
    from slurm_ai.accounting.deliver import deliver_pending, names_for_log
    from slurm_ai.record import expected_names

    expected = expected_names(meta) or set()
    present = spool.present_nodes(job_id)
    if settings.gathers and not expected <= present:
        log.info(
            "event=waiting_for_nodes have=%d expected=%d missing=%s",
            len(present),
            len(expected),
            names_for_log(sorted(expected - present)),
        )
        return
    claimed = spool.claim(job_id, "epilog")
    if claimed is None:
        return  # another node's Epilog won the claim
    entry = spool.finalize(claimed)
    log.info("event=claimed nodes=%d", len(entry.nodes) if entry else 0)
    if not settings.deliver_inline:
        return
    from slurm_ai.accounting.backend import select_backend

    t0 = time.perf_counter()
    backend = select_backend(
        settings.backend, config.slurm_env(), settings.timeout_s, settings.sacctmgr_folds_case
    )
    deadline = time.monotonic() + settings.inline_budget_s
    while True:
        stats = deliver_pending(
            spool, backend, settings, log, budget_s=deadline - time.monotonic(), sweep=False
        )
        # A job of a second or two can end before slurmctld has told slurmdbd
        # about it: wait a little within the budget rather than for the sweeper.
        if (
            not stats.waiting
            or stats.backend_down
            or not _waits_for_accounting(spool, job_id)
            or time.monotonic() + 1.0 > deadline
        ):
            break
        time.sleep(1.0)
    log.info(
        "event=inline_delivery s=%.3f %s",
        time.perf_counter() - t0,
        " ".join(f"{k}={v}" for k, v in stats.as_dict().items()),
    )


def _waits_for_accounting(spool: Any, job_id: str) -> bool:
    """This job's own entry is still pending because slurmdbd does not know the job yet."""
    from slurm_ai import spool as spoolmod
    from slurm_ai.accounting.outbox import ENTRY_MAX_BYTES
    from slurm_ai.errors import SpoolError

    try:
        entry = spoolmod.read_json(spool.entry_path(job_id), max_bytes=ENTRY_MAX_BYTES)
    except (FileNotFoundError, SpoolError):
        return False
    return isinstance(entry, dict) and "not in accounting" in str(entry.get("last_error", ""))
