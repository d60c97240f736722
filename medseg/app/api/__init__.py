"""The HTTP API (FastAPI): ``main.create_app``, ``deps``, ``errors`` (problem details), ``routes``."""
