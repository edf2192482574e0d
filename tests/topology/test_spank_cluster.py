"""On the real local cluster: the SPANK plugin pins plain `srun` tasks, no wrapper.

The plugin is built against this machine's <slurm/spank.h> and registered in
the instance's plugstack.conf.d, as `slurm-ai install` does on a site (the
instance's slurm.conf points PlugStackConfig there). The nodes here have two
CPUs each, where Slurm's own automatic binding gives the same sets as our
plan, so the tests tell them apart by the plugin's verbose lines. `--cpu-bind=none`
is the user saying "do not bind my tasks": Slurm binds nothing and neither does the
plugin (docs/spank.md).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hooks_fixture import installed_hooks  # noqa: F401  (the fixture)

from slurm_ai import cbuild
from slurm_ai.sysfs import format_cpu_list, parse_cpu_list
from slurm_ai.topology import planfile, spank
from tests.admin.clusterhelp import wait_record

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        cbuild.find_compiler() is None or cbuild.find_slurm_include(spank.HEADERS) is None,
        reason="needs gcc and libslurm-dev (scripts/setup-deps installs both)",
    ),
]

DATA = Path(__file__).parent / "data"  # srun option tables read off srun itself

PRINT = (
    "import os;print('JOB', os.environ['SLURM_JOB_ID']);print('TASK', os.environ['SLURMD_NODENAME'], os.environ['SLURM_LOCALID'], "
    "sorted(os.sched_getaffinity(0)), os.environ.get('OMP_NUM_THREADS'))"
)


@pytest.fixture(scope="module")
def plugin(installed_hooks: Any) -> Iterator[Any]:  # noqa: F811
    prefix = Path(installed_hooks.cluster.prefix)
    path = spank.build_plugin(prefix / "spank")
    conf = prefix / "etc" / "plugstack.conf.d" / spank.CONF_NAME
    conf.write_text(spank.conf_line(path, installed_hooks.spool_dir, "auto"))
    try:
        yield installed_hooks
    finally:
        conf.unlink(missing_ok=True)


def tasks(stdout: str) -> dict[tuple[str, int], list[int]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("TASK "):
            _, node, local, rest = line.split(" ", 3)
            out[(node, int(local))] = ast.literal_eval(rest.rsplit(" ", 1)[0])
    return out


def slurm_ai() -> list[str]:
    exe = shutil.which("slurm-ai")
    return [exe] if exe else [sys.executable, "-m", "slurm_ai"]


def srun(hooks: Any, *args: str) -> Any:
    proc = hooks.cluster.run(["srun", *args], env=hooks.env(), timeout=120)
    return proc


def test_plain_srun_tasks_get_the_plan_without_a_wrapper(plugin: Any) -> None:
    """Each task gets the plan's CPUs (over Slurm's automatic binding).

    `slurm-ai plan` runs in a second step of the same allocation with the plugin
    off, so that it sees the step's CPUs rather than a pinned task's.
    """
    task = shlex.join(["srun", "-n2", sys.executable, "-c", PRINT])
    plan = shlex.join([*slurm_ai(), "plan", "--json"])
    plan_step = shlex.join(
        ["srun", "-n2", "--cpu-bind=none", "--sai-bind=off", "sh", "-c",
         f'[ "$SLURM_LOCALID" = 0 ] && {plan} || true']
    )  # fmt: skip
    proc = plugin.cluster.run(
        ["salloc", "-N1", "-n2", "sh", "-c", f"{task} && {plan_step}"],
        env=plugin.env(),
    )
    assert proc.returncode == 0, proc.stderr
    got = tasks(proc.stdout)
    assert len(got) == 2
    (a, b) = got.values()
    assert a and b and not set(a) & set(b), got
    planned = json.loads(proc.stdout[proc.stdout.index("{") :])
    want = [parse_cpu_list(r["cpus"]) for r in planned["ranks"]]
    assert [got[k] for k in sorted(got)] == want
    assert (plugin.spool_dir / "jobs").is_dir()


def test_two_nodes_are_pinned_on_both_and_the_record_says_plugin(plugin: Any) -> None:
    proc = srun(plugin, "-N2", "-n4", sys.executable, "-c", PRINT)
    assert proc.returncode == 0, proc.stderr
    got = tasks(proc.stdout)
    nodes = {node for node, _ in got}
    assert len(got) == 4 and len(nodes) == 2, got
    for node in nodes:
        sets = [set(cpus) for (n, _), cpus in got.items() if n == node]
        assert all(len(s) == 1 for s in sets) and not sets[0] & sets[1], got
    record = wait_record(plugin.cluster, job_of(proc.stdout), nodes=2)
    assert {n["plan"]["pinned_by"] for n in record["nodes"].values()} == {"plugin"}


def job_of(stdout: str) -> str:
    match = re.search(r"^JOB (\d+)$", stdout, re.M)
    assert match, stdout
    return match.group(1)


def test_verbose_prints_each_binding_on_stderr(plugin: Any) -> None:
    """Under Slurm's own automatic binding too: the task plans over the step's masks."""
    for _ in range(3):
        proc = srun(plugin, "-N1", "-n2", "--sai-bind=verbose", "true")
        assert proc.returncode == 0, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("slurm-ai: task")]
        assert sorted(line.split(";")[0] for line in lines) == [
            "slurm-ai: task 0: CPUs 0",
            "slurm-ai: task 1: CPUs 1",
        ], proc.stderr
        assert all("OMP_NUM_THREADS=1" in line for line in lines)


def test_off_and_an_explicit_cpu_bind_keep_slurms_sets(plugin: Any) -> None:
    proc = srun(
        plugin, "-N1", "-n2", "--cpu-bind=none", "--sai-bind=off", sys.executable, "-c", PRINT
    )
    assert proc.returncode == 0, proc.stderr
    sets = list(tasks(proc.stdout).values())
    assert len(sets) == 2 and sets[0] == sets[1] and len(sets[0]) == 2  # unbound: both CPUs
    proc = srun(plugin, "-N1", "-n2", "--cpu-bind=map_cpu:1,0", sys.executable, "-c", PRINT)
    assert proc.returncode == 0, proc.stderr
    got = tasks(proc.stdout)
    assert sorted((k[1], v) for k, v in got.items()) == [(0, [1]), (1, [0])]  # Slurm's map
    job = job_of(proc.stdout)
    logs = "".join(
        p.read_text(errors="replace") for p in (plugin.cluster.prefix / "log").glob("slurmd-*.log")
    )
    assert f"slurm-ai: job {job} step" not in logs  # the step's CPUs were seen: no warning


def test_a_binding_chosen_in_srun_s_environment_is_kept(plugin: Any) -> None:
    """SLURM_CPU_BIND is srun's input variable for --cpu-bind: the user's choice too."""
    env = {**plugin.env(), "SLURM_CPU_BIND": "map_cpu:1,0"}
    proc = plugin.cluster.run(
        ["srun", "-N1", "-n2", "--sai-bind=verbose", sys.executable, "-c", PRINT],
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = tasks(proc.stdout)
    assert sorted((k[1], v) for k, v in got.items()) == [(0, [1]), (1, [0])]  # Slurm's map
    lines = [line for line in proc.stderr.splitlines() if line.startswith("slurm-ai: task")]
    assert len(lines) == 2 and all("CPUs unchanged" in line for line in lines), proc.stderr
    # The command line wins over the environment, as in srun: only verbosity there (no
    # binding chosen), so we pin.
    proc = plugin.cluster.run(
        ["srun", "-N1", "-n2", "--cpu-bind=verbose", "--sai-bind=verbose", "true"],
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("slurm-ai: task")]
    assert len(lines) == 2 and not any("CPUs unchanged" in line for line in lines), proc.stderr


def verbose_lines(stderr: str) -> list[str]:
    """The plugin's verbose lines, with srun -l's "N: " label taken off."""
    lines = (re.sub(r"^\s*\d+: ", "", line) for line in stderr.splitlines())
    return [line for line in lines if line.startswith("slurm-ai: task")]


def test_which_cpu_bind_values_are_the_user_s_choice(plugin: Any) -> None:
    """A value is the user's choice when one of its words is more than quiet/verbose
    ("none": do not bind); the command's own arguments are not srun's, even after a
    flag that takes no value."""
    run = [sys.executable, "-c", PRINT]
    # quiet,map_cpu: Slurm's map stays, and nothing that follows from our CPUs is set.
    proc = srun(plugin, "-N1", "-n2", "--cpu-bind=quiet,map_cpu:1,0", "--sai-bind=verbose", *run)
    assert proc.returncode == 0, proc.stderr
    assert sorted((k[1], v) for k, v in tasks(proc.stdout).items()) == [(0, [1]), (1, [0])]
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and all("CPUs unchanged" in line for line in lines), proc.stderr
    assert not any("OMP_NUM_THREADS" in line for line in lines), proc.stderr
    # verbose,none: "do not bind my tasks". Slurm binds nothing, and neither does the
    # plugin: each task keeps both of the step's CPUs.
    for value in ("verbose,none", "none"):
        proc = srun(plugin, "-N1", "-n2", f"--cpu-bind={value}", "--sai-bind=verbose", *run)
        assert proc.returncode == 0, proc.stderr
        assert sorted(tasks(proc.stdout).values()) == [[0, 1], [0, 1]], proc.stdout
        lines = verbose_lines(proc.stderr)
        assert len(lines) == 2 and all("CPUs unchanged" in line for line in lines), proc.stderr
        assert not any("OMP_NUM_THREADS" in line for line in lines), proc.stderr
    # verbose alone chooses nothing: the plugin pins.
    proc = srun(plugin, "-N1", "-n2", "--cpu-bind=verbose", "--sai-bind=verbose", "true")
    assert proc.returncode == 0, proc.stderr
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and not any("unchanged" in line for line in lines), proc.stderr
    # -l takes no value: python3 is the command, and its --cpu-bind is its own.
    proc = srun(plugin, "-N1", "-n2", "-l", "--sai-bind=verbose", *run, "--cpu-bind=map_cpu:1,0")
    assert proc.returncode == 0, proc.stderr
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and not any("unchanged" in line for line in lines), proc.stderr


def test_a_plain_srun_in_a_batch_job_is_pinned(plugin: Any) -> None:
    """The batch step's own environment (Slurm's SLURM_CPU_BIND_* outputs) is not a
    user's choice: srun inside sbatch, with no binding option, is pinned."""
    out = plugin.cluster.shared_dir / "spank-sbatch-plain.out"
    proc = plugin.cluster.run(
        ["sbatch", "--parsable", "--wait", "-N1", "-n2", f"--output={out}",
         "--wrap", "env | grep '^SLURM_.*BIND' >&2; srun -n2 --sai-bind=verbose true"],
        env=plugin.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("slurm-ai: task")]
    assert len(lines) == 2 and not any("CPUs unchanged" in line for line in lines), text


