"""Alembic migrations of the service database (every table of :mod:`medseg.app.database`).

Run through :mod:`medseg.app.schema` (``medseg db upgrade``, ``medseg db status``), never with an
``alembic.ini``: the database URL comes from the service settings.
"""
