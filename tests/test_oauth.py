"""OAuth 2.0 authorization code + PKCE and the connect flow (issue 12 items 1-2), against a real authorization server
(oidc-provider on loopback, tests/oauth_as.py): through the MCP tools, the loopback listener, the paste fallback, the
terminal, and the OAuthClient/OAuthRefresher directly for what a standards-strict server refuses."""

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

import oauth_as
from mediagen import make_image
from oauth_as import AuthServer, consent
from omnipost.app import OmnipostServer, build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.errors import PlatformAuthError
from omnipost.oauth.client import OAuthClient, OAuthRefresher, credentials_from, new_verifier
from omnipost.oauth.providers import PROVIDERS, provider_for
from s3server import ACCESS_KEY_ID, REGION, S3, SECRET_ACCESS_KEY, s3  # noqa: F401 - the fixture
from test_publishing import received

pytestmark = pytest.mark.anyio
auth_server = oauth_as.auth_server

REPO_ROOT = Path(__file__).resolve().parents[1]
PUBLISHABLE = ("x", "linkedin", "facebook", "threads")  # text-only posts are valid there (Instagram, Pinterest need media:
# test_the_media_platforms_connected_through_oauth_publish_a_local_image)


@pytest.fixture
def as_env(auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = auth_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def oauth_settings(tmp_path: Path, auth_server: AuthServer) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", upstream_allow_loopback=True,  # type: ignore[call-arg]
                    oauth_redirect_port=auth_server.redirect_port, scheduler_enabled=False, _env_file=None)


@pytest.fixture
def oauth_server(oauth_settings: Settings, clock: FixedClock, as_env: dict[str, str]) -> OmnipostServer:
    return build_server(oauth_settings, clock=clock)


@pytest.fixture
async def mcp(oauth_server: OmnipostServer) -> AsyncIterator[Client]:
    async with Client(oauth_server) as c:
        yield c


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    return result.structured_content["error"]


async def start(mcp: Client, platform: str = "x", **extra: Any) -> dict[str, Any]:
    started = ok(await mcp.call_tool("connect_account", {"platform": "sandbox", "emulates": platform, "oauth": True, **extra}))
    assert started["status"] == "pending" and started["state"] and started["authorizationUrl"]
    return started


async def test_each_oauth_platform_connects_through_the_loopback_listener_and_its_account_publishes(
        mcp: Client, auth_server: AuthServer) -> None:
    for platform in PROVIDERS:
        started = await start(mcp, platform)
        assert started["redirectUri"] == auth_server.redirect_uri
        with anyio.fail_after(20):
            page = await consent(started["authorizationUrl"], auth_server.redirect_uri)
        assert isinstance(page, httpx2.Response) and page.status_code == 200, (platform, page)
        assert "close this tab" in page.text
        status = ok(await mcp.call_tool("complete_connect", {"state": started["state"]}))
        assert status["status"] == "connected", (platform, status)
        [account] = status["accounts"]
        assert (account["platform"], account["emulates"], account["handle"]) == ("sandbox", platform, f"alice.{platform}")
        if platform in PUBLISHABLE:
            batch = ok(await mcp.call_tool("publish_post", {"text": f"hello {platform} via OAuth",
                                                            "targets": [{"accountId": account["id"]}]}))
            assert batch["status"] == "published", batch
    accounts = ok(await mcp.call_tool("list_accounts", {}))["accounts"]
    assert sorted(a["emulates"] for a in accounts) == sorted(PROVIDERS)


