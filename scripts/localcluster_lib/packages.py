"""Prerequisites: root, and the Debian packages the cluster runs on."""

from __future__ import annotations

import os
import shutil

from .common import EXIT_USAGE, ClusterError, run, say

# Debian packages the cluster needs (same names on Debian 12 and 13).
# libpmix-dev: Debian's mpi_pmix plugin dlopens .../pmix2/lib/libpmix.so, the
# unversioned symlink that only the -dev package ships.
PACKAGES = (
    "slurm-wlm",
    "slurmdbd",
    "munge",
    "mariadb-server",
    "libslurm-dev",
    "openmpi-bin",
    "libopenmpi-dev",
    "libpmix-dev",
    "hwloc",
)
# Programs that must be on PATH after the install.
PROGRAMS = (
    "munged",
    "munge",
    "unmunge",
    "mungekey",
    "mariadbd",
    "mariadb",
    "mariadb-admin",
    "mariadb-install-db",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sinfo",
    "scontrol",
    "sacctmgr",
    "unshare",
    "mount",
)

# Environment marker put on every daemon we start: `down` and `status` only
# trust a pid whose /proc/PID/environ carries it, so a recycled pid or a


def require_root() -> None:
    if os.geteuid() != 0:
        raise ClusterError(
            "must run as root (it installs packages, starts munged/MariaDB/Slurm "
            "daemons and bind-mounts per-node /tmp): run it with sudo",
            EXIT_USAGE,
        )


def missing_packages() -> list[str]:
    missing = []
    for pkg in PACKAGES:
        proc = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False)
        if "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def ensure_packages() -> None:
    """apt-get install whatever is missing; exit 2 with advice if impossible."""
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        missing = [p for p in PROGRAMS if shutil.which(p) is None]
        if missing:
            raise ClusterError(
                f"not a Debian system and missing {', '.join(missing)}: install "
                "Slurm (slurmctld, slurmd, slurmdbd), munge and MariaDB first",
                EXIT_USAGE,
            )
        return
    missing = missing_packages()
    if missing:
        say(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # policy-rc.d is not touched: with no systemd/init running, package
        # scripts cannot start the system MariaDB/munge/Slurm anyway.
        steps = (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        )
        for argv in steps:
            proc = run(argv, env=env, check=False, timeout=1800)
            if proc.returncode != 0:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
                raise ClusterError(
                    f"cannot install {' '.join(missing)} ({' '.join(argv[:2])} failed: "
                    f"{last[0]}); install them by hand with "
                    f"`apt-get install {' '.join(missing)}`",
                    EXIT_USAGE,
                )
    absent = [p for p in PROGRAMS if shutil.which(p) is None]
    if absent:
        raise ClusterError(
            f"programs missing after install: {', '.join(absent)}; "
            f"check the packages {' '.join(PACKAGES)}",
            EXIT_USAGE,
        )
