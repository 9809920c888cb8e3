"""The store: migrations upgrade old files without losing data; files are private; secrets encrypted."""

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from omnipost.store import migrations
from omnipost.store.crypto import CredentialsError, Vault, load_key
from omnipost.store.db import Database
from omnipost.store.models import Account  # noqa: F401 - registers every table on SQLModel.metadata

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


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


async def test_a_database_written_by_the_previous_schema_is_upgraded_with_its_data(tmp_path: Path) -> None:
    await check_upgrade_keeps_data(None, tmp_path, "2026-01-01 00:00:00")


async def test_migrated_schema_has_exactly_the_models_columns(tmp_path: Path) -> None:
    db = await Database.open(None, tmp_path, NOW)

    def columns(conn: sa.Connection) -> dict[str, set[str]]:
        insp = sa.inspect(conn)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names() if t != "schema_version"}

    async with db.engine.connect() as conn:
        actual = await conn.run_sync(columns)
    expected = {name: {c.name for c in table.columns} for name, table in SQLModel.metadata.tables.items()}
    assert actual == expected
    await db.close()


async def test_database_and_key_files_are_private_and_the_default_profile_exists(tmp_path: Path) -> None:
    db = await Database.open(None, tmp_path, NOW)
    profile = await db.ensure_default_profile(NOW)
    assert profile.name == "default"
    load_key(None, tmp_path)
    for name in ("omnipost.db", "secret.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    await db.close()


def test_credentials_are_encrypted_and_need_the_same_key(tmp_path: Path) -> None:
    vault = Vault(load_key(None, tmp_path))
    sealed = vault.seal({"token": "s3cret-token"})
    assert b"s3cret-token" not in sealed
    assert vault.open(sealed) == {"token": "s3cret-token"}
    assert load_key(None, tmp_path) == load_key(None, tmp_path)  # generated once, then reused
    with pytest.raises(CredentialsError):
        Vault(load_key("another passphrase", tmp_path)).open(sealed)


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