async def test_the_media_platforms_connected_through_oauth_publish_a_local_image(
        tmp_path: Path, auth_server: AuthServer, as_env: dict[str, str], s3: S3) -> None:
    """Instagram fetches media by URL: its account, connected through Instagram's OAuth flow, is handed a presigned
    URL of the S3 media host (the container sandbox fetches it and checks the bytes); Pinterest takes the upload."""
    clock = FixedClock(datetime.now(timezone.utc).replace(microsecond=0))  # S3 judges a presigned URL by the real time
    settings = Settings(data_dir=tmp_path / "data", log_level="WARNING", upstream_allow_loopback=True,  # type: ignore[call-arg]
                        oauth_redirect_port=auth_server.redirect_port, scheduler_enabled=False, _env_file=None,
                        media_roots=[tmp_path], media_s3_bucket=s3.bucket, media_s3_endpoint_url=s3.endpoint,
                        media_s3_region=REGION, media_s3_access_key_id=ACCESS_KEY_ID, media_s3_secret_access_key=SECRET_ACCESS_KEY,
                        media_s3_prefix=f"oauth/{tmp_path.name}/")
    picture = tmp_path / "square.jpg"
    picture.write_bytes(make_image("JPEG", 1080, 1080))
    async with Client(build_server(settings, clock=clock)) as mcp:
        ids = {}
        for platform in ("instagram", "pinterest"):
            started = await start(mcp, platform)
            with anyio.fail_after(20):
                await consent(started["authorizationUrl"], auth_server.redirect_uri)
            status = ok(await mcp.call_tool("complete_connect", {"state": started["state"]}))
            [account] = status["accounts"]
            ids[platform] = account["id"]
        uploaded = ok(await mcp.call_tool("upload_media", {"path": str(picture)}))
        with anyio.fail_after(60):
            batch = ok(await mcp.call_tool("publish_post", {
                "text": "hello media platforms via OAuth", "media": [{"mediaId": uploaded["id"]}],
                "targets": [{"accountId": ids["instagram"]}, {"accountId": ids["pinterest"], "pinterest": {"boardId": "b1"}}]}))
    assert [r["status"] for r in batch["results"]] == ["published", "published"], batch["results"]
    posts = {p["id"]: p for p in received(settings)}
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()
    gram, pin = (posts[r["upstreamId"]]["media"][0] for r in batch["results"])
    assert gram["url"] == f"{s3.endpoint}/{s3.bucket}/oauth/{tmp_path.name}/{digest}" and gram["sha256"] == digest
    assert pin["sha256"] == digest and not pin.get("url")  # uploaded, as the platform takes bytes


async def test_connecting_the_same_identity_again_updates_its_account(mcp: Client, auth_server: AuthServer) -> None:
    ids = []
    for _ in range(2):
        started = await start(mcp)
        with anyio.fail_after(20):
            await consent(started["authorizationUrl"], auth_server.redirect_uri)
        ids.append(ok(await mcp.call_tool("complete_connect", {"state": started["state"]}))["accounts"][0]["id"])
    assert ids[0] == ids[1]


async def test_the_paste_fallback_completes_with_the_redirect_url_or_the_code(mcp: Client, auth_server: AuthServer) -> None:
    for key in ("redirectUrl", "code"):
        started = await start(mcp)
        with anyio.fail_after(20):
            landed = await consent(started["authorizationUrl"], auth_server.redirect_uri, land=False)
        assert isinstance(landed, str)
        value = landed if key == "redirectUrl" else httpx2.URL(landed).params["code"]
        done = ok(await mcp.call_tool("complete_connect", {"state": started["state"], key: value}))
        assert done["status"] == "connected" and done["accounts"][0]["emulates"] == "x"
        again = error_of(await mcp.call_tool("complete_connect", {"state": started["state"], key: value}))
        assert (again["code"], again["rule"]) == ("validation_failed", "connect.connected")


async def test_a_redirect_with_another_state_is_refused_and_the_connect_stays_pending(mcp: Client, auth_server: AuthServer) -> None:
    first, second = await start(mcp), await start(mcp)
    with anyio.fail_after(20):
        landed = await consent(second["authorizationUrl"], auth_server.redirect_uri, land=False)
    assert isinstance(landed, str)
    err = error_of(await mcp.call_tool("complete_connect", {"state": first["state"], "redirectUrl": landed}))
    assert (err["code"], err["rule"]) == ("validation_failed", "connect.state_mismatch")
    assert ok(await mcp.call_tool("complete_connect", {"state": first["state"]}))["status"] == "pending"
    # the listener refuses a state it never issued, with a plain page
    async with httpx2.AsyncClient(trust_env=False) as browser:
        page = await browser.get(f"{auth_server.redirect_uri}?state=forged&code=abc")
    assert page.status_code == 400 and "Traceback" not in page.text
    err = error_of(await mcp.call_tool("complete_connect", {"state": "forged"}))
    assert err["code"] == "not_found"


