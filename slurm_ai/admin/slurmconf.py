"""Read slurm.conf and say which lines slurm-ai needs that are missing or conflicting.

slurm-ai never rewrites slurm.conf (a site's config is the admin's); it reports, for each
setting, what is there, what it needs, and the line to paste. Parsing is pure: `parse_text`
takes the text, `load_slurm_conf` follows `Include` lines (globs, relative to the file).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from slurm_ai.admin.hookfiles import SHIM_NAME

# Our hooks must be able to finish the health check inside this (seconds).
RECOMMENDED_PROLOG_EPILOG_TIMEOUT = 120


@dataclass
class SlurmConf:
    """Top-level settings (keys lower-cased, last one wins) and node lines."""

    settings: dict[str, str] = field(default_factory=dict)
    # Every value of a key in file order: Slurm 24.11 runs every Prolog= and Epilog= line.
    every: dict[str, list[str]] = field(default_factory=dict)
    nodes: list[dict[str, str]] = field(default_factory=list)
    partitions: list[dict[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return self.settings.get(key.lower())

    def get_all(self, key: str) -> list[str]:
        return list(self.every.get(key.lower(), []))


def _pairs(line: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(line, comments=False, posix=True)
    except ValueError:
        words = line.split()
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def parse_text(text: str, conf: SlurmConf | None = None, base_dir: Path | None = None) -> SlurmConf:
    conf = conf or SlurmConf()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.split(None, 1)
        if first[0].lower() == "include" and len(first) == 2:
            if base_dir is None:
                conf.problems.append(f"Include {first[1]} not followed (no base directory)")
                continue
            _include(first[1].strip(), conf, base_dir)
            continue
        pairs = _pairs(line)
        if not pairs:
            conf.problems.append(f"unparsed line: {line[:80]}")
            continue
        head = pairs[0][0].lower()
        if head == "nodename":
            conf.nodes.append({k.lower(): v for k, v in pairs})
        elif head == "partitionname":
            conf.partitions.append({k.lower(): v for k, v in pairs})
        else:
            for key, value in pairs:
                conf.settings[key.lower()] = value
                conf.every.setdefault(key.lower(), []).append(value)
    return conf


def _include(pattern: str, conf: SlurmConf, base_dir: Path) -> None:
    path = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
    matches = sorted(glob.glob(path))
    if not matches:
        conf.problems.append(f"Include {pattern}: no such file")
    for match in matches:
        _load_into(Path(match), conf)


def _load_into(path: Path, conf: SlurmConf) -> None:
    if str(path) in conf.files or len(conf.files) > 64:
        return  # include loops
    conf.files.append(str(path))
    try:
        text = path.read_text()
    except OSError as exc:
        conf.problems.append(f"cannot read {path}: {exc.strerror}")
        return
    parse_text(text, conf, path.parent)


def load_slurm_conf(path: str | Path) -> SlurmConf:
    conf = SlurmConf()
    _load_into(Path(path), conf)
    return conf


@dataclass(frozen=True)
class Finding:
    """One setting: `ok`, `missing` or `conflict`, with the line to paste."""

    status: str
    key: str
    message: str
    paste: str | None = None


def _covers(setting: str | None, script: str) -> bool:
    """Does a Prolog/Epilog value (a path or a glob) run `script`?"""
    if not setting:
        return False
    return any(fnmatch.fnmatch(script, item) for item in setting.split(","))


def check_slurm_conf(
    conf: SlurmConf,
    *,
    prolog_script: str,
    epilog_script: str,
    taskprolog_script: str,
    node_name: str | None = None,
    gpu_count: int = 0,
    healthcheck_script: str | None = None,
) -> list[Finding]:
    findings: list[Finding] = []
    prolog_dir = os.path.dirname(prolog_script)
    epilog_dir = os.path.dirname(epilog_script)
    for key, script, folder in (
        ("Prolog", prolog_script, prolog_dir),
        ("Epilog", epilog_script, epilog_dir),
    ):
        value = conf.get(key)
        if _covers(value, script):
            findings.append(Finding("ok", key, f"{key}={value} runs {script}"))
        elif not value:
            findings.append(Finding("missing", key, f"{key} is not set", f"{key}={folder}/*"))
        else:
            findings.append(
                Finding(
                    "conflict",
                    key,
                    f"{key}={value} does not run {script}; move the site's script into "
                    f"{folder}/ (scripts there run in reverse alphabetical order) and use the glob",
                    f"{key}={folder}/*",
                )
            )
        findings.extend(_other_hook_sets(key, conf.get_all(key), script))
    task = conf.get("TaskProlog")
    findings.append(
        _single_program(
            "TaskProlog",
            task,
            taskprolog_script,
            "TaskProlog is not set",
            f"TaskProlog={task} is the site's; Slurm runs one TaskProlog: set ours and have "
            f"it run the site's first: slurm-ai install --taskprolog-chain {task}",
        )
    )
    flags = [f for f in (conf.get("PrologFlags") or "").split(",") if f]
    if any(f.lower() == "alloc" for f in flags):
        findings.append(Finding("ok", "PrologFlags", f"PrologFlags={','.join(flags)}"))
    else:
        wanted = ",".join([*flags, "Alloc"])
        findings.append(
            Finding(
                "missing",
                "PrologFlags",
                "PrologFlags lacks Alloc: the Prolog must run when the job is allocated, "
                "before its first step, on every node (health check and start counters)",
                f"PrologFlags={wanted}",
            )
        )
    storage = conf.get("AccountingStorageType")
    if storage == "accounting_storage/slurmdbd":
        findings.append(Finding("ok", "AccountingStorageType", storage))
    else:
        findings.append(
            Finding(
                "missing" if not storage else "conflict",
                "AccountingStorageType",
                "job records go into AdminComment in slurmdbd's database: accounting through "
                f"slurmdbd is required (now: {storage or 'unset'})",
                "AccountingStorageType=accounting_storage/slurmdbd",
            )
        )
    timeout = conf.get("PrologEpilogTimeout")
    if timeout and timeout.isdigit() and int(timeout) >= RECOMMENDED_PROLOG_EPILOG_TIMEOUT:
        findings.append(Finding("ok", "PrologEpilogTimeout", f"PrologEpilogTimeout={timeout}"))
    else:
        findings.append(
            Finding(
                "missing" if not timeout else "conflict",
                "PrologEpilogTimeout",
                f"PrologEpilogTimeout={timeout or 'unset'}: set it explicitly, at least "
                f"{RECOMMENDED_PROLOG_EPILOG_TIMEOUT} s, above slurm-ai's health-check timeout",
                f"PrologEpilogTimeout={RECOMMENDED_PROLOG_EPILOG_TIMEOUT}",
            )
        )
    if gpu_count > 0:
        findings.extend(_check_gres(conf, node_name, gpu_count))
    if healthcheck_script:
        findings.extend(_check_health_program(conf, healthcheck_script))
    return findings


def _other_hook_sets(key: str, values: list[str], script: str) -> list[Finding]:
    """Other Prolog=/Epilog= lines that run another slurm-ai install's hooks.

    Slurm 24.11 runs every such line (22.05 keeps the last one): two installs'
    hooks would both run for each job, and both Epilogs write its record, the first one
    staying (seen on 24.11: the record without the admin's platform override won).
    """
    findings = []
    for value in values:
        if _covers(value, script):
            continue
        shims = [
            path
            for item in value.split(",")
            for path in glob.glob(item)
            if os.path.basename(path) == SHIM_NAME and path != script
        ]
        if shims:
            findings.append(
                Finding(
                    "conflict",
                    f"{key} (another slurm-ai)",
                    f"{key}={value} runs another slurm-ai install's hooks ({shims[0]}): Slurm "
                    "24.11 runs every Prolog=/Epilog= line, so both would write the job's "
                    f"record; remove that {key}= line (22.05 runs only the last one)",
                )
            )
    return findings


def _single_program(key: str, value: str | None, ours: str, missing: str, conflict: str) -> Finding:
    """A setting Slurm takes one program for (TaskProlog, HealthCheckProgram)."""
    if value == ours:
        return Finding("ok", key, f"{key}={value}")
    return Finding("missing" if not value else "conflict", key, conflict if value else missing,
                   f"{key}={ours}")  # fmt: skip


def _check_health_program(conf: SlurmConf, script: str) -> list[Finding]:
    """HealthCheckProgram runs the full check off the jobs' critical path."""
    from slurm_ai.admin.hookfiles import HEALTH_CHECK_INTERVAL

    program = conf.get("HealthCheckProgram")
    findings = [
        _single_program(
            "HealthCheckProgram",
            program,
            script,
            "HealthCheckProgram is not set: the full GPU/all-reduce check runs only in "
            "Epilogs of stale nodes, not at boot or while idle",
            f"HealthCheckProgram={program} is the site's; Slurm runs one: set ours and have "
            f"it run the site's first: slurm-ai install --enable-health "
            f"--healthcheck-chain {program}",
        )
    ]
    interval = conf.get("HealthCheckInterval") or "0"
    state = (conf.get("HealthCheckNodeState") or "").upper()
    checks = [
        (
            "HealthCheckInterval",
            interval,
            interval.isdigit() and int(interval) > 0,
            "HealthCheckInterval is 0: slurmd then never runs the HealthCheckProgram, "
            "not even at start-up",
            str(HEALTH_CHECK_INTERVAL),
        ),
        (
            "HealthCheckNodeState",
            state,
            "IDLE" in state.split(",") and "ANY" not in state,
            f"HealthCheckNodeState={state or 'unset (ANY)'}: the check would measure GPUs "
            "jobs are using (slurm-ai skips busy nodes itself, but say IDLE)",
            "IDLE",
        ),
    ]
    for key, value, good, problem, wanted in checks:
        status = "ok" if good else ("missing" if not conf.get(key) else "conflict")
        findings.append(
            Finding(status, key, f"{key}={value}" if good else problem, f"{key}={wanted}")
        )
    return findings


def _check_gres(conf: SlurmConf, node_name: str | None, gpu_count: int) -> list[Finding]:
    findings = []
    types = [t.strip().lower() for t in (conf.get("GresTypes") or "").split(",")]
    if "gpu" in types:
        findings.append(Finding("ok", "GresTypes", f"GresTypes={conf.get('GresTypes')}"))
    else:
        wanted = ",".join([t for t in types if t] + ["gpu"])
        findings.append(
            Finding(
                "missing",
                "GresTypes",
                "GPUs are not a GRES: jobs cannot ask for them",
                f"GresTypes={wanted}",
            )
        )
    node = _node_line(conf, node_name)
    gres = (node or {}).get("gres", "")
    if node is None:
        findings.append(Finding("missing", "NodeName", f"no NodeName line for {node_name}"))
    elif "gpu" in gres:
        findings.append(Finding("ok", "Gres", f"NodeName={node.get('nodename')} Gres={gres}"))
    else:
        findings.append(
            Finding(
                "missing",
                "Gres",
                f"this node has {gpu_count} GPU(s) but its NodeName line has no Gres=gpu",
                f"NodeName={node.get('nodename')} ... Gres=gpu:{gpu_count}",
            )
        )
    return findings


def _node_line(conf: SlurmConf, node_name: str | None) -> dict[str, str] | None:
    if not node_name:
        return None
    from slurm_ai.slurmenv import expand_hostlist

    for node in conf.nodes:
        try:
            names = expand_hostlist(node.get("nodename", ""))
        except ValueError:
            continue
        if node_name in names:
            return node
    return None


def describe_findings(findings: list[Finding]) -> tuple[list[str], list[str]]:
    """(one line per finding, the lines to paste) for install and doctor output."""
    lines = [f"  {f.status:<9} {f.key}: {f.message}" for f in findings]
    paste = list(dict.fromkeys(f.paste for f in findings if f.status != "ok" and f.paste))
    return lines, paste
