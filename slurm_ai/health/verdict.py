"""Verdicts of a health check, how they combine, and the one exit-code table."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "pass"
    INFO = "info"  # noted, never judged (an XID from before the last check, no GPU)
    SKIPPED = "skipped"
    # Ran, but could not judge: one rank (no bandwidth), a floor that does not
    # apply, a cold start that did not fit the budget. Never "pass".
    UNCHECKED = "unchecked"
    WARN = "warn"
    ERROR = "error"
    TIMEOUT = "timeout"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]

    @property
    def drains(self) -> bool:
        """Only a measured failure drains a node; errors and timeouts of slurm-ai
        itself fail open (a hung check says nothing certain about the node)."""
        return self is Verdict.FAIL


_SEVERITY = {
    Verdict.PASS: 0,
    Verdict.INFO: 0,
    Verdict.SKIPPED: 0,
    Verdict.UNCHECKED: 1,
    Verdict.WARN: 2,
    Verdict.ERROR: 3,
    Verdict.TIMEOUT: 4,
    Verdict.FAIL: 5,
}

# Nagios-style (like gcm): 0 ok, 1 warning, 2 critical, 3 unknown; 4 for a timeout
# so a script can tell "slow to answer" from "could not run". "unchecked" exits 0:
# nothing is known against the node, and `set -e` job scripts must not stop on a
# one-node job; the printed verdict and the record say what was not judged.
EXIT_CODES: dict[Verdict, int] = {
    Verdict.PASS: 0,
    Verdict.INFO: 0,
    Verdict.SKIPPED: 0,
    Verdict.UNCHECKED: 0,
    Verdict.WARN: 1,
    Verdict.FAIL: 2,
    Verdict.ERROR: 3,
    Verdict.TIMEOUT: 4,
}


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict; PASS for an empty list."""
    result = Verdict.PASS
    for verdict in verdicts:
        if verdict.severity > result.severity:
            result = verdict
    return result


def from_severity(severity: int) -> Verdict:
    """Inverse of `severity` (for verdicts agreed between ranks as an integer)."""
    for verdict, value in _SEVERITY.items():
        if value == severity and verdict not in (Verdict.SKIPPED, Verdict.INFO):
            return verdict
    return Verdict.ERROR


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome with a one-line reason (used in drain reasons)."""

    check: str
    verdict: Verdict
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "verdict": self.verdict.value, "reason": self.reason}


def first_worst(results: list[CheckResult]) -> CheckResult | None:
    """The first result with the worst verdict (its reason explains the outcome)."""
    if not results:
        return None
    target = worst([r.verdict for r in results])
    exact = next((r for r in results if r.verdict is target), None)
    # Only info/skipped results (severity 0 like pass): the first of them.
    return exact or max(results, key=lambda r: r.verdict.severity)


def conclude(checks: list[CheckResult]) -> tuple[Verdict, str]:
    """The verdict of a list of checks and the reason that explains it."""
    verdict = worst([c.verdict for c in checks])
    top = first_worst(checks)
    if top is None:
        return verdict, ""
    return verdict, (top.reason if verdict is Verdict.PASS else f"{top.check}: {top.reason}")
