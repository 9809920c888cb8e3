"""Mastodon end to end (issue 13): connecting on any server (OAuth with the app registered once per instance, or a
brought token), the instance's limits stored and refreshed daily by the clock, and publishing through the MCP tools
against FakeMastodon (tests/fakes/mastodon.py: every request and answer checked against Mastodon's OpenAPI document):
text, media with alt text, a video that processes, threads, first comments, visibility, content warnings, language,
two instances with different limits in one batch, Idempotency-Key after a lost answer, error mapping, delete, and the
SSRF guard on the instance URL."""

import json
import logging
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from starlette.types import Receive, Scope, Send

from fakes import mounted_client
from fakes.mastodon import FakeMastodon
from mediagen import b64, make_image
from test_media_storage import write_video
from test_upstream_guard import guarded_server
from test_webhooks import MapResolver
from toolresult import err, ok

from omnipost.app import build_server
from omnipost.domain import Platform
from omnipost.errors import PlatformAuthError
from omnipost.platforms.base import AccountContext, AdapterDeps, ConnectRequest, PublishJob, Verifying, find
from omnipost.platforms.registry import PLATFORMS
from omnipost.platforms.mastodon.adapter import MastodonAdapter
from omnipost.platforms.pieces import MAIN, SENDING, Ledger, Piece
from refdata import requires_reference_data
from omnipost.preflight.model import ResolvedTarget
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.scheduler import Scheduler
from omnipost.store.models import InstanceApp

pytestmark = [pytest.mark.anyio, requires_reference_data]  # the fake is refereed by Mastodon's OpenAPI document

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)  # conftest's NOW

REDIRECT = "http://127.0.0.1:8765/callback"
WAIT = 30
SMALL, BIG = "https://small.example", "https://big.example"


