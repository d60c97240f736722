"""Alembic's environment: the connection comes from :mod:`medseg.app.schema` (``config.attributes``);
the target is every table of :mod:`medseg.app.database`."""

from __future__ import annotations

from alembic import context

from medseg.app.database import metadata
from medseg.app.schema import ours

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata(), render_as_batch=True, include_name=ours,
                  version_table=config.attributes.get("version_table", "alembic_version"))
with context.begin_transaction():
    context.run_migrations()
