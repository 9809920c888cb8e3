"""TokenSession (oauth/session.py) against a fake rotating token endpoint (tests/fakes/tokens.py) and a real database:
refresh before expiry, committed before use; 401 → one refresh → success; two sessions on one database (two
engines on one SQLite file; two on PostgreSQL) → exactly one token request; a refused refresh → needs_reconnect +
token.revoked; disconnect revokes upstream and still removes the account when that fails; no token in logs or
errors. The clock is injected; every wait is bounded by anyio.fail_after; traffic is in process only."""

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from fakes.tokens import TOKEN_URL, FakeOAuthRefresher, FakeTokenServer, credentials_from, unix
from mcp import Client
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from sqlalchemy import text
from test_tokens import Setup
from toolresult import ok

from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.errors import PlatformAuthError, PlatformUnavailableError
from omnipost.oauth.session import DatabaseCredentialStore, TokenSession, TokenSessions
from omnipost.platforms.base import AccountContext
from omnipost.store.crypto import Vault, load_key
from omnipost.store.db import Database
from omnipost.store.models import Account, Profile
from sqlmodel import select

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
WAIT = 20
ME = TOKEN_URL.rsplit("/", 1)[0] + "/me"


@dataclass
class World:
    """One database (SQLite file or PostgreSQL) holding one OAuth account, and the fake authorization server."""

    clock: FixedClock
    fake: FakeTokenServer
    http: httpx2.AsyncClient
    vault: Vault
    url: str | None
    data_dir: Path
    account_id: str = ""
    refused: list[str] | None = None

    async def open(self) -> Database:
        return await Database.open(self.url, self.data_dir, NOW)

    def sessions(self, db: Database) -> TokenSessions:
        async def on_refused(account_id: str) -> None:
            assert self.refused is not None
            self.refused.append(account_id)

        return TokenSessions(DatabaseCredentialStore(db, self.vault), self.clock,
                             {"x": FakeOAuthRefresher(self.http, clock=self.clock)}, on_refused=on_refused)

    async def stored(self, db: Database) -> dict[str, Any]:
        async with db.session() as s:
            row = await s.get(Account, self.account_id)
            assert row is not None and row.credentials is not None
            return self.vault.open(row.credentials)

    async def context(self, db: Database) -> AccountContext:
        return AccountContext(id=self.account_id, platform="x", handle="someone", credentials=await self.stored(db))


async def _world(tmp_path: Path, url: str | None, *, expires_in: int = 60) -> tuple[World, Database]:
    clock = FixedClock(NOW)
    fake = FakeTokenServer(unix(clock))
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app))
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    world = World(clock, fake, http, Vault(load_key(None, data_dir)), url, data_dir, refused=[])
    db = await world.open()
    answer = fake.issue() | {"expires_in": expires_in}
    async with db.session() as s:
        profile = (await s.exec(select(Profile))).one()
        row = Account(id="acc_oauth1", profile_id=profile.id, platform="x", handle="someone", health="active",
                      credentials=world.vault.seal(credentials_from(answer, NOW)), defaults={}, created_at=NOW)
        s.add(row)
        await s.commit()
    world.account_id = "acc_oauth1"
    return world, db


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[World, Database]]:
    w, db = await _world(tmp_path, None)
    try:
        yield w, db
    finally:
        await db.close()
        await w.http.aclose()


def _no_secret_in(fake: FakeTokenServer, *texts: str) -> None:
    """No access or refresh token the fake ever issued appears in these texts (tokens are "at-N"/"rt-N")."""
    secrets = [*fake.refresh_tokens, *fake.access_tokens]
    for shown in texts:
        for secret in secrets:
            assert f"{secret}\"" not in shown and f"{secret} " not in shown and not shown.endswith(secret), secret


async def test_a_token_about_to_end_is_refreshed_first_and_committed_before_it_is_used(world: tuple[World, Database]) -> None:
    w, db = world
    other = await w.open()  # a second engine: sees only what was committed
    try:
        session = w.sessions(db).get(await w.context(db))
        with anyio.fail_after(WAIT):
            creds = await session.current()  # the access token ends in 60 s: inside the 5-minute margin
        assert w.fake.token_requests() == 1 and creds["access_token"] == "at-2"
        assert (await w.stored(other))["refresh_token"] == "rt-2" == w.fake.valid_refresh_tokens()[0]
        with anyio.fail_after(WAIT):
            assert (await session.current())["access_token"] == "at-2"  # fresh now: no second request
        assert w.fake.token_requests() == 1
    finally:
        await other.close()


