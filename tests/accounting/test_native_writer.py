"""The native AdminComment writer (accounting/native.py + native/sai_admincomment.c).

Built here against the installed Slurm headers; cluster tests write through it into the
local cluster's slurmdbd and read back with sacct.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clusterjobs import wait_for
from core_parts import TOOLCHAIN, TOOLCHAIN_PACKAGES, missing, needs
from fakes import FakeBackend

from slurm_ai.accounting import native
from slurm_ai.accounting.backend import SlurmCliBackend, sacctmgr_folds_case, select_backend
from slurm_ai.accounting.deliver import deliver_pending
from slurm_ai.accounting.outbox import Spool
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.errors import AccountingError
from slurm_ai.record import AdminComment, encode_record

LOG = logging.getLogger("test-native")
NO_TOOLCHAIN = native.find_compiler() is None or native.find_slurm_headers() is None
needs_toolchain = needs(TOOLCHAIN, not NO_TOOLCHAIN, TOOLCHAIN_PACKAGES)


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if NO_TOOLCHAIN:
        missing(TOOLCHAIN, TOOLCHAIN_PACKAGES)
    dest = tmp_path_factory.mktemp("native")
    dest.chmod(0o700)
    return native.build_helper(dest)


def _run(helper: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    # A SLURM_CONF that does not exist: input checks come before any Slurm call.
    return subprocess.run(
        [str(helper), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={"SLURM_CONF": "/nonexistent/slurm.conf"},
        check=False,
    )


# -- pure parts ---------------------------------------------------------------


def test_stdin_encoding_is_length_prefixed_hex():
    assert native.encode_stdin("JS1:Ab 'q\"") == "10 4a53313a416220277122\n"
    assert native.encode_stdin("") == "0 \n"
    assert native.encode_stdin("é") == "2 c3a9\n"  # bytes, not characters
    with pytest.raises(AccountingError, match="NUL"):
        native.encode_stdin("a\0b")
    with pytest.raises(AccountingError, match="exceeds"):
        native.encode_stdin("x" * (native.MAX_VALUE_BYTES + 1))


def test_header_version_and_key(tmp_path):
    inc = tmp_path / "include"
    (inc / "slurm").mkdir(parents=True)
    for name in native.HEADERS:
        (inc / "slurm" / name).write_text("/* */\n")
    (inc / "slurm" / "slurm_version.h").write_text("#define SLURM_VERSION_NUMBER 0x180b05\n")
    assert native.header_version(inc) == "24.11.5"
    key = native.build_key(inc)
    assert re.fullmatch(r"24\.11\.5-[0-9a-f]{12}", key)
    (inc / "slurm" / "slurmdb.h").write_text("/* changed */\n")
    assert native.build_key(inc) != key  # new headers, new helper
    (inc / "slurm" / "slurm_version.h").write_text("nothing here\n")
    with pytest.raises(AccountingError, match="SLURM_VERSION_NUMBER"):
        native.header_version(inc)


def test_no_headers_gives_clear_reason_and_none(tmp_path):
    with pytest.raises(AccountingError, match="libslurm-dev"):
        native.build_helper(tmp_path / "cache", include_dirs=[tmp_path])
    built = native.build_native_writer(tmp_path / "cache", include_dirs=[tmp_path])
    assert built.helper is None and "libslurm-dev" in built.reason
    assert native.built_helper(tmp_path / "cache", include_dirs=[tmp_path]) is None


def test_unavailable_note_names_the_packages_and_the_cost(tmp_path, monkeypatch):
    # A node with no compiler on PATH and no headers in the include dirs.
    monkeypatch.setenv("PATH", str(tmp_path))
    assert native.missing_build_packages([tmp_path]) == ["gcc", "libc6-dev", "libslurm-dev"]
    (tmp_path / "stdio.h").write_text("/* libc headers */\n")
    what, fix = native.unavailable_note("no C compiler", True, [tmp_path])
    assert what.startswith("native AdminComment writer unavailable (no C compiler)")
    assert "lower-cases AdminComment" in what and "foreign_case = protect" in what
    assert fix.startswith("apt-get install gcc libslurm-dev ") and "slurm-ai install" in fix
    what, _ = native.unavailable_note("no C compiler", False, [tmp_path])
    assert "keeps case" in what and "nothing is lost" in what


@needs_toolchain
def test_failing_compiler_gives_clear_reason(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(AccountingError, match="building the native writer failed"):
        native.build_helper(cache, compiler="/bin/false")
    assert not list(cache.rglob(native.HELPER_NAME))  # nothing half-built left
    # Remembered: the next Epilogs do not compile again and again...
    with pytest.raises(AccountingError, match="failed earlier, not retried"):
        native.build_helper(cache)
    # ...but the installer (force) retries, and success clears the mark.
    built = native.build_native_writer(cache).helper
    assert built is not None and not (built.parent / native.FAILED_NAME).exists()
    assert native.built_helper(cache) == built


@needs_toolchain
def test_builds_without_path_like_an_epilog(tmp_path):
    # slurmd runs the Epilog with no PATH; gcc then cannot find `ld` on its own.
    code = (
        "import sys; from pathlib import Path; from slurm_ai.accounting import native; "
        "print(native.build_helper(Path(sys.argv[1])))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(tmp_path / "cache")],
        env={},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_file()


@needs_toolchain
def test_unsafe_cache_dir_refused_and_auto_falls_back_to_cli(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    with pytest.raises(AccountingError, match="world-writable"):
        native.build_helper(cache)
    with pytest.raises(AccountingError):
        select_backend("native", {}, 5.0, native_dir=cache)
    backend = select_backend("auto", {}, 5.0, native_dir=cache)
    assert isinstance(backend, SlurmCliBackend) and backend.folds_case
    assert "world-writable" in backend.fallback_reason  # delivery logs it


def test_delivery_logs_why_auto_fell_back_to_the_cli(tmp_path, caplog):
    backend = FakeBackend()
    backend.fallback_reason = "native writer unavailable: no C compiler"
    with caplog.at_level(logging.INFO, logger="test-native"):
        deliver_pending(Spool(tmp_path, LOG), backend, AccountingSettings(), LOG)
    assert "event=backend_fallback backend=fake reason=native writer unavailable" in caplog.text


@needs_toolchain
def test_cached_helper_reused_and_tampered_one_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    first = native.build_helper(cache)
    assert first.parent.name.startswith(native.header_version(native.find_slurm_headers()))
    assert (first.stat().st_mode & 0o777) == 0o700 and (
        first.parent.stat().st_mode & 0o777
    ) == 0o700
    inode = first.stat().st_ino
    assert native.build_helper(cache) == first and first.stat().st_ino == inode
    first.chmod(0o722)  # writable by others: never run it as root
    (cache / "22.05.7-aaaaaaaaaaaa").mkdir()  # built for older headers
    (cache / "not-ours").mkdir()
    again = native.build_helper(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.parent.name, "not-ours"])
    assert again == first and again.stat().st_ino != inode
    assert (again.stat().st_mode & 0o777) == 0o700
    backend = select_backend("native", {}, 5.0, native_dir=cache)
    assert backend.name == "native" and backend.folds_case is False


def test_helper_reports_its_slurm_version(helper):
    out = _run(helper, "--version")
    assert out.returncode == 0
    assert out.stdout.split()[0] == native.header_version(native.find_slurm_headers())


@pytest.mark.parametrize(
    ("args", "stdin", "why"),
    [
        ((), "1 41\n", "no job id"),
        (("12a",), "1 41\n", "positive integers"),
        (("0",), "1 41\n", "positive integers"),
        (("-5",), "1 41\n", "positive integers"),
        (("99999999999",), "1 41\n", "positive integers"),
        (("--cluster", "", "5"), "1 41\n", "empty cluster"),
        (("5",), "", "byte count"),
        (("5",), "JS1:raw text\n", "byte count"),
        (("5",), "3 4142\n", "shorter"),
        (("5",), "2 4g42\n", "not hex"),
        (("5",), "1 41 and more\n", "longer than its byte count"),
        (("5",), "2 4100\n", "NUL"),
        (("5",), "70000 41\n", "65535"),
    ],
)
def test_helper_rejects_bad_input_before_talking_to_slurm(helper, args, stdin, why):
    out = _run(helper, *args, stdin=stdin)
    assert out.returncode == native.EXIT_USAGE, out.stderr
    assert why in out.stderr


def test_backend_refuses_non_numeric_job_id(helper):
    backend = native.NativeBackend(helper, env={}, timeout_s=5.0)
    with pytest.raises(AccountingError, match="plain job id"):
        backend.write_admin_comment("12; rm -rf /", "x")


# -- on the local cluster -----------------------------------------------------


def _finished_job(cluster) -> str:
    proc = cluster.run(["sbatch", "--parsable", "-o", "/dev/null", "-N1", "--wrap", "true"])
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    wait_for(lambda: _job_done(cluster, job), 120, what=f"job {job} end")
    # slurmctld tells slurmdbd about the job asynchronously.
    wait_for(lambda: _admin_comment(cluster, job) is not None, 60, what="job in accounting")
    return job


def _job_done(cluster, job: str) -> bool:
    proc = cluster.run(["squeue", "-h", "-j", job, "-o", "%T"])
    return proc.returncode == 0 and not proc.stdout.strip()


def _admin_comment(cluster, job: str) -> str | None:
    # The exact command of the brief; -P output, the job's only line.
    proc = cluster.run(["sacct", "-X", "-n", "-P", "-j", job, "-o", "AdminComment"])
    if proc.returncode != 0 or not proc.stdout:
        return None
    assert proc.stdout.endswith("\n")
    return proc.stdout[:-1]


def _backend(cluster, helper: Path, timeout_s: float = 20.0) -> native.NativeBackend:
    return native.NativeBackend(
        helper, env={"SLURM_CONF": str(cluster.slurm_conf)}, timeout_s=timeout_s
    )


@pytest.mark.cluster
def test_native_write_keeps_case_byte_identical(slurm_cluster, helper):
    job = _finished_job(slurm_cluster)
    token = encode_record({"v": 1, "job": {"id": job}, "nodes": {}})
    value = f"JS1:AbCdEf== {token}"
    _backend(slurm_cluster, helper).write_admin_comment(job, value)
    assert _admin_comment(slurm_cluster, job) == value
    comment = AdminComment.parse(value)
    assert comment.foreign == "JS1:AbCdEf==" and comment.record()["job"]["id"] == job
    # Quotes, '|' and non-ASCII survive too (sacctmgr would give backticks).
    tricky = "JS1:\"Q\" 'x' a|b Größe sai1:00"
    _backend(slurm_cluster, helper).write_admin_comment(job, tricky)
    assert _admin_comment(slurm_cluster, job) == tricky
    # The same write through sacctmgr, for contrast: case is lost where it folds (22.05;
    # 24.11 keeps it; test_cluster_delivery checks that table against the cluster).
    env = {"SLURM_CONF": str(slurm_cluster.slurm_conf)}
    SlurmCliBackend(env=env).write_admin_comment(job, value)
    folded = value.lower() if sacctmgr_folds_case(None, env) else value
    assert _admin_comment(slurm_cluster, job) == folded
    _backend(slurm_cluster, helper).write_admin_comment(job, "")
    assert _admin_comment(slurm_cluster, job) == ""


@pytest.mark.cluster
def test_native_write_unknown_job_is_a_clear_error(slurm_cluster, helper):
    with pytest.raises(AccountingError, match=r"job 3999999999 not in accounting yet"):
        _backend(slurm_cluster, helper).write_admin_comment("3999999999", "JS1:X")


@pytest.fixture
def conf_with_accounting_port(slurm_cluster, tmp_path) -> Iterator[Callable[[int], dict[str, str]]]:
    """A copy of this instance's slurm.conf whose slurmdbd is at another port."""

    def make(port: int) -> dict[str, str]:
        text = slurm_cluster.slurm_conf.read_text()
        text = re.sub(r"(?m)^AccountingStoragePort=.*$", f"AccountingStoragePort={port}", text)
        conf = tmp_path / "slurm.conf"
        conf.write_text(text)
        return {"SLURM_CONF": str(conf)}

    yield make


