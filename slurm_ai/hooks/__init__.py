"""Slurm hooks: Prolog, Epilog and TaskProlog orchestration."""
