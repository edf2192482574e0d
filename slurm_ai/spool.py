"""Safe files for hooks that run as root.

- Writes are atomic (temporary file in the same directory, fsync, rename,
  fsync of the directory) and root-only (0600 files, 0700 directories).
- The spool directory must be owned by root and not group/world-writable:
  a spool a user can write to lets that user forge or delete records.
- Reads of user-writable places never follow a symlink (O_NOFOLLOW on the
  file, and each directory component checked) and are size-bounded.
- A corrupt file is moved aside into `corrupt/` with a log line; it is never
  deleted and never stops a sweep.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from slurm_ai import jsontext
from slurm_ai.errors import SpoolError

DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_JSON_BYTES = 4 * 1024 * 1024


def os_error_text(exc: OSError) -> str:
    """'No space left on device (ENOSPC)': the message an admin reads and the name
    they search for."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def ensure_private_dir(path: Path, *, require_root_owner: bool = True) -> Path:
    """Create `path` (0700) or check an existing one is safe to use as root."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise SpoolError(f"cannot create spool directory {path}: {os_error_text(exc)}") from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SpoolError(f"{path} is not a plain directory (symlink?): refusing to use it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SpoolError(
            f"{path} is group/world-writable (mode {stat.S_IMODE(info.st_mode):o}): "
            f"fix with chmod 700 {path}"
        )
    if require_root_owner and os.geteuid() == 0 and info.st_uid != 0:
        raise SpoolError(f"{path} is owned by uid {info.st_uid}, not root: refusing to use it")
    return path


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` atomically and durably."""
    directory = path.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # a read-only or full filesystem: the callers' SpoolError
        raise SpoolError(f"cannot write {path}: {os_error_text(exc)}") from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise SpoolError(f"cannot write {path}: {os_error_text(exc)}") from exc
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any, *, mode: int = FILE_MODE) -> None:
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    atomic_write_bytes(path, data + b"\n", mode=mode)


def read_bytes_nofollow(path: Path, *, max_bytes: int) -> bytes:
    """Read a regular file without following a symlink, at most `max_bytes`.

    Raises SpoolError when the file is a symlink, not a regular file, or
    larger than `max_bytes`; FileNotFoundError passes through.
    """
    return read_owned_nofollow(path, max_bytes=max_bytes)[0]


def read_owned_nofollow(path: Path, *, max_bytes: int) -> tuple[bytes, int]:
    """read_bytes_nofollow, plus the owner uid of the very file that was read
    (from the open descriptor, so a swap between a stat and the open cannot fool it)."""
    data, info = _read_nofollow(path, max_bytes)
    return data, info.st_uid


FileIdentity = tuple[int, int]  # (st_dev, st_ino): which file, whatever its name now


class CorruptFileError(SpoolError):
    """A spool file that was read whole and is not what it should be; `identity`
    says which file it was, so quarantine() moves that one and never a fresh
    file renamed into its place since."""

    def __init__(self, message: str, identity: FileIdentity) -> None:
        super().__init__(message)
        self.identity = identity


def _read_nofollow(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # ELOOP is what O_NOFOLLOW gives for a symlink.
        raise SpoolError(f"refusing to read {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpoolError(f"refusing to read {path}: not a regular file")
        if info.st_size > max_bytes:
            raise SpoolError(f"{path} is {info.st_size} bytes, more than the {max_bytes} allowed")
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(65536, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise SpoolError(f"{path} grew past {max_bytes} bytes while reading")
        return data, info
    finally:
        os.close(fd)


def _identity(path: Path) -> FileIdentity:
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def read_json(path: Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a spool JSON file; SpoolError (never ValueError) when corrupt."""
    return read_json_identified(path, max_bytes=max_bytes)[0]


def read_json_identified(
    path: Path, *, max_bytes: int = MAX_JSON_BYTES
) -> tuple[Any, FileIdentity]:
    """read_json, plus which file was read (for a quarantine of content that
    parses but is wrong). Corrupt JSON: CorruptFileError with the identity."""
    data, info = _read_nofollow(path, max_bytes)
    identity = (info.st_dev, info.st_ino)
    try:
        return jsontext.loads(data), identity
    except ValueError as exc:  # bad UTF-8, bad JSON, nesting too deep
        raise CorruptFileError(f"{path} is corrupt: {exc}", identity) from exc


def quarantine(
    path: Path, spool_root: Path, reason: str, identity: FileIdentity | None = None
) -> Path | None:
    """Move a corrupt file into <spool_root>/corrupt/, keeping it for inspection.

    With `identity` (the file that was read), only that file is moved: a writer
    may have renamed a fresh file into place since the read, and moving it would
    lose a good result for a bad one. Returns where it went, None if not moved.
    """
    target_dir = spool_root / "corrupt"
    try:
        if identity is not None and _identity(path) != identity:
            return None  # already replaced: nothing corrupt left to move
        ensure_private_dir(target_dir, require_root_owner=False)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = target_dir / f"{stamp}-{path.name}"
        os.replace(path, target)
        if identity is not None and _identity(target) != identity:
            # Replaced between the check and the rename: put the fresh file back,
            # unless an even newer one is there already (link never overwrites).
            with contextlib.suppress(OSError):
                os.link(target, path)
            os.unlink(target)
            return None
        with contextlib.suppress(OSError):
            (target_dir / f"{target.name}.why").write_text(reason + "\n")
        return target
    except (OSError, SpoolError):
        return None
