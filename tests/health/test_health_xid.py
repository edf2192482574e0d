"""XIDs are judged once: only kernel-log records newer than the last check on
this node count; older ones are info. Fed with recorded /dev/kmsg content
(prio,seq,usec,flags;message records) and a boot id file that changes."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from health_helpers import needs_mpi

from slurm_ai.config import Config
from slurm_ai.health.history import HealthStore
from slurm_ai.health.hook import prolog_step
from slurm_ai.health.kmsg import Cursor, CursorState, parse_records, split
from slurm_ai.health.node import NodeCheckOptions, run_node_check
from slurm_ai.health.settings import HealthSettings
from slurm_ai.health.verdict import Verdict
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv

BOOT_A = "6f1c0c52-3b8e-4d4f-9a51-0d3c7c2b1a01"
BOOT_B = "a0b2c4d6-1111-4222-8333-944455566677"
# Real record layout of /dev/kmsg (see Documentation/ABI/testing/dev-kmsg);
# the Xid texts follow NVIDIA's Xid catalogue. GPU 7 of the recording is PCI db:00.
BOOT_LOG = [
    "6,1021,4313000,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15",
    "6,1022,4313020,-;nvidia-nvlink: Nvlink Core is being initialized",
    " SUBSYSTEM=module",
]
XID_79 = (
    "3,3120,123456789,-;NVRM: Xid (PCI:0000:db:00): 79, pid='<unknown>', name=<unknown>, "
    "GPU has fallen off the bus."
)
XID_48 = "3,3300,223456789,-;NVRM: Xid (PCI:0000:2a:00): 48, pid=77, name=python, DBE"
XID_31 = "4,3400,233456789,-;NVRM: Xid (PCI:0000:2a:00): 31, pid=77, name=python, MMU Fault"


def recs(lines: list[str]) -> Any:
    return parse_records(lines)


def test_parse_records_keeps_sequence_numbers_and_drops_continuations() -> None:
    records = recs([*BOOT_LOG, XID_79, "a line of a multi-line message"])
    assert [r.seq for r in records] == [1021, 1022, 3120, 3120]
    assert recs(["[ 12.3] NVRM: Xid (PCI:0000:db:00): 79, x"])[0].seq is None


def test_an_xid_must_be_the_kernel_s_own_message() -> None:
    """The kernel prints names a user chooses (a trap in a file named like an Xid
    line); a user's write to /dev/kmsg has a facility above the kernel's. Neither is
    an Xid, or any user could drain the nodes they run on."""
    from slurm_ai.health.gpu import parse_xids

    forged = [
        "4,9001,1,-;traps: python3[4242] trap invalid opcode ip:1 sp:2 error:0 in "
        "NVRM: Xid (PCI:0000:3b:00): 79, pwned[7f0000+1000]",
        "12,9002,2,-;NVRM: Xid (PCI:0000:3b:00): 79, written by a user to /dev/kmsg",
        "[ 99.1] python3[1]: segfault in NVRM: Xid (PCI:0000:3b:00): 48, x",
    ]
    assert parse_xids(forged) == []
    real = parse_xids(
        [XID_79, "[ 12.3] NVRM: Xid (PCI:0000:db:00): 79, x", "NVRM: Xid (PCI:0000:db:00): 31, y"]
    )
    assert [(e.pci, e.xid) for e in real] == [("0000:db:00", 79)] * 2 + [("0000:db:00", 31)]


def test_split_rules() -> None:
    log = recs([*BOOT_LOG, XID_79, XID_48])
    # First check on this node: everything since boot is new.
    first = split(log, None, CursorState.ABSENT, BOOT_A)
    assert len(first.new) == len(log) and first.old == [] and first.datable
    assert first.next_cursor == Cursor(BOOT_A, 3300)
    # Same boot, cursor after XID 79: only XID 48 is new.
    later = split(log, Cursor(BOOT_A, 3120), CursorState.OK, BOOT_A)
    assert [r.seq for r in later.new] == [3300] and later.next_cursor == Cursor(BOOT_A, 3300)
    # A new boot id: start over.
    rebooted = split(log, Cursor(BOOT_B, 9999), CursorState.OK, BOOT_A)
    assert len(rebooted.new) == len(log) and "new boot" in rebooted.notes[0]
    # No boot id anywhere: a log entirely below the cursor means a reboot.
    assert len(split(log, Cursor(None, 99999), CursorState.OK, None).new) == len(log)
    # A cursor that could not be read: all XIDs, but they cannot be dated.
    unknown = split(log, None, CursorState.UNKNOWN, BOOT_A)
    assert not unknown.datable and unknown.next_cursor == Cursor(BOOT_A, 3300)
    # Records lost between two checks are named.
    lost = split(recs([XID_48]), Cursor(BOOT_A, 1022), CursorState.OK, BOOT_A)
    assert "1023..3299 were overwritten" in lost.notes[0]
    # A saved dmesg without sequence numbers: judged whole, as before.
    plain = split(
        recs(["NVRM: Xid (PCI:0000:db:00): 79, x"]), Cursor(BOOT_A, 5), CursorState.OK, BOOT_A
    )
    assert len(plain.new) == 1 and plain.next_cursor is None


def test_cursor_garbage_is_rejected() -> None:
    bad: object
    for bad in (
        None,
        [],
        {"version": 2, "seq": 1},
        {"version": 1, "seq": "1"},
        {"version": 1, "seq": True},
        {"version": 1, "seq": 3, "boot_id": 5},
    ):
        assert Cursor.from_json(bad) is None
    assert Cursor.from_json({"version": 1, "seq": 3, "boot_id": BOOT_A}) == Cursor(BOOT_A, 3)


class Node:
    """One node's kernel log, boot id and spool, checked like the Prolog does."""

    def __init__(self, tmp_path: Path, recording: str) -> None:
        self.kmsg = tmp_path / "kmsg"
        self.boot = tmp_path / "boot_id"
        self.spool = tmp_path / "spool"
        self.spool.mkdir(mode=0o700)
        self.recording = recording
        self.lines: list[str] = list(BOOT_LOG)
        self.boot_id(BOOT_A)
        self.settings = HealthSettings.from_config(
            Config(None, {"health": {"kmsg": str(self.kmsg), "boot_id_file": str(self.boot)}})
        )

    def boot_id(self, value: str) -> None:
        self.boot.write_text(value + "\n")

    def log(self, *lines: str) -> None:
        self.lines += lines
        self.kmsg.write_text("\n".join(self.lines) + "\n")

    def check(self, *, advance: bool = True, store: bool = True) -> list[tuple[str, Verdict, str]]:
        self.kmsg.write_text("\n".join(self.lines) + "\n")
        options = NodeCheckOptions(
            allreduce=False,
            nvml_recording=self.recording,
            kernel_log=str(self.kmsg),
            node="n1",
            advance_xid_cursor=advance,
        )
        report = run_node_check(self.settings, options, HealthStore(self.spool) if store else None)
        self.verdict = report.verdict
        return [(c.check, c.verdict, c.reason) for c in report.checks if c.check == "xid"]


