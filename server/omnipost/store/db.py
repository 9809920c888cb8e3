"""The database: an async engine (SQLite + aiosqlite by default, or PostgreSQL + asyncpg), migrated on open."""

import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import ulid
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from omnipost.store import migrations
from omnipost.store.models import Profile

DEFAULT_PROFILE = "default"
# pg_advisory_xact_lock key held while migrating, so workers starting at once migrate one at a time.
MIGRATION_LOCK = 0x6F6D6E69706F7374 & 0x7FFFFFFFFFFFFFFF  # "omnipost"


def new_id(prefix: str) -> str:
    """A prefixed, time-sortable id (ULID), e.g. post_01JD…"""
    return f"{prefix}_{str(ulid.ULID()).lower()}"


def _touch_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask); SQLite gives its
    -wal and -shm files the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _wal(cur: Any, patience: float = 30.0) -> None:
    """Put the file in WAL mode (persistent: once set, every later connection finds it so).

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without its busy
    handler, while another connection of a process starting at the same moment holds it: wait and look again.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            cur.execute("PRAGMA journal_mode")
            if str(cur.fetchone()[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:  # the driver raises sqlite3's own errors
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create_engine(url: str) -> AsyncEngine:
    """An engine for `url`: SQLite gets its pragmas; PostgreSQL (postgresql+asyncpg://) a checked pool."""
    if url.startswith("sqlite"):
        # No pool reset on return: every connection comes back through a Session or Connection that has already
        # committed or rolled back its transaction, so the pool's own ROLLBACK was one more round trip to aiosqlite's
        # thread for each of the 3 sessions of a publish (~0.5 ms each; bench/publish_overhead.py).
        from omnipost.store import sqlite_driver

        engine = create_async_engine(url, connect_args={"timeout": 30, "async_creator_fn": sqlite_driver.connect},
                                     pool_reset_on_return=None)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            _wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    for plain in ("postgresql://", "postgres://"):  # no driver named: the async one
        if url.startswith(plain):
            url = "postgresql+asyncpg://" + url[len(plain):]
    if url.startswith("postgresql"):
        # A 25-target fan-out holds a few sessions at once; pre-ping drops connections the server closed;
        # recycle keeps them from outliving server-side idle timeouts.
        return create_async_engine(url, pool_size=10, max_overflow=20, pool_timeout=30, pool_pre_ping=True,
                                   pool_recycle=1800)
    return create_async_engine(url)


class Database:
    """Engine + session factory for one database URL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str | None, data_dir: Path, now: datetime, *, target_version: int | None = None) -> "Database":
        """Open (creating and migrating as needed) the database; ensure the default profile exists."""
        if url is None:
            path = data_dir / "omnipost.db"
            _touch_private(path)
            url = f"sqlite+aiosqlite:///{path}"
        engine = _create_engine(url)

        def _upgrade(conn: Any) -> int:
            if conn.dialect.name == "postgresql":  # held until this transaction ends
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            elif conn.dialect.name == "sqlite":
                # Python's sqlite3 opens a transaction only before DML, so the version check and the DDL would
                # run outside one: processes starting together on a new file raced to create the schema, and a
                # crash mid-upgrade could leave half of it. Take the write lock first: the others wait for it
                # (busy_timeout), then find the schema current; SQLite's DDL commits or rolls back with it.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            return migrations.upgrade(conn, target_version or migrations.LATEST)

        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        db = cls(engine)
        if target_version is None or target_version >= 1:
            await db.ensure_default_profile(now)
        return db

    async def ensure_default_profile(self, now: datetime) -> Profile:
        """The profile used when a request names none; created at first start."""
        async with self.session() as s:
            found = (await s.exec(select(Profile).where(Profile.name == DEFAULT_PROFILE))).first()
            if found is not None:
                return found
            profile = Profile(id=new_id("prf"), name=DEFAULT_PROFILE, created_at=now)
            s.add(profile)
            try:
                await s.commit()
            except IntegrityError:  # another process starting at the same time created it first
                await s.rollback()
                return (await s.exec(select(Profile).where(Profile.name == DEFAULT_PROFILE))).one()
            return profile

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; commit explicitly."""
        async with self._sessions() as s:
            yield s

    async def close(self) -> None:
        """Dispose of the engine's connections."""
        await self.engine.dispose()
