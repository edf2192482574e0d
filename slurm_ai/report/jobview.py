"""`slurm-ai job JOBID`: one job in the spirit of seff / jobstats."""

from __future__ import annotations

import time
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


def render_job(
    row: dict[str, str],
    prices: Prices,
    waiting: Any = None,
    all_nodes: bool = False,
) -> str:
    """Text report of one sacct row and its record.

    `waiting`: the spool's WaitingJob for this job, when the caller could read
    the spool (accounting/waiting.py); `all_nodes`: print every node from the
    detail file of a summarised record.
    """
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
    if waiting is not None:
        out.append(f"  spool          {waiting.line(time.time())}")
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
    out += completeness_lines(record, nodes)
    detail = record.get("detail")
    if isinstance(detail, dict):
        full, problem = _detail(detail, record.get("summary"))
        out.append(
            f"  record         summarised: {len(nodes)} of "
            f"{_count(record)} nodes in full here; every node in {detail.get('file')}"
            + (f" ({problem})" if problem else " (verified)")
        )
        if all_nodes and full is not None:
            nodes = full
    out += summary_lines(record.get("summary"))
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
        errors = node.get("errors")
        for error in errors[:5] if isinstance(errors, list) else []:
            out.append(f"    error        {str(error)[:200]}")
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
        + ("" if facts.complete else " (INCOMPLETE: nodes present only)")
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
        out.append(
            f"  cost           {cost:.4g} {prices.currency}"
            + ("" if facts.complete else " (energy part covers the nodes present only)")
        )
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


def job_json(row: dict[str, str], waiting: Any = None, all_nodes: bool = False) -> dict[str, Any]:
    """The raw record (or why there is none) with the sacct fields.

    `complete`/`missing`: from the record (v1 records: from the nodelist);
    `detail_status`: "verified" or why the detail file of a summarised record
    cannot be trusted; with `all_nodes`, `detail_nodes` holds every node from it.
    """
    kind, record, reason, foreign = read_record(row.get("AdminComment", ""))
    out: dict[str, Any] = {
        "sacct": {k: v for k, v in row.items() if k != "AdminComment"},
        "record_status": {"ok": "ok", "none": "no record", "bad": "unparsed"}[kind],
        "reason": reason or None,
        "foreign_comment": foreign,
        "record": record,
    }
    if waiting is not None:
        out["spool"] = waiting.as_dict()
    if record is not None:
        nodes = record.get("nodes") if isinstance(record.get("nodes"), dict) else {}
        missing, count = _missing(record, nodes or {})
        out["complete"] = record.get("complete") is not False
        out["missing"] = {"count": count, "nodes": missing}
        if isinstance(record.get("detail"), dict):
            full, problem = _detail(record["detail"], record.get("summary"))
            out["detail_status"] = problem or "verified"
            if all_nodes and full is not None:
                out["detail_nodes"] = full
    return out


def _count(record: dict[str, Any]) -> Any:
    summary = record.get("summary")
    return summary.get("nodes", "?") if isinstance(summary, dict) else "?"


def _detail(pointer: dict[str, Any], summary: Any = None) -> tuple[dict[str, Any] | None, str]:
    """The detail file's nodes, or why they cannot be trusted: a file that does not
    match the record's digest, or whose nodes do not give the record's summary totals."""
    from slurm_ai.accounting.detail import DetailError, read_detail
    from slurm_ai.accounting.summary import summarize

    try:
        nodes = read_detail(pointer)
    except DetailError as exc:
        return None, str(exc)
    if isinstance(summary, dict):
        mine = summarize(nodes)
        for path in (("nodes",), ("energy", "total_j"), ("gpus", "count")):
            a: Any = summary
            b: Any = mine
            for key in path:
                a = a.get(key) if isinstance(a, dict) else None
                b = b.get(key) if isinstance(b, dict) else None
            if a != b:
                return None, (
                    f"detail file {pointer.get('file')} disagrees with the record's summary "
                    f"({'.'.join(path)}: {b} in the file, {a} in the record)"
                )
    return nodes, ""


