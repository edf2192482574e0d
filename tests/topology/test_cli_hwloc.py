"""`slurm-ai probe|plan --topology FILE.xml`: what slurm-ai would do on a machine we never saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from hwloc_corpus import MPIBIND_MACHINES

from slurm_ai.cli import main

LASSEN = str(MPIBIND_MACHINES["coral-lassen"])
CORONA = str(MPIBIND_MACHINES["epyc-corona"])
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_"))}
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b"<topology>&lol2;</topology>"
)


def invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.output


def test_probe_topology_json_and_text() -> None:
    code, out = invoke(["probe", "--topology", LASSEN, "--json"])
    assert code == 0
    data = json.loads(out)
    assert data["source"] == LASSEN
    assert len(data["topology"]["gpus"]) == 4
    assert data["topology"]["cpu"]["allowed"][0] == 8
    code, out = invoke(["probe", "--topology", CORONA])
    assert code == 0
    assert "source: " in out and "(hwloc XML)" in out and "platform:" not in out
    assert "gpu 3: amd Vega 20  0000:73:00.0  numa 7" in out


def test_plan_topology_table_and_json() -> None:
    code, out = invoke(["plan", "--topology", LASSEN, "--ntasks", "4"])
    assert code == 0
    assert "rank 0: gpus [0]  cpus 8-47  numa 0  nics mlx5_0,mlx5_1" in out
    assert "rank 3: gpus [3]  cpus 136-175  numa 8  nics mlx5_2,mlx5_3" in out
    code, out = invoke(
        [
            "plan",
            "--topology",
            LASSEN,
            "--ntasks",
            "2",
            "--gpus",
            "2,3",
            "--cpus",
            "96-175",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(out)
    assert data["gpus"] == [2, 3] and data["source"] == LASSEN
    assert [r["cpus"] for r in data["ranks"]] == ["96-135", "136-175"]
    assert data["ranks"][1]["env"]["CUDA_VISIBLE_DEVICES"] == "3,2"


def test_plan_topology_amd_variables() -> None:
    code, out = invoke(["plan", "--topology", CORONA, "--ntasks", "2", "--json"])
    assert code == 0
    rank = json.loads(out)["ranks"][1]
    assert rank["gpus"] == [2, 3]
    assert rank["env"]["ROCR_VISIBLE_DEVICES"] == "2,3,0,1"
    assert rank["env"]["HIP_VISIBLE_DEVICES"] == "0,1,2,3"
    assert rank["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


def test_cpu_only_plan_defaults_to_allowed_cpus() -> None:
    code, out = invoke(["plan", "--topology", LASSEN, "--gpus", "none", "--json"])
    assert code == 0
    data = json.loads(out)
    assert data["job_cpus"] == "8-87,96-175" and len(data["ranks"]) == 1


def test_bad_options_and_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "laughs.xml"
    bad.write_bytes(LAUGHS)
    for args, message in (
        (["plan", "--topology", str(bad)], "refused: the file declares XML entities"),
        (["probe", "--topology", str(tmp_path / "none.xml")], "cannot read"),
        (["plan", "--topology", LASSEN, "--gpus", "x"], "not a GPU index"),
        (["plan", "--topology", LASSEN, "--cpus", "9-2"], "bad CPU range"),
        (["probe", "--topology", LASSEN, "--root", str(tmp_path)], "two sources"),
    ):
        code, out = invoke(args)
        assert code != 0 and message in out, (args, out)
        assert "Traceback" not in out


def test_hostile_file_from_the_installed_command(tmp_path: Path) -> None:
    bad = tmp_path / "laughs.xml"
    bad.write_bytes(LAUGHS)
    done = subprocess.run(
        [sys.executable, "-m", "slurm_ai", "probe", "--topology", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env=CLEAN_ENV,
        check=False,
    )
    assert done.returncode == 1
    assert "Error: " in done.stderr and "entities" in done.stderr
    assert "Traceback" not in done.stderr


def test_prolog_path_does_not_load_the_reader() -> None:
    # The Prolog's modules and the CLI module stay free of the XML reader and of xml.etree.
    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys, slurm_ai.hooks.runner, slurm_ai.topology.hook, slurm_ai.topology.cli;"
        "print(sorted(m for m in sys.modules if 'hwloc_xml' in m or m.startswith('xml.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_explicit_job_on_a_captured_tree() -> None:
    # The same options describe a job on a `capture` tree (or this host) too.
    root = Path(__file__).resolve().parents[1] / "data" / "topology" / "dgx_h100"
    code, out = invoke(["plan", "--root", str(root), "--ntasks", "2", "--gpus", "4-7", "--json"])
    assert code == 0
    data = json.loads(out)
    assert [r["gpus"] for r in data["ranks"]] == [[4, 5], [6, 7]]
    assert all(r["numa"] == 1 for r in data["ranks"])
    code, out = invoke(["plan", "--root", str(root), "--ntasks", "0"])
    assert code == 2 and "--ntasks" in out
