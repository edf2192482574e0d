"""Click commands `slurm-ai install` and `slurm-ai doctor` (thin: options in, logic out)."""

from __future__ import annotations

import json
import os
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from slurm_ai import jsontext
from slurm_ai.config import DEFAULT_CONFIG_PATH, DEFAULT_LOG_FILE, DEFAULT_SPOOL_DIR

DEFAULT_MARK_DIR = "/var/spool/slurm-ai-marks"


def _default_slurm_etc() -> str:
    conf = os.environ.get("SLURM_CONF")
    return os.path.dirname(conf) if conf else "/etc/slurm"


def _root_config(ctx: click.Context) -> str | None:
    root = ctx.find_root()
    return (root.obj or {}).get("config_file") if isinstance(root.obj, dict) else None


def parse_setting(text: str) -> dict[str, Any]:
    """`section.key=VALUE` (VALUE in TOML; a bare word is taken as a string) -> nested dict."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or "." not in key:
        raise click.BadParameter(f"{text!r}: expected SECTION.KEY=VALUE", param_hint="--set")
    for candidate in (value, json.dumps(value)):
        try:
            return tomllib.loads(f"{key} = {candidate}")
        except tomllib.TOMLDecodeError:
            continue
    raise click.BadParameter(f"{text!r}: not a TOML key and value", param_hint="--set")


@click.command()
@click.option(
    "--slurm-etc",
    type=click.Path(file_okay=False, path_type=Path),
    default=_default_slurm_etc,
    show_default="dirname of $SLURM_CONF, else /etc/slurm",
    help="Slurm's config directory: prolog.d/, epilog.d/ and the TaskProlog go here.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file to write (default: slurm-ai --config, else {DEFAULT_CONFIG_PATH}).",
)
@click.option(
    "--spool",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_SPOOL_DIR,
    show_default=True,
    help="Spool directory (root 0700); shared by all nodes or node-local.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_LOG_FILE,
    show_default=True,
)
@click.option(
    "--mark-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_MARK_DIR,
    show_default=True,
    help="Where `slurm-ai mark` writes work units (root 0711).",
)
@click.option(
    "--python",
    default=sys.executable,
    show_default="this Python",
    help="Python the hooks exec (must import slurm_ai with -I).",
)
@click.option(
    "--slurm-conf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="slurm.conf to check (default: <slurm-etc>/slurm.conf); also written to [slurm] conf.",
)
@click.option(
    "--epilog-slurmctld",
    is_flag=True,
    help="Also write the EpilogSlurmctld shim running `slurm-ai deliver` (controller).",
)
@click.option(
    "--systemd-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/systemd/system",
    show_default=True,
    help="Where the agent's systemd unit goes.",
)
@click.option("--no-agent-unit", is_flag=True, help="Do not write the agent's systemd unit.")
@click.option(
    "--taskprolog-chain",
    default=None,
    metavar="PATH",
    help="The site's existing TaskProlog: ours runs it first.",
)
@click.option(
    "--enable-health",
    is_flag=True,
    help="Set [health] enabled = true and install the HealthCheckProgram shim.",
)
@click.option(
    "--healthcheck-chain",
    default=None,
    metavar="PATH",
    help="The site's existing HealthCheckProgram (e.g. /usr/sbin/nhc): ours runs it first.",
)
@click.option(
    "--no-native-writer",
    is_flag=True,
    help="Do not build the case-preserving AdminComment writer (then sacctmgr writes).",
)
@click.option(
    "--no-spank",
    is_flag=True,
    help="Do not build and register the SPANK plugin that pins every task (then use bind).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Extra config setting (TOML value), e.g. --set 'platform.partitions.vm.class=vm-passthrough'.",
)
@click.option("--force", is_flag=True, help="Replace shims that were edited or are not ours.")
@click.option("--dry-run", is_flag=True, help="Show every file it would write; write nothing.")
@click.option("--uninstall", is_flag=True, help="Remove exactly what install wrote.")
@click.pass_context
def install(
    ctx: click.Context,
    slurm_etc: Path,
    config_path: Path | None,
    spool: Path,
    log_file: Path,
    mark_dir: Path,
    python: str,
    slurm_conf: Path | None,
    epilog_slurmctld: bool,
    systemd_dir: Path,
    no_agent_unit: bool,
    taskprolog_chain: str | None,
    enable_health: bool,
    healthcheck_chain: str | None,
    no_native_writer: bool,
    no_spank: bool,
    settings: tuple[str, ...],
    force: bool,
    dry_run: bool,
    uninstall: bool,
) -> None:
    """Install the hooks, config, spool and agent unit on this node.

    Never edits slurm.conf: it prints the lines that are missing or conflicting, ready to
    paste. Exit codes: 0 done (or nothing to change) and slurm.conf complete; 1 error;
    2 usage; 3 files in place but slurm.conf needs the printed lines; 4 a file was kept
    because it was edited since install or is not ours (4 wins over 3).
    """
    from slurm_ai.admin import install as inst
    from slurm_ai.errors import SlurmAIError

    config_path = Path(config_path or _root_config(ctx) or DEFAULT_CONFIG_PATH)
    slurm_etc = slurm_etc.absolute()
    try:
        if uninstall:
            ctx.exit(_uninstall(config_path, dry_run))
        extra: dict[str, Any] = {}
        for item in settings:
            extra = inst.merge_tables(extra, parse_setting(item))
        conf_path = (slurm_conf or slurm_etc / "slurm.conf").absolute()
        opts = inst.InstallOptions(
            slurm_etc=slurm_etc,
            config_path=config_path.absolute(),
            spool_dir=spool.absolute(),
            log_file=log_file.absolute(),
            mark_dir=mark_dir.absolute(),
            python=python,
            slurm_conf=conf_path,
            epilog_slurmctld=epilog_slurmctld,
            systemd_dir=None if no_agent_unit else systemd_dir.absolute(),
            taskprolog_chain=taskprolog_chain,
            enable_health=enable_health,
            healthcheck_chain=healthcheck_chain,
            settings=extra,
            force=force,
            spank_plugin=None if no_spank else _build_spank_plugin(dry_run),
        )
        plan = inst.plan_install(opts)
        title = "slurm-ai install (dry run: nothing is written)" if dry_run else "slurm-ai install"
        click.echo(f"{title}: hooks in {slurm_etc}, config {opts.config_path}")
        for line in inst.describe_plan(plan, dry_run=dry_run):
            click.echo(line)
        if not dry_run:
            inst.apply_plan(plan)
            if not no_native_writer:
                _build_native_writer(conf_path)
        changes = plan.changes
        if not changes:
            click.echo(
                f"nothing to change: {len(plan.files)} files and {len(plan.dirs)} directories "
                "already as installed"
            )
        else:
            verb = "would change" if dry_run else "changed"
            click.echo(f"{verb}: {len(changes)} ({_counts(changes)})")
        for note in plan.notes:
            click.echo(f"note: {note}")
        if not dry_run and any(
            f.kind == "unit" and f.action in ("create", "update") for f in plan.files
        ):
            running = Path("/run/systemd/system").is_dir()
            click.echo(
                "note: enable the agent with: systemctl daemon-reload && systemctl enable --now "
                "slurm-ai-agent" + ("" if running else " (systemd is not running on this machine)")
            )
        for f in plan.kept:
            click.echo(f"kept: {f.path}: {f.note}", err=True)
        conf_ok = _report_slurm_conf(opts)
    except SlurmAIError as exc:
        click.echo(f"slurm-ai install: {exc}", err=True)
        ctx.exit(inst.EXIT_ERROR)
    except OSError as exc:
        click.echo(f"slurm-ai install: {exc}", err=True)
        ctx.exit(inst.EXIT_ERROR)
    if plan.kept:
        ctx.exit(inst.EXIT_KEPT)
    ctx.exit(inst.EXIT_OK if conf_ok else inst.EXIT_SLURM_CONF)


def _build_spank_plugin(dry_run: bool) -> Path | None:
    """The SPANK plugin for this node's Slurm (built now; in a dry run, if already built)."""
    from slurm_ai.topology.spank import SpankError, build_plugin

    if dry_run:
        click.echo("note: the SPANK plugin is built by a real install (not in a dry run)")
        return None
    try:
        path = build_plugin()
    except SpankError as exc:
        click.echo(
            f"note: SPANK plugin not installed ({exc}): tasks are pinned only where job "
            "scripts use `slurm-ai bind --`",
            err=True,
        )
        return None
    click.echo(f"SPANK plugin: {path}")
    return path


