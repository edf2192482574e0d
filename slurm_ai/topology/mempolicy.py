"""Prefer a NUMA node for the process's memory (set_mempolicy), best effort.

MPOL_PREFERRED rather than MPOL_BIND: allocation falls back to other nodes
when the preferred one is full, so a task is never killed by its policy. The
policy survives execve(2), so `bind` sets it just before exec. Called through
libc's syscall(2), which needs no libnuma.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MPOL_PREFERRED = 1
SYSCALLS = {"x86_64": 238, "aarch64": 237, "ppc64le": 261}


def prefer_node(node: int) -> str | None:
    """Set MPOL_PREFERRED for `node`; returns None on success, else why not."""
    machine = os.uname().machine
    number = SYSCALLS.get(machine)
    if number is None:
        return f"set_mempolicy syscall number unknown on {machine}"
    if not 0 <= node < 4096:
        return f"NUMA node {node} out of range"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as exc:
        return f"libc not loadable: {exc}"
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = node // bits + 1
    mask = (ctypes.c_ulong * words)()
    mask[node // bits] = 1 << (node % bits)
    # maxnode counts bits; the kernel wants one more than the highest node.
    result = libc.syscall(number, MPOL_PREFERRED, mask, ctypes.c_ulong(words * bits + 1))
    if result != 0:
        return f"set_mempolicy failed: {os.strerror(ctypes.get_errno())}"
    return None
