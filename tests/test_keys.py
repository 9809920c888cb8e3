"""API keys: minting (hash only), verification, revocation, the SDK verifier, the per-key rate limit, and the HTTP transports end to end."""

import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from conftest import NOW
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.errors import InputError, NotFoundError, RateLimitedError, ValidationFailedError
from omnipost.keys import KeyService, OmnipostTokenVerifier, cli_create, cli_list, cli_revoke
from omnipost.ratelimit import RateLimiter
from omnipost.store.db import Database, new_id
from omnipost.store.models import Account, Profile
from test_transports import create_key, keys_cli, running

pytestmark = pytest.mark.anyio

KEY_RE = re.compile(r"^op_(live|test)_[A-Za-z0-9_-]{43}$")
RPC = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
TOOLS_LIST = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(None, tmp_path / "data", NOW)
    yield database
    await database.close()


@pytest.fixture
def service(db: Database, clock: FixedClock) -> KeyService:
    return KeyService(db, clock)


async def _default_profile(db: Database) -> Profile:
    return await db.ensure_default_profile(NOW)


# ---- KeyService -------------------------------------------------------------------------------

async def test_create_returns_the_key_once_and_stores_only_its_hash(tmp_path: Path, db: Database, service: KeyService) -> None:
    profile = await _default_profile(db)
    live, live_plain = await service.create(profile.id, "live", "ci")
    test, test_plain = await service.create(None, "test", None)
    assert KEY_RE.match(live_plain) and live_plain.startswith("op_live_")
    assert KEY_RE.match(test_plain) and test_plain.startswith("op_test_")
    assert live.key_hash == hashlib.sha256(live_plain.encode()).hexdigest()
    assert live.prefix == live_plain[:12] and test.prefix == test_plain[:12]  # op_live_ + 4 characters
    assert (live.profile_id, live.mode, live.name) == (profile.id, "live", "ci")
    assert (test.profile_id, test.mode) == (None, "test")
    await db.close()  # checkpoint and release the files

    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("omnipost.db*"))
    assert live.key_hash.encode() in stored  # the file read is the one holding the keys
    for plain in (live_plain, test_plain):
        secret = plain.split("_", 2)[2]
        assert plain.encode() not in stored and secret.encode() not in stored
        assert secret[4:].encode() not in stored  # not even the part after the display prefix


