"""The Alembic migrations build exactly the schema the models describe, and undo it; the app
reads its revisions without loading Alembic."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from consent_widget import db, migrate
from consent_widget.models import Base

ROOT = Path(__file__).resolve().parent.parent


def test_the_migrated_schema_equals_the_models(app):
    with app.app_context():
        with db.engine().connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_downgrade_to_base_and_upgrade_again(app):
    with app.app_context():
        engine = db.engine()
        migrate.downgrade(engine, "base")
        assert migrate.current(engine) is None
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()


def alembic_head() -> str:
    config = Config()
    config.set_main_option("script_location", migrate.MIGRATIONS)
    return ScriptDirectory.from_config(config).get_current_head()


def test_head_is_the_head_alembic_finds_in_the_scripts():
    assert migrate.head() == alembic_head()


def test_current_is_the_revision_alembic_reads_before_and_after_migrating(app):
    with app.app_context():
        engine = db.engine()
        for step in (lambda: migrate.downgrade(engine, "base"), lambda: migrate.upgrade(engine)):
            step()
            with engine.connect() as connection:
                expected = MigrationContext.configure(connection).get_current_revision()
            assert migrate.current(engine) == expected
        assert migrate.current(engine) == alembic_head()


# Builds the app and asks /readyz, whose migration check reads the current and head revisions,
# then prints the check's result and which of the migration-only packages got imported.
SERVE_AND_PROBE = """
import json, sys
from consent_widget import create_app
app = create_app(json.loads(sys.argv[1]))
checks = app.test_client().get("/readyz").json["checks"]
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"alembic", "mako", "pygments"})
print(json.dumps({"migrations": checks["migrations"], "loaded": loaded}))
"""


def test_serving_and_the_readiness_probe_do_not_import_alembic(app, app_config):
    # Alembic brings Mako and Pygments: megabytes in every app worker, for two strings.
    config = {key: value for key, value in app_config.items()
              if key in ("TESTING", "SECRET_KEY", "DATABASE_URL", "BASE_URL", "MAIL_URL",
                         "MAIL_FROM")}
    result = subprocess.run([sys.executable, "-c", SERVE_AND_PROBE, json.dumps(config)],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(result.stdout) == {"migrations": "ok", "loaded": []}


def test_an_index_built_beforehand_as_deploy_md_says_lets_the_migration_go_on(app):
    # docs/deploy.md: on a large PostgreSQL ledger, build the signup index CONCURRENTLY before
    # `db upgrade`; the migration must then find it rather than fail on a duplicate.
    from sqlalchemy import inspect, text
    with app.app_context():
        engine = db.engine()
        migrate.downgrade(engine, "5b2e7d41c9a8")
        with engine.begin() as connection:
            connection.execute(text("CREATE INDEX ix_consent_events_signup_id "
                                    "ON consent_events (signup_id)"))
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        names = {index["name"] for index in inspect(engine).get_indexes("consent_events")}
    assert "ix_consent_events_signup_id" in names
