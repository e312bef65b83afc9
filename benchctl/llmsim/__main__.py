"""``python -m benchctl.llmsim [flags]``: serve until SIGTERM / SIGINT (see benchctl.llmsim)."""

from benchctl.llmsim.cli import main

main()