@pytest.mark.cluster
def test_native_write_slurmdbd_refusing_is_a_clear_error(helper, conf_with_accounting_port):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    backend = native.NativeBackend(helper, env=conf_with_accounting_port(port), timeout_s=10.0)
    with pytest.raises(AccountingError, match=r"slurmdbd unreachable: .*Connection refused"):
        backend.write_admin_comment("1", "JS1:X")


@pytest.mark.cluster
def test_native_write_slurmdbd_hanging_times_out(helper, conf_with_accounting_port):
    # A slurmdbd that accepts the connection and never answers: without our timeout
    # the helper waits longer than 40 s (seen here); with it, a clear error.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = conf_with_accounting_port(silent.getsockname()[1])
        backend = native.NativeBackend(helper, env=env, timeout_s=3.0)
        with pytest.raises(AccountingError, match=r"timed out after 3s .*slurmdbd not answering"):
            backend.write_admin_comment("1", "JS1:X")


@pytest.mark.cluster
def test_auto_selects_native_on_this_cluster(slurm_cluster, tmp_path):
    if NO_TOOLCHAIN:
        missing(TOOLCHAIN, TOOLCHAIN_PACKAGES)
    cache = tmp_path / "cache"
    backend = select_backend(
        "auto", {"SLURM_CONF": str(slurm_cluster.slurm_conf)}, native_dir=cache
    )
    assert backend.name == "native" and backend.folds_case is False
    rows = backend.read([_finished_job(slurm_cluster)])
    assert len(rows) == 1  # reads are sacct's, like the CLI backend