def test_bad_option_value_is_a_clear_error(plugin: Any) -> None:
    for client in (
        ["srun", "-N1", "-n1", "--sai-bind=bogus"],
        ["sbatch", "--sai-bind=bogus", "--wrap"],
    ):
        proc = plugin.cluster.run([*client, "true"], env=plugin.env())
        assert proc.returncode != 0
        assert "--sai-bind=bogus: expected auto, off or verbose" in proc.stderr, client


def test_sbatch_off_reaches_the_jobs_steps(plugin: Any) -> None:
    out = plugin.cluster.shared_dir / "spank-sbatch-off.out"
    step = shlex.join(["srun", "-n2", "--cpu-bind=none", sys.executable, "-c", PRINT])
    proc = plugin.cluster.run(
        ["sbatch", "--parsable", "--wait", "-N1", "-n2", "--sai-bind=off", f"--output={out}",
         "--wrap", step],
        env=plugin.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sets = list(tasks(out.read_text()).values())
    assert len(sets) == 2 and sets[0] == sets[1] and len(sets[0]) == 2  # not pinned


def _job_with_plan(plugin: Any, tmp_name: str, damage: Any) -> tuple[str, str]:
    """Run a job whose plan file `damage(path)` changes before its step starts."""
    shared = plugin.cluster.shared_dir
    flag = shared / f"{tmp_name}.go"
    out = shared / f"{tmp_name}.out"
    flag.unlink(missing_ok=True)
    script = (
        "#!/bin/sh\n"
        f"while [ ! -e {flag} ]; do sleep 0.1; done\n"
        f'srun -n2 --cpu-bind=none {sys.executable} -c "{PRINT}"\n'
    )
    proc = plugin.cluster.run(
        ["sbatch", "--parsable", "-N1", "-n2", f"--output={out}"], input=script, env=plugin.env()
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    job_dir = plugin.spool_dir / "jobs" / job_id
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(job_dir.glob(planfile.PLAN_NAME)):
        time.sleep(0.1)
    plans = list(job_dir.glob(planfile.PLAN_NAME))
    assert plans, f"no plan file in {job_dir}"
    for path in plans:
        damage(path)
    flag.touch()
    while time.monotonic() < deadline:
        state = plugin.cluster.run(["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout.strip()
        if not state:
            break
        time.sleep(0.2)
    return job_id, out.read_text()


@pytest.mark.parametrize(
    "case, damage, why",
    [
        ("missing", lambda p: p.unlink(), "No such file"),
        ("corrupt", lambda p: p.write_bytes(b"sai-task-plan 1\ncpu 0 x\n"), "bad 'cpu' line"),
        ("oversized", lambda p: p.write_bytes(b"sai-task-plan 1\n" + b"#\n" * 600_000), "over the"),
    ],
)
def test_a_bad_plan_leaves_tasks_running_unpinned_with_a_log_line(
    plugin: Any, case: str, damage: Any, why: str
) -> None:
    job_id, output = _job_with_plan(plugin, f"spank-{case}", damage)
    sets = list(tasks(output).values())
    assert len(sets) == 2 and sets[0] == sets[1], output  # ran, unpinned
    logs = "".join(
        p.read_text(errors="replace") for p in (plugin.cluster.prefix / "log").glob("slurmd-*.log")
    )
    line = f"slurm-ai: job {job_id} step 0 runs unpinned"
    assert any(line in entry and why in entry for entry in logs.splitlines()), why


def test_doctor_sees_srun_load_the_plugin(plugin: Any) -> None:
    from slurm_ai.admin.doctor import DoctorTarget, check_spank

    prefix = Path(plugin.cluster.prefix)
    target = DoctorTarget(
        config_path=plugin.config_path,
        slurm_etc=prefix / "etc",
        slurm_conf=plugin.cluster.slurm_conf,
    )
    (result,) = check_spank(target)
    assert result.status == "pass", result
    other = DoctorTarget(
        config_path=plugin.config_path,
        slurm_etc=prefix / "nowhere",
        slurm_conf=plugin.cluster.slurm_conf,
    )
    assert check_spank(other)[0].status == "info"


def test_a_job_pinned_by_bind_says_so(plugin: Any) -> None:
    proc = srun(
        plugin, "-N1", "-n1", *slurm_ai(), "bind", "-q", "--", "sh", "-c", "echo JOB $SLURM_JOB_ID"
    )
    assert proc.returncode == 0, proc.stderr
    record = wait_record(plugin.cluster, job_of(proc.stdout), nodes=1)
    assert [n["plan"]["pinned_by"] for n in record["nodes"].values()] == ["bind"]


def test_workload_option_labels_the_record(plugin: Any) -> None:
    proc = srun(
        plugin, "-N1", "-n1", "--sai-workload=inference", "sh", "-c", "echo JOB $SLURM_JOB_ID"
    )
    assert proc.returncode == 0, proc.stderr
    record = wait_record(plugin.cluster, job_of(proc.stdout), nodes=1)
    assert record["job"]["workload"] == "inference"
    out = plugin.cluster.shared_dir / "spank-workload.out"
    proc = plugin.cluster.run(
        ["sbatch", "--parsable", "-N1", "--sai-workload=training", f"--output={out}",
         "--wrap", "srun true"],
        env=plugin.env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = wait_record(plugin.cluster, proc.stdout.strip().split(";")[0], nodes=1)
    assert record["job"]["workload"] == "training"
    bad = srun(plugin, "-N1", "-n1", "--sai-workload=mining", "true")
    assert bad.returncode != 0 and "--sai-workload=mining: expected training" in bad.stderr


def test_an_abbreviated_cpu_bind_is_the_user_s_choice(plugin: Any) -> None:
    """srun's getopt_long takes --cpu-b for --cpu-bind: Slurm's map stays."""
    run = [sys.executable, "-c", PRINT]
    proc = srun(plugin, "-N1", "-n2", "--cpu-b=map_cpu:1,0", "--sai-bind=verbose", *run)
    assert proc.returncode == 0, proc.stderr
    assert sorted((k[1], v) for k, v in tasks(proc.stdout).items()) == [(0, [1]), (1, [0])]
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and all("CPUs unchanged" in line for line in lines), proc.stderr
    # --exa is --exact (no value): the --cpu-bind after it is still srun's.
    proc = srun(plugin, "-N1", "-n2", "--exa", "--cpu-bind=map_cpu:1,0", "--sai-bind=verbose", *run)
    assert proc.returncode == 0, proc.stderr
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and all("CPUs unchanged" in line for line in lines), proc.stderr


def test_a_binding_in_any_heterogeneous_component_is_kept_in_all(plugin: Any) -> None:
    """The task side cannot tell the components apart: a --cpu-bind in the second
    component leaves both to Slurm (and with none of them binding, both are pinned)."""
    run = [sys.executable, "-c", PRINT]
    first = ["-N1", "-n1", "--sai-bind=verbose", *run]
    second = ["-N1", "-n1", "--sai-bind=verbose", "--cpu-bind=map_cpu:0", *run]
    proc = srun(plugin, *first, ":", *second)
    assert proc.returncode == 0, proc.stderr
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and all("CPUs unchanged" in line for line in lines), proc.stderr
    proc = srun(plugin, *first, ":", "-N1", "-n1", "--sai-bind=verbose", "--cpu-bind=verbose", *run)
    assert proc.returncode == 0, proc.stderr
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 2 and not any("unchanged" in line for line in lines), proc.stderr


def test_a_user_variable_longer_than_8_kib_is_kept(plugin: Any) -> None:
    """Read whole, not as unset: the user's own OMP_NUM_THREADS stays."""
    value = "2," * 4600  # 9200 bytes
    script = "import os; print('OMP', len(os.environ.get('OMP_NUM_THREADS', '')))"
    env = {**plugin.env(), "OMP_NUM_THREADS": value}
    proc = plugin.cluster.run(
        ["srun", "-N1", "-n1", "--sai-bind=verbose", sys.executable, "-c", script],
        env=env,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "OMP 9200" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 1 and "OMP_NUM_THREADS" not in lines[0], proc.stderr[-2000:]


def test_options_read_in_doubt_are_said_in_slurmd_s_log(plugin: Any) -> None:
    """--ext is --extra-node-info in 22.05 but a prefix of three options in 24.11:
    both readings are followed (neither binds here: pinned), and the doubt is logged.
    24.11's srun refuses --ext itself (ambiguous in its own table too), so there the
    plugin never sees it and what is checked is that the recorded table says so; the
    doubt rule itself is covered by test_spank_core on both tables."""
    proc = srun(
        plugin, "-N1", "-n1", "--ext", "1", "--sai-bind=verbose",
        "sh", "-c", "echo JOB $SLURM_JOB_ID",
    )  # fmt: skip
    if proc.returncode != 0 and "is ambiguous" in proc.stderr:
        for name in ("--external-launcher", "--extra", "--extra-node-info"):
            assert f"'{name}'" in proc.stderr, proc.stderr
        table = (DATA / "srun-24.11.5-options.txt").read_text()
        assert all(f"\n{n} " in table for n in ("external-launcher", "extra", "extra-node-info"))
        return
    assert proc.returncode == 0, proc.stderr
    lines = verbose_lines(proc.stderr)
    assert len(lines) == 1 and "CPUs unchanged" not in lines[0], proc.stderr
    job = job_of(proc.stdout)
    logs = "".join(
        p.read_text(errors="replace") for p in (plugin.cluster.prefix / "log").glob("slurmd-*.log")
    )
    want = (
        f"slurm-ai: job {job} step 0: srun's options read in doubt (srun option prefix of "
        "several: --ext): bindings left to Slurm: none"
    )
    assert want in logs


GPU_PRINT = (
    "import os;print('JOB', os.environ['SLURM_JOB_ID']);"
    "print('GPU', os.environ['SLURM_LOCALID'], os.environ.get('CUDA_VISIBLE_DEVICES'), "
    "sorted(os.sched_getaffinity(0)))"
)


def gpu_tasks(stdout: str) -> dict[int, tuple[str, list[int]]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("GPU "):
            _, local, cuda, rest = line.split(" ", 3)
            out[int(local)] = (cuda, ast.literal_eval(rest))
    return out


def own_gpus_apart(proc: Any) -> dict[int, tuple[str, list[int]]]:
    """Two --gpus-per-task=1 tasks: each names its GPU 0 (as it sees it), their CPUs
    apart. Returns what each task printed."""
    assert proc.returncode == 0, proc.stderr
    got = gpu_tasks(proc.stdout)
    assert sorted(got) == [0, 1], proc.stdout
    assert [cuda for cuda, _ in got.values()] == ["0", "0"], got
    (_, a), (_, b) = got.values()
    assert a and b and not set(a) & set(b), got
    return got


def test_gpus_per_task_keep_slurms_gpu_and_get_cpus_of_their_own(plugin: Any) -> None:
    """The production shape (2 fake GPUs per node as GRES, ConstrainDevices): with
    `--gpus-per-task=1 -n2` Slurm gives each task its own GPU, which the task sees
    renumbered as 0 (SLURM_STEP_GPUS too). The plugin finds each task's own GPU by
    the device cgroup (gres.conf's files in the plan), names it 0 as the task sees
    it, and pins the two tasks apart; the record's plan lists the job's GPUs. A job
    with one GPU: only that one, in the plan and in the energy record."""
    if not plugin.cluster.production:
        pytest.skip("the lab shape has no GPUs (scripts/localcluster up --production)")
    proc = srun(plugin, "-w", "n1", "-n2", "--gpus-per-task=1", "--mem=100",
                "--sai-bind=verbose", sys.executable, "-c", GPU_PRINT)  # fmt: skip
    own_gpus_apart(proc)
    lines = sorted(verbose_lines(proc.stderr))
    assert len(lines) == 2, proc.stderr
    for rank, line in enumerate(lines):
        assert line.startswith(f"slurm-ai: task {rank}: GPU {rank}; CPUs "), lines
        assert "CUDA_VISIBLE_DEVICES=0;" in line, lines
    record = wait_record(plugin.cluster, job_of(proc.stdout), nodes=1)
    assert record["nodes"]["n1"]["plan"]["gpus"] == [0, 1], record["nodes"]["n1"]["plan"]

    one = srun(plugin, "-w", "n1", "-n1", "--gpus=1", "--mem=100", sys.executable, "-c", GPU_PRINT)
    assert one.returncode == 0, one.stderr
    assert [cuda for cuda, _ in gpu_tasks(one.stdout).values()] == ["0"], one.stdout
    record = wait_record(plugin.cluster, job_of(one.stdout), nodes=1)
    plan = record["nodes"]["n1"]["plan"]
    assert len(plan["gpus"]) == 1, plan
    gpus = record["nodes"]["n1"]["gpus"]
    assert len(gpus) == 1 and gpus[0]["energy_j"] > 0, gpus


def test_bind_wrapper_finds_each_tasks_own_gpu_as_the_plugin_does(plugin: Any) -> None:
    """`slurm-ai bind` (sites without the plugin; the plugin off here) under
    `--gpus-per-task=1 -n2` with ConstrainDevices: each task sees SLURM_STEP_GPUS=0,
    and bind asks the device cgroup which GPU is its own, as the plugin does: task r
    planned next to GPU r, named 0 as the task sees it, the two tasks' CPUs apart."""
    if not plugin.cluster.production:
        pytest.skip("the lab shape has no GPUs (scripts/localcluster up --production)")
    proc = srun(plugin, "-w", "n1", "-n2", "--gpus-per-task=1", "--mem=100", "--sai-bind=off",
                *slurm_ai(), "bind", "-v", "--", sys.executable, "-c", GPU_PRINT)  # fmt: skip
    got = own_gpus_apart(proc)
    lines = sorted(ln for ln in proc.stderr.splitlines() if ln.startswith("slurm-ai bind: rank"))
    assert len(lines) == 2, proc.stderr
    for rank, line in enumerate(lines):
        cpus = format_cpu_list(got[rank][1])
        parts = line.split(": ", 2)[2].split("; ")
        assert parts[:2] == [f"GPU {rank}", f"CPUs {cpus}"], lines
        assert "CUDA_VISIBLE_DEVICES=0" in parts, lines
    assert "share" not in proc.stderr, proc.stderr