async def test_an_expired_connect_is_refused(mcp: Client, auth_server: AuthServer, clock: FixedClock) -> None:
    started = await start(mcp)
    with anyio.fail_after(20):
        landed = await consent(started["authorizationUrl"], auth_server.redirect_uri, land=False)
    clock.at += timedelta(minutes=11)
    err = error_of(await mcp.call_tool("complete_connect", {"state": started["state"], "redirectUrl": landed}))
    assert (err["code"], err["rule"]) == ("validation_failed", "connect.expired")
    assert ok(await mcp.call_tool("complete_connect", {"state": started["state"]}))["status"] == "expired"


async def test_a_denied_consent_fails_the_connect(mcp: Client, auth_server: AuthServer) -> None:
    started = await start(mcp)
    denied = f"{auth_server.redirect_uri}?state={started['state']}&error=access_denied"
    err = error_of(await mcp.call_tool("complete_connect", {"state": started["state"], "redirectUrl": denied}))
    assert (err["code"], err["rule"]) == ("platform_auth_failed", "connect.denied")
    status = ok(await mcp.call_tool("complete_connect", {"state": started["state"]}))
    assert status["status"] == "failed" and status["error"]["code"] == "platform_auth_failed"


async def test_a_connect_without_app_credentials_names_the_variables_and_the_portal(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OMNIPOST_X_CLIENT_ID", "OMNIPOST_X_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    err = error_of(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "oauth": True}))
    assert (err["code"], err["rule"]) == ("validation_failed", "oauth.app_credentials_missing")
    assert "OMNIPOST_X_CLIENT_ID" in err["message"] and "OMNIPOST_X_CLIENT_SECRET" in err["message"]
    assert err["docUrl"].startswith("https://developer.x.com/")
    assert ok(await client.call_tool("list_accounts", {})) == {"accounts": []}


async def test_oauth_arguments_are_refused_for_a_connect_without_oauth(client: Client) -> None:
    err = error_of(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "a",
                                                              "refreshToken": "r"}))
    assert (err["code"], err["rule"]) == ("validation_failed", "refreshToken")
    err = error_of(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "oauth": True}))
    assert (err["code"], err["rule"]) == ("validation_failed", "emulates")


# -- provider data ---------------------------------------------------------------------------------------------------


def test_configuration_overrides_a_providers_endpoints_and_scopes_and_supplies_its_app(clock: FixedClock) -> None:
    env = {"OMNIPOST_PINTEREST_CLIENT_ID": "id", "OMNIPOST_PINTEREST_CLIENT_SECRET": "s",
           "OMNIPOST_PINTEREST_AUTHORIZE_URL": "http://127.0.0.1:1/auth", "OMNIPOST_PINTEREST_API_BASE": "http://127.0.0.1:1/",
           "OMNIPOST_PINTEREST_SCOPES": "a,b"}
    provider = provider_for("pinterest", env)
    assert (provider.authorize_url, provider.api_base, provider.scopes) == ("http://127.0.0.1:1/auth", "http://127.0.0.1:1", ("a", "b"))
    assert provider.token_url == PROVIDERS["pinterest"].token_url and provider.app is not None
    url = httpx2.URL(OAuthClient(provider, httpx2.AsyncClient(), clock).authorization_url(
        redirect_uri="http://127.0.0.1:8788/callback", state="st", verifier=new_verifier()))
    assert url.params["scope"] == "a,b" and url.params["code_challenge_method"] == "S256" and url.params["state"] == "st"
    linkedin = provider_for("linkedin", {"OMNIPOST_LINKEDIN_CLIENT_ID": "id"})
    url = httpx2.URL(OAuthClient(linkedin, httpx2.AsyncClient(), clock).authorization_url(
        redirect_uri="http://127.0.0.1:8788/callback", state="st", verifier=new_verifier()))
    assert "code_challenge" not in url.params and url.params["scope"] == "openid profile w_member_social"
    assert provider_for("x", {"OMNIPOST_X_CLIENT_ID": " "}).app is None  # an unset bundle field arrives empty


