"""`slurm-ai install`: plan, write and undo the files that put slurm-ai into Slurm on a node.

Planning is separate from doing: `plan_install` looks at the node and says, per file and
directory, what it would do (create, update, chmod, unchanged, keep); `apply_plan` does
it; `--dry-run` only prints the plan. A manifest (JSON, next to the config) records each
file written with its sha256, so that

- a second run changes nothing (and says so);
- a file the admin edited since is never overwritten (the config never, a shim unless
  `--force`), and `--uninstall` keeps it and says so;
- `--uninstall` removes exactly what install wrote, and the directories it created when
  they are empty (a spool still holding records is kept and reported).

slurm.conf is only read (slurmconf.check_slurm_conf), never written: the lines to paste
are printed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai import __version__
from slurm_ai.admin.hookfiles import (
    CONFIG_MODE,
    SHIM_MODE,
    HookLayout,
    default_config,
    render_deliver_shim,
    render_healthcheck_shim,
    render_shim,
    render_taskprolog_shim,
)
from slurm_ai.admin.settings_ref import render_documented_config
from slurm_ai.errors import SlurmAIError
from slurm_ai.spool import atomic_write_bytes

MANIFEST_NAME = "install-manifest.json"
MANIFEST_VERSION = 1
UNIT_MODE = 0o644
SPANK_CONF_NAME = "slurm-ai.conf"

# Exit codes of `slurm-ai install` (docs/install.md). 4 wins over 3.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SLURM_CONF = 3  # files in place; slurm.conf lacks the printed lines (or unreadable)
EXIT_KEPT = 4  # a file was kept: edited by the admin since install, or not ours


class InstallError(SlurmAIError):
    """The install cannot go on (unsafe directory, unwritable path, bad manifest)."""


@dataclass(frozen=True)
class InstallOptions:
    slurm_etc: Path
    config_path: Path
    spool_dir: Path
    log_file: Path
    mark_dir: Path
    python: str
    slurm_conf: Path | None = None
    epilog_slurmctld: bool = False
    systemd_dir: Path | None = Path("/etc/systemd/system")  # None: no agent unit
    taskprolog_chain: str | None = None
    enable_health: bool = False
    healthcheck_chain: str | None = None  # the site's HealthCheckProgram (e.g. NHC), run first
    settings: Mapping[str, Any] = field(default_factory=dict)
    force: bool = False
    spank_plugin: Path | None = None  # built by the CLI; registered in plugstack.conf.d

    @property
    def plugstack_conf(self) -> Path:
        return self.slurm_etc / "plugstack.conf.d" / SPANK_CONF_NAME

    @property
    def layout(self) -> HookLayout:
        return HookLayout(etc_dir=self.slurm_etc, config_path=self.config_path, python=self.python)

    @property
    def manifest_path(self) -> Path:
        return self.config_path.parent / MANIFEST_NAME


@dataclass
class FileAction:
    path: Path
    kind: str  # shim | config | unit
    action: str  # create | update | chmod | unchanged | keep
    text: str
    mode: int
    old_text: str | None = None
    note: str = ""


@dataclass
class DirAction:
    path: Path
    mode: int
    action: str  # create | chmod | unchanged
    private: bool = False  # must be root-owned and closed to others (spool, log)


@dataclass
class InstallPlan:
    options: InstallOptions
    files: list[FileAction]
    dirs: list[DirAction]
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[FileAction | DirAction]:
        both: list[FileAction | DirAction] = [*self.dirs, *self.files]
        return [a for a in both if a.action not in ("unchanged", "keep")]

    @property
    def kept(self) -> list[FileAction]:
        return [f for f in self.files if f.action == "keep"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, or an empty one; a corrupt manifest is an error (never guessed)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"version": MANIFEST_VERSION, "files": {}, "dirs": {}}
    except (OSError, ValueError) as exc:
        raise InstallError(f"manifest {path} unreadable ({exc}): fix or remove it") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("files"), dict)
        or not isinstance(data.get("dirs"), dict)
    ):
        raise InstallError(f"manifest {path} is not a slurm-ai install manifest")
    return data


def merge_tables(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of config tables (extra wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tables(dict(out[key]), value)
        else:
            out[key] = value
    return out


def config_data(opts: InstallOptions) -> dict[str, Any]:
    data = default_config(
        spool_dir=str(opts.spool_dir),
        log_file=str(opts.log_file),
        slurm_conf=str(opts.slurm_conf) if opts.slurm_conf else None,
        mark_dir=str(opts.mark_dir),
    )
    if opts.enable_health:
        data["health"] = {"enabled": True}
    return merge_tables(data, opts.settings)


def agent_unit(opts: InstallOptions) -> tuple[str | None, str]:
    """(unit text, note): the agent's systemd unit when the agent provides a template."""
    if opts.systemd_dir is None:
        return None, "agent systemd unit: skipped (--no-agent-unit)"
    try:
        from slurm_ai.agent.unit import UNIT_NAME, unit_text
    except ImportError:
        return None, "agent systemd unit: skipped (slurm_ai.agent.unit is not in this build)"
    exe = Path(opts.python).parent / "slurm-ai"
    if not os.access(exe, os.X_OK):
        return None, f"agent systemd unit: skipped (no {exe} next to the python)"
    del UNIT_NAME  # the path is built by unit_path()
    return unit_text(str(exe), str(opts.config_path)), ""


