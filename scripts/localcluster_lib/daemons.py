"""The instance's daemons: munged, MariaDB, slurmdbd, slurmctld, one slurmd and one
agent per node; their readiness probes and the databases' first-run set-up."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from pathlib import Path

from .common import ACCT_DB, SCRIPT, ClusterError, port_in_use, run, say
from .config import db_password
from .guests import vm_daemons
from .instance import Instance, port_span
from .processes import Daemon, running_pid


def munge_works(inst: Instance) -> bool:
    sock = str(inst.munge_socket)
    cred = run(["munge", "-n", "--socket", sock], check=False, timeout=10)
    if cred.returncode != 0:
        return False
    return (
        run(
            ["unmunge", "--socket", sock], input_text=cred.stdout, check=False, timeout=10
        ).returncode
        == 0
    )


def mysql_client(inst: Instance) -> list[str]:
    # --no-defaults: never read /etc/mysql (the system server's settings).
    return ["mariadb", "--no-defaults", f"--socket={inst.mysql_socket}", "-u", "root"]


def mysql_works(inst: Instance) -> bool:
    return (
        run(
            [
                "mariadb-admin",
                "--no-defaults",
                f"--socket={inst.mysql_socket}",
                "-u",
                "root",
                "ping",
            ],
            check=False,
            timeout=10,
        ).returncode
        == 0
    )


def slurmdbd_works(inst: Instance) -> bool:
    proc = run(
        ["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"],
        env=inst.client_env(),
        check=False,
        timeout=20,
    )
    return proc.returncode == 0


def slurmctld_works(inst: Instance) -> bool:
    proc = run(["scontrol", "ping"], env=inst.client_env(), check=False, timeout=20)
    return proc.returncode == 0 and "UP" in proc.stdout


def tcp_listening(port: int) -> bool:
    """True when a socket listens on port.  Read from /proc/net/tcp{,6} rather
    than by connecting: slurmd logs an error for every empty connection."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # fields[1] = "ADDR:PORT" in hex, fields[3] = state (0A = LISTEN)
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def daemons(inst: Instance) -> list[Daemon]:
    """All daemons in start order."""
    logs = inst.log_dir
    me = str(SCRIPT)
    result = [
        Daemon(
            "munged",
            (
                "munged",
                "--foreground",
                "--force",
                f"--socket={inst.munge_socket}",
                f"--key-file={inst.munge_key}",
                f"--pid-file={inst.slurm_run_dir}/munged.pid",
                f"--log-file={logs}/munged.log",
                f"--seed-file={inst.munge_dir}/munged.seed",
            ),
            logs / "munged.log",
            None,
            lambda: munge_works(inst),
        ),
        # The guests boot while the host's databases and controllers start.
        *vm_daemons(inst),
        Daemon(
            "mysqld",
            (
                "mariadbd",
                "--no-defaults",
                f"--datadir={inst.mysql_data}",
                f"--socket={inst.mysql_socket}",
                f"--port={inst.mysql_port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--user=root",
                f"--pid-file={inst.slurm_run_dir}/mysqld.pid",
                f"--log-error={logs}/mysqld.log",
                # slurmdbd warns unless these are at least half its recommendation;
                # the buffer pool is only reserved, pages are touched as used.
                "--innodb-buffer-pool-size=512M",
                "--innodb-log-file-size=64M",
                "--innodb-lock-wait-timeout=900",
                "--max-connections=100",
            ),
            logs / "mysqld.log",
            inst.mysql_port,
            lambda: mysql_works(inst),
        ),
        Daemon(
            "slurmdbd",
            ("slurmdbd", "-D"),
            logs / "slurmdbd.log",
            inst.dbd_port,
            lambda: slurmdbd_works(inst),
        ),
        Daemon(
            "slurmctld",
            ("slurmctld", "-D", "-f", str(inst.slurm_conf)),
            logs / "slurmctld.log",
            inst.ctld_port,
            lambda: slurmctld_works(inst),
        ),
    ]
    for node in inst.nodes:
        # unshare (without --fork) execs our `_node-exec` helper, which execs
        # slurmd: the pid we record is slurmd's own pid.
        argv = (
            "unshare",
            "--uts",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            me,
            "--prefix",
            str(inst.prefix),
            "_node-exec",
            node,
            "--",
            "slurmd",
            "-D",
            "-N",
            node,
            "-f",
            str(inst.slurm_conf),
        )
        port = inst.node_port(node)
        result.append(
            Daemon(
                f"slurmd-{node}",
                argv,
                logs / f"slurmd-{node}.log",
                port,
                functools.partial(tcp_listening, port),
            )
        )
    result.extend(agent_daemons(inst, me))
    return result


