"""`slurm-ai prolog` / `slurm-ai epilog`: the hooks through the click CLI.

The installed shims use the leaner `python -m slurm_ai.hooks` (no click);
these commands run the very same code, for manual runs and for sites that
prefer the `slurm-ai` entry point.
"""

from __future__ import annotations

import os

import click


def _config_file(ctx: click.Context) -> str | None:
    root = ctx.find_root()
    return (root.obj or {}).get("config_file") if root.obj else None


@click.command(help="Node Prolog hook (run by slurmd as root).")
@click.pass_context
def prolog(ctx: click.Context) -> None:
    from slurm_ai.hooks.prolog import run_prolog

    ctx.exit(run_prolog(_config_file(ctx), os.environ))


@click.command(help="Node Epilog hook (run by slurmd as root).")
@click.pass_context
def epilog(ctx: click.Context) -> None:
    from slurm_ai.hooks.epilog import run_epilog

    ctx.exit(run_epilog(_config_file(ctx), os.environ))
