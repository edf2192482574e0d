"""`slurm-ai agent`: the node agent's command line (thin: options -> Agent)."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace

import click

from slurm_ai.cli import FiniteRange, load_ctx_config
from slurm_ai.errors import SlurmAIError


@click.command("agent")
@click.option("--interval", type=FiniteRange(0.05, 3600), help="Seconds between samples.")
@click.option("--store", "store_dir", help='Store directory ("{node}" expands to the node name).')
@click.option("--node", help="Node name (default: the short hostname).")
@click.option(
    "--textfile", "textfile_dir", help="Directory for node_exporter's textfile collector."
)
@click.option("--listen", help="Serve /metrics on [HOST:]PORT (HOST defaults to 127.0.0.1).")
@click.option("--once", is_flag=True, help="Take one sample, print it, exit.")
@click.option("--duration", type=FiniteRange(0), help="Stop after this many seconds.")
@click.option("--nvml-recorded", help="Sample a recorded NVML file instead of the GPUs (tests).")
@click.pass_context
def agent(
    ctx: click.Context,
    interval: float | None,
    store_dir: str | None,
    node: str | None,
    textfile_dir: str | None,
    listen: str | None,
    once: bool,
    duration: float | None,
    nvml_recorded: str | None,
) -> None:
    """Sample GPU and CPU use per job into this node's bounded store."""
    from slurm_ai.agent.daemon import (
        Agent,
        AgentSettings,
        open_gpus,
        resolve_store_dir,
        short_hostname,
        start_metrics_server,
    )
    from slurm_ai.agent.export import render_text
    from slurm_ai.agent.store import SampleStore
    from slurm_ai.sysfs import Sysfs

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="slurm-ai agent: %(levelname)s %(message)s"
    )
    log = logging.getLogger("slurm_ai.agent")
    try:
        settings = AgentSettings.from_config(load_ctx_config(ctx))
        settings = replace(
            settings,
            interval_s=interval or settings.interval_s,
            store_dir=store_dir or settings.store_dir,
            textfile_dir=textfile_dir or settings.textfile_dir,
            listen=listen or settings.listen,
            nvml_recorded=nvml_recorded or settings.nvml_recorded,
        )
        node_name = node or short_hostname()
        directory = resolve_store_dir(settings.store_dir, node_name)
        store = SampleStore(
            directory, max_bytes=settings.max_bytes, retention_s=settings.retention_s
        )
        nv, why = open_gpus(settings)
        if nv is None:
            log.info("no GPU sampling: %s", why)
        the_agent = Agent(
            node=node_name,
            store=store,
            interval_s=settings.interval_s,
            nv=nv,
            sysfs=Sysfs(settings.sysfs_root),
            textfile_dir=settings.textfile_dir,
            events=settings.events,
            rapl=settings.rapl,
            health_file=load_ctx_config(ctx).spool_dir / "health" / "last.json",
        )
    except SlurmAIError as exc:
        raise click.ClickException(str(exc)) from exc
    server = None
    restore_signals = None
    try:
        if once:
            the_agent.tick()
            click.echo(render_text(the_agent.metrics.current()), nl=False)
            return
        if settings.listen:
            server = start_metrics_server(the_agent, settings.listen)
            log.info("serving http://%s:%d/metrics (%s)", server.host, server.port, server.backend)
        restore_signals = the_agent.install_signal_handlers()
        log.info("node %s: sampling every %gs into %s", node_name, settings.interval_s, store.path)
        the_agent.run(duration_s=duration)
    except SlurmAIError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if restore_signals is not None:
            restore_signals()
        if server is not None:
            server.close()
        the_agent.close()
        if nv is not None:
            nv.close()