async def test_an_expired_answer_refreshes_once_and_the_call_is_repeated(tmp_path: Path) -> None:
    w, db = await _world(tmp_path, None, expires_in=3600)  # fresh for the session's clock ...
    try:
        session = w.sessions(db).get(await w.context(db))

        async def me(token: str) -> httpx2.Response:
            return await w.http.get(ME, headers={"Authorization": f"Bearer {token}"})

        async def call() -> httpx2.Response:  # what an adapter does: a current token; on 401 one refresh, once more
            return await session.with_token(me, expired=lambda response, _token: response.status_code == 401)

        w.fake.expire_access()  # ... but the server has ended it
        with anyio.fail_after(WAIT):
            response = await call()
        assert response.status_code == 200 and w.fake.token_requests() == 1
        assert [p for p, _ in w.fake.requests] == ["/me", "/token", "/me"]
        with anyio.fail_after(WAIT):
            await session.expired("at-1")  # a late caller with the replaced token: no second refresh
        assert w.fake.token_requests() == 1 and (await w.stored(db))["refresh_token"] == "rt-2"
        for _ in range(2):  # refused, and still refused after the refresh: the second answer stands (no loop)
            w.fake.fail_next("/me", 401, {"error": "invalid_token"})
        with anyio.fail_after(WAIT):
            assert (await call()).status_code == 401
        assert w.fake.token_requests() == 2 and [p for p, _ in w.fake.requests].count("/me") == 4
    finally:
        await db.close()
        await w.http.aclose()


async def _two_sessions_refresh_once(w: World, first_db: Database, second_db: Database, *, waiting: Any = None) -> None:
    """A and B (two engines: as two processes) both find the token due; A's token request is held until B is waiting
    for the lock; exactly one token request is made and both end with A's tokens. (Whatever the interleaving, B may
    not make a request: it takes the lock only after A committed, then finds A's tokens.)"""
    a = w.sessions(first_db).get(await w.context(first_db))
    b = w.sessions(second_db).get(await w.context(second_db))
    results: dict[str, str] = {}

    async def run(name: str, session: TokenSession) -> None:
        results[name] = (await session.current())["access_token"]

    w.fake.hold()
    assert w.fake.arrived is not None
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", a)
            await w.fake.arrived.wait()  # A holds the lock and its request is at the server
            tg.start_soon(run, "b", b)
            if waiting is not None:
                await waiting()
            else:  # SQLite: B's wait is in its connection's thread, where nothing shows it; this makes it likely
                await anyio.wait_all_tasks_blocked()
            w.fake.release()
    assert w.fake.token_requests() == 1
    assert results == {"a": "at-2", "b": "at-2"}
    assert (await w.stored(first_db))["refresh_token"] == "rt-2" and w.fake.valid_refresh_tokens() == ["rt-2"]
    assert w.refused == []


async def test_two_engines_on_one_sqlite_file_make_one_token_request(world: tuple[World, Database]) -> None:
    w, db = world
    second = await w.open()
    try:
        await _two_sessions_refresh_once(w, db, second)
    finally:
        await second.close()


async def test_two_engines_on_postgresql_make_one_token_request(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    w, db = await _world(tmp_path, pg_url)
    second = await w.open()

    async def b_waits_for_the_row_lock() -> None:
        while True:  # B's SELECT ... FOR UPDATE is queued behind A's (bounded by the caller's fail_after)
            async with db.engine.connect() as conn:
                waiting = (await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                   "AND datname = current_database()"))).scalar_one()
            if waiting:
                return
            await anyio.sleep(0.01)

    try:
        await _two_sessions_refresh_once(w, db, second, waiting=b_waits_for_the_row_lock)
    finally:
        await second.close()
        await db.close()
        await w.http.aclose()