# -- the client against the server directly ----------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False) as c:
        yield c


async def authorize(client: OAuthClient, redirect_uri: str) -> tuple[str, str]:
    """(code, verifier) of one consent."""
    verifier = new_verifier()
    with anyio.fail_after(20):
        landed = await consent(client.authorization_url(redirect_uri=redirect_uri, state="s1", verifier=verifier),
                               redirect_uri, land=False)
    assert isinstance(landed, str)
    return httpx2.URL(landed).params["code"], verifier


async def test_a_code_is_exchanged_once_and_only_with_its_verifier(as_env: dict[str, str], auth_server: AuthServer,
                                                                   http: httpx2.AsyncClient, clock: FixedClock) -> None:
    client = OAuthClient(provider_for("x", as_env), http, clock)
    code, verifier = await authorize(client, auth_server.redirect_uri)
    with pytest.raises(PlatformAuthError):
        await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=new_verifier())  # wrong verifier
    code, verifier = await authorize(client, auth_server.redirect_uri)
    tokens = await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=verifier)
    assert tokens.access_token and tokens.refresh_token and tokens.expires_at == clock.now() + timedelta(hours=1)
    with pytest.raises(PlatformAuthError):
        await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=verifier)  # reused code


async def test_refresh_rotates_the_refresh_token_and_the_old_one_is_refused(
        as_env: dict[str, str], auth_server: AuthServer, http: httpx2.AsyncClient, clock: FixedClock) -> None:
    provider = provider_for("pinterest", as_env)  # HTTP Basic client auth, comma-separated scopes
    client = OAuthClient(provider, http, clock)
    code, verifier = await authorize(client, auth_server.redirect_uri)
    first = credentials_from(await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=verifier))
    refresher = OAuthRefresher(provider, http, clock)
    renewed = await refresher.refresh(first)
    assert renewed.refresh_token and renewed.refresh_token != first["refresh_token"]
    assert renewed.access_token != first["access_token"]
    with pytest.raises(PlatformAuthError):
        await refresher.refresh(first)  # single-use: the rotated-out token is refused


@pytest.mark.parametrize("crash", ["before-request", "after-commit"])
async def test_a_kill_on_either_side_of_the_refresh_leaves_the_grant_usable_at_the_authorization_server(
        crash: str, tmp_path: Path, as_env: dict[str, str], auth_server: AuthServer, http: httpx2.AsyncClient,
        clock: FixedClock) -> None:
    """tests/test_token_crash.py's kill test with the real OAuthRefresher against oidc-provider (strict rotation, reuse
    detection): a process refreshing the token is SIGKILLed with the refresh lock held and nothing sent, or just after
    the rotated tokens were committed; a new process refreshes with what is stored and uses the token, and the refresh
    token stored at the end is the one the server accepts. (Killed after the server rotated and before the commit,
    the rotated token is lost with the process: the window test_token_crash.py documents; no client can close it.)"""
    from test_token_crash import ACCOUNT, child_run, stored

    provider = provider_for("x", as_env)
    client = OAuthClient(provider, http, clock)
    code, verifier = await authorize(client, auth_server.redirect_uri)
    first = credentials_from(await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=verifier))
    data_dir = tmp_path / "data"
    await store_account(data_dir, ACCOUNT, first)
    env = as_env | {"TOKEN_CHILD_USE_URL": f"{auth_server.issuer}/userinfo"}
    status, said, _ = await anyio.to_thread.run_sync(lambda: child_run(data_dir, "oauth", crash, mode="force", env=env))
    assert (status, said) == (-9, {"killed": crash})
    kept = stored(data_dir)[0]["refresh_token"]
    assert (kept == first["refresh_token"]) == (crash == "before-request")  # after the commit: the rotated one
    status, said, err = await anyio.to_thread.run_sync(lambda: child_run(data_dir, "oauth", "none", mode="force", env=env))
    assert (status, said) == (0, {"me": 200}), err  # the restarted process refreshed with what was stored, and used it
    latest, health = stored(data_dir)
    assert health == "active" and latest["refresh_token"] not in (first["refresh_token"], kept)
    renewed = await OAuthRefresher(provider, http, clock).refresh(latest)  # what is stored is what the server accepts
    assert renewed.refresh_token and renewed.access_token


