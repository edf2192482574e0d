"""The agent command leaves no signal handler behind when it runs in-process."""

from __future__ import annotations

import signal
from pathlib import Path

from click.testing import CliRunner

from slurm_ai.cli import main


def test_agent_cli_restores_signal_handlers(tmp_path: Path, monkeypatch) -> None:
    # A SIGTERM handler left in this process would be inherited by every child it forks
    # later (e.g. the report's worker pool), which then ignores Pool.terminate().
    monkeypatch.setenv("SLURM_AI_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    result = CliRunner().invoke(
        main,
        ["agent", "--node", "t1", "--store", str(tmp_path / "{node}"),
         "--interval", "0.05", "--duration", "0.2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
