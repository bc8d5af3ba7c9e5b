"""The SQLAlchemy engine and a session per app context.

SQLite is the embedded default: WAL so readers never wait for the writer, foreign keys on, and
writers queued on a lock file beside the database (see :class:`_WriterQueuedConnection`) so that
each one starts the moment the previous one commits.
"""
from __future__ import annotations

import copy
import fcntl
import os
import sqlite3
import threading
import weakref
from collections import namedtuple
from contextlib import contextmanager
from typing import Iterator

from flask import current_app, g, has_app_context
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DataError, DBAPIError, InvalidRequestError, StatementError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import BadRequest

#: Seconds SQLite's own busy handler waits for a writer that does not queue on the lock file
#: (another program, or a read transaction that turned into a write).
SQLITE_BUSY_TIMEOUT = 30

#: The oldest SQLite with RETURNING.
MIN_SQLITE = (3, 35)

#: Writer locks held by connections of the current thread (see _WriterQueuedConnection).
_held_by_thread = threading.local()


def _locks_held_by_this_thread() -> list[int]:
    """This thread's count of held writer locks, in a list a connection can keep a hold of."""
    held = getattr(_held_by_thread, "held", None)
    if held is None:
        held = _held_by_thread.held = [0]
    return held


class _WriterQueuedConnection(sqlite3.Connection):
    """A pysqlite connection that queues for the write lock on a lock file before BEGIN IMMEDIATE.

    SQLite lets a writer that finds the database locked poll with sleeps of up to 100 ms, so
    under load writers sleep far longer than a transaction holds the lock. An exclusive
    ``flock`` on a file beside the database is a queue instead: a waiter blocks in the kernel
    and wakes as soon as the holder commits or rolls back. Each connection opens the file
    itself, so the lock works between the threads of a process as between processes, and the
    kernel releases it when a process dies, however it dies.
    """

    lock_path: str | None = None
    _lock_fd: int | None = None
    _holds_lock = False

    def acquire_writer_lock(self) -> None:
        """Wait for the write lock; a no-op for a database without a file (in memory)."""
        if self.lock_path is None or self._holds_lock:
            return
        held = _locks_held_by_this_thread()
        if held[0]:
            # Another connection of this thread holds the lock: waiting for it here would wait
            # forever. SQLite's busy handler decides instead, as it would without the queue.
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                        0o600)
            except OSError:
                # Made by another user (a command run as root, say) or on a read-only folder:
                # no queue then, and SQLite's busy handler still keeps writers apart.
                return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        self._holds_lock = True
        self._held = held
        held[0] += 1

    def release_writer_lock(self) -> None:
        """Let the next writer in; a no-op when this connection does not hold the lock."""
        if self._holds_lock:
            self._holds_lock = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            # The count of the thread that took the lock: a connection may be released from
            # another thread (a leaked one, rolled back by the garbage collector).
            self._held[0] -= 1

    def commit(self):
        """Commit, then release the write lock (only then: the next writer would find it busy)."""
        try:
            return super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self):
        """Roll back, then release the write lock."""
        try:
            return super().rollback()
        finally:
            self.release_writer_lock()

    def close(self):
        """Close the connection and its lock file, which releases the lock if held."""
        try:
            super().close()
        finally:
            self.release_writer_lock()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


def _lock_path(url: str) -> str | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database) + "-writer.lock"