async def test_the_watcher_renew_skips_what_another_process_renewed(world: tuple[World, Database]) -> None:
    """TokenWatcher's renew(unless_lapses_after): the second process finds the account already renewed past the
    window (under the lock) and sends nothing; a forced renew (no bound) does refresh, with the stored token."""
    w, db = world
    second = await w.open()
    try:
        a = w.sessions(db).get(await w.context(db))
        b = w.sessions(second).get(await w.context(second))
        w.clock.at = NOW + timedelta(days=20)  # the refresh token (30 days) ends within the 14 days asked for
        window = w.clock.now() + timedelta(days=14)
        with anyio.fail_after(WAIT):
            assert await a.renew(unless_lapses_after=window) is True
            assert await b.renew(unless_lapses_after=window) is False  # renewed by A: ends in 30 days now
        assert w.fake.token_requests() == 1 and b.credentials["refresh_token"] == "rt-2"
        async with second.session() as s:
            row = await s.get(Account, w.account_id)
            assert row is not None and row.token_expires_at == w.clock.now() + timedelta(days=30)  # what the watcher reads
        with anyio.fail_after(WAIT):
            assert await b.renew() is True
        assert w.fake.token_requests() == 2 and w.fake.valid_refresh_tokens() == ["rt-3"] and w.refused == []
    finally:
        await second.close()


