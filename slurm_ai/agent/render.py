"""A usage summary as text: utilisation bars and short notes, like jobstats.

Pure functions for `slurm-ai job` (the report command calls them):

    render_usage(record["nodes"]["n1"]["usage"])          # one node
    render_job_usage({host: node["usage"] for host, node in record["nodes"].items()})

Input comes from accounting, so every field is treated as untrusted: missing,
mistyped or out-of-range values are skipped, never raised on, and strings are
cut and stripped of control characters before they reach a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

BAR_WIDTH = 30
LOW_GPU_UTIL = 25.0
LOW_CPU_EFFICIENCY = 0.25
LOW_COVERAGE = 0.9
HIGH_THROTTLE = 0.1


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _clean(value: Any, limit: int = 80) -> str:
    text = str(value)[:limit]
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """[#########.....................] for 0..1; a value above 1 fills the bar."""
    if fraction is None:
        return "[" + "?" * width + "]"
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _bytes(value: float | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _energy(joules: float | None) -> str:
    if joules is None:
        return "?"
    if joules >= 3.6e6:
        return f"{joules / 3.6e6:.2f} kWh"
    if joules >= 3600:
        return f"{joules / 3600:.1f} Wh"
    return f"{joules:.0f} J"


def _row(label: str, fraction: float | None, detail: str) -> str:
    return f"  {label:<16} {bar(fraction)} {detail}"


def usage_lines(usage: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(bar lines, notes) for one node's usage summary."""
    lines: list[str] = []
    notes: list[str] = []
    raw_gpu = usage.get("gpu")
    gpu: Mapping[str, Any] = raw_gpu if isinstance(raw_gpu, Mapping) else {}
    gpus = (
        [g for g in usage.get("gpus", []) if isinstance(g, Mapping)]
        if isinstance(usage.get("gpus"), list)
        else []
    )
    util = _num(gpu.get("util_mean")) if gpu else None
    if util is not None:
        util_max = _num(gpu.get("util_max"))
        detail = f"{util:.0f}% mean" + (f", {util_max:.0f}% max" if util_max is not None else "")
        lines.append(_row("GPU utilisation", util / 100, detail))
        if util < LOW_GPU_UTIL:
            notes.append(
                f"GPU utilisation {util:.0f}%: the GPUs were mostly idle; check the input "
                "pipeline (data loading, CPU preprocessing) or ask for fewer GPUs."
            )
    for g in gpus[:16]:
        g_util = _num(g.get("util_mean"))
        mem = _num(g.get("mem_max_bytes"))
        total = _num(g.get("mem_total_bytes"))
        parts = []
        if g_util is not None:
            parts.append(f"util {g_util:.0f}%")
        if mem is not None:
            parts.append(f"mem {_bytes(mem)}" + (f" of {_bytes(total)}" if total else ""))
        power = _num(g.get("power_mean_w"))
        if power is not None:
            parts.append(f"{power:.0f} W mean")
        fraction = g_util / 100 if g_util is not None else None
        lines.append(_row(f"  GPU {_clean(g.get('index'), 6)}", fraction, ", ".join(parts)))
        if mem is not None and total and mem / total > 0.95:
            notes.append(f"GPU {_clean(g.get('index'), 6)} memory nearly full ({_bytes(mem)}).")
    power_mean = _num(gpu.get("power_mean_w")) if gpu else None
    if power_mean is not None:
        power_max = _num(gpu.get("power_max_w"))
        detail = f"{power_mean:.0f} W mean" + (
            f", {power_max:.0f} W max" if power_max is not None else ""
        )
        lines.append(f"  {'GPU power':<16} {detail}")
    integrated = _num(gpu.get("energy_power_j")) if gpu else None
    counter = _num(gpu.get("energy_counter_j")) if gpu else None
    if integrated is not None or counter is not None:
        lines.append(
            f"  {'GPU energy':<16} {_energy(integrated)} by power samples, "
            f"{_energy(counter)} by NVML counter"
        )
    throttled = _num(gpu.get("throttled_share")) if gpu else None
    if throttled is not None and throttled >= HIGH_THROTTLE:
        reasons: dict[str, float] = {}
        for g in gpus:
            shares = g.get("throttle")
            if isinstance(shares, Mapping):
                for name, share in shares.items():
                    value = _num(share)
                    if value is not None and name not in ("gpu_idle", "applications_clocks"):
                        reasons[_clean(name, 30)] = max(reasons.get(_clean(name, 30), 0), value)
        top = ", ".join(f"{n} {s:.0%}" for n, s in sorted(reasons.items(), key=lambda x: -x[1])[:3])
        notes.append(f"GPU clocks throttled {throttled:.0%} of the time ({top}).")
    xids = usage.get("xids")
    if isinstance(xids, list) and xids:
        codes = sorted(
            {
                _clean(x.get("code"), 8)
                for x in xids
                if isinstance(x, Mapping) and x.get("kind") == "xid"
            }
        )
        if codes:
            notes.append(f"XID errors during the job: {', '.join(codes)} (see nvidia-smi / dmesg).")
    efficiency = _num(usage.get("cpu_efficiency"))
    raw_cpu = usage.get("cpu")
    cpu: Mapping[str, Any] = raw_cpu if isinstance(raw_cpu, Mapping) else {}
    if efficiency is not None:
        ncpus = _num(cpu.get("ncpus")) if cpu else None
        used = efficiency * ncpus if ncpus else None
        detail = f"{efficiency:.0%}" + (
            f" ({used:.1f} of {ncpus:.0f} cores)" if used is not None and ncpus else ""
        )
        lines.append(_row("CPU efficiency", efficiency, detail))
        if efficiency < LOW_CPU_EFFICIENCY:
            notes.append(
                f"CPU efficiency {efficiency:.0%}: most allocated cores were idle; "
                "ask for fewer CPUs or use more threads."
            )
    rss = _num(usage.get("peak_rss_bytes"))
    if rss is not None:
        lines.append(f"  {'CPU memory':<16} {_bytes(rss)} peak RSS")
    coverage = _num(usage.get("coverage"))
    if coverage is not None:
        gaps = _num(usage.get("gaps_total"))
        detail = f"{coverage:.0%} of the job sampled" + (f", {gaps:.0f} gap(s)" if gaps else "")
        lines.append(_row("Coverage", coverage, detail))
        if coverage < LOW_COVERAGE:
            notes.append(
                f"The agent sampled {coverage:.0%} of the job: figures cover the sampled time only."
            )
    raw_notes = usage.get("notes")
    if isinstance(raw_notes, list):
        for note in raw_notes[:5]:
            cleaned = _clean(note, 160)
            if "gaps not filled" in cleaned and coverage is not None and coverage < LOW_COVERAGE:
                continue  # already said above, in words for the user
            if not any(cleaned in n for n in notes):
                notes.append(cleaned)
    return lines, notes


def render_usage(usage: Mapping[str, Any] | None) -> str:
    """One node's usage as text ("" when there is nothing to show)."""
    if not isinstance(usage, Mapping) or not usage:
        return ""
    lines, notes = usage_lines(usage)
    out = list(lines)
    if notes:
        out.append("  Notes:")
        out.extend(f"   * {note}" for note in notes)
    return "\n".join(out) + "\n" if out else ""


def render_job_usage(usages: Mapping[str, Any]) -> str:
    """Every node's usage, one block per node, sorted by node name."""
    blocks = []
    for node in sorted(usages, key=str):
        text = render_usage(usages[node])
        if text:
            blocks.append(f"Usage on {_clean(node, 64)}:\n{text}")
    return "\n".join(blocks)
