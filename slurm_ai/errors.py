"""One exception tree for slurm-ai.

Hooks catch `SlurmAIError` to fail open (log and exit 0); anything else that
escapes is a bug and is also caught at the hook boundary. Only a health verdict
of FAIL is allowed to drain a node, never an exception.
"""

from __future__ import annotations


class SlurmAIError(Exception):
    """Base of every error slurm-ai raises on purpose."""


class ConfigError(SlurmAIError):
    """The configuration file is missing a value, malformed or inconsistent."""


class CommandError(SlurmAIError):
    """An external command failed (non-zero exit or could not be started)."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"{argv[0]} exited {returncode}: {detail}")


class CommandTimeout(CommandError):
    """An external command ran past its timeout and was killed."""

    def __init__(self, argv: list[str], timeout: float, stdout: list[str] | None = None) -> None:
        self.timeout = timeout
        # What each command had printed when it was killed (run_group): tells a
        # worker that never got started from one that hung while measuring.
        self.stdout = stdout or []
        CommandError.__init__(self, argv, None, f"timed out after {timeout:g} s")


class SpoolError(SlurmAIError):
    """A spool file or directory is unsafe, corrupt or could not be written."""


class RecordError(SlurmAIError):
    """An accounting record could not be encoded or decoded."""


class ProbeError(SlurmAIError):
    """A hardware probe (NVML, sysfs, RAPL) failed or is unavailable."""


class AccountingError(SlurmAIError):
    """The accounting backend (sacctmgr/sacct or pyslurm) refused or is down."""
