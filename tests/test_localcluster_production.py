"""The production shape of scripts/localcluster (`up --production`) on the real machine:
jobs share a node inside their own cgroups, fake GPUs go through Slurm's GRES and
ConstrainDevices, and each node has its own /var/spool; slurm-ai installed on it as on
a site. A throwaway production instance (own prefix and ports) runs for this module."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import SlurmCluster

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
SETTLE_S = 3.0


@dataclasses.dataclass
class ProductionHooks:
    cluster: SlurmCluster
    config_path: Path

    def node_spool(self, node: str) -> Path:
        """Node `node`'s /var/spool/slurm-ai, as this (host) process reaches it."""
        return self.cluster.prefix / "nodes" / node / "var-spool" / "slurm-ai"


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
        extra={"accounting": {"max_writes_per_s": 50.0, "settle_s": SETTLE_S}},
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
