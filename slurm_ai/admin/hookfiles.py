"""Pure rendering of what installing the hooks writes: no file is touched here.

- the one-line Prolog/Epilog shims (prolog.d/, epilog.d/): slurmd runs them as
  root with an almost empty environment (no PATH), so every path is absolute
  and the config path is baked in;
- the TaskProlog shim (exports SLURM_AI_CONFIG to tasks, then the topology
  TaskProlog);
- an optional EpilogSlurmctld shim running `slurm-ai deliver` on the controller;
- the config file (TOML) naming spool, log, slurm.conf and mark directory;
- the slurm.conf lines (Prolog=, Epilog=, TaskProlog=, PrologFlags=Alloc).

`slurm-ai install` (issue 8) writes these; tests/hooks_fixture.py uses them for
the local cluster.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIM_NAME = "50-slurm-ai"
SHIM_MODE = 0o755
CONFIG_MODE = 0o644  # users' `slurm-ai mark` reads [accounting] mark_dir


@dataclass(frozen=True)
class HookLayout:
    """Where the pieces go on a node."""

    etc_dir: Path = Path("/etc/slurm")
    config_path: Path = Path("/etc/slurm-ai/config.toml")
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def prolog_dir(self) -> Path:
        return self.etc_dir / "prolog.d"

    @property
    def epilog_dir(self) -> Path:
        return self.etc_dir / "epilog.d"

    @property
    def prolog_shim(self) -> Path:
        return self.prolog_dir / SHIM_NAME

    @property
    def epilog_shim(self) -> Path:
        return self.epilog_dir / SHIM_NAME

    @property
    def taskprolog_shim(self) -> Path:
        return self.etc_dir / "slurm-ai-taskprolog"

    @property
    def epilog_slurmctld_shim(self) -> Path:
        return self.etc_dir / "slurm-ai-deliver"

    @property
    def healthcheck_shim(self) -> Path:
        return self.etc_dir / "slurm-ai-healthcheck"


def render_shim(layout: HookLayout, hook: str) -> str:
    """`#!/bin/sh` + one exec line: python -I (no PYTHON* env, no user site)."""
    if hook not in ("prolog", "epilog", "taskprolog", "healthcheck"):
        raise ValueError(f"unknown hook {hook!r}")
    argv = [layout.python, "-I", "-m", "slurm_ai.hooks", hook, "--config", str(layout.config_path)]
    return "#!/bin/sh\nexec " + shlex.join(argv) + "\n"


def render_taskprolog_shim(layout: HookLayout, chain: str | None = None) -> str:
    """The TaskProlog shim; `chain` runs the site's own TaskProlog first.

    Slurm runs a single TaskProlog and reads `export` lines from its stdout, so the
    site's script prints its lines, then ours follow. Its failure must not stop ours.
    """
    return _chained_shim(layout, "taskprolog", chain)


def render_healthcheck_shim(layout: HookLayout, chain: str | None = None) -> str:
    """Slurm's HealthCheckProgram; `chain` runs the site's own (e.g. /usr/sbin/nhc) first.

    Slurm runs one HealthCheckProgram. Each checker drains and resumes with its
    own reason prefix ("NHC: ...", "slurm_ai: ..."), so they share a node safely.
    """
    return _chained_shim(layout, "healthcheck", chain)


def _chained_shim(layout: HookLayout, hook: str, chain: str | None) -> str:
    if not chain:
        return render_shim(layout, hook)
    if not chain.startswith("/"):
        raise ValueError(f"program to chain must be an absolute path, got {chain!r}")
    return (
        "#!/bin/sh\n"
        + shlex.quote(chain)
        + ' "$@" || true\n'
        + render_shim(layout, hook).split("\n", 1)[1]
    )


def render_deliver_shim(layout: HookLayout, budget_s: float = 20.0) -> str:
    """EpilogSlurmctld: sweep after each job; a run already going means no wait."""
    argv = [
        layout.python, "-I", "-m", "slurm_ai", "--config", str(layout.config_path),
        "deliver", "--wait", "0", "--budget", f"{budget_s:g}",
    ]  # fmt: skip
    return "#!/bin/sh\n" + shlex.join(argv) + " >/dev/null 2>&1\nexit 0\n"


# HealthCheckProgram settings: slurmd runs the program at start-up (before the
# node registers) and then every interval; 0 would disable it altogether.
HEALTH_CHECK_INTERVAL = 3600


def render_health_check_lines(layout: HookLayout, interval: int = HEALTH_CHECK_INTERVAL) -> str:
    """slurm.conf lines for the full check off the job's critical path."""
    return (
        "# slurm-ai full GPU/all-reduce check (rendered by slurm_ai.admin.hookfiles)\n"
        f"HealthCheckProgram={layout.healthcheck_shim}\n"
        f"HealthCheckInterval={interval}\n"
        # IDLE: never measure GPUs a job is using (the program checks that too).
        "HealthCheckNodeState=IDLE\n"
    )


