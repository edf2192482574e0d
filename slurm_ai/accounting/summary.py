"""The bounded summary of a job's node records (record v2 `summary`).

A job record must not grow with the node count (AdminComment is one MySQL TEXT
column), so every v2 record carries a summary whose size is bounded whatever
the number of nodes: exact job totals, the distribution over nodes of energy,
power and health busbw (min, P50, P95, max, with the node holding each
extreme), health verdict counts with the failing and outlying nodes named (at
most NAMED each, the rest counted), and counts by platform class, GPU model
and energy source (at most KEYS each, the rest under "other").

Totals are math.fsum of the node figures: correctly rounded, so they do not
depend on the order the nodes arrive in, and the summary of the same nodes is
the same bits whether it is built from the record or from the detail file.
Quantiles are nearest-rank on the sorted node values (P50 of 4 values is the
2nd, P95 of 4 the 4th). Ties for min and max go to the first node by name.
Non-finite or negative figures are ignored exactly as the report ignores them;
nothing here produces NaN or infinity.

This module is pure: no I/O, never raises for malformed node records.
"""

from __future__ import annotations

import math
from typing import Any

SUMMARY_VERSION = 1
NAMED = 32  # nodes named per list (failed, outliers, errors); the rest are counted
KEYS = 16  # entries per count table (models, sources, classes); the rest in "other"
OUTLIER_FRACTION = 0.8  # busbw below this fraction of the nodes' P50 is an outlier
MEASURED_VERDICTS = frozenset({"pass", "warn", "fail"})
CHECKED_VERDICTS = frozenset({"pass", "warn", "fail", "timeout"})
FAILED_VERDICTS = frozenset({"fail", "timeout"})
_SOURCE_RANK = {"fresh": 1, "cached": 2, "unchecked": 3}


def finite(value: Any) -> float | None:
    """A JSON number that is finite and >= 0, as float; else None (bool is not a number)."""
    if type(value) not in (int, float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) and f >= 0 else None


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of a non-empty ascending list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def distribution(pairs: list[tuple[float, str]]) -> dict[str, Any] | None:
    """{n, min, min_node, p50, p95, max, max_node} of (value, node) pairs; None when empty."""
    if not pairs:
        return None
    low = min(pairs, key=lambda p: (p[0], p[1]))
    high = max(pairs, key=lambda p: (p[0], _reverse_name(p[1])))
    values = sorted(v for v, _ in pairs)
    return {
        "n": len(values),
        "min": low[0],
        "min_node": low[1],
        "p50": nearest_rank(values, 0.5),
        "p95": nearest_rank(values, 0.95),
        "max": high[0],
        "max_node": high[1],
    }


def _reverse_name(name: str) -> tuple[int, ...]:
    # max() keeps the last of equal keys; negate code points so the first name wins.
    return (*(-ord(c) for c in name), 1)


def _bounded(counts: dict[str, int]) -> dict[str, int]:
    """At most KEYS entries, the largest (then by name); the rest summed under "other"."""
    if len(counts) <= KEYS:
        return dict(sorted(counts.items()))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(sorted(ranked[: KEYS - 1]))
    kept["other"] = kept.get("other", 0) + sum(v for _, v in ranked[KEYS - 1 :])
    return kept


def _bounded_j(parts: dict[str, list[float]]) -> dict[str, float]:
    sums = {k: math.fsum(v) for k, v in parts.items()}
    if len(sums) <= KEYS:
        return dict(sorted(sums.items()))
    ranked = sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(sorted(ranked[: KEYS - 1]))
    kept["other"] = math.fsum(v for _, v in ranked[KEYS - 1 :])
    return kept


def _named(nodes: list[str]) -> dict[str, Any]:
    return {"count": len(nodes), "nodes": nodes[:NAMED]}


