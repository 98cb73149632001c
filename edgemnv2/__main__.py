"""`python -m edgemnv2` runs the CLI (same as the `edgemnv2` console script)."""

from edgemnv2.cli import main

main()
