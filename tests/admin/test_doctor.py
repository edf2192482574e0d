"""`slurm-ai doctor` against a good and a broken install in a temporary root.

Hook pythons, imports, files and modes are all real; only sacctmgr/sacct answers are
recorded here (the cluster test runs them for real against slurmdbd)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from adminroot import TmpRoot
from click.testing import CliRunner, Result
from core_parts import TOOLCHAIN, TOOLCHAIN_PACKAGES, needs

from slurm_ai.accounting import native
from slurm_ai.admin.doctor import DoctorTarget, check_native_writer
from slurm_ai.cli import main
from slurm_ai.config import Config
from slurm_ai.proc import CommandResult, run_command

SACCT_HELPFORMAT = "Account AdminComment AllocCPUS AllocNodes\nAllocTRES AssocID AveCPU\n"


def slurm_runner(*, dbd_up: bool = True) -> Callable[..., CommandResult]:
    """Recorded Slurm client answers (outputs seen on the local 22.05 cluster); other
    commands (the hooks' python) run for real."""

    def run(argv: list[str], **kw: Any) -> CommandResult:
        if argv[0] == "sacctmgr":
            if not dbd_up:
                err = "sacctmgr: error: Sending PersistInit msg: Connection refused\n"
                return CommandResult(argv, 1, "", err)
            return CommandResult(argv, 0, "t\n", "")
        if argv[0] == "sacct":
            return CommandResult(argv, 0, SACCT_HELPFORMAT, "")
        return run_command(argv, **kw)

    return run


def doctor(root: TmpRoot, *args: str, dbd_up: bool = True) -> Result:
    return CliRunner().invoke(
        main,
        ["doctor", "--config", str(root.config), "--slurm-etc", str(root.etc), *args],
        obj={"doctor_run": slurm_runner(dbd_up=dbd_up)},
    )


def lines(result: Result, status: str) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith(status)]


