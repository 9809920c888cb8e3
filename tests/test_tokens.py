"""Tokens before they lapse: a Bluesky session is refreshed ahead of its end, one that cannot be refreshed yet or
at all is announced with token.expiring (once per expiry), and a refused refresh is token.revoked.

The fake PDS issues real JWT-shaped tokens whose `exp` follows its own clock; both clocks are moved by hand."""

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fakes.bluesky import PDS_URL, FakeBluesky
from fakes.webhook_sink import WebhookSink
from mcp import Client
from starlette.types import ASGIApp
from test_webhooks import HOOK, MapResolver, sink_client
from toolresult import ok

from omnipost.app import OmnipostServer, build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.runtime import SANDBOX_HOST
from omnipost.sandbox.upstream import create_sandbox_app
from omnipost.store.models import Account

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
PASSWORD = "abcd-efgh-ijkl-mnop"
REFRESH = "com.atproto.server.refreshSession"


class Setup:
    """A server wired to the fake PDS (and the embedded sandbox) with a webhook sink subscribed to token events."""

    def __init__(self, settings: Settings, *, sandbox: Callable[[ASGIApp], ASGIApp] = lambda app: app,
                 pds: Callable[[ASGIApp], ASGIApp] = lambda app: app, mounts: dict[str, ASGIApp] | None = None) -> None:
        """`sandbox` and `pds` wrap the sandbox app and the fake PDS (e.g. tests/fakes/scripted.py's Scripted);
        `mounts`: more fakes by origin."""
        self.clock = FixedClock(NOW)
        self.fake = FakeBluesky(clock=lambda: self.clock.now().timestamp(), refresh_ttl=10 * 86400.0)
        self.fake.add_account("alice.test", PASSWORD)
        self.fake.pds_app = pds(self.fake.pds_app)
        self.sink = WebhookSink(clock=self.clock)
        self.http = self.fake.client(mounts={SANDBOX_HOST: sandbox(create_sandbox_app(settings.data_dir / "sandbox.db", clock=self.clock)),
                                            **(mounts or {})})
        self.server: OmnipostServer = build_server(settings.model_copy(update={"scheduler_enabled": False}),
                                                   clock=self.clock, http=self.http)
        self.rt = self.server.runtime
        self.rt.extra.update(resolver=MapResolver({"hooks.example.test": ["127.0.0.1"]}), webhook_http=sink_client(self.sink, []),
                             webhook_allow_loopback=True)

    async def start(self, client: Client, *, bluesky: bool = True) -> str:
        self.sink.secret = ok(await client.call_tool("add_webhook", {"url": HOOK, "events": ["token.expiring", "token.revoked"]}))["secret"]
        if not bluesky:
            return ""
        return ok(await client.call_tool("connect_account", {"platform": "bluesky", "handle": "alice.test", "appPassword": PASSWORD,
                                                             "pdsUrl": PDS_URL}))["id"]

    async def events(self) -> list[tuple[str, str]]:
        await self.rt.webhooks.deliver_due(self.clock.now())
        assert len(self.sink.accepted) == len(self.sink.seen)  # every delivery's signature verified
        return [(r.json["type"], r.json["data"]["accountId"]) for r in self.sink.accepted]


async def expiry(client: Client, account: str) -> datetime:
    return datetime.fromisoformat(ok(await client.call_tool("get_account", {"accountId": account}))["tokenExpiresAt"])


async def test_a_session_is_refreshed_ahead_of_its_end_and_nothing_is_announced(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        assert await expiry(client, account) == NOW + 10 * DAY  # the refresh token's exp, recorded at connect
        assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 0, "expiring": 0, "revoked": 0}  # 10 days left
        env.clock.at = NOW + 4 * DAY  # 6 days left: inside the 7-day window
        assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 1, "expiring": 0, "revoked": 0}
        assert await expiry(client, account) == NOW + 14 * DAY  # the rotated session ends 10 days from the refresh
        assert len(env.fake.calls(REFRESH)) == 1
        # The rotated tokens are the ones used from now on: a publish works without another refresh.
        batch = ok(await client.call_tool("publish_post", {"text": "Still here", "targets": [{"accountId": account}]}))
        assert batch["status"] == "published" and len(env.fake.calls(REFRESH)) == 1
        assert await env.events() == []


async def test_a_refresh_that_fails_for_now_announces_expiry_once_then_succeeds_later(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        env.clock.at = NOW + 5 * DAY
        for announced in (1, 0):  # the second failing check does not repeat the announcement
            env.fake.fail_next(REFRESH, 503, {"error": "InternalServerError", "message": "down"})
            assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 0, "expiring": announced, "revoked": 0}
        assert await env.events() == [("token.expiring", account)]
        data = env.sink.accepted[0].json["data"]
        assert data["expiresAt"].startswith((NOW + 10 * DAY).strftime("%Y-%m-%dT%H:%M:%S"))
        assert data["secondsLeft"] == 5 * 86400 and data["platform"] == "bluesky"
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "active"
        assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 1, "expiring": 0, "revoked": 0}
        assert await expiry(client, account) == NOW + 15 * DAY


async def test_a_refused_refresh_marks_the_account_and_emits_token_revoked(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        env.clock.at = NOW + 5 * DAY
        env.fake.fail_next(REFRESH, 400, {"error": "ExpiredToken", "message": "Token has been revoked"})
        assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 0, "expiring": 0, "revoked": 1}
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "needs_reconnect"
        assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 0, "expiring": 0, "revoked": 0}  # no longer active
        assert await env.events() == [("token.revoked", account)]


async def test_a_token_its_platform_cannot_refresh_is_announced_once_per_expiry(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        await env.start(client, bluesky=False)
        sandbox = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "lapsing"}))["id"]
        assert await env.rt.tokens.check(env.clock.now()) == {"refreshed": 0, "expiring": 0, "revoked": 0}  # no expiry: never
        ends: Any = NOW + 2 * DAY
        for _ in range(2):  # as a platform whose tokens end and cannot be renewed without the user would record it
            async with env.rt.db.session() as s:
                row = await s.get(Account, sandbox)
                assert row is not None
                row.token_expires_at = ends
                s.add(row)
                await s.commit()
            assert (await env.rt.tokens.check(env.clock.now()))["expiring"] == 1
            assert (await env.rt.tokens.check(env.clock.now()))["expiring"] == 0
            ends += 30 * DAY  # reconnected: a new expiry is announced again when it nears
            env.clock.at += 30 * DAY
        assert await env.events() == [("token.expiring", sandbox)] * 2
