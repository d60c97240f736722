"""Baseline: the audit trail's tables as every release before migrations made them (up to 0.1.0 of 2026-12-02).

Revision ID: a0001
Revises: (none)
Created: 2026-12-03 07:56:34.681959
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'a0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('ts', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=8), nullable=False),
    sa.Column('reason_code', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('sop_uid', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_action_seq', ['action', 'seq'], unique=False)
        batch_op.create_index('ix_audit_actor_seq', ['actor', 'seq'], unique=False)
        batch_op.create_index('ix_audit_job', ['job_id'], unique=False)
        batch_op.create_index('ix_audit_model_seq', ['model', 'seq'], unique=False)
        batch_op.create_index('ix_audit_study_seq', ['study_uid', 'seq'], unique=False)
        batch_op.create_index('ix_audit_ts', ['ts'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('keyed_from', sa.Integer(), nullable=True),
    sa.Column('mac', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_ts')
        batch_op.drop_index('ix_audit_study_seq')
        batch_op.drop_index('ix_audit_model_seq')
        batch_op.drop_index('ix_audit_job')
        batch_op.drop_index('ix_audit_actor_seq')
        batch_op.drop_index('ix_audit_action_seq')

    op.drop_table('audit_events')