def _build_native_writer(slurm_conf: Path) -> None:
    """Build the C AdminComment writer now, so no Epilog has to (and say if it cannot)."""
    from slurm_ai.accounting.backend import sacctmgr_folds_case
    from slurm_ai.accounting.native import build_native_writer, unavailable_note

    built = build_native_writer()
    if built.helper is not None:
        click.echo(f"native AdminComment writer: {built.helper}")
        return
    folds = sacctmgr_folds_case(None, {"SLURM_CONF": str(slurm_conf)})
    what, fix = unavailable_note(built.reason, folds)
    click.echo(f"note: {what}")
    click.echo(f"note: fix: {fix}")


def _counts(changes: list[Any]) -> str:
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    return ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))


def _gpu_count() -> int:
    from slurm_ai.nvml import open_nvml

    try:
        with open_nvml(None, timeout=5.0) as nv:
            return int(nv.nvmlDeviceGetCount())
    except Exception:  # no GPU, no driver, no pynvml: not a GPU node
        return 0


def _report_slurm_conf(opts: Any) -> bool:
    from slurm_ai.admin.slurmconf import check_slurm_conf, describe_findings, load_slurm_conf

    path = opts.slurm_conf
    if not path.is_file():
        click.echo(f"slurm.conf: {path} not found; check it with --slurm-conf PATH", err=True)
        return False
    conf = load_slurm_conf(path)
    layout = opts.layout
    findings = check_slurm_conf(
        conf,
        prolog_script=str(layout.prolog_shim),
        epilog_script=str(layout.epilog_shim),
        taskprolog_script=str(layout.taskprolog_shim),
        node_name=socket.gethostname().split(".", 1)[0],
        gpu_count=_gpu_count(),
        healthcheck_script=str(layout.healthcheck_shim) if opts.enable_health else None,
    )
    lines, paste = describe_findings(findings)
    click.echo(f"slurm.conf ({', '.join(conf.files)}): read only, never rewritten")
    for line in lines:
        click.echo(line)
    for problem in conf.problems:
        click.echo(f"  problem   {problem}")
    if opts.epilog_slurmctld and conf.get("EpilogSlurmctld") != str(layout.epilog_slurmctld_shim):
        paste.append(f"EpilogSlurmctld={layout.epilog_slurmctld_shim}")
    if not paste:
        click.echo("slurm.conf has every line slurm-ai needs")
        return True
    click.echo(
        "paste into slurm.conf on every node (replacing the conflicting lines), then "
        "`scontrol reconfigure` (a PrologFlags change may need slurmctld/slurmd restarts):"
    )
    for line in paste:
        click.echo(line)
    return False


