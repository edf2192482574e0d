"""Cluster-admin side: install, doctor, slurm.conf checks."""
