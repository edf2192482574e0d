"""Accounting tests: the hooks installed into the local cluster (see hooks_fixture)."""

from hooks_fixture import installed_hooks  # noqa: F401  (re-exported fixture)