def render_slurm_conf_lines(
    layout: HookLayout, *, epilog_slurmctld: bool = False, prolog_flags: Sequence[str] = ()
) -> str:
    """`prolog_flags`: the site's PrologFlags, kept (Slurm takes the last PrologFlags=
    line: a bare "Alloc" after a site's "Alloc,Contain" would drop Contain)."""
    flags = list(dict.fromkeys([*(f for f in prolog_flags if f), "Alloc"]))
    lines = [
        "# slurm-ai hooks (rendered by slurm_ai.admin.hookfiles)",
        f"Prolog={layout.prolog_dir}/*",
        f"Epilog={layout.epilog_dir}/*",
        f"TaskProlog={layout.taskprolog_shim}",
        # Alloc: the Prolog runs on every node at allocation, not at the first step.
        f"PrologFlags={','.join(flags)}",
    ]
    if epilog_slurmctld:
        lines.append(f"EpilogSlurmctld={layout.epilog_slurmctld_shim}")
    return "\n".join(lines) + "\n"


HOOK_KEYS = ("Prolog", "Epilog", "TaskProlog")
MARK_BEGIN, MARK_END = "# BEGIN slurm-ai", "# END slurm-ai"


def with_hook_block(text: str, begin: str, end: str, lines: Sequence[str]) -> str:
    """An include file's text (the local cluster's hooks.conf) with `lines` as its hooks.

    They go between `begin` and `end` (both starting with MARK_BEGIN / MARK_END), and
    every marked block that sets Prolog=, Epilog= or TaskProlog= goes, this one's own
    earlier copy included: Slurm 24.11 runs every Prolog= and Epilog= line, where
    22.05 keeps the last one (seen on 24.11: two slurm-ai installs' hooks ran for one
    job, and the record of the one without the admin's platform override won the
    AdminComment). Other marked blocks (a HealthCheckProgram) and unmarked lines stay.
    """
    if not (begin.startswith(MARK_BEGIN) and end.startswith(MARK_END)):
        raise ValueError(f"hook block markers must start with {MARK_BEGIN!r} / {MARK_END!r}")
    kept: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines():
        if block is None and line.startswith(MARK_BEGIN):
            block = [line]
        elif block is not None:
            block.append(line)
            if line.startswith(MARK_END):
                if not any(ln.split("=", 1)[0].strip() in HOOK_KEYS for ln in block):
                    kept.extend(block)
                block = None
        else:
            kept.append(line)
    if block is not None:  # a block never closed: kept as it was
        kept.extend(block)
    return "\n".join([*kept, begin, *lines, end]) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(key: str) -> str:
    """A TOML key, quoted unless bare (node hostlists like gpu[01-04] need quotes)."""
    return key if _BARE_KEY.fullmatch(key) else _toml_value(key)


def render_toml(data: Mapping[str, Any], _prefix: str = "") -> str:
    """A small TOML writer for tables of scalars and lists (enough for config)."""
    out: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if scalars and _prefix:
        out.append(f"[{_prefix}]")
    for key, value in scalars.items():
        out.append(f"{toml_key(key)} = {_toml_value(value)}")
    if scalars:
        out.append("")
    for key, value in tables.items():
        out.append(render_toml(value, f"{_prefix}.{toml_key(key)}" if _prefix else toml_key(key)))
    return "\n".join(out)


def default_config(
    *,
    spool_dir: str,
    log_file: str,
    slurm_conf: str | None,
    mark_dir: str,
    health: bool = True,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The config the installer writes; `extra` tables are merged over it."""
    data: dict[str, Any] = {
        "spool": {"dir": spool_dir},
        "log": {"file": log_file},
        "accounting": {"mark_dir": mark_dir},
    }
    if slurm_conf:
        data["slurm"] = {"conf": slurm_conf}
    if not health:
        data["hooks"] = {"steps": ["topology", "agent", "energy"]}
    for name, table in (extra or {}).items():
        data[name] = {**data.get(name, {}), **table}
    return data


def render_config(data: Mapping[str, Any]) -> str:
    return "# slurm-ai configuration (rendered by slurm_ai.admin.hookfiles)\n" + render_toml(data)


def render_all(
    layout: HookLayout, config: Mapping[str, Any], *, epilog_slurmctld: bool = False
) -> dict[Path, tuple[str, int]]:
    """Every file to write, path -> (text, mode). slurm.conf lines are separate."""
    files = {
        layout.prolog_shim: (render_shim(layout, "prolog"), SHIM_MODE),
        layout.epilog_shim: (render_shim(layout, "epilog"), SHIM_MODE),
        layout.taskprolog_shim: (render_shim(layout, "taskprolog"), SHIM_MODE),
        layout.config_path: (render_config(config), CONFIG_MODE),
    }
    if epilog_slurmctld:
        files[layout.epilog_slurmctld_shim] = (render_deliver_shim(layout), SHIM_MODE)
    return files