def _missing(record: dict[str, Any], nodes: dict[str, Any]) -> tuple[list[str], int]:
    """Missing node names (at most those listed) and their count."""
    if record.get("complete") is not False:
        return [], 0
    listed = record.get("missing")
    count = record.get("missing_count")
    if isinstance(listed, list):
        names = [str(n) for n in listed]
        return names, count if type(count) is int else len(names)
    from slurm_ai.record import expected_names

    job = record.get("job") if isinstance(record.get("job"), dict) else {}
    expected = expected_names(job or {})
    if expected is not None:  # a v1 record: from its nodelist
        names = sorted(expected - set(nodes))
        return names[:32], len(names)
    return [], count if type(count) is int else 0


def completeness_lines(record: dict[str, Any], nodes: dict[str, Any]) -> list[str]:
    """ "incomplete: n2 missing (why)" and what is known of each missing node."""
    if record.get("complete") is not False:
        return []
    names, count = _missing(record, nodes)
    absent = record.get("absent") if isinstance(record.get("absent"), dict) else {}
    assert isinstance(absent, dict)
    more = f" (+{count - len(names)} more)" if count > len(names) else ""
    listed = ",".join(names) if names else f"{count or 'some'} node(s)"
    out = [f"  record         INCOMPLETE: {listed}{more} missing"]
    for host in names:
        known = absent.get(host) if isinstance(absent.get(host), dict) else {}
        assert isinstance(known, dict)
        out.append(f"  node {host} (missing): {known.get('why') or 'no Epilog record'}")
        prolog = known.get("prolog") if isinstance(known.get("prolog"), dict) else None
        if prolog:
            timing = prolog.get("time") if isinstance(prolog.get("time"), dict) else {}
            assert isinstance(timing, dict)
            start = timing.get("prolog_start")
            plat = prolog.get("platform") if isinstance(prolog.get("platform"), dict) else {}
            health = prolog.get("health") if isinstance(prolog.get("health"), dict) else {}
            assert isinstance(plat, dict) and isinstance(health, dict)
            out.append(
                "    known        Prolog ran"
                + (f" at {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(start))}"
                   if isinstance(start, (int, float)) else "")
                + (f", platform {plat.get('class')}" if plat.get("class") else "")
                + (f", health {health.get('verdict')}" if health.get("verdict") else "")
            )  # fmt: skip
    return out


def summary_lines(summary: Any) -> list[str]:
    """A v2 record's distribution over nodes and health counts (multi-node jobs)."""
    if not isinstance(summary, dict) or not isinstance(summary.get("nodes"), int):
        return []
    if summary["nodes"] < 2:
        return []
    out: list[str] = []
    dist = summary.get("dist") if isinstance(summary.get("dist"), dict) else {}
    assert isinstance(dist, dict)
    for key, label, unit in (
        ("energy_j", "energy/node", "J"),
        ("power_w", "power/node", "W"),
        ("busbw_gbps", "busbw/node", "GB/s"),
    ):
        d = dist.get(key)
        if isinstance(d, dict):
            out.append(
                f"  {label:<14} min {fmt(d.get('min'))} ({d.get('min_node')}) "
                f"P50 {fmt(d.get('p50'))} P95 {fmt(d.get('p95'))} "
                f"max {fmt(d.get('max'))} ({d.get('max_node')}) {unit}, {d.get('n')} nodes"
            )
    health = summary.get("health") if isinstance(summary.get("health"), dict) else {}
    assert isinstance(health, dict)
    verdicts = health.get("verdicts")
    if isinstance(verdicts, dict) and verdicts:
        out.append("  health         " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    for key, label in (("failed", "failed nodes"), ("outliers", "slow nodes")):
        named = health.get(key)
        if isinstance(named, dict) and isinstance(named.get("nodes"), list):
            more = (named.get("count") or 0) - len(named["nodes"])
            out.append(
                f"  {label:<14} "
                + ",".join(str(n) for n in named["nodes"])
                + (f" (+{more} more)" if more > 0 else "")
                + (" (busbw under 0.8 x P50)" if key == "outliers" else "")
            )
    return out


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
