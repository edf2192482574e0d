"""RAPL wraps over long jobs, counted from the node agent's readings.

The captured powercap trees (tests/data/rapl) are driven over time: a fake
clock steps the counters as a constant load would (wrapping at
max_energy_range_uj), and a real `Agent` ticks over them into a real store,
which the energy Epilog step then reads.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from slurm_ai.agent.daemon import Agent
from slurm_ai.agent.store import SampleStore
from slurm_ai.config import Config
from slurm_ai.energy import hook, rapl
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv
from slurm_ai.sysfs import Sysfs

DATA = Path(__file__).resolve().parent.parent / "data" / "rapl"
T0 = 1_700_000_000.0
ENV = {
    "SLURM_JOB_ID": "8",
    "SLURMD_NODENAME": "n1",
    "SLURM_JOB_NODELIST": "n1",
    "SLURM_SCRIPT_CONTEXT": "epilog_slurmd",
}


class Machine:
    """A powercap tree whose counters advance with a fake clock."""

    def __init__(self, tmp_path: Path, tree: str, watts: dict[str, float]) -> None:
        self.root = tmp_path / tree
        shutil.copytree(DATA / tree, self.root)
        self.domains = {d.name: d for d in rapl.discover(Sysfs(self.root))}
        self.watts = watts  # zone -> W
        self.start_uj = {
            zone: int((self.root / "sys/class/powercap" / zone / "energy_uj").read_text())
            for zone in watts
        }

    def at(self, t: float) -> None:
        for zone, w in self.watts.items():
            name = (self.root / "sys/class/powercap" / zone / "name").read_text().strip()
            label = name if name.startswith("package") else f"dram-{zone.split(':')[1]}"
            total = self.start_uj[zone] + round(w * (t - T0) * 1e6)
            value = total % self.domains[label].max_energy_uj
            (self.root / "sys/class/powercap" / zone / "energy_uj").write_text(f"{value}\n")


def _ctx(tmp_path: Path, root: Path, cpus: str) -> HookContext:
    config = Config(
        path=None,
        data={
            "energy": {"ipmi": "off", "sysfs_root": str(root), "cpu_tdp_w": 100.0},
            "agent": {"store_dir": str(tmp_path / "agent" / "{node}")},
        },
    )
    env = {**ENV, "SLURM_JOB_CPUS_PER_NODE": cpus}
    job = JobEnv.from_environ(env)
    return HookContext(config, job, "n1", tmp_path, logging.getLogger("t"), env=env)


def _job(
    tmp_path: Path,
    machine: Machine,
    seconds: float,
    *,
    agent_down: tuple[float, float] | None = None,
    agent: bool = True,
    cpus: str = "4",
) -> dict:
    ctx = _ctx(tmp_path, machine.root, cpus)
    cfg = hook.EnergySettings.from_ctx(ctx)
    machine.at(T0)
    start = hook.take_snapshot(ctx, cfg)
    start["t"] = T0
    if agent:
        store = SampleStore(tmp_path / "agent" / "n1")
        ticker = Agent(node="n1", store=store, interval_s=5.0, sysfs=Sysfs(machine.root))
        assert ticker.rapl is not None
        t = T0 + 2.0
        while t < T0 + seconds:
            if agent_down is None or not agent_down[0] <= t - T0 < agent_down[1]:
                machine.at(t)
                ticker.tick(now=t)
            t += 5.0
        ticker.close()
    machine.at(T0 + seconds)
    end = hook.take_snapshot(ctx, cfg)
    end["t"] = T0 + seconds
    return hook.compute(ctx, cfg, start, end)


def _by_domain(out: dict) -> dict[str, dict]:
    return {s["domain"]: s for s in out["sources"] if s["source"] == "rapl"}


def test_amd_hour_long_job_counts_every_wrap(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "amd-epyc-1s", {"intel-rapl:0": 200.0})
    out = _job(tmp_path, machine, 3600.0)
    pkg = _by_domain(out)["package-0"]
    # 720 kJ through a counter that wraps every 65.5 kJ: 10+ wraps, all counted.
    assert pkg["quality"] == "measured"
    assert pkg["joules"] == pytest.approx(200.0 * 3600, abs=1e-3)
    assert "wrapped 11 times" in pkg["note"] and "720 agent readings" in pkg["note"]
    assert not any(s["source"] == "cpu-model" for s in out["sources"])
    assert out["quality"] == "measured"


def test_a_gap_shorter_than_the_wrap_window_is_fine(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "amd-epyc-1s", {"intel-rapl:0": 200.0})
    out = _job(tmp_path, machine, 1800.0, agent_down=(600.0, 700.0))  # 105 s < 131 s
    assert _by_domain(out)["package-0"]["joules"] == pytest.approx(200.0 * 1800, abs=1e-3)


def test_a_gap_longer_than_the_wrap_window_is_honestly_unavailable(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "amd-epyc-1s", {"intel-rapl:0": 200.0})
    out = _job(tmp_path, machine, 3600.0, agent_down=(1000.0, 1300.0))
    pkg = _by_domain(out)["package-0"]
    assert pkg["quality"] == "unavailable" and pkg["joules"] is None
    assert "305 s gap" in pkg["note"] and "wraps cannot be counted" in pkg["note"]
    model = next(s for s in out["sources"] if s["source"] == "cpu-model")
    assert model["quality"] == "estimated"


def test_agent_stopped_before_the_job_ended(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "amd-epyc-1s", {"intel-rapl:0": 200.0})
    out = _job(tmp_path, machine, 3600.0, agent_down=(3000.0, 3600.0))
    pkg = _by_domain(out)["package-0"]
    assert pkg["joules"] is None and f"to {T0 + 3600:.0f})" in pkg["note"]


def test_no_agent_store_says_so(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "amd-epyc-1s", {"intel-rapl:0": 200.0})
    out = _job(tmp_path, machine, 3600.0, agent=False)
    pkg = _by_domain(out)["package-0"]
    assert pkg["joules"] is None and "no agent readings" in pkg["note"]


def test_intel_two_sockets_with_dram_over_two_hours(tmp_path: Path) -> None:
    watts = {"intel-rapl:0": 250.0, "intel-rapl:1": 180.0, "intel-rapl:0:0": 30.0,
             "intel-rapl:1:0": 25.0}  # fmt: skip
    machine = Machine(tmp_path, "intel-xeon-2s", watts)
    out = _job(tmp_path, machine, 7200.0, cpus="8")
    by = _by_domain(out)
    assert by["package-0"]["joules"] == pytest.approx(250.0 * 7200, abs=1e-3)
    assert by["package-1"]["joules"] == pytest.approx(180.0 * 7200, abs=1e-3)
    assert by["dram-0"]["joules"] == pytest.approx(30.0 * 7200, abs=1e-3)
    assert by["dram-1"]["joules"] == pytest.approx(25.0 * 7200, abs=1e-3)
    assert out["quality"] == "measured"
    assert out["total_j"] == pytest.approx(485.0 * 7200, abs=1e-2)


def test_shared_node_apportions_the_unwrapped_energy(tmp_path: Path) -> None:
    machine = Machine(tmp_path, "intel-xeon-2s", {"intel-rapl:0": 250.0})
    out = _job(tmp_path, machine, 3600.0, cpus="2")  # 2 of 8 CPUs
    pkg = _by_domain(out)["package-0"]
    assert pkg["quality"] == "estimated" and pkg["joules"] == pytest.approx(250.0 * 3600 / 4)
    assert "unwrapped" in pkg["note"] and "2/8" in pkg["note"]
