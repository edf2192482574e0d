"""The click commands, `capture` round trip, and `bind` outside Slurm (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from topology_machines import DATA

from slurm_ai.cli import main
from slurm_ai.topology.probe import probe_node

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_"))}


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_probe_json_of_captured_tree() -> None:
    code, out = invoke(["probe", "--root", str(DATA / "dgx_h100"), "--json"])
    assert code == 0
    data = json.loads(out)
    assert data["platform"]["class"] == "bare-metal"
    assert len(data["topology"]["gpus"]) == 8
    assert data["topology"]["gpu_links"]["0,7"] == "NV18"


def test_probe_text_and_plan_of_captured_tree() -> None:
    code, out = invoke(["probe", "--root", str(DATA / "azure_vgpu")])
    assert code == 0 and "platform: vm-vgpu" in out and "NVIDIA A10-8Q" in out
    env = {
        "SLURM_JOB_ID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_GPUS": "0,1,2,3,4,5,6,7",
        "SLURM_STEP_TASKS_PER_NODE": "8",
    }
    code, out = invoke(["plan", "--root", str(DATA / "dgx_h100"), "--json"], env=env)
    assert code == 0
    plan = json.loads(out)
    assert plan["ranks"][1]["env"]["NCCL_IB_HCA"] == "=mlx5_3:1"
    assert plan["summary"]["ranks"] == 8


def test_capture_round_trip(tmp_path: Path) -> None:
    dest = tmp_path / "cap"
    code, out = invoke(["capture", str(dest), "--note", "test"])
    assert code == 0, out
    assert (dest / "SOURCE").read_text().count("test") == 1
    live = probe_node("/")
    replay = probe_node(dest)
    assert replay.topology.to_dict() == live.topology.to_dict()
    assert replay.fingerprint.to_dict() == live.fingerprint.to_dict()
    # Symlinks stay symlinks, and nothing outside the read set is copied.
    net = sorted((dest / "sys/class/net").iterdir())
    assert net and all(entry.is_symlink() for entry in net)
    assert not (dest / "etc").exists()
    code, out = invoke(["capture", str(dest)])
    assert code != 0 and "not empty" in out


def test_taskprolog_outside_and_inside_a_task(tmp_path: Path) -> None:
    code, out = invoke(["taskprolog"], env={"SLURM_JOB_ID": None, "SLURM_LOCALID": None})
    assert code == 0 and not [x for x in out.splitlines() if x.startswith("export ")]
    env = {
        "SLURM_JOB_ID": "9",
        "SLURM_LOCALID": "0",
        "SLURM_STEP_TASKS_PER_NODE": "1",
        "SLURM_JOB_GPUS": "junk",
        "NCCL_SOCKET_IFNAME": None,
    }
    code, out = invoke(["taskprolog"], env=env)
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("export ")]
    # This host's answer, whatever host it is: threads within the task's CPUs, and one of
    # its own network interfaces (exact values are pinned on the recorded machines).
    threads = [int(x.split("=", 1)[1]) for x in lines if x.startswith("export OMP_NUM_THREADS=")]
    assert len(threads) == 1 and 1 <= threads[0] <= len(os.sched_getaffinity(0)), lines
    nics = [x.split("==", 1)[1] for x in lines if x.startswith("export NCCL_SOCKET_IFNAME==")]
    assert len(nics) == 1 and nics[0] in os.listdir("/sys/class/net") and nics[0] != "lo", lines
    assert all(line.count("=") >= 1 and " " not in line[7:] for line in lines)


def run_bind(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurm_ai", "bind", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bind_outside_slurm_runs_command_unchanged() -> None:
    proc = run_bind(
        ["--", sys.executable, "-c", "import os;print(sorted(os.sched_getaffinity(0)))"], CLEAN_ENV
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == str(sorted(os.sched_getaffinity(0)))
    assert "not inside a Slurm job" in proc.stderr


def test_bind_with_garbage_env_still_runs_and_passes_exit_code() -> None:
    env = {
        **CLEAN_ENV,
        "SLURM_JOB_ID": "3",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_GPUS": "7,x",
        "SLURM_CPU_BIND": "mask_cpu:0xQQ",
        "SLURM_STEP_TASKS_PER_NODE": "??",
    }
    proc = run_bind(["--", sys.executable, "-c", "import sys;sys.exit(3)"], env)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "GPU 7 of the job is not on this node" in proc.stderr
    proc = run_bind(["--", "/nonexistent/cmd"], env)
    assert proc.returncode == 127 and "cannot run" in proc.stderr


def test_bind_sets_affinity_and_env_in_a_task() -> None:
    env = {**CLEAN_ENV, "SLURM_JOB_ID": "3", "SLURM_LOCALID": "1", "SLURM_STEP_TASKS_PER_NODE": "2"}
    code = "import os;print(sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'])"
    proc = run_bind(["-v", "--", sys.executable, "-c", code], env)
    assert proc.returncode == 0, proc.stderr
    online = sorted(os.sched_getaffinity(0))
    if len(online) >= 2:
        assert proc.stdout.split("]")[0] + "]" == str(online[len(online) // 2 :])
    assert "rank 1: CPUs" in proc.stderr
