"""Epilog step: this node's usage summary for the job, from the agent's store.

The window runs from the Prolog's start (our prolog_step leaves it in the
Prolog state as the private key "_start", which never reaches the record),
or failing that from the first sample of the job's processes, to now. The step
only reads (the store is opened read-only) and never raises for an expected
fault: no agent, no store, a corrupt store all give a usage fragment with
coverage 0 and a note, never an Epilog failure (which would drain the node).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

from slurm_ai.errors import SlurmAIError
from slurm_ai.hooks.context import HookContext

_CPUS_ITEM = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")
MAX_EXPANDED_NODES = 100_000


def cpus_per_node(text: str | None) -> list[int]:
    """SLURM_JOB_CPUS_PER_NODE ("2(x3),1") -> [2, 2, 2, 1]; [] when malformed."""
    counts: list[int] = []
    for item in (text or "").split(","):
        match = _CPUS_ITEM.match(item.strip())
        if not match:
            return []
        repeat = int(match.group(2) or 1)
        if len(counts) + repeat > MAX_EXPANDED_NODES:
            return []
        counts.extend([int(match.group(1))] * repeat)
    return counts


def node_cpus(env: Mapping[str, str], nodelist: list[str], node: str) -> int | None:
    counts = cpus_per_node(env.get("SLURM_JOB_CPUS_PER_NODE"))
    if not counts:
        return None
    if node in nodelist and nodelist.index(node) < len(counts):
        return counts[nodelist.index(node)]
    return counts[0] if len(set(counts)) == 1 else None


def _find_number(state: Any, key: str, depth: int = 0) -> float | None:
    """A numeric `key` anywhere in the Prolog state (steps nest their fragments)."""
    if not isinstance(state, dict) or depth > 3:
        return None
    value = state.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    for child in state.values():
        found = _find_number(child, key, depth + 1)
        if found is not None:
            return found
    return None


def prolog_step(ctx: HookContext) -> dict[str, Any]:
    """Remember when the job's window starts ("_" keys stay out of the record)."""
    return {"_start": round(time.time(), 3)}


def job_window(ctx: HookContext, first_sample: float | None, interval: float) -> tuple[float, str]:
    own = ctx.prolog_state.get("agent") if isinstance(ctx.prolog_state, dict) else None
    start = _find_number(own, "_start")
    if start is None:
        start = _find_number(ctx.prolog_state, "prolog_start")
    if start is not None:
        return start, "prolog"
    if first_sample is not None:
        return first_sample - interval, "first-sample"
    return ctx.started, "none"


def epilog_step(
    ctx: HookContext, env: Mapping[str, str] | None = None, *, now: float | None = None
) -> dict[str, Any]:
    """{"usage": summary} for this node; `now` (the window's end) is for tests."""
    from slurm_ai.agent.daemon import AgentSettings, resolve_store_dir
    from slurm_ai.agent.store import SampleStore
    from slurm_ai.agent.summary import first_job_sample, summarise

    if env is None:
        env = getattr(ctx, "env", None) or os.environ
    end = time.time() if now is None else now
    job = ctx.job.job_id
    if not job:
        return {"usage": {"v": 1, "source": "agent", "coverage": 0.0, "notes": ["no job id"]}}
    try:
        settings = AgentSettings.from_config(ctx.config)
        directory = resolve_store_dir(settings.store_dir, ctx.node)
        with SampleStore(directory, readonly=True) as store:
            start, start_source = job_window(ctx, first_job_sample(store, job), settings.interval_s)
            usage = summarise(
                store,
                job=job,
                gpus=list(ctx.job.gpus),
                start=start,
                end=end,
                node=ctx.node,
                uid=ctx.job.uid,
                ncpus=node_cpus(env, ctx.job.nodelist, ctx.node),
            )
            usage["window"]["from"] = start_source
    except SlurmAIError as exc:
        ctx.log.warning("agent usage for job %s: %s", job, exc)
        return {
            "usage": {
                "v": 1,
                "source": "agent",
                "coverage": 0.0,
                "notes": [f"no agent data: {str(exc)[:200]}"],
            }
        }
    return {"usage": usage}