class LoseAnswers:
    """An ASGI front that, for the next `count` requests matching (method, path), lets the app act and then loses the
    answer (the client reads a timeout): what a gateway timing out after the instance stored the status looks like."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rules: list[tuple[str, str]] = []

    def lose_next(self, method: str, path: str) -> None:
        self.rules.append((method, path))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self.rules:
            self.rules.remove((scope["method"], scope["path"]))

            async def discard(message: Any) -> None:
                pass

            await self.app(scope, receive, discard)
            raise httpx2.ReadTimeout("the answer was lost")
        await self.app(scope, receive, send)


class Env:
    """A server whose upstreams are Mastodon instances (one fake per origin) on the injected clock."""

    def __init__(self, settings: Settings, *fakes: FakeMastodon) -> None:
        self.clock = FixedClock(NOW)
        self.fakes = {f.origin: f for f in fakes}
        for f in fakes:
            f.clock = lambda: self.clock.now().timestamp()
        self.fronts = {f.origin: LoseAnswers(f.app) for f in fakes}
        self.http = mounted_client(dict(self.fronts))
        self.server = build_server(settings.model_copy(update={"scheduler_enabled": False, "oauth_redirect_uri": REDIRECT}),
                                   clock=self.clock, http=self.http)
        self.rt = self.server.runtime

    async def connect(self, client: Client, origin: str, username: str = "alice") -> dict[str, Any]:
        """connect_account through OAuth: the app (registered or reused), the user's consent (the fake approves and
        redirects), complete_connect with the URL the browser landed on."""
        fake = self.fakes[origin]
        fake.consent = username
        started = ok(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": origin}))
        assert started["status"] == "pending" and started["authorizationUrl"].startswith(f"{origin}/oauth/authorize?")
        landed = (await self.http.get(started["authorizationUrl"])).headers["location"]
        assert landed.startswith(REDIRECT)
        status = ok(await client.call_tool("complete_connect", {"state": started["state"], "redirectUrl": landed}))
        assert status["status"] == "connected", status
        return status["accounts"][0]

    async def run_due(self) -> dict[str, int]:
        with anyio.fail_after(WAIT):
            return await Scheduler(self.rt.db, self.rt.publisher, self.clock, worker_id="mastodon",
                                   rng=random.Random(7)).run_due(self.clock.now())


def instance(origin: str = "https://mastodon.example", **config: Any) -> FakeMastodon:
    fake = FakeMastodon(origin, **config)
    fake.add_user("alice")
    fake.add_user("bob")
    return fake


async def publish(client: Client, accounts: list[str], text: str, **extra: Any) -> dict[str, Any]:
    targets = extra.pop("targets", None) or [{"accountId": a} for a in accounts]
    with anyio.fail_after(WAIT):
        return ok(await client.call_tool("publish_post", {"text": text, "targets": targets, **extra}))


# --- connect ----------------------------------------------------------------------------------------------------------

async def test_oauth_registers_the_app_once_per_instance_and_stores_identity_and_limits(settings: Settings) -> None:
    one, two = instance(max_characters=500), instance(BIG, max_characters=5000)
    env = Env(settings, one, two)
    async with env.http, Client(env.server) as client:
        alice = await env.connect(client, one.origin)
        assert (alice["platform"], alice["handle"]) == ("mastodon", "@alice@mastodon.example")
        assert alice["defaults"]["instanceUrl"] == one.origin
        limits = alice["defaults"]["mastodonInstance"]
        assert (limits["maxCharacters"], limits["url"], limits["checkedAt"]) == (500, one.origin, NOW.isoformat())
        bob = await env.connect(client, one.origin, "bob")
        again = await env.connect(client, one.origin)  # the same identity again: the same account
        assert again["id"] == alice["id"] and bob["id"] != alice["id"]
        assert len(one.calls("apps")) == 1  # registered once, reused by the later connects to that instance
        [app] = one.apps.values()
        assert app.redirect_uris == [REDIRECT] and app.scopes == ["read:accounts", "read:statuses", "write:statuses", "write:media"]
        big = await env.connect(client, two.origin)
        assert len(two.calls("apps")) == 1 and big["defaults"]["mastodonInstance"]["maxCharacters"] == 5000
        assert big["handle"] == "@alice@big.example"
        # PKCE S256 was used (the fake checks the verifier against the challenge) and the app's secret is sealed.
        assert all(c.challenge for c in one.codes.values())
        async with env.rt.db.session() as s:
            from sqlmodel import select

            rows = (await s.exec(select(InstanceApp))).all()
        assert sorted(r.instance for r in rows) == [BIG, one.origin]
        assert all(app.client_secret.encode() not in r.client_secret for r in rows)
        stored = env.rt.accounts.credentials(await env.rt.accounts.get((await env.rt.accounts.resolve_profile(None)).id, alice["id"]))
        assert stored["extra"] == {"instanceUrl": one.origin, "accountId": one.users[next(iter(one.users))].id, "username": "alice",
                                   "clientId": app.client_id, "clientSecret": app.client_secret}  # sealed: revoking needs them
        assert stored["refresh_token"] is None and alice["tokenExpiresAt"] is None  # Mastodon tokens do not expire


async def test_no_secret_reaches_the_database_in_clear_the_logs_or_a_tool_result(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        fake.consent = "alice"
        started = ok(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": fake.origin}))
        landed = (await env.http.get(started["authorizationUrl"])).headers["location"]
        done = ok(await client.call_tool("complete_connect", {"state": started["state"], "redirectUrl": landed}))
        account = done["accounts"][0]["id"]
        published = await publish(client, [account], "No secrets here")
        listed = ok(await client.call_tool("list_accounts", {}))
        [app] = fake.apps.values()
        [token] = [t for t, g in fake.grants.items() if g.data.get("client_id") == app.client_id]
        code = httpx2.URL(landed).params["code"]
        await env.rt.db.close()  # flush the WAL into the files
    stored = b"".join(p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file())
    logged = [r for r in caplog.records if not r.name.startswith(("httpcore", "httpx"))]
    text = json.dumps([started, done, published, listed]) + "\n".join(r.getMessage() for r in logged)
    for secret in (token, app.client_secret, code):
        assert secret.encode() not in stored and secret not in text


async def test_disconnect_revokes_an_oauth_token_and_says_a_brought_one_cannot_be(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        alice = (await env.connect(client, fake.origin))["id"]
        brought = ok(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": fake.origin,
                                                                "accessToken": fake.user_token("bob")}))["id"]
        gone = ok(await client.call_tool("disconnect_account", {"accountId": alice}))
        assert gone["revoked"] is True and len(fake.calls("revoke")) == 1
        assert [g.revoked for g in fake.grants.values() if g.data.get("client_id")] == [True]
        kept = ok(await client.call_tool("disconnect_account", {"accountId": brought}))
        assert kept["revoked"] == "unsupported" and len(fake.calls("revoke")) == 1


async def test_a_brought_token_connects_without_registering_an_app(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        refused = err(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": fake.origin,
                                                                 "accessToken": "not-a-token"}))
        assert refused["code"] == "platform_auth_failed"
        assert ok(await client.call_tool("list_accounts", {}))["accounts"] == []
        token = fake.user_token("bob")
        account = ok(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": fake.origin + "/",
                                                                "accessToken": token}))
        assert (account["status"], account["handle"]) == ("connected", "@bob@mastodon.example")
        assert fake.calls("apps") == [] and account["defaults"]["mastodonInstance"]["maxCharacters"] == 500
        missing = err(await client.call_tool("connect_account", {"platform": "mastodon", "accessToken": token}))
        assert (missing["code"], missing["rule"]) == ("validation_failed", "instanceUrl")
        foreign = err(await client.call_tool("connect_account", {"platform": "bluesky", "handle": "a.test",
                                                                 "appPassword": "x", "instanceUrl": fake.origin}))
        assert foreign["rule"] == "instanceUrl"


async def test_the_limits_are_refreshed_daily_for_every_account_of_the_instance(settings: Settings) -> None:
    fake = instance(max_characters=500)
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        alice, bob = await env.connect(client, fake.origin), await env.connect(client, fake.origin, "bob")
        reads = len(fake.calls("instance"))
        fake.config.max_characters = 1000  # the admin raised the limit
        text = "a" * 800
        env.clock.at = NOW + timedelta(hours=23)
        result = ok(await client.call_tool("validate_post", {"text": text, "targets": [{"accountId": alice["id"]}]}))
        assert result["valid"] is False and len(fake.calls("instance")) == reads  # under a day old: not read again
        env.clock.at = NOW + timedelta(hours=24, minutes=1)
        result = ok(await client.call_tool("validate_post", {"text": text, "targets": [{"accountId": alice["id"]}]}))
        assert result["valid"] is True and result["results"][0]["measure"]["limit"] == 1000
        assert len(fake.calls("instance")) == reads + 1
        got = ok(await client.call_tool("get_account", {"accountId": bob["id"]}))["defaults"]["mastodonInstance"]
        assert (got["maxCharacters"], got["checkedAt"]) == (1000, env.clock.now().isoformat())  # every account of it
        batch = await publish(client, [bob["id"]], text)  # publishing reads the refreshed limits: no second read
        assert batch["status"] == "published" and len(fake.calls("instance")) == reads + 1


async def test_an_instance_url_resolving_to_a_private_address_is_refused_before_connecting(settings: Settings, clock: Any) -> None:
    resolver = MapResolver({"mastodon.evil.example": ["10.0.0.5"]})
    server, recording = guarded_server(settings.model_copy(update={"oauth_redirect_uri": REDIRECT}), clock, resolver)
    async with Client(server) as client:
        for extra in ({}, {"accessToken": "a-token"}):  # OAuth (the app registration) and a brought token
            error = err(await client.call_tool("connect_account", {"platform": "mastodon",
                                                                   "instanceUrl": "https://mastodon.evil.example", **extra}))
            assert (error["code"], error["rule"], error["path"]) == ("validation_failed", "upstream.url_forbidden", "instanceUrl")
        assert recording.connected == [] and ok(await client.call_tool("list_accounts", {}))["accounts"] == []


# --- publishing -------------------------------------------------------------------------------------------------------

async def test_text_with_visibility_content_warning_and_language(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        batch = await publish(client, [], "Spoilers inside", title="Season finale",
                              targets=[{"accountId": account, "mastodon": {"visibility": "unlisted", "language": "en",
                                                                           "sensitive": True}}])
        result = batch["results"][0]
        assert result["status"] == "published", result
        [status] = fake.live_statuses()
        assert (status.id, status.text, status.spoiler_text, status.visibility, status.language, status.sensitive) == (
            result["upstreamId"], "Spoilers inside", "Season finale", "unlisted", "en", True)
        assert result["url"] == f"{fake.origin}/@alice/{status.id}"
        assert status.idempotency_key == f"{result['postId']}:post"  # the piece's deterministic key


async def test_images_with_alt_text_a_thread_and_a_first_comment(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        media = [{"bytesBase64": b64(make_image("png", 800, 600)), "altText": "A wide picture"},
                 {"bytesBase64": b64(make_image("jpeg", 600, 800)), "altText": "A tall picture"}]
        batch = await publish(client, [account], "Main post", media=media, thread=["Part two", "Part three"],
                              firstComment="Links in the comments")
        result = batch["results"][0]
        assert result["status"] == "published", result
        main, two, three, comment = (fake.statuses[i] for i in (result["upstreamId"], *result["thread"], *result["firstComment"]))
        assert [fake.media[m].description for m in main.media_ids] == ["A wide picture", "A tall picture"]
        assert [fake.media[m].kind for m in main.media_ids] == ["image", "image"]
        assert (two.in_reply_to_id, three.in_reply_to_id, comment.in_reply_to_id) == (main.id, two.id, main.id)
        assert [s.text for s in (two, three, comment)] == ["Part two", "Part three", "Links in the comments"]
        assert len(fake.statuses) == 4 and len(fake.media) == 2


async def test_a_video_processes_then_a_worker_publishes_it(settings: Settings, tmp_path: Path) -> None:
    fake = instance()
    fake.processing_reads = 4  # more than one try's reads: the post waits `processing`
    env = Env(settings, fake)
    clip = write_video(tmp_path / "clip.mp4", width=640, height=360, frames=24).read_bytes()
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        batch = await publish(client, [account], "A clip", media=[{"bytesBase64": b64(clip), "altText": "Waves"}])
        first = batch["results"][0]
        assert first["status"] == "processing", first
        assert fake.statuses == {} and len(fake.calls("media.create")) == 1
        assert [c.route for c in fake.log if c.route.startswith("media")] == ["media.create", "media.get", "media.get"]
        env.clock.at = env.clock.now() + timedelta(minutes=1)
        await env.run_due()  # two more reads: still processing
        assert ok(await client.call_tool("get_post", {"postId": first["postId"]}))["status"] == "processing"
        env.clock.at = env.clock.now() + timedelta(minutes=1)
        await env.run_due()
        done = ok(await client.call_tool("get_post", {"postId": first["postId"]}))
        assert done["status"] == "published", done
        [status] = fake.live_statuses()
        assert status.id == done["upstreamId"] and len(status.media_ids) == 1
        assert fake.media[status.media_ids[0]].kind == "video" and fake.media[status.media_ids[0]].description == "Waves"
        assert len(fake.calls("media.create")) == 1  # the same upload was read again, never uploaded twice


async def test_schedule_post_publishes_when_due(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        when = (NOW + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
        batch = ok(await client.call_tool("schedule_post", {"text": "Later", "targets": [{"accountId": account}],
                                                            "scheduledAt": when}))
        assert batch["results"][0]["status"] == "queued" and fake.statuses == {}
        env.clock.at = NOW + timedelta(hours=2, seconds=1)
        await env.run_due()
        got = ok(await client.call_tool("get_post", {"postId": batch["results"][0]["postId"]}))
        assert got["status"] == "published" and [s.text for s in fake.live_statuses()] == ["Later"]


async def test_two_instances_with_different_limits_in_one_batch(settings: Settings) -> None:
    small, big = instance(SMALL, max_characters=500), instance(BIG, max_characters=5000)
    env = Env(settings, small, big)
    text = "word " * 199 + "fifth"  # 1000 characters
    assert len(text) == 1000
    async with env.http, Client(env.server) as client:
        on_small, on_big = (await env.connect(client, SMALL))["id"], (await env.connect(client, BIG))["id"]
        checked = ok(await client.call_tool("validate_post", {"text": text, "targets": [{"accountId": on_big}, {"accountId": on_small}]}))
        assert [r["valid"] for r in checked["results"]] == [True, False]
        refused = err(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": on_big}, {"accountId": on_small}]}))
        assert refused["code"] == "preflight_failed"
        [violation] = refused["details"]
        assert (violation["rule"], violation["path"], violation["actual"], violation["limit"]) == (
            "mastodon.text.max_characters", "targets[1].text", 1000, 500)
        assert small.statuses == {} and big.statuses == {}
        batch = await publish(client, [on_big], text)
        assert batch["status"] == "published" and [s.text for s in big.live_statuses()] == [text] and small.statuses == {}


async def test_a_lost_answer_is_sent_again_with_the_same_idempotency_key_and_one_status_exists(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        env.fronts[fake.origin].lose_next("POST", "/api/v1/statuses")  # stored, then the answer times out ...
        fake.fail_next("accounts.statuses", 503, {"error": "Service Unavailable"})  # ... and the search cannot tell
        first = (await publish(client, [account], "Exactly once"))["results"][0]
        assert (first["status"], first["error"]["code"]) == ("unknown", "platform_outcome_unknown"), first
        with anyio.fail_after(WAIT):
            resolved = ok(await client.call_tool("resolve_post", {"postId": first["postId"], "resolution": "resend"}))
        assert resolved["status"] == "published", resolved
        [status] = fake.live_statuses()  # the re-POST carried the same Idempotency-Key: Mastodon answered the same status
        assert resolved["upstreamId"] == status.id
        posts = fake.calls("statuses.create")
        assert len(posts) == 2 and len(fake.keys) == 1


async def test_a_lost_answer_is_found_by_searching_the_accounts_statuses(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        fake.fail_next("statuses.create", 429, {"error": "Too many requests"}, {"X-RateLimit-Reset": "2026-11-24T12:01:30.000Z"})
        first = (await publish(client, [account], "A link https://example.com/a/very/long/path/that/is/shortened"))["results"][0]
        assert (first["status"], first["error"]["code"], first["error"]["retryAfter"]) == ("failed", "platform_unavailable", 90)
        env.fronts[fake.origin].lose_next("POST", "/api/v1/statuses")
        ok(await client.call_tool("retry_post", {"batchId": first.get("batchId") or (await _batch_of(client, first["postId"]))}))
        env.clock.at = NOW + timedelta(seconds=91)
        await env.run_due()
        got = ok(await client.call_tool("get_post", {"postId": first["postId"]}))
        assert got["status"] == "published", got  # reconciled at once by searching (probing never re-sends)
        [status] = fake.live_statuses()
        assert got["upstreamId"] == status.id and len(fake.calls("statuses.create")) == 2
        assert fake.calls("statuses.source")  # compared by its source, not its HTML


async def _batch_of(client: Client, post_id: str) -> str:
    return ok(await client.call_tool("get_post", {"postId": post_id}))["batchId"]


async def test_refusals_map_to_their_error_codes_and_delete_removes_the_status(settings: Settings) -> None:
    fake = instance(max_characters=500)
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = (await env.connect(client, fake.origin))["id"]
        fake.fail_next("statuses.create", 422, {"error": "Validation failed: Text character limit of 500 exceeded"})
        rejected = (await publish(client, [account], "Refused"))["results"][0]
        assert (rejected["status"], rejected["error"]["code"], rejected["error"]["retryable"]) == ("rejected", "platform_rejected", False)
        assert "character limit of 500" in rejected["error"]["platformResponse"]["error"]
        published = (await publish(client, [account], "Short-lived"))["results"][0]
        assert ok(await client.call_tool("delete_post", {"postId": published["postId"]}))["status"] == "deleted"
        assert fake.statuses == {}
        for token in list(fake.grants):
            fake.revoke(token)
        refused = (await publish(client, [account], "After revoking"))["results"][0]
        assert (refused["status"], refused["error"]["code"]) == ("rejected", "platform_auth_failed")
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "needs_reconnect"


async def test_a_token_without_the_write_scope_is_forbidden_and_the_account_stays_healthy(settings: Settings) -> None:
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": fake.origin,
                                                                "accessToken": fake.user_token("alice", ("read",))}))["id"]
        result = (await publish(client, [account], "Not allowed"))["results"][0]
        assert (result["status"], result["error"]["code"]) == ("rejected", "platform_forbidden")
        assert fake.statuses == {} and ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "active"


async def test_get_account_reports_health_from_verify_credentials(settings: Settings) -> None:
    """get_account asks the instance who the token is (base.Verifying): healthy, with the display name it answers; an
    instance that cannot be asked leaves the health as stored; a revoked token (401) → needs_reconnect."""
    fake = instance()
    env = Env(settings, fake)
    async with env.http, Client(env.server) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "mastodon", "instanceUrl": fake.origin,
                                                                "accessToken": fake.user_token("alice")}))["id"]
        assert isinstance(env.rt.adapters.get("mastodon"), Verifying)
        reads = len(fake.calls("verify_credentials"))  # the connect's own
        got = ok(await client.call_tool("get_account", {"accountId": account}))
        assert (got["health"], got["displayName"], got["handle"]) == ("active", "Alice", "@alice@mastodon.example")
        fake.fail_next("verify_credentials", 503, {"error": "Service Unavailable"})
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "active"
        for token in list(fake.grants):
            fake.revoke(token)  # the user revoked omnipost's token in the instance's settings
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "needs_reconnect"
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "needs_reconnect"
        assert len(fake.calls("verify_credentials")) == reads + 3  # healthy, 503, 401; not asked again once it needs reconnecting
        assert fake.statuses == {}  # a whoami, nothing written


async def test_the_instance_enforces_its_own_limit_as_mastodon_counts() -> None:
    fake = FakeMastodon(max_characters=30)
    url = "https://example.com/" + "x" * 100
    assert fake.length(f"see {url}") == 4 + 23
    assert fake.length("hi @bob@mastodon.social", spoiler_text="cw") == len("hi @bob") + 2
    assert fake.length("👩‍👩‍👧 family") == 8


# --- reconcile, on the adapter itself ----------------------------------------------------------------------------------

def _job(fake: FakeMastodon, clock: FixedClock, text: str, pieces: dict[str, Piece]) -> PublishJob:
    alice = next(u for u in fake.users.values() if u.username == "alice")
    account = AccountContext(id="acc_1", platform="mastodon", handle="@alice@mastodon.example",
                             credentials={"access_token": fake.user_token("alice"),
                                          "extra": {"instanceUrl": fake.origin, "accountId": alice.id}})
    target = ResolvedTarget(index=0, platform=Platform.MASTODON, account=None, text=text, media=(), first_comment=None,
                            thread=(), title=None, visibility=None, options={})
    return PublishJob(post_id="post_1", upstream_key="post_1", account=account, target=target,
                      ledger=Ledger(pieces, clock=clock))


@pytest.mark.parametrize("sent_ago, reposts", [(timedelta(minutes=10), 1), (timedelta(hours=2), 0)])
async def test_a_piece_sent_without_an_answer_is_reposted_inside_the_window_and_searched_past_it(
        sent_ago: timedelta, reposts: int) -> None:
    """An earlier try sent the status (it is upstream) and recorded no answer. Inside Mastodon's hour the same
    Idempotency-Key is sent again and answers that status; past it, the account's statuses are searched and the
    status is found by its source. Either way there is one status, and the piece is taken as existing."""
    clock = FixedClock(NOW)
    fake = instance()
    fake.clock = lambda: clock.now().timestamp()
    text = "Sent once https://example.com/" + "x" * 60
    async with fake.client() as http:
        adapter = MastodonAdapter(http, clock=clock)
        job = _job(fake, clock, text, {})
        first = await adapter.publish(job)
        clock.at = NOW + sent_ago
        again = _job(fake, clock, text, {MAIN: Piece(SENDING, sent_at=NOW)})
        found = await adapter.publish(again)
        assert found.upstream_id == first.upstream_id and found.already_existed and again.ledger.sent == 0
        assert len(fake.statuses) == 1 and len(fake.calls("statuses.create")) == 1 + reposts
        assert bool(fake.calls("statuses.source")) is (reposts == 0)
        clock.at = NOW + sent_ago + timedelta(minutes=1)
        fake.statuses.clear()  # gone (deleted on the server): certainly absent, so it is sent again
        resent = _job(fake, clock, text, {MAIN: Piece(SENDING, sent_at=NOW - timedelta(hours=2))})
        assert (await adapter.publish(resent)).upstream_id != first.upstream_id and resent.ledger.sent == 1


async def test_probing_never_sends() -> None:
    clock = FixedClock(NOW)
    fake = instance()
    fake.clock = lambda: clock.now().timestamp()
    async with fake.client() as http:
        assert await find(MastodonAdapter(http, clock=clock), _job(fake, clock, "Not there", {})) is None
    assert fake.calls("statuses.create") == [] and fake.calls("accounts.statuses")


async def test_the_specs_connect_flow_takes_a_brought_token_on_its_instance() -> None:
    """PlatformSpec.connect_with (what a caller without the connect service uses) checks the token the same way."""
    clock = FixedClock(NOW)
    fake = instance()
    async with fake.client() as http:
        async def save(*_: Any) -> None:
            pass

        deps = AdapterDeps(http=http, clock=clock, timeout=5.0, sandbox_url="", save_credentials=save, resolver=None)
        connect = PLATFORMS["mastodon"].connect_with
        assert connect is not None
        got = await connect(ConnectRequest(handle="", args={"instanceUrl": fake.origin, "accessToken": fake.user_token("bob")},
                                           defaults={"visibility": "unlisted"}, deps=deps))
        assert (got.handle, got.defaults["visibility"], got.defaults["mastodonInstance"]["maxCharacters"]) == (
            "@bob@mastodon.example", "unlisted", 500)
        assert got.credentials["extra"]["instanceUrl"] == fake.origin and got.token_expires_at is None
        with pytest.raises(PlatformAuthError):
            await connect(ConnectRequest(handle="", args={"instanceUrl": fake.origin, "accessToken": "nope"}, defaults={}, deps=deps))


@pytest.mark.parametrize(("platform", "extra"), [("mastodon", {}), ("mastodon", {"sandbox": True, "instance_url": SMALL}),
                                                 ("x", {"instance_url": SMALL})])
async def test_the_terminal_connect_takes_an_instance_url_for_mastodon_only(settings: Settings, platform: str,
                                                                          extra: dict[str, Any]) -> None:
    from omnipost.oauth.cli import ConnectUsageError, connect

    arguments: dict[str, Any] = {"sandbox": False, "profile": None, "handle": None, "open_browser": False, "timeout": 1.0,
                                 "as_json": False} | extra
    with pytest.raises(ConnectUsageError):
        await connect(settings, platform, **arguments)