def summarize(nodes: dict[str, Any]) -> dict[str, Any]:
    """The bounded summary of node records {name: node record}; see the module doc."""
    classes: dict[str, int] = {}
    models: dict[str, int] = {}
    gpu_count = 0
    gpu_energy: list[float] = []
    totals: list[float] = []
    by_quality: dict[str, list[float]] = {"measured": [], "estimated": []}
    by_source: dict[str, list[float]] = {}
    energy_pairs: list[tuple[float, str]] = []
    power_pairs: list[tuple[float, str]] = []
    busbw_pairs: list[tuple[float, str]] = []
    verdicts: dict[str, int] = {}
    provenance: dict[str, int] = {}
    worst_source: str | None = None
    failed: list[str] = []
    errors: list[str] = []
    busbw_min: dict[str, Any] | None = None
    for name in sorted(nodes):
        node = nodes[name]
        if type(node) is not dict:
            classes["unknown"] = classes.get("unknown", 0) + 1
            continue
        plat = node.get("platform")
        cls = plat.get("class") if type(plat) is dict else None
        cls = cls if type(cls) is str and cls else "unknown"
        classes[cls] = classes.get(cls, 0) + 1
        gpus = node.get("gpus")
        if type(gpus) is list:
            gpu_count += len(gpus)
            for gpu in gpus:
                if type(gpu) is not dict:
                    continue
                model = gpu.get("model")
                if type(model) is str and model:
                    models[model] = models.get(model, 0) + 1
                gj = finite(gpu.get("energy_j"))
                if gj is not None:
                    gpu_energy.append(gj)
        en = node.get("energy")
        if type(en) is dict:
            total = finite(en.get("total_j"))
            if total is not None:
                totals.append(total)
                energy_pairs.append((total, name))
                elapsed = finite(en.get("elapsed_s"))
                if elapsed:
                    power = total / elapsed
                    if math.isfinite(power):
                        power_pairs.append((power, name))
            sources = en.get("sources")
            for src in sources if type(sources) is list else ():
                if type(src) is not dict:
                    continue
                joules = finite(src.get("joules"))
                if joules is None:
                    continue
                quality = src.get("quality")
                if quality in by_quality:
                    by_quality[quality].append(joules)
                source = src.get("source")
                key = f"{source if type(source) is str else '?'}/{quality if type(quality) is str else '?'}"
                by_source.setdefault(key, []).append(joules)
        if type(node.get("errors")) is list and node["errors"]:
            errors.append(name)
        hl = node.get("health")
        if type(hl) is not dict:
            continue
        prov = hl.get("provenance")
        source = prov.get("source") if type(prov) is dict else None
        if source in _SOURCE_RANK:
            provenance[source] = provenance.get(source, 0) + 1
            if _SOURCE_RANK[source] > _SOURCE_RANK.get(worst_source or "", 0):
                worst_source = source
        verdict = hl.get("verdict")
        if type(verdict) is str and verdict:
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            if verdict in FAILED_VERDICTS:
                failed.append(name)
        bw = finite(hl.get("busbw_gbps"))
        if verdict in MEASURED_VERDICTS and bw is not None:
            busbw_pairs.append((bw, name))
            # The report's job busbw: the slowest node, its (ranks, size) as the key, and
            # what the all-reduce ran on (report/facts.busbw_model: device, else backend).
            if busbw_min is None or bw < busbw_min["gbps"]:
                busbw_min = {
                    "gbps": bw,
                    "node": name,
                    "ranks": _int(hl.get("ranks")),
                    "size_bytes": _int(hl.get("size_bytes")),
                }
                for key in ("device", "backend"):
                    value = hl.get(key)
                    # Anything else reads as absent there, and no longer word is read.
                    if type(value) is str and len(value) <= 16:
                        busbw_min[key] = value
    busbw_dist = distribution(busbw_pairs)
    outliers: list[str] = []
    if busbw_dist is not None:
        floor = busbw_dist["p50"] * OUTLIER_FRACTION
        outliers = [n for v, n in sorted(busbw_pairs, key=lambda p: p[1]) if v < floor]
    health: dict[str, Any] = {"verdicts": dict(sorted(verdicts.items()))}
    if provenance:
        health["provenance"] = dict(sorted(provenance.items()))
        health["worst_source"] = worst_source
    if failed:
        health["failed"] = _named(failed)
    if outliers:
        health["outliers"] = _named(outliers)
    if busbw_min is not None:
        health["busbw_min"] = busbw_min
    summary: dict[str, Any] = {
        "v": SUMMARY_VERSION,
        "nodes": len(nodes),
        "platform": _bounded(classes),
        "gpus": {"count": gpu_count, "models": _bounded(models), "energy_j": math.fsum(gpu_energy)},
        "energy": {
            "nodes": len(totals),
            "total_j": math.fsum(totals) if totals else None,
            "measured_j": math.fsum(by_quality["measured"]),
            "estimated_j": math.fsum(by_quality["estimated"]),
            "by_source": _bounded_j(by_source),
        },
        "health": health,
        "dist": {
            k: d
            for k, d in (
                ("energy_j", distribution(energy_pairs)),
                ("power_w", distribution(power_pairs)),
                ("busbw_gbps", busbw_dist),
            )
            if d is not None
        },
    }
    if errors:
        summary["errors"] = _named(errors)
    return summary


def _int(value: Any) -> int:
    f = finite(value)
    return int(f) if f is not None and f < 2**63 else 0
