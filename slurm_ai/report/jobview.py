"""`slurm-ai job JOBID`: one job in the spirit of seff / jobstats."""

from __future__ import annotations

from typing import Any

from slurm_ai.report.facts import BAD, FIGURE_MAX, NONE, job_facts, read_record
from slurm_ai.report.prices import Prices
from slurm_ai.report.render import fmt as _fmt

MAX_DURATION_S = 1e10  # three centuries: a longer sacct time is corrupt


def fmt(value: Any, digits: int = 4) -> str:
    """render.fmt for a record's raw value: past FIGURE_MAX it is not a measurement
    (facts.py counts it as missing; here it shows as "?", not as 1e+300)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and not -FIGURE_MAX < value < FIGURE_MAX:
        return "?"
    return _fmt(value, digits)


def _show(value: Any) -> str:
    """A record's count or index as written, "?" when it is no usable number."""
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        return fmt(value)
    return "?" if value is None else str(value)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if not -MAX_DURATION_S < s < MAX_DURATION_S:
        return "?"
    s = int(s)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render_job(row: dict[str, str], prices: Prices) -> str:
    """Text report of one sacct row and its record."""
    kind, record, reason, foreign = read_record(row.get("AdminComment", ""))
    facts = job_facts(row).facts
    out = [f"Job {row.get('JobIDRaw', '?')} ({row.get('JobName', '')})"]
    out.append(f"  user/account   {row.get('User', '')}/{row.get('Account', '')}")
    out.append(f"  partition      {row.get('Partition', '')}   state {row.get('State', '')}")
    out.append(f"  nodes          {row.get('NodeList', '')} ({row.get('NNodes', '')})")
    if facts is None:
        return "\n".join(out) + "\n"
    out.append(f"  elapsed        {_dur(facts.elapsed_s)}   queue wait {_dur(facts.wait_s)}")
    out.append(f"  GPUs           {facts.gpus} x {facts.model}")
    if kind == NONE:
        out.append("  record         none (no slurm-ai record in AdminComment)")
        return "\n".join(out) + "\n"
    if kind == BAD or record is None:
        out.append(f"  record         unparsed ({reason})")
        return "\n".join(out) + "\n"
    if foreign:
        out.append("  AdminComment   also holds another tool's content (kept)")
    wl = facts.workload + (" (guessed from job shape)" if facts.workload_guessed else "")
    out.append(f"  workload       {wl}")
    nodes = record.get("nodes") if isinstance(record.get("nodes"), dict) else {}
    assert isinstance(nodes, dict)
    for host, node in sorted(nodes.items()):
        node = node if isinstance(node, dict) else {}
        out.append(f"  node {host}")
        plat = node.get("platform") if isinstance(node.get("platform"), dict) else {}
        assert isinstance(plat, dict)
        out.append(
            f"    platform     {plat.get('class', '?')}"
            + (f" ({plat.get('hypervisor')})" if plat.get("hypervisor") else "")
            + (" [override]" if plat.get("override") else "")
        )
        energy = node.get("energy") if isinstance(node.get("energy"), dict) else {}
        assert isinstance(energy, dict)
        for src in energy.get("sources", []) if isinstance(energy.get("sources"), list) else []:
            if isinstance(src, dict):
                out.append(
                    f"    energy       {src.get('domain', '?'):<10} {fmt(src.get('joules'))} J "
                    f"[{src.get('source', '?')}, {src.get('quality', '?')}]"
                    + (f" {src.get('note')}" if src.get("note") else "")
                )
        for gpu in node.get("gpus", []) if isinstance(node.get("gpus"), list) else []:
            if isinstance(gpu, dict):
                out.append(
                    f"    gpu {_show(gpu.get('index', '?'))}        {gpu.get('model', '?')} {fmt(gpu.get('energy_j'))} J"
                )
        health = node.get("health") if isinstance(node.get("health"), dict) else {}
        assert isinstance(health, dict)
        if health:
            out.append(
                f"    health       {health.get('verdict', '?')} busbw {fmt(health.get('busbw_gbps'))} GB/s "
                f"({health.get('backend', '?')}, {_show(health.get('ranks', '?'))} ranks, {fmt(health.get('size_bytes'))} B)"
                + (f": {health.get('reason')}" if health.get("reason") else "")
            )
            source = _health_source(health.get("provenance"))
            if source:
                out.append(f"    health from  {source}")
        plan = node.get("plan") if isinstance(node.get("plan"), dict) else {}
        assert isinstance(plan, dict)
        if plan:
            out.append(
                f"    plan         {_show(plan.get('ranks', '?'))} ranks, "
                f"GPUs {_show(plan.get('gpus', '?'))}, "
                f"{_show(plan.get('cpus_per_rank', '?'))} CPUs/rank, "
                f"NUMA {_show(plan.get('numa', '?'))}, NICs {plan.get('nics', '?')}"
            )
            for warning in plan.get("warnings") or []:
                out.append(f"    plan warning {warning}")
    kwh = (facts.energy_j or 0.0) / 3.6e6
    out.append(
        f"  energy         {fmt(kwh, 4)} kWh IT"
        + ("" if facts.energy_j is not None else " (no energy recorded)")
    )
    known = facts.measured_j + facts.estimated_j
    if known:
        out.append(f"  measured       {facts.measured_j / known * 100:.1f}% (rest estimated)")
    out.append(f"  CO2            {fmt(prices.co2_kg(kwh), 4)} kg")
    cost = prices.cost(
        facts.partition,
        kwh,
        facts.nnodes * facts.elapsed_s / 3600,
        facts.gpus * facts.elapsed_s / 3600,
    )
    if prices.configured:
        out.append(f"  cost           {cost:.4g} {prices.currency}")
    else:
        out.append("  cost           unknown (no [prices] configured)")
    from slurm_ai.report.aggregate import UNIT_SCALE

    for unit, value in facts.units.items():
        scale, label = UNIT_SCALE[unit]
        per = value / scale
        line = f"  units          {fmt(value)} {unit}"
        if prices.configured and per:
            line += f": {cost / per:.4g} {prices.currency} {label}, {kwh / per:.4g} kWh {label}"
        out.append(line)
    return "\n".join(out) + "\n"


def job_json(row: dict[str, str]) -> dict[str, Any]:
    """The raw record (or why there is none) with the sacct fields."""
    kind, record, reason, foreign = read_record(row.get("AdminComment", ""))
    return {
        "sacct": {k: v for k, v in row.items() if k != "AdminComment"},
        "record_status": {"ok": "ok", "none": "no record", "bad": "unparsed"}[kind],
        "reason": reason or None,
        "foreign_comment": foreign,
        "record": record,
    }


def _health_source(provenance: object) -> str:
    """ "cached, 12 min old" / "unchecked: <why>" / "fresh" from health.provenance."""
    if not isinstance(provenance, dict) or not isinstance(provenance.get("source"), str):
        return ""
    source, age, why = provenance["source"], provenance.get("age_s"), provenance.get("why")
    text = source
    if source == "cached" and isinstance(age, (int, float)):
        text += f", {age / 60:.0f} min old" if age < 7200 else f", {age / 3600:.1f} h old"
    if why:
        text += f": {why}"
    return text[:200]
