"""The store: migrations upgrade old files without losing data; files are private; secrets encrypted.

Tests taking the `backend` (or `db`) fixture run twice, on SQLite and on PostgreSQL; the PostgreSQL
run skips (or fails under OMNIPOST_REQUIRE_PG) exactly as tests/pg.py decides.
"""

import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from sqlalchemy import func
from sqlmodel import SQLModel, select

from omnipost.store import migrations
from omnipost.store.crypto import CredentialsError, Vault, load_key
from omnipost.store.db import Database
from omnipost.store.models import Account, Post, Profile  # Account also registers every table on SQLModel.metadata

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
# 2026-01-01 00:00 UTC as each backend's raw SQL literal (SQLite keeps naive UTC text).
TIMESTAMP = {"sqlite": "2026-01-01 00:00:00", "postgresql": "2026-01-01 00:00:00+00"}
# What the migrated schema reflects as, per backend, for the columns whose type differs between them.
NATIVE_TYPES = {
    "sqlite": {"binary": "BLOB", "json": "JSON", "bool": "BOOLEAN", "timestamp": "DATETIME"},
    "postgresql": {"binary": "BYTEA", "json": "JSON", "bool": "BOOLEAN", "timestamp": "TIMESTAMP WITH TIME ZONE"},
}


@dataclass(frozen=True)
class Backend:
    """Which database a test runs on; `url` is what Database.open takes (None: omnipost.db under data_dir)."""

    name: str
    url: str | None


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", None)
    return Backend("postgresql", request.getfixturevalue("pg_url"))  # a fresh database; skips without PostgreSQL


