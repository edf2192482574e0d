"""hooks.conf edits: one set of slurm-ai hooks at a time (Slurm 24.11 runs every Prolog=)."""

from __future__ import annotations

import pytest

from slurm_ai.admin.hookfiles import with_hook_block

FIXTURE = [
    "# BEGIN slurm-ai hooks (tests/hooks_fixture.py)",
    "Prolog=/a/prolog.d/*",
    "Epilog=/a/epilog.d/*",
    "TaskProlog=/a/taskprolog",
    "PrologFlags=Alloc",
    "# END slurm-ai hooks",
]
HEALTH = [
    "# BEGIN slurm-ai HealthCheckProgram (test)",
    "HealthCheckProgram=/a/healthcheck",
    "HealthCheckInterval=10",
    "# END slurm-ai HealthCheckProgram (test)",
]
BEGIN, END = "# BEGIN slurm-ai install (tests/admin)", "# END slurm-ai install (tests/admin)"
NEW = ["Prolog=/b/prolog.d/*", "Epilog=/b/epilog.d/*", "TaskProlog=/b/taskprolog"]


def test_other_hook_blocks_go_and_the_rest_stays() -> None:
    """Seen on Slurm 24.11: the fixture's hooks and the install's both ran for a job
    (both blocks in hooks.conf), and the record without the override won."""
    text = "\n".join(["# the instance's comment", *FIXTURE, *HEALTH, "Prolog=/site/own"]) + "\n"
    out = with_hook_block(text, BEGIN, END, NEW).splitlines()
    assert out == ["# the instance's comment", *HEALTH, "Prolog=/site/own", BEGIN, *NEW, END]
    hooks = [ln for ln in out if ln.startswith(("Prolog=", "Epilog="))]
    assert hooks == ["Prolog=/site/own", *NEW[:2]]  # no other slurm-ai hooks left to run


def test_writing_again_replaces_the_own_block() -> None:
    once = with_hook_block("", BEGIN, END, NEW)
    again = with_hook_block(once, BEGIN, END, ["Prolog=/c/*"])
    assert again.splitlines() == [BEGIN, "Prolog=/c/*", END]


def test_a_block_never_closed_is_kept_and_bad_markers_refused() -> None:
    text = "\n".join(FIXTURE[:-1]) + "\n"  # no END: not ours to guess where it stops
    assert with_hook_block(text, BEGIN, END, NEW).splitlines()[: len(FIXTURE) - 1] == FIXTURE[:-1]
    with pytest.raises(ValueError, match="markers"):
        with_hook_block("", "# my block", END, NEW)
