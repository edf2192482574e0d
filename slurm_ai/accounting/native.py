"""The native AdminComment writer: Slurm's C API instead of sacctmgr's parser.

`sacctmgr -i modify job where jobid=N set AdminComment=V` is the only CLI that
writes a finished job's AdminComment, and on Slurm 22.05 it lowercases V and
turns quotes into backticks. Other tools' content beside our token (jobstats'
`JS1:<base64>`) would be destroyed by any rewrite. The helper
`native/sai_admincomment.c` sends the same modify request through
`slurmdb_job_modify()` and keeps V byte for byte.

It is compiled on the node against the installed <slurm/*.h> (libslurm-dev),
so its struct layouts always match the installed Slurm, and cached root-only
under `DEFAULT_NATIVE_DIR/<slurm version>-<hash>/`. The hash covers the C
source and the Slurm headers: a Slurm or slurm-ai upgrade builds a new helper.
`build_native_writer()` is what `slurm-ai install` (or the first delivery)
calls; it returns None, with the reason logged, where gcc or the headers are
missing or the build fails, and `backend = "auto"` then uses the CLI.

Reads stay with `sacct` (it returns AdminComment unchanged).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from slurm_ai import cbuild
from slurm_ai import spool as spoolmod
from slurm_ai.accounting.backend import JobRow, SlurmCliBackend
from slurm_ai.cbuild import DEFAULT_INCLUDE_DIRS, find_compiler
from slurm_ai.errors import AccountingError, CommandError, CommandTimeout, SpoolError
from slurm_ai.proc import run_command

DEFAULT_NATIVE_DIR = Path("/var/lib/slurm-ai/native")
HELPER_NAME = "sai_admincomment"
SOURCE_NAME = "sai_admincomment.c"
HEADERS = ("slurm_version.h", "slurm.h", "slurmdb.h", "slurm_errno.h")
MAX_VALUE_BYTES = 65535  # the helper's (and MySQL TEXT's) limit
FAILED_NAME = "build-failed.txt"
RETRY_FAILED_S = 3600.0

# Exit codes of the helper (see the C source).
EXIT_USAGE, EXIT_CONNECT, EXIT_NOTHING, EXIT_REQUEST, EXIT_COMMIT = 2, 3, 4, 5, 6

_LOG = logging.getLogger("slurm_ai.accounting.native")
_KEY = re.compile(r"^\d+\.\d+\.\d+-[0-9a-f]{12}$")


def source_text() -> bytes:
    return (resources.files("slurm_ai.accounting") / "native" / SOURCE_NAME).read_bytes()


def find_slurm_headers(include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS) -> Path | None:
    """The include directory holding slurm/slurmdb.h and friends, if any."""
    return cbuild.find_slurm_include(HEADERS, include_dirs)


def header_version(include_dir: Path) -> str:
    """'22.05.8' from <slurm/slurm_version.h>'s SLURM_VERSION_NUMBER."""
    try:
        return cbuild.header_version(include_dir)
    except ValueError as exc:
        raise AccountingError(str(exc)) from exc


def build_key(include_dir: Path) -> str:
    """Cache key: Slurm version + hash of the source and the headers it compiles against."""
    digest = hashlib.sha256(source_text())
    for name in HEADERS:
        digest.update((include_dir / "slurm" / name).read_bytes())
    return f"{header_version(include_dir)}-{digest.hexdigest()[:12]}"


