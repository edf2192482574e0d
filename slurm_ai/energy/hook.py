"""Energy hook step: start counters in the Prolog, deltas in the Epilog.

Prolog fragment (private state, not put into the record):
    {"_start": {"t": epoch, "rapl": {...uJ}, "gpus": [...], "ipmi_w": W}}
Epilog fragment (the node record's "energy", plus "gpus" lifted out by the
orchestrator):
    {"total_j", "quality", "elapsed_s", "sources": [...], "gpus": [...]}

Config [energy]: sysfs_root ("/"), nvml_recorded (a recording, for tests),
nvml_timeout_s (2.0), ipmi ("auto"|"on"|"off"), ipmi_timeout_s (3.0),
cpu_tdp_w (0 = from RAPL's package limit, else 200 W assumed), cpu_idle_fraction
(0.3: share of its TDP an allocated but idle CPU is taken to draw).

A RAPL domain over a job longer than its wrap window is unwrapped from the
node agent's readings (its store, [agent] store_dir), or marked unavailable
with the reason when they do not cover the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from slurm_ai.energy import estimate, ipmi, rapl
from slurm_ai.energy.types import ESTIMATED, MEASURED, UNAVAILABLE, SourceReading
from slurm_ai.errors import ProbeError
from slurm_ai.hooks.context import HookContext
from slurm_ai.sysfs import Sysfs


@dataclass(frozen=True)
class EnergySettings:
    sysfs_root: str = "/"
    nvml_recorded: str | None = None
    nvml_timeout_s: float = 2.0
    ipmi: str = "auto"
    ipmi_timeout_s: float = 3.0
    cpu_tdp_w: float = 0.0
    cpu_idle_fraction: float = 0.3

    @classmethod
    def from_ctx(cls, ctx: HookContext) -> EnergySettings:
        sec = ctx.config.section("energy")
        return cls(
            sysfs_root=sec.get_str("sysfs_root", "/"),
            nvml_recorded=sec.get_opt_str("nvml_recorded") or None,
            nvml_timeout_s=sec.get_float("nvml_timeout_s", 2.0, high=600.0, positive=True),
            ipmi=sec.get_str("ipmi", "auto"),
            ipmi_timeout_s=sec.get_float("ipmi_timeout_s", 3.0, high=600.0, positive=True),
            cpu_tdp_w=sec.get_float("cpu_tdp_w", 0.0, high=100000.0),
            cpu_idle_fraction=min(1.0, max(0.0, sec.get_float("cpu_idle_fraction", 0.3, high=1.0))),
        )


def _gpu_snapshot(ctx: HookContext, cfg: EnergySettings) -> list[dict[str, Any]]:
    # No GPU allocated: never import pynvml (it costs the Prolog ~30 ms).
    if not ctx.job.gpus:
        return []
    from slurm_ai.energy.gpu import snapshot
    from slurm_ai.nvml import open_nvml

    try:
        with open_nvml(recorded=cfg.nvml_recorded, timeout=cfg.nvml_timeout_s) as nv:
            return snapshot(nv, ctx.job.gpus)
    except ProbeError as exc:
        ctx.log.warning("event=nvml_unavailable error=%s", " ".join(str(exc).split()))
        return [{"index": i, "error": str(exc)[:200]} for i in ctx.job.gpus]


def _ipmi_power(ctx: HookContext, cfg: EnergySettings) -> float | None:
    tool = ipmi.available(cfg.ipmi)
    if tool is None:
        return None
    try:
        return ipmi.read_power_w(tool, cfg.ipmi_timeout_s)
    except ProbeError as exc:
        ctx.log.warning("event=ipmi_failed error=%s", " ".join(str(exc).split()))
        return None


def take_snapshot(ctx: HookContext, cfg: EnergySettings) -> dict[str, Any]:
    sysfs = Sysfs(cfg.sysfs_root)
    domains = rapl.discover(sysfs)
    snap: dict[str, Any] = {"t": time.time(), "rapl": rapl.read_counters(sysfs, domains)}
    gpus = _gpu_snapshot(ctx, cfg)
    if gpus:
        snap["gpus"] = gpus
    watts = _ipmi_power(ctx, cfg)
    if watts is not None:
        snap["ipmi_w"] = watts
    return snap


def prolog_step(ctx: HookContext) -> dict[str, Any] | None:
    return {"_start": take_snapshot(ctx, EnergySettings.from_ctx(ctx))}


def epilog_step(ctx: HookContext) -> dict[str, Any] | None:
    cfg = EnergySettings.from_ctx(ctx)
    state = ctx.prolog_state.get("energy")
    start = state.get("_start") if isinstance(state, dict) else None
    end = take_snapshot(ctx, cfg)
    if not isinstance(start, dict) or not isinstance(start.get("t"), (int, float)):
        return {
            "total_j": None,
            "quality": UNAVAILABLE,
            "sources": [],
            "note": "no Prolog snapshot for this job on this node",
        }
    return compute(ctx, cfg, start, end)


def _share(ctx: HookContext, sysfs: Sysfs) -> tuple[float, str]:
    """The job's share of node-wide energy: its CPUs / the node's CPUs."""
    node_cpus = estimate.node_cpus(sysfs)
    job_cpus = estimate.job_cpus_on_node(
        ctx.env.get("SLURM_JOB_CPUS_PER_NODE"), ctx.job.nodelist, ctx.node
    )
    if not node_cpus or not job_cpus or job_cpus >= node_cpus:
        return 1.0, ""
    return job_cpus / node_cpus, f"apportioned by CPU share {job_cpus}/{node_cpus}"


def compute(
    ctx: HookContext, cfg: EnergySettings, start: dict[str, Any], end: dict[str, Any]
) -> dict[str, Any]:
    sysfs = Sysfs(cfg.sysfs_root)
    elapsed = max(0.0, float(end["t"]) - float(start["t"]))
    share, share_note = _share(ctx, sysfs)
    sources: list[SourceReading] = []
    gpus_out: list[dict[str, Any]] = []

    # GPUs: per device, not apportioned (a GPU belongs to one job).
    start_gpus = {g.get("index"): g for g in start.get("gpus", []) if isinstance(g, dict)}
    for g_end in end.get("gpus", []):
        index = g_end.get("index")
        g_start = start_gpus.get(index, {})
        domain = f"gpu{index}"
        reading: SourceReading
        if isinstance(g_start.get("mj"), int) and isinstance(g_end.get("mj"), int):
            delta = g_end["mj"] - g_start["mj"]
            if delta >= 0:
                reading = SourceReading("nvml", domain, delta / 1000.0, MEASURED)
            else:
                reading = SourceReading(
                    "nvml", domain, None, UNAVAILABLE, "energy counter went back (driver reload?)"
                )
        elif isinstance(g_start.get("mw"), int) and isinstance(g_end.get("mw"), int):
            watts = (g_start["mw"] + g_end["mw"]) / 2000.0
            reading = SourceReading(
                "nvml-power",
                domain,
                watts * elapsed,
                ESTIMATED,
                f"no energy counter ({g_end.get('mj_error', '?')}): mean of 2 power readings",
            )
        else:
            reading = SourceReading(
                "nvml", domain, None, UNAVAILABLE, str(g_end.get("error") or "no NVML reading")
            )
        sources.append(reading)
        gpus_out.append(
            {
                "index": index,
                "uuid": g_end.get("uuid"),
                "model": g_end.get("model"),
                "energy_j": None if reading.joules is None else round(reading.joules, 3),
            }
        )

    # CPU packages and DRAM: RAPL counter deltas.
    domains = {d.name: d for d in rapl.discover(sysfs)}
    cpu_sources: list[SourceReading] = []
    for name, end_uj in end.get("rapl", {}).items():
        dom = domains.get(name)
        start_uj = start.get("rapl", {}).get(name)
        if dom is None or not isinstance(start_uj, int):
            continue
        if elapsed > dom.wrap_window_s:
            # Longer than one wrap window: the two ends cannot tell how many
            # times the counter wrapped; the agent's readings in between can.
            joules, why = _rapl_unwrapped(ctx, dom, start, end, start_uj, int(end_uj))
            if joules is None:
                cpu_sources.append(SourceReading("rapl", name, None, UNAVAILABLE, why))
                continue
            quality = MEASURED
            if share < 1.0:
                joules *= share
                quality = ESTIMATED
                why = "; ".join(n for n in (why, share_note) if n)
            cpu_sources.append(SourceReading("rapl", name, joules, quality, why))
            continue
        joules = rapl.counter_delta(start_uj, int(end_uj), dom.max_energy_uj) / 1e6
        wrapped = int(end_uj) < start_uj
        note = "counter wrapped once" if wrapped else ""
        quality = MEASURED
        if share < 1.0:
            joules *= share
            quality = ESTIMATED
            note = "; ".join(n for n in (note, share_note) if n)
        cpu_sources.append(SourceReading("rapl", name, joules, quality, note))
    if not any(s.joules is not None for s in cpu_sources):
        cpu_sources.append(_cpu_model(ctx, cfg, sysfs, elapsed, domains))
    sources.extend(cpu_sources)

    # Whole node: IPMI DCMI power at both ends.
    node_source = None
    if isinstance(start.get("ipmi_w"), (int, float)) and isinstance(
        end.get("ipmi_w"), (int, float)
    ):
        watts = (start["ipmi_w"] + end["ipmi_w"]) / 2.0
        node_source = SourceReading(
            "ipmi",
            "node",
            watts * elapsed * share,
            ESTIMATED,
            "; ".join(n for n in ("mean of 2 DCMI power readings", share_note) if n),
        )
        sources.append(node_source)

    # Total: the whole-node reading when there is one (it already holds GPUs
    # and CPUs), else the sum of the parts.
    parts = [s for s in sources if s is not node_source]
    if node_source is not None:
        total, basis = node_source.joules, [node_source]
    else:
        known = [s for s in parts if s.joules is not None]
        total = sum(s.joules for s in known if s.joules is not None) if known else None
        basis = known
    quality = (
        UNAVAILABLE
        if total is None
        else MEASURED
        if all(s.quality == MEASURED for s in basis)
        else ESTIMATED
    )
    out: dict[str, Any] = {
        "total_j": None if total is None else round(total, 3),
        "quality": quality,
        "elapsed_s": round(elapsed, 3),
        "sources": [s.as_dict() for s in sources],
    }
    if share < 1.0:
        out["share"] = round(share, 4)
    if gpus_out:
        out["gpus"] = gpus_out
    return out


def _rapl_unwrapped(
    ctx: HookContext,
    dom: rapl.RaplDomain,
    start: dict[str, Any],
    end: dict[str, Any],
    start_uj: int,
    end_uj: int,
) -> tuple[float | None, str]:
    """Joules over a job longer than the wrap window, from the agent's readings.

    The chain is Prolog reading, the agent's readings of this counter, Epilog
    reading. Between consecutive readings at most one wrap can hide when they
    are less than a wrap window apart, and the telescoping sum of the deltas is
    (end - start) + wraps x range. A spacing wider than the window anywhere in
    the chain (agent down, no agent) makes the figure unknowable: None, with why.
    """
    t0, t1 = float(start["t"]), float(end["t"])
    window = dom.wrap_window_s
    lead = f"job ran {t1 - t0:.0f} s, longer than the counter's wrap window ({window:.0f} s)"
    chain = _agent_rapl_chain(ctx, dom.name, t0, t1)
    if isinstance(chain, str):
        return None, f"{lead}; {chain}"
    (first_t, first_uj), (last_t, last_uj) = chain["first"], chain["last"]
    spacings = [
        (first_t - t0, t0, first_t),
        (float(chain["max_dt"]), *(chain["gap"] or (first_t, first_t))),
        (t1 - last_t, last_t, t1),
    ]
    widest = max(spacings, key=lambda item: item[0])
    if widest[0] > window:
        return None, (
            f"{lead}; the agent's readings leave a {widest[0]:.0f} s gap "
            f"({widest[1]:.0f} to {widest[2]:.0f}): wraps cannot be counted"
        )
    wraps = int(chain["wraps"]) + (first_uj < start_uj) + (end_uj < last_uj)
    joules = ((end_uj - start_uj) + wraps * dom.max_energy_uj) / 1e6
    if joules < 0:
        return None, f"{lead}; the agent's readings go backwards (counter reset?)"
    return joules, f"unwrapped with {int(chain['n'])} agent readings: counter wrapped {wraps} times"


def _agent_rapl_chain(ctx: HookContext, domain: str, t0: float, t1: float) -> dict[str, Any] | str:
    """The node agent's readings of `domain` inside the job, or why there are none."""
    from slurm_ai.agent.daemon import AgentSettings, resolve_store_dir
    from slurm_ai.agent.store import SampleStore
    from slurm_ai.errors import SlurmAIError

    try:
        settings = AgentSettings.from_config(ctx.config)
        directory = resolve_store_dir(settings.store_dir, ctx.node)
        with SampleStore(directory, readonly=True) as store, store.read_snapshot():
            chain = store.rapl_chain(domain, t0, t1)
    except SlurmAIError as exc:
        return f"no agent readings ({str(exc)[:120]})"
    if chain is None:
        return "no agent reading of this counter during the job"
    return chain


