"""Slurm accounting: delivering job records into AdminComment and reading them back."""
