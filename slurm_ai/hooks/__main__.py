"""Lean hook entry point for slurmd: `python -m slurm_ai.hooks HOOK --config PATH`.

The shims in prolog/ and epilog/ exec this instead of the click CLI: a Prolog
runs on every job's critical path, and click plus the CLI machinery is import
time no job needs. HOOK is prolog, epilog, taskprolog or healthcheck (Slurm's
HealthCheckProgram, see slurm_ai/health/program.py).
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: python -m slurm_ai.hooks {prolog,epilog,taskprolog,healthcheck} [--config PATH]\n"
HOOKS = ("prolog", "epilog", "taskprolog", "healthcheck")


def parse_argv(argv: list[str]) -> tuple[str, str | None] | None:
    if not argv or argv[0] not in HOOKS:
        return None
    hook, rest, config = argv[0], argv[1:], None
    while rest:
        arg = rest.pop(0)
        if arg == "--config" and rest:
            config = rest.pop(0)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            return None
    return hook, config


def taskprolog(config: str | None) -> int:
    """Export the config path to the task (so `slurm-ai mark` finds it), then
    run the topology TaskProlog when that feature is installed."""
    if config:
        print(f"export SLURM_AI_CONFIG={config}", flush=True)
    try:
        import importlib.util

        if importlib.util.find_spec("slurm_ai.topology.cli") is None:
            return 0
        from slurm_ai.cli import main as cli_main

        args = ["--config", config, "taskprolog"] if config else ["taskprolog"]
        cli_main.main(args=args, prog_name="slurm-ai", standalone_mode=False)
    except BaseException as exc:  # a TaskProlog failure must not fail the task
        print(f"slurm-ai taskprolog: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parsed = parse_argv(list(sys.argv[1:] if argv is None else argv))
    if parsed is None:
        sys.stderr.write(USAGE)
        return 0  # never fail a job over a bad shim line; slurmd logs stderr
    hook, config = parsed
    try:
        if hook == "prolog":
            from slurm_ai.hooks.prolog import run_prolog

            return run_prolog(config, os.environ)
        if hook == "epilog":
            from slurm_ai.hooks.epilog import run_epilog

            return run_epilog(config, os.environ)
        if hook == "healthcheck":  # Slurm's HealthCheckProgram
            from slurm_ai.health.program import run_program

            return run_program(config, os.environ)
        return taskprolog(config)
    except BaseException as exc:  # last line of defence: fail open
        sys.stderr.write(f"slurm-ai {hook}: internal error: {type(exc).__name__}: {exc}\n")
        return 0


if __name__ == "__main__":
    sys.exit(main())
