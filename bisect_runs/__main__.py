"""Allow `python -m bisect_runs`."""

from bisect_runs.cli import main

main()