def build_helper(
    dest_dir: Path = DEFAULT_NATIVE_DIR,
    *,
    include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS,
    env: Mapping[str, str] | None = None,
    compiler: str | None = None,
    force: bool = False,
) -> Path:
    """The helper for the installed Slurm, compiled now if not cached. Raises AccountingError.

    A failed build is remembered for an hour (so that every Epilog does not
    retry it); `force` retries at once.
    """
    include_dir = find_slurm_headers(include_dirs)
    if include_dir is None:
        raise AccountingError(
            "Slurm headers not found (slurm/slurmdb.h): install libslurm-dev (Debian) "
            "or slurm-devel (RPM)"
        )
    try:
        key = build_key(include_dir)
    except OSError as exc:
        raise AccountingError(f"cannot read the Slurm headers: {exc}") from exc
    try:
        spoolmod.ensure_private_dir(dest_dir)
        build_dir = spoolmod.ensure_private_dir(dest_dir / key)
    except SpoolError as exc:
        raise AccountingError(f"native writer cache: {exc}") from exc
    helper = build_dir / HELPER_NAME
    version = key.split("-")[0]
    if cbuild.trusted_file(helper):
        _self_test(helper, version, env)  # a few ms: libslurm still loads
        return helper
    cc = compiler or find_compiler()
    if cc is None:
        raise AccountingError("no C compiler (cc/gcc/clang) to build the native writer")
    failed = _earlier_failure(build_dir)
    if failed and not force:
        raise AccountingError(
            f"native writer build failed earlier, not retried for an hour: {failed}"
        )
    try:
        _compile(build_dir, helper, cc, include_dir, version, env)
    except AccountingError as exc:
        with contextlib.suppress(SpoolError):
            spoolmod.atomic_write_bytes(build_dir / FAILED_NAME, str(exc).encode()[:2000])
        raise
    with contextlib.suppress(OSError):
        os.unlink(build_dir / FAILED_NAME)
    _prune_old_builds(dest_dir, keep=key)
    _LOG.info("event=native_writer_built path=%s", helper)
    return helper


