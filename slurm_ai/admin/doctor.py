"""`slurm-ai doctor`: check this node's install end to end, one line per check with a fix.

Each check is a function returning `Check`s; none changes anything (the accounting check
reads sacctmgr's view of the caller's admin level, it never modifies a job). Slurm
commands run through an injectable runner so the checks can be tested with recorded
outputs where no cluster is up; the cluster tests run them for real.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slurm_ai.admin.hookfiles import HookLayout
from slurm_ai.admin.install import MANIFEST_NAME, read_manifest
from slurm_ai.admin.settings_ref import unknown_keys
from slurm_ai.admin.slurmconf import check_slurm_conf, load_slurm_conf
from slurm_ai.config import Config, load_config
from slurm_ai.errors import CommandError, ConfigError, ProbeError, SlurmAIError
from slurm_ai.proc import CommandResult, run_command

Runner = Callable[..., CommandResult]

# slurm.conf settings without which the hooks do not run or records go nowhere.
ESSENTIAL_SLURM_CONF = ("Prolog", "Epilog", "TaskProlog", "PrologFlags", "AccountingStorageType")
BACKLOG_WARN_S = 3600.0


@dataclass(frozen=True)
class Check:
    status: str  # pass | warn | fail | info
    name: str
    message: str
    fix: str = ""


@dataclass
class DoctorTarget:
    config_path: Path
    slurm_etc: Path | None = None
    slurm_conf: Path | None = None
    run: Runner = run_command
    # Results of the config check, for the checks after it.
    config: Config | None = None
    notes: list[str] = field(default_factory=list)

    def layout(self) -> HookLayout:
        etc = self.slurm_etc or Path("/etc/slurm")
        return HookLayout(etc_dir=etc, config_path=self.config_path)


# ---- config


def _module_loaders() -> list[tuple[str, Callable[[Config], Any]]]:
    """(section, loader) for every module that owns a section; each raises ConfigError."""

    def accounting(c: Config) -> Any:
        from slurm_ai.accounting.settings import AccountingSettings

        return AccountingSettings.from_config(c)

    def nvml(c: Config) -> Any:
        from slurm_ai.config import nvml_recording

        return nvml_recording(c)

    def health(c: Config) -> Any:
        from slurm_ai.health.settings import HealthSettings

        return HealthSettings.from_config(c)

    def topology(c: Config) -> Any:
        from slurm_ai.topology.settings import load_settings

        return load_settings(c)

    def platform(c: Config) -> Any:
        from slurm_ai.topology.model import Fingerprint
        from slurm_ai.topology.virt import platform_record

        section = c.section("platform")
        parts = section.values.get("partitions", {})
        names = list(parts) if isinstance(parts, Mapping) else []
        for partition in [None, *names]:
            platform_record(Fingerprint(), section, None, partition)
        nodes = section.values.get("nodes", {})
        if isinstance(nodes, Mapping):
            from slurm_ai.slurmenv import expand_hostlist

            for pattern in nodes:
                try:
                    hosts = expand_hostlist(pattern)
                except ValueError as exc:
                    raise ConfigError(f"[platform.nodes] bad hostlist {pattern!r}: {exc}") from exc
                for host in hosts[:1]:
                    platform_record(Fingerprint(), section, host, None)
        return None

    def agent(c: Config) -> Any:
        from slurm_ai.agent.daemon import AgentSettings

        return AgentSettings.from_config(c)

    def energy(c: Config) -> Any:
        from slurm_ai.energy.hook import EnergySettings

        return EnergySettings.from_ctx(SimpleNamespace(config=c))  # type: ignore[arg-type]

    def prices(c: Config) -> Any:
        from slurm_ai.report.prices import load_prices

        return load_prices(c)

    def hooks(c: Config) -> Any:
        from slurm_ai.hooks.runner import step_names

        return step_names(c)

    def core(c: Config) -> Any:
        return (
            c.spool_dir,
            c.log_file,
            c.slurm_conf,
            c.section("slurm").get_str("scontrol", "/usr/bin/scontrol"),
        )

    return [
        ("core", core),
        ("nvml", nvml),
        ("hooks", hooks),
        ("accounting", accounting),
        ("energy", energy),
        ("topology", topology),
        ("platform", platform),
        ("health", health),
        ("agent", agent),
        ("prices", prices),
    ]


def check_config(target: DoctorTarget) -> list[Check]:
    path = target.config_path
    try:
        config = load_config(str(path))
    except ConfigError as exc:
        return [Check("fail", "config", str(exc), "run `slurm-ai install`, or fix the file")]
    target.config = config
    out: list[Check] = []
    bad: list[str] = []
    missing: list[str] = []
    for section, loader in _module_loaders():
        try:
            loader(config)
        except ConfigError as exc:
            bad.append(f"{section}: {exc}")
        except ImportError as exc:
            missing.append(f"{section} ({exc.name})")
        except SlurmAIError as exc:
            bad.append(f"{section}: {exc}")
    if bad:
        out.append(
            Check("fail", "config", f"{path}: " + "; ".join(bad), "fix the named keys")
        )  # fmt: skip
    else:
        out.append(Check("pass", "config", f"{path}: every module parses its section"))
    if missing:
        out.append(
            Check(
                "warn",
                "config",
                "modules not importable, their sections unchecked: " + ", ".join(missing),
                "pip install 'slurm-ai[all]'",
            )
        )
    unknown = unknown_keys(config.data)
    if unknown:
        out.append(
            Check(
                "warn",
                "config-keys",
                "; ".join(unknown),
                "a key no module reads falls back to the default: fix its spelling "
                "(docs/configuration.md)",
            )
        )
    return out


# ---- hooks


def _exec_argv(text: str) -> list[str] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("exec "):
            try:
                return shlex.split(line[5:])
            except ValueError:
                return None
    return None


def _config_arg(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def check_hooks(target: DoctorTarget) -> list[Check]:
    layout = target.layout()
    out: list[Check] = []
    pythons: dict[str, list[str]] = {}
    for name, path in (
        ("prolog", layout.prolog_shim),
        ("epilog", layout.epilog_shim),
        ("taskprolog", layout.taskprolog_shim),
    ):
        check = f"hook-{name}"
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            out.append(Check("fail", check, f"{path} is missing", "run `slurm-ai install`"))
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            out.append(
                Check("fail", check, f"{path} is not a plain file", f"rm {path}; slurm-ai install")
            )
            continue
        mode = stat.S_IMODE(info.st_mode)
        if not mode & stat.S_IXUSR:
            out.append(Check("fail", check, f"{path} is not executable", f"chmod 755 {path}"))
            continue
        if mode & (stat.S_IWGRP | stat.S_IWOTH) or (os.geteuid() == 0 and info.st_uid != 0):
            out.append(
                Check(
                    "fail",
                    check,
                    f"{path} can be changed by others (mode {mode:04o}, uid {info.st_uid}): "
                    "slurmd runs it as root",
                    f"chown root:root {path}; chmod 755 {path}",
                )
            )
            continue
        argv = _exec_argv(path.read_text(errors="replace"))
        if not argv:
            out.append(
                Check("fail", check, f"{path} has no exec line", f"rm {path}; slurm-ai install")
            )
            continue
        python = argv[0]
        if not (os.path.isabs(python) and os.access(python, os.X_OK)):
            out.append(
                Check(
                    "fail",
                    check,
                    f"{path} runs {python}, which is not an executable absolute path",
                    "slurm-ai install --force --python /path/to/python3",
                )
            )
            continue
        conf = _config_arg(argv)
        if conf != str(target.config_path):
            out.append(
                Check(
                    "warn",
                    check,
                    f"{path} reads config {conf}, not {target.config_path}",
                    f"doctor --config {conf}, or reinstall with --config",
                )
            )
            continue
        pythons.setdefault(python, []).append(name)
        out.append(Check("pass", check, f"{path} executable, runs {python}"))
    for python, names in pythons.items():
        try:
            res = target.run(
                [
                    python,
                    "-I",
                    "-c",
                    "import slurm_ai.hooks, slurm_ai; print(slurm_ai.__version__)",
                ],
                timeout=60,
                check=False,
            )
        except CommandError as exc:
            res = CommandResult([python], 1, "", str(exc))
        if res.returncode == 0:
            out.append(
                Check(
                    "pass",
                    "hook-python",
                    f"{python} imports slurm_ai {res.stdout.strip()} ({', '.join(names)})",
                )
            )
        else:
            out.append(
                Check(
                    "fail",
                    "hook-python",
                    f"{python} -I cannot import slurm_ai: {res.stderr.strip()[-200:]}",
                    f"{python} -m pip install slurm-ai (system-wide, not --user)",
                )
            )
    manifest_path = target.config_path.parent / MANIFEST_NAME
    try:
        manifest = read_manifest(manifest_path)
    except SlurmAIError as exc:
        out.append(Check("warn", "manifest", str(exc), f"rm {manifest_path}; slurm-ai install"))
        return out
    if manifest["files"]:
        import hashlib

        changed = []
        for name, entry in manifest["files"].items():
            try:
                digest = hashlib.sha256(Path(name).read_bytes()).hexdigest()
            except OSError:
                changed.append(f"{name} (missing)")
                continue
            if digest != entry.get("sha256"):
                changed.append(name)
        if changed:
            out.append(
                Check(
                    "warn" if all(".toml" in c for c in changed) else "fail",
                    "manifest",
                    "changed since install: " + ", ".join(changed),
                    "`slurm-ai install --dry-run` shows the differences",
                )
            )
        else:
            out.append(
                Check("pass", "manifest", f"{len(manifest['files'])} installed files unchanged")
            )
    return out


# ---- spool


def _private_dir(name: str, path: Path, *, missing: str, readable_ok: bool = False) -> Check:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return Check(
            missing, name, f"{path} does not exist", f"slurm-ai install (or mkdir -m 700 {path})"
        )
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return Check(
            "fail",
            name,
            f"{path} is not a plain directory (symlink?)",
            f"rm {path}; slurm-ai install",
        )
    mode = stat.S_IMODE(info.st_mode)
    if os.geteuid() == 0 and info.st_uid != 0:
        return Check(
            "fail",
            name,
            f"{path} is owned by uid {info.st_uid}, not root",
            f"chown root:root {path}",
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Check(
            "fail",
            name,
            f"{path} is writable by others (mode {mode:04o}): users could forge or delete records",
            f"chmod 700 {path}",
        )
    if mode & 0o066 and not readable_ok:
        return Check(
            "warn", name, f"{path} is readable by others (mode {mode:04o})", f"chmod 700 {path}"
        )
    return Check("pass", name, f"{path} (mode {mode:04o}, root)")


def _spool_mode_check(config: Config) -> Check:
    """Which delivery path this node takes ([accounting] shared_spool), and why."""
    from slurm_ai.accounting.settings import spool_mode

    try:
        mode = spool_mode(config)
    except SlurmAIError as exc:
        return Check(
            "fail", "spool-mode", str(exc), "[accounting] shared_spool: true, false or auto"
        )
    return Check("info", "spool-mode", f"{mode.name}: {mode.why}")


def check_spool(target: DoctorTarget) -> list[Check]:
    config = target.config
    if config is None:
        return [Check("fail", "spool", "config not loaded: spool unknown", "fix the config first")]
    out = [
        _private_dir("spool", config.spool_dir, missing="fail"),
        _private_dir("log-dir", Path(config.log_file).parent, missing="warn"),
    ]
    out.append(_spool_mode_check(config))
    outbox = config.spool_dir / "outbox"
    try:
        entries = [e for e in os.scandir(outbox) if e.name.endswith(".json")]
    except OSError:
        entries = []
    if entries:
        oldest = min(e.stat(follow_symlinks=False).st_mtime for e in entries)
        age = time.time() - oldest
        out.append(
            Check(
                "warn" if age > BACKLOG_WARN_S else "info",
                "deliver-backlog",
                f"{len(entries)} record(s) waiting for delivery, oldest {age / 60:.0f} min",
                "slurm-ai deliver --list (why they wait), then slurm-ai deliver",
            )
        )
    else:
        out.append(Check("pass", "deliver-backlog", "no records waiting for delivery"))
    out.append(_waiting_for_nodes(config))
    out.append(_held_records(config))
    out.append(_spool_space(config.spool_dir))
    return out


# Below this much free space (16 MiB, or a tenth of a smaller filesystem) or this many
# free inodes, a spool write fails with ENOSPC or soon will.
SPOOL_MIN_FREE_BYTES = 16 * 1024 * 1024
SPOOL_MIN_FREE_INODES = 64


def _spool_space(spool_dir: Path) -> Check:
    """Free space on the spool's filesystem: a full spool is where the hooks stop
    writing node records (they are then held in [accounting] hold_dir)."""
    try:
        fs = os.statvfs(spool_dir)
    except OSError as exc:
        return Check("warn", "spool-space", f"cannot stat {spool_dir}: {exc.strerror}")
    free = fs.f_bavail * fs.f_frsize
    total = fs.f_blocks * fs.f_frsize
    inodes = fs.f_favail if fs.f_files else None  # some filesystems count no inodes
    text = f"{spool_dir}: {free / 2**20:.1f} MiB free of {total / 2**20:.1f} MiB"
    if inodes is not None:
        text += f", {inodes} inodes free"
    low = free < min(SPOOL_MIN_FREE_BYTES, total // 10)
    if low or (inodes is not None and inodes < SPOOL_MIN_FREE_INODES):
        return Check(
            "warn",
            "spool-space",
            f"spool filesystem full or nearly (writes fail with ENOSPC): {text}",
            "free space there; meanwhile node records are held in [accounting] hold_dir "
            "(slurm-ai deliver --list) and the next slurm-ai deliver moves them in",
        )
    return Check("pass", "spool-space", text)


def _held_records(config: Config) -> Check:
    """Node records a hook kept in [accounting] hold_dir because the spool refused them."""
    from slurm_ai.accounting.held import held_jobs
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.errors import SlurmAIError

    try:
        settings = AccountingSettings.from_config(config)
    except SlurmAIError:
        settings = AccountingSettings()
    kept = held_jobs(settings.hold_dir)
    if not kept:
        return Check("pass", "held-records", f"nothing held in {settings.hold_dir}")
    now = time.time()
    shown = "; ".join(h.line(now) for h in kept[:5])
    more = f" (+{len(kept) - 5} more)" if len(kept) > 5 else ""
    return Check(
        "warn",
        "held-records",
        f"{len(kept)} job(s) held because the spool was not writable: {shown}{more}",
        f"make {config.spool_dir} writable (read-only or full filesystem?), then slurm-ai deliver",
    )


def _waiting_for_nodes(config: Config) -> Check:
    """Jobs whose Epilogs reported on some nodes only: which nodes are missing, since when."""
    from slurm_ai.accounting.outbox import Spool
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.accounting.waiting import waiting_jobs
    from slurm_ai.errors import SlurmAIError

    try:
        settings = AccountingSettings.from_config(config)
    except SlurmAIError:
        settings = AccountingSettings()
    spool = Spool(settings.delivery_root(config.spool_dir))
    waiting = [w for w in waiting_jobs(spool, settings.partial_after_s) if w.where == "nodes"]
    if not waiting:
        return Check("pass", "waiting-for-nodes", "no job waiting for a node's Epilog")
    now = time.time()
    shown = "; ".join(w.line(now) for w in waiting[:5])
    more = f" (+{len(waiting) - 5} more)" if len(waiting) > 5 else ""
    return Check(
        "warn",
        "waiting-for-nodes",
        f"{len(waiting)} job(s) waiting for nodes: {shown}{more}",
        "a missing node's slurmd may be down; the record lands incomplete after "
        "[accounting] partial_after_s, naming it (slurm-ai deliver --list)",
    )


# ---- hardware


def check_nvml(target: DoctorTarget) -> list[Check]:
    from slurm_ai.nvml import open_nvml, site_recording

    recorded: str | None = None
    if target.config is not None:
        try:
            recorded = target.config.section("energy").get_opt_str("nvml_recorded") or None
        except ConfigError:
            recorded = None
    try:
        with open_nvml(recorded, timeout=5.0) as nv:
            count = int(nv.nvmlDeviceGetCount())
            names = []
            for i in range(count):
                name = nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(i))
                names.append(name.decode() if isinstance(name, bytes) else str(name))
    except ProbeError as exc:
        return [Check("info", "nvml", f"no GPU: NVML not available ({exc})")]
    except Exception as exc:  # an NVML call error on a node that has GPUs
        return [Check("fail", "nvml", f"NVML opened but a call failed: {exc}",
                      "nvidia-smi -q; check the driver")]  # fmt: skip
    source = recorded or site_recording()
    # A recording is not the driver: say so wherever a person looks.
    origin = f" (from the recording {source}, not the driver)" if source else ""
    if count == 0:
        return [Check("info", "nvml", f"NVML works, no GPU on this node{origin}")]
    models = ", ".join(sorted(set(names)))
    return [Check("pass", "nvml", f"{count} GPU(s) readable: {models}{origin}")]


def check_rapl(target: DoctorTarget) -> list[Check]:
    from slurm_ai.sysfs import Sysfs

    root = "/"
    if target.config is not None:
        with contextlib.suppress(ConfigError):
            root = target.config.section("energy").get_str("sysfs_root", "/")
    sysfs = Sysfs(root)
    zones = [d for d in sysfs.listdir("/sys/class/powercap") if d.startswith("intel-rapl:")]
    zones = [z for z in zones if z.count(":") == 1]  # packages, not their subzones
    if not zones:
        return [Check("info", "rapl", "no RAPL on this node (CPU energy is estimated or IPMI)")]
    unreadable = [z for z in zones if sysfs.read_int(f"/sys/class/powercap/{z}/energy_uj") is None]
    if unreadable:
        return [
            Check(
                "warn",
                "rapl",
                f"RAPL zones present but energy_uj unreadable: {', '.join(unreadable)}",
                "the hooks run as root and can read it; check with sudo cat "
                "/sys/class/powercap/intel-rapl:0/energy_uj",
            )
        ]
    return [Check("pass", "rapl", f"{len(zones)} RAPL package(s) readable")]


# ---- Slurm accounting


def _slurm_env(target: DoctorTarget) -> dict[str, str]:
    env = target.config.slurm_env() if target.config is not None else {}
    if target.slurm_conf is not None:
        env["SLURM_CONF"] = str(target.slurm_conf)
    return env


def _run_slurm(target: DoctorTarget, argv: list[str]) -> CommandResult:
    try:
        return target.run(argv, timeout=20, extra_env=_slurm_env(target), check=False)
    except CommandError as exc:
        return CommandResult(argv, 127, "", str(exc))


def check_accounting(target: DoctorTarget) -> list[Check]:
    out: list[Check] = []
    res = _run_slurm(target, ["sacctmgr", "-n", "-P", "show", "cluster", "format=Cluster"])
    if res.returncode != 0:
        return [
            Check(
                "fail",
                "slurmdbd",
                f"sacctmgr cannot reach slurmdbd: {(res.stderr or res.stdout).strip()[-200:]}",
                "start slurmdbd; check AccountingStorageHost/Port in slurm.conf",
            )
        ]
    clusters = [c for c in res.stdout.split() if c]
    out.append(Check("pass", "slurmdbd", f"reachable; clusters: {', '.join(clusters) or 'none'}"))
    fields = _run_slurm(target, ["sacct", "--helpformat"])
    if fields.returncode == 0 and "admincomment" not in fields.stdout.lower():
        out.append(
            Check(
                "fail",
                "admincomment",
                "this sacct has no AdminComment field",
                "Slurm 17.11 or later is needed",
            )
        )
        return out
    user, uid = _user()
    if uid == 0:
        out.append(
            Check("pass", "admincomment", "running as root: slurmdbd lets root set AdminComment")
        )
        return out
    res = _run_slurm(
        target, ["sacctmgr", "-n", "-P", "show", "user", user, "format=User,AdminLevel"]
    )
    level = res.stdout.strip().split("|")[-1] if res.returncode == 0 and res.stdout.strip() else ""
    if level in ("Administrator", "Operator"):
        out.append(Check("pass", "admincomment", f"{user} has AdminLevel {level}"))
    else:
        out.append(
            Check(
                "fail",
                "admincomment",
                f"{user} (uid {uid}) has AdminLevel {level or 'None'}: sacctmgr would refuse "
                "to set AdminComment (the hooks run as root, so this matters for `slurm-ai "
                "deliver` run by hand)",
                f"run as root, or: sacctmgr -i modify user {user} set adminlevel=Admin",
            )
        )
    return out


def check_native_writer(target: DoctorTarget, native_dir: Path | None = None) -> list[Check]:
    """Is the case-preserving AdminComment writer built? If it cannot be: the cost, the fix."""
    from slurm_ai.accounting import native
    from slurm_ai.accounting.backend import sacctmgr_folds_case
    from slurm_ai.accounting.settings import AccountingSettings

    settings = AccountingSettings()
    if target.config is not None:
        with contextlib.suppress(ConfigError):  # the config check reports it
            settings = AccountingSettings.from_config(target.config)
    if settings.backend not in ("auto", "native"):
        return [
            Check("info", "native-writer", f"not used: [accounting] backend = {settings.backend}")
        ]
    helper = native.built_helper(native_dir or native.DEFAULT_NATIVE_DIR)
    if helper is not None:
        return [Check("pass", "native-writer", f"built for this Slurm: {helper}")]
    packages = native.missing_build_packages()
    if not packages:
        return [
            Check(
                "info",
                "native-writer",
                "not built yet for this Slurm: `slurm-ai install` (or the first delivery) "
                "builds it",
            )
        ]
    folds = sacctmgr_folds_case(settings.sacctmgr_folds_case, _slurm_env(target))
    what, fix = native.unavailable_note(f"missing {', '.join(packages)}", folds)
    return [Check("warn" if folds else "info", "native-writer", what, fix)]


def _user() -> tuple[str, int]:
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


# ---- health check dependencies


def check_health_deps(target: DoctorTarget) -> list[Check]:
    python = _hook_python(target)
    enabled, backend = False, "auto"
    if target.config is not None:
        try:
            section = target.config.section("health")
            enabled = section.get_bool("enabled", False)
            backend = section.get_str("backend", "auto")
        except ConfigError:
            pass
    out: list[Check] = []
    found = {}
    for module in ("torch", "mpi4py"):
        try:
            res = target.run([python, "-I", "-c", f"import {module}"], timeout=120, check=False)
            ok = res.returncode == 0
            why = res.stderr.strip().splitlines()[-1:] if not ok else []
        except CommandError as exc:
            ok, why = False, [str(exc)]
        found[module] = ok
        needed = enabled and (
            backend == "auto"
            or (module == "torch" and backend in ("gloo", "nccl"))
            or (module == "mpi4py" and backend == "mpi")
        )
        if ok:
            out.append(Check("pass", f"import-{module}", f"{python} imports {module}"))
        else:
            status = "warn" if needed else "info"
            out.append(
                Check(
                    status,
                    f"import-{module}",
                    f"{python} cannot import {module}: {' '.join(why)[-160:]}"
                    + ("" if enabled else " (health check disabled)"),
                    f"{python} -m pip install {module}",
                )
            )
    if enabled and not any(found.values()):
        out.append(
            Check(
                "fail",
                "health-backend",
                "[health] enabled = true but neither torch nor mpi4py imports: every check "
                "would end as error",
                f"{python} -m pip install torch mpi4py, or set [health] enabled = false",
            )
        )
    return out


def _hook_python(target: DoctorTarget) -> str:
    shim = target.layout().prolog_shim
    try:
        argv = _exec_argv(shim.read_text(errors="replace"))
    except OSError:
        argv = None
    if argv and os.path.isabs(argv[0]):
        return argv[0]
    import sys

    return sys.executable


# ---- SPANK plugin


def check_spank(target: DoctorTarget) -> list[Check]:
    """Registered in plugstack.conf.d, a trusted file, and srun really loads it."""
    from slurm_ai import cbuild
    from slurm_ai.topology.spank import CONF_NAME

    conf = (target.slurm_etc or Path("/etc/slurm")) / "plugstack.conf.d" / CONF_NAME
    try:
        words = conf.read_text(errors="replace").split()
    except FileNotFoundError:
        return [
            Check("info", "spank", f"SPANK plugin not registered ({conf} absent): tasks are "
                  "pinned only where job scripts use `slurm-ai bind --`")
        ]  # fmt: skip
    except OSError as exc:
        return [Check("fail", "spank", f"{conf}: {exc.strerror}", f"rm {conf}; slurm-ai install")]
    plugin = Path(words[1]) if len(words) > 1 else None
    if plugin is None or not cbuild.trusted_file(plugin, executable=False):
        return [
            Check("fail", "spank", f"{conf} names {plugin}, not a root-owned plugin file",
                  "slurm-ai install (rebuilds and registers it)")
        ]  # fmt: skip
    res = _run_slurm(target, ["srun", "--help"])
    if "--sai-bind" not in res.stdout + res.stderr:
        return [
            Check("fail", "spank", f"srun does not load {plugin} (no --sai-bind in srun --help)",
                  "PlugStackConfig in slurm.conf (default /etc/slurm/plugstack.conf) must "
                  f"include {conf.parent}/*.conf")
        ]  # fmt: skip
    return [Check("pass", "spank", f"srun loads {plugin}")]


# ---- slurm.conf


def slurm_conf_path(target: DoctorTarget) -> Path:
    if target.slurm_conf is not None:
        return target.slurm_conf
    if target.config is not None and target.config.slurm_conf:
        return Path(target.config.slurm_conf)
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"])
    return (target.slurm_etc or Path("/etc/slurm")) / "slurm.conf"


def check_slurm_conf_lines(target: DoctorTarget) -> list[Check]:
    path = slurm_conf_path(target)
    if not path.is_file():
        return [Check("fail", "slurm.conf", f"{path} not found", "doctor --slurm-conf PATH")]
    conf = load_slurm_conf(path)
    layout = target.layout()
    findings = check_slurm_conf(
        conf,
        prolog_script=str(layout.prolog_shim),
        epilog_script=str(layout.epilog_shim),
        taskprolog_script=str(layout.taskprolog_shim),
        node_name=_node_name(),
        gpu_count=_gpu_count(target),
    )
    out = []
    for f in findings:
        if f.status == "ok":
            out.append(Check("pass", f"slurm.conf {f.key}", f.message))
        else:
            status = "fail" if f.key in ESSENTIAL_SLURM_CONF else "warn"
            fix = f"add to slurm.conf: {f.paste}" if f.paste else ""
            out.append(Check(status, f"slurm.conf {f.key}", f.message, fix))
    for problem in conf.problems:
        out.append(Check("warn", "slurm.conf", problem))
    return out


def _node_name() -> str:
    import socket

    return socket.gethostname().split(".", 1)[0]


def _gpu_count(target: DoctorTarget) -> int:
    from slurm_ai.nvml import open_nvml

    recorded = None
    if target.config is not None:
        try:
            recorded = target.config.section("energy").get_opt_str("nvml_recorded") or None
        except ConfigError:
            recorded = None
    try:
        with open_nvml(recorded, timeout=5.0) as nv:
            return int(nv.nvmlDeviceGetCount())
    except Exception:
        return 0


CHECKS: list[tuple[str, Callable[[DoctorTarget], list[Check]]]] = [
    ("config", check_config),
    ("hooks", check_hooks),
    ("spool", check_spool),
    ("nvml", check_nvml),
    ("rapl", check_rapl),
    ("accounting", check_accounting),
    ("native-writer", check_native_writer),
    ("health-deps", check_health_deps),
    ("slurm.conf", check_slurm_conf_lines),
    ("spank", check_spank),
]


def run_checks(target: DoctorTarget, skip: Sequence[str] = ()) -> list[Check]:
    results: list[Check] = []
    for name, fn in CHECKS:
        if name in skip:
            continue
        try:
            results.extend(fn(target))
        except Exception as exc:  # a doctor bug must not hide the other checks
            results.append(Check("fail", name, f"check crashed: {type(exc).__name__}: {exc}"))
    return results


def render(results: Sequence[Check]) -> str:
    lines = []
    for r in results:
        message = " ".join(r.message.split())  # one line per check, whatever a tool printed
        lines.append(f"{r.status.upper():<5} {r.name:<22} {message}")
        if r.fix and r.status in ("warn", "fail"):
            lines.append(f"{'':<5} {'':<22} fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "warn", "fail", "info")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def as_json(results: Sequence[Check]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
