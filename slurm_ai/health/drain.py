"""Drain and resume a node with a reason an admin can read: "slurm_ai: <check>: <detail>".

The reason is built from check output, which can carry device strings and
kernel log text: it is reduced to printable ASCII on one line and cut to fit
Slurm's reason field. scontrol runs through run_command (argv, no shell),
with SLURM_CONF from the config because slurmd gives hooks almost no env.

Ownership: slurm-ai resumes only a node whose drain reason starts with
REASON_PREFIX. A node drained by an admin or by another health checker
(NHC writes "NHC: ...") is never resumed by us, and its reason is never
overwritten; a node in maintenance, rebooting or powered down is never
drained or resumed by us, and a DOWN or FAILed one never resumed. Every
drain and resume is decided on the state read just before it, and a state
that cannot be read means no action. An XID drain is never resumed by us: the
XIDs that drain call for a GPU reset or a reboot, which an admin confirms.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slurm_ai.errors import SlurmAIError
from slurm_ai.health.verdict import CheckResult, first_worst
from slurm_ai.proc import CommandResult, run_command

if TYPE_CHECKING:
    from slurm_ai.config import Config

MAX_REASON = 120  # what the Prolog orchestrator keeps, too
REASON_PREFIX = "slurm_ai:"
SCONTROL = "/usr/bin/scontrol"
# Node states in which the node's GPUs may be in a job's use.
BUSY_STATES = frozenset({"ALLOCATED", "MIXED", "COMPLETING"})
# Node states that are someone else's to manage (maintenance, reboots, power saving):
# never drained or resumed by us.
MANAGED_STATES = frozenset({
    "MAINT", "REBOOT_REQUESTED", "REBOOT_ISSUED", "POWERED_DOWN", "POWERING_DOWN",
    "POWER_DOWN", "POWERING_UP", "FUTURE",
})  # fmt: skip
# States in which a node is out of service for a reason of its own: never resumed by
# us. A DOWN node is still drained on a failed check when nobody gave a reason of
# their own (slurmctld's automatic ones below): the boot-time check of a node that
# went down is what keeps a broken node from taking jobs when it comes back.
DOWN_STATES = frozenset({"DOWN", "FAIL", "FAILING", "NOT_RESPONDING", "UNKNOWN"})
SLURMCTLD_REASONS = frozenset({"Not responding", "Node unexpectedly rebooted"})
XID_REASON_PREFIX = f"{REASON_PREFIX} xid:"


def drain_reason(check: str, detail: str) -> str:
    text = f"{REASON_PREFIX} {check}: {detail}"
    text = re.sub(r"[^\x20-\x7e]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def drain_reason_for(checks: list[CheckResult], fallback: str) -> str:
    """The drain reason of a list of checks: its first worst one."""
    top = first_worst(checks)
    return drain_reason(top.check if top else "health", top.reason if top else fallback)


def _checked_node(node: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", node):
        raise ValueError(f"not a node name: {node[:40]!r}")
    return node


def drain_node(
    node: str,
    reason: str,
    slurm_env: Mapping[str, str],
    timeout: float = 10.0,
    scontrol: str = SCONTROL,
) -> CommandResult:
    """`scontrol update nodename=NODE state=drain reason=...` (CommandError on failure)."""
    return run_command(
        [scontrol, "update", f"nodename={_checked_node(node)}", "state=drain", f"reason={reason}"],
        timeout=timeout,
        extra_env=dict(slurm_env),
    )


def resume_node(
    node: str, slurm_env: Mapping[str, str], timeout: float = 10.0, scontrol: str = SCONTROL
) -> CommandResult:
    """`scontrol update nodename=NODE state=resume` (CommandError on failure)."""
    return run_command(
        [scontrol, "update", f"nodename={_checked_node(node)}", "state=resume"],
        timeout=timeout,
        extra_env=dict(slurm_env),
    )


@dataclass(frozen=True)
class NodeState:
    states: frozenset[str]  # "IDLE+DRAIN" -> {"IDLE", "DRAIN"}
    reason: str
    partitions: tuple[str, ...] = ()
    known: bool = True  # False: scontrol could not say (no action is taken then)

    def partition_for(self, configured: Mapping[str, object]) -> str | None:
        """The node's first partition with its own floors, else its first one."""
        chosen = next((p for p in self.partitions if p in configured), None)
        return chosen or (self.partitions[0] if self.partitions else None)

    @property
    def drained(self) -> bool:
        return bool(self.states & {"DRAIN", "DRAINED", "DRAINING"})

    @property
    def ours(self) -> bool:
        """Drained by slurm-ai (our reason prefix), so ours to resume."""
        return self.drained and self.reason.startswith(REASON_PREFIX)

    @property
    def busy(self) -> bool:
        return bool(self.states & BUSY_STATES)

    @property
    def others_reason(self) -> bool:
        """A reason an admin or another checker gave (not ours, not slurmctld's own)."""
        reason = self.reason
        return (
            bool(reason)
            and not reason.startswith(REASON_PREFIX)
            and reason not in SLURMCTLD_REASONS
        )

    @property
    def held_elsewhere(self) -> bool:
        """In a state someone else manages, or with a reason of another's."""
        return bool(self.states & MANAGED_STATES) or self.others_reason

    @property
    def may_drain(self) -> bool:
        return self.known and not self.drained and not self.held_elsewhere

    @property
    def may_resume(self) -> bool:
        """Drained by us, for anything but XIDs, and in no state someone else manages."""
        return (
            self.known
            and self.ours
            and not self.states & (MANAGED_STATES | DOWN_STATES)
            and not self.reason.startswith(XID_REASON_PREFIX)
        )


