"""Accounting backends: read and write a job's AdminComment.

`SlurmCliBackend` (default) reads with one `sacct` call per batch of jobs and
writes with `sacctmgr -i modify job where jobid=N set AdminComment=...` (the
only way that works from an Epilog and after the job ended: see DESIGN.md).
`PyslurmBackend` does the same through `pyslurm.db.Jobs`, used only when
pyslurm imports and its major.minor matches the running Slurm.
`native.NativeBackend` writes through Slurm's C API with a helper compiled on
the node (sacctmgr lowercases on 22.05; the helper keeps case). Every call has
a timeout; failures raise AccountingError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slurm_ai.errors import AccountingError, CommandError
from slurm_ai.proc import run_command

SEP = "\x1f"  # a delimiter nobody types; AdminComment is the last, free-text field
READ_FIELDS = ("JobIDRaw", "Submit", "Start", "End", "ElapsedRaw", "State", "AdminComment")
_ROW = re.compile(r"^[0-9]+[0-9_+]*\x1f")


@dataclass(frozen=True)
class JobRow:
    """What delivery needs to know about one job from accounting."""

    job_id: str
    admin_comment: str
    submit: int | None = None
    start: int | None = None
    end: int | None = None
    elapsed_s: int | None = None
    state: str = ""


def fold_like_sacctmgr(text: str) -> str:
    """What Slurm 22.05's sacctmgr stores for a value: lowercased, quotes -> '`'."""
    return text.lower().replace('"', "`").replace("'", "`")


class AccountingBackend(Protocol):
    name: str
    # True when the writer stores values lowercased (sacctmgr on 22.05): our
    # token is then base32 and foreign text with capitals must be protected.
    folds_case: bool

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        """Rows for the jobs accounting knows (absent ids are not there yet)."""
        ...

    def write_admin_comment(self, job_id: str, text: str) -> None: ...


def _epoch(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_sacct(text: str) -> dict[str, JobRow]:
    """Parse `sacct -X -n -P --delimiter=<SEP> -o <READ_FIELDS>` output.

    A line that does not start with a job id and the delimiter continues the
    previous row's AdminComment (foreign tools may put newlines in it).
    """
    rows: list[list[str]] = []
    for line in text.split("\n"):
        if _ROW.match(line):
            parts = line.split(SEP, len(READ_FIELDS) - 1)
            if len(parts) == len(READ_FIELDS):
                rows.append(parts)
                continue
        if rows and line:
            rows[-1][-1] += "\n" + line
    out: dict[str, JobRow] = {}
    for parts in rows:
        job_id, submit, start, end, elapsed, state, comment = parts
        out[job_id] = JobRow(
            job_id=job_id,
            admin_comment=comment,
            submit=_epoch(submit),
            start=_epoch(start),
            end=_epoch(end),
            elapsed_s=_epoch(elapsed),
            state=state.split(" ")[0],
        )
    return out


class SlurmCliBackend:
    """sacct for batched reads, sacctmgr for writes."""

    name = "slurm-cli"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 20.0,
        sacct: str = "sacct",
        sacctmgr: str = "sacctmgr",
        folds_case: bool = True,
    ) -> None:
        self.folds_case = folds_case
        # Why "auto" did not pick a case-preserving writer (delivery logs it).
        self.fallback_reason = ""
        self.extra_env = {**(env or {}), "SLURM_TIME_FORMAT": "%s"}
        self.timeout_s = timeout_s
        self.sacct = sacct
        self.sacctmgr = sacctmgr

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        if not job_ids:
            return {}
        argv = [
            self.sacct, "-X", "-n", "-P", "--allusers", f"--delimiter={SEP}",
            "--starttime=1970-01-02", "-j", ",".join(job_ids),
            "-o", ",".join(READ_FIELDS),
        ]  # fmt: skip
        try:
            result = run_command(argv, timeout=self.timeout_s, extra_env=self.extra_env)
        except CommandError as exc:
            raise AccountingError(f"sacct failed: {exc}") from exc
        return parse_sacct(result.stdout)

    def write_admin_comment(self, job_id: str, text: str) -> None:
        # One argv element: no shell, so spaces in foreign content are safe.
        argv = [
            self.sacctmgr, "-i", "modify", "job", "where", f"jobid={job_id}",
            "set", f"AdminComment={text}",
        ]  # fmt: skip
        try:
            result = run_command(argv, timeout=self.timeout_s, extra_env=self.extra_env)
        except CommandError as exc:
            raise AccountingError(f"sacctmgr failed for job {job_id}: {exc}") from exc
        if "Nothing modified" in result.stdout or "Nothing modified" in result.stderr:
            raise AccountingError(f"sacctmgr: job {job_id} not in accounting yet")


