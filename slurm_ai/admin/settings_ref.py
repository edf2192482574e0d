"""Every configuration setting slurm-ai reads: section, key, default, meaning, owning module.

One table serves three readers: `slurm-ai install` renders the documented config file
from it (each setting as a comment with its default, the install's own values active),
`slurm-ai doctor` warns about keys it does not know (a typo silently falls back to the
default otherwise), and docs/configuration.md lists the same entries (a test compares
both against the keys the modules really read).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slurm_ai.admin.hookfiles import render_toml

UNSET = None  # a setting without a default (optional string)


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    default: Any
    meaning: str
    owner: str
    # "value", or "table": a sub-table per name (partition, node hostlist) whose keys are
    # listed in `subkeys`.
    kind: str = "value"
    subkeys: tuple[str, ...] = ()


def _s(section: str, key: str, default: Any, meaning: str, owner: str) -> Setting:
    return Setting(section, key, default, meaning, owner)


XID_FATAL = [48, 56, 57, 58, 62, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92, 95, 109, 119, 120, 140]

SETTINGS: tuple[Setting, ...] = (
    # core
    _s("spool", "dir", "/var/spool/slurm-ai", "spool for per-job state and records; root 0700, "
       "shared by all nodes or node-local (see [accounting] shared_spool)", "slurm_ai.config"),
    _s("log", "file", "/var/log/slurm-ai/slurm-ai.log", "hook log, one line per event "
       "(0600, its directory 0700)", "slurm_ai.config"),
    _s("slurm", "conf", UNSET, "SLURM_CONF for the Slurm commands the hooks run (slurmd "
       "gives hooks no environment); unset: $SLURM_CONF or Slurm's default", "slurm_ai.config"),
    _s("slurm", "scontrol", "/usr/bin/scontrol", "scontrol used to drain a node",
       "slurm_ai.hooks.prolog"),
    _s("hooks", "steps", ["topology", "health", "agent", "energy"], "Prolog/Epilog steps to "
       "run (unknown names are ignored)", "slurm_ai.hooks.runner"),
    # accounting
    _s("accounting", "backend", "auto", "auto | native | slurm-cli | pyslurm (auto: pyslurm if it matches, else the native C writer, else sacctmgr)", "slurm_ai.accounting"),
    _s("accounting", "timeout_s", 20.0, "limit per sacct/sacctmgr call", "slurm_ai.accounting"),
    _s("accounting", "shared_spool", "auto", "true: one spool filesystem for all nodes (single "
       "writer merges); false: node-local spool: node records go to gather_dir when set "
       "(single writer), else each node delivers its part; auto: a .slurm-ai-shared-spool "
       "marker in the spool or above it on its mount, else the spool's filesystem type "
       "(NFS, Lustre, GPFS, ...: shared) decides",
       "slurm_ai.accounting"),
    _s("accounting", "deliver_inline", True, "the Epilog that completes a job's record "
       "delivers it", "slurm_ai.accounting"),
    _s("accounting", "inline_budget_s", 10.0, "time an Epilog may spend delivering",
       "slurm_ai.accounting"),
    _s("accounting", "batch_size", 100, "jobs read per sacct call", "slurm_ai.accounting"),
    _s("accounting", "max_writes_per_s", 20.0, "sacctmgr writes per second (0: unlimited); "
       "protects slurmdbd when many jobs end at once", "slurm_ai.accounting"),
    _s("accounting", "partial_after_s", 600.0, "deliver a record missing nodes after this",
       "slurm_ai.accounting"),
    _s("accounting", "stale_after_s", 31 * 86400.0, "drop job directories that never got a "
       "node file after this", "slurm_ai.accounting"),
    _s("accounting", "settle_s", 120.0, "node-local spool: read a multi-node record back "
       "after this", "slurm_ai.accounting"),
    _s("accounting", "mark_dir", "/var/spool/slurm-ai-marks", "where `slurm-ai mark` writes "
       "work units (root 0711, one 0700 directory per job owned by its user)",
       "slurm_ai.accounting"),
    _s("accounting", "mark_max_bytes", 4096, "largest marks file read", "slurm_ai.accounting"),
    _s("accounting", "sacctmgr_folds_case", "auto", "does this sacctmgr lower-case "
       "AdminComment? auto: yes before Slurm 24.11 (seen on 22.05.8), no from 24.11 (seen on "
       "24.11.5); or true / false", "slurm_ai.accounting"),
    _s("accounting", "foreign_case", "protect", "protect: never rewrite a job whose "
       "AdminComment holds another tool's mixed-case data; allow: write anyway",
       "slurm_ai.accounting"),
    _s("accounting", "detail_dir", UNSET, "where the per-job detail files of summarised "
       "records are kept (every node record of a job too large for AdminComment, gzip JSON, "
       "root 0600); unset: <spool dir>/detail", "slurm_ai.accounting"),
    _s("accounting", "detail_retention_days", 180.0, "the sweeper removes detail files "
       "older than this (0: keep forever)", "slurm_ai.accounting"),
    _s("accounting", "gather_dir", UNSET, "node-local spools: a directory all nodes share "
       "for their node records only; one writer per job then (calls per job do not grow "
       "with nodes); unset: each node delivers its own part", "slurm_ai.accounting"),
    _s("accounting", "hold_dir", "/run/slurm-ai/held", "where a hook keeps its node record "
       "(or Prolog state) when the spool cannot be written (read-only, full); the next "
       "`slurm-ai deliver` on the node moves it into the spool once writable and delivers it",
       "slurm_ai.accounting"),
    # nvml
    _s("nvml", "recording", UNSET, "an NVML recording (`slurm-ai capture`'s nvml.json) that "
       "answers instead of the driver in every part (topology, health, energy, agent): test "
       "clusters with fake GPUs, demos; `{node}` expands to the node's name; the health check's "
       "all-reduce then runs on CPUs", "slurm_ai.nvml"),
    # energy
    _s("energy", "sysfs_root", "/", "root of /sys for RAPL reads (tests point it elsewhere)",
       "slurm_ai.energy"),
    _s("energy", "nvml_recorded", UNSET, "recorded NVML JSON instead of the real NVML "
       "(tests only)", "slurm_ai.energy"),
    _s("energy", "nvml_timeout_s", 2.0, "limit per NVML call", "slurm_ai.energy"),
    _s("energy", "ipmi", "auto", "node power by IPMI DCMI: auto (when /dev/ipmi* exists) | off | on",
       "slurm_ai.energy"),
    _s("energy", "ipmi_timeout_s", 3.0, "limit per ipmitool call", "slurm_ai.energy"),
    _s("energy", "cpu_tdp_w", 0.0, "CPU package TDP for the estimate when nothing is "
       "measured (0: RAPL's package power limit, else 200 W assumed)", "slurm_ai.energy"),
    _s("energy", "cpu_idle_fraction", 0.3, "share of its TDP an allocated but idle CPU is "
       "taken to draw in the CPU estimate (busy CPU time adds the rest)", "slurm_ai.energy"),
    # topology and platform
    _s("topology", "nvml_timeout_s", 5.0, "limit per NVML call", "slurm_ai.topology"),
    _s("topology", "cache_max_age_s", 3600.0, "refresh of the per-boot fingerprint cache",
       "slurm_ai.topology"),
    _s("topology", "visible_devices", "auto", "auto | index | relative | uuid: how "
       "CUDA_VISIBLE_DEVICES names GPUs", "slurm_ai.topology"),
    _s("topology", "nic_exclude", [], "fnmatch patterns of NICs never chosen",
       "slurm_ai.topology"),
    _s("topology", "own_gpu_only", False, "CUDA_VISIBLE_DEVICES = the rank's GPU(s) only",
       "slurm_ai.topology"),
    _s("topology", "override_user_env", False, "replace NCCL_*/UCX_*/OMP_NUM_THREADS the "
       "user set", "slurm_ai.topology"),
    _s("topology", "spank_bind", "auto", "auto | off | verbose: the SPANK plugin's default "
       "(users choose with srun --sai-bind); written into plugstack.conf.d by install",
       "slurm_ai.topology"),
    *(
        _s("platform", key, UNSET, f"admin override of the detected {key} for every node",
           "slurm_ai.topology.virt")
        for key in ("class", "hypervisor", "vmm", "cloud", "container", "gpu_mode", "nic_mode")
    ),
    Setting("platform", "partitions", UNSET, "per-partition override table "
            "[platform.partitions.NAME] (beats the global one)", "slurm_ai.topology.virt",
            "table", ("class", "hypervisor", "vmm", "cloud", "container", "gpu_mode",
                      "nic_mode")),
    Setting("platform", "nodes", UNSET, 'per-node override table [platform.nodes."HOSTLIST"] '
            "(beats partition and global)", "slurm_ai.topology.virt", "table",
            ("class", "hypervisor", "vmm", "cloud", "container", "gpu_mode", "nic_mode")),
    # health
    _s("health", "enabled", False, "the Prolog runs the node check only when true",
       "slurm_ai.health"),
    _s("health", "when", "background", "background (Prolog: quick GPU checks + the node's "
       "latest full verdict) | every_job (about 5 s per GPU job) | after_boot | interval",
       "slurm_ai.health"),
    _s("health", "max_age_hours", 24.0, "background: a full verdict older than this is stale "
       "(the Epilog refreshes it)", "slurm_ai.health"),
    _s("health", "background_budget_s", 50.0, "limit of the full check in the "
       "HealthCheckProgram and the Epilog (slurmd kills the program at 60 s)", "slurm_ai.health"),
    _s("health", "epilog_refresh", True, "background: the Epilog re-runs a stale or missing "
       "full check on the job's GPUs", "slurm_ai.health"),
    _s("health", "auto_resume", True, "HealthCheckProgram resumes a node it drained "
       "(reason 'slurm_ai: ...') when the check passes", "slurm_ai.health"),
    _s("health", "interval_hours", 24.0, "when = interval: at most once per N hours per node",
       "slurm_ai.health"),
    _s("health", "partitions", [], "only jobs in these partitions (empty: all)",
       "slurm_ai.health"),
    _s("health", "min_gpus", 0, "only jobs with at least this many GPUs on the node",
       "slurm_ai.health"),
    _s("health", "budget_s", 10.0, "hard wall-clock limit of the node check (keep it well "
       "under PrologEpilogTimeout)", "slurm_ai.health"),
    _s("health", "backend", "auto", "auto | mpi | gloo | nccl", "slurm_ai.health"),
    _s("health", "ranks", 0, "node-scope ranks (0: one per GPU, or 2 on CPU)",
       "slurm_ai.health"),
    _s("health", "min_size", "64K", "smallest all-reduce message", "slurm_ai.health"),
    _s("health", "cpu_max_size", "16M", "largest message on CPUs", "slurm_ai.health"),
    _s("health", "gpu_max_size", "256M", "largest message on GPUs", "slurm_ai.health"),
    _s("health", "size_factor", 4, "message size step", "slurm_ai.health"),
    _s("health", "iters", 5, "timed iterations per size", "slurm_ai.health"),
    _s("health", "warmup", 2, "untimed iterations per size", "slurm_ai.health"),
    _s("health", "dtype", "float32", "element type of the all-reduce", "slurm_ai.health"),
    _s("health", "min_busbw_gbps", 0.0, "fixed busbw floor at the largest size (0: none)",
       "slurm_ai.health"),
    _s("health", "max_small_time_us", 0.0, "fixed time ceiling at the smallest size (0: none)",
       "slurm_ai.health"),
    Setting("health", "floors", UNSET, "per-partition fixed floors [health.floors.NAME]",
            "slurm_ai.health", "table", ("min_busbw_gbps", "max_small_time_us")),
    _s("health", "calibrate", True, "also judge against this partition's own history",
       "slurm_ai.health"),
    _s("health", "calib_min_samples", 10, "history needed before calibrated judgement",
       "slurm_ai.health"),
    _s("health", "calib_k", 3.0, "outlier: below median - k x 1.4826 x MAD ...",
       "slurm_ai.health"),
    _s("health", "calib_min_drop", 0.10, "... and more than this fraction below the median",
       "slurm_ai.health"),
    _s("health", "outlier_verdict", "fail", "fail | warn for a calibrated outlier",
       "slurm_ai.health"),
    _s("health", "history_max", 500, "results kept per partition", "slurm_ai.health"),
    _s("health", "gpu_checks", True, "NVML GPU health checks (ECC, XID, remap, throttle, ...)",
       "slurm_ai.health"),
    _s("health", "expected_gpus", 0, "GPUs this node must show (0: what Slurm allocated)",
       "slurm_ai.health"),
    _s("health", "xid_fatal", XID_FATAL, "XIDs that fail the check", "slurm_ai.health"),
    _s("health", "xid_ignore", [13, 31, 43, 45], "XIDs never reported (application faults)",
       "slurm_ai.health"),
    _s("health", "kmsg", "/dev/kmsg", "kernel log read for NVRM Xid lines", "slurm_ai.health"),
    _s("health", "nvlink_error_limit", 100, "NVLink error counter limit", "slurm_ai.health"),
    _s("health", "retired_pages_limit", 60, "retired pages limit", "slurm_ai.health"),
    _s("health", "textfile_dir", "", "node_exporter textfile directory ('': off)",
       "slurm_ai.health"),
    _s("health", "boot_id_file", "/proc/sys/kernel/random/boot_id", "a new boot id restarts "
       "the XID cursor in the kernel log", "slurm_ai.health"),
    _s("health", "mpirun", "mpirun", "mpirun for the mpi backend", "slurm_ai.health"),
    _s("health", "local_bench", "gpu", "GPU-local GEMM + memory bandwidth check: gpu (on "
       "GPU nodes) | always (CPUs too) | off", "slurm_ai.health"),
    _s("health", "bench_gemm_n", 8192, "square GEMM size (bf16 on GPUs, float32 on CPUs)",
       "slurm_ai.health"),
    _s("health", "bench_mem_size", "1G", "device buffer copied for the memory bandwidth",
       "slurm_ai.health"),
    _s("health", "bench_seconds", 2.0, "seconds per GPU-local measurement", "slurm_ai.health"),
    _s("health", "gemm_min_fraction", 0.5, "GEMM floor: this fraction of the GPU model's "
       "published dense bf16 peak", "slurm_ai.health"),
    _s("health", "mem_min_fraction", 0.5, "memory floor: this fraction of the published "
       "bandwidth", "slurm_ai.health"),
    _s("health", "gemm_min_tflops", 0.0, "absolute GEMM floor in TFLOP/s (0: none; the "
       "higher floor applies)", "slurm_ai.health"),
    _s("health", "mem_min_gbps", 0.0, "absolute memory-bandwidth floor in GB/s (0: none)",
       "slurm_ai.health"),
    # agent
    _s("agent", "interval_s", 5.0, "sampling interval (0.05 .. 3600)", "slurm_ai.agent"),
    _s("agent", "store_dir", "/var/lib/slurm-ai/agent/{node}", "sample store ({node}: "
       "short hostname)", "slurm_ai.agent"),
    _s("agent", "max_mb", 256.0, "store size cap", "slurm_ai.agent"),
    _s("agent", "retention_days", 14.0, "samples kept this long", "slurm_ai.agent"),
    _s("agent", "textfile_dir", UNSET, "node_exporter textfile directory (unset: off)",
       "slurm_ai.agent"),
    _s("agent", "listen", UNSET, "HOST:PORT for a Prometheus endpoint (unset: off)",
       "slurm_ai.agent"),
    _s("agent", "nvml", True, "sample GPUs through NVML", "slurm_ai.agent"),
    _s("agent", "nvml_recorded", UNSET, "recorded NVML JSON (tests only)", "slurm_ai.agent"),
    _s("agent", "nvml_timeout_s", 2.0, "limit per NVML call", "slurm_ai.agent"),
    _s("agent", "events", True, "watch NVML events (XIDs)", "slurm_ai.agent"),
    _s("agent", "rapl", True, "sample RAPL package power (where present)", "slurm_ai.agent"),
    _s("agent", "sysfs_root", "/", "root of /sys and /proc reads (tests)", "slurm_ai.agent"),
    # prices
    _s("prices", "currency", "EUR", "currency shown in reports", "slurm_ai.report.prices"),
    _s("prices", "cost_per_kwh", 0.0, "energy price at the meter (unset: costs unknown)",
       "slurm_ai.report.prices"),
    _s("prices", "pue", 1.0, "facility energy / IT energy (>= 1.0)", "slurm_ai.report.prices"),
    _s("prices", "co2_kg_per_kwh", 0.0, "grid CO2 intensity per facility kWh",
       "slurm_ai.report.prices"),
    Setting("prices", "partitions", UNSET, "per-partition prices [prices.partitions.NAME]",
            "slurm_ai.report.prices", "table",
            ("cost_per_kwh", "cost_per_node_hour", "cost_per_gpu_hour")),
    _s("report", "min_jobs", 20, "jobs per partition before the report's decision compares cost "
       "per result (fewer: too few jobs to say); percentiles have their own minimum n",
       "slurm_ai.report.prices"),
)  # fmt: skip

SECTION_TITLES: dict[str, str] = {
    "spool": "Spool (per-job state; root only)",
    "log": "Hook log",
    "slurm": "Slurm commands",
    "hooks": "Prolog/Epilog steps",
    "accounting": "Records into Slurm accounting (docs/accounting.md)",
    "nvml": "NVML's source: the driver, or a recording (docs/localcluster.md)",
    "energy": "Energy sources (docs/accounting.md)",
    "topology": "Topology and affinity (docs/topology.md)",
    "platform": "Platform override: label partitions/nodes (docs/topology.md)",
    "health": "Health check (docs/health.md); off unless enabled",
    "agent": "Node agent (docs/agent.md)",
    "prices": "Prices for reports (docs/report.md)",
    "report": "Report decisions (docs/report.md)",
}


def sections() -> list[str]:
    return list(dict.fromkeys(s.section for s in SETTINGS))


def lookup(section: str, key: str) -> Setting | None:
    for setting in SETTINGS:
        if setting.section == section and setting.key == key:
            return setting
    return None


def unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """Keys in a config that no module reads, each with a suggestion when one is close."""
    problems: list[str] = []
    known_sections = sections()
    for section, table in data.items():
        if section not in known_sections:
            hint = difflib.get_close_matches(section, known_sections, n=1)
            problems.append(
                f"[{section}] is not a slurm-ai section"
                + (f" (did you mean [{hint[0]}]?)" if hint else "")
            )
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{section} must be a table")
            continue
        keys = [s.key for s in SETTINGS if s.section == section]
        for key, value in table.items():
            setting = lookup(section, key)
            if setting is None:
                hint = difflib.get_close_matches(key, keys, n=1)
                problems.append(
                    f"[{section}] {key} is not a setting"
                    + (f" (did you mean {hint[0]}?)" if hint else "")
                )
            elif setting.kind == "table" and isinstance(value, Mapping):
                for name, sub in value.items():
                    if not isinstance(sub, Mapping):
                        problems.append(f"[{section}.{key}] {name} must be a table")
                        continue
                    for subkey in sub:
                        if subkey not in setting.subkeys:
                            problems.append(
                                f"[{section}.{key}.{name}] {subkey} is not a setting "
                                f"(known: {', '.join(setting.subkeys)})"
                            )
    return problems


def _default_text(value: Any) -> str:
    if value is UNSET:
        return "(unset)"
    return render_toml({"x": value}).split("=", 1)[1].strip()


def render_documented_config(data: Mapping[str, Any]) -> str:
    """The config file: every setting as a comment with its default; `data` active.

    Keys and tables in `data` are written as TOML; everything else stays commented, so the
    module defaults (safe ones) apply and an admin sees what can be set right there.
    """
    out = [
        "# slurm-ai configuration, written by `slurm-ai install`.",
        "# Every setting is listed with its default; uncomment to change one.",
        "# `slurm-ai install` never overwrites this file once you have edited it;",
        "# `slurm-ai doctor` checks it (and flags keys no module reads).",
        "# Reference: docs/configuration.md",
        "",
    ]
    for section in [*sections(), *(k for k in data if k not in sections())]:
        table = data.get(section, {})
        table = table if isinstance(table, Mapping) else {}
        title = SECTION_TITLES.get(section, "site additions")
        out.append(f"# --- {title}")
        out.append(f"[{section}]")
        nested: dict[str, Any] = {}
        for setting in (s for s in SETTINGS if s.section == section):
            if setting.kind == "table":
                out.append(f"# [{section}.{setting.key}.NAME]: {setting.meaning}")
                out.append(f"#   keys: {', '.join(setting.subkeys)}")
                if setting.key in table:
                    nested[setting.key] = table[setting.key]
                continue
            out.append(f"# {setting.meaning}")
            if setting.key in table:
                out.append(render_toml({setting.key: table[setting.key]}).strip())
            else:
                out.append(f"# {setting.key} = {_default_text(setting.default)}")
        for key, value in table.items():
            if lookup(section, key) is None:
                if isinstance(value, Mapping):
                    nested[key] = value
                else:
                    out.append(render_toml({key: value}).strip())
        out.append("")
        for key, value in nested.items():
            out.append(render_toml({key: value}, section).rstrip("\n"))
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def render_reference_markdown() -> str:
    """docs/configuration.md: `python -m slurm_ai.admin.settings_ref > docs/configuration.md`."""
    out = [
        "# Configuration reference",
        "",
        "One TOML file, `/etc/slurm-ai/config.toml` unless `--config` or `SLURM_AI_CONFIG` says",
        "otherwise (the hook shims have the path baked in: slurmd gives hooks no environment).",
        "A missing file or key means the default, and the defaults are safe: nothing drains",
        "(the health check is off), nothing is written outside the spool. Each section is",
        "owned by one module, which alone reads it. `slurm-ai install` writes every setting",
        "below into the file as a comment with its default; `slurm-ai doctor` loads each",
        "section through its module and flags keys that no module reads (a typo would",
        "otherwise fall back to the default silently).",
        "",
        "Every numeric setting is a count, a size or a limit: NaN, inf (TOML's `nan`, `inf`,",
        "and `1e400`, which reads as inf), a negative value and an absurd one (past the",
        "setting's ceiling, at most 1e12) are refused with `[section] key: ...` where the",
        "owning module loads its section (`Section.get_float`/`get_int` in slurm_ai/config.py;",
        "tests/test_numbers_checked.py tries each of them on every numeric key below).",
        "",
        "Generated from `slurm_ai/admin/settings_ref.py` (regenerate with",
        "`python -m slurm_ai.admin.settings_ref > docs/configuration.md`); a test checks",
        "that every key a module reads is listed, with the module's own default.",
        "",
    ]
    for section in sections():
        out += [f"## `[{section}]`", "", SECTION_TITLES.get(section, ""), ""]
        out += ["| key | default | meaning | owner |", "|---|---|---|---|"]
        for s in (s for s in SETTINGS if s.section == section):
            default = "(table)" if s.kind == "table" else _default_text(s.default)
            meaning = s.meaning.replace("|", "\\|")
            if s.kind == "table":
                meaning += f"; keys: {', '.join(s.subkeys)}"
            out.append(f"| `{s.key}` | `{default}` | {meaning} | `{s.owner}` |")
        out.append("")
    out += [
        "## Example: the demo's admin choices",
        "",
        "```toml",
        "[platform.partitions.vm]      # label a partition (override wins over detection)",
        'class = "vm-passthrough"',
        "",
        "[prices]",
        "cost_per_kwh = 0.25",
        "pue = 1.3",
        "[prices.partitions.bare]",
        "cost_per_node_hour = 2.0",
        "",
        "[health]",
        "enabled = true",
        "[health.floors.gpu-bare]     # fixed floor for one partition",
        "min_busbw_gbps = 350.0",
        "```",
        "",
        "Set them at install time with `slurm-ai install --set",
        "'platform.partitions.vm.class=vm-passthrough'` (a TOML dotted key and value; quote",
        "hostlists: `--set 'platform.nodes.\"gpu[01-04]\".class=mig'`), or edit the file: install",
        "never overwrites a config you edited.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render_reference_markdown(), end="")