def parse_node_state(text: str) -> NodeState:
    """From one `scontrol -o show node NAME` line (pure). The reason runs to the
    end of the line (it may hold spaces) less Slurm's " [user@time]" suffix."""
    state = re.search(r"(?:^|\s)State=(\S+)", text)
    states = (
        frozenset(s for s in re.split(r"[+*~#!%$@^-]", state.group(1)) if s)
        if state
        else frozenset()
    )
    reason = ""
    found = re.search(r"(?:^|\s)Reason=(.*)$", text.strip())
    if found:
        reason = re.sub(r"\s*\[[^\]]*@[^\]]*\]\s*$", "", found.group(1)).strip()
    parts = re.search(r"(?:^|\s)Partitions=(\S+)", text)
    partitions = tuple(p for p in parts.group(1).split(",") if p) if parts else ()
    return NodeState(states, reason, partitions)


def read_node_state(
    node: str, slurm_env: Mapping[str, str], timeout: float = 10.0, scontrol: str = SCONTROL
) -> NodeState:
    result = run_command(
        [scontrol, "-o", "show", "node", _checked_node(node)],
        timeout=timeout,
        extra_env=dict(slurm_env),
    )
    return parse_node_state(result.stdout.strip().splitlines()[0] if result.stdout.strip() else "")


def node_action(verdict: str, state: NodeState, auto_resume: bool) -> str | None:
    """What a verdict does to the node: "drain", "resume" or None.

    fail drains a node that is not drained and has no reason or managed state
    of another's (never rewrites another's reason); pass/warn resumes a node
    only when we drained it, for anything but XIDs, and it is not down or
    managed. A state that could not be read, and anything that judged nothing
    (unchecked, error, timeout), leave the node as it is.
    """
    if verdict == "fail":
        return "drain" if state.may_drain else None
    if verdict in ("pass", "warn") and auto_resume and state.may_resume:
        return "resume"
    return None


def drain_unless_held(
    node: str,
    reason: str,
    slurm_env: Mapping[str, str],
    log: logging.Logger,
    timeout: float = 10.0,
    scontrol: str = SCONTROL,
) -> bool:
    """Drain NODE as a hook does: its state read first, node_action's rule (never
    over a drain, a reason or a state of another's), the outcome logged (drained,
    not_drained with why, drain_failed). True when drained."""
    try:
        state = read_node_state(node, slurm_env, timeout=timeout, scontrol=scontrol)
        if node_action("fail", state, auto_resume=False) == "drain":
            drain_node(node, reason, slurm_env, timeout=timeout, scontrol=scontrol)
            log.warning("event=drained reason=%s", reason)
            return True
    except (SlurmAIError, ValueError, OSError) as exc:
        log.error("event=drain_failed reason=%s error=%s", reason, " ".join(str(exc).split()))
        return False
    why = f"{'+'.join(sorted(state.states))} {state.reason}".strip()
    log.warning("event=not_drained reason=%s why=left as it is: %s", reason, why)
    return False


def scontrol_for(config: Config) -> str:
    """The scontrol binary from [slurm] scontrol (hooks get no PATH from slurmd)."""
    return config.section("slurm").get_str("scontrol", SCONTROL)
