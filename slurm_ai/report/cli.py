"""Click commands `slurm-ai job` and `slurm-ai report`: options in, renderers out."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from slurm_ai import jsontext
from slurm_ai.accounting.sacct import (
    Layout,
    SacctQuery,
    parse_time,
    read_rows,
    stream_sacct,
)
from slurm_ai.cli import FiniteRange, load_ctx_config
from slurm_ai.errors import SlurmAIError
from slurm_ai.report.dumpfile import Dump, rows_in_range


@dataclass(frozen=True)
class JobFilter:
    """The report's filters applied to each job (dumps hold everything)."""

    start: float | None
    end: float | None
    partitions: frozenset[str]
    users: frozenset[str]
    accounts: frozenset[str]

    def __call__(
        self,
        partition: str,
        user: str,
        account: str,
        submit: float | None,
        start: float | None,
        end: float | None,
    ) -> bool:
        if self.partitions and partition not in self.partitions:
            return False
        if self.users and user not in self.users:
            return False
        if self.accounts and account not in self.accounts:
            return False
        # Like sacct -S/-E: jobs that ran (or waited) inside the window.
        if self.start is not None and end is not None and end < self.start:
            return False
        began = start if start is not None else submit
        return not (self.end is not None and began is not None and began > self.end)


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for value in values for v in value.split(",") if v)


def _open_dump(path: str) -> Dump:
    try:
        return Dump.open(path)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from exc


def _dump_rows(dump: Dump) -> Iterator[str]:
    return (row for row, _ in rows_in_range(dump, dump.data_start, dump.size))


def _time_arg(value: str | None, name: str, local: bool) -> float | None:
    """The time as epoch seconds for our own filter.

    Live, sacct applies -S/-E itself and understands more forms (now-1hour,
    MMDDYY...); only a dump needs a time we can parse.
    """
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None and local:
        raise click.BadParameter(
            f"not a time: {value!r} (use YYYY-MM-DD[THH:MM:SS] or epoch seconds)", param_hint=name
        )
    return parsed


@click.command()
@click.option("--start", "start", help="Jobs running after this time (YYYY-MM-DD[THH:MM[:SS]]).")
@click.option("--end", "end", help="Jobs running before this time.")
@click.option(
    "--partition", "partitions", multiple=True, help="Only these partitions (repeat or comma list)."
)
@click.option("--user", "users", multiple=True, help="Only these users.")
@click.option("--account", "accounts", multiple=True, help="Only these accounts.")
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False),
    help="Read a saved sacct dump instead of live accounting.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    help="Also write an HTML page with charts.",
)
@click.option("--workers", type=int, default=0, help="Worker processes (default: one per core).")
@click.option(
    "--timeout",
    type=FiniteRange(1, 86400),
    default=3600.0,
    show_default=True,
    help="Seconds sacct may run.",
)
@click.pass_context
def report(
    ctx: click.Context,
    start: str | None,
    end: str | None,
    partitions: tuple[str, ...],
    users: tuple[str, ...],
    accounts: tuple[str, ...],
    from_file: str | None,
    fmt: str,
    html_file: str | None,
    workers: int,
    timeout: float,
) -> None:
    """Compare partitions: bare metal versus VM, per platform class."""
    from slurm_ai.report.pipeline import aggregate_file, aggregate_rows
    from slurm_ai.report.prices import load_prices
    from slurm_ai.report.render import render_csv, render_json, render_text

    config = load_ctx_config(ctx)
    keep = JobFilter(
        _time_arg(start, "--start", from_file is not None),
        _time_arg(end, "--end", from_file is not None),
        frozenset(_split(partitions)),
        frozenset(_split(users)),
        frozenset(_split(accounts)),
    )
    try:
        prices = load_prices(config)
        if from_file:
            agg = aggregate_file(_open_dump(from_file), workers=workers or None, keep=keep)
        else:
            query = SacctQuery(start, end, _split(partitions), _split(users), _split(accounts))
            layout, rows = stream_sacct(query, extra_env=config.slurm_env(), timeout=timeout)
            agg = aggregate_rows(layout, rows, workers=workers or None, keep=keep)
    except SlurmAIError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot read {from_file}: {exc.strerror}") from exc
    result = agg.finish(prices)
    render = {"table": render_text, "json": render_json, "csv": render_csv}[fmt]
    click.echo(render(result), nl=False)
    if html_file:
        from slurm_ai.report.html import render_html

        try:
            Path(html_file).write_text(render_html(result, agg), encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {html_file}: {exc.strerror}") from exc
        click.echo(f"wrote {html_file}", err=True)


@click.command()
@click.argument("jobid")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the raw record (and sacct fields) as JSON."
)
@click.option(
    "--from",
    "from_file",
    type=click.Path(dir_okay=False),
    help="Look the job up in a saved sacct dump.",
)
@click.option(
    "--all-nodes",
    is_flag=True,
    help="For a summarised record: every node from its detail file.",
)
@click.pass_context
def job(
    ctx: click.Context, jobid: str, as_json: bool, from_file: str | None, all_nodes: bool
) -> None:
    """Report on one job: energy, cost, health, plan."""
    from slurm_ai.proc import run_command
    from slurm_ai.report.jobview import job_json, render_job
    from slurm_ai.report.prices import load_prices

    if not jobid.isdigit():
        raise click.BadParameter("a numeric job id", param_hint="JOBID")
    config = load_ctx_config(ctx)
    try:
        prices = load_prices(config)
        layout: Layout
        rows: Iterable[str]
        if from_file:
            dump = _open_dump(from_file)
            layout, rows = dump.layout, _dump_rows(dump)
        else:
            from slurm_ai.accounting.sacct import SACCT_ENV, sacct_argv

            # One job is small: the buffered runner is enough here.
            result = run_command(
                sacct_argv(SacctQuery(jobs=(jobid,))),
                extra_env={**SACCT_ENV, **config.slurm_env()},
                timeout=60,
            )
            layout, rows = read_rows(result.stdout.splitlines(keepends=True))
        found = None
        for row in rows:
            fields = layout.split(row)
            if fields and fields.get("JobIDRaw") == jobid:
                found = fields
                break
    except SlurmAIError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot read {from_file}: {exc.strerror}") from exc
    if found is None:
        raise click.ClickException(f"job {jobid} not found in accounting")
    waiting = _spool_waiting(config, jobid)
    if as_json:
        click.echo(jsontext.dumps(job_json(found, waiting, all_nodes), indent=2, sort_keys=True))
    else:
        sys.stdout.flush()
        click.echo(render_job(found, prices, waiting, all_nodes), nl=False)


def _spool_waiting(config: Any, jobid: str) -> Any:
    """The job's parts waiting in this host's spool (root reads it; others see nothing)."""
    from slurm_ai.accounting.outbox import Spool
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.accounting.waiting import job_waiting

    try:
        settings = AccountingSettings.from_config(config)
        spool = Spool(settings.delivery_root(config.spool_dir))
        if not os.access(spool.root, os.R_OK | os.X_OK):
            return None
        return job_waiting(spool, jobid, settings.partial_after_s)
    except (SlurmAIError, OSError):
        return None
