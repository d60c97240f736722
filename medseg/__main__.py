"""`python -m medseg` is the `medseg` command."""

from medseg.app.cli.main import main

main()
