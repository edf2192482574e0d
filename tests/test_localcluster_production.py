"""The production shape of scripts/localcluster (`up --production`) on the real machine:
jobs share a node inside their own cgroups, fake GPUs go through Slurm's GRES and
ConstrainDevices, and each node has its own /var/spool; slurm-ai installed on it as on
a site. A throwaway production instance (own prefix and ports) runs for this module."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import SlurmCluster

from tests.admin.clusterhelp import node_namespace_argv

pytestmark = pytest.mark.cluster

CGROUP_CPUSET = Path("/sys/fs/cgroup/cpuset")


def ports_free(base: int, count: int = 6) -> bool:
    for port in range(base, base + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.fixture(scope="module")
def production(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """A throwaway production instance, whatever the session cluster's shape: its hooks
    and hooks.conf are this module's alone (each node's cgroups are the instance's own,
    so it may run beside a production-shaped session cluster)."""
    if os.geteuid() != 0:
        pytest.skip("starting a throwaway instance needs root")
    if not (CGROUP_CPUSET / "cpuset.cpus").exists():
        pytest.skip("no cgroup v1 cpuset hierarchy at /sys/fs/cgroup/cpuset")
    base = next((b for b in range(slurm_cluster.port_base + 140, 30000, 10) if ports_free(b)), None)
    if base is None:
        pytest.skip("no free block of 6 ports for a throwaway instance")
    # Not under pytest's /tmp: the per-node /tmp dirs are bind-mounted from here.
    prefix = Path(f"/var/tmp/slurm-ai-prod-{os.getpid()}")
    cluster = dataclasses.replace(slurm_cluster, prefix=prefix, port_base=base, name="saiprod")
    env = pytest.MonkeyPatch()
    env.setenv("SLURM_AI_CLUSTER_VMS", "off")
    try:
        up = cluster.localcluster("up", "--production", timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        yield cluster
    finally:
        cluster.localcluster("down", timeout=180)
        env.undo()
        shutil.rmtree(prefix, ignore_errors=True)


PROBE = """
    import json, os, socket, sys
    def cpus(text):
        out = set()
        for part in text.strip().split(","):
            if part:
                lo, _, hi = part.partition("-")
                out.update(range(int(lo), int(hi or lo) + 1))
        return sorted(out)
    cg = next(l.split(":", 2)[2] for l in open("/proc/self/cgroup").read().splitlines()
              if l.split(":")[1] == "cpuset")
    job_dir = "/sys/fs/cgroup/cpuset" + cg.rsplit("/", 1)[0]   # .../job_<id>/step_<n> -> job
    opened = {}
    for path in sys.argv[1:]:
        try:
            os.close(os.open(path, os.O_RDWR))
            opened[path] = 0
        except OSError as err:
            opened[path] = err.errno
    print("PROBE " + json.dumps({
        "job": os.environ["SLURM_JOB_ID"], "task": int(os.environ["SLURM_PROCID"]),
        "host": socket.gethostname(), "cgroup": cg, "job_dir": job_dir,
        "job_cpus": cpus(open(job_dir + "/cpuset.cpus").read()),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "opened": opened,
        "spool": sorted(os.listdir("/var/spool"))}), flush=True)
