"""Interchange formats, one module each; coordinates are converted here and nowhere else."""
