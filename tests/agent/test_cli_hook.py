"""`slurm-ai agent` end to end in a subprocess, and the Epilog step over its store."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from agenthelp import XID_TRACE, wait_for
from click.testing import CliRunner

from slurm_ai.agent.hook import cpus_per_node, epilog_step, node_cpus, prolog_step
from slurm_ai.agent.store import SampleStore, store_path
from slurm_ai.cli import main
from slurm_ai.config import Config
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv


def _config(tmp_path: Path, **agent: object) -> Path:
    path = tmp_path / "config.toml"
    lines = ["[agent]"] + [f"{k} = {v!r}".replace("'", '"') for k, v in agent.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_once_prints_metrics_and_fills_the_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["agent", "--once", "--node", "cli1", "--store", str(tmp_path / "{node}"),
         "--nvml-recorded", str(XID_TRACE)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert 'slurm_ai_gpu_power_watts{node="cli1",gpu="7"}' in result.output
    with SampleStore(tmp_path / "cli1", readonly=True) as store:
        assert store.query("SELECT COUNT(*) FROM gpu")[0][0] == 8


def test_bad_options_are_click_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_node = runner.invoke(main, ["agent", "--once", "--node", "../x", "--store", str(tmp_path)])
    assert bad_node.exit_code == 1 and "cannot be used in a path" in bad_node.output
    bad_interval = runner.invoke(main, ["agent", "--interval", "0", "--store", str(tmp_path)])
    assert bad_interval.exit_code == 2
    cfg = _config(tmp_path, interval_s=-1)
    bad_cfg = runner.invoke(main, ["--config", str(cfg), "agent", "--once"])
    assert bad_cfg.exit_code == 1 and "interval_s" in bad_cfg.output


def test_daemon_with_listen_textfile_and_sigterm(tmp_path: Path, agent_process) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(tmp_path, store_dir=str(tmp_path / "stores" / "{node}"), interval_s=0.2)
    proc = agent_process("--node", "d1", "--listen", "127.0.0.1:0", "--textfile", str(tmp_path),
                         "--nvml-recorded", str(XID_TRACE), config=cfg)  # fmt: skip
    textfile = tmp_path / "slurm_ai_agent.prom"
    assert wait_for(textfile.exists, timeout=30)
    assert "slurm_ai_agent_last_sample_timestamp_seconds" in textfile.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = proc.stderr.read().decode()
    assert "serving http://127.0.0.1:" in log and "/metrics" in log
    assert store_path(tmp_path / "stores" / "d1").exists()


def test_duration_stops_and_a_restart_appends(tmp_path: Path) -> None:
    args = ["agent", "--node", "r1", "--store", str(tmp_path / "{node}"), "--interval", "0.1",
            "--duration", "0.5"]  # fmt: skip
    for _ in range(2):
        assert CliRunner().invoke(main, args).exit_code == 0
    with SampleStore(tmp_path / "r1", readonly=True) as store:
        assert store.query("SELECT COUNT(*) FROM tick")[0][0] >= 6


def _ctx(tmp_path: Path, env: dict[str, str], prolog_state: dict[str, object]) -> HookContext:
    config = Config(path=None, data={"agent": {"store_dir": str(tmp_path / "{node}"),
                                               "interval_s": 0.1}})  # fmt: skip
    return HookContext(
        config=config,
        job=JobEnv.from_environ(env),
        node=env.get("SLURMD_NODENAME", "h1"),
        spool_dir=tmp_path,
        log=logging.getLogger("test"),
        prolog_state=prolog_state,
    )


def test_epilog_step_over_a_real_agent_store(tmp_path: Path, spawn_job_process) -> None:  # type: ignore[no-untyped-def]
    import os

    env = {"SLURM_JOB_ID": "777001", "SLURMD_NODENAME": "h1", "SLURM_JOB_UID": str(os.getuid()),
           "SLURM_JOB_NODELIST": "h[0-1]", "SLURM_JOB_CPUS_PER_NODE": "2(x2)",
           "SLURM_JOB_GPUS": "3,5", "SLURM_SCRIPT_CONTEXT": "epilog_slurmd"}  # fmt: skip
    ctx0 = _ctx(tmp_path, env, {})
    start = prolog_step(ctx0)
    assert set(start) == {"_start"}
    spawn_job_process("777001", "h1", busy_s=1.0, mem=48 << 20, linger_s=2.0)
    result = CliRunner().invoke(
        main,
        ["agent", "--node", "h1", "--store", str(tmp_path / "{node}"), "--interval", "0.1",
         "--duration", "2.5", "--nvml-recorded", str(XID_TRACE)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ctx = _ctx(tmp_path, env, {"agent": start})
    usage = epilog_step(ctx, env)["usage"]
    assert usage["window"]["from"] == "prolog"
    assert usage["cpu"]["ncpus"] == 2 and usage["cpu"]["ncpus_source"] == "slurm"
    assert 0.0 < usage["cpu_efficiency"] <= 1.0
    assert usage["peak_rss_bytes"] >= 48 << 20
    assert [g["index"] for g in usage["gpus"]] == [3, 5]
    assert usage["xids"] and usage["xids"][0]["code"] == 79
    # Without the Prolog state, the window starts at the first sample of the job.
    assert epilog_step(_ctx(tmp_path, env, {}), env)["usage"]["window"]["from"] == "first-sample"


def test_epilog_step_never_raises_without_a_store(tmp_path: Path) -> None:
    env = {"SLURM_JOB_ID": "5", "SLURMD_NODENAME": "nostore"}
    usage = epilog_step(_ctx(tmp_path, env, {}), env)["usage"]
    assert usage["coverage"] == 0.0 and "no agent data" in usage["notes"][0]
    (tmp_path / "corrupt").mkdir(mode=0o700)
    store_path(tmp_path / "corrupt").write_bytes(b"\0garbage" * 512)
    env = {"SLURM_JOB_ID": "5", "SLURMD_NODENAME": "corrupt"}
    assert epilog_step(_ctx(tmp_path, env, {}), env)["usage"]["coverage"] == 0.0
    assert epilog_step(_ctx(tmp_path, {}, {}), {})["usage"]["notes"] == ["no job id"]


def test_cpus_per_node_parsing() -> None:
    assert cpus_per_node("2(x3),1") == [2, 2, 2, 1]
    assert cpus_per_node("72") == [72]
    for bad in ("", None, "2(x", "a", "2(x99999999)", "1,,2"):
        assert cpus_per_node(bad) == []
    env = {"SLURM_JOB_CPUS_PER_NODE": "4,8"}
    assert node_cpus(env, ["a", "b"], "b") == 8
    assert node_cpus(env, ["a", "b"], "c") is None
    assert node_cpus({"SLURM_JOB_CPUS_PER_NODE": "4(x2)"}, [], "c") == 4