AGENT_INTERVAL_S = 5


def agent_store(inst: Instance, node: str) -> Path:
    """Where node `node`'s slurm-ai agent keeps samples ([agent] store_dir with {node})."""
    return inst.prefix / "agent" / node


def slurm_ai_importable() -> bool:
    """Is the slurm-ai package installed for this Python? Agents need it; the
    cluster itself does not (this script runs before anything is installed)."""
    import importlib.util

    return importlib.util.find_spec("slurm_ai") is not None


def agent_daemons(inst: Instance, me: str) -> list[Daemon]:
    """One `slurm-ai agent` per node, in that node's namespaces (its hostname),
    when slurm-ai is installed: the Epilog summarises the job's samples."""
    if not slurm_ai_importable():
        return []
    result = []
    for node in inst.nodes:
        store = agent_store(inst, node)
        argv: tuple[str, ...] = (
            "unshare", "--uts", "--mount", "--propagation", "private", "--",
            sys.executable, me, "--prefix", str(inst.prefix), "_node-exec", node, "--",
            sys.executable, "-m", "slurm_ai", "agent", "--node", node,
            "--store", str(inst.prefix / "agent" / "{node}"),
            "--interval", str(AGENT_INTERVAL_S),
        )  # fmt: skip
        if inst.production:  # the fake GPUs, as slurm-ai's `[nvml] recording` names them
            argv += ("--nvml-recorded", str(inst.etc / "nvml" / f"{node}.json"))
        result.append(
            Daemon(
                f"agent-{node}",
                argv,
                inst.log_dir / f"agent-{node}.out",
                None,
                functools.partial((store / "samples.sqlite").exists),
            )
        )
    return result


def prepare_munge(inst: Instance) -> None:
    if not inst.munge_key.exists():
        run(["mungekey", "--create", f"--keyfile={inst.munge_key}"])
    os.chmod(inst.munge_key, 0o400)


def prepare_mysql(inst: Instance) -> None:
    """Initialise the private datadir on first run."""
    if (inst.mysql_data / "mysql").is_dir():
        return
    say("initialising MariaDB datadir (first run)")
    shutil.rmtree(inst.mysql_data, ignore_errors=True)
    run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={inst.mysql_data}",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ],
        timeout=300,
    )


def setup_mysql_user(inst: Instance) -> None:
    """Database and user for slurmdbd (idempotent); TCP from 127.0.0.1 only.

    The database is created here rather than left to slurmdbd: slurmdbd
    creates it after a first connect fails with "unknown database" and then
    reconnects on the same handle, and Debian 13's libmariadb3 (Connector/C
    3.4.10, mariadb 1:11.8.9+ds-0+deb13u1) leaves such a reused handle with a
    limit of 0 result columns, so every SELECT fails with error 5027 and
    slurmdbd exits at its first start ("_check_mysql_concat_is_sane: null
    result")."""
    password = db_password(inst)
    sql = (
        f"CREATE DATABASE IF NOT EXISTS {ACCT_DB};"
        f"CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
        f"ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{password}';"
        f"GRANT ALL ON {ACCT_DB}.* TO 'slurm'@'127.0.0.1';"
        "FLUSH PRIVILEGES;"
    )
    run([*mysql_client(inst), "-e", sql])


def ensure_cluster_registered(inst: Instance) -> None:
    """Add ClusterName to the accounting db, so sacctmgr lists it at once."""
    env = inst.client_env()
    listed = run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], env=env)
    if inst.name not in listed.stdout.split():
        run(["sacctmgr", "-i", "add", "cluster", inst.name], env=env)


def check_ports(inst: Instance) -> None:
    """Before starting anything: every port of a daemon still to start is free."""
    for daemon in daemons(inst):
        if (
            daemon.port is not None
            and running_pid(inst, daemon.name) is None
            and port_in_use(daemon.port)
        ):
            raise ClusterError(
                f"cannot start {daemon.name}: 127.0.0.1:{daemon.port} is already in use "
                "(another instance or service?); choose another --port-base "
                f"(instances need port bases at least {port_span(inst.node_count)} apart)"
            )