"""


def probes(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in stdout.splitlines() if line.startswith("PROBE ")]


def probe_script(cluster: SlurmCluster) -> Path:
    script = cluster.shared_dir / "production_probe.py"
    script.write_text(textwrap.dedent(PROBE))
    return script


def test_two_jobs_share_n1_each_in_its_own_cpuset(production: SlurmCluster) -> None:
    script = probe_script(production)
    # Two 1-CPU jobs held on n1 at the same time (a 2-CPU node): each must get its own CPU.
    wrap = f"python3 {script}; sleep 4"
    outs = [production.shared_dir / f"share-{i}.out" for i in range(2)]
    ids = []
    for out in outs:
        sub = production.run(["sbatch", "--parsable", "-w", "n1", "-n1", "-c1", "--mem=100",
                              "-o", str(out), "--wrap", wrap])  # fmt: skip
        assert sub.returncode == 0, sub.stderr
        ids.append(sub.stdout.strip().split(";")[0])
    wait = production.run(["srun", "-w", "n1", "-n1", "-c1", "--mem=50", "--dependency",
                           f"afterany:{ids[0]}:{ids[1]}", "true"], timeout=120)  # fmt: skip
    assert wait.returncode == 0, wait.stderr
    seen = [probes(out.read_text())[0] for out in outs]
    assert [s["job"] for s in seen] == ids
    for probe in seen:
        assert probe["host"] == "n1"
        # Debian's slurmd (built for several slurmd per host) names its root after the node.
        assert str(probe["cgroup"]).startswith(f"/slurm_n1/uid_{os.geteuid()}/job_{probe['job']}/")
        assert probe["job_cpus"] and len(probe["job_cpus"]) == 1, probe  # type: ignore[arg-type]
        assert set(probe["affinity"]) <= set(probe["job_cpus"]), probe  # type: ignore[call-overload]
    assert seen[0]["job_cpus"] != seen[1]["job_cpus"], seen


def test_gpus_per_task_gives_each_task_its_own_gpu(production: SlurmCluster) -> None:
    script = probe_script(production)
    devices = [str(production.prefix / "dev" / f"nvidia{i}") for i in range(2)]
    out = production.run(["srun", "-w", "n1", "-n2", "--gpus-per-task=1", "--mem=100",
                          "python3", str(script), *devices], timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = sorted(probes(out.stdout), key=lambda p: int(p["task"]))  # type: ignore[call-overload]
    assert [t["task"] for t in tasks] == [0, 1], out.stdout
    own = []
    for task in tasks:
        opened = task["opened"]
        assert isinstance(opened, dict)
        # Its own GPU: allowed by the device cgroup, no driver behind it (ENXIO);
        # the other: denied by the device cgroup (EPERM).
        assert sorted(opened.values()) == [1, 6], task  # EPERM, ENXIO
        own.append(next(path for path, err in opened.items() if err == 6))
        # ConstrainDevices: the task sees its one GPU renumbered as 0.
        assert task["cuda"] == "0", task
    assert sorted(own) == devices, tasks


def test_each_node_has_its_own_var_spool(production: SlurmCluster) -> None:
    mark = f"spool-mark-{os.getpid()}"
    out = production.run(["srun", "-N2", "-n2", "--mem=50", "sh", "-c",
                          f'touch /var/spool/{mark}-$(hostname) && ls /var/spool'])  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    listed = out.stdout.split()
    assert sorted(name for name in listed if name.startswith(mark)) == [
        f"{mark}-n1",
        f"{mark}-n2",
    ], out.stdout
    for node in ("n1", "n2"):
        local = production.prefix / "nodes" / node / "var-spool"
        assert (local / f"{mark}-{node}").exists()
        assert not (local / f"{mark}-{'n2' if node == 'n1' else 'n1'}").exists()
        (local / f"{mark}-{node}").unlink()


def test_nodes_offer_two_gpus_as_gres(production: SlurmCluster) -> None:
    out = production.run(["sinfo", "-h", "-N", "-p", "bare", "-o", "%N %G %T"])
    assert out.returncode == 0, out.stderr
    rows = sorted(line.split() for line in out.stdout.splitlines())
    assert [(r[0], r[1]) for r in rows] == [("n1", "gpu:2"), ("n2", "gpu:2")], out.stdout


# ---------------------------------------------------------------- slurm-ai on it

HOOKS_BEGIN = "# BEGIN slurm-ai hooks (tests/test_localcluster_production.py)"
HOOKS_END = "# END slurm-ai hooks"
NODE_SPOOL = "/var/spool/slurm-ai"  # the default: each node's own disk here
# Where a hook keeps what its spool refused ([accounting] hold_dir; /run/slurm-ai/held on
# a site, which every node and instance on this host shares): each node's own here,
# outside the spool directory that the held-back test makes read-only.
NODE_HOLD = "/var/spool/slurm-ai-held"
SETTLE_S = 3.0


@dataclasses.dataclass
class ProductionHooks:
    cluster: SlurmCluster
    config_path: Path

    def node_spool(self, node: str) -> Path:
        """Node `node`'s /var/spool/slurm-ai, as this (host) process reaches it."""
        return self.cluster.prefix / "nodes" / node / "var-spool" / "slurm-ai"

    def node_hold(self, node: str) -> Path:
        """Node `node`'s hold directory, as this (host) process reaches it."""
        return self.cluster.prefix / "nodes" / node / "var-spool" / Path(NODE_HOLD).name


