"""benchctl: an interactive shell to deploy, check and benchmark AI-factory services as Slurm jobs."""

__version__ = "0.1.0"
