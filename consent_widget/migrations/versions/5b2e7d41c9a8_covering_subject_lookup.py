"""covering index for the subject lookup of the check API

Revision ID: 5b2e7d41c9a8
Revises: cf7385431ab3
Create Date: 2026-11-29 16:45:00.000000
"""
from alembic import op


revision = '5b2e7d41c9a8'
down_revision = 'cf7385431ab3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The new index starts with campaign_id, so the single-column one is no longer needed.
    op.create_index('ix_subjects_lookup', 'subjects', ['campaign_id', 'email_hmac', 'public_id'],
                    unique=False)
    op.drop_index('ix_subjects_campaign_id', table_name='subjects')


def downgrade() -> None:
    op.create_index('ix_subjects_campaign_id', 'subjects', ['campaign_id'], unique=False)
    op.drop_index('ix_subjects_lookup', table_name='subjects')