@pytest.fixture(scope="module")
def production_hooks(production: SlurmCluster) -> Iterator[ProductionHooks]:
    """The hooks installed as on a site: default node-local spool /var/spool/slurm-ai,
    the site's PrologFlags (Alloc,Contain) kept."""
    from hooks_fixture import _reconfigure

    from slurm_ai.admin.hookfiles import (
        HookLayout,
        default_config,
        render_all,
        render_slurm_conf_lines,
        with_hook_block,
    )
    from slurm_ai.admin.slurmconf import load_slurm_conf

    prefix = production.prefix
    layout = HookLayout(
        etc_dir=prefix / "etc", config_path=prefix / "etc" / "slurm-ai-prod" / "config.toml",
        python=sys.executable,
    )  # fmt: skip
    config = default_config(
        spool_dir=NODE_SPOOL,
        log_file=str(prefix / "log" / "slurm-ai-prod" / "slurm-ai.log"),
        slurm_conf=str(production.slurm_conf),
        mark_dir="/var/spool/slurm-ai-marks",
        health=False,
        # settle_s: the later pass (slurm-ai deliver, a timer on a site) reads a
        # multi-node record back after this; short here, the test runs that pass.
        extra={
            "accounting": {"max_writes_per_s": 50.0, "settle_s": SETTLE_S, "hold_dir": NODE_HOLD}
        },
    )
    for path, (text, mode) in render_all(layout, config).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
    hooks = ProductionHooks(production, layout.config_path)
    for node in ("n1", "n2"):
        hooks.node_spool(node).mkdir(mode=0o700, parents=True, exist_ok=True)
    hooks_conf = prefix / "etc" / "hooks.conf"
    original = hooks_conf.read_text() if hooks_conf.exists() else ""
    flags = (load_slurm_conf(production.slurm_conf).get("PrologFlags") or "").split(",")
    assert "Contain" in flags, flags  # the production shape's
    lines = render_slurm_conf_lines(layout, prolog_flags=flags).splitlines()
    hooks_conf.write_text(with_hook_block(original, HOOKS_BEGIN, HOOKS_END, lines))
    _reconfigure(production)
    try:
        yield hooks
    finally:
        hooks_conf.write_text(original)
        _reconfigure(production)


def test_two_jobs_sharing_n1_each_plan_over_their_own_cpu(
    production_hooks: ProductionHooks,
) -> None:
    """The Prolog runs before the job's cgroup exists (PrologFlags=Contain): it plans
    over the job's CPUs from `scontrol show job -d`, which are the cpuset the job's
    tasks then run in."""
    from tests.admin.clusterhelp import wait_record

    cluster = production_hooks.cluster
    script = probe_script(cluster)
    outs = [cluster.shared_dir / f"hooked-share-{i}.out" for i in range(2)]
    ids = []
    for out in outs:
        sub = cluster.run(["sbatch", "--parsable", "-w", "n1", "-n1", "-c1", "--mem=200",
                           "-o", str(out), "--wrap", f"srun python3 {script}; sleep 3"])  # fmt: skip
        assert sub.returncode == 0, sub.stderr
        ids.append(sub.stdout.strip().split(";")[0])
    records = [wait_record(cluster, job, nodes=1) for job in ids]
    seen = [probes(out.read_text())[0] for out in outs]
    planned = []
    for job, record, probe in zip(ids, records, seen, strict=True):
        plan = record["nodes"]["n1"]["plan"]
        assert not [w for w in plan["warnings"] if "not visible" in w], plan
        assert plan["cpus_per_rank"] == [",".join(map(str, probe["job_cpus"]))], (job, plan, probe)  # type: ignore[call-overload]
        assert set(probe["affinity"]) <= set(probe["job_cpus"]), probe  # type: ignore[call-overload]
        planned.append(plan["cpus_per_rank"])
    assert planned[0] != planned[1], planned
    # Node-local spool: n1 kept the jobs' state, n2 saw none of it.
    for job in ids:
        assert not (production_hooks.node_spool("n2") / "jobs" / job).exists()