async def test_verify_accepts_only_current_keys(service: KeyService, db: Database) -> None:
    key, plain = await service.create(None, "live", None)
    found = await service.verify(plain)
    assert found is not None and found.id == key.id
    assert await service.verify(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None  # one character off
    assert await service.verify("op_test_" + plain.removeprefix("op_live_")) is None  # the other mode's prefix
    assert await service.verify("") is None and await service.verify("Bearer " + plain) is None
    assert await service.verify("op_live_" + "x" * 500) is None

    assert await service.has_active()
    revoked = await service.revoke(key.id)
    assert revoked is not None and revoked.revoked_at == NOW
    assert await service.verify(plain) is None
    assert not await service.has_active()
    assert (await service.revoke(key.id)).revoked_at == NOW  # type: ignore[union-attr]  # idempotent
    assert await service.revoke("key_nope") is None
    assert [k.id for k in await service.list()] == [key.id]  # revoked keys stay listed


async def test_last_used_at_is_written_at_most_once_a_minute(service: KeyService, clock: FixedClock) -> None:
    key, plain = await service.create(None, "live", None)
    assert key.last_used_at is None
    assert (await service.verify(plain)).last_used_at == NOW  # type: ignore[union-attr]
    clock.at = NOW + timedelta(seconds=59)
    assert (await service.verify(plain)).last_used_at == NOW  # type: ignore[union-attr]
    clock.at = NOW + timedelta(seconds=61)
    assert (await service.verify(plain)).last_used_at == NOW + timedelta(seconds=61)  # type: ignore[union-attr]


async def test_create_refuses_an_unknown_profile_or_mode(service: KeyService) -> None:
    with pytest.raises(NotFoundError):
        await service.create("prf_missing", "live", None)
    with pytest.raises(ValidationFailedError):
        await service.create(None, "prod", None)
    assert await service.list() == []


async def test_token_verifier_maps_keys_to_scopes(db: Database, service: KeyService) -> None:
    profile = await _default_profile(db)

    async def getter() -> KeyService:
        return service

    verifier = OmnipostTokenVerifier(getter, static_key="op_live_from_the_environment")
    bound, bound_plain = await service.create(profile.id, "test", None)
    org, org_plain = await service.create(None, "live", None)

    token = await verifier.verify_token(bound_plain)
    assert token is not None
    assert token.client_id == bound.id and token.token == bound.id and bound_plain not in token.model_dump_json()
    assert token.scopes == [f"profile:{profile.id}", "mode:test"] and token.expires_at is None
    token = await verifier.verify_token(org_plain)
    assert token is not None and token.client_id == org.id and token.scopes == ["profile:*", "mode:live"]

    env = await verifier.verify_token("op_live_from_the_environment")
    assert env is not None and env.client_id == "env" and env.scopes == ["profile:*", "mode:live"]
    assert "from_the_environment" not in env.model_dump_json()
    assert await verifier.verify_token("op_live_from_the_environmenT") is None
    assert await verifier.verify_token("nonsense") is None

    await service.revoke(bound.id)
    assert await verifier.verify_token(bound_plain) is None  # nothing cached


# ---- RateLimiter ------------------------------------------------------------------------------

def test_rate_limiter_refills_per_second_and_says_when_to_retry(clock: FixedClock) -> None:
    limiter = RateLimiter(3, clock)  # 3 a minute: one token every 20 s
    for _ in range(3):
        limiter.check("key_a")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("key_a")
    assert refused.value.retry_after == 20.0
    error = refused.value.to_error_object("req_1")
    assert (error.code, error.retryAfter, error.retryable) == ("rate_limited", 20.0, True)

    limiter.check("key_b")  # buckets are per key

    clock.at = NOW + timedelta(seconds=5)
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("key_a")
    assert refused.value.retry_after == 15.0  # a refused call takes nothing
    clock.at = NOW + timedelta(seconds=20)
    limiter.check("key_a")  # one token refilled
    with pytest.raises(RateLimitedError):
        limiter.check("key_a")

    clock.at = NOW + timedelta(hours=1)  # a long pause refills to capacity, not beyond
    for _ in range(3):
        limiter.check("key_a")
    with pytest.raises(RateLimitedError):
        limiter.check("key_a")


def test_rate_limiter_fractional_refill(clock: FixedClock) -> None:
    limiter = RateLimiter(120, clock)  # 2 tokens a second
    for _ in range(120):
        limiter.check("k")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("k")
    assert refused.value.retry_after == 0.5
    clock.at = NOW + timedelta(milliseconds=250)
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("k")
    assert refused.value.retry_after == 0.25
    clock.at = NOW + timedelta(milliseconds=500)
    limiter.check("k")
    with pytest.raises(ValueError):
        RateLimiter(0, clock)


# ---- CLI functions ----------------------------------------------------------------------------

async def test_cli_create_list_revoke(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli_create(settings, "default", "test", "laptop") == 0
    created = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert KEY_RE.match(created["key"]) and created["mode"] == "test" and created["profile"].endswith("(default)")
    assert created["id"].startswith("key_") and created["name"] == "laptop"

    assert await cli_create(settings, None, "live", None) == 0
    org = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert org["profile"] == "org-wide"

    with pytest.raises(NotFoundError):  # __main__ prints it as one line on stderr, exit code 2
        await cli_create(settings, "nobody", "live", None)
    with pytest.raises(InputError):
        await cli_create(settings, None, "prod", None)
    assert await cli_create(settings, None, "test", "ci", as_json=True) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert KEY_RE.match(as_json["key"]) and as_json["mode"] == "test" and as_json["profileId"] is None

    assert await cli_list(settings, True) == 0
    listed = capsys.readouterr().out
    rows = json.loads(listed)
    assert [r["id"] for r in rows] == [created["id"], org["id"], as_json["id"]]
    assert rows[0]["prefix"] == created["key"][:12] + "…" and rows[0]["profileName"] == "default" and rows[1]["profileId"] is None
    assert created["key"] not in listed and org["key"] not in listed
    assert await cli_list(settings, False) == 0
    text = capsys.readouterr().out
    assert created["id"] in text and created["key"] not in text

    assert await cli_revoke(settings, created["id"]) == 0
    assert capsys.readouterr().out.startswith(f"revoked {created['id']}")
    with pytest.raises(NotFoundError):
        await cli_revoke(settings, "key_nope")
    assert await cli_revoke(settings, as_json["id"], as_json=True) == 0
    assert json.loads(capsys.readouterr().out) == {"id": as_json["id"], "prefix": as_json["key"][:12] + "…", "revoked": True}
    await cli_list(settings, True)
    assert json.loads(capsys.readouterr().out)[0]["revokedAt"] is not None


# ---- the HTTP transports, end to end ----------------------------------------------------------

def _client(url: str, http: httpx2.AsyncClient) -> Client:
    return Client(streamable_http_client(url, http_client=http))


async def _error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    return result.structured_content["error"]


async def _add_bluesky_account(tmp_path: Path, profile_name: str) -> str:
    """A non-sandbox account row (no tool can connect a real platform yet): what an op_test_ key must not reach."""
    database = await Database.open(None, tmp_path / "data", NOW)
    try:
        async with database.session() as s:
            from sqlmodel import select

            profile = (await s.exec(select(Profile).where(Profile.name == profile_name))).one()
            account = Account(id=new_id("acc"), profile_id=profile.id, platform="bluesky", handle="real.bsky.social",
                              defaults={}, health="active", created_at=NOW)
            s.add(account)
            await s.commit()
            return account.id
    finally:
        await database.close()


async def test_http_keys_scopes_test_mode_and_revocation(tmp_path: Path) -> None:
    org = create_key(tmp_path, "--org", "--mode", "live", "--name", "admin")
    with running(tmp_path, "streamable-http", api_key=None) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(90):
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {org['key']}"}) as http:
                async with _client(url, http) as client:
                    profiles = (await client.call_tool("list_profiles", {})).structured_content["profiles"]  # type: ignore[index]
                    assert [p["name"] for p in profiles] == ["default"]
                    other = (await client.call_tool("create_profile", {"name": "brand-b"})).structured_content
                    assert other is not None and other["name"] == "brand-b"

            # No key, a wrong key, a malformed header: 401 with the §3 body.
            async with httpx2.AsyncClient() as raw:
                for headers in ({}, {"Authorization": "Bearer op_live_" + "A" * 43}, {"Authorization": "Bearer nonsense"},
                                {"Authorization": org["key"]}):
                    refused = await raw.post(url, content=TOOLS_LIST, headers={**RPC, **headers})
                    assert refused.status_code == 401, headers
                    assert refused.json()["error"]["code"] == "unauthenticated"
                    assert refused.headers["www-authenticate"].startswith("Bearer")
                    assert org["key"] not in refused.text

            # A key bound to the default profile: its own profile only.
            bound = create_key(tmp_path, "--profile", "default", "--mode", "live")
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {bound['key']}"}) as http:
                async with _client(url, http) as client:
                    assert not (await client.call_tool("list_accounts", {})).is_error
                    error = await _error_of(await client.call_tool("list_accounts", {"profileId": other["id"]}))
                    assert (error["code"], error["rule"]) == ("unauthorized", "profile.scope_mismatch")
                    reach = (await client.call_tool("list_profiles", {})).structured_content["profiles"]  # type: ignore[index]
                    assert [p["name"] for p in reach] == ["default"]
                    error = await _error_of(await client.call_tool("create_profile", {"name": "brand-c"}))
                    assert error["rule"] == "profile.scope_mismatch"

            # test_mode reaches the tools: an op_test_ key does not see a non-sandbox account; op_live_ does.
            account_id = await _add_bluesky_account(tmp_path, "default")
            request = {"text": "Hello", "targets": [{"accountId": account_id}]}
            test_key = create_key(tmp_path, "--org", "--mode", "test")
            assert test_key["key"].startswith("op_test_")
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {test_key['key']}"}) as http:
                async with _client(url, http) as client:
                    error = await _error_of(await client.call_tool("validate_post", request))
                    assert (error["code"], error["rule"]) == ("not_found", "targets[0].accountId")
                    sandbox = (await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky",
                                                                          "handle": "sandbox.test"})).structured_content
                    assert sandbox is not None
                    ok = await client.call_tool("validate_post", {"text": "Hello", "targets": [{"accountId": sandbox["id"]}]})
                    assert not ok.is_error and ok.structured_content["valid"] is True  # type: ignore[index]
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {org['key']}"}) as http:
                async with _client(url, http) as client:
                    result = await client.call_tool("validate_post", request)
                    assert not result.is_error and result.structured_content["valid"] is True  # type: ignore[index]

            # Revocation while the server runs: the very next request is refused.
            async with httpx2.AsyncClient() as raw:
                auth = {**RPC, "Authorization": f"Bearer {bound['key']}"}
                # (a session-less tools/list is a 400 from the transport, but it got past authentication)
                assert (await raw.post(url, content=TOOLS_LIST, headers=auth)).status_code != 401
                assert keys_cli(tmp_path, "revoke", bound["id"]).returncode == 0
                revoked = await raw.post(url, content=TOOLS_LIST, headers=auth)
                assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "unauthenticated"
                # the org key is untouched
                assert (await raw.post(url, content=TOOLS_LIST, headers={**RPC, "Authorization": f"Bearer {org['key']}"})).status_code != 401


