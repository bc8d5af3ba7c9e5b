"""SQLite writers queue on the lock file beside the database instead of polling SQLite's lock.

Each test gives SQLite's own busy handler no time at all (``PRAGMA busy_timeout=0``): a writer
that reached ``BEGIN IMMEDIATE`` while another held the database would fail at once with
"database is locked". Only the queue keeps them apart, between threads as between processes,
and a process killed while holding it lets the next writer in.
"""
from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from consent_widget import db

HOLD = 0.05


def impatient_engine(path):
    """An engine on ``path`` whose connections never wait in SQLite's busy handler."""
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS tally (n INTEGER)"))

    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_busy_wait(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    engine.dispose()
    return engine


def add_one_slowly(engine) -> None:
    """Read the tally, hold the write transaction a while, then write the tally plus one."""
    with engine.begin() as connection:
        count = connection.execute(text("SELECT count(*) FROM tally")).scalar_one()
        time.sleep(HOLD)
        connection.execute(text("INSERT INTO tally (n) VALUES (:n)"), {"n": count + 1})


def test_writers_in_threads_wait_for_each_other_instead_of_failing(tmp_path):
    engine = impatient_engine(tmp_path / "queue.sqlite3")
    errors = []
    barrier = threading.Barrier(6)

    def writer():
        try:
            barrier.wait()
            for _ in range(3):
                add_one_slowly(engine)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with engine.connect() as connection:
        tallies = connection.execute(text("SELECT n FROM tally ORDER BY rowid")).scalars().all()
    # Every writer saw the one before it: the transactions never overlapped.
    assert tallies == list(range(1, 19))
    engine.dispose()


HOLDER = """
import sys, time
from sqlalchemy import text
from consent_widget import db
engine = db.make_engine("sqlite:///" + sys.argv[1])
with engine.begin() as connection:
    connection.execute(text("INSERT INTO tally (n) VALUES (0)"))
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def start_holder(path, seconds: float) -> subprocess.Popen:
    """Another process that takes the write lock and keeps it for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_writer_waits_for_a_writer_of_another_process(tmp_path):
    path = tmp_path / "queue.sqlite3"
    engine = impatient_engine(path)
    holder = start_holder(path, 0.3)
    try:
        add_one_slowly(engine)  # would fail with "database is locked" without the queue
    finally:
        holder.wait(30)
    assert holder.returncode == 0
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM tally ORDER BY rowid")).scalars().all() \
            == [0, 2]
    engine.dispose()


def test_the_lock_of_a_killed_process_is_released(tmp_path):
    path = tmp_path / "queue.sqlite3"
    engine = impatient_engine(path)
    holder = start_holder(path, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    add_one_slowly(engine)  # neither the queue nor SQLite keeps the dead writer's lock
    with engine.connect() as connection:
        # The killed transaction never committed.
        assert connection.execute(text("SELECT n FROM tally")).scalars().all() == [1]
    engine.dispose()


def test_a_second_connection_of_the_same_thread_does_not_wait_for_the_first(tmp_path):
    # Waiting on the queue would wait forever; SQLite's own answer comes instead, as the
    # error SQLAlchemy gives for a failed statement (the BEGIN goes to the driver directly).
    engine = impatient_engine(tmp_path / "queue.sqlite3")
    with engine.begin():
        with engine.connect() as second:
            with pytest.raises(OperationalError, match="database is locked"):
                with second.begin():
                    pass
    engine.dispose()


def test_a_writer_whose_begin_fails_lets_the_next_writer_in(tmp_path):
    """A program that does not queue on the lock file holds SQLite's lock: the writer that took
    the queue's lock fails at BEGIN IMMEDIATE, and must leave the queue free behind it."""
    path = tmp_path / "outsider.sqlite3"
    engine = impatient_engine(path)
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    with engine.connect() as connection:
        with pytest.raises(OperationalError, match="database is locked"):
            connection.begin()
        # Before the connection goes back to the pool, whose rollback would release it too.
        with open(f"{path}-writer.lock", "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    outsider.rollback()
    outsider.close()
    add_one_slowly(engine)
    engine.dispose()


def test_a_lock_file_that_cannot_be_opened_leaves_writes_to_sqlite(tmp_path):
    """A lock file this user may not open (made by root, say) must not stop every write: the
    writer goes on without the queue, and SQLite's busy handler keeps writers apart."""
    path = tmp_path / "shared.sqlite3"
    engine = db.make_engine(f"sqlite:///{path}")
    os.mkdir(f"{path}-writer.lock")  # what cannot be opened as a file, even by root
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE tally (n INTEGER)"))
        connection.execute(text("INSERT INTO tally (n) VALUES (1)"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM tally")).scalars().all() == [1]
    engine.dispose()


def test_a_lock_released_from_another_thread_leaves_both_threads_free(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'leak.sqlite3'}")
    raw = engine.raw_connection()
    dbapi = raw.dbapi_connection
    dbapi.acquire_writer_lock()
    releaser = threading.Thread(target=dbapi.release_writer_lock)
    releaser.start()
    releaser.join()
    raw.close()
    # This thread holds nothing any more, so its next writer queues on the file as usual.
    assert db._locks_held_by_this_thread() == [0]
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    engine.dispose()