def _cpu_model(
    ctx: HookContext,
    cfg: EnergySettings,
    sysfs: Sysfs,
    elapsed: float,
    domains: dict[str, rapl.RaplDomain],
) -> SourceReading:
    node_cpus = estimate.node_cpus(sysfs) or 1
    job_cpus = (
        estimate.job_cpus_on_node(
            ctx.env.get("SLURM_JOB_CPUS_PER_NODE"), ctx.job.nodelist, ctx.node
        )
        or node_cpus
    )
    usage = ctx.fragments.get("agent")
    if isinstance(usage, dict) and isinstance(usage.get("usage"), dict):
        usage = usage["usage"]
    efficiency = usage.get("cpu_efficiency") if isinstance(usage, dict) else None
    allocated_s = job_cpus * elapsed
    if isinstance(efficiency, (int, float)) and 0 <= efficiency <= 1:
        cpu_s, how = allocated_s * float(efficiency), "CPU efficiency from the agent"
    else:
        cpu_s, how = allocated_s, "all allocated CPUs assumed busy"
    tdp = cfg.cpu_tdp_w
    tdp_how = "cpu_tdp_w"
    if tdp <= 0:
        package = domains.get("package-0")
        if package is not None and package.max_power_w != rapl.FALLBACK_MAX_POWER_W["package"]:
            tdp, tdp_how = package.max_power_w, "RAPL limit"
        else:
            tdp, tdp_how = estimate.DEFAULT_TDP_W, "assumed"
    per_package = max(1, node_cpus // estimate.packages(sysfs))
    joules, note = estimate.cpu_model_joules(
        allocated_s, cpu_s, tdp, per_package, cfg.cpu_idle_fraction
    )
    return SourceReading(
        "cpu-model",
        "cpu",
        joules,
        ESTIMATED,
        f"no RAPL counter; {note} (TDP {tdp:.0f} W {tdp_how}, {per_package} CPUs/package; {how})",
    )