def _uninstall(config_path: Path, dry_run: bool) -> int:
    from slurm_ai.admin import install as inst

    manifest_path = config_path.absolute().parent / inst.MANIFEST_NAME
    result = inst.uninstall(manifest_path, dry_run=dry_run)
    prefix = "would remove" if dry_run else "removed"
    if not result.had_manifest:
        click.echo(f"nothing to uninstall: no manifest at {manifest_path}")
        return inst.EXIT_OK
    for path in result.removed:
        click.echo(f"  {prefix}  {path}")
    for path in result.dirs_removed:
        click.echo(f"  {prefix}  {path}/")
    for path in result.missing:
        click.echo(f"  gone      {path} (already removed)")
    for path, why in result.dirs_kept:
        click.echo(f"  kept      {path}/: {why}")
    for path, why in result.kept:
        click.echo(f"  kept      {path}: {why}", err=True)
    click.echo(
        "remove the slurm-ai lines from slurm.conf (Prolog/Epilog globs may stay if other "
        "scripts use them; TaskProlog and EpilogSlurmctld must go), then `scontrol reconfigure`"
    )
    return inst.EXIT_KEPT if result.kept_modified else inst.EXIT_OK


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config to check (default: slurm-ai --config, else {DEFAULT_CONFIG_PATH}).",
)
@click.option(
    "--slurm-etc",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the hooks are (default: dirname of [slurm] conf or $SLURM_CONF, else /etc/slurm).",
)
@click.option(
    "--slurm-conf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="slurm.conf to check (default: [slurm] conf, $SLURM_CONF, <slurm-etc>/slurm.conf).",
)
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(
        [
            "config",
            "hooks",
            "spool",
            "nvml",
            "rapl",
            "accounting",
            "native-writer",
            "health-deps",
            "slurm.conf",
        ]
    ),
    help="Leave a check out (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON list of checks.")
@click.pass_context
def doctor(
    ctx: click.Context,
    config_path: Path | None,
    slurm_etc: Path | None,
    slurm_conf: Path | None,
    skip: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check this node's install end to end: one pass/warn/fail line each, with a fix.

    Exit 0 when nothing fails (warnings allowed), 1 when a check fails.
    """
    from slurm_ai.admin import doctor as doc

    config_path = Path(config_path or _root_config(ctx) or DEFAULT_CONFIG_PATH).absolute()
    obj = ctx.find_root().obj if isinstance(ctx.find_root().obj, dict) else {}
    target = doc.DoctorTarget(
        config_path=config_path,
        slurm_etc=slurm_etc.absolute() if slurm_etc else None,
        slurm_conf=slurm_conf.absolute() if slurm_conf else None,
    )
    if "doctor_run" in obj:  # tests: recorded Slurm command outputs
        target.run = obj["doctor_run"]
    if target.slurm_etc is None:
        # Where the config says slurm.conf is, the hooks were installed beside it.
        target.slurm_etc = _etc_from_config(config_path)
    results = doc.run_checks(target, skip)
    if as_json:
        click.echo(jsontext.dumps(doc.as_json(results), indent=1))
    else:
        click.echo(doc.render(results))
    ctx.exit(1 if any(r.status == "fail" for r in results) else 0)


def _etc_from_config(config_path: Path) -> Path:
    from slurm_ai.config import load_config
    from slurm_ai.errors import ConfigError

    try:
        conf = load_config(str(config_path)).slurm_conf
    except (ConfigError, ValueError):
        conf = None
    return Path(os.path.dirname(conf)) if conf else Path(_default_slurm_etc())
