"""Settings: every one documented, the environment honoured, no production start on a dev secret."""
from __future__ import annotations

import os

import pytest

from consent_widget import create_app
from consent_widget.config import DEVELOPMENT_SECRET, SETTINGS

README = os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")


def test_every_setting_is_documented_in_the_readme():
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    missing = [s.name for s in SETTINGS if f"`CONSENT_{s.name}`" not in text]
    assert missing == []


def test_every_setting_has_help():
    assert all(s.help.strip() for s in SETTINGS)


def test_the_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("CONSENT_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("CONSENT_BASE_URL", "https://consent.example.org")
    monkeypatch.setenv("CONSENT_DECISION_TTL", "120")
    app = create_app()
    assert app.config["SECRET_KEY"] == "from-the-environment"
    assert app.config["BASE_URL"] == "https://consent.example.org"
    assert app.config["DECISION_TTL"] == 120


def test_the_app_refuses_to_start_in_production_with_the_development_secret(monkeypatch):
    monkeypatch.delenv("CONSENT_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with pytest.raises(RuntimeError, match="CONSENT_SECRET_KEY"):
        create_app({"TESTING": False, "SECRET_KEY": DEVELOPMENT_SECRET})


def test_a_decision_may_not_live_longer_than_five_minutes():
    with pytest.raises(RuntimeError, match="300"):
        create_app({"SECRET_KEY": "k", "DECISION_TTL": 301})


@pytest.mark.parametrize("database, threads, worker_class, per_core", [
    (None, 1, "sync", 1),
    ("sqlite:////srv/consent/consent.sqlite3", 1, "sync", 1),
    ("postgresql+psycopg://consent@db.internal/consent", 4, "gthread", 2),
])
def test_gunicorn_settings_follow_the_database(monkeypatch, database, threads, worker_class,
                                               per_core):
    """Single-threaded processes, one per core, on SQLite; threads with a database server."""
    import multiprocessing
    import runpy
    from pathlib import Path
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "CONSENT_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    if database:
        monkeypatch.setenv("CONSENT_DATABASE_URL", database)
    config = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
    settings = runpy.run_path(str(config))
    assert (settings["threads"], settings["worker_class"]) == (threads, worker_class)
    assert settings["workers"] == per_core * multiprocessing.cpu_count()
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    monkeypatch.setenv("GUNICORN_THREADS", "3")
    settings = runpy.run_path(str(config))
    assert (settings["workers"], settings["threads"], settings["worker_class"]) == (
        7, 3, "gthread")
