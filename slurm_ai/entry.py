"""The `slurm-ai` console script: a click-free fast path for the hottest command.

`srun slurm-ai bind -- CMD` runs at every rank's start; going through click costs
about 11 ms more than handing the arguments straight to the binder. Everything
else (and `bind --help`) goes to the click command line.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["bind"] and not {"-h", "--help"} & set(args[1:2]):
        from slurm_ai.topology.bind import main as bind_main

        bind_main(args[1:])
    from slurm_ai.cli import main as cli_main

    cli_main()
