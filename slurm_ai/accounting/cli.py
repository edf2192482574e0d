"""`slurm-ai deliver` (the sweeper, as root) and `slurm-ai mark` (in a job, as the user)."""

from __future__ import annotations

import os
from typing import Any

import click

from slurm_ai import jsontext
from slurm_ai.cli import load_ctx_config

EXIT_WAITING = 3  # records remain in the spool because accounting is unreachable


@click.command(help="Deliver pending job records into Slurm accounting.")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for another running delivery to finish.",
)
@click.option(
    "--budget",
    "budget_s",
    type=float,
    default=None,
    help="Stop after this many seconds (the rest waits for the next run).",
)
@click.option("--list", "list_only", is_flag=True, help="Only list what is pending.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_context
def deliver(
    ctx: click.Context, wait_s: float, budget_s: float | None, list_only: bool, as_json: bool
) -> None:
    from slurm_ai.accounting.backend import select_backend
    from slurm_ai.accounting.deliver import deliver_pending
    from slurm_ai.accounting.held import held_jobs
    from slurm_ai.accounting.outbox import Spool
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.errors import SlurmAIError
    from slurm_ai.hooks.runner import setup_log

    config = load_ctx_config(ctx)
    settings = AccountingSettings.from_config(config)
    log = setup_log(config, "deliver", None, os.uname().nodename.split(".")[0])
    spool = Spool(settings.delivery_root(config.spool_dir), log)
    try:
        if list_only:
            import time

            from slurm_ai.accounting.waiting import waiting_jobs

            now = time.time()
            waiting = waiting_jobs(spool, settings.partial_after_s)
            kept = held_jobs(settings.hold_dir)
            if as_json:
                rows: list[dict[str, Any]] = [
                    {
                        **w.as_dict(),
                        "nodes": w.have,
                        "attempts": w.attempts,
                        "last_error": w.last_error,
                    }
                    for w in waiting
                ] + [h.as_dict() for h in kept]
                click.echo(jsontext.dumps(rows, indent=1))
            else:
                lines = [w.line(now) for w in waiting] + [h.line(now) for h in kept]
                click.echo("\n".join(lines) or "nothing pending")
            return
        spool.ensure()
        backend = select_backend(
            settings.backend, config.slurm_env(), settings.timeout_s, settings.sacctmgr_folds_case
        )
        stats = deliver_pending(spool, backend, settings, log, budget_s=budget_s, wait_s=wait_s)
    except (SlurmAIError, OSError) as exc:
        # OSError: a spool that exists but cannot be written (read-only, full).
        text = str(exc) if isinstance(exc, SlurmAIError) else f"spool {spool.root}: {exc}"
        kept = held_jobs(settings.hold_dir)
        if kept:
            text += f"; {len(kept)} job(s) held in {settings.hold_dir} wait for a writable spool"
        raise click.ClickException(text) from exc
    summary = stats.as_dict()
    if as_json:
        click.echo(jsontext.dumps(summary, sort_keys=True))
    else:
        shown = " ".join(f"{k}={v}" for k, v in sorted(summary.items()) if k != "held_error")
        if shown or not stats.held_error:  # not "nothing pending" while records stay held
            click.echo(shown or "nothing pending")
    if stats.lock_busy:
        click.echo("another delivery is running; it will deliver what is pending", err=True)
    if stats.backend_down:
        click.echo(
            f"accounting unreachable, records wait in the spool: {stats.backend_down}", err=True
        )
    if stats.held_error:
        # A spool whose directories can be made but whose files cannot (a full disk):
        # the held records stay held; a timer must see that this pass did not deliver
        # them (as when the spool itself cannot be written, above).
        kept = held_jobs(settings.hold_dir)
        raise click.ClickException(
            f"{stats.held_error}; {len(kept)} job(s) held in {settings.hold_dir} "
            "wait for a writable spool"
        )
    if stats.backend_down:
        ctx.exit(EXIT_WAITING)


@click.command(help="Record work units done by this job (tokens=, epochs=, ...).")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--job", "job_id", envvar="SLURM_JOB_ID", help="Job id (default $SLURM_JOB_ID).")
@click.pass_context
def mark(ctx: click.Context, pairs: tuple[str, ...], job_id: str | None) -> None:
    """Keys: tokens, epochs, samples, requests (numbers; job totals so far) and
    workload (training, fine-tuning, inference, data-science). Marking again
    replaces the keys given."""
    from slurm_ai.accounting import marks
    from slurm_ai.accounting.outbox import valid_job_id
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.errors import SlurmAIError

    if not job_id or not valid_job_id(job_id):
        raise click.ClickException("not inside a Slurm job (no valid SLURM_JOB_ID); use --job")
    try:
        units = marks.parse_args(list(pairs))
    except marks.MarkError as exc:
        raise click.UsageError(str(exc)) from exc
    config = load_ctx_config(ctx)
    settings = AccountingSettings.from_config(config)
    try:
        path = marks.write_units(settings.mark_dir, job_id, units, settings.mark_max_bytes)
    except (marks.MarkError, SlurmAIError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"marked job {job_id}: " + " ".join(f"{k}={v}" for k, v in units.items()) + f" ({path})"
    )
