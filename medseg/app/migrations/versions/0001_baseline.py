"""Baseline: the schema of every release before migrations (created by `create_all` up to 0.1.0 of 2026-12-02).

Revision ID: 0001
Revises: (none)
Created: 2026-12-03 07:31:35.051572
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('webhook_state', sa.String(length=16), nullable=False),
    sa.Column('webhook_attempts', sa.Integer(), nullable=False),
    sa.Column('webhook_next_at', sa.DateTime(), nullable=False),
    sa.Column('webhook_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_state'), ['state'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('roles', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest'),
    sa.UniqueConstraint('name')
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('model_used', sa.String(length=128), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('calling_ae', sa.String(length=16), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('accession', sa.String(length=16), nullable=False),
    sa.Column('instances', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('seg_path', sa.Text(), nullable=False),
    sa.Column('seg_series_uid', sa.String(length=64), nullable=False),
    sa.Column('seg_sop_uid', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_uid', 'series_uid', 'model', 'revision')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_study_uid'), ['study_uid'], unique=False)

    op.create_table('model_registry',
    sa.Column('name', sa.String(length=48), nullable=False),
    sa.Column('active', sa.String(length=64), nullable=False),
    sa.Column('shadow', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('model_registry_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=48), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_version', sa.String(length=64), nullable=False),
    sa.Column('to_version', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_registry_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_registry_history_name'), ['name'], unique=False)

    op.create_table('reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('door', sa.String(length=16), nullable=False),
    sa.Column('submitted_by', sa.String(length=128), nullable=False),
    sa.Column('reviewer', sa.String(length=64), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('correction_sop_uid', sa.String(length=64), nullable=False),
    sa.Column('stored_path', sa.Text(), nullable=False),
    sa.Column('site', sa.String(length=16), nullable=False),
    sa.Column('scanner', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('dice', sa.Float(), nullable=True),
    sa.Column('fn_rate', sa.Float(), nullable=True),
    sa.Column('reference_lesions', sa.Integer(), nullable=False),
    sa.Column('detected_lesions', sa.Integer(), nullable=False),
    sa.Column('reference_lesions_ge10', sa.Integer(), nullable=False),
    sa.Column('detected_lesions_ge10', sa.Integer(), nullable=False),
    sa.Column('false_positive_lesions', sa.Integer(), nullable=False),
    sa.Column('hd95_mm', sa.Float(), nullable=True),
    sa.Column('msd_mm', sa.Float(), nullable=True),
    sa.Column('fp_volume_ml', sa.Float(), nullable=True),
    sa.Column('volume_diff_ml', sa.Float(), nullable=True),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reviews_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_model'), ['model'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_study_uid'), ['study_uid'], unique=False)

    op.create_table('series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('calling_ae', sa.String(length=16), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('accession', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_uid', 'series_uid')
    )
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_series_study_uid'), ['study_uid'], unique=False)

    op.create_table('shadow_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('candidate', sa.String(length=128), nullable=False),
    sa.Column('active', sa.String(length=128), nullable=False),
    sa.Column('dice', sa.Float(), nullable=True),
    sa.Column('lesions_active', sa.Integer(), nullable=False),
    sa.Column('lesions_candidate', sa.Integer(), nullable=False),
    sa.Column('volume_active_ml', sa.Float(), nullable=False),
    sa.Column('volume_candidate_ml', sa.Float(), nullable=False),
    sa.Column('seconds_active', sa.Float(), nullable=False),
    sa.Column('seconds_candidate', sa.Float(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('shadow_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shadow_results_candidate'), ['candidate'], unique=False)
        batch_op.create_index(batch_op.f('ix_shadow_results_job_id'), ['job_id'], unique=False)

    op.create_table('study_features',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('features', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('study_features', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_features_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_features_model'), ['model'], unique=False)

    op.create_table('worklist',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_uid', sa.String(length=64), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=128), nullable=False),
    sa.Column('seg_sop_uid', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('closed_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('worklist', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worklist_study_uid'), ['study_uid'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('last_status', sa.String(length=32), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_job_id'), ['job_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_job_id'))

    op.drop_table('deliveries')
    with op.batch_alter_table('worklist', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worklist_study_uid'))

    op.drop_table('worklist')
    with op.batch_alter_table('study_features', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_features_model'))
        batch_op.drop_index(batch_op.f('ix_study_features_job_id'))

    op.drop_table('study_features')
    with op.batch_alter_table('shadow_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shadow_results_job_id'))
        batch_op.drop_index(batch_op.f('ix_shadow_results_candidate'))

    op.drop_table('shadow_results')
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_series_study_uid'))

    op.drop_table('series')
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reviews_study_uid'))
        batch_op.drop_index(batch_op.f('ix_reviews_status'))
        batch_op.drop_index(batch_op.f('ix_reviews_model'))
        batch_op.drop_index(batch_op.f('ix_reviews_job_id'))
        batch_op.drop_index(batch_op.f('ix_reviews_created_at'))

    op.drop_table('reviews')
    with op.batch_alter_table('model_registry_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_registry_history_name'))

    op.drop_table('model_registry_history')
    op.drop_table('model_registry')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_study_uid'))
        batch_op.drop_index(batch_op.f('ix_jobs_state'))

    op.drop_table('jobs')
    op.drop_table('api_tokens')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_state'))
        batch_op.drop_index(batch_op.f('ix_alerts_name'))

    op.drop_table('alerts')
