"""The ``medseg`` command line (typer): ``main`` (the commands), ``errors`` (exit codes), ``common``."""
