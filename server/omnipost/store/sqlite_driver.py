"""aiosqlite, with the two calls of every statement that do no I/O made on the event loop's thread.

aiosqlite runs each call of a connection in the connection's own thread: creating a cursor, executing, fetching and
closing the cursor are four round trips to that thread per statement, each ~0.1-0.2 ms of queueing and waking the
loop. Creating a cursor (a Python object) and closing it (resetting a finished statement) do no I/O and take no
lock, so they are made in place; a statement's rows are fetched in the same trip as its execution; a commit or
rollback with no transaction open (a session that only read) makes no trip. Executing, fetching, committing and
rolling back still happen in the thread, so the loop never waits on the disk or on another process's write lock.
A sandbox publish of one post went from 16 trips to 12 (bench/publish_overhead.py).

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
    """Executes and, for a statement that returns rows, fetches them all in the same trip to the connection's thread:
    SQLAlchemy fetches every row of a result right after executing it (its async adaptation buffers them)."""

    _rows: list[Any] | None = None

    async def execute(self, sql: str, parameters: Any = None) -> "_Cursor":
        cursor = self._cursor

        def run() -> list[Any] | None:
            cursor.execute(sql, [] if parameters is None else parameters)
            return cursor.fetchall() if cursor.description else None

        self._rows = await self._execute(run)
        return self

    async def fetchall(self) -> list[Any]:  # type: ignore[override]  # rows, as aiosqlite's
        if self._rows is None:
            return list(await super().fetchall())
        rows, self._rows = self._rows, None
        return rows

    async def fetchone(self) -> Any:
        if self._rows is None:
            return await super().fetchone()
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:  # type: ignore[override]
        if self._rows is None:
            return list(await super().fetchmany(size))
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def close(self) -> None:
        self._cursor.close()


class _Connection(aiosqlite.Connection):
    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return _Cursor(self, self._conn.cursor())

    async def commit(self) -> None:
        """Commit, unless no transaction is open (sqlite3 opens one only before a write: a session that only read
        ends with nothing to commit or roll back, and the trip to the thread would do nothing)."""
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await super().rollback()


def connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """An aiosqlite connection (awaitable, as aiosqlite.connect's) whose cursors are made and closed in place."""
    kwargs["check_same_thread"] = False

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    connection = _Connection(connector, ITER_CHUNK_SIZE)
    getattr(connection, "_thread", connection).daemon = True  # the worker thread (0.22+), or the connection itself
    return connection
