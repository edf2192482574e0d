"""Which kernel-log XIDs are new since the last check on this node.

The kernel ring buffer keeps an XID until reboot. Judging every XID since
boot would fail (and drain) a node forever after one old XID, also after an
admin has looked at it and resumed the node. So the check remembers how far
it read: /dev/kmsg numbers its records (`prio,SEQ,usec,flags;message`, SEQ
strictly increasing within one boot), and the spool keeps, per node,
`{"boot_id", "seq"}` of the last record a check has read
(`<spool>/health/xid/<node>.json`, root-only, written atomically).

- XIDs with a sequence number above the cursor are judged (fail/warn);
  older ones are reported as info, never judged again.
- A new boot id (or, when no boot id is known, a log whose records all lie
  below the cursor) means a reboot: everything in the log is new.
- No cursor yet (first check on this node): everything since boot is new.
- A cursor that exists but cannot be read (corrupt: quarantined), or no
  access to the spool at all (a user's job-scope check): old and new cannot
  be told apart, so XIDs are reported as warn, never fail: only the check
  that can date them (the Prolog, as root) drains.
- Lines without a sequence number (a saved `dmesg`) cannot be dated: every
  XID in them is judged, as before.

Only checks that act on their verdict move the cursor (the Prolog, and
`healthcheck --drain` or `--record`): an admin's plain `healthcheck` or a
job-scope check reads it but cannot hide a new XID from the next Prolog.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_PREFIX = re.compile(r"^\s*\d+,(\d+),\d+,[^;]*;")


@dataclass(frozen=True)
class KernelRecord:
    seq: int | None  # None: the source has no sequence numbers
    text: str


def parse_records(lines: Iterable[str]) -> list[KernelRecord]:
    """/dev/kmsg records (or plain dmesg lines) with their sequence numbers.
    Continuation lines (" SUBSYSTEM=...") belong to the record before them
    and are dropped; other lines without a prefix share its number."""
    records: list[KernelRecord] = []
    for line in lines:
        match = _PREFIX.match(line)
        if match:
            records.append(KernelRecord(int(match.group(1)), line))
        elif line[:1] == " " and records:
            continue
        else:
            # A line of a multi-line message: dated like the record before it.
            records.append(KernelRecord(records[-1].seq if records else None, line))
    return records


class CursorState(Enum):
    ABSENT = "absent"  # no check has read this node's log yet
    OK = "ok"
    UNKNOWN = "unknown"  # unreadable/corrupt, or no access to the spool


@dataclass(frozen=True)
class Cursor:
    boot_id: str | None
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "boot_id": self.boot_id, "seq": self.seq}

    @classmethod
    def from_json(cls, data: Any) -> Cursor | None:
        """None for anything that is not a cursor this code wrote."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return None
        seq, boot = data.get("seq"), data.get("boot_id")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < -1:
            return None
        if boot is not None and not isinstance(boot, str):
            return None
        return cls(boot, seq)


@dataclass
class Window:
    """The records to judge, the ones already judged, and the cursor to store."""

    new: list[KernelRecord] = field(default_factory=list)
    old: list[KernelRecord] = field(default_factory=list)
    datable: bool = True  # False: old and new cannot be told apart (warn only)
    notes: list[str] = field(default_factory=list)
    next_cursor: Cursor | None = None


def split(
    records: list[KernelRecord],
    cursor: Cursor | None,
    state: CursorState,
    boot_id: str | None,
) -> Window:
    """Split the log at the cursor (see the module docstring for the rules)."""
    seqs = [r.seq for r in records if r.seq is not None]
    window = Window()
    if not seqs:
        # A source without sequence numbers: nothing to compare, judge it all.
        window.new = list(records)
        if records:
            window.notes.append("kernel log has no sequence numbers: every XID since boot judged")
        return window
    top = max(seqs)
    if state is CursorState.UNKNOWN:
        window.new, window.datable = list(records), False
        window.next_cursor = Cursor(boot_id, top)
        return window
    start = -1
    if cursor is not None and state is CursorState.OK:
        rebooted = cursor.boot_id != boot_id if cursor.boot_id and boot_id else top < cursor.seq
        if rebooted:
            window.notes.append("new boot since the last check: the whole kernel log is new")
        else:
            start = cursor.seq
            first = min(seqs)
            if first > start + 1:
                window.notes.append(
                    f"kernel log records {start + 1}..{first - 1} were overwritten "
                    "before this check (XIDs in them are unknown)"
                )
    for record in records:
        if record.seq is not None and record.seq <= start:
            window.old.append(record)
        else:
            window.new.append(record)
    window.next_cursor = Cursor(boot_id, max(top, start))
    return window