async def store_account(data_dir: Path, account_id: str, credentials: dict[str, Any]) -> None:
    """An account of platform x holding these credentials, as a connect leaves it (for token_child.py)."""
    from omnipost.store.crypto import Vault, load_key
    from omnipost.store.db import Database
    from omnipost.store.models import Account, Profile
    from sqlmodel import select
    from test_token_crash import NOW

    data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(None, data_dir, NOW)
    vault = Vault(load_key(None, data_dir))
    async with db.session() as s:
        profile = (await s.exec(select(Profile))).one()
        s.add(Account(id=account_id, profile_id=profile.id, platform="x", handle="crash", health="active", defaults={},
                      credentials=vault.seal(credentials), created_at=NOW))
        await s.commit()
    await db.close()


async def test_revoke_ends_the_grant(as_env: dict[str, str], auth_server: AuthServer, http: httpx2.AsyncClient,
                                     clock: FixedClock) -> None:
    provider = provider_for("x", as_env)
    client = OAuthClient(provider, http, clock)
    code, verifier = await authorize(client, auth_server.redirect_uri)
    creds = credentials_from(await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=verifier))
    refresher = OAuthRefresher(provider, http, clock)
    assert await refresher.revoke(creds) is True
    info = await http.get(f"{auth_server.issuer}/userinfo", headers={"Authorization": f"Bearer {creds['access_token']}"})
    assert info.status_code == 401
    with pytest.raises(PlatformAuthError):
        await refresher.refresh(creds)
    assert await OAuthRefresher(provider_for("threads", as_env), http, clock).revoke(creds) is True  # overridden revoke URL
    assert await OAuthRefresher(provider_for("threads", {"OMNIPOST_THREADS_CLIENT_ID": "i"}), http, clock).revoke(creds) is False


async def test_a_brought_token_is_verified_upstream_before_it_is_stored(
        mcp: Client, as_env: dict[str, str], auth_server: AuthServer, http: httpx2.AsyncClient, clock: FixedClock) -> None:
    client = OAuthClient(provider_for("x", as_env), http, clock)
    code, verifier = await authorize(client, auth_server.redirect_uri)
    tokens = await client.exchange(code=code, redirect_uri=auth_server.redirect_uri, verifier=verifier)
    err = error_of(await mcp.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "accessToken": "not-a-token"}))
    assert err["code"] == "platform_auth_failed"
    assert ok(await mcp.call_tool("list_accounts", {})) == {"accounts": []}
    account = ok(await mcp.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "accessToken": tokens.access_token,
                                                         "refreshToken": tokens.refresh_token, "expiresAt": "2026-11-24T13:00:00Z"}))
    assert (account["status"], account["emulates"], account["handle"]) == ("connected", "x", "alice.x")
    assert account["tokenExpiresAt"].startswith("2026-11-24T13:00:00")


async def test_a_platform_account_connects_through_the_connect_service(oauth_server: OmnipostServer, mcp: Client,
                                                                     auth_server: AuthServer) -> None:
    """What connect_account does for an OAuth platform once its adapter exists: the account is the platform's own."""
    ok(await mcp.call_tool("list_accounts", {}))  # opens the runtime
    rt = oauth_server.runtime
    profile = await rt.accounts.resolve_profile(None)
    started = await rt.connect_.start(profile.id, "linkedin", args={"defaults": {"visibility": "PUBLIC"}})
    assert await rt.connect_.ensure_listening(rt._tg)  # noqa: SLF001 - the lifespan's task group, as the tool uses it
    with anyio.fail_after(20):
        page = await consent(started.authorization_url, auth_server.redirect_uri)
    assert isinstance(page, httpx2.Response) and page.status_code == 200
    status = ok(await mcp.call_tool("complete_connect", {"state": started.state}))
    [account] = status["accounts"]
    assert (account["platform"], account["handle"], account["defaults"]) == ("linkedin", "alice", {"visibility": "PUBLIC"})
    stored = rt.accounts.credentials(await rt.accounts.get(profile.id, account["id"]))
    assert set(stored) >= {"access_token", "refresh_token", "expires_at", "scope"} and "openid" in stored["scope"]


