"""index the ledger's events by signup

Revision ID: 8c4f2a9d1e07
Revises: 5b2e7d41c9a8
Create Date: 2026-11-29 18:40:00.000000
"""
from alembic import op


revision = '8c4f2a9d1e07'
down_revision = '5b2e7d41c9a8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A receipt names the request each confirmation answered, found by its signup: without
    # this index that read scanned every event of the campaign, once per confirmation.
    # IF NOT EXISTS: on a large PostgreSQL ledger an operator may build it beforehand with
    # CREATE INDEX CONCURRENTLY, which does not hold up writes meanwhile (docs/deploy.md).
    op.create_index('ix_consent_events_signup_id', 'consent_events', ['signup_id'],
                    unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index('ix_consent_events_signup_id', table_name='consent_events')
