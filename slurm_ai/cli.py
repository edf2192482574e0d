"""The `slurm-ai` command line.

Subcommands load lazily from `COMMANDS`: `slurm-ai --help` and the hot
commands (taskprolog, bind, prolog, epilog) never import torch, mpi4py or
pynvml unless the command itself needs them. Each feature module owns its
click command; this file only knows where to find it.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from slurm_ai import __version__

# name -> ("module:attribute", one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "probe": ("slurm_ai.topology.cli:probe", "Show this node's fingerprint and topology."),
    "plan": ("slurm_ai.topology.cli:plan", "Show the affinity plan for the current job."),
    "bind": (
        "slurm_ai.topology.cli:bind",
        "Pin this rank to its GPU, CPUs, memory and NIC, then exec CMD.",
    ),
    "capture": (
        "slurm_ai.topology.cli:capture",
        "Record this node's sysfs and NVML data for tests.",
    ),
    "taskprolog": (
        "slurm_ai.topology.cli:taskprolog",
        "TaskProlog: print export lines for the task.",
    ),
    "healthcheck": (
        "slurm_ai.health.cli:healthcheck",
        "All-reduce and GPU health check (node or job scope).",
    ),
    "prolog": ("slurm_ai.hooks.cli:prolog", "Node Prolog hook (run by slurmd as root)."),
    "epilog": ("slurm_ai.hooks.cli:epilog", "Node Epilog hook (run by slurmd as root)."),
    "deliver": (
        "slurm_ai.accounting.cli:deliver",
        "Deliver pending job records into Slurm accounting.",
    ),
    "mark": (
        "slurm_ai.accounting.cli:mark",
        "Record work units done by this job (tokens=, epochs=, ...).",
    ),
    "agent": ("slurm_ai.agent.cli:agent", "Node agent sampling GPU/CPU use per job."),
    "job": ("slurm_ai.report.cli:job", "Report on one job: energy, cost, health, plan."),
    "report": ("slurm_ai.report.cli:report", "Compare partitions: bare metal versus VM."),
    "install": ("slurm_ai.admin.cli:install", "Install the hooks, config and spool on this node."),
    "doctor": ("slurm_ai.admin.cli:doctor", "Check this node's install end to end."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # `slurm-ai --help` lists the stored one-line help: no command module is imported.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if ctx.resilient_parsing:
            # Shell completion must not import every command.
            return click.Command(cmd_name, help=entry[1], short_help=entry[1])
        target, _ = entry
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
                raise click.ClickException(
                    f"'{cmd_name}' is not available in this build ({module_name} missing)"
                ) from exc
            raise click.ClickException(
                f"'{cmd_name}' needs the Python package '{exc.name}': pip install {exc.name}"
            ) from exc
        command: Any = getattr(module, attr)
        if not isinstance(command, click.Command):
            raise click.ClickException(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slurm-ai")
@click.option(
    "--config",
    "config_file",
    envvar="SLURM_AI_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (default /etc/slurm-ai/config.toml).",
)
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """slurm-ai: affinity, health checks, energy accounting and bare-metal versus VM reports."""
    ctx.ensure_object(dict)
    ctx.obj.setdefault("config_file", config_file)


class FiniteRange(click.FloatRange):
    """click.FloatRange that refuses NaN and infinities: NaN passes every comparison,
    so FloatRange alone takes `--timeout nan` (a limit that never expires)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def load_ctx_config(ctx: click.Context) -> Any:
    """The Config for a subcommand, loaded once per invocation; errors as ClickException."""
    from slurm_ai.config import load_config
    from slurm_ai.errors import ConfigError

    root = ctx.find_root()
    root.ensure_object(dict)
    if "config" not in root.obj:
        try:
            root.obj["config"] = load_config(root.obj.get("config_file"))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    return root.obj["config"]


if __name__ == "__main__":  # pragma: no cover
    main()
