"""aiosqlite, with the two calls of every statement that do no I/O made on the event loop's thread.

aiosqlite runs each call of a connection in the connection's own thread: creating a cursor, executing, fetching and
closing the cursor are four round trips to that thread per statement, each ~0.1-0.2 ms of queueing and waking the
loop. Creating a cursor (a Python object) and closing it (resetting a finished statement) do no I/O and take no
lock, so they are made in place; execute, fetch, commit and rollback still go to the thread, so the loop never waits
on the disk or on another process's write lock. A publish of one post makes ~12 statements: ~3 ms less
(bench/publish_overhead.py).

Sharing the sqlite3 connection between the two threads is safe as SQLAlchemy uses it: one task at a time per
connection, each call awaited before the next (check_same_thread=False only lifts Python's own guard; SQLite is
built serialized). Used through SQLAlchemy's `async_creator_fn` connect argument (store/db.py).
"""

import sqlite3
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

ITER_CHUNK_SIZE = 64  # aiosqlite's default


class _Cursor(aiosqlite.Cursor):
    async def close(self) -> None:
        self._cursor.close()


class _Connection(aiosqlite.Connection):
    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return _Cursor(self, self._conn.cursor())


def connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """An aiosqlite connection (awaitable, as aiosqlite.connect's) whose cursors are made and closed in place."""
    kwargs["check_same_thread"] = False

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    connection = _Connection(connector, ITER_CHUNK_SIZE)
    getattr(connection, "_thread", connection).daemon = True  # the worker thread (0.22+), or the connection itself
    return connection
