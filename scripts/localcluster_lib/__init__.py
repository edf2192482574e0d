"""The local Slurm cluster of scripts/localcluster, one module per concern.

- common: defaults, errors and small helpers
- instance: paths and ports of one instance
- packages: root and the Debian packages
- config: slurm.conf, slurmdbd.conf, cgroup.conf, mpi.conf rendering
- processes: daemons we own (pid files, environment marker, start, stop)
- daemons: the instance's daemons and their probes
- nodes: each node's namespaces and its state
- guests: the host's side of the VM nodes; vm: the guests themselves

Standard library only: this runs before anything else is installed.
"""
