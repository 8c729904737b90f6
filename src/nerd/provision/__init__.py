"""Placing workers: local background processes (``local``); Slurm pilots to come."""