async def test_meta_and_threads_tokens_are_renewed_their_own_way(clock: FixedClock) -> None:
    seen: list[httpx2.Request] = []

    def upstream(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"access_token": f"new-{len(seen)}", "token_type": "bearer", "expires_in": 5184000})

    env = {"OMNIPOST_FACEBOOK_CLIENT_ID": "app", "OMNIPOST_FACEBOOK_CLIENT_SECRET": "shh",
           "OMNIPOST_THREADS_CLIENT_ID": "app", "OMNIPOST_THREADS_CLIENT_SECRET": "shh"}
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(upstream)) as http:
        facebook = await OAuthRefresher(provider_for("facebook", env), http, clock).refresh({"access_token": "long-lived"})
        threads = await OAuthRefresher(provider_for("threads", env), http, clock).refresh({"access_token": "th-long"})
    assert (facebook.access_token, threads.access_token) == ("new-1", "new-2")
    assert facebook.expires_at == clock.now() + timedelta(seconds=5184000)
    fb, th = seen
    assert (fb.method, fb.url.path, dict(fb.url.params)) == ("GET", "/v24.0/oauth/access_token", {
        "grant_type": "fb_exchange_token", "client_id": "app", "client_secret": "shh", "fb_exchange_token": "long-lived"})
    assert (th.method, th.url.host, th.url.path, dict(th.url.params)) == (
        "GET", "graph.threads.net", "/refresh_access_token", {"grant_type": "th_refresh_token", "access_token": "th-long"})


# -- secrets ---------------------------------------------------------------------------------------------------------


async def test_no_secret_reaches_the_database_in_clear_the_logs_or_a_tool_result(
        oauth_server: OmnipostServer, mcp: Client, auth_server: AuthServer, oauth_settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = await start(mcp)
    with anyio.fail_after(20):
        landed = await consent(started["authorizationUrl"], auth_server.redirect_uri, land=False)
    assert isinstance(landed, str)
    code = httpx2.URL(landed).params["code"]
    results = [started, ok(await mcp.call_tool("complete_connect", {"state": started["state"], "redirectUrl": landed}))]
    rt = oauth_server.runtime
    account = await rt.accounts.get(rt.accounts.db and (await rt.accounts.resolve_profile(None)).id, results[1]["accounts"][0]["id"])
    oauth = rt.accounts.credentials(account)["oauth"]
    from omnipost.store.models import ConnectSession

    async with rt.db.session() as s:
        session = await s.get(ConnectSession, started["state"])
    verifier = rt.accounts.vault.open(session.verifier)["verifier"]
    secrets = [oauth["access_token"], oauth["refresh_token"], verifier, code, *auth_server.secrets()]
    results.append(ok(await mcp.call_tool("list_accounts", {})))
    await rt.db.close()  # flush the WAL into the files
    stored = b"".join(p.read_bytes() for p in oauth_settings.data_dir.rglob("*") if p.is_file())
    # (the HTTP libraries' debug lines are left out: this test's own browser logs the code there; omnipost keeps
    # them at WARNING, logging.configure)
    logged = [r for r in caplog.records if not r.name.startswith("httpcore") and not (r.name.startswith("httpx") and r.levelno < logging.WARNING)]
    text = json.dumps(results) + "\n".join(r.getMessage() for r in logged)
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret not in text


# -- the terminal ------------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(as_env: dict[str, str], tmp_path: Path, auth_server: AuthServer) -> Iterator[dict[str, str]]:
    yield {**os.environ, "PYTHONPATH": str(REPO_ROOT / "server"), "OMNIPOST_DATA_DIR": str(tmp_path / "cli"),
           "OMNIPOST_UPSTREAM_ALLOW_LOOPBACK": "true", "OMNIPOST_OAUTH_REDIRECT_PORT": str(auth_server.redirect_port),
           "OMNIPOST_LOG_LEVEL": "WARNING"}


async def test_accounts_connect_in_a_terminal_waits_for_the_browser_and_prints_the_account(
        cli_env: dict[str, str], auth_server: AuthServer) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "omnipost", "accounts", "connect", "threads", "--sandbox", "--json",
                             "--timeout", "60"], env=cli_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        with anyio.fail_after(30):
            page = await consent(await printed_url(proc), auth_server.redirect_uri)
        assert isinstance(page, httpx2.Response) and page.status_code == 200
        code, out = await finished(proc)
    finally:
        proc.kill()
    assert code == 0, out
    result = json.loads(out)
    assert result["status"] == "connected" and result["accounts"][0]["emulates"] == "threads"


