"""Webhooks: signed deliveries to an in-process sink, retries on a seeded schedule, the 24 h cutoff,
the delivery log, the SSRF guard, and durability across a restart. Injected clock; no sleeps."""

import base64
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx2
import pytest
from fakes.webhook_sink import WebhookSink
from mcp import Client
from toolresult import err, ok

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.media.fetch import UrlForbiddenError
from omnipost.store.crypto import Vault, load_key
from omnipost.store.db import Database
from omnipost.store.models import WebhookDelivery, WebhookEndpoint
from omnipost.webhooks import LEASE, RETRY_WINDOW, WebhookService, backoff, build_webhook_service

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
SEED = 7
HOOK = "http://hooks.example.test/omnipost?src=1"


class MapResolver:
    """Names to addresses, and a record of every question (so 'no traffic' can be shown)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


@dataclass
class Env:
    svc: WebhookService
    sink: WebhookSink
    clock: FixedClock
    resolver: MapResolver
    profile: str
    db: Database
    http: httpx2.AsyncClient
    sent_to: list[str]  # the URL host of every request put on the wire


def sink_client(sink: WebhookSink, sent_to: list[str]) -> httpx2.AsyncClient:
    async def record(request: httpx2.Request) -> None:
        sent_to.append(request.url.host)

    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=sink.app()), event_hooks={"request": [record]})


async def open_service(tmp_path: Path, clock: FixedClock, http: httpx2.AsyncClient, resolver: MapResolver, *,
                       allow_loopback: bool = True, seed: int = SEED) -> tuple[WebhookService, Database, str]:
    db = await Database.open(None, tmp_path, clock.now())
    profile = await db.ensure_default_profile(clock.now())
    svc = WebhookService(db, Vault(load_key(None, tmp_path)), clock, http, resolver, allow_loopback=allow_loopback,
                         rng=random.Random(seed))
    return svc, db, profile.id


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = FixedClock(NOW)
    sink = WebhookSink(clock=clock)
    sent_to: list[str] = []
    http = sink_client(sink, sent_to)
    resolver = MapResolver({"hooks.example.test": ["127.0.0.1"], "intranet.example.test": ["10.0.0.5"],
                            "mixed.example.test": ["93.184.215.14", "192.168.1.10"]})
    svc, db, profile = await open_service(tmp_path, clock, http, resolver)
    yield Env(svc, sink, clock, resolver, profile, db, http, sent_to)
    await http.aclose()
    await db.close()


async def subscribe(e: Env, events: list[str] | None = None, url: str = HOOK) -> WebhookEndpoint:
    endpoint, secret = await e.svc.create(e.profile, url, events or ["post.published", "post.failed"])
    e.sink.secret = secret
    return endpoint


async def only_delivery(e: Env) -> WebhookDelivery:
    rows = await e.svc.deliveries(e.profile)
    assert len(rows) == 1
    return rows[0]


# --- signing ------------------------------------------------------------------------------


async def test_a_delivery_is_signed_and_the_sink_verifies_it_and_rejects_a_tampered_body(env: Env) -> None:
    endpoint = await subscribe(env, ["post.published"])
    assert endpoint.id.startswith("whk_")
    assert await env.svc.emit(env.profile, "post.published", {"postId": "post_1", "at": NOW}) == 1
    assert await env.svc.emit(env.profile, "post.failed", {"postId": "post_2"}) == 0  # not subscribed
    assert await env.svc.deliver_due(NOW) == {"delivered": 1, "retrying": 0, "failed": 0}

    [got] = env.sink.accepted
    delivery = await only_delivery(env)
    assert got.id == delivery.id and delivery.id.startswith("msg_")
    assert got.json == {"id": delivery.id, "type": "post.published", "createdAt": "2026-11-24T12:00:00Z",
                        "data": {"postId": "post_1", "at": "2026-11-24T12:00:00Z"}}
    assert got.timestamp == int(NOW.timestamp()) and got.headers["content-type"] == "application/json"
    # Independently recomputed: v1,base64(HMAC-SHA256(decoded secret, "id.timestamp.body")).
    key = base64.b64decode(env.sink.secret.removeprefix("whsec_"))
    assert len(key) == 24
    mac = hmac.new(key, f"{got.id}.{got.timestamp}.".encode() + got.body, hashlib.sha256).digest()
    assert got.headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    # Pinned: sent to the vetted address, with the name in Host; path and query kept.
    assert env.sent_to == ["127.0.0.1"] and got.host == "hooks.example.test" and got.path == "/omnipost"
    assert (delivery.status, delivery.attempts, delivery.last_status, delivery.delivered_at) == ("delivered", 1, 204, NOW)

    tampered = got.body.replace(b"post_1", b"post_9")
    headers = {k: got.headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    answer = await env.http.post("http://hooks.example.test/omnipost", content=tampered, headers=headers)
    assert answer.status_code == 400 and answer.json() == {"error": "bad signature"}
    assert len(env.sink.accepted) == 1


async def test_the_secret_is_shown_once_and_stored_encrypted(env: Env) -> None:
    endpoint = await subscribe(env)
    async with env.db.session() as s:
        row = await s.get(WebhookEndpoint, endpoint.id)
    assert row is not None and env.sink.secret.encode() not in row.secret
    assert env.sink.secret.startswith("whsec_")
    _, other = await env.svc.create(env.profile, HOOK, ["post.failed"])
    assert other != env.sink.secret


async def test_a_stale_timestamp_is_rejected_by_the_sink(env: Env) -> None:
    await subscribe(env)
    env.sink.clock = FixedClock(NOW + timedelta(minutes=6))  # the receiver's clock is 6 minutes ahead
    await env.svc.emit(env.profile, "post.published", {"postId": "post_1"})
    assert (await env.svc.deliver_due(NOW))["failed"] == 1
    assert [r.status for r in env.sink.seen] == [400] and env.sink.accepted == []
    delivery = await only_delivery(env)
    assert (delivery.status, delivery.last_status) == ("failed", 400)
    env.sink.clock = FixedClock(NOW + timedelta(minutes=4, seconds=59))  # within tolerance: accepted
    await env.svc.emit(env.profile, "post.published", {"postId": "post_2"})
    assert (await env.svc.deliver_due(NOW))["delivered"] == 1


# --- retries ------------------------------------------------------------------------------


async def test_a_500_is_retried_at_the_seeded_backoff_time_then_delivered(env: Env) -> None:
    await subscribe(env)
    env.sink.fail_next(1, 500)
    await env.svc.emit(env.profile, "post.failed", {"postId": "post_1"})
    assert await env.svc.deliver_due(NOW) == {"delivered": 0, "retrying": 1, "failed": 0}
    due = NOW + timedelta(seconds=backoff(1, random.Random(SEED)))
    delivery = await only_delivery(env)
    assert (delivery.status, delivery.attempts, delivery.last_status, delivery.next_attempt_at) == ("pending", 1, 500, due)
    assert timedelta(seconds=30) <= due - NOW <= timedelta(seconds=36)

    env.clock.at = due - timedelta(milliseconds=1)
    assert await env.svc.deliver_due(env.clock.at) == {"delivered": 0, "retrying": 0, "failed": 0}
    env.clock.at = due
    assert await env.svc.deliver_due(due) == {"delivered": 1, "retrying": 0, "failed": 0}
    delivery = await only_delivery(env)
    assert (delivery.status, delivery.attempts, delivery.delivered_at) == ("delivered", 2, due)
    assert [r.status for r in env.sink.seen] == [500, 204]
    assert env.sink.seen[0].id == env.sink.seen[1].id == delivery.id  # one webhook-id across retries
    assert env.sink.seen[1].timestamp == int(due.timestamp())  # each try is signed with its own time


@pytest.mark.parametrize(("status", "outcome"), [(410, "failed"), (400, "failed"), (404, "failed"),
                                                 (408, "retrying"), (429, "retrying"), (503, "retrying"), (302, "retrying")])
async def test_a_4xx_fails_for_good_except_408_and_429(env: Env, status: int, outcome: str) -> None:
    await subscribe(env)
    env.sink.fail_next(1, status)
    await env.svc.emit(env.profile, "post.published", {"postId": "post_1"})
    assert (await env.svc.deliver_due(NOW))[outcome] == 1
    delivery = await only_delivery(env)
    assert (delivery.attempts, delivery.last_status) == (1, status)
    if outcome == "failed":
        assert delivery.status == "failed" and delivery.next_attempt_at is None
        assert await env.svc.deliver_due(NOW + timedelta(days=2)) == {"delivered": 0, "retrying": 0, "failed": 0}
        assert len(env.sink.seen) == 1


async def test_retries_stop_24_hours_after_the_event(env: Env) -> None:
    await subscribe(env)
    env.sink.fail_next(1000, 503)
    await env.svc.emit(env.profile, "post.published", {"postId": "post_1"})
    tries: list[datetime] = []
    delivery = await only_delivery(env)
    while delivery.status == "pending":
        assert delivery.next_attempt_at is not None
        env.clock.at = delivery.next_attempt_at
        tries.append(env.clock.at)
        await env.svc.deliver_due(env.clock.at)
        delivery = await only_delivery(env)
    # The schedule a seeded rng gives: 30 s doubling to a 6 h cap, +0-20 %, until the next would pass 24 h.
    rng, at, expected = random.Random(SEED), NOW, [NOW]
    while True:
        at += timedelta(seconds=backoff(len(expected), rng))
        if at > NOW + RETRY_WINDOW:
            break
        expected.append(at)
    assert tries == expected and len(tries) == delivery.attempts == len(env.sink.seen)
    assert tries[-1] <= NOW + RETRY_WINDOW
    assert delivery.status == "failed" and delivery.last_status == 503 and "gave up after 24 h" in (delivery.last_error or "")
    assert max(b - a for a, b in zip(tries, tries[1:])) <= timedelta(hours=6 * 1.2)


# --- the log ------------------------------------------------------------------------------


async def test_the_delivery_log_lists_each_attempts_outcome_newest_first(env: Env) -> None:
    a = await subscribe(env, ["post.published"])
    b = await subscribe(env, ["post.published", "token.revoked"])  # sink.secret is now b's: a's deliveries fail
    assert await env.svc.emit(env.profile, "post.published", {"postId": "post_1"}) == 2
    assert await env.svc.emit(env.profile, "token.revoked", {"accountId": "acc_1"}) == 1
    await env.svc.deliver_due(NOW)
    log = await env.svc.deliveries(env.profile)
    assert [d.event_type for d in log] == ["token.revoked", "post.published", "post.published"]
    by_endpoint = {d.endpoint_id: d for d in log if d.event_type == "post.published"}
    assert (by_endpoint[a.id].status, by_endpoint[a.id].last_status) == ("failed", 400)  # bad signature for a's secret
    assert (by_endpoint[b.id].status, by_endpoint[b.id].last_status) == ("delivered", 204)
    assert [d.event_type for d in await env.svc.deliveries(env.profile, b.id)] == ["token.revoked", "post.published"]
    assert len(await env.svc.deliveries(env.profile, limit=1)) == 1
    assert await env.svc.deliveries("prf_other") == []
    assert log[0].payload["data"] == {"accountId": "acc_1"} and log[0].payload["id"] == log[0].id
    # Deleting an endpoint drops its pending deliveries, keeps the log, and stops new ones.
    await env.svc.emit(env.profile, "token.revoked", {"accountId": "acc_2"})
    await env.svc.delete(env.profile, b.id)
    assert [e.id for e in await env.svc.list(env.profile)] == [a.id]
    assert (await env.svc.deliveries(env.profile, b.id))[0].last_error == "endpoint deleted"
    assert await env.svc.emit(env.profile, "token.revoked", {"accountId": "acc_3"}) == 0


async def test_send_test_delivers_now_whatever_the_subscription(env: Env) -> None:
    endpoint = await subscribe(env, ["post.failed"])
    delivery = await env.svc.send_test(env.profile, endpoint.id)
    assert delivery.status == "delivered" and delivery.event_type == "webhook.test"
    assert env.sink.accepted[0].json["data"]["endpointId"] == endpoint.id


# --- SSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://intranet.example.test/hook", "http://mixed.example.test/hook",
                                 "http://127.0.0.1/hook", "http://2130706433/hook", "http://[::1]/hook",
                                 "http://169.254.169.254/latest", "http://localhost/hook", "ftp://hooks.example.test/",
                                 "http://user:pw@hooks.example.test/"])
async def test_a_non_public_url_is_refused_at_registration_without_traffic(env: Env, url: str) -> None:
    with pytest.raises(UrlForbiddenError) as caught:
        await env.svc.create(env.profile, url, ["post.published"])
    assert caught.value.rule == "media.url_forbidden" and "webhooks" in (caught.value.remediation or "")
    assert env.sent_to == [] and await env.svc.list(env.profile) == []


async def test_loopback_is_refused_unless_allow_loopback(env: Env, tmp_path: Path) -> None:
    strict = WebhookService(env.db, env.svc.vault, env.clock, env.http, env.resolver)  # production default
    with pytest.raises(UrlForbiddenError, match="loopback"):
        await strict.create(env.profile, HOOK, ["post.published"])
    assert env.resolver.asked == ["hooks.example.test"]  # decided on the resolved address
    endpoint = await subscribe(env)  # the test service allows loopback
    # A service without the test switch refuses it again at delivery, so an endpoint that starts
    # resolving to a forbidden address later gets nothing.
    await strict.emit(env.profile, "post.published", {"postId": "post_1"})
    assert await strict.deliver_due(NOW) == {"delivered": 0, "retrying": 0, "failed": 1}
    delivery = await only_delivery(env)
    assert delivery.endpoint_id == endpoint.id and (delivery.last_error or "").startswith("url_forbidden")
    assert env.sent_to == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/hook", "http://localhost:3000/hook", "http://[::1]:9000/hook",
                                 "http://hooks.example.test/omnipost"])
async def test_the_development_setting_lets_webhooks_reach_a_local_receiver_and_nothing_private(env: Env, url: str) -> None:
    dev = WebhookService(env.db, env.svc.vault, env.clock, env.http, env.resolver, local_receivers=True)
    endpoint, secret = await dev.create(env.profile, url, ["post.published"])
    env.sink.secret = secret
    await dev.emit(env.profile, "post.published", {"postId": "post_1"})
    assert await dev.deliver_due(NOW) == {"delivered": 1, "retrying": 0, "failed": 0}
    assert len(env.sink.accepted) == 1 and env.sent_to[-1] in ("127.0.0.1", "[::1]", "::1")  # signature verified
    for private in ("http://10.0.0.1/hook", "http://169.254.169.254/latest", "http://intranet.example.test/hook",
                    "http://mixed.example.test/hook"):
        with pytest.raises(UrlForbiddenError):
            await dev.create(env.profile, private, ["post.published"])


def test_the_development_setting_is_off_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from omnipost.config import Settings

    assert Settings(data_dir=tmp_path, _env_file=None).webhook_allow_loopback is False  # type: ignore[call-arg]
    monkeypatch.setenv("OMNIPOST_WEBHOOK_ALLOW_LOOPBACK", "true")
    assert Settings(data_dir=tmp_path, _env_file=None).webhook_allow_loopback is True  # type: ignore[call-arg]


async def test_an_address_change_after_registration_is_caught_at_delivery(env: Env) -> None:
    await subscribe(env)
    env.resolver.table["hooks.example.test"] = ["10.1.2.3"]  # DNS now answers a private address
    await env.svc.emit(env.profile, "post.published", {"postId": "post_1"})
    assert (await env.svc.deliver_due(NOW))["failed"] == 1
    assert env.sent_to == [] and "private" in ((await only_delivery(env)).last_error or "")


async def test_an_unresolvable_host_is_retried(env: Env) -> None:
    await subscribe(env)
    del env.resolver.table["hooks.example.test"]
    await env.svc.emit(env.profile, "post.published", {"postId": "post_1"})
    assert (await env.svc.deliver_due(NOW))["retrying"] == 1
    assert (await only_delivery(env)).last_error.startswith("unreachable")  # type: ignore[union-attr]


# --- durability ---------------------------------------------------------------------------


async def test_no_delivery_is_lost_across_a_restart(env: Env, tmp_path: Path) -> None:
    await subscribe(env)
    await env.svc.emit(env.profile, "post.published", {"postId": "post_1"})
    await env.svc.emit(env.profile, "post.failed", {"postId": "post_2"})
    # The second one is claimed (counted, leased) and then the process dies before settling it.
    second = (await env.svc.deliveries(env.profile))[0]
    assert await env.svc._claim(second.id, NOW) is not None
    await env.db.close()
    del env.svc

    svc, db, profile = await open_service(tmp_path, env.clock, env.http, env.resolver)
    try:
        assert profile == env.profile
        assert await svc.deliver_due(NOW) == {"delivered": 1, "retrying": 0, "failed": 0}  # the leased one waits
        env.clock.at = NOW + LEASE
        assert await svc.deliver_due(env.clock.at) == {"delivered": 1, "retrying": 0, "failed": 0}
        log = {d.event_type: d for d in await svc.deliveries(profile)}
        assert {t: (d.status, d.attempts) for t, d in log.items()} == {"post.published": ("delivered", 1),
                                                                       "post.failed": ("delivered", 2)}
        assert sorted(json.loads(r.body)["type"] for r in env.sink.accepted) == ["post.failed", "post.published"]
    finally:
        await db.close()
        env.db = await Database.open(None, tmp_path, NOW)  # for the fixture's teardown


async def test_emit_inside_the_callers_transaction_commits_with_it(env: Env) -> None:
    await subscribe(env)
    async with env.db.session() as s:
        assert await env.svc.emit(env.profile, "post.queued", {"postId": "post_1"}, session=s) == 0  # not subscribed
        assert await env.svc.emit(env.profile, "post.published", {"postId": "post_1"}, session=s) == 1
        await s.rollback()
    assert await env.svc.deliveries(env.profile) == []
    async with env.db.session() as s:
        await env.svc.emit(env.profile, "post.published", {"postId": "post_1"}, session=s)
        await s.commit()
    assert len(await env.svc.deliveries(env.profile)) == 1
    with pytest.raises(ValueError):
        await env.svc.emit(env.profile, "post.exploded", {})


# --- tools --------------------------------------------------------------------------------


async def test_the_tools_add_list_test_log_and_delete(settings: Settings) -> None:
    clock = FixedClock(NOW)
    sink = WebhookSink(clock=clock)
    sent_to: list[str] = []
    http = sink_client(sink, sent_to)
    server = build_server(settings, clock=clock)
    rt = server.runtime
    rt.extra.update(resolver=MapResolver({"hooks.example.test": ["127.0.0.1"], "intranet.example.test": ["10.0.0.5"]}),
                    webhook_http=http, webhook_allow_loopback=True)
    async with Client(server) as client:
        await rt.wait_ready()
        rt.webhooks = build_webhook_service(rt)

        created = ok(await client.call_tool("add_webhook", {"url": HOOK, "events": ["post.published"]}))
        sink.secret = created["secret"]
        hook = created["webhook"]
        assert created["secret"].startswith("whsec_") and hook["id"].startswith("whk_") and hook["events"] == ["post.published"]
        listed = ok(await client.call_tool("list_webhooks", {}))
        assert listed == {"webhooks": [hook]} and "whsec_" not in json.dumps(listed)

        delivery = ok(await client.call_tool("test_webhook", {"webhookId": hook["id"]}))
        assert (delivery["status"], delivery["eventType"], delivery["attempts"], delivery["lastStatus"]) == \
            ("delivered", "webhook.test", 1, 204)
        assert sink.accepted[0].id == delivery["id"]
        log = ok(await client.call_tool("list_webhook_deliveries", {"webhookId": hook["id"]}))
        assert [d["id"] for d in log["deliveries"]] == [delivery["id"]]
        assert ok(await client.call_tool("list_webhook_deliveries", {"status": "failed"}))["deliveries"] == []

        refused = err(await client.call_tool("add_webhook", {"url": "http://intranet.example.test/", "events": ["post.failed"]}))
        assert (refused["code"], refused["rule"]) == ("validation_failed", "media.url_forbidden")
        assert err(await client.call_tool("add_webhook", {"url": HOOK, "events": ["post.exploded"]}))["code"] == "validation_failed"

        assert ok(await client.call_tool("delete_webhook", {"webhookId": hook["id"]}))["id"] == hook["id"]
        assert ok(await client.call_tool("list_webhooks", {}))["webhooks"] == []
        assert err(await client.call_tool("test_webhook", {"webhookId": hook["id"]}))["code"] == "not_found"
    await http.aclose()
    assert sent_to == ["127.0.0.1"]


async def test_a_publish_emits_signed_post_events_that_the_receiver_verifies(settings: Settings) -> None:
    clock = FixedClock(NOW)
    sink = WebhookSink(clock=clock)
    sent_to: list[str] = []
    server = build_server(settings.model_copy(update={"scheduler_enabled": False}), clock=clock)
    rt = server.runtime
    rt.extra.update(resolver=MapResolver({"hooks.example.test": ["127.0.0.1"]}), webhook_http=sink_client(sink, sent_to),
                    webhook_allow_loopback=True)
    async with Client(server) as client:
        created = ok(await client.call_tool("add_webhook", {"url": HOOK, "events": ["post.validated", "post.published", "post.failed"]}))
        sink.secret = created["secret"]
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "hooked"}))["id"]
        batch = ok(await client.call_tool("publish_post", {"text": "Tell the world", "targets": [{"accountId": account}]}))
        post_id = batch["results"][0]["postId"]
        outcome = await rt.webhooks.deliver_due(clock.now())
    assert sink.seen and len(sink.accepted) == len(sink.seen)  # every delivery's signature verified
    events = [(r.json["type"], r.json["data"]["postId"]) for r in sink.accepted]
    assert events == [("post.validated", post_id), ("post.published", post_id)], outcome
    assert sink.accepted[1].json["data"]["url"] == batch["results"][0]["url"]


async def test_an_account_whose_token_is_refused_emits_token_revoked_once(settings: Settings) -> None:
    clock = FixedClock(NOW)
    sink = WebhookSink(clock=clock)
    server = build_server(settings.model_copy(update={"scheduler_enabled": False}), clock=clock)
    rt = server.runtime
    rt.extra.update(resolver=MapResolver({"hooks.example.test": ["127.0.0.1"]}), webhook_http=sink_client(sink, []),
                    webhook_allow_loopback=True)
    async with Client(server) as client:
        sink.secret = ok(await client.call_tool("add_webhook", {"url": HOOK, "events": ["token.revoked"]}))["secret"]
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "expired"}))["id"]
        # The sandbox refuses a wrong token with 401, as a platform does for a revoked one.
        from omnipost.store.models import Account

        async with rt.db.session() as s:
            row = await s.get(Account, account)
            row.credentials = rt.accounts.vault.seal({"token": "revoked-token"})
            s.add(row)
            await s.commit()
        first = ok(await client.call_tool("publish_post", {"text": "Refused", "targets": [{"accountId": account}]}))
        assert first["results"][0]["error"]["code"] == "platform_auth_failed"
        assert ok(await client.call_tool("get_account", {"accountId": account}))["health"] == "needs_reconnect"
        await rt.webhooks.deliver_due(clock.now())
    assert [(r.json["type"], r.json["data"]["accountId"]) for r in sink.accepted] == [("token.revoked", account)]
