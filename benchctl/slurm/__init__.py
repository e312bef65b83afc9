"""The Slurm layer: the subprocess seam, state mapping and parsers for Slurm's text output and job logs."""
