"""Wiring and the doors: ``context.build_context``, the one-process service, the HTTP API, the CLI."""