def test_a_two_node_job_on_node_local_spools_gets_one_complete_record(
    production_hooks: ProductionHooks,
) -> None:
    """Each node's Epilog delivers its own part from its own spool ([accounting]
    shared_spool = auto: /var/spool is a node's own disk here) and keeps it; the later
    pass of `slurm-ai deliver` on each node (a timer on a site) reads the record back
    and merges what is missing: one record, complete, both nodes."""
    import time

    from tests.admin.clusterhelp import record_of, wait_for

    cluster = production_hooks.cluster
    proc = cluster.run(["srun", "-N2", "-n2", "--mem=100", "sh", "-c", "echo JOB $SLURM_JOB_ID"])
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.split()[1]
    wait_for(lambda: record_of(cluster, job), 120, f"a first record of job {job}")
    time.sleep(SETTLE_S + 1)
    env = {"SLURM_AI_CONFIG": str(production_hooks.config_path)}
    later = cluster.run(["srun", "-N2", "-n2", "--mem=50", sys.executable, "-m", "slurm_ai",
                         "deliver"], env=env, timeout=180)  # fmt: skip
    assert later.returncode == 0, later.stdout + later.stderr
    record = wait_for(
        lambda: (r := record_of(cluster, job)) and len(r["nodes"]) == 2 and r, 60,
        f"both nodes in the record of job {job}",
    )  # fmt: skip
    assert sorted(record["nodes"]) == ["n1", "n2"] and record["complete"] is True, record
    # The pass that merged wrote again: the next one, after the settle time, reads the
    # record back, finds its node in it and forgets the job.
    time.sleep(SETTLE_S + 1)
    again = cluster.run(["srun", "-N2", "-n2", "--mem=50", sys.executable, "-m", "slurm_ai",
                         "deliver"], env=env, timeout=180)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert record_of(cluster, job) == record
    for node in ("n1", "n2"):  # nothing left waiting on either node
        assert not (production_hooks.node_spool(node) / "outbox" / f"{job}.json").exists()


