"""The CLI skeleton: version, lazy loading, no heavy imports on --help."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from slurm_ai import __version__
from slurm_ai.cli import COMMANDS, main

HEAVY = ("torch", "mpi4py", "pynvml", "numpy")


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from slurm_ai.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from slurm_ai.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('slurm_ai.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert loaded == ["slurm_ai.cli"]


def test_unknown_command_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_bad_config_file_is_a_clear_error(tmp_path) -> None:
    import click

    from slurm_ai.cli import load_ctx_config

    bad = tmp_path / "config.toml"
    bad.write_text("[spool\n")

    @click.command()
    @click.pass_context
    def show(ctx: click.Context) -> None:
        load_ctx_config(ctx)

    result = CliRunner().invoke(show, [], obj={"config_file": str(bad)})
    assert result.exit_code == 1
    assert "not valid TOML" in result.output
