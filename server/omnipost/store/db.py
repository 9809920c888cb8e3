"""The database: an async engine (SQLite + aiosqlite by default), migrated on open."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import ulid
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from omnipost.store import migrations
from omnipost.store.models import Profile

DEFAULT_PROFILE = "default"


def new_id(prefix: str) -> str:
    """A prefixed, time-sortable id (ULID), e.g. post_01JD…"""
    return f"{prefix}_{str(ulid.ULID()).lower()}"


def _touch_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask); SQLite gives its
    -wal and -shm files the database file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


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
        engine = create_async_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        if url.startswith("sqlite"):
            @event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        async with engine.begin() as conn:
            await conn.run_sync(lambda c: migrations.upgrade(c, target_version or migrations.LATEST))
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
            await s.commit()
            return profile

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; commit explicitly."""
        async with self._sessions() as s:
            yield s

    async def close(self) -> None:
        """Dispose of the engine's connections."""
        await self.engine.dispose()
