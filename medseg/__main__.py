"""`python -m medseg` is the `medseg` command."""

from medseg.cli import main

main()