def in_node(cluster: SlurmCluster, node: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` in node `node`'s mount namespace (its slurmd's: where its Prolog and
    Epilog run), as scripts/localcluster_lib/nodes.py made it."""
    pid = int((cluster.prefix / "run" / f"slurmd-{node}.pid").read_text())
    return subprocess.run(node_namespace_argv(pid, argv),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@contextlib.contextmanager
def read_only_in_node(cluster: SlurmCluster, node: str, path: str) -> Iterator[None]:
    """`path` read-only for everyone in the node, root included (permission bits do not
    bind root): a read-only bind mount over it, made in the node's own mount namespace.
    The spool is made first: a fresh instance's node has run no slurm-ai hook yet."""
    made = in_node(cluster, node, ["mkdir", "-p", "-m", "0700", path])
    assert made.returncode == 0, made.stderr
    for argv in (["mount", "--bind", path, path], ["mount", "-o", "remount,bind,ro", path]):
        done = in_node(cluster, node, argv)
        assert done.returncode == 0, (argv, done.stderr)
    try:
        yield
    finally:
        done = in_node(cluster, node, ["umount", path])
        assert done.returncode == 0, done.stderr


def test_a_node_whose_spool_is_read_only_is_held_then_completes_the_record(
    production_hooks: ProductionHooks,
) -> None:
    """n2's spool read-only while a two-node job runs and ends: n2's Prolog and Epilog
    cannot write it. Its node record is held ([accounting] hold_dir), n1's part lands
    alone (complete: false, n2 missing), `slurm-ai deliver --list` on n2 names the held
    record and a `slurm-ai deliver` there fails naming it. Once the spool is writable,
    the timer's pass on each node delivers n2's part: one record, complete, both nodes;
    a later pass changes nothing."""
    import time

    from tests.admin.clusterhelp import record_of, sacct_fields, wait_for

    cluster = production_hooks.cluster
    env = {"SLURM_AI_CONFIG": str(production_hooks.config_path)}
    deliver = [sys.executable, "-m", "slurm_ai", "deliver"]
    production_hooks.node_spool("n2").mkdir(mode=0o700, parents=True, exist_ok=True)
    with read_only_in_node(cluster, "n2", NODE_SPOOL):
        probe = in_node(cluster, "n2", ["touch", f"{NODE_SPOOL}/probe"])
        assert probe.returncode != 0 and "Read-only" in probe.stderr, probe
        proc = cluster.run(["srun", "-N2", "-n2", "--mem=100", "sh", "-c",
                            "echo JOB $SLURM_JOB_ID"])  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        job = proc.stdout.split()[1]
        held_file = production_hooks.node_hold("n2") / job / "node-n2.json"
        wait_for(held_file.exists, 120, f"n2's node record of job {job} held")
        assert not (production_hooks.node_spool("n2") / "jobs" / job).exists()
        first = wait_for(lambda: record_of(cluster, job), 120, f"n1's record of job {job}")
        assert sorted(first["nodes"]) == ["n1"] and first["complete"] is False, first
        assert "n2" in json.dumps(first.get("missing")), first
        listed = cluster.run(["srun", "-w", "n2", "-N1", "-n1", "--mem=50", *deliver,
                              "--list"], env=env, timeout=120)  # fmt: skip
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert f"{job} held on this node" in listed.stdout, listed.stdout
        assert "node record of n2" in listed.stdout, listed.stdout
        refused = cluster.run(["srun", "-w", "n2", "-N1", "-n1", "--mem=50", *deliver],
                              env=env, timeout=120)  # fmt: skip
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "held in" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
        assert held_file.exists()
        assert record_of(cluster, job) == first  # nothing delivered from n2 meanwhile
    log = (cluster.prefix / "log" / "slurm-ai-prod" / "slurm-ai.log").read_text()
    assert f"job={job} node=n2 ERROR event=node_record_held" in log, log[-3000:]
    # The spool is writable again: the timer's pass on every node (as a site runs it).
    time.sleep(SETTLE_S + 1)
    later = cluster.run(["srun", "-N2", "-n2", "--mem=50", *deliver], env=env, timeout=180)
    assert later.returncode == 0, later.stdout + later.stderr
    record = wait_for(
        lambda: (r := record_of(cluster, job)) and len(r["nodes"]) == 2 and r, 60,
        f"both nodes in the record of job {job}",
    )  # fmt: skip
    assert sorted(record["nodes"]) == ["n1", "n2"] and record["complete"] is True, record
    assert not record.get("missing"), record
    assert record["nodes"]["n2"]["time"]["prolog_s"] > 0, record["nodes"]["n2"]
    assert not held_file.exists() and not (production_hooks.node_hold("n2") / job).exists()
    # The next pass after the settle time reads the record back and forgets the job.
    time.sleep(SETTLE_S + 1)
    again = cluster.run(["srun", "-N2", "-n2", "--mem=50", *deliver], env=env, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert record_of(cluster, job) == record
    comment = (sacct_fields(cluster, job, "AdminComment") or [""])[0]
    assert comment.count("sai1:") == 1, comment  # exactly one record
    for node in ("n1", "n2"):  # nothing left waiting on either node
        assert not (production_hooks.node_spool(node) / "outbox" / f"{job}.json").exists()