def unit_path(opts: InstallOptions) -> Path:
    from slurm_ai.agent.unit import UNIT_NAME

    assert opts.systemd_dir is not None
    return opts.systemd_dir / UNIT_NAME


def wanted_files(opts: InstallOptions) -> tuple[list[tuple[Path, str, str, int]], list[str]]:
    """(path, kind, text, mode) for every file, and notes."""
    layout = opts.layout
    files = [
        (layout.prolog_shim, "shim", render_shim(layout, "prolog"), SHIM_MODE),
        (layout.epilog_shim, "shim", render_shim(layout, "epilog"), SHIM_MODE),
        (
            layout.taskprolog_shim,
            "shim",
            render_taskprolog_shim(layout, opts.taskprolog_chain),
            SHIM_MODE,
        ),
        (layout.config_path, "config", render_documented_config(config_data(opts)), CONFIG_MODE),
    ]
    if opts.epilog_slurmctld:
        files.append((layout.epilog_slurmctld_shim, "shim", render_deliver_shim(layout), SHIM_MODE))
    if opts.enable_health:
        health_shim = render_healthcheck_shim(layout, opts.healthcheck_chain)
        files.append((layout.healthcheck_shim, "shim", health_shim, SHIM_MODE))
    notes = []
    if opts.spank_plugin is not None:
        from slurm_ai.topology.spank import conf_line

        bind = config_data(opts).get("topology", {}).get("spank_bind", "auto")
        line = conf_line(opts.spank_plugin, opts.spool_dir, str(bind))
        files.append((opts.plugstack_conf, "plugstack", line, UNIT_MODE))
    text, note = agent_unit(opts)
    if text is not None:
        files.append((unit_path(opts), "unit", text, UNIT_MODE))
    if note:
        notes.append(note)
    return files, notes


def wanted_dirs(opts: InstallOptions) -> list[DirAction]:
    layout = opts.layout
    dirs = [
        DirAction(opts.slurm_etc, 0o755, "", False),
        DirAction(layout.prolog_dir, 0o755, ""),
        DirAction(layout.epilog_dir, 0o755, ""),
        DirAction(opts.config_path.parent, 0o755, ""),
        DirAction(opts.spool_dir, 0o700, "", private=True),
        DirAction(opts.log_file.parent, 0o700, "", private=True),
        # Users' `slurm-ai mark` must reach their own job directory inside: 0711.
        DirAction(opts.mark_dir, 0o711, "", private=True),
    ]
    if opts.spank_plugin is not None:
        dirs.append(DirAction(opts.plugstack_conf.parent, 0o755, ""))
    if opts.systemd_dir is not None:
        dirs.append(DirAction(opts.systemd_dir, 0o755, ""))
    unique: dict[Path, DirAction] = {}
    for d in dirs:
        unique.setdefault(d.path, d)
    return list(unique.values())