def _begin(dbapi_connection: sqlite3.Connection, statement: str) -> None:
    """Start a transaction on the driver's connection; a failure raises the exception class a
    SQLAlchemy statement would (``OperationalError`` for a locked database).

    The statement goes to the driver directly rather than through SQLAlchemy's execution, whose
    cost every transaction would pay (several a request) for a statement that returns nothing.
    So SQLAlchemy's statement events and error handling do not see it; nothing here uses them.
    """
    try:
        dbapi_connection.execute(statement)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` with the pragmas this project relies on for SQLite."""
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            # The ledger writes with INSERT ... RETURNING and UPDATE ... RETURNING.
            raise RuntimeError(f"SQLite {'.'.join(map(str, MIN_SQLITE))} or newer is needed; "
                               f"this Python has SQLite {sqlite3.sqlite_version}")
        connection_class = type("WriterQueuedConnection", (_WriterQueuedConnection,),
                                {"lock_path": _lock_path(url)})
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT,
                                                  "check_same_thread": False,
                                                  "factory": connection_class})

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
            # A request marked read-only (see read_only()) or a block in reading() takes a
            # deferred BEGIN: in WAL mode readers then never queue behind the write lock.
            dbapi_connection = conn.connection.dbapi_connection
            if has_app_context() and not g.get("db_writing", 0) and (
                    g.get("db_read_only", False) or g.get("db_reading", 0)):
                _begin(dbapi_connection, "BEGIN")
                return
            dbapi_connection.acquire_writer_lock()
            try:
                _begin(dbapi_connection, "BEGIN IMMEDIATE")
            except BaseException:
                dbapi_connection.release_writer_lock()
                raise

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

    A write in such a request's own transaction fails on SQLite once another writer has
    committed since its first read; so only requests whose writes are exceptional (the first
    signing key) may use it, and they make those writes in :func:`writing`.
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


def connection() -> Connection:
    """A connection of the current app context for reads that need no ORM (the API's token and
    consent reads), in no transaction of its own.

    A third of what a consent check cost was the ORM session's bookkeeping around its two
    statements, and a transaction begun and rolled back around them cost as much as one of
    them. Without one, on SQLite each read is a snapshot of its own (the token's, then the
    consent's: two facts that do not depend on each other); PostgreSQL's driver begins one
    itself. A statement run through SQLAlchemy (:meth:`Connection.execute`) begins one as
    usual, a read one in a request marked :func:`read_only`.
    """
    if "db_connection" not in g:
        g.db_connection = engine().connect()
    return g.db_connection


class Reader:
    """A connection of the engine's pool as the driver gives it, with the engine's dialect: what
    :func:`driver_rows` needs to run a statement, and nothing that SQLAlchemy's
    :class:`Connection` would add around it. ``home`` is the registry of a reader that is a
    thread's own for its life (see :func:`reader`), None for one of the pool's that goes back
    at the end of the context."""

    __slots__ = ("connection", "dialect", "home")

    def __init__(self, connection, dialect, home: dict | None = None):
        self.connection = connection
        self.dialect = dialect
        self.home = home

    def discard(self) -> None:
        """Close a thread's reader whose driver failed: the thread opens a new one when next
        asked, rather than keep a connection in an unknown state."""
        if self.home is not None:
            for thread, found in list(self.home.items()):
                if found is self:
                    self.home.pop(thread, None)
        # Nor is it this context's any more: a later read of the request opens a new one.
        if has_app_context() and g.get("db_reader") is self:
            g.pop("db_reader")
        # The driver's connection is closed as it is: a detached one has no pool to go back
        # to, and the reset on the way there would fail on a broken connection.
        try:
            self.connection.dbapi_connection.close()
        except Exception:  # a connection that failed may fail to close too: it is dropped
            pass


#: engine -> {thread id: that thread's reader}, on SQLite (see :func:`reader`); an engine's
#: readers go with it.
_HELD_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Readers a forked child inherited: kept, never used or closed (SQLite forbids carrying a
#: connection across fork, and closing one could disturb the parent's locks).
_INHERITED: list = []


def _after_fork() -> None:
    _INHERITED.append(dict(_HELD_READERS))
    _HELD_READERS.clear()


os.register_at_fork(after_in_child=_after_fork)


def reader() -> Reader:
    """A driver connection for the hot path's reads in the current app context (the bearer
    token, its client, a single consent check), each through :func:`driver_rows`.

    Those reads need no SQLAlchemy :class:`Connection`: making one and closing it cost twice
    what checking a connection out of the pool and back in does, on every check. As with
    :func:`connection`, no transaction is begun here: on SQLite each read is a snapshot of its
    own, PostgreSQL's driver begins one itself, and the pool rolls it back on return.

    On SQLite, each thread keeps one such connection for as long as the engine lives, detached
    from the pool: its connection runs in autocommit (transactions are begun explicitly, and
    only for sessions), so a read on it holds nothing between requests and sees every commit,
    and the pool's checkout and return were a tenth of a check's work. A reader whose driver
    fails is closed (:meth:`Reader.discard`). On PostgreSQL, whose driver begins a transaction
    at the first read, the reader is the pool's and goes back at the end of the context.
    """
    found = g.get("db_reader")
    if found is None:
        bound = engine()
        if bound.dialect.name == "sqlite":
            found = _held_reader(bound)
        else:
            found = Reader(bound.raw_connection(), bound.dialect)
        g.db_reader = found
    return found


def first_reads() -> Connection | Reader:
    """Where a request that may write reads what it needs first (its campaign, the signup of
    a link), through :func:`driver_rows`.

    On SQLite, the thread's reader (:func:`reader`): a transaction would take the database's
    write lock before the request knows it will write. On PostgreSQL, the session's
    connection, beginning the transaction the request then writes in: the ledger's lock there
    is the campaign's row, taken by the write itself, and a second connection would cost a
    ping, a BEGIN and a ROLLBACK, each a round trip that costs more than the read.
    """
    return reader() if locks_whole_database() else session().connection()


def locks_whole_database() -> bool:
    """Whether a writer here locks the whole database (SQLite) rather than the rows it writes
    (PostgreSQL, whose ledger lock is the campaign's row): work that can be done before the
    lock is then worth doing there."""
    return engine().dialect.name == "sqlite"


def _held_reader(bound: Engine) -> Reader:
    """This thread's reader of ``bound``, opened on first use."""
    readers = _HELD_READERS.get(bound)
    if readers is None:
        readers = _HELD_READERS.setdefault(bound, {})
        # A disposed engine's connections are closed and the next ones opened afresh (after
        # the database file was replaced, say): its readers too.
        event.listen(bound, "engine_disposed", _close_readers)
    thread = threading.get_ident()
    found = readers.get(thread)
    if found is None:
        connection = bound.raw_connection()
        connection.detach()  # the thread's own from now on: closing it closes it
        found = readers[thread] = Reader(connection, bound.dialect, readers)
    if len(readers) > threading.active_count():
        # Some are of threads that have ended (a server that starts a thread per request):
        # closed, so that no more are kept than there are threads alive.
        alive = {each.ident for each in threading.enumerate()}
        for ended in [ident for ident in readers if ident not in alive]:
            readers[ended].discard()
    return found


def _close_readers(bound: Engine) -> None:
    for found in list(_HELD_READERS.pop(bound, {}).values()):
        found.discard()


def _same(value):
    return value


#: How many sizes of a read's IN lists are kept compiled, per statement.
MAX_IN_SIZES = 16

#: A parameter not given (None is a value).
_MISSING = object()


class _DriverStatement:
    """A statement compiled once for a dialect, run on the driver's own cursor: a read, or a
    write (INSERT or UPDATE, with or without RETURNING) of a given set of columns."""

    def __init__(self, statement, dialect, column_keys: tuple | None = None):
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        # An expanding IN list renders a parameter per element: the statement is then made
        # once per number of elements (see :meth:`_sized`), and this one is their template.
        self.expanding = tuple(name for name, bind in compiled.binds.items() if bind.expanding)
        if self.expanding and statement.is_dml:
            raise ValueError("a write with an IN list runs on the connection")
        if any(bind.literal_execute for bind in compiled.binds.values()):
            # Its value is written into the statement's text at each execution: a text kept
            # per size would keep the first value.
            raise ValueError("a literal_execute parameter runs on the connection")
        self._compiled = compiled if self.expanding else None
        self._sizes: dict[tuple, _DriverStatement] = {}
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup) if compiled.positional else None
        self.bind_processors = {
            name: processor for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))}
        # Values written in the statement itself (``id == 1``), converted once; and a write's
        # columns left out of its parameters, which take their default (a constant here, a
        # function such as ``utcnow`` on each execution) as SQLAlchemy's execution would.
        given = set(column_keys or ())
        written = {name: value for name, value in compiled.params.items()
                   if name not in given and not compiled.binds[name].required}
        self.per_row_defaults = {}
        for column in (*getattr(compiled, "insert_prefetch", ()),
                       *getattr(compiled, "update_prefetch", ())):
            default = column.default if statement.is_insert else column.onupdate
            if default.is_scalar:
                written[column.key] = default.arg
            elif default.is_callable:
                self.per_row_defaults[column.key] = default.arg
            else:
                raise ValueError(f"{column} has a default SQLAlchemy must work out: give it")
        self.defaults = {name: self.bind_processors.get(name, _same)(value)
                         for name, value in written.items()}
        # A positional statement's parameters in order, each with its type's conversion: the
        # driver's tuple made in one pass, without the dicts of the general case.
        self.plan = tuple((name, self.bind_processors.get(name)) for name in self.names) \
            if self.names is not None else None
        columns = (compiled.returning or []) if statement.is_dml else statement.selected_columns
        self.returns = bool(columns)
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                      for column in columns]
        self.result_processors = processors if any(processors) else None
        # A column selected twice keeps its place; the second is named by position.
        self.row = namedtuple("Row", [column.key for column in columns], rename=True)

    def rows(self, connection: Connection | Reader, params: dict) -> list:
        """The statement's rows for ``params``, converted as SQLAlchemy would convert them."""
        if self.expanding:
            sized, params = self._sized(params)
            return sized.rows(connection, params)
        bound = self._checked_bound(params)
        driver_error = connection.dialect.loaded_dbapi.Error
        cursor = None
        try:
            cursor = connection.connection.cursor()
            cursor.execute(self.sql, bound)
            fetched = cursor.fetchall() if self.returns else []
        except driver_error as exc:
            try:
                if cursor is not None:
                    cursor.close()
            except driver_error:  # the connection is gone: so is its cursor
                pass
            if getattr(connection, "home", None) is not None:
                connection.discard()
            # Raised as SQLAlchemy would raise it, so the app's handlers (a value the database
            # cannot store is a 400) see it as they see every other statement's.
            raise DBAPIError.instance(self.sql, bound, exc, driver_error,
                                      dialect=connection.dialect) from exc
        cursor.close()
        return self._made(fetched)

    def _made(self, fetched: list) -> list:
        """The driver's rows as named tuples, values converted by the columns' types."""
        make, processors = self.row._make, self.result_processors
        if processors is None:
            return [make(values) for values in fetched]
        return [make([value if process is None else process(value)
                      for process, value in zip(processors, values)]) for values in fetched]


    def _sized(self, params: dict) -> tuple[_DriverStatement, dict]:
        """The statement for as many elements as ``params``' IN lists have, made as SQLAlchemy
        expands it (one parameter per element, ``name_1``, ``name_2``...), and ``params``
        with each list spread onto those names."""
        try:
            # None is no element, as SQLAlchemy reads it.
            lists = {name: [] if params[name] is None else list(params[name])
                     for name in self.expanding}
        except (KeyError, TypeError) as exc:
            raise StatementError(f"{type(exc).__name__}: {exc}", self.sql, params, exc) from exc
        sizes = tuple(len(values) for values in lists.values())
        sized = self._sizes.get(sizes)
        if sized is None:
            try:
                expanded = self._compiled.construct_expanded_state({**params, **lists})
            except InvalidRequestError as exc:  # a parameter missing: as a kept size says it
                raise StatementError(str(exc), self.sql, params, exc) from exc
            sized = copy.copy(self)
            sized.expanding, sized._compiled, sized._sizes = (), None, {}
            sized.sql = expanded.statement
            sized.names = tuple(expanded.positiontup) if self.names is not None else None
            names = {f"{name}_{number}" for name, values in lists.items()
                     for number in range(1, len(values) + 1)}
            if not names <= set(expanded.parameters):
                raise ValueError(f"unexpected expansion of {', '.join(self.expanding)}")
            sized.bind_processors = {
                name: processor for name, processor in
                {**self.bind_processors, **expanded.processors}.items()
                if name not in self.expanding}
            sized.plan = tuple((name, sized.bind_processors.get(name)) for name in sized.names) \
                if sized.names is not None else None
            if len(self._sizes) < MAX_IN_SIZES:  # a few sizes are kept; others made each time
                self._sizes[sizes] = sized
        spread = {name: value for name, value in params.items() if name not in lists}
        for name, values in lists.items():
            spread.update((f"{name}_{number}", value)
                          for number, value in enumerate(values, start=1))
        return sized, spread

    def _checked_bound(self, params: dict):
        """:meth:`_bound`, a parameter missing or of a type its column cannot convert raised as
        SQLAlchemy raises it (:class:`StatementError`), before anything is sent."""
        try:
            return self._bound(params)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StatementError(f"{type(exc).__name__}: {exc}", self.sql, params, exc) from exc

    def _bound(self, params: dict):
        """``params`` converted for the driver, with the statement's own values and defaults."""
        if self.per_row_defaults:
            params = {**{name: make(None) for name, make in self.per_row_defaults.items()},
                      **params}
        if self.plan is not None:
            defaults = self.defaults
            return tuple([(value if process is None else process(value))
                          if (value := params.get(name, _MISSING)) is not _MISSING
                          else defaults[name] for name, process in self.plan])
        given = {name: self.bind_processors.get(name, _same)(value)
                 for name, value in params.items()} if self.bind_processors else params
        params = {**self.defaults, **given} if self.defaults else given
        return params if self.names is None else tuple(params[name] for name in self.names)

    def run_many(self, connection: Connection, many: list[dict]) -> list:
        """Execute the statement once per parameter set of ``many``; its RETURNING rows, if any.

        One ``executemany`` of the driver, which psycopg sends in one round trip, results and
        all; sqlite3's returns no rows, so a write that returns runs once per set there (each
        an in-process call, not a round trip).
        """
        if self.returns and connection.dialect.driver != "psycopg":
            return [row for params in many for row in self.rows(connection, params)]
        driver_error = connection.dialect.loaded_dbapi.Error
        cursor = connection.connection.cursor()
        fetched = []
        try:
            if not self.returns:
                cursor.executemany(self.sql, [self._checked_bound(params) for params in many])
                return []
            cursor.executemany(self.sql, [self._checked_bound(params) for params in many],
                               returning=True)
            while True:
                fetched.extend(cursor.fetchall())
                if not cursor.nextset():
                    break
        except driver_error as exc:
            raise DBAPIError.instance(self.sql, None, exc, driver_error,
                                      dialect=connection.dialect) from exc
        finally:
            cursor.close()
        return self._made(fetched)


#: (statement, dialect, driver[, columns written]) -> its compiled form; a few statements,
#: each compiled once. Keyed by the statement object: statements given to driver_rows and
#: driver_write are module-level constants, built once; one built on each call would be
#: compiled and kept on each call.
_driver_statements: dict[tuple, _DriverStatement] = {}


def driver_rows(connection: Connection | Reader, statement, params: dict | None = None) -> list:
    """The rows of a read ``statement`` (a SQLAlchemy ``select``), executed on ``connection``'s
    driver cursor in its transaction: named tuples, values converted by the columns' types.

    For the reads of the hot paths (a consent check, a signup and its confirmation).
    SQLAlchemy's execution of a statement (its cache key, execution context and result object)
    costs ten times what SQLite takes to answer an indexed read; here the statement is compiled once
    for the dialect, and each execution is the driver's alone. Its parameters are given by
    name; an expanding ``IN`` list is rendered as SQLAlchemy renders it, once per number of
    elements (up to :data:`MAX_IN_SIZES` of them kept). ``statement`` must be built once, at
    module level: compiled forms are kept by statement object.
    """
    dialect = connection.dialect
    key = (statement, dialect.name, dialect.driver)
    compiled = _driver_statements.get(key)
    if compiled is None:
        compiled = _driver_statements[key] = _DriverStatement(statement, dialect)
    return compiled.rows(connection, params or {})


def driver_write(connection: Connection, statement, params: dict | list[dict]) -> list:
    """Run a write ``statement`` (a SQLAlchemy ``insert`` or ``update``) on ``connection``'s
    driver cursor in its transaction, once per parameter set; return the rows its RETURNING
    gives, in the order of the parameter sets (none without RETURNING). Several sets are sent
    in one ``executemany`` where the driver returns rows from it (psycopg).

    For the writes of a signup and its confirmation, a dozen small statements a request each of
    which cost SQLAlchemy's execution several times what the database takes: as with
    :func:`driver_rows`, the statement is compiled once per dialect (and per set of columns
    given), values are converted by the columns' types, and columns left out take their
    defaults. Parameter sets of one call give the same columns. SQLAlchemy's statement events
    do not see these statements; nothing here uses them. As for :func:`driver_rows`,
    ``statement`` is built once, at module level.
    """
    many = params if isinstance(params, list) else [params]
    if not many:
        return []
    dialect = connection.dialect
    columns = tuple(many[0])
    key = (statement, dialect.name, dialect.driver, columns)
    compiled = _driver_statements.get(key)
    if compiled is None:
        compiled = _driver_statements[key] = _DriverStatement(statement, dialect, columns)
    if len(many) > 1 and any(each.keys() != many[0].keys() for each in many[1:]):
        raise ValueError("each parameter set of one write gives the same columns")
    if len(many) > 1:
        return compiled.run_many(connection, many)
    return compiled.rows(connection, many[0])


def close_session(_exc=None) -> None:
    """Close the context's session and connections; an unfinished transaction is rolled back."""
    context = g._get_current_object()
    db_session = context.pop("db_session", None)
    if db_session is not None:
        db_session.close()
    db_connection = context.pop("db_connection", None)
    if db_connection is not None:
        db_connection.close()
    db_reader = context.pop("db_reader", None)
    if db_reader is not None and db_reader.home is None:  # a thread's own reader stays open
        db_reader.connection.close()


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


@contextmanager
def writing() -> Iterator[Session]:
    """Run a block in a session and transaction of its own that writes, committed when the block
    ends, even in a request marked read-only: on SQLite it queues for the write lock.

    For the rare write of a request that otherwise only reads (the first signing key), which
    its own read transaction could not make once another writer has committed. Enter it with no
    write transaction open in this thread: on SQLite it would wait for that one's lock. While
    it runs, any transaction the context begins is a write one.
    """
    if _locks_held_by_this_thread()[0]:
        raise RuntimeError("db.writing() entered while this thread holds the write lock")
    db_session = current_app.extensions["consent_db"]()
    g.db_writing = g.get("db_writing", 0) + 1
    try:
        with db_session.begin():
            yield db_session
    finally:
        g.db_writing -= 1
        db_session.close()


@contextmanager
def reading() -> Iterator[Session]:
    """Run a block that only reads in a transaction of its own, committed when the block ends.

    On SQLite it starts deferred, so it neither waits for nor holds up the writers: the work a
    request can do before it writes (finding the campaign, checking the form and the token)
    runs here, and only the writes themselves wait for the write lock. Enter it with no
    transaction open: it would end that one.
    """
    g.db_reading = g.get("db_reading", 0) + 1
    try:
        with transaction() as db_session:
            yield db_session
    finally:
        g.db_reading -= 1