@pytest.fixture
def node(tmp_path: Path, recording: Callable[[str], str]) -> Node:
    return Node(tmp_path, recording("ok"))


def test_an_xid_is_judged_once_then_info(node: Node) -> None:
    node.log(XID_79)
    assert node.check() == [
        (
            "xid",
            Verdict.FAIL,
            "gpu7: Xid 79: pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
        )
    ]
    assert node.verdict is Verdict.FAIL
    # The admin resumed the node; no new XID: the next check passes.
    again = node.check()
    assert again == [("xid", Verdict.INFO, "gpu7: Xid 79 before the last check")]
    assert node.verdict is Verdict.PASS
    # A new fatal XID on another GPU (and an ignored one): judged, the old one stays info.
    node.log(XID_31, XID_48)
    third = node.check()
    assert [(c, v) for c, v, _ in third] == [("xid", Verdict.FAIL), ("xid", Verdict.INFO)]
    assert third[0][2].startswith("gpu1: Xid 48")
    assert node.check() == [
        ("xid", Verdict.INFO, "gpu7: Xid 79 before the last check"),
        ("xid", Verdict.INFO, "gpu1: Xid 48 before the last check"),
    ]
    cursor = node.spool / "health" / "xid" / "n1.json"
    assert json.loads(cursor.read_text()) == {"version": 1, "boot_id": BOOT_A, "seq": 3400}
    assert stat.S_IMODE(os.stat(cursor).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cursor.parent).st_mode) == 0o700


def test_reboot_starts_over(node: Node) -> None:
    node.log(XID_79)
    node.check()
    assert node.verdict is Verdict.FAIL and node.check()[0][1] is Verdict.INFO
    # Reboot: a new boot id and a new log whose numbers start low again.
    node.boot_id(BOOT_B)
    node.lines = [*BOOT_LOG, XID_79.replace("3,3120,", "3,2000,")]
    checks = node.check()
    assert [v for _, v, _ in checks] == [Verdict.INFO, Verdict.FAIL]
    assert "new boot" in checks[0][2]
    assert node.check() == [("xid", Verdict.INFO, "gpu7: Xid 79 before the last check")]


def test_a_plain_check_does_not_move_the_cursor(node: Node) -> None:
    node.log(XID_79)
    assert node.check(advance=False)[0][1] is Verdict.FAIL
    assert node.check(advance=False)[0][1] is Verdict.FAIL  # the Prolog still sees it
    assert not (node.spool / "health" / "xid").exists()
    assert node.check()[0][1] is Verdict.FAIL
    assert node.check()[0][1] is Verdict.INFO