async def finished(proc: "subprocess.Popen[str]") -> tuple[int, str]:
    """The command's exit code and what it printed on stdout, once it ends."""
    assert proc.stdout is not None
    with anyio.fail_after(30):
        out = await anyio.to_thread.run_sync(proc.stdout.read)
        return await anyio.to_thread.run_sync(proc.wait), out


async def printed_url(proc: "subprocess.Popen[str]") -> str:
    """The authorization URL `omnipost accounts connect --json` prints on stderr."""
    assert proc.stderr is not None
    while True:
        line = await anyio.to_thread.run_sync(proc.stderr.readline)
        assert line, "the command ended before printing the URL"
        if line.startswith("http"):
            return line.strip()


async def test_accounts_connect_takes_a_pasted_url_when_no_listener_runs(cli_env: dict[str, str], auth_server: AuthServer) -> None:
    env = cli_env | {"OMNIPOST_OAUTH_REDIRECT_URI": auth_server.redirect_uri}  # a configured redirect URI: no listener
    proc = subprocess.Popen([sys.executable, "-m", "omnipost", "accounts", "connect", "x", "--sandbox", "--json", "--timeout", "60"],
                            env=env, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None and proc.stdin is not None
        with anyio.fail_after(30):
            landed = await consent(await printed_url(proc), auth_server.redirect_uri, land=False)
        assert isinstance(landed, str)
        proc.stdin.write(landed + "\n")
        proc.stdin.flush()
        code, out = await finished(proc)
    finally:
        proc.kill()
    assert code == 0, out
    assert json.loads(out)["accounts"][0]["emulates"] == "x"


@pytest.mark.parametrize(("argv", "env_drop"), [
    (["accounts", "connect", "myspace"], None),
    (["accounts", "connect", "linkedin"], None),  # no adapter for LinkedIn yet: only --sandbox
    (["accounts", "connect", "x", "--sandbox"], "OMNIPOST_X_CLIENT_ID"),  # not configured
    (["accounts", "connect", "x", "--sandbox", "--timeout", "0"], None),
])
def test_accounts_connect_refuses_bad_input_in_one_line_with_exit_2(cli_env: dict[str, str], argv: list[str],
                                                                    env_drop: str | None) -> None:
    env = {k: v for k, v in cli_env.items() if k != env_drop}
    proc = subprocess.run([sys.executable, "-m", "omnipost", *argv], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


async def test_a_client_with_url_elicitation_is_asked_to_open_the_authorization_url(oauth_server: OmnipostServer) -> None:
    from mcp.types import ElicitResult

    asked: list[Any] = []

    async def answer(_ctx: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept")

    async with Client(oauth_server, mode="legacy", elicitation_callback=answer) as legacy:
        started = await start(legacy)
    assert started["opened"] is True
    assert [(p.mode, p.url) for p in asked] == [("url", started["authorizationUrl"])]
    async with Client(oauth_server) as modern:  # 2026-07-28: no back-channel, the URL is only in the result
        assert (await start(modern))["opened"] is False
