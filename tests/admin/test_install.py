"""`slurm-ai install` into a temporary root: dry run, real, twice, edits kept, uninstall."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from adminroot import TmpRoot

from slurm_ai.admin.hookfiles import HookLayout, render_health_check_lines
from slurm_ai.admin.settings_ref import SETTINGS
from slurm_ai.cbuild import find_compiler, find_slurm_include
from slurm_ai.config import load_config
from slurm_ai.topology.spank import CONF_NAME, HEADERS

SHIMS = ("prolog.d/50-slurm-ai", "epilog.d/50-slurm-ai", "slurm-ai-taskprolog")


def test_dry_run_lists_every_file_and_writes_nothing(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf("ClusterName=t\n")
    before = tmp_root.snapshot()
    result = tmp_root.install("--dry-run")
    assert tmp_root.snapshot() == before, "dry run wrote something"
    out = result.output
    assert "dry run: nothing is written" in out
    for shim in SHIMS:
        assert f"create    {tmp_root.etc / shim}" in out
    assert f"create    {tmp_root.config}" in out
    assert "slurm-ai-agent.service" in out
    assert f"mkdir     {tmp_root.spool}/ (0700)" in out
    # The shim content is shown, and the slurm.conf lines are printed ready to paste.
    assert "exec " in out and "-m slurm_ai.hooks prolog --config" in out
    assert f"Prolog={tmp_root.etc}/prolog.d/*" in out.splitlines()
    assert "PrologFlags=Alloc" in out.splitlines()
    assert result.exit_code == 3, out


def test_install_writes_hooks_config_spool(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    for shim in SHIMS:
        path = root.etc / shim
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        text = path.read_text()
        assert text.startswith("#!/bin/sh\nexec ")
        assert f"--config {root.config}" in text
    assert stat.S_IMODE(root.spool.stat().st_mode) == 0o700
    assert stat.S_IMODE((root.root / "log").stat().st_mode) == 0o700
    assert stat.S_IMODE((root.root / "marks").stat().st_mode) == 0o711
    config = load_config(str(root.config))
    assert config.spool_dir == root.spool
    assert config.slurm_conf == str(root.etc / "slurm.conf")
    text = root.config.read_text()
    # Every setting is documented in the file, with its default, commented out.
    for s in SETTINGS:
        assert f"{s.key}" in text, s
    assert "# enabled = false" in text
    manifest = json.loads(root.manifest.read_text())
    assert set(manifest["files"]) >= {str(root.etc / s) for s in SHIMS} | {str(root.config)}


def test_shim_runs_the_hook_with_the_config(installed: Callable[[], TmpRoot]) -> None:
    """The TaskProlog shim really runs: outside a task it exports only the config path."""
    root = installed()
    proc = subprocess.run(
        [str(root.etc / "slurm-ai-taskprolog")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == f"export SLURM_AI_CONFIG={root.config}"


def test_twice_changes_nothing(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    before = {k: v for k, v in root.snapshot().items() if not k.endswith("install-manifest.json")}
    result = root.install("--no-spank")  # as the first time
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.output
    after = {k: v for k, v in root.snapshot().items() if not k.endswith("install-manifest.json")}
    assert after == before


def test_edited_config_is_never_overwritten(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    edited = root.config.read_text().replace("# enabled = false", "enabled = true")
    root.config.write_text(edited)
    # Even an install with other options (that would render another config) keeps it.
    result = root.install("--set", "accounting.max_writes_per_s=5")
    assert result.exit_code == 4, result.output
    assert root.config.read_text() == edited
    assert "edited since install: kept (never overwritten)" in result.output


def test_config_not_written_by_us_is_kept(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    tmp_root.config.parent.mkdir(parents=True)
    tmp_root.config.write_text("[spool]\ndir = '/site/spool'\n")
    result = tmp_root.install()
    assert result.exit_code == 4
    assert tmp_root.config.read_text() == "[spool]\ndir = '/site/spool'\n"
    assert "not written by slurm-ai install" in result.output


def test_untouched_config_is_updated_when_options_change(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    result = root.install("--set", "platform.partitions.vm.class=vm-passthrough")
    assert result.exit_code == 0, result.output
    assert "update" in result.output
    data = tomllib.loads(root.config.read_text())
    assert data["platform"]["partitions"]["vm"]["class"] == "vm-passthrough"


def test_edited_shim_kept_unless_forced(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    shim = root.etc / "epilog.d" / "50-slurm-ai"
    original = shim.read_text()
    shim.write_text(original + "# site tweak\n")
    result = root.install("--dry-run")
    assert "+# site tweak" not in result.output and "-# site tweak" in result.output  # the diff
    result = root.install()
    assert result.exit_code == 4
    assert shim.read_text().endswith("# site tweak\n")
    result = root.install("--force")
    assert result.exit_code == 0, result.output
    assert shim.read_text() == original


def test_foreign_file_at_shim_path_is_kept(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    (tmp_root.etc / "prolog.d").mkdir(parents=True)
    foreign = tmp_root.etc / "prolog.d" / "50-slurm-ai"
    foreign.write_text("#!/bin/sh\nexit 0\n")
    result = tmp_root.install()
    assert result.exit_code == 4
    assert foreign.read_text() == "#!/bin/sh\nexit 0\n"
    assert "not written by slurm-ai install" in result.output


def test_mode_drift_is_repaired(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    os.chmod(root.spool, 0o755)
    os.chmod(root.etc / "slurm-ai-taskprolog", 0o644)
    result = root.install()
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(root.spool.stat().st_mode) == 0o700
    assert stat.S_IMODE((root.etc / "slurm-ai-taskprolog").stat().st_mode) == 0o755


def test_uninstall_removes_exactly_what_was_installed(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    site = root.etc / "prolog.d" / "10-site"
    site.write_text("#!/bin/sh\n")
    result = root.uninstall("--dry-run")
    assert result.exit_code == 0 and (root.etc / SHIMS[0]).exists()
    result = root.uninstall()
    assert result.exit_code == 0, result.output
    for shim in SHIMS:
        assert not (root.etc / shim).exists()
    assert not root.config.exists() and not root.manifest.exists()
    assert not root.spool.exists()  # created by install and empty
    assert site.exists(), "a site's own prolog script must survive"
    assert (root.etc / "slurm.conf").exists()
    assert f"kept      {root.etc / 'prolog.d'}/: not empty" in result.output
    again = root.uninstall()
    assert again.exit_code == 0 and "nothing to uninstall" in again.output


def test_uninstall_keeps_modified_files_and_spool_with_data(
    installed: Callable[[], TmpRoot],
) -> None:
    root = installed()
    root.config.write_text(root.config.read_text() + "# edited\n")
    (root.spool / "outbox").mkdir()
    (root.spool / "outbox" / "7.json").write_text("{}")
    result = root.uninstall()
    assert result.exit_code == 4
    assert root.config.exists() and "modified since install" in result.output
    assert (root.spool / "outbox" / "7.json").exists()
    assert not (root.etc / SHIMS[0]).exists()


def test_slurm_conf_complete_gives_exit_0_and_conflicts_are_printed(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    result = tmp_root.install()
    assert result.exit_code == 0, result.output
    assert "slurm.conf has every line slurm-ai needs" in result.output
    tmp_root.write_slurm_conf(
        "AccountingStorageType=accounting_storage/filetxt\nTaskProlog=/site/tp\n"
        "PrologFlags=Contain\nPrologEpilogTimeout=30\n"
    )
    result = tmp_root.install()
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert "PrologFlags=Contain,Alloc" in lines
    assert "AccountingStorageType=accounting_storage/slurmdbd" in lines
    assert f"TaskProlog={tmp_root.etc}/slurm-ai-taskprolog" in lines
    assert "--taskprolog-chain /site/tp" in result.output


def test_missing_slurm_conf_is_exit_3(tmp_root: TmpRoot) -> None:
    result = tmp_root.install()
    assert result.exit_code == 3
    assert "not found" in result.output


def test_taskprolog_chain_runs_site_script_first(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    site = tmp_root.root / "site-taskprolog"
    site.parent.mkdir(parents=True, exist_ok=True)
    site.write_text("#!/bin/sh\necho export SITE_VAR=1\nexit 3\n")
    site.chmod(0o755)
    result = tmp_root.install("--taskprolog-chain", str(site))
    assert result.exit_code == 0, result.output
    proc = subprocess.run(
        [str(tmp_root.etc / "slurm-ai-taskprolog")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0  # the site's failure does not stop ours
    assert proc.stdout.splitlines()[:2] == [
        "export SITE_VAR=1",
        f"export SLURM_AI_CONFIG={tmp_root.config}",
    ]


@pytest.mark.parametrize("bad", ["novalue", "nosection=1", "a.b=[unclosed"])
def test_bad_set_is_a_usage_error(tmp_root: TmpRoot, bad: str) -> None:
    result = tmp_root.install("--set", bad, "--dry-run")
    if bad == "a.b=[unclosed":  # a bare word is taken as a string: '[unclosed'
        assert result.exit_code in (0, 3), result.output
    else:
        assert result.exit_code == 2, result.output


def test_set_values_are_typed(tmp_root: TmpRoot) -> None:
    conf = tmp_root.write_slurm_conf()
    conf.write_text(conf.read_text() + render_health_check_lines(HookLayout(etc_dir=tmp_root.etc)))
    result = tmp_root.install(
        "--set", "accounting.max_writes_per_s=50", "--set", 'hooks.steps=["topology"]',
        "--set", 'platform.nodes."gpu[01-02]".class=mig', "--enable-health",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = tomllib.loads(tmp_root.config.read_text())
    assert data["accounting"]["max_writes_per_s"] == 50
    assert data["hooks"]["steps"] == ["topology"]
    assert data["health"]["enabled"] is True
    assert data["platform"]["nodes"]["gpu[01-02]"] == {"class": "mig"}


def test_corrupt_manifest_stops_install(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    root.manifest.write_text("{not json")
    result = root.install()
    assert result.exit_code == 1
    assert "manifest" in result.output and "unreadable" in result.output


def test_symlinked_spool_is_refused(tmp_root: TmpRoot, tmp_path: Path) -> None:
    tmp_root.write_slurm_conf()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tmp_root.root.mkdir(parents=True, exist_ok=True)
    tmp_root.spool.symlink_to(elsewhere)
    result = tmp_root.install()
    assert result.exit_code == 1
    assert "not a plain directory" in result.output
    assert not (tmp_root.etc / SHIMS[0]).exists(), "nothing written before the refusal"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_spool_owned_by_a_user_is_refused(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    tmp_root.spool.mkdir(parents=True)
    os.chown(tmp_root.spool, 65534, 65534)
    result = tmp_root.install()
    assert result.exit_code == 1
    assert "owned by uid 65534" in result.output


def test_no_agent_unit(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    result = tmp_root.install("--no-agent-unit")
    assert result.exit_code == 0
    assert "skipped (--no-agent-unit)" in result.output
    assert not (tmp_root.root / "systemd").exists()


@pytest.mark.skipif(
    find_compiler() is None or find_slurm_include(HEADERS) is None,
    reason="needs gcc and libslurm-dev (scripts/setup-deps installs both)",
)
def test_spank_plugin_registered_with_site_default_and_removed_by_uninstall(
    tmp_root: TmpRoot,
) -> None:
    tmp_root.write_slurm_conf()
    result = tmp_root.install("--set", "topology.spank_bind=verbose")
    assert result.exit_code == 0, result.output
    conf = tmp_root.etc / "plugstack.conf.d" / CONF_NAME
    words = conf.read_text().split()
    assert words[0] == "optional" and words[1].endswith("/slurm_ai_spank.so")
    assert words[2:] == [f"spool={tmp_root.spool}", "bind=verbose"]
    assert stat.S_IMODE(os.stat(words[1]).st_mode) == 0o755
    assert tmp_root.uninstall().exit_code == 0
    assert not conf.exists()


def test_no_spank_registers_nothing(tmp_root: TmpRoot) -> None:
    tmp_root.write_slurm_conf()
    assert tmp_root.install("--no-spank").exit_code == 0
    assert not (tmp_root.etc / "plugstack.conf.d").exists()


def test_enable_health_installs_the_health_check_program_and_prints_its_lines(
    tmp_root: TmpRoot,
) -> None:
    conf = tmp_root.write_slurm_conf()
    result = tmp_root.install("--enable-health")
    assert result.exit_code == 3, result.output  # files in place, slurm.conf lacks lines
    shim = tmp_root.etc / "slurm-ai-healthcheck"
    assert shim.read_text().endswith(f"healthcheck --config {tmp_root.config}\n")
    assert shim.stat().st_mode & 0o777 == 0o755
    for line in (
        f"HealthCheckProgram={shim}",
        "HealthCheckInterval=3600",
        "HealthCheckNodeState=IDLE",
    ):
        assert "\n" + line + "\n" in result.output, result.output
    conf.write_text(conf.read_text() + render_health_check_lines(HookLayout(etc_dir=tmp_root.etc)))
    assert tmp_root.install("--enable-health").exit_code == 0


def test_a_site_health_check_program_is_chained_not_replaced(tmp_root: TmpRoot) -> None:
    conf = tmp_root.write_slurm_conf()
    conf.write_text(
        conf.read_text() + "HealthCheckProgram=/usr/sbin/nhc\nHealthCheckInterval=300\n"
    )
    result = tmp_root.install("--enable-health")
    assert result.exit_code == 3
    assert "conflict" in result.output and "--healthcheck-chain /usr/sbin/nhc" in result.output
    result = tmp_root.install("--enable-health", "--healthcheck-chain", "/usr/sbin/nhc")
    lines = (tmp_root.etc / "slurm-ai-healthcheck").read_text().splitlines()
    assert lines[:2] == ["#!/bin/sh", '/usr/sbin/nhc "$@" || true'], lines
    assert lines[2].startswith("exec ") and lines[2].endswith(f"--config {tmp_root.config}")
