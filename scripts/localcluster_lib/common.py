"""Shared pieces of the local cluster: defaults, errors, and small process/file helpers."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# scripts/localcluster: nodes' daemons are started through it (`_node-exec`).
SCRIPT = Path(__file__).resolve().parent.parent / "localcluster"
# The checkout this package belongs to.
CHECKOUT = Path(__file__).resolve().parents[2]

DEFAULT_PREFIX = "/var/tmp/slurm-ai-cluster"
DEFAULT_PORT_BASE = 6817
DEFAULT_NAME = "sai"
ACCT_DB = "slurm_acct_db"  # StorageLoc of slurmdbd

# Environment marker put on every daemon we start: `down` and `status` only
# trust a pid whose /proc/PID/environ carries it, so a recycled pid or a
# daemon of another instance is never signalled.
MARK_VAR = "SLURM_AI_LOCALCLUSTER"

START_TIMEOUT = 60.0  # seconds for one daemon to become ready
NODES_TIMEOUT = 90.0  # seconds for n1/n2 to become idle after slurmd starts
STOP_TIMEOUT = 30.0  # seconds for one daemon to exit after SIGTERM

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_DOWN = 0, 1, 2, 3


class ClusterError(Exception):
    """A failure to report in one message; exit_code says how to exit."""

    def __init__(self, message: str, exit_code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------
# Instance layout


def say(message: str) -> None:
    print(f"localcluster: {message}", flush=True)


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    input_text: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a short command (argv list, never a shell string), capturing output."""
    proc = subprocess.run(
        list(argv),
        env=env,
        input=input_text,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ClusterError(
            f"{argv[0]} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
        )
    return proc


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write text to path only if it differs; returns True when written."""
    if path.exists() and path.read_text() == text:
        os.chmod(path, mode)
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(content[-lines:]) if content else f"(empty log {path})"


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.5,
) -> bool:
    """Poll predicate until true or timeout; stop early when alive() is false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if alive is not None and not alive():
            return False
        time.sleep(interval)
    return predicate()


def slurm_version() -> tuple[int, int]:
    """(major, minor) from `slurmd -V`, e.g. 'slurm-wlm 22.05.8' -> (22, 5)."""
    out = run(["slurmd", "-V"]).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    if not match:
        raise ClusterError(f"cannot parse Slurm version from: {out.strip()}")
    return int(match.group(1)), int(match.group(2))


# --------------------------------------------------------------------------
# Processes we own: pid files + environment marker
# --------------------------------------------------------------------------
