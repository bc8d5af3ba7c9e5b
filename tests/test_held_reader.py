"""On SQLite, each thread keeps its hot-path reader for the engine's life (db.reader), instead of
taking a connection from the pool and giving it back on every check. It must still see every
commit made elsewhere, belong to one thread, and be replaced when it fails or its engine is
disposed."""
import sqlite3
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from consent_widget import create_app, db
from consent_widget.models import Campaign
from helpers import give, withdraw
from test_api import basic, check, platform, token  # noqa: F401 (fixtures)


@pytest.fixture
def sqlite_app(app):
    if not app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("PostgreSQL's reader is the pool's, returned after each request")
    return app


@pytest.fixture
def other(sqlite_app, app_config):
    """A second instance of the app on the same database, as a second server would be."""
    second = create_app(dict(app_config, DATABASE_URL=sqlite_app.config["DATABASE_URL"]))
    yield second
    with second.app_context():
        db.engine().dispose()


def _readers(instance) -> dict:
    with instance.app_context():
        return db._HELD_READERS.get(db.engine(), {})


def _allowed(instance, token) -> bool:
    response = check(instance.test_client(), token, email="a@example.test", purpose="newsletter")
    assert response.status_code == 200, response.json
    return response.json["allowed"]


def test_a_held_reader_sees_a_withdrawal_committed_by_another_instance(sqlite_app, other, token):
    give(sqlite_app, "demo", "a@example.test", newsletter=True)
    assert _allowed(other, token)
    held = _readers(other)[threading.get_ident()]
    withdraw(sqlite_app, "demo", "a@example.test", "newsletter")
    assert not _allowed(other, token)
    # The same connection answered both checks: it was kept, and it read afresh.
    assert _readers(other)[threading.get_ident()] is held


def test_each_thread_reads_on_a_connection_of_its_own(sqlite_app, other, token):
    give(sqlite_app, "demo", "a@example.test", newsletter=True)
    assert _allowed(other, token)
    answers = []
    worker = threading.Thread(target=lambda: answers.append(_allowed(other, token)))
    worker.start()
    worker.join()
    assert answers == [True]
    readers = _readers(other)
    assert len(readers) == 2
    first, second = readers.values()
    assert first.connection.dbapi_connection is not second.connection.dbapi_connection


def test_a_reader_whose_driver_fails_is_replaced(sqlite_app, campaign):
    statement = select(Campaign.slug)
    with sqlite_app.app_context():
        broken = db.reader()
        broken.connection.dbapi_connection.close()  # as a failed driver connection would be
        with pytest.raises(DBAPIError):
            db.driver_rows(broken, statement)
        # Not this context's any more either: a later read of the same request opens another.
        assert db.reader() is not broken
        assert [row.slug for row in db.driver_rows(db.reader(), statement)] == ["demo"]
    with sqlite_app.app_context():
        fresh = db.reader()
        assert fresh is not broken
        assert [row.slug for row in db.driver_rows(fresh, statement)] == ["demo"]


def test_disposing_the_engine_closes_its_readers(sqlite_app):
    with sqlite_app.app_context():
        held = db.reader()
        connection = held.connection.dbapi_connection
        db.engine().dispose()
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            connection.execute("SELECT 1")
    with sqlite_app.app_context():
        assert db.reader() is not held
        assert db.reader().connection.dbapi_connection.execute("SELECT 1").fetchone() == (1,)


def test_the_readers_of_ended_threads_are_closed_once_they_outnumber_the_threads_alive(
        sqlite_app, campaign):
    # A server that starts a thread per request must not keep a connection per thread it ran.
    opened, release = {}, threading.Event()

    def read(name, wait=False):
        with sqlite_app.app_context():
            reader = db.reader()
            db.driver_rows(reader, select(Campaign.slug))
            opened[name] = reader.connection.dbapi_connection
        if wait:
            release.wait(10)

    # More threads alive at once (so each with an id of its own) than there are now, then ended.
    count = threading.active_count() + 1
    workers = [threading.Thread(target=read, args=(number, True)) for number in range(count)]
    for worker in workers:
        worker.start()
    while len(opened) < count:
        threading.Event().wait(0.01)
    assert len(_readers(sqlite_app)) == count
    release.set()
    for worker in workers:
        worker.join()
    # The next read (here the main thread's) finds more readers than threads alive: those of
    # the ended threads are closed.
    read("main")
    assert list(_readers(sqlite_app)) == [threading.get_ident()]
    for number in range(count):
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            opened[number].execute("SELECT 1")
    assert opened["main"].execute("SELECT 1").fetchone() == (1,)