def test_cursor_never_moves_back_within_a_boot(node: Node) -> None:
    node.log(XID_79, XID_48)
    node.check()
    store = HealthStore(node.spool)
    store.save_xid_cursor("n1", Cursor(BOOT_A, 3120))  # a slower, concurrent Prolog
    assert store.xid_cursor("n1") == (Cursor(BOOT_A, 3300), CursorState.OK)
    store.save_xid_cursor("n1", Cursor(BOOT_B, 10))  # a new boot may go lower
    assert store.xid_cursor("n1") == (Cursor(BOOT_B, 10), CursorState.OK)


def test_two_writers_cannot_move_the_cursor_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A reads the cursor, then stalls; B stores a later one meanwhile. Without
    the lock A's older cursor would land last, and a judged XID be judged again."""
    import threading

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    store = HealthStore(spool)
    read = HealthStore.xid_cursor
    a_has_read = threading.Event()

    def slow_read(self: HealthStore, node: str) -> Any:
        answer = read(self, node)
        if threading.current_thread().name == "A":
            a_has_read.set()
            time.sleep(0.5)  # B tries to write now
        return answer

    monkeypatch.setattr(HealthStore, "xid_cursor", slow_read)
    a = threading.Thread(target=store.save_xid_cursor, args=("n1", Cursor(BOOT_A, 100)), name="A")
    a.start()
    assert a_has_read.wait(5)
    store.save_xid_cursor("n1", Cursor(BOOT_A, 200))  # B, while A holds its read
    a.join()
    assert read(store, "n1") == (Cursor(BOOT_A, 200), CursorState.OK)


def test_without_a_readable_cursor_fatal_xids_only_warn(node: Node) -> None:
    node.log(XID_79)
    cursor = node.spool / "health" / "xid" / "n1.json"
    cursor.parent.mkdir(parents=True, mode=0o700)
    cursor.write_text("{not json")
    checks = node.check()
    assert checks[0][1] is Verdict.WARN and "new or old unknown" in checks[0][2]
    assert node.verdict is Verdict.WARN
    assert list((node.spool / "corrupt").iterdir())  # quarantined, not deleted
    # It wrote a fresh cursor: from now on old and new are told apart again.
    assert node.check()[0][1] is Verdict.INFO
    # No spool at all (a user's job-scope check): warn, never fail.
    assert node.check(store=False, advance=False)[0][1] is Verdict.WARN


def test_unwritable_cursor_does_not_break_the_check(node: Node, tmp_path: Path) -> None:
    node.log(XID_79)
    (node.spool / "health").mkdir(mode=0o700)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (node.spool / "health" / "xid").symlink_to(tmp_path / "elsewhere")
    checks = node.check()
    assert checks[0][1] is Verdict.FAIL
    assert any("XID cursor not saved" in reason for _, _, reason in checks)
    assert not list((tmp_path / "elsewhere").iterdir())


ENV = {
    "SLURM_JOB_ID": "78",
    "SLURM_JOB_PARTITION": "bare",
    "SLURMD_NODENAME": "n1",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
}


@needs_mpi
def test_prolog_drains_for_a_new_xid_and_a_resumed_node_passes(
    node: Node, recording: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario of the issue: a node drained for an XID and resumed by an admin
    passes its next Prolog check when no new XID came, and fails on a new one."""
    import slurm_ai.nvml

    real_open = slurm_ai.nvml.open_nvml
    # The GPUs of a recorded H100 node (there is no GPU here); the kernel log is the file.
    monkeypatch.setattr(
        slurm_ai.nvml,
        "open_nvml",
        lambda recorded=None, timeout=5.0: real_open(recording("ok"), timeout),
    )
    health = {
        "enabled": True,
        "when": "every_job",
        "backend": "mpi",
        "ranks": 2,  # one allocated GPU would be one rank: an all-reduce that judges nothing
        "local_bench": "off",  # the recorded GPUs are not here to run a GEMM on
        "min_size": "4K",
        "cpu_max_size": "16K",
        "iters": 1,
        "budget_s": 60,
        "kmsg": str(node.kmsg),
        "boot_id_file": str(node.boot),
    }
    config = Config(None, {"spool": {"dir": str(node.spool)}, "health": health})

    def prolog() -> tuple[dict[str, Any], list[str]]:
        ctx = HookContext(
            config, JobEnv.from_environ(ENV), "n1", node.spool, logging.getLogger("t")
        )
        out = prolog_step(ctx)
        assert out is not None
        return out["health"], ctx.drain_reasons

    node.log(XID_79)
    health_out, drains = prolog()
    assert health_out["verdict"] == "fail"
    assert drains == [
        "slurm_ai: xid: gpu7: Xid 79: pid='<unknown>', name=<unknown>, GPU has fallen off the bus."
    ]
    health_out, drains = prolog()  # the admin resumed the node
    assert health_out["verdict"] == "pass" and drains == []
    assert {
        "check": "xid",
        "verdict": "info",
        "reason": "gpu7: Xid 79 before the last check",
    } in health_out["checks"]
    node.log(XID_48)
    health_out, drains = prolog()
    assert health_out["verdict"] == "fail" and drains[0].startswith("slurm_ai: xid: gpu1: Xid 48")
