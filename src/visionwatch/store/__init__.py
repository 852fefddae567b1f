"""Reads and writes, by feature. Routes and pages call these; no SQL lives anywhere else."""
