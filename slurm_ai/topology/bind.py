"""`slurm-ai bind -- CMD`: pin this rank, set its environment, exec CMD.

Never kills the task: outside Slurm CMD runs unchanged (with a note on
stderr); any fault while planning or applying gives a warning and CMD still
runs, with whatever could be applied.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import NoReturn

from slurm_ai.sysfs import format_cpu_list


def _say(message: str) -> None:
    print(f"slurm-ai bind: {message}", file=sys.stderr, flush=True)


def apply_plan(
    env: MutableMapping[str, str], *, quiet: bool = False, settings: object | None = None
) -> list[str]:
    """Compute and apply this rank's plan; returns what was done (for --verbose)."""
    from slurm_ai.topology.settings import TopologySettings
    from slurm_ai.topology.task import plan_for_task
    from slurm_ai.topology.taskenv import task_env

    if not isinstance(settings, TopologySettings):
        settings = TopologySettings()
    task = plan_for_task(env, settings)
    rank = task.rank
    # The rank's GPUs by the node's numbering, as the SPANK plugin's verbose line has them.
    done: list[str] = [f"GPU {','.join(map(str, rank.gpus))}"] if rank.gpus else []
    warnings = list(task.warnings) + task.plan.all_warnings()
    if rank.cpus:
        try:
            os.sched_setaffinity(0, rank.cpus)
            done.append(f"CPUs {format_cpu_list(rank.cpus)}")
        except OSError as exc:
            warnings.append(f"cannot pin to CPUs {format_cpu_list(rank.cpus)}: {exc.strerror}")
    if rank.numa is not None and _several_nodes():
        from slurm_ai.topology.mempolicy import prefer_node  # ctypes: only when it matters

        why = prefer_node(rank.numa)
        if why:
            warnings.append(f"memory policy not set: {why}")
        else:
            done.append(f"memory preferred on NUMA node {rank.numa}")
    exports = task_env(
        rank.env, env, override_user_env=settings.override_user_env, warnings=warnings
    )
    env.update(exports)
    done.extend(f"{k}={v}" for k, v in sorted(exports.items()))
    _note_pinned(settings.mark_dir, env)
    if warnings and not quiet and task.local_id == 0:
        for warning in dict.fromkeys(warnings):
            _say(f"warning: {warning}")
    return done


def _note_pinned(mark_dir: Path | None, env: Mapping[str, str]) -> None:
    """An empty file in the job's own mark directory, for the Epilog's record."""
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    if mark_dir is None or not job_id.isdigit():
        return
    from slurm_ai.topology.planfile import BIND_MARK_NAME

    with contextlib.suppress(OSError):  # no mark directory: nothing to note
        os.close(
            os.open(
                mark_dir / job_id / BIND_MARK_NAME,
                os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        )


def _several_nodes() -> bool:
    """A memory policy only matters with more than one NUMA node."""
    try:
        return sum(n.startswith("node") for n in os.listdir("/sys/devices/system/node")) > 1
    except OSError:
        return False


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    try:
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - exec is the point
    except OSError as exc:
        _say(f"cannot run {argv[0]}: {exc.strerror}")
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


def bind_and_exec(
    argv: Sequence[str],
    *,
    quiet: bool = False,
    verbose: bool = False,
    settings: object | None = None,
) -> NoReturn:
    from slurm_ai.topology.task import in_slurm_task

    env = dict(os.environ)
    why_not = in_slurm_task(env)
    if why_not is not None:
        if not quiet:
            _say(f"{why_not}: running {argv[0]} unchanged")
        exec_command(argv, env)
    try:
        done = apply_plan(env, quiet=quiet, settings=settings)
        if verbose:
            _say(f"rank {env.get('SLURM_LOCALID')}: " + "; ".join(done))
    except Exception as exc:  # never stop the task for our own fault
        _say(f"warning: binding skipped ({type(exc).__name__}: {exc}); running unbound")
    exec_command(argv, env)


def _settings_without_click() -> object | None:
    """[topology] settings when a config file exists; None (defaults) otherwise."""
    path = os.environ.get("SLURM_AI_CONFIG") or "/etc/slurm-ai/config.toml"
    if not os.path.isfile(path):
        return None
    try:
        from slurm_ai.config import load_config
        from slurm_ai.topology.settings import load_settings

        return load_settings(load_config(path))
    except Exception as exc:  # never stop the task for a config problem
        _say(f"warning: config ignored: {exc}")
        return None


def main(args: Sequence[str]) -> NoReturn:
    """`python3 -m slurm_ai.topology.bind [-q] [-v] -- CMD ARGS`: bind without click.

    The same as `slurm-ai bind`, minus the ~15 ms the click command line costs
    at every task start.
    """
    args = list(args)
    quiet = verbose = False
    while args and args[0] in ("-q", "--quiet", "-v", "--verbose"):
        quiet = quiet or args[0] in ("-q", "--quiet")
        verbose = verbose or args[0] in ("-v", "--verbose")
        args.pop(0)
    if args and args[0] == "--":
        args.pop(0)
    if not args:
        _say("usage: python3 -m slurm_ai.topology.bind [-q] [-v] -- CMD [ARGS...]")
        sys.exit(2)
    bind_and_exec(args, quiet=quiet, verbose=verbose, settings=_settings_without_click())


if __name__ == "__main__":
    main(sys.argv[1:])