def _plan_dir(d: DirAction) -> DirAction:
    try:
        info = os.lstat(d.path)
    except FileNotFoundError:
        d.action = "create"
        return d
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InstallError(f"{d.path} exists and is not a plain directory (symlink?): refusing")
    if d.private and os.geteuid() == 0 and info.st_uid != 0:
        raise InstallError(
            f"{d.path} is owned by uid {info.st_uid}, not root: a user could forge records; "
            f"fix with chown root:root {d.path}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if d.private:
        d.action = "unchanged" if mode == d.mode else "chmod"
    else:
        # A shared directory (/etc/slurm) keeps its mode unless others may write into it.
        d.action = "chmod" if mode & (stat.S_IWGRP | stat.S_IWOTH) else "unchanged"
        if d.action == "chmod":
            d.mode = mode & ~(stat.S_IWGRP | stat.S_IWOTH)
    return d


def _plan_file(
    path: Path, kind: str, text: str, mode: int, manifest: Mapping[str, Any], force: bool
) -> FileAction:
    act = FileAction(path=path, kind=kind, action="", text=text, mode=mode)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        act.action = "create"
        return act
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        act.action = "keep"
        act.note = "exists and is not a plain file (symlink?): not touched"
        return act
    try:
        act.old_text = path.read_text(errors="replace")
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror}") from exc
    current = _sha256_file(path)
    if act.old_text == text:
        act.action = "unchanged" if stat.S_IMODE(info.st_mode) == mode else "chmod"
        return act
    entry = manifest.get("files", {}).get(str(path))
    ours_untouched = isinstance(entry, dict) and entry.get("sha256") == current
    if ours_untouched:
        act.action = "update"
        act.note = "written by an earlier install, not edited since"
    elif kind == "config":
        act.action = "keep"
        act.note = (
            "edited since install: kept (never overwritten)"
            if entry
            else "exists and was not written by slurm-ai install: kept (never overwritten)"
        )
    elif force:
        act.action = "update"
        act.note = "--force: replacing a file " + ("edited since install" if entry else "not ours")
    else:
        act.action = "keep"
        act.note = (
            "edited since install: kept (--force replaces it)"
            if entry
            else "exists and was not written by slurm-ai install: kept (--force replaces it)"
        )
    return act


def plan_install(opts: InstallOptions) -> InstallPlan:
    manifest = read_manifest(opts.manifest_path)
    files, notes = wanted_files(opts)
    plan = InstallPlan(
        options=opts,
        files=[_plan_file(p, k, t, m, manifest, opts.force) for p, k, t, m in files],
        dirs=[_plan_dir(d) for d in wanted_dirs(opts)],
        manifest=manifest,
        notes=notes,
    )
    return plan


