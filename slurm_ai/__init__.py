"""slurm-ai: Slurm prolog/epilog toolkit for AI clusters.

Affinity pinning, all-reduce health checks, per-job energy and timing in Slurm
accounting, and bare-metal versus VM reports. Keep this module import-free: the
prolog imports the package on every job.
"""

__version__ = "0.1.0"
