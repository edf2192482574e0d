"""click commands: probe, plan, bind, capture, taskprolog.

Kept lean: `bind` and `taskprolog` run on every task start, so this module
imports only click at load time; the work modules load inside each command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from slurm_ai import jsontext


def _settings(ctx: click.Context) -> Any:
    """[topology] settings; a bad config warns and falls back to defaults."""
    from slurm_ai.errors import SlurmAIError
    from slurm_ai.topology.settings import TopologySettings, load_settings

    try:
        from slurm_ai.cli import load_ctx_config

        return load_settings(load_ctx_config(ctx))
    except (click.ClickException, SlurmAIError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"slurm-ai: warning: config ignored: {message}", err=True)
        return TopologySettings()


def _platform_section(ctx: click.Context) -> Any:
    from slurm_ai.cli import load_ctx_config

    try:
        return load_ctx_config(ctx).section("platform")
    except click.ClickException:
        return None


root_option = click.option(
    "--root",
    type=click.Path(exists=True, file_okay=False),
    default="/",
    show_default=True,
    help="Read a tree written by `slurm-ai capture` instead of this host.",
)


topology_option = click.option(
    "--topology",
    "topology_xml",
    type=click.Path(dir_okay=False),
    default=None,
    help="Read an hwloc XML file (`lstopo --of xml`, v1/v2/v3) instead of this host.",
)


def _read_xml(path: str) -> Any:
    """The node of an hwloc XML file; a bad file is a clear error (exit 1), not a traceback."""
    from slurm_ai.topology.hwloc_xml import HwlocXmlError, read_hwloc_xml

    try:
        return read_hwloc_xml(path)
    except HwlocXmlError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@root_option
@topology_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--refresh", is_flag=True, help="Ignore the per-boot cache (live host only).")
@click.pass_context
def probe(
    ctx: click.Context, root: str, topology_xml: str | None, as_json: bool, refresh: bool
) -> None:
    """Show this node's fingerprint and topology (or an hwloc XML file's topology)."""
    from slurm_ai.errors import SlurmAIError
    from slurm_ai.topology.probe import probe_live_cached, probe_node
    from slurm_ai.topology.render import render_probe
    from slurm_ai.topology.virt import platform_record

    if topology_xml is not None:
        if root != "/":
            raise click.UsageError("--topology and --root are two sources: give one")
        topo = _read_xml(topology_xml)
        if as_json:
            out = {"source": topology_xml, "topology": topo.to_dict()}
            click.echo(jsontext.dumps(out, indent=2, sort_keys=True))
        else:
            click.echo(render_probe(topo, None, source=f"{topology_xml} (hwloc XML)"))
        return
    settings = _settings(ctx)
    if os.path.realpath(root) == "/" and os.geteuid() == 0 and not refresh:
        from slurm_ai.cli import load_ctx_config

        spool = load_ctx_config(ctx).spool_dir
        result = probe_live_cached(
            spool, max_age_s=settings.cache_max_age_s, nvml_timeout=settings.nvml_timeout_s
        )
    else:
        result = probe_node(root, nvml_timeout=settings.nvml_timeout_s)
    node = os.uname().nodename if root == "/" else None
    try:
        platform = platform_record(
            result.fingerprint, _platform_section(ctx), node, os.environ.get("SLURM_JOB_PARTITION")
        )
    except SlurmAIError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        out = {"platform": platform, "topology": result.topology.to_dict(), "cached": result.cached}
        click.echo(jsontext.dumps(out, indent=2, sort_keys=True))
    else:
        click.echo(render_probe(result.topology, platform))


@click.command()
@root_option
@topology_option
@click.option("--ntasks", type=click.IntRange(1, 4096), default=None, help="Tasks on the node.")
@click.option(
    "--gpus", default=None, help="The job's GPUs (Slurm indices: 0-3,6, all, none; default all)."
)
@click.option("--cpus", default=None, help="The job's CPUs (0-15,32-47; default: all allowed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plan(
    ctx: click.Context,
    root: str,
    topology_xml: str | None,
    ntasks: int | None,
    gpus: str | None,
    cpus: str | None,
    as_json: bool,
) -> None:
    """Show the affinity plan for the current job environment.

    Outside a job it plans one rank over all CPUs and GPUs of the node; set
    SLURM_JOB_GPUS, SLURM_STEP_TASKS_PER_NODE, ... to try other allocations.
    With --topology FILE.xml (or any of --ntasks/--gpus/--cpus) it plans the job
    those options describe on that machine instead, ignoring $SLURM_*.
    """
    from slurm_ai.topology.render import render_plan
    from slurm_ai.topology.task import plan_for_task

    settings = _settings(ctx)
    if topology_xml is not None or ntasks is not None or gpus is not None or cpus is not None:
        _plan_explicit(root, topology_xml, ntasks, gpus, cpus, settings, as_json)
        return
    env = dict(os.environ)
    live = os.path.realpath(root) == "/"
    task = plan_for_task(
        env, settings, root=root, own_affinity=sorted(os.sched_getaffinity(0)) if live else None
    )
    local = env.get("SLURM_LOCALID")
    if as_json:
        out = task.plan.to_dict()
        out["summary"] = task.plan.summary()
        out["probe_warnings"] = task.warnings
        click.echo(jsontext.dumps(out, indent=2, sort_keys=True))
    else:
        click.echo(render_plan(task.plan, int(local) if local and local.isdigit() else None))
        for warning in task.warnings:
            click.echo(f"warning: {warning}")


def _plan_explicit(
    root: str,
    topology_xml: str | None,
    ntasks: int | None,
    gpus: str | None,
    cpus: str | None,
    settings: Any,
    as_json: bool,
) -> None:
    """`plan --topology/--ntasks/--gpus/--cpus`: the plan of a described job on a machine."""
    from slurm_ai.slurmenv import parse_index_list
    from slurm_ai.sysfs import parse_cpu_list
    from slurm_ai.topology.plan import JobAllocation, PlanOptions, compute_plan, gpu_units
    from slurm_ai.topology.probe import probe_node
    from slurm_ai.topology.render import render_plan

    if topology_xml is not None:
        if root != "/":
            raise click.UsageError("--topology and --root are two sources: give one")
        topo = _read_xml(topology_xml)
    else:
        topo = probe_node(root, nvml_timeout=settings.nvml_timeout_s).topology
    units = [u.index for u in gpu_units(topo)]
    if gpus is None or gpus.strip().lower() == "all":
        job_gpus = units
    elif gpus.strip().lower() == "none":
        job_gpus = []
    else:
        job_gpus, problems = parse_index_list(gpus)
        if problems or not job_gpus:
            raise click.BadParameter("; ".join(problems) or "empty", param_hint="--gpus")
    if cpus is None:
        job_cpus = topo.cpu.allowed or topo.cpu.online
    else:
        try:
            job_cpus = parse_cpu_list(cpus)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cpus") from exc
        if not job_cpus:
            raise click.BadParameter("empty CPU list", param_hint="--cpus")
    visible = settings.visible_devices if settings.visible_devices != "auto" else "index"
    alloc = JobAllocation(
        cpus=job_cpus, gpus=job_gpus, ntasks=ntasks or max(1, len(job_gpus)), visible=visible
    )
    result = compute_plan(
        topo,
        alloc,
        PlanOptions(nic_exclude=settings.nic_exclude, own_gpu_only=settings.own_gpu_only),
    )
    if as_json:
        out = result.to_dict()
        out["summary"] = result.summary()
        out["probe_warnings"] = topo.warnings
        out["source"] = topology_xml or root
        click.echo(jsontext.dumps(out, indent=2, sort_keys=True))
    else:
        click.echo(render_plan(result))
        for warning in topo.warnings:
            click.echo(f"warning: {warning}")


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-q", "--quiet", is_flag=True, help="No notes or warnings on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Say what was applied, on stderr.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def bind(ctx: click.Context, quiet: bool, verbose: bool, command: tuple[str, ...]) -> None:
    """Pin this rank to its GPU, CPUs, memory and NIC, then exec COMMAND.

    Use as `srun slurm-ai bind -- CMD ARGS`. Outside a Slurm task, COMMAND runs
    unchanged. A fault in slurm-ai never stops COMMAND.
    """
    from slurm_ai.topology.bind import bind_and_exec

    settings = None
    try:
        # No config file: skip loading it (bind is on every task's start, and
        # slurm_ai.config pulls in tomllib). Same lookup as config.config_path.
        path = (
            ctx.find_root().obj.get("config_file")
            or os.environ.get("SLURM_AI_CONFIG")
            or "/etc/slurm-ai/config.toml"
        )
        if Path(path).exists():
            settings = _settings(ctx)
    except Exception:  # never stop the task for a config problem
        settings = None
    bind_and_exec(list(command), quiet=quiet, verbose=verbose, settings=settings)


@click.command()
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--no-nvml", is_flag=True, help="Do not record NVML.")
@click.option("--note", default="", help="A line for the SOURCE file (what machine this is).")
def capture(dest: str, no_nvml: bool, note: str) -> None:
    """Record this node's sysfs subset and NVML readings into DEST (for tests)."""
    from slurm_ai.errors import SlurmAIError
    from slurm_ai.topology.capture import capture as do_capture

    try:
        summary = do_capture(Path(dest), with_nvml=not no_nvml, note=note)
    except SlurmAIError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"captured {summary['files']} files, {summary['links']} links, {summary['gpus']} GPU(s), "
        f"{summary['nics']} NIC(s) into {dest} ({summary['nvml']}); "
        f"read back with: slurm-ai probe --root {dest}"
    )


@click.command()
@click.pass_context
def taskprolog(ctx: click.Context) -> None:
    """TaskProlog: print `export NAME=value` lines for the task (always exits 0)."""
    try:
        from slurm_ai.topology.taskprolog import taskprolog_lines

        settings = _settings(ctx)
        for line in taskprolog_lines(dict(os.environ), settings):
            click.echo(line)
    except Exception as exc:  # a TaskProlog failure must not stop the task
        print(f"slurm-ai taskprolog: warning: {type(exc).__name__}: {exc}", file=sys.stderr)
