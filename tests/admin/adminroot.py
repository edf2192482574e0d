"""An install into a temporary root, run through the real CLI (admin tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from slurm_ai.cli import main

COMPLETE_SLURM_CONF = """\
ClusterName=t
AccountingStorageType=accounting_storage/slurmdbd
PrologEpilogTimeout=120
PrologFlags=Alloc
Prolog={etc}/prolog.d/*
Epilog={etc}/epilog.d/*
TaskProlog={etc}/slurm-ai-taskprolog
NodeName=n1 CPUs=2
"""


@dataclass
class TmpRoot:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "slurm"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "slurm-ai" / "config.toml"

    @property
    def manifest(self) -> Path:
        return self.config.parent / "install-manifest.json"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def args(self) -> list[str]:
        r = self.root
        return [
            "--slurm-etc", str(self.etc), "--config", str(self.config),
            "--spool", str(self.spool), "--log-file", str(r / "log" / "slurm-ai.log"),
            "--mark-dir", str(r / "marks"), "--systemd-dir", str(r / "systemd"),
        ]  # fmt: skip

    def write_slurm_conf(self, text: str | None = None) -> Path:
        self.etc.mkdir(parents=True, exist_ok=True)
        path = self.etc / "slurm.conf"
        path.write_text(text if text is not None else COMPLETE_SLURM_CONF.format(etc=self.etc))
        return path

    def install(self, *extra: str) -> Result:
        return CliRunner().invoke(main, ["install", *self.args(), *extra])

    def uninstall(self, *extra: str) -> Result:
        return CliRunner().invoke(
            main, ["install", "--config", str(self.config), "--uninstall", *extra]
        )

    def snapshot(self) -> dict[str, tuple[int, int, bytes]]:
        """path -> (mode, mtime_ns, bytes) of everything under the root."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        return out
