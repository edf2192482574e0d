"""Session fixture `installed_hooks`: the slurm-ai hooks installed into the local cluster.

Usage from another area's conftest.py (tests/<area>/conftest.py):

    from hooks_fixture import installed_hooks  # noqa: F401  (re-export the fixture)

    def test_something(installed_hooks):
        with installed_hooks.configured({"hooks": {"steps": ["topology", "health"]}}):
            ...  # submit jobs; their Prolog/Epilog read this config
        installed_hooks.log_text()         # the hooks' log
        installed_hooks.spool_dir          # <prefix>/spool/slurm-ai

What it installs under the instance prefix (from slurm_ai.admin.hookfiles):
<prefix>/etc/prolog.d/50-slurm-ai, <prefix>/etc/epilog.d/50-slurm-ai,
<prefix>/etc/slurm-ai-taskprolog, <prefix>/etc/slurm-ai/config.toml (health
step OFF by default: [hooks] steps = topology, agent, energy), spool
<prefix>/spool/slurm-ai, marks <prefix>/marks, log <prefix>/log/slurm-ai/;
then a marked block with Prolog=/Epilog=/TaskProlog=/PrologFlags (the cluster's own, plus Alloc) in
<prefix>/etc/hooks.conf and `scontrol reconfigure`. `configured()` changes
the config for the duration of a with-block (restored after, even on failure);
at session end hooks.conf is restored and Slurm reconfigured.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slurm_ai.admin.hookfiles import (
    HookLayout,
    default_config,
    render_all,
    render_config,
    render_slurm_conf_lines,
    with_hook_block,
)
from slurm_ai.spool import atomic_write_bytes

BEGIN = "# BEGIN slurm-ai hooks (tests/hooks_fixture.py)"
END = "# END slurm-ai hooks"


@dataclass
class InstalledHooks:
    cluster: Any  # tests.conftest.SlurmCluster
    layout: HookLayout
    spool_dir: Path
    log_file: Path
    mark_dir: Path
    base_config: dict[str, Any]

    @property
    def config_path(self) -> Path:
        return self.layout.config_path

    def write_config(self, data: Mapping[str, Any]) -> None:
        replace_file(self.config_path, render_config(data), 0o644)

    @contextlib.contextmanager
    def configured(self, overrides: Mapping[str, Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        """Merge `overrides` (table -> keys) into the config for a with-block.

        Waits first for the jobs of earlier tests to end (their Epilogs read the config)."""
        data = {k: dict(v) for k, v in self.base_config.items()}
        for table, values in overrides.items():
            data[table] = {**data.get(table, {}), **values}
        quiesce(self.cluster, limit_s=60.0)
        self.write_config(data)
        try:
            yield data
        finally:
            self.write_config(self.base_config)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def env(self) -> dict[str, str]:
        """Environment for `slurm-ai` commands run by tests against this install."""
        return self.cluster.env({"SLURM_AI_CONFIG": str(self.config_path)})


def replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `path` as a new file renamed over the old one, never in place.

    slurmd may be executing a hook shim of an earlier test's job (writing it in place
    fails with ETXTBSY, "Text file busy") and slurmctld may be reading hooks.conf while
    it reconfigures (it would see half a file); a rename gives each reader the old file
    or the new one, whole.
    """
    atomic_write_bytes(path, text.encode(), mode=mode)


def quiesce(cluster: Any, limit_s: float = 120.0) -> None:
    """Wait until no job is queued or running and no node is completing (an Epilog
    still running), for at most `limit_s`.

    A test that changes which hooks or settings the cluster runs must not do it under
    an earlier test's job: that job's Epilog would run another install's hooks than its
    Prolog did (another spool, another config) and its record would be lost or wrong.
    """
    deadline = time.monotonic() + limit_s
    while True:
        queue = cluster.run(["squeue", "-h", "-o", "%i"]).stdout.split()
        states = cluster.run(["sinfo", "-h", "-N", "-o", "%T"]).stdout.split()
        completing = [state for state in states if state.startswith("completing")]
        if not queue and not completing:
            return
        if time.monotonic() >= deadline:
            print(f"quiesce: after {limit_s:.0f} s still jobs {queue[:5]} and "
                  f"{len(completing)} completing node(s); going on")  # fmt: skip
            return
        time.sleep(0.5)


def change_hooks_conf(cluster: Any, text: str) -> None:
    """Replace the instance's hooks.conf with `text` between jobs, then reconfigure."""
    quiesce(cluster)
    replace_file(Path(cluster.prefix) / "etc" / "hooks.conf", text)
    _reconfigure(cluster)


def _reconfigure(cluster: Any) -> None:
    """scontrol reconfigure and wait until every slurmd runs the new slurm.conf
    (`localcluster reconfigure`: on Slurm 24.11 the daemons restart in place after
    scontrol returns, and a job started meanwhile would run the old Prolog)."""
    proc = cluster.localcluster("reconfigure", timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"localcluster reconfigure failed: {proc.stdout}{proc.stderr}")


def hold_dir(cluster: Any) -> str:
    """[accounting] hold_dir: each node's own, as /run is on a site (here /run is the
    host's, shared by every node and instance; a production node's /var/spool is its own)."""
    return "/var/spool/slurm-ai-held" if cluster.production else f"{cluster.prefix}/held"


def nvml_recording(cluster: Any) -> dict[str, Any]:
    recording = cluster.instance_settings().get("nvml_recording")
    return {"nvml": {"recording": recording}} if recording else {}


@pytest.fixture(scope="session")
def installed_hooks(slurm_cluster: Any) -> Iterator[InstalledHooks]:
    if os.geteuid() != 0:
        pytest.skip("installing the hooks into the local cluster needs root")
    prefix = Path(slurm_cluster.prefix)
    layout = HookLayout(
        etc_dir=prefix / "etc",
        config_path=prefix / "etc" / "slurm-ai" / "config.toml",
        python=sys.executable,
    )
    hooks = InstalledHooks(
        cluster=slurm_cluster,
        layout=layout,
        spool_dir=prefix / "spool" / "slurm-ai",
        log_file=prefix / "log" / "slurm-ai" / "slurm-ai.log",
        mark_dir=prefix / "marks",
        base_config={},
    )
    hooks.base_config = default_config(
        spool_dir=str(hooks.spool_dir),
        log_file=str(hooks.log_file),
        slurm_conf=str(slurm_cluster.slurm_conf),
        mark_dir=str(hooks.mark_dir),
        health=False,
        extra={
            "accounting": {"max_writes_per_s": 50.0, "hold_dir": hold_dir(slurm_cluster)},
            # The node agents scripts/localcluster starts (one per node, {node} expands).
            "agent": {"store_dir": str(prefix / "agent" / "{node}"), "interval_s": 5.0},
            # The production shape's fake GPUs: NVML answers from their recordings.
            **nvml_recording(slurm_cluster),
        },
    )
    for path, (text, mode) in render_all(layout, hooks.base_config).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, text, mode)
    hooks.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    hooks.spool_dir.chmod(0o700)
    hooks_conf = prefix / "etc" / "hooks.conf"
    original = hooks_conf.read_text() if hooks_conf.exists() else ""
    # The cluster's own PrologFlags kept (Slurm uses the last PrologFlags= line).
    flags = slurm_cluster.prolog_flags()
    lines = render_slurm_conf_lines(layout, prolog_flags=flags).splitlines()
    change_hooks_conf(slurm_cluster, with_hook_block(original, BEGIN, END, lines))
    try:
        yield hooks
    finally:
        with contextlib.suppress(Exception):
            change_hooks_conf(slurm_cluster, original)
