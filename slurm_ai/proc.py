"""The one place slurm-ai runs subprocesses.

Always an argv list (never a shell string: hooks run as root and see
user-controlled job names and comments), always a timeout, and errors mapped
into the slurm_ai exception tree.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slurm_ai.errors import CommandError, CommandTimeout

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    check: bool = True,
    input_text: str | None = None,
) -> CommandResult:
    """Run `argv` and return its output.

    `extra_env` is merged over `env` (or over os.environ when `env` is None).
    Raises CommandTimeout when the timeout passes (the child is killed),
    CommandError when the command cannot start or, with `check`, exits non-zero.
    """
    args = [str(a) for a in argv]
    if not args:
        raise ValueError("run_command needs a non-empty argv")
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    try:
        completed = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandTimeout(args, timeout) from exc
    except OSError as exc:
        raise CommandError(args, None, str(exc)) from exc
    result = CommandResult(args, completed.returncode, completed.stdout, completed.stderr)
    if check and completed.returncode != 0:
        raise CommandError(args, completed.returncode, completed.stderr or completed.stdout)
    return result
