"""campaign console

Revision ID: d41e6a0c9b52
Revises: 8c4f2a9d1e07
Create Date: 2026-12-03 05:50:33.613530

The console's accounts, roles, invitations and audit log; its proof export jobs and chain
checks; the campaigns' own consent texts; the answer code of a webhook delivery.
"""
from alembic import op
import sqlalchemy as sa
import consent_widget.models


revision = 'd41e6a0c9b52'
down_revision = '8c4f2a9d1e07'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('admin_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('is_operator', sa.Boolean(), nullable=False),
    sa.Column('session_epoch', sa.Integer(), nullable=False),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('recovery_codes', sa.JSON(), nullable=False),
    sa.Column('created_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', consent_widget.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    op.create_table('admin_audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occurred_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('user_email', sa.String(length=320), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['admin_users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_admin_audit_log_campaign_id', 'admin_audit_log', ['campaign_id'])
    op.create_table('admin_invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('invited_by', sa.Integer(), nullable=True),
    sa.Column('created_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', consent_widget.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.ForeignKeyConstraint(['invited_by'], ['admin_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_id')
    )
    op.create_index('ix_admin_invitations_campaign_id', 'admin_invitations', ['campaign_id'])
    op.create_table('admin_memberships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['admin_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'campaign_id')
    )
    op.create_index('ix_admin_memberships_campaign_id', 'admin_memberships', ['campaign_id'])
    op.create_index('ix_admin_memberships_user_id', 'admin_memberships', ['user_id'])
    op.create_table('ledger_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('checked_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_ledger_checks_campaign_id', 'ledger_checks', ['campaign_id'])
    op.create_table('proof_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('done', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', consent_widget.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', consent_widget.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.ForeignKeyConstraint(['requested_by'], ['admin_users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_id')
    )
    op.create_index('ix_proof_jobs_campaign_id', 'proof_jobs', ['campaign_id'])
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        # Existing campaigns show the catalogue's texts until their team publishes their own.
        batch_op.add_column(sa.Column('notice_texts', sa.JSON(), nullable=False,
                                      server_default='{}'))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_status', sa.Integer(), nullable=True))
    _forbid_audit_changes()


#: The audit log is only ever inserted into: the database itself refuses to change or delete a
#: row, so neither the console nor a mistaken script can rewrite who did what.
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER admin_audit_log_no_update BEFORE UPDATE ON admin_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log cannot be changed'); END",
    "CREATE TRIGGER admin_audit_log_no_delete BEFORE DELETE ON admin_audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log cannot be changed'); END",
)
_POSTGRES_TRIGGER = (
    "CREATE FUNCTION admin_audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log cannot be changed'; END $$",
    "CREATE TRIGGER admin_audit_log_no_change BEFORE UPDATE OR DELETE ON admin_audit_log "
    "FOR EACH ROW EXECUTE FUNCTION admin_audit_log_refuse()",
)


def _forbid_audit_changes() -> None:
    dialect = op.get_bind().dialect.name
    for statement in (_POSTGRES_TRIGGER if dialect == "postgresql" else _SQLITE_TRIGGERS):
        op.execute(statement)



def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER admin_audit_log_no_change ON admin_audit_log")
        op.execute("DROP FUNCTION admin_audit_log_refuse()")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('last_status')

    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('notice_texts')

    op.drop_index('ix_proof_jobs_campaign_id', table_name='proof_jobs')
    op.drop_table('proof_jobs')
    op.drop_index('ix_ledger_checks_campaign_id', table_name='ledger_checks')
    op.drop_table('ledger_checks')
    op.drop_index('ix_admin_memberships_user_id', table_name='admin_memberships')
    op.drop_index('ix_admin_memberships_campaign_id', table_name='admin_memberships')
    op.drop_table('admin_memberships')
    op.drop_index('ix_admin_invitations_campaign_id', table_name='admin_invitations')
    op.drop_table('admin_invitations')
    op.drop_index('ix_admin_audit_log_campaign_id', table_name='admin_audit_log')
    op.drop_table('admin_audit_log')
    op.drop_table('admin_users')
