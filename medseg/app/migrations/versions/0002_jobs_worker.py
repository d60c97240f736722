"""jobs.worker: the worker process ("host:pid") that ran a job last; several may share the queue.

Revision ID: 0002
Revises: 0001
Created: 2026-12-03 07:32:05.837103
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        # existing rows get '' (who ran them was not recorded): NOT NULL needs a server default
        batch_op.add_column(sa.Column('worker', sa.String(length=128), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('worker')
