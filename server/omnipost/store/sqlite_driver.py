"""aiosqlite, with the calls that cannot wait on another process made on the event loop's thread.

aiosqlite runs each call of a connection in the connection's own thread, so the event loop never waits on the disk
or on another process's write lock. Each trip there costs queueing, waking the thread and handing the GIL back and
forth: ~0.1 ms on an idle machine, up to ~0.7 ms when the cores are busy (measured with cProfile under load: the
time shows up in the queue's put). A publish made 16 such trips. Now a call goes to the thread only when it may wait:

- in place: creating and closing a cursor (no I/O); a SELECT (in WAL mode a reader never waits for a writer);
  any statement of a transaction that already holds the write lock (after BEGIN IMMEDIATE or a first write in it:
  nothing it does waits on another process); fetching (a statement's rows are fetched as it is executed); a commit
  or rollback with no transaction open (a session that only read).
- in the thread: BEGIN, the first write of a transaction (it may wait for the write lock, up to busy_timeout),
  COMMIT (it writes the WAL and may checkpoint) and ROLLBACK.

A sandbox publish of one post makes 4 trips instead of 16 (bench/publish_overhead.py). What in-place calls may still
do is read pages the OS has not cached, and spill a large transaction's pages to the WAL: bounded, brief file I/O.

Sharing the sqlite3 connection between the two threads is safe as SQLAlchemy uses it: one task at a time per
connection, each call awaited before the next (check_same_thread=False only lifts Python's own guard; SQLite is
built serialized). Used through SQLAlchemy's `async_creator_fn` connect argument (store/db.py).
"""

import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

ITER_CHUNK_SIZE = 64  # aiosqlite's default


# Statements that, once they succeed, leave the transaction holding the write lock (a plain BEGIN or a SAVEPOINT
# does not: it is deferred until the first write).
_TAKE_THE_LOCK = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "BEGIN I", "BEGIN E")


def _verb(sql: str) -> str:
    return sql.lstrip()[:7].upper()


class _Cursor(aiosqlite.Cursor):
    """Executes in place when the statement cannot wait on another process (see the module docstring), else in the
    connection's thread; either way a statement's rows are fetched with it (SQLAlchemy buffers every row of a result
    right after executing it)."""

    _rows: list[Any] | None = None

    async def execute(self, sql: str, parameters: Any = None) -> "_Cursor":
        cursor = self._cursor

        def run() -> list[Any] | None:
            cursor.execute(sql, [] if parameters is None else parameters)
            return cursor.fetchall() if cursor.description else None

        self._rows = await self._conn.call(sql, run)
        return self

    async def executemany(self, sql: str, parameters: Any) -> "_Cursor":
        cursor = self._cursor

        def run() -> None:
            cursor.executemany(sql, parameters)

        self._rows = None
        await self._conn.call(sql, run)
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
    _writing = False  # the open transaction holds the write lock (set after a BEGIN IMMEDIATE or a write, in the thread)

    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return _Cursor(self, self._conn.cursor())

    async def call(self, sql: str, run: Callable[[], Any]) -> Any:
        """Run one statement: in place when it cannot wait on another process, else in the connection's thread."""
        conn = self._conn
        verb = _verb(sql)
        if verb.startswith("SELECT") or (self._writing and conn.in_transaction):
            return run()
        result = await self._execute(run)
        if conn.in_transaction and verb.startswith(_TAKE_THE_LOCK):
            self._writing = True  # the write (or BEGIN IMMEDIATE/EXCLUSIVE) succeeded: the lock is this transaction's
        return result

    async def commit(self) -> None:
        """Commit, unless no transaction is open (sqlite3 opens one only before a write)."""
        self._writing = False
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        self._writing = False
        if self._conn.in_transaction:
            await super().rollback()


def connect(database: str, **kwargs: Any) -> aiosqlite.Connection:
    """An aiosqlite connection (awaitable, as aiosqlite.connect's) whose calls go to its thread only when they may wait."""
    kwargs["check_same_thread"] = False

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, **kwargs)

    connection = _Connection(connector, ITER_CHUNK_SIZE)
    getattr(connection, "_thread", connection).daemon = True  # the worker thread (0.22+), or the connection itself
    return connection