def apply_plan(plan: InstallPlan) -> None:
    """Do what the plan says, then write the manifest (also when nothing changed)."""
    manifest = plan.manifest
    before = json.dumps({k: v for k, v in manifest.items() if k != "updated_at"}, sort_keys=True)
    dirs_entry: dict[str, Any] = manifest.setdefault("dirs", {})
    files_entry: dict[str, Any] = manifest.setdefault("files", {})
    try:
        for d in plan.dirs:
            if d.action == "create":
                d.path.mkdir(mode=d.mode, parents=True, exist_ok=True)
                os.chmod(d.path, d.mode)  # umask must not widen or narrow it
                dirs_entry[str(d.path)] = {"mode": oct(d.mode), "created": True}
            elif d.action == "chmod":
                os.chmod(d.path, d.mode)
            dirs_entry.setdefault(str(d.path), {"mode": oct(d.mode), "created": False})
        for f in plan.files:
            if f.action in ("create", "update"):
                atomic_write_bytes(f.path, f.text.encode(), mode=f.mode)
            elif f.action == "chmod":
                os.chmod(f.path, f.mode)
            if f.action != "keep":
                files_entry[str(f.path)] = {
                    "sha256": sha256_text(f.text),
                    "mode": oct(f.mode),
                    "kind": f.kind,
                }
    finally:
        manifest["version"] = MANIFEST_VERSION
        manifest["slurm_ai"] = __version__
        after = json.dumps({k: v for k, v in manifest.items() if k != "updated_at"}, sort_keys=True)
        manifest["updated_at"] = int(time.time())
        # Unchanged: not even rewritten, so a second run touches nothing at all.
        if after != before and plan.options.manifest_path.parent.is_dir():
            atomic_write_bytes(
                plan.options.manifest_path,
                (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(),
                mode=0o600,
            )


def describe_file(f: FileAction, *, show_content: bool) -> list[str]:
    """Lines describing one file action: content for new shims, a diff for changes."""
    head = f"  {f.action:<9} {f.path} ({f.mode:04o}, {f.kind})"
    if f.note:
        head += f": {f.note}"
    lines = [head]
    if not show_content:
        return lines
    if f.action == "create":
        if f.kind == "config":
            active = [
                ln for ln in f.text.splitlines() if ln and not ln.startswith(("#", "["))
            ]  # fmt: skip
            lines.append(
                f"            {len(f.text.splitlines())} lines, every setting documented; "
                f"active: {'; '.join(active) or 'none'}"
            )
        else:
            lines += [f"            | {ln}" for ln in f.text.splitlines()]
    elif f.action in ("update", "keep") and f.old_text is not None:
        diff = difflib.unified_diff(
            f.old_text.splitlines(),
            f.text.splitlines(),
            f"{f.path} (now)",
            f"{f.path} (install)",
            lineterm="",
            n=1,
        )
        lines += [f"            {ln}" for ln in diff]
    return lines


def describe_plan(plan: InstallPlan, *, dry_run: bool) -> list[str]:
    lines = []
    for d in plan.dirs:
        if d.action != "unchanged" or dry_run:
            verb = {"create": "mkdir", "chmod": "chmod"}.get(d.action, d.action)
            lines.append(f"  {verb:<9} {d.path}/ ({d.mode:04o})")
    for f in plan.files:
        if f.action != "unchanged" or dry_run:
            lines += describe_file(f, show_content=dry_run)
    lines.append(f"  manifest  {plan.options.manifest_path}")
    return lines


# ---- uninstall


@dataclass
class UninstallResult:
    removed: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    dirs_removed: list[Path] = field(default_factory=list)
    dirs_kept: list[tuple[Path, str]] = field(default_factory=list)
    had_manifest: bool = True

    @property
    def kept_modified(self) -> bool:
        return bool(self.kept)


def uninstall(manifest_path: Path, *, dry_run: bool = False) -> UninstallResult:
    """Remove what the manifest lists: files unchanged since install, then empty dirs."""
    result = UninstallResult()
    if not manifest_path.exists():
        result.had_manifest = False
        return result
    manifest = read_manifest(manifest_path)
    for name, entry in sorted(manifest["files"].items()):
        path = Path(name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            result.missing.append(path)
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            result.kept.append((path, "no longer a plain file"))
            continue
        if _sha256_file(path) != entry.get("sha256"):
            result.kept.append((path, "modified since install"))
            continue
        if not dry_run:
            path.unlink()
        result.removed.append(path)
    if not dry_run:
        manifest_path.unlink()
    created = [Path(p) for p, e in manifest["dirs"].items() if e.get("created")]
    # Deepest first, so a created parent can go once its created children went.
    for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            gone = {*result.removed, *result.dirs_removed} if dry_run else set()
            entries = [e for e in os.listdir(path) if path / e not in gone]
        except FileNotFoundError:
            continue
        except OSError as exc:
            result.dirs_kept.append((path, exc.strerror or "unreadable"))
            continue
        if dry_run and path == manifest_path.parent:
            entries = [e for e in entries if e != manifest_path.name]
        if entries:
            result.dirs_kept.append((path, f"not empty ({len(entries)} entries)"))
            continue
        if not dry_run:
            try:
                path.rmdir()
            except OSError as exc:
                result.dirs_kept.append((path, exc.strerror or "cannot remove"))
                continue
        result.dirs_removed.append(path)
    return result