def _prune_old_builds(dest_dir: Path, keep: str) -> None:
    """Drop helpers built for earlier Slurm headers or sources (node-local cache)."""
    for entry in os.scandir(dest_dir):
        if entry.name != keep and _KEY.match(entry.name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def _earlier_failure(build_dir: Path) -> str:
    """The reason of a failed build less than RETRY_FAILED_S ago, else ''."""
    path = build_dir / FAILED_NAME
    try:
        if time.time() - os.lstat(path).st_mtime > RETRY_FAILED_S:
            return ""
        return spoolmod.read_bytes_nofollow(path, max_bytes=4096).decode(errors="replace")
    except (OSError, SpoolError):
        return ""


def _compile(
    build_dir: Path,
    helper: Path,
    cc: str,
    include_dir: Path,
    version: str,
    env: Mapping[str, str] | None,
) -> None:
    mismatch = cbuild.headers_match_slurm(include_dir, env)
    if mismatch:
        raise AccountingError(mismatch)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{HELPER_NAME}.", dir=build_dir)
    os.close(fd)
    src = build_dir / SOURCE_NAME
    try:
        spoolmod.atomic_write_bytes(src, source_text())
        args = [f"-I{include_dir}", "-o", tmp_name, str(src), *cbuild.link_flags(include_dir)]
        try:
            cbuild.compile_c(cc, [*args, "-lslurm"], env)
        except CommandError as exc:
            raise AccountingError(f"building the native writer failed: {exc}") from exc
        os.chmod(tmp_name, 0o700)
        _self_test(Path(tmp_name), version, env)
        os.replace(tmp_name, helper)
    except (OSError, SpoolError) as exc:
        raise AccountingError(f"building the native writer failed: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)


def _self_test(helper: Path, expected: str, env: Mapping[str, str] | None) -> None:
    """The helper loads libslurm and reports the release it was built for."""
    try:
        out = run_command([str(helper), "--version"], timeout=10, extra_env=env).stdout
    except CommandError as exc:
        raise AccountingError(f"native writer does not run: {exc}") from exc
    if out.split()[:1] != [expected]:
        raise AccountingError(f"native writer reports {out.strip()!r}, expected {expected}")


@dataclass(frozen=True)
class NativeBuild:
    """What `slurm-ai install` got: the helper, or why there is none."""

    helper: Path | None
    reason: str = ""


def build_native_writer(
    dest_dir: Path = DEFAULT_NATIVE_DIR,
    *,
    include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS,
    env: Mapping[str, str] | None = None,
) -> NativeBuild:
    """For `slurm-ai install`: build (or find) the helper; the reason (also logged) if not."""
    try:
        return NativeBuild(build_helper(dest_dir, include_dirs=include_dirs, env=env, force=True))
    except AccountingError as exc:
        reason = " ".join(str(exc).split())
        _LOG.warning("event=native_writer_unavailable reason=%s", reason)
        return NativeBuild(None, reason)


def built_helper(
    dest_dir: Path = DEFAULT_NATIVE_DIR, include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS
) -> Path | None:
    """The helper already built for the installed Slurm headers, without building one."""
    include_dir = find_slurm_headers(include_dirs)
    if include_dir is None:
        return None
    try:
        helper = dest_dir / build_key(include_dir) / HELPER_NAME
    except (OSError, AccountingError):
        return None
    return helper if cbuild.trusted_file(helper) else None


# The Debian packages a build needs, each with how to tell it is there (RPM names differ:
# gcc, glibc-devel, slurm-devel).
def missing_build_packages(include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS) -> list[str]:
    present = {
        "gcc": find_compiler() is not None,
        "libc6-dev": any((base / "stdio.h").is_file() for base in include_dirs),
        "libslurm-dev": find_slurm_headers(include_dirs) is not None,
    }
    return [package for package, ok in present.items() if not ok]


def unavailable_note(
    reason: str, sacctmgr_folds_case: bool, include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS
) -> tuple[str, str]:
    """(what it costs, how to fix it) when the native writer cannot be used on this node."""
    if sacctmgr_folds_case:
        cost = (
            "records go through sacctmgr, which lower-cases AdminComment on this Slurm (before "
            "24.11): a job whose AdminComment holds another tool's mixed-case content (jobstats' "
            "JS1:) gets no slurm-ai record ([accounting] foreign_case = protect)"
        )
    else:
        cost = (
            "records go through sacctmgr, which keeps case on this Slurm (24.11+): nothing is "
            "lost, one sacctmgr process per write"
        )
    packages = missing_build_packages(include_dirs)
    if packages:
        fix = (
            f"apt-get install {' '.join(packages)} (RPM: gcc glibc-devel slurm-devel), "
            "then run `slurm-ai install` again"
        )
    else:
        fix = "see the reason above, then run `slurm-ai install` again"
    return f"native AdminComment writer unavailable ({reason}): {cost}", fix


def encode_stdin(text: str) -> str:
    """The helper's stdin: '<byte count> <hex>\\n' (ASCII whatever the locale)."""
    data = text.encode("utf-8")
    if len(data) > MAX_VALUE_BYTES:
        raise AccountingError(f"AdminComment of {len(data)} bytes exceeds {MAX_VALUE_BYTES}")
    if b"\0" in data:
        raise AccountingError("AdminComment cannot contain NUL bytes")
    return f"{len(data)} {data.hex()}\n"


class NativeBackend:
    """sacct for reads (like the CLI backend), the C helper for case-preserving writes."""

    name = "native"
    folds_case = False

    def __init__(
        self,
        helper: Path,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 20.0,
        cluster: str | None = None,
        reader: SlurmCliBackend | None = None,
    ) -> None:
        self.helper = helper
        self.extra_env = dict(env or {})
        self.timeout_s = timeout_s
        self.cluster = cluster
        self.reader = reader or SlurmCliBackend(env=env, timeout_s=timeout_s)

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        return self.reader.read(job_ids)

    def write_admin_comment(self, job_id: str, text: str) -> None:
        if not job_id.isdigit():
            raise AccountingError(f"native writer: job id {job_id!r} is not a plain job id")
        argv = [str(self.helper)]
        if self.cluster:
            argv += ["--cluster", self.cluster]
        argv.append(job_id)
        try:
            result = run_command(
                argv,
                timeout=self.timeout_s,
                extra_env=self.extra_env,
                input_text=encode_stdin(text),
                check=False,
            )
        except CommandTimeout as exc:
            raise AccountingError(
                f"native writer timed out after {self.timeout_s:g}s for job {job_id} "
                "(slurmdbd not answering?)"
            ) from exc
        except CommandError as exc:
            raise AccountingError(f"native writer failed for job {job_id}: {exc}") from exc
        why = _last_line(result.stderr) or f"exit {result.returncode}"
        if result.returncode == 0:
            return
        if result.returncode == EXIT_NOTHING:
            # Delivery retries on this wording (deliver.py: "not in accounting yet").
            raise AccountingError(f"native writer: job {job_id} not in accounting yet ({why})")
        if result.returncode == EXIT_CONNECT:
            raise AccountingError(f"native writer: slurmdbd unreachable: {why}")
        raise AccountingError(
            f"native writer failed for job {job_id} (exit {result.returncode}): {why}"
        )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def native_backend(
    env: Mapping[str, str] | None = None,
    timeout_s: float = 20.0,
    native_dir: Path = DEFAULT_NATIVE_DIR,
) -> NativeBackend:
    """The native backend, building the helper on first use. Raises AccountingError."""
    return NativeBackend(build_helper(native_dir, env=env), env=env, timeout_s=timeout_s)
