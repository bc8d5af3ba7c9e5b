"""The SQLAlchemy engine and a session per app context.

SQLite is the embedded default: WAL so readers never wait for the writer, foreign keys on, and a
busy timeout so concurrent writers queue instead of failing.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from flask import current_app, g, has_app_context
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import BadRequest


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` with the pragmas this project relies on for SQLite."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # pysqlite's own transaction handling delays BEGIN until the first write, which lets
            # two writers read the same ledger head; we issue BEGIN IMMEDIATE ourselves instead.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # A request marked read-only (see read_only()) takes a deferred BEGIN: in WAL mode
            # readers then never queue behind the write lock, which would serialise the API.
            deferred = has_app_context() and g.get("db_read_only", False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def _refuse_unstorable_input(exc: DataError):
    # PostgreSQL refuses values that SQLite stores: a NUL character in a text, an integer past
    # its column's range, a string longer than its column. Only a request's input gets that far
    # unchecked, so it is the client's error (400), and answered alike on both databases.
    current_app.logger.info("request refused by the database: %s", type(exc.orig).__name__)
    close_session()
    return current_app.handle_http_exception(
        BadRequest("The request carries a value this service cannot store."))


def read_only() -> None:
    """Declare that this request only reads: on SQLite its transactions start deferred.

    A write in such a request still works (SQLite upgrades the transaction) unless another
    writer committed since its first read, in which case it fails; so only requests whose
    writes are exceptional (the first signing key) may use it.
    """
    g.db_read_only = True


def init_app(app) -> None:
    """Give ``app`` its engine and session factory, and close the session after each context."""
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["consent_db"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_session)
    app.register_error_handler(DataError, _refuse_unstorable_input)


def engine() -> Engine:
    """The current app's engine."""
    return current_app.extensions["consent_db"].kw["bind"]


def session() -> Session:
    """The session of the current app context, created on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["consent_db"]()
    return g.db_session


def close_session(_exc=None) -> None:
    """Close the context's session; an unfinished transaction is rolled back."""
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


@contextmanager
def transaction() -> Iterator[Session]:
    """Run a block in one transaction of the context's session: commit on success, else roll back."""
    db_session = session()
    try:
        yield db_session
        db_session.commit()
    except BaseException:
        db_session.rollback()
        raise
