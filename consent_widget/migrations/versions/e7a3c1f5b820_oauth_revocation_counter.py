"""oauth revocation counter

Revision ID: e7a3c1f5b820
Revises: d41e6a0c9b52
Create Date: 2026-12-03 11:55:00.000000

A single-row counter that triggers bump whenever an access token or API client is revoked,
changed or deleted: processes cache tokens and trust an entry only while the counter is unchanged.
"""
from alembic import op
import sqlalchemy as sa


revision = 'e7a3c1f5b820'
down_revision = 'd41e6a0c9b52'
branch_labels = None
depends_on = None

_BUMP = "UPDATE oauth_revocations SET counter = counter + 1 WHERE id = 1"

#: Columns whose change alters what a cached token allows (deletion is covered separately).
_WATCHED = {"oauth_tokens": "revoked_at, expires_at, scope, client_pk, campaign_id",
            "oauth_clients": "revoked_at, secret_hash, scopes, client_id, campaign_id"}


def _sqlite_triggers():
    for table, columns in _WATCHED.items():
        yield (f"CREATE TRIGGER {table}_bump_on_update AFTER UPDATE OF {columns} ON {table} "
               f"BEGIN {_BUMP}; END")
        yield f"CREATE TRIGGER {table}_bump_on_delete AFTER DELETE ON {table} BEGIN {_BUMP}; END"


def _postgres_triggers():
    yield ("CREATE FUNCTION oauth_revocations_bump() RETURNS trigger LANGUAGE plpgsql AS "
           f"$$ BEGIN {_BUMP}; RETURN NULL; END $$")
    for table, columns in _WATCHED.items():
        # Per statement, not per row: revoking a client's hundred tokens is one bump.
        yield (f"CREATE TRIGGER {table}_bump AFTER UPDATE OF {columns} OR DELETE ON {table} "
               "FOR EACH STATEMENT EXECUTE FUNCTION oauth_revocations_bump()")


def upgrade() -> None:
    table = op.create_table(
        'oauth_revocations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('counter', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(table, [{"id": 1, "counter": 0}])
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in (_postgres_triggers() if postgres else _sqlite_triggers()):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER {table}_bump ON {table}")
        op.execute("DROP FUNCTION oauth_revocations_bump()")
    else:
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER {table}_bump_on_update")
            op.execute(f"DROP TRIGGER {table}_bump_on_delete")
    op.drop_table('oauth_revocations')
