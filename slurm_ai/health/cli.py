"""`slurm-ai healthcheck`: turn options into a check, print it, exit by verdict.

Parsing this module imports neither torch nor mpi4py nor numpy: the backend
is imported by the rank that runs it (and, for --scope node, only in the
worker processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any, NoReturn

import click

from slurm_ai import jsontext
from slurm_ai.cli import FiniteRange, load_ctx_config
from slurm_ai.errors import ConfigError, SlurmAIError
from slurm_ai.health.measure import SweepSpec, format_table, parse_size, size_sweep
from slurm_ai.health.settings import Floors, HealthSettings
from slurm_ai.health.verdict import EXIT_CODES, Verdict


def _size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _print_report(report: Any, as_json: bool, scope: str) -> None:
    if as_json:
        data = report.to_json()
        data["scope"] = scope
        click.echo(jsontext.dumps(data, indent=2, sort_keys=True))
        return
    for check in report.checks:
        if check.check != "allreduce" or check.verdict is not Verdict.PASS:
            click.echo(f"# {check.verdict.value:>7}  {check.check}: {check.reason}")
    if report.sweep is not None:
        click.echo(format_table(report.sweep))
        sweep = report.sweep
        if sweep.startup_s is not None and sweep.measure_s is not None:
            click.echo(f"# start-up {sweep.startup_s:.2f} s, measurement {sweep.measure_s:.2f} s")
        for gpu in sweep.local:
            if "gemm_tflops" in gpu:
                click.echo(
                    f"# {gpu.get('device')} ({gpu.get('model')}): GEMM {gpu['gemm_tflops']:.1f} "
                    f"TFLOP/s {gpu.get('gemm_dtype')}, copy {gpu.get('mem_gbps', 0):.1f} GB/s"
                )
    click.echo(
        f"verdict: {report.verdict.value}" + (f" ({report.reason})" if report.reason else "")
    )


@click.command("healthcheck")
@click.option(
    "--backend",
    type=click.Choice(["auto", "mpi", "gloo", "nccl"]),
    default=None,
    help="All-reduce backend (default [health] backend, auto: nccl on GPUs, else mpi, else gloo).",
)
@click.option(
    "--scope",
    type=click.Choice(["node", "job"]),
    default="node",
    show_default=True,
    help="node: start local ranks; job: this process is one rank under srun.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--ranks",
    type=click.IntRange(1, 256),
    default=None,
    help="Local ranks for --scope node (default: one per GPU, 2 on CPU).",
)
@click.option("--min-size", callback=_size_option, help="Smallest size (e.g. 64K).")
@click.option("--max-size", callback=_size_option, help="Largest size (e.g. 256M).")
@click.option(
    "--iters", type=click.IntRange(1, 10000), default=None, help="Timed iterations per size."
)
@click.option(
    "--warmup", type=click.IntRange(0, 1000), default=None, help="Warm-up iterations per size."
)
@click.option(
    "--min-busbw",
    type=FiniteRange(0, 1e12),
    default=None,
    help="Fail below this busbw (GB/s) at the largest size (overrides the config).",
)
@click.option(
    "--max-small-time-us",
    type=FiniteRange(0, 1e12),
    default=None,
    help="Fail above this time (us) at the smallest size (overrides the config).",
)
@click.option(
    "--timeout",
    type=FiniteRange(1, 3600),
    default=None,
    help="Hard limit for the whole check in seconds (default [health] budget_s).",
)
@click.option(
    "--partition", default=None, help="Partition whose thresholds apply (default: the job's)."
)
@click.option(
    "--gpu-checks/--no-gpu-checks",
    default=None,
    help="NVML and XID checks (default [health] gpu_checks; job scope: once per node).",
)
@click.option("--allreduce/--no-allreduce", default=True, help="Run the all-reduce (node scope).")
@click.option(
    "--record", is_flag=True, help="Add the result to the partition's history in the spool."
)
@click.option(
    "--drain", is_flag=True, help="On a fail verdict, drain this node with the reason (root)."
)
@click.option(
    "--master-addr",
    default=None,
    help="--scope job with torch: rendezvous address (default: first node, see docs).",
)
@click.option("--nvml-recording", default=None, hidden=True, help="Test only: NVML recording file.")
@click.option(
    "--kernel-log", default=None, hidden=True, help="Test only: kernel log file for XIDs."
)
@click.pass_context
def healthcheck(ctx: click.Context, **opts: Any) -> None:
    """All-reduce and GPU health check, nccl-tests style.

    Exit codes: 0 pass (or skipped), 1 warn, 2 fail, 3 error, 4 timeout.
    """
    config = load_ctx_config(ctx)
    try:
        settings = HealthSettings.from_config(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    partition = opts["partition"] or os.environ.get("SLURM_JOB_PARTITION")
    base = settings.floors_for(partition)
    floors = Floors(
        opts["min_busbw"] if opts["min_busbw"] is not None else base.min_busbw_gbps,
        opts["max_small_time_us"]
        if opts["max_small_time_us"] is not None
        else base.max_small_time_us,
    )
    timeout = opts["timeout"] or settings.budget_s
    if opts["scope"] == "job":
        code = _job(settings, opts, floors, timeout, partition, config)
    else:
        code = _node(settings, opts, floors, timeout, partition, config)
    ctx.exit(code)


def _node(
    settings: HealthSettings,
    opts: dict[str, Any],
    floors: Floors,
    timeout: float,
    partition: str | None,
    config: Any,
) -> int:
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.node import NodeCheckOptions, run_node_check
    from slurm_ai.slurmenv import JobEnv

    job = JobEnv.from_environ(os.environ)
    node = job.nodename or socket.gethostname()
    options = NodeCheckOptions(
        backend=opts["backend"] or settings.backend,
        ranks=opts["ranks"] or 0,
        min_size=opts["min_size"],
        max_size=opts["max_size"],
        iters=opts["iters"],
        warmup=opts["warmup"],
        timeout_s=timeout,
        gpu_checks=settings.gpu_checks if opts["gpu_checks"] is None else opts["gpu_checks"],
        allreduce=opts["allreduce"],
        partition=partition,
        floors=floors,
        allocated_gpus=job.gpus or None,
        nvml_recording=opts["nvml_recording"],
        kernel_log=opts["kernel_log"],
        fault=os.environ.get("SLURM_AI_HEALTH_FAULT") or None,
        node=node,
        # Only a check that acts on its verdict moves the XID cursor (kmsg.py).
        advance_xid_cursor=bool(opts["record"] or opts["drain"]),
    )
    store = HealthStore(config.spool_dir) if os.geteuid() == 0 else None
    report = run_node_check(settings, options, store, record=bool(opts["record"]))
    _print_report(report, opts["as_json"], "node")
    if settings.textfile_dir:
        from slurm_ai.health.prom import write_textfile

        try:
            write_textfile(settings.textfile_dir, report.fragment(), node)
        except SlurmAIError as exc:
            click.echo(f"warning: textfile not written: {exc}", err=True)
    if opts["drain"] and report.verdict.drains:
        from slurm_ai.health.drain import drain_node, scontrol_for
        from slurm_ai.health.fullcheck import drain_text

        reason = drain_text(report)
        try:
            drain_node(node, reason, config.slurm_env(), scontrol=scontrol_for(config))
            click.echo(f"drained {node}: {reason}", err=True)
        except (SlurmAIError, ValueError) as exc:
            click.echo(f"error: cannot drain {node}: {exc}", err=True)
    return EXIT_CODES[report.verdict]


def _job(
    settings: HealthSettings,
    opts: dict[str, Any],
    floors: Floors,
    timeout: float,
    partition: str | None,
    config: Any,
) -> int:
    from slurm_ai.health import jobscope, stepwatch

    if stepwatch.should_supervise(os.environ):
        return _supervise(settings, opts, timeout, config)
    from slurm_ai.health.history import HealthStore
    from slurm_ai.health.phases import PhaseReporter, pipe_writer

    backend_name = opts["backend"] or settings.backend
    watch_fd = stepwatch.child_reporter_fd(os.environ)
    procid = os.environ.get("SLURM_PROCID", "")
    reporter = None
    if watch_fd is not None:
        reporter = PhaseReporter(
            pipe_writer(watch_fd),
            int(procid) if procid.isdecimal() else None,
            os.environ.get("SLURM_AI_HEALTH_FAULT") or None,
        )

    def on_timeout(rank: int | None) -> None:
        if reporter is not None:
            return  # the supervisor prints the verdict (stepwatch.py)
        if rank in (0, None):
            message = (
                f"{backend_name} all-reduce across the job did not finish within {timeout:g} s"
            )
            if opts["as_json"]:
                click.echo(json.dumps({"scope": "job", "verdict": "timeout", "reason": message}))
            else:
                click.echo(f"verdict: timeout ({message})")
        jobscope.flush()

    try:
        backend = jobscope.backend_for_job(backend_name, settings.mpirun)
        backend_name = backend
        on_gpu = backend == "nccl"
        max_size = opts["max_size"] or (settings.gpu_max_size if on_gpu else settings.cpu_max_size)
        min_size = min(opts["min_size"] or settings.min_size, max_size)
        spec = SweepSpec(
            sizes=size_sweep(min_size, max_size, settings.size_factor, settings.dtype),
            dtype=settings.dtype,
            warmup=opts["warmup"] if opts["warmup"] is not None else settings.warmup,
            iters=opts["iters"] or (max(settings.iters, 20) if on_gpu else settings.iters),
            backend=backend,
            fault=os.environ.get("SLURM_AI_HEALTH_FAULT") or None,
        )
        options = jobscope.JobCheckOptions(
            settings,
            floors,
            partition=partition,
            gpu_checks=settings.gpu_checks if opts["gpu_checks"] is None else opts["gpu_checks"],
            nvml_recording=opts["nvml_recording"],
            kernel_log=opts["kernel_log"],
            # The spool is root's: a user's job-scope check has no history and no XID cursor.
            store=HealthStore(config.spool_dir) if os.geteuid() == 0 else None,
            record=bool(opts["record"]),
        )
        rank, report = jobscope.run_job_check(
            spec,
            options,
            timeout=timeout,
            env=os.environ,
            master_addr=opts["master_addr"],
            slurm_env=config.slurm_env(),
            on_timeout=on_timeout,
            reporter=reporter,
        )
    except Exception as exc:  # fail open with a clear verdict, never a traceback
        report = jobscope.error_report(exc)
        procid = os.environ.get("SLURM_PROCID", "0")
        rank = int(procid) if procid.isdigit() else 0
        if rank != 0:
            click.echo(f"rank {rank}: verdict: error ({report.reason})", err=True)
    if rank == 0:
        _print_report(report, opts["as_json"], "job")
    code = EXIT_CODES[report.verdict]
    if watch_fd is not None:
        jobscope.flush()
        with contextlib.suppress(OSError):
            os.write(watch_fd, f"verdict {code}\n".encode())
    return code


def _supervise(
    settings: HealthSettings, opts: dict[str, Any], timeout: float, config: Any
) -> NoReturn:
    """This srun task supervises its rank (stepwatch.py): the step ends on time."""
    import sys

    from slurm_ai.health import stepwatch
    from slurm_ai.health.errors import HealthCheckError
    from slurm_ai.health.rendezvous import job_rendezvous, scontrol_node_addr

    slurm_env = config.slurm_env()

    def coordinator_addr() -> str | None:
        try:
            return job_rendezvous(
                os.environ,
                master_addr=opts["master_addr"],
                node_addr=lambda node: scontrol_node_addr(node, slurm_env),
            ).master_addr
        except HealthCheckError:
            return None

    sup = stepwatch.make_supervisor(
        os.environ, timeout, bool(opts["as_json"]), coordinator_addr, "scancel", slurm_env
    )
    code = stepwatch.supervise(sup, list(sys.orig_argv), os.environ)
    # Exit now: srun -K's SIGTERM may arrive during the interpreter's shutdown, which
    # uninstalls the handler that keeps this code (srun would then say 143).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
