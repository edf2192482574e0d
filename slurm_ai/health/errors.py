"""Errors of the health check (inside the slurm_ai exception tree)."""

from __future__ import annotations

from slurm_ai.errors import SlurmAIError


class HealthCheckError(SlurmAIError):
    """The check could not run (no backend, a worker crashed, bad rendezvous).

    Verdict "error": fails open, never drains a node."""


class HealthTimeout(HealthCheckError):
    """The check ran past its hard timeout; its workers were killed."""


class HealthColdStart(HealthTimeout):
    """The workers did not even get ready (import, communicator, CUDA context)
    within the budget: the check is "unchecked: cold start", not a node fault."""
