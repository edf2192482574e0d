"""`slurm-ai healthcheck` end to end on this machine (real mpi4py ranks)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from health_helpers import needs_mpi

from slurm_ai.cli import main

FAST = [
    "--backend",
    "mpi",
    "--min-size",
    "4K",
    "--max-size",
    "256K",
    "--iters",
    "2",
    "--no-gpu-checks",
]


def invoke(args: list[str], env: dict[str, str] | None = None, config: str | None = None) -> Result:
    env = {"SLURM_AI_HEALTH_FAULT": "", **(env or {})}
    pre = ["--config", config] if config else []
    return CliRunner().invoke(main, [*pre, "healthcheck", *args], env=env, catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[spool]\ndir = "{tmp_path / "spool"}"\n[health]\nbudget_s = 60\n')
    return str(path)


@needs_mpi
def test_table_and_pass(config: str) -> None:
    result = invoke(FAST, config=config)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("busbw" in line and "#wrong" in line for line in lines)
    assert "Out of bounds values : 0 OK" in result.output
    assert lines[-1].startswith("verdict: pass")


@needs_mpi
def test_json_output(config: str) -> None:
    result = invoke([*FAST, "--json"], config=config)
    data = json.loads(result.output)
    assert data["verdict"] == "pass" and data["backend"] == "mpi" and data["ranks"] == 2
    assert data["size_bytes"] == 262144 and data["busbw_gbps"] > 0 and data["wrong"] == 0
    assert [r["size_bytes"] for r in data["rows"]] == [4096, 16384, 65536, 262144]


@needs_mpi
def test_impossible_floor_fails_with_exit_2(config: str) -> None:
    result = invoke([*FAST, "--min-busbw", "1e9"], config=config)
    assert result.exit_code == 2
    assert "verdict: fail (allreduce-busbw: busbw" in result.output


@needs_mpi
def test_corrupted_worker_fails_with_wrong_count(config: str) -> None:
    result = invoke([*FAST, "--json"], env={"SLURM_AI_HEALTH_FAULT": "corrupt:0"}, config=config)
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert data["wrong"] > 0 and "wrong elements" in data["reason"]


@needs_mpi
def test_hung_worker_gives_timeout_exit_4(config: str) -> None:
    result = invoke(
        [*FAST, "--timeout", "4"], env={"SLURM_AI_HEALTH_FAULT": "hang:1"}, config=config
    )
    assert result.exit_code == 4
    assert "verdict: timeout" in result.output


@needs_mpi
def test_recorded_gpu_fault_fails_the_node(config: str, recording: Callable[[str], str]) -> None:
    args = ["--nvml-recording", recording("xid"), "--no-allreduce"]
    result = invoke(args, config=config)
    assert result.exit_code == 2
    assert "xid: gpu7: Xid 79" in result.output
    ok = invoke(["--nvml-recording", recording("ok"), "--no-allreduce"], config=config)
    assert ok.exit_code == 0 and "verdict: pass (8 GPUs healthy)" in ok.output


def test_bad_options_are_usage_errors(config: str) -> None:
    assert invoke(["--max-size", "huge"], config=config).exit_code == 2
    # torch's rendezvous needs the Slurm step environment: a clear error, exit 3.
    bad = invoke(["--scope", "job", "--backend", "gloo"], config=config)
    assert bad.exit_code == 3 and "--scope job runs under srun" in bad.output


def test_bad_config_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[health]\nwhen = "sometimes"\n')
    result = invoke(FAST, config=str(path))
    assert result.exit_code == 1 and "[health] when" in result.output


@needs_mpi
def test_cli_and_mpi_path_never_import_torch(config: str) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from slurm_ai.cli import main\n"
        f"r = CliRunner().invoke(main, ['--config', {config!r}, 'healthcheck', *{FAST!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'mpi4py', 'numpy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_only_record_or_drain_moves_the_xid_cursor(
    config: str, recording: Callable[[str], str]
) -> None:
    args = ["--nvml-recording", recording("xid"), "--no-allreduce"]
    assert invoke(args, config=config).exit_code == 2
    assert invoke(args, config=config).exit_code == 2  # a look by hand hides nothing
    assert invoke([*args, "--record"], config=config).exit_code == 2
    again = invoke(args, config=config)
    assert again.exit_code == 0, again.output
    assert "info  xid: gpu7: Xid 79 before the last check" in again.output
