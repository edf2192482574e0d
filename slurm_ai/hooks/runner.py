"""What the Prolog and Epilog share: logging, the step table, running steps.

Steps plug in by module path: a feature provides `slurm_ai.<feature>.hook`
with `prolog_step(ctx)` and/or `epilog_step(ctx)`. Each is imported only when
it runs; a missing module, a missing function, a raising step or a fragment
that is not JSON is logged and skipped (fail open).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from slurm_ai import jsontext
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv

# (config, job, node, environ, log, started epoch, started perf_counter) -> exit status
HookBody = Callable[[Config, JobEnv, str, Mapping[str, str], logging.Logger, float, float], int]

# name -> module. Order matters: later steps see earlier fragments in ctx.fragments
# (energy uses the agent's CPU efficiency for its CPU model).
STEPS: dict[str, str] = {
    "topology": "slurm_ai.topology.hook",
    "health": "slurm_ai.health.hook",
    "agent": "slurm_ai.agent.hook",
    "energy": "slurm_ai.energy.hook",
}
MAX_ERRORS = 8


def step_names(config: Config) -> list[str]:
    """[hooks] steps (default: all, in STEPS order); unknown names are ignored."""
    wanted = config.section("hooks").get_str_list("steps", list(STEPS))
    return [name for name in STEPS if name in wanted]


class _FailOpenHandler(logging.Handler):
    """Append one line per event to a 0600 file, never following a symlink."""

    def __init__(self, path: str) -> None:
        super().__init__()
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(path, flags, 0o600)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).replace("\n", " ") + "\n"
            os.write(self.fd, line.encode(errors="replace"))
        except Exception:  # logging must never break a hook
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        super().close()


def setup_log(config: Config | None, hook: str, job: str | None, node: str) -> logging.Logger:
    """A logger writing `<time> <hook> job=<id> node=<n> <LEVEL> <event...>` lines.

    Falls back to stderr (which slurmd puts in its own log) when the file
    cannot be opened.
    """
    log = logging.getLogger(f"slurm_ai.hooks.{hook}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    handler: logging.Handler
    try:
        handler = _FailOpenHandler(config.log_file if config else "/dev/stderr")
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s slurm-ai {hook}[%(process)d] job={job} node={node} "
            "%(levelname)s %(message)s"
        )
    )
    log.addHandler(handler)
    return log


def one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def run_steps(
    ctx: HookContext, phase: str, names: list[str]
) -> tuple[dict[str, Any], list[str], dict[str, float]]:
    """Run `<phase>_step` of each named feature; returns fragments, errors, durations."""
    errors: list[str] = []
    durations: dict[str, float] = {}
    for name in names:
        module_name = STEPS[name]
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                ctx.log.info("event=step_absent step=%s module=%s", name, module_name)
            else:
                errors.append(f"{name}: needs {exc.name}")
                ctx.log.error("event=step_import_failed step=%s missing=%s", name, exc.name)
            continue
        except Exception as exc:
            errors.append(f"{name}: import: {one_line(exc, 150)}")
            ctx.log.exception("event=step_import_failed step=%s error=%s", name, one_line(exc))
            continue
        step = getattr(module, f"{phase}_step", None)
        if step is None:
            continue
        try:
            fragment = step(ctx)
            if fragment is not None:
                # Must be JSON-able to reach the record; a NaN or inf (a wrapped
                # counter, a zero duration) becomes null, the rest of the step is kept.
                fragment = jsontext.finite(fragment)
                json.dumps(fragment, allow_nan=False)
                ctx.fragments[name] = fragment
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {one_line(exc, 150)}")
            ctx.log.error(
                "event=step_failed step=%s error=%s: %s", name, type(exc).__name__, one_line(exc)
            )
        finally:
            durations[name] = time.perf_counter() - t0
    return dict(ctx.fragments), errors[:MAX_ERRORS], durations


def job_meta(ctx: HookContext) -> dict[str, Any]:
    """record["job"] fields the hook environment knows."""
    job = ctx.job
    meta: dict[str, Any] = {"id": str(job.job_id)}
    for key, value in (
        ("cluster", job.cluster),
        ("partition", job.partition),
        ("user", job.user),
        ("account", job.account),
        ("exit_code", job.exit_code),
    ):
        if value is not None:
            meta[key] = value
    expected = job.num_nodes or len(job.nodelist) or None
    if expected:
        meta["nodes_expected"] = expected
    raw = ctx.env.get("SLURM_JOB_NODELIST") or ctx.env.get("SLURM_NODELIST")
    if raw and len(raw) <= 4096:
        meta["nodelist"] = raw
    return meta


def run_hook(hook: str, config_path: str | None, environ: Mapping[str, str], body: HookBody) -> int:
    """The boundary every node hook shares: parse the job, load the config, log,
    and fail open: a config error or a bug in slurm-ai is logged and gives exit 0,
    so it can never drain the cluster. Only `body`'s own return value can be 1."""
    started = time.time()
    t0 = time.perf_counter()
    job = JobEnv.from_environ(environ)
    node = job.nodename or socket.gethostname().split(".")[0]
    try:
        from slurm_ai.config import load_config

        config = load_config(config_path)
    except ConfigError as exc:
        setup_log(None, hook, job.job_id, node).error("event=config_error error=%s", one_line(exc))
        return 0
    log = setup_log(config, hook, job.job_id, node)
    from slurm_ai.accounting.outbox import valid_job_id

    if not valid_job_id(job.job_id):
        log.error("event=no_job_id value=%s", one_line(environ.get("SLURM_JOB_ID"), 40))
        return 0
    try:
        return body(config, job, node, environ, log, started, t0)
    except Exception as exc:  # fail open: a bug here must never drain the cluster
        log.exception("event=internal_error error=%s", one_line(exc))
        return 0