async def test_a_refused_refresh_marks_the_account_and_keeps_the_stored_tokens(world: tuple[World, Database],
                                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w, db = world
    before = await w.stored(db)
    w.fake.refresh_tokens["rt-1"].revoked = True  # the user revoked the app upstream
    session = w.sessions(db).get(await w.context(db))
    with anyio.fail_after(WAIT), pytest.raises(PlatformAuthError) as caught:
        await session.current()
    assert caught.value.code == "platform_auth_failed" and caught.value.to_error_object().code == "platform_auth_failed"
    assert w.refused == [w.account_id] and await w.stored(db) == before
    shown = [str(caught.value), json.dumps(caught.value.to_error_object().model_dump(), default=str), repr(session), caplog.text]
    _no_secret_in(w.fake, *shown)


async def test_a_failing_token_endpoint_is_retryable_and_changes_nothing(world: tuple[World, Database]) -> None:
    w, db = world
    w.fake.fail_next("/token", 503)
    session = w.sessions(db).get(await w.context(db))
    with anyio.fail_after(WAIT), pytest.raises(PlatformUnavailableError) as caught:
        await session.current()
    assert caught.value.code == "platform_unavailable" and w.refused == []
    assert (await w.stored(db))["refresh_token"] == "rt-1"
    with anyio.fail_after(WAIT):
        assert (await session.current())["access_token"] == "at-2"  # the next try works: the lock was released


async def test_tokens_never_reach_the_logs(world: tuple[World, Database], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    w, db = world
    session = w.sessions(db).get(await w.context(db))
    with anyio.fail_after(WAIT):
        await session.current()
        w.fake.expire_access()
        await session.expired(session.access_token)
    assert w.fake.token_requests() == 2
    assert "acc_oauth1" in caplog.text  # the refreshes are logged, by account id
    _no_secret_in(w.fake, caplog.text, repr(session))


# --- through the server: Bluesky, whose Refresher drives the same session -------------------------------------------

REFRESH = "com.atproto.server.refreshSession"
DELETE_SESSION = "com.atproto.server.deleteSession"


async def test_a_refused_refresh_at_publish_is_needs_reconnect_and_one_token_revoked(settings: Settings,
                                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        profile = (await env.rt.accounts.resolve_profile(None)).id
        creds = env.rt.accounts.credentials(await env.rt.accounts.get(profile, account))
        env.fake.expire_tokens(refresh=True)
        with anyio.fail_after(WAIT):
            batch = ok(await client.call_tool("publish_post", {"text": "No session", "targets": [{"accountId": account}]}))
        assert batch["results"][0]["error"]["code"] == "platform_auth_failed"
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "needs_reconnect"
        assert len(env.fake.calls(REFRESH)) == 1
        assert await env.events() == [("token.revoked", account)]  # the session and publishing both mark it: one event
        text_seen = json.dumps(batch) + caplog.text
        assert creds["accessJwt"] not in text_seen and creds["refreshJwt"] not in text_seen


async def test_disconnect_revokes_the_session_upstream(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        with anyio.fail_after(WAIT):
            out = ok(await client.call_tool("disconnect_account", {"accountId": account}))
        assert (out["health"], out["revoked"], out["warnings"]) == ("disconnected", True, [])
        [call] = env.fake.calls(DELETE_SESSION)
        assert call.auth == "refresh"


async def test_disconnect_removes_the_account_even_when_revoking_fails(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        env.fake.fail_next(DELETE_SESSION, 503, {"error": "InternalServerError", "message": "down"})
        with anyio.fail_after(WAIT):
            out = ok(await client.call_tool("disconnect_account", {"accountId": account}))
        assert (out["health"], out["revoked"], len(out["warnings"])) == ("disconnected", False, 1)
        assert ok(await client.call_tool("list_accounts", {}))["accounts"] == []


async def test_disconnect_of_a_platform_without_revocation_says_unsupported(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        await env.start(client, bluesky=False)
        sandbox = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "sam"}))["id"]
        out = ok(await client.call_tool("disconnect_account", {"accountId": sandbox}))
        assert (out["health"], out["revoked"], len(out["warnings"])) == ("disconnected", "unsupported", 1)


async def test_a_refresh_through_another_session_is_picked_up_not_repeated(settings: Settings) -> None:
    """The account's tokens rotated through another TokenSessions on the same database (as another process would):
    the server, whose session still holds the old tokens, takes the stored ones and never spends the old refresh
    token."""
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        with anyio.fail_after(WAIT):
            ok(await client.call_tool("publish_post", {"text": "first", "targets": [{"accountId": account}]}))
            row = await env.rt.accounts.get((await env.rt.accounts.resolve_profile(None)).id, account)
            other = TokenSessions(DatabaseCredentialStore(env.rt.db, env.rt.accounts.vault), env.clock,
                                  {"bluesky": env.rt.sessions.refresher("bluesky")})
            assert await other.get(env.rt.accounts.context(row)).renew() is True  # "another process" rotates
            env.clock.at += timedelta(hours=3)  # every access token issued before is past its exp now
            batch = ok(await client.call_tool("publish_post", {"text": "second", "targets": [{"accountId": account}]}))
        assert batch["status"] == "published", batch
        assert len(env.fake.calls(REFRESH)) == 2  # the other's, and the server's own (with the stored refresh token)
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "active"


def test_the_oauth_shape_keeps_a_refresh_token_the_provider_did_not_rotate_and_dates_a_rotated_one() -> None:
    from omnipost.oauth.model import TokenSet
    from omnipost.oauth.session import OAUTH_SHAPE

    stored = {"access_token": "a1", "refresh_token": "r1", "expires_at": NOW.isoformat(),
              "refresh_expires_at": (NOW + timedelta(days=60)).isoformat(), "scope": ["w"], "token_type": "Bearer", "extra": {"page": 1}}
    kept = OAUTH_SHAPE.merge(stored, TokenSet("a2", expires_at=NOW + timedelta(hours=1)), NOW)
    assert (kept["access_token"], kept["refresh_token"], kept["extra"]) == ("a2", "r1", {"page": 1})
    assert OAUTH_SHAPE.lapses_at(kept) == NOW + timedelta(days=60) and OAUTH_SHAPE.access_expires_at(kept) == NOW + timedelta(hours=1)
    rotated = OAUTH_SHAPE.merge(stored, TokenSet("a3", "r3", NOW + timedelta(hours=1), extra={"refresh_token_expires_in": 86400}), NOW)
    assert rotated["refresh_token"] == "r3" and OAUTH_SHAPE.lapses_at(rotated) == NOW + timedelta(days=1)
    no_refresh = OAUTH_SHAPE.merge({"access_token": "a1", "expires_at": None}, TokenSet("a4", expires_at=NOW + timedelta(days=60)), NOW)
    assert OAUTH_SHAPE.lapses_at(no_refresh) == NOW + timedelta(days=60)  # Meta's long-lived token: lapses with the access token


async def test_an_adapter_without_a_database_follows_newer_credentials_it_is_given() -> None:
    """The in-memory store (an adapter used alone) takes a reconnect's credentials, and a refresh then uses them."""
    from omnipost.oauth.session import MemoryCredentialStore

    clock = FixedClock(NOW)
    fake = FakeTokenServer(unix(clock))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake.app)) as http:
        sessions = TokenSessions(MemoryCredentialStore(), clock, {"x": FakeOAuthRefresher(http, clock=clock)})
        first = credentials_from(fake.issue(), NOW)
        session = sessions.get(AccountContext(id="acc_m", platform="x", handle="m", credentials=first))
        again = credentials_from(fake.issue(), NOW)  # reconnected: new tokens, the old ones revoked upstream
        fake.refresh_tokens["rt-1"].revoked = True
        assert sessions.get(AccountContext(id="acc_m", platform="x", handle="m", credentials=again)) is session
        with anyio.fail_after(WAIT):
            assert (await session.expired("at-2"))["access_token"] == "at-3"
        assert [sent for path, sent in fake.requests if path == "/token"] == ["rt-2"]
