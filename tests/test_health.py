"""Probes: /healthz says the process answers; /readyz says the database answers, is migrated to
the head and holds a signing key, and names what is missing with a 503 without fixing it."""
from __future__ import annotations

from sqlalchemy import func, select

from consent_widget import create_app, db
from consent_widget.cli import main
from consent_widget.models import SigningKey


def signing_keys(app) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(SigningKey))


def test_healthz_answers_while_the_process_runs(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ready_with_a_migrated_database_and_a_signing_key(app, client):
    assert app.test_cli_runner().invoke(main, ["keys", "rotate"]).exit_code == 0
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {
        "database": "ok", "migrations": "ok", "signing_key": "ok"}}


def test_readyz_names_a_missing_signing_key_and_does_not_create_one(app, client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "not_ready"
    assert response.json["failing"] == ["signing_key"]
    assert response.json["checks"]["database"] == "ok"
    assert signing_keys(app) == 0


def test_readyz_names_a_database_that_is_not_migrated(app_config, tmp_path):
    app = create_app(dict(app_config, DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "migrations" in response.json["failing"]
    assert response.json["checks"]["database"] == "ok"


def test_readyz_says_an_unreachable_database_without_its_error_text(app_config, tmp_path):
    missing = tmp_path / "no-such-directory" / "db.sqlite3"
    app = create_app(dict(app_config, DATABASE_URL=f"sqlite:///{missing}"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["failing"] == ["database", "migrations", "signing_key"]
    assert response.json["checks"]["database"] == "unreachable"
    assert "no-such-directory" not in response.get_data(as_text=True)
    assert "sqlite" not in response.get_data(as_text=True).lower()


def test_readiness_does_not_wait_for_a_writer(app, client):
    import sqlite3
    from consent_widget import keys
    with app.app_context():
        with db.transaction() as session:
            keys.active_key(session)
    url = app.config["DATABASE_URL"]
    writer = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None) \
        if url.startswith("sqlite") else None
    if writer is not None:
        writer.execute("BEGIN IMMEDIATE")  # a signup holding SQLite's write lock
    try:
        response = client.get("/readyz")
    finally:
        if writer is not None:
            writer.rollback()
            writer.close()
    assert response.status_code == 200 and response.json["status"] == "ready"