@pytest.fixture
async def db(backend: Backend, tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(backend.url, tmp_path, NOW)
    yield database
    await database.close()


async def check_upgrade_keeps_data(url: str | None, tmp_path: Path, timestamp: str) -> None:
    """Write rows at schema v1, reopen at the latest version: the rows are there (SQLite and PostgreSQL)."""
    old = await Database.open(url, tmp_path, NOW, target_version=1)
    async with old.engine.begin() as conn:
        assert await conn.run_sync(migrations.current_version) == 1
        await conn.execute(sa.text(f"INSERT INTO profiles (id, name, created_at) VALUES ('prf_old', 'legacy', '{timestamp}')"))
        await conn.execute(sa.text(
            "INSERT INTO accounts (id, profile_id, platform, emulates, handle, credentials, defaults, health, created_at) "
            f"VALUES ('acc_old', 'prf_old', 'sandbox', 'x', 'oldie', NULL, '{{}}', 'active', '{timestamp}')"))
    await old.close()
    new = await Database.open(url, tmp_path, NOW)
    async with new.session() as s:
        account = await s.get(Account, "acc_old")
        assert account is not None and account.handle == "oldie" and account.display_name is None
        assert account.created_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    async with new.engine.begin() as conn:
        assert await conn.run_sync(migrations.current_version) == migrations.LATEST
    await new.close()


async def test_a_database_written_by_the_previous_schema_is_upgraded_with_its_data(tmp_path: Path, backend: Backend) -> None:
    await check_upgrade_keeps_data(backend.url, tmp_path, TIMESTAMP[backend.name])
    assert (tmp_path / "omnipost.db").exists() == (backend.name == "sqlite")  # PostgreSQL writes nothing to SQLite


async def test_upgrading_moves_a_posts_bluesky_uri_and_cid_into_its_extras(tmp_path: Path, backend: Backend) -> None:
    """v6: the shared post row loses `uri`/`cid`; their values live on under `extras`, {} for posts without them."""
    old = await Database.open(backend.url, tmp_path, NOW, target_version=5)
    ts = TIMESTAMP[backend.name]
    async with old.engine.begin() as conn:
        for sql in [
            f"INSERT INTO profiles (id, name, created_at) VALUES ('prf_old', 'legacy', '{ts}')",
            "INSERT INTO accounts (id, profile_id, platform, handle, defaults, health, created_at) "
            f"VALUES ('acc_old', 'prf_old', 'bluesky', 'oldie', '{{}}', 'active', '{ts}')",
            "INSERT INTO batches (id, profile_id, request_hash, mode, status, created_at) "
            f"VALUES ('bat_old', 'prf_old', 'h', 'now', 'published', '{ts}')",
        ] + [
            "INSERT INTO posts (id, batch_id, profile_id, account_id, position, platform, status, text, text_hash, content, "
            "upstream_id, uri, url, cid, first_comment_ids, thread_ids, warnings, created_at, updated_at) VALUES "
            f"('{pid}', 'bat_old', 'prf_old', 'acc_old', {n}, 'bluesky', 'published', 'hi', 'h', '{{}}', {upstream}, {upstream}, "
            f"NULL, {cid}, '[]', '[]', '[]', '{ts}', '{ts}')"
            for n, (pid, upstream, cid) in enumerate([("pst_bsky", "'at://did:plc:a/app.bsky.feed.post/k'", "'bafycid'"),
                                                      ("pst_none", "NULL", "NULL")])
        ]:
            await conn.execute(sa.text(sql))
    await old.close()
    new = await Database.open(backend.url, tmp_path, NOW)
    async with new.session() as s:
        bsky, none = await s.get(Post, "pst_bsky"), await s.get(Post, "pst_none")
        assert bsky is not None and none is not None
        assert bsky.extras == {"uri": "at://did:plc:a/app.bsky.feed.post/k", "cid": "bafycid"}
        assert bsky.upstream_id == "at://did:plc:a/app.bsky.feed.post/k"
        assert none.extras == {}
    await new.close()


async def test_migrated_schema_has_exactly_the_models_columns_with_native_types(db: Database, backend: Backend) -> None:
    def columns(conn: sa.Connection) -> dict[str, dict[str, str]]:
        def name(kind: object) -> str:
            return "TIMESTAMP WITH TIME ZONE" if getattr(kind, "timezone", False) else str(kind)

        insp = sa.inspect(conn)
        return {t: {c["name"]: name(c["type"]) for c in insp.get_columns(t)} for t in insp.get_table_names() if t != "schema_version"}

    async with db.engine.connect() as conn:
        actual = await conn.run_sync(columns)
    expected = {name: {c.name for c in table.columns} for name, table in SQLModel.metadata.tables.items()}
    assert {t: set(cols) for t, cols in actual.items()} == expected
    native = NATIVE_TYPES[backend.name]
    assert actual["accounts"]["credentials"] == native["binary"]
    assert actual["webhook_endpoints"]["secret"] == native["binary"]
    assert actual["posts"]["content"] == native["json"]
    assert actual["attempts"]["will_retry"] == native["bool"]
    for table, column in [("posts", "created_at"), ("posts", "next_attempt_at"), ("posts", "lease_until"),
                          ("scheduler_heartbeats", "seen_at"), ("webhook_deliveries", "next_attempt_at")]:
        assert actual[table][column] == native["timestamp"], (table, column)


async def test_the_default_profile_is_created_once_and_kept_across_reopens(tmp_path: Path, backend: Backend, db: Database) -> None:
    first = await db.ensure_default_profile(datetime(2027, 1, 1, tzinfo=timezone.utc))  # already made by open()
    assert first.name == "default" and first.created_at == NOW
    assert (await db.ensure_default_profile(NOW)).id == first.id
    again = await Database.open(backend.url, tmp_path, NOW)
    try:
        assert (await again.ensure_default_profile(NOW)).id == first.id
        async with again.session() as s:
            assert (await s.exec(select(func.count()).select_from(Profile))).one() == 1
    finally:
        await again.close()


async def test_many_processes_opening_a_new_database_at_once_all_find_one_current_schema(tmp_path: Path,
                                                                                         backend: Backend) -> None:
    # A server and a worker (or two MCP clients) starting together on a fresh data directory.
    outcomes: list[str] = []

    async def open_one() -> None:
        try:
            database = await Database.open(backend.url, tmp_path, NOW)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is asserted
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append("ok")
            await database.close()

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(open_one)
    assert outcomes == ["ok"] * 6
    database = await Database.open(backend.url, tmp_path, NOW)
    async with database.engine.begin() as conn:
        assert (await conn.execute(sa.text("SELECT count(*), max(version) FROM schema_version"))).one() == (1, migrations.LATEST)
    async with database.session() as s:
        assert len((await s.exec(select(Profile))).all()) == 1
    await database.close()


async def test_a_migration_that_fails_leaves_the_database_as_it_was(tmp_path: Path, backend: Backend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    old = await Database.open(backend.url, tmp_path, NOW, target_version=1)
    await old.close()

    def half_done(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (id INTEGER)"))
        raise RuntimeError("interrupted mid-migration")

    monkeypatch.setattr(migrations, "MIGRATIONS", [migrations.MIGRATIONS[0], half_done])
    with pytest.raises(RuntimeError):
        await Database.open(backend.url, tmp_path, NOW, target_version=2)
    monkeypatch.undo()
    database = await Database.open(backend.url, tmp_path, NOW, target_version=1)
    async with database.engine.begin() as conn:
        assert await conn.run_sync(migrations.current_version) == 1
        assert not await conn.run_sync(lambda c: sa.inspect(c).has_table("half_done"))
    await database.close()


# SQLite-only: checks the 0600 mode of the SQLite file (PostgreSQL keeps no file in data_dir).
async def test_database_and_key_files_are_private_and_the_default_profile_exists(tmp_path: Path) -> None:
    db = await Database.open(None, tmp_path, NOW)
    profile = await db.ensure_default_profile(NOW)
    assert profile.name == "default"
    load_key(None, tmp_path)
    for name in ("omnipost.db", "secret.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    await db.close()


# No database involved (Vault and the key file only): nothing to run per backend.
def test_credentials_are_encrypted_and_need_the_same_key(tmp_path: Path) -> None:
    vault = Vault(load_key(None, tmp_path))
    sealed = vault.seal({"token": "s3cret-token"})
    assert b"s3cret-token" not in sealed
    assert vault.open(sealed) == {"token": "s3cret-token"}
    assert load_key(None, tmp_path) == load_key(None, tmp_path)  # generated once, then reused
    with pytest.raises(CredentialsError):
        Vault(load_key("another passphrase", tmp_path)).open(sealed)


# SQLite-only: scans the raw bytes of the SQLite files (omnipost.db, -wal) for the token.
async def test_connected_account_credentials_never_reach_the_database_in_clear(settings: "object", clock: "object") -> None:
    from mcp import Client

    from omnipost.app import build_server

    server = build_server(settings, clock=clock)  # type: ignore[arg-type]
    async with Client(server) as client:
        result = await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "secretive"})
        assert not result.is_error
        token = server.runtime.accounts.credentials(await server.runtime.accounts.get(result.structured_content["profileId"], result.structured_content["id"]))["token"]
    raw = b"".join(p.read_bytes() for p in settings.data_dir.glob("omnipost.db*"))  # type: ignore[attr-defined]
    assert token.encode() not in raw and len(token) > 16


def test_switching_a_new_file_to_wal_waits_for_a_connection_that_holds_it(tmp_path: Path) -> None:
    # SQLite refuses the switch at once ("database is locked", no busy handler) while another connection
    # holds the file; a process starting beside another must wait, not fail.
    import sqlite3
    import threading

    from omnipost.store.db import _wal

    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE t (x INTEGER)")
    released = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    released.start()
    starting = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        _wal(starting.cursor(), patience=10)
        assert starting.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert not released.is_alive()  # it did have to wait for the holder
    finally:
        released.join()
        starting.close()
        holder.close()


async def test_a_daily_notice_is_given_once_a_day_across_processes(db: Database, tmp_path: Path, backend: Backend) -> None:
    """versions.daily_notice: of many callers (two processes, each with its own engine), one gets True per day."""
    from omnipost.versions import daily_notice

    other = await Database.open(backend.url, tmp_path, NOW)  # a second process on the same database
    try:
        first, second = daily_notice(db), daily_notice(other)
        key = "version.deprecated:linkedin:202512"
        assert await first(key, NOW) is True
        assert [await first(key, NOW), await second(key, NOW + timedelta(hours=23))] == [False, False]
        assert await second("another.notice", NOW) is True  # each key on its own
        assert await second(key, NOW + timedelta(days=1)) is True
        assert await first(key, NOW + timedelta(days=1, hours=1)) is False
    finally:
        await other.close()


async def test_a_write_waiting_for_another_process_lock_leaves_the_loop_free_and_reads_answer(tmp_path: Path) -> None:
    """store/sqlite_driver.py runs a statement in place only when it cannot wait on another process: while another
    connection holds the write lock, a write waits in the connection's thread (the loop goes on: a read answers from
    the committed state), and it goes through once the lock is released."""
    import sqlite3

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    db = await Database.open(None, tmp_path, now)
    other = sqlite3.connect(tmp_path / "omnipost.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's writer
        other.execute("INSERT INTO profiles (id, name, created_at) VALUES ('prf_other', 'other', '2026-01-01 00:00:00')")
        written, inserting = anyio.Event(), anyio.Event()

        @sa.event.listens_for(db.engine.sync_engine, "before_cursor_execute")
        def _about_to(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if statement.startswith("INSERT INTO profiles"):
                inserting.set()  # the INSERT goes to the driver next: in place it would hold the loop until busy_timeout

        async def write() -> None:
            async with db.session() as s:
                s.add(Profile(id="prf_mine", name="mine", created_at=now))
                await s.commit()
            written.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                await inserting.wait()
                async with db.session() as s:  # the loop is free, and a reader does not wait for the writer
                    names = set((await s.exec(select(Profile.name))).all())
                assert names == {"default"} and not written.is_set()
                other.execute("COMMIT")
                await written.wait()
        async with db.session() as s:
            assert set((await s.exec(select(Profile.name))).all()) == {"default", "other", "mine"}
    finally:
        other.close()
        await db.close()