async def test_sse_rate_limit_per_key_and_revocation(tmp_path: Path) -> None:
    first = create_key(tmp_path, "--org", "--mode", "live")
    second = create_key(tmp_path, "--org", "--mode", "live")
    with running(tmp_path, "sse", api_key=None, OMNIPOST_RATE_LIMIT_PER_MINUTE="3") as port:
        url = f"http://127.0.0.1:{port}/sse"
        with anyio.fail_after(60):
            async with Client(sse_client(url, headers={"Authorization": f"Bearer {first['key']}"})) as client:
                for _ in range(3):
                    assert not (await client.call_tool("list_profiles", {})).is_error
                error = await _error_of(await client.call_tool("list_profiles", {}))
                assert error["code"] == "rate_limited" and error["retryable"] is True
                assert 0 < error["retryAfter"] <= 20
                assert (await client.list_tools()).tools  # only tool calls are counted
            async with Client(sse_client(url, headers={"Authorization": f"Bearer {second['key']}"})) as client:
                assert not (await client.call_tool("list_profiles", {})).is_error  # another key, its own bucket

            assert keys_cli(tmp_path, "revoke", first["id"]).returncode == 0
            async with httpx2.AsyncClient() as raw:
                refused = await raw.get(url, headers={"Authorization": f"Bearer {first['key']}"})
                assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"


def test_http_refuses_to_start_when_every_key_is_revoked(tmp_path: Path) -> None:
    import subprocess
    import sys

    from test_transports import _env, _free_port

    key = create_key(tmp_path, "--org", "--mode", "live")
    assert keys_cli(tmp_path, "revoke", key["id"]).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "omnipost", "serve", "--transport", "sse", "--port", str(_free_port())],
        env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "omnipost keys create" in proc.stderr and proc.stdout == ""