def test_good_install_passes(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    result = doctor(root)
    assert result.exit_code == 0, result.output
    assert lines(result, "FAIL") == []
    out = result.output
    for name in ("config", "hook-prolog", "hook-epilog", "hook-taskprolog", "hook-python",
                 "spool", "slurmdbd", "admincomment", "slurm.conf Prolog"):  # fmt: skip
        assert any(ln.split()[1] == name.split()[0] for ln in lines(result, "PASS")), name
    # No GPU and no RAPL here: information, not failure.
    assert any("nvml" in ln for ln in lines(result, "INFO"))
    assert "every module parses its section" in out


def test_json_output(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    result = doctor(root, "--json", "--skip", "health-deps")
    checks = json.loads(result.output)
    assert {c["status"] for c in checks} <= {"pass", "warn", "fail", "info"}
    assert not any(c["name"].startswith("import-") for c in checks)


def test_broken_install_fails_with_fixes(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    os.chmod(root.etc / "prolog.d" / "50-slurm-ai", 0o644)  # not executable
    (root.etc / "slurm-ai-taskprolog").unlink()
    epilog = root.etc / "epilog.d" / "50-slurm-ai"
    epilog.write_text("#!/bin/sh\nexec /nonexistent/python3 -I -m slurm_ai.hooks epilog\n")
    os.chmod(root.spool, 0o777)
    root.config.write_text(
        root.config.read_text() + '\n[topology]\nvisible_devices = "sideways"\n'
        if "[topology]\n" not in root.config.read_text()
        else root.config.read_text().replace(
            "[topology]\n", '[topology]\nvisible_devices = "sideways"\nnvml_timeout = 1\n'
        )
    )
    root.write_slurm_conf("AccountingStorageType=accounting_storage/slurmdbd\n")
    result = doctor(root, dbd_up=False)
    assert result.exit_code == 1
    fails = "\n".join(lines(result, "FAIL"))
    assert "is not executable" in fails
    assert "slurm-ai-taskprolog is missing" in fails
    assert "/nonexistent/python3, which is not an executable absolute path" in fails
    assert "writable by others (mode 0777)" in fails
    assert "visible_devices = 'sideways'" in fails
    assert "cannot reach slurmdbd" in fails and "Connection refused" in fails
    assert "TaskProlog is not set" in fails
    warns = "\n".join(lines(result, "WARN"))
    assert "[topology] nvml_timeout is not a setting (did you mean nvml_timeout_s?)" in warns
    out = result.output
    assert f"fix: chmod 755 {root.etc / 'prolog.d' / '50-slurm-ai'}" in out
    assert f"fix: chmod 700 {root.spool}" in out
    assert "fix: add to slurm.conf: PrologFlags=Alloc" in out
    assert "changed since install" in out  # the manifest notices the edited files


def test_missing_config_fails(tmp_root: TmpRoot) -> None:
    result = doctor(tmp_root, "--skip", "health-deps")
    assert result.exit_code == 1
    assert "does not exist" in result.output and "slurm-ai install" in result.output


def test_garbage_config_fails_cleanly(installed: Callable[[], TmpRoot]) -> None:
    root = installed()
    root.config.write_bytes(b"\x00\xff[[[ not toml")
    result = doctor(root, "--skip", "health-deps")
    assert result.exit_code == 1
    assert "not valid TOML" in result.output or "not UTF-8" in result.output
    assert "Traceback" not in result.output


def test_health_enabled_without_backend_fails(
    installed: Callable[[], TmpRoot], tmp_path: Path
) -> None:
    """A hook python that imports slurm_ai but neither torch nor mpi4py."""
    root = installed()
    cfg = root.config.read_text().replace("# enabled = false", "enabled = true")
    root.config.write_text(cfg)
    fake_python = tmp_path / "python-no-torch"
    real = sys.executable  # what install wrote into the shims (--python default)
    # Block both modules with an -I-proof shim: a python whose import of torch fails.
    fake_python.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"import torch"*|*"import mpi4py"*) '
        'echo "ModuleNotFoundError: No module named x" >&2; exit 1;; esac\n'
        f'exec {real} "$@"\n'
    )
    fake_python.chmod(0o755)
    for shim in ("prolog.d/50-slurm-ai", "epilog.d/50-slurm-ai", "slurm-ai-taskprolog"):
        path = root.etc / shim
        path.write_text(path.read_text().replace(real, str(fake_python)))
    result = doctor(root, "--skip", "slurm.conf")
    assert result.exit_code == 1
    assert "neither torch nor mpi4py imports" in result.output
    assert any("import-torch" in ln for ln in lines(result, "WARN"))


def _native_target(backend: str = "auto") -> DoctorTarget:
    data = {"accounting": {"backend": backend}}
    return DoctorTarget(config_path=Path("/nonexistent"), config=Config(path=None, data=data))


def test_native_writer_missing_names_packages_and_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No compiler on PATH (and no sinfo: an unknown Slurm counts as one whose sacctmgr folds).
    monkeypatch.setenv("PATH", str(tmp_path))
    [check] = check_native_writer(_native_target(), native_dir=tmp_path / "native")
    assert (check.status, check.name) == ("warn", "native-writer")
    assert "missing gcc" in check.message and "lower-cases AdminComment" in check.message
    assert check.fix.startswith("apt-get install gcc")
    [check] = check_native_writer(_native_target("slurm-cli"), native_dir=tmp_path / "native")
    assert check.status == "info" and "not used" in check.message


@needs(TOOLCHAIN, not native.missing_build_packages(), TOOLCHAIN_PACKAGES)
def test_native_writer_built_passes(tmp_path: Path) -> None:
    native_dir = tmp_path / "native"
    [check] = check_native_writer(_native_target(), native_dir=native_dir)
    assert check.status == "info" and "not built yet" in check.message
    helper = native.build_native_writer(native_dir).helper
    assert helper is not None
    [check] = check_native_writer(_native_target(), native_dir=native_dir)
    assert check.status == "pass" and str(helper) in check.message


def test_spank_registered_but_not_loaded_by_srun_fails(
    installed: Callable[[], TmpRoot], tmp_path: Path
) -> None:
    """The plugin file is real; srun's help (recorded from the local cluster) decides."""
    root = installed()
    plugin = tmp_path / "slurm_ai_spank.so"
    plugin.write_bytes(b"\x7fELF")
    plugin.chmod(0o755)
    conf = root.etc / "plugstack.conf.d" / "slurm-ai.conf"
    conf.parent.mkdir()
    conf.write_text(f"optional {plugin} spool={root.spool} bind=auto\n")
    base = slurm_runner()
    for help_text, status in (
        ("      --sai-bind=auto|off|verbose\n", "PASS"),
        ("      --cpu-bind=...\n", "FAIL"),
    ):

        def run(argv: list[str], help_text: str = help_text, **kw: Any) -> CommandResult:
            if argv[:2] == ["srun", "--help"]:
                return CommandResult(argv, 0, "Usage: srun [OPTIONS(0)...]\n" + help_text, "")
            return base(argv, **kw)

        result = CliRunner().invoke(
            main,
            ["doctor", "--config", str(root.config), "--slurm-etc", str(root.etc)],
            obj={"doctor_run": run},
        )
        spank = [ln for ln in result.output.splitlines() if ln.split()[1:2] == ["spank"]]
        assert spank and spank[0].startswith(status), result.output
    assert "must include" in result.output and result.exit_code == 1
