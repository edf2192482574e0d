"""`slurm-ai mark` parsing and reading as root; the orchestrator failing open; hook files."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from slurm_ai.accounting import marks
from slurm_ai.admin.hookfiles import HookLayout, default_config, render_config, render_shim
from slurm_ai.hooks import runner
from slurm_ai.hooks.__main__ import parse_argv
from slurm_ai.hooks.epilog import build_node_record, run_epilog
from slurm_ai.hooks.prolog import drain_reason, run_prolog

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [
        ["tokens=abc"],
        ["tokens=-1"],
        ["tokens=nan"],
        ["tokens=inf"],
        ["tokens=1e18"],
        ["foo=1"],
        ["workload=gaming"],
        ["tokens"],
        [],
    ],
)
def test_mark_args_strict(args):
    with pytest.raises(marks.MarkError):
        marks.parse_args(args)


def test_mark_roundtrip_and_merge(tmp_path):
    uid = os.getuid()
    marks.prepare(tmp_path / "m", "12", uid)
    marks.write_units(tmp_path / "m", "12", marks.parse_args(["tokens=1.2e9", "epochs=3"]), 4096)
    marks.write_units(
        tmp_path / "m", "12", marks.parse_args(["epochs=4", "workload=inference"]), 4096
    )
    units, problem = marks.read_units(tmp_path / "m", "12", uid, 4096)
    assert problem is None
    assert units == {"tokens": 1.2e9, "epochs": 4.0, "workload": "inference"}
    assert oct((tmp_path / "m").stat().st_mode & 0o777) == "0o711"


def _job_dir(tmp_path: Path) -> Path:
    marks.prepare(tmp_path / "m", "13", os.getuid())
    return tmp_path / "m" / "13"


def test_mark_read_refuses_symlink(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"tokens": 1}')
    (_job_dir(tmp_path) / "units.json").symlink_to(secret)
    units, problem = marks.read_units(tmp_path / "m", "13", os.getuid(), 4096)
    assert units == {} and "refusing" in problem


@pytest.mark.parametrize(
    "content",
    [
        b"x" * 5000,
        b"[1,2]",
        b'{"tokens": "1"}',
        b'{"tokens": 1e400}',
        b'{"evil": 1}',
        b"\xff\xfe",
        # Nested deeper than json.loads can follow: RecursionError, which crashed the Epilog.
        pytest.param(b'{"tokens": ' + b"[" * 2000 + b"]" * 2000 + b"}", id="nested-2000"),
    ],
)
def test_mark_read_rejects_bad_files(tmp_path, content):
    (_job_dir(tmp_path) / "units.json").write_bytes(content)
    units, problem = marks.read_units(tmp_path / "m", "13", os.getuid(), 4096)
    assert units == {} and problem


def test_mark_read_rejects_other_owner(tmp_path):
    path = _job_dir(tmp_path) / "units.json"
    path.write_text('{"tokens": 1}')
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)
        units, problem = marks.read_units(tmp_path / "m", "13", 1234, 4096)
        assert units == {} and "4242" in problem


def test_mark_cli_outside_a_job(monkeypatch):
    from slurm_ai.cli import main

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    result = CliRunner().invoke(main, ["mark", "tokens=1"])
    assert result.exit_code != 0 and "not inside a Slurm job" in result.output


def test_hook_argv_parsing():
    assert parse_argv(["prolog", "--config", "/x.toml"]) == ("prolog", "/x.toml")
    assert parse_argv(["epilog", "--config=/y"]) == ("epilog", "/y")
    assert parse_argv(["rm", "-rf"]) is None and parse_argv(["prolog", "--bogus"]) is None


def test_repo_shims_are_rendered_one_liners():
    layout = HookLayout(python="/usr/bin/python3")
    for hook, folder in (("prolog", "prolog"), ("epilog", "epilog")):
        text = (REPO / folder / "slurm-ai").read_text()
        assert text == render_shim(layout, hook), (
            f"{folder}/slurm-ai is stale: regenerate with slurm_ai.admin.hookfiles.render_shim"
        )
        assert text.count("\n") == 2 and "exec /usr/bin/python3 -I -m slurm_ai.hooks" in text


def test_rendered_config_loads(tmp_path):
    from slurm_ai.config import load_config

    data = default_config(
        spool_dir="/s", log_file="/l/x.log", slurm_conf='/e/"q".conf', mark_dir="/m", health=False
    )
    path = tmp_path / "c.toml"
    path.write_text(render_config(data))
    config = load_config(str(path))
    assert config.spool_dir == Path("/s") and config.slurm_conf == '/e/"q".conf'
    assert runner.step_names(config) == ["topology", "agent", "energy"]


def _config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[spool]\ndir = "{tmp_path}/spool"\n[log]\nfile = "{tmp_path}/log/x.log"\n'
        f'[accounting]\nmark_dir = "{tmp_path}/marks"\ndeliver_inline = false\n'
        f'[energy]\nipmi = "off"\n{extra}'
    )
    return str(path)


ENV = {
    "SLURM_JOB_ID": "31",
    "SLURMD_NODENAME": "n1",
    "SLURM_JOB_NODELIST": "n1",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_JOB_UID": str(os.getuid()),
}


@pytest.fixture
def fake_steps(monkeypatch):
    """Inject step modules: one raising, one drain-requesting, one returning junk."""

    def boom(ctx):
        raise RuntimeError("bug in a step")

    def drain(ctx):
        ctx.request_drain("slurm_ai: health: busbw 3.1 GB/s < 40\nsecond line")
        return {"verdict": "fail"}

    mods = {
        "fake_boom": types.SimpleNamespace(prolog_step=boom, epilog_step=boom),
        "fake_drain": types.SimpleNamespace(prolog_step=drain),
        "fake_junk": types.SimpleNamespace(epilog_step=lambda ctx: {"x": object()}),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(
        runner,
        "STEPS",
        {
            "topology": "fake_boom",
            "health": "fake_drain",
            "agent": "fake_junk",
            "energy": "slurm_ai.energy.hook",
            "missing": "slurm_ai.nothing_here.hook",
        },
    )


def test_prolog_fails_open_and_drains_only_on_request(tmp_path, fake_steps):
    calls = tmp_path / "scontrol.args"
    fake = tmp_path / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" > {calls}\n')
    fake.chmod(0o755)
    config = _config(
        tmp_path,
        f'[slurm]\nscontrol = "{fake}"\n'
        '[hooks]\nsteps = ["topology", "health", "agent", "energy", "missing"]\n',
    )
    assert run_prolog(config, ENV) == 1
    args = calls.read_text()
    assert "nodename=n1 state=drain reason=slurm_ai: health: busbw 3.1 GB/s < 40 second" in args
    state = json.loads((tmp_path / "spool/jobs/31/prolog-n1.json").read_text())
    assert state["steps"]["health"] == {"verdict": "fail"}
    assert any("RuntimeError" in e for e in state["errors"])
    assert oct((tmp_path / "spool/jobs/31/prolog-n1.json").stat().st_mode & 0o777) == "0o600"
    log = (tmp_path / "log/x.log").read_text()
    assert "event=step_failed step=topology" in log and "event=drained" in log
    # Epilog: always 0, record written, errors noted, junk fragment dropped.
    assert run_epilog(config, {**ENV, "SLURM_JOB_EXIT_CODE": "0"}) == 0
    [entry] = list((tmp_path / "spool/outbox").glob("*.json"))
    rec = json.loads(entry.read_text())["nodes"]["n1"]
    assert rec["health"] == {"verdict": "fail"} and "usage" not in rec
    assert rec["energy"]["quality"] in ("estimated", "measured") and rec["time"]["prolog_s"] > 0


def test_prolog_with_broken_config_or_garbage_env_exits_zero(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[spool\n")
    assert run_prolog(str(bad), ENV) == 0
    assert run_prolog(_config(tmp_path), {"SLURM_JOB_ID": "1;rm -rf /"}) == 0
    assert run_epilog(_config(tmp_path), {"SLURM_JOB_ID": "../../etc"}) == 0
    assert not (tmp_path / "spool" / "jobs").exists() or not any(
        (tmp_path / "spool" / "jobs").iterdir()
    )


def test_node_record_layout():
    prolog = {
        "time": {"prolog_start": 10.0, "prolog_s": 0.05, "health_s": 0.01},
        "steps": {
            "topology": {"platform": {"class": "container"}, "plan": {"ranks": 1}},
            "energy": {"_start": {"t": 1}},
        },
        "errors": [],
    }
    frags = {
        "agent": {"usage": {"coverage": 1.0}},
        "energy": {"total_j": 5.0, "sources": [], "gpus": [{"index": 0}]},
    }
    rec = build_node_record(prolog, frags, [], 20.0, 0.5)
    assert rec["platform"] == {"class": "container"} and rec["plan"] == {"ranks": 1}
    assert rec["usage"] == {"coverage": 1.0} and rec["gpus"] == [{"index": 0}]
    assert "gpus" not in rec["energy"] and rec["time"]["epilog_end"] == 20.5
    assert rec["time"]["health_s"] == 0.01


def test_drain_reason_is_one_bounded_line():
    reason = drain_reason(["a\nb", "x" * 500])
    assert "\n" not in reason and len(reason) <= 120