class PyslurmBackend:
    """pyslurm.db.Jobs (pyslurm >= 23), same interface as the CLI backend."""

    name = "pyslurm"
    folds_case = False

    def __init__(self, pyslurm: Any) -> None:
        self.pyslurm = pyslurm

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        db = self.pyslurm.db
        try:
            jobs = db.Jobs.load(db.JobFilter(ids=[int(j.split("_")[0]) for j in job_ids]))
        except Exception as exc:  # pyslurm raises its own RPCError types
            raise AccountingError(f"pyslurm read failed: {exc}") from exc
        out: dict[str, JobRow] = {}
        for job in jobs.values():
            job_id = str(job.id)
            out[job_id] = JobRow(
                job_id=job_id,
                admin_comment=job.admin_comment or "",
                submit=_int_or_none(getattr(job, "submit_time", None)),
                start=_int_or_none(getattr(job, "start_time", None)),
                end=_int_or_none(getattr(job, "end_time", None)),
                elapsed_s=_int_or_none(getattr(job, "elapsed_time", None)),
                state=str(getattr(job, "state", "") or ""),
            )
        return out

    def write_admin_comment(self, job_id: str, text: str) -> None:
        db = self.pyslurm.db
        try:
            db.Jobs.modify(db.JobFilter(ids=[int(job_id)]), db.Job(admin_comment=text))
        except Exception as exc:
            raise AccountingError(f"pyslurm modify failed for job {job_id}: {exc}") from exc


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def slurm_version(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    try:
        out = run_command(["sinfo", "-V"], timeout=10, extra_env=env).stdout
    except CommandError:
        return None
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


# sacctmgr's `set AdminComment=V` lower-cases V on Slurm 22.05.8 and keeps its case on
# 24.11.5 (both seen on local clusters, docs/localcluster-debian13.md). Releases between
# were not checked: they are taken as folding, the side that never damages other data.
FIRST_CASE_PRESERVING_SACCTMGR = (24, 11)


def sacctmgr_folds_case(setting: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """The [accounting] setting when given, else from the Slurm version (unknown: folds)."""
    if setting is not None:
        return setting
    version = slurm_version(env)
    return version is None or version < FIRST_CASE_PRESERVING_SACCTMGR


def pyslurm_matches(pyslurm_version: str, slurm: tuple[int, int] | None) -> bool:
    """pyslurm X.Y.* is built for Slurm X.Y only."""
    match = re.match(r"(\d+)\.(\d+)", pyslurm_version)
    return bool(match and slurm and (int(match.group(1)), int(match.group(2))) == slurm)


def select_backend(
    choice: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 20.0,
    folds_case: bool | None = True,
    native_dir: Path | None = None,
) -> AccountingBackend:
    """ "auto" (pyslurm when importable and matching, else the native C-API writer
    when it builds and runs, else the CLI), "slurm-cli", "pyslurm", "native"."""
    if choice not in ("auto", "slurm-cli", "pyslurm", "native"):
        raise AccountingError(f"unknown accounting backend {choice!r}")
    if choice == "native":
        return _native(env, timeout_s, native_dir)
    if choice in ("auto", "pyslurm"):
        try:
            import pyslurm  # type: ignore[import-not-found,unused-ignore]

            version = str(getattr(pyslurm, "__version__", "") or pyslurm.version())
        except Exception as exc:  # absent or broken against this libslurm
            if choice == "pyslurm":
                raise AccountingError(f"pyslurm is not usable: {exc}") from exc
        else:
            if pyslurm_matches(version, slurm_version(env)):
                return PyslurmBackend(pyslurm)
            if choice == "pyslurm":
                raise AccountingError(f"pyslurm {version} does not match this Slurm")
    fallback = ""
    if choice == "auto":
        try:
            return _native(env, timeout_s, native_dir)
        except AccountingError as exc:
            # No compiler or headers, or a failed build: the CLI still works.
            fallback = "native writer unavailable: " + " ".join(str(exc).split())
    cli = SlurmCliBackend(
        env=env, timeout_s=timeout_s, folds_case=sacctmgr_folds_case(folds_case, env)
    )
    cli.fallback_reason = fallback
    return cli


def _native(
    env: Mapping[str, str] | None, timeout_s: float, native_dir: Path | None
) -> AccountingBackend:
    """The case-preserving writer (accounting/native.py), built on first use."""
    from slurm_ai.accounting import native

    return native.native_backend(env, timeout_s, native_dir or native.DEFAULT_NATIVE_DIR)
