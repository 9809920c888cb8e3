"""What an API key reaches: an op_test_ key sees only sandbox accounts (and the posts, batches and drafts
that target only them) and test-mode media and webhooks; everything else is `not_found` to it, exactly as
an unknown id, and nothing changes. A live key (and the local stdio user) reaches everything.

The table below has a row for every tool the server lists; a tool added without one fails
`test_every_tool_has_a_row`. Each row runs as {test key, live key} × {sandbox, real} objects. Callers are
set as the HTTP transports set them (the SDK's auth context, holding the AccessToken keys.py makes).
"""

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from fakes.bluesky import PDS_URL
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mediagen import b64, make_image
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from sqlalchemy import update as sa_update
from sqlmodel import SQLModel, col, select
from test_store import TIMESTAMP, Backend, backend  # noqa: F401 - the fixture: SQLite and PostgreSQL
from test_tokens import PASSWORD, Setup
from test_webhooks import HOOK
from toolresult import err, ok

from conftest import NOW
from omnipost.config import Settings
from omnipost.keys import access_token
from omnipost.store.db import Database
from omnipost.store.models import Batch, Media, Post, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.anyio

TEST = access_token("key_test", None, "test")
LIVE = access_token("key_live", None, "live")
KINDS = ("sandbox", "real")  # a sandbox account and what targets only it / test-mode media and webhooks; the rest
LATER = (NOW + timedelta(days=1)).isoformat()
LATER_STILL = (NOW + timedelta(days=2)).isoformat()
UNSEEN = "0" * 26  # the ULID part of an id that names nothing


@contextmanager
def as_key(token: AccessToken | None) -> Iterator[None]:
    """Tool calls in this block come from `token`'s key (None: the local stdio user), as the HTTP transports set it."""
    reset = auth_context_var.set(AuthenticatedUser(token) if token is not None else None)
    try:
        yield
    finally:
        auth_context_var.reset(reset)


def mode_of(token: AccessToken) -> str:
    return "test" if "mode:test" in token.scopes else "live"


class World:
    """A server with the fake Bluesky PDS, the embedded sandbox and a webhook sink; objects made on demand."""

    def __init__(self, settings: Settings) -> None:
        self.setup = Setup(settings)
        self.server, self.rt, self.fake, self.sink = self.setup.server, self.setup.rt, self.setup.fake, self.setup.sink
        self._n = itertools.count(1)
        self.client: Client

    def n(self) -> int:
        return next(self._n)

    async def call(self, token: AccessToken | None, tool: str, args: dict[str, Any]) -> Any:
        with as_key(token):
            return await self.client.call_tool(tool, args)

    async def make(self, tool: str, args: dict[str, Any], token: AccessToken | None = None) -> dict[str, Any]:
        return ok(await self.call(token, tool, args))

    async def account(self, kind: str) -> str:
        if kind == "sandbox":
            args = {"platform": "sandbox", "emulates": "bluesky", "handle": f"sandbox{self.n()}.test"}
        else:
            args = {"platform": "bluesky", "handle": "alice.test", "appPassword": PASSWORD, "pdsUrl": PDS_URL}
        return (await self.make("connect_account", args))["id"]

    async def batch(self, kind: str, state: str) -> dict[str, Any]:
        """A batch with one post in `state` (draft, published, queued, failed) on a new account of `kind`."""
        request: dict[str, Any] = {"text": f"Post number {self.n()}", "targets": [{"accountId": await self.account(kind)}]}
        if state == "queued":
            return await self.make("schedule_post", request | {"scheduledAt": LATER})
        result = await self.make("publish_post", request | {"draft": state in ("draft", "failed")})
        if state == "failed":  # as a transient upstream failure leaves it
            error = {"code": "platform_unavailable", "message": "The platform was unavailable.", "retryable": True}
            async with self.db.session() as s:
                await s.exec(sa_update(Post).where(col(Post.batch_id) == result["id"]).values(status="failed", error=error))
                await s.exec(sa_update(Batch).where(col(Batch.id) == result["id"]).values(mode="immediate", status="failed"))
                await s.commit()
        return result

    async def post(self, kind: str, state: str) -> str:
        return (await self.batch(kind, state))["results"][0]["postId"]

    def owner(self, kind: str) -> AccessToken:
        """Who creates a media record or webhook endpoint of this kind: sandbox = test mode, real = live."""
        return TEST if kind == "sandbox" else LIVE

    async def media(self, kind: str) -> str:
        image = b64(make_image(width=10 + self.n(), height=10))
        return (await self.make("upload_media", {"bytesBase64": image}, self.owner(kind)))["id"]

    async def webhook(self, kind: str) -> str:
        created = await self.make("add_webhook", {"url": HOOK, "events": ["post.published"]}, self.owner(kind))
        self.sink.secret = created["secret"]  # the sink verifies the newest endpoint's signatures
        return created["webhook"]["id"]

    async def delivery(self, kind: str) -> str:
        webhook = await self.webhook(kind)
        await self.make("test_webhook", {"webhookId": webhook}, self.owner(kind))
        return webhook

    @property
    def db(self) -> Database:
        assert self.rt.db is not None
        return self.rt.db

    async def snapshot(self) -> dict[str, Any]:
        """Every stored row (but workers' heartbeats) and every request upstream: what a refused call must leave alone."""
        rows: dict[str, Any] = {}
        async with self.db.engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                if table.name != "scheduler_heartbeats":
                    rows[table.name] = sorted(map(repr, (await conn.execute(sa.select(table))).all()))
        return {"rows": rows, "pds": len(self.fake.log), "hooks": len(self.sink.seen)}

    async def settle(self) -> None:
        """What the background would do next: a scheduler tick and a webhook delivery tick."""
        assert self.rt.scheduler_ is not None
        await self.rt.scheduler_.run_due(self.rt.clock.now())
        await self.rt.webhooks.deliver_due(self.rt.clock.now())


Arrange = Callable[[World, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Reaches:
    """A tool that names one object: a test key on a real one gets `refusal` (the answer to an unknown id) and
    nothing changes; every other caller × kind succeeds. `also` are more ways to name the same object."""

    arrange: Arrange
    refusal: str = "not_found"
    also: Callable[[dict[str, Any]], list[dict[str, Any]]] = lambda args: []


@dataclass(frozen=True)
class Lists:
    """A tool that lists: a test key gets only the sandbox objects, a live key both."""

    arrange: Callable[[World, str], Awaitable[str]]  # makes one object of the kind; returns its id
    ids: Callable[[dict[str, Any]], list[str]]
    args: dict[str, Any] | None = None


@dataclass(frozen=True)
class Creates:
    """A tool that creates a profile-level object: it records the key's mode; a test key lists only test-mode ones."""

    args: Callable[[World], dict[str, Any]]
    created: Callable[[dict[str, Any]], str]
    listed_by: str
    ids: Callable[[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class Same:
    """A tool about no stored object: every caller gets the same answer."""

    args: Callable[[World], dict[str, Any]] = lambda w: {}
    differs: bool = False  # the answer is a new object each time (create_profile)


async def _request(w: World, kind: str) -> dict[str, Any]:
    return {"text": f"Hello {w.n()}", "targets": [{"accountId": await w.account(kind)}]}


async def _draft(w: World, kind: str) -> dict[str, Any]:
    batch = await w.batch(kind, "draft")
    return {"id": batch["id"], "idempotencyKey": f"draft-{w.n()}", "_post": batch["results"][0]["postId"]}


async def _queued(w: World, kind: str) -> dict[str, Any]:
    batch = await w.batch(kind, "queued")
    return {"id": batch["results"][0]["postId"], "scheduledAt": LATER_STILL, "_batch": batch["id"]}


async def _edit(w: World, kind: str) -> dict[str, Any]:
    batch = await w.batch(kind, "queued")
    return {"id": batch["results"][0]["postId"], "text": f"Edited {w.n()}", "idempotencyKey": f"edit-{w.n()}",
            "_batch": batch["id"]}


async def _bulk(w: World, kind: str) -> dict[str, Any]:
    """atomic: an item naming an account out of reach refuses the call, as one error (non-atomic: that item's error)."""
    return {"items": [await _with(_request(w, kind), scheduledAt=LATER)], "atomic": True, "idempotencyKey": f"bulk-{w.n()}"}


def _ids(field: str, key: str = "id") -> Callable[[dict[str, Any]], list[str]]:
    return lambda result: [item[key] for item in result[field]]


TABLE: dict[str, Reaches | Lists | Creates | Same] = {
    # drafting
    "validate_post": Reaches(_request),
    "list_preflight_rules": Same(lambda w: {"platform": "bluesky"}),
    "explain_preflight_rule": Same(lambda w: {"rule_id": "bluesky.text.max_graphemes"}),
    # accounts and profiles
    "connect_account": Reaches(lambda w, kind: _connect_args(w, kind), refusal="unauthorized"),
    "list_accounts": Lists(World.account, _ids("accounts")),
    "get_account": Reaches(lambda w, kind: _named("accountId", w.account(kind))),
    "disconnect_account": Reaches(lambda w, kind: _named("accountId", w.account(kind))),
    "complete_connect": Reaches(lambda w, kind: _connect_session(w, kind)),
    "list_profiles": Same(),
    "create_profile": Same(lambda w: {"name": f"brand-{w.n()}"}, differs=True),
    # publishing
    "publish_post": Reaches(_request),
    "publish_draft": Reaches(_draft, also=lambda args: [args | {"id": args["_post"]}]),
    "get_post": Reaches(lambda w, kind: _named("postId", w.post(kind, "published"))),
    "list_posts": Lists(lambda w, kind: w.post(kind, "published"), _ids("posts", "postId")),
    "cancel_post": Reaches(lambda w, kind: _named("id", w.post(kind, "queued"), idempotencyKey=f"cancel-{w.n()}")),
    "delete_post": Reaches(lambda w, kind: _named("postId", w.post(kind, "published"), idempotencyKey=f"delete-{w.n()}")),
    "resolve_post": Reaches(lambda w, kind: _named("postId", _unknown(w, kind), resolution="resend", idempotencyKey=f"resolve-{w.n()}")),
    # media
    "upload_media": Creates(lambda w: {"bytesBase64": b64(make_image(width=10 + w.n(), height=10))}, lambda r: r["id"],
                            "list_media", _ids("media")),
    "list_media": Lists(World.media, _ids("media")),
    "delete_media": Reaches(lambda w, kind: _named("mediaId", w.media(kind))),
    # scheduling
    "schedule_post": Reaches(lambda w, kind: _with(_request(w, kind), scheduledAt=LATER)),
    "reschedule_post": Reaches(_queued, also=lambda args: [args | {"id": args["_batch"]}]),
    "update_post": Reaches(_edit, also=lambda args: [args | {"id": args["_batch"]}]),
    "schedule_posts": Reaches(_bulk),
    "retry_post": Reaches(lambda w, kind: _named("batchId", _batch_id(w.batch(kind, "failed")), idempotencyKey=f"retry-{w.n()}")),
    "scheduler_status": Lists(lambda w, kind: w.post(kind, "queued"), lambda r: ["x"] * r["queueDepth"]),
    # webhooks
    "add_webhook": Creates(lambda w: {"url": HOOK, "events": ["post.published"]}, lambda r: r["webhook"]["id"], "list_webhooks",
                           _ids("webhooks")),
    "list_webhooks": Lists(World.webhook, _ids("webhooks")),
    "delete_webhook": Reaches(lambda w, kind: _named("webhookId", w.webhook(kind))),
    "test_webhook": Reaches(lambda w, kind: _named("webhookId", w.webhook(kind))),
    "list_webhook_deliveries": Lists(World.delivery, _ids("deliveries", "webhookId")),
    # versions
    "platform_versions": Same(),
}


async def _named(field: str, made: Awaitable[str], **more: Any) -> dict[str, Any]:
    return {field: await made, **more}


async def _with(args: Awaitable[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return await args | more


async def _batch_id(batch: Awaitable[dict[str, Any]]) -> str:
    return (await batch)["id"]


async def _unknown(w: World, kind: str) -> str:
    """A post whose outcome is unknown (a stored draft, as a lost answer that could not be reconciled leaves it)."""
    post_id = await w.post(kind, "draft")
    error = {"code": "platform_outcome_unknown", "message": "The answer was lost.", "retryable": False}
    async with w.db.session() as s:
        await s.exec(sa_update(Post).where(col(Post.id) == post_id).values(status="unknown", error=error))
        await s.commit()
    return post_id


async def _connect_session(w: World, kind: str) -> dict[str, Any]:
    """An OAuth connect the user finished: of a sandbox account (through the emulated platform's sign-in) or a real one."""
    from datetime import timedelta

    from omnipost.store.models import ConnectSession

    state = f"state-{w.n()}"
    await w.rt.wait_ready()
    profile = await w.rt.accounts.resolve_profile(None)
    now = w.rt.clock.now()
    async with w.db.session() as s:
        s.add(ConnectSession(state=state, profile_id=profile.id, platform="x", target="sandbox" if kind == "sandbox" else "account",
                             redirect_uri="http://127.0.0.1:8788/callback", verifier=b"sealed", status="connected",
                             created_at=now, expires_at=now + timedelta(minutes=10), finished_at=now))
        await s.commit()
    return {"state": state}


async def _connect_args(w: World, kind: str) -> dict[str, Any]:
    if kind == "sandbox":
        return {"platform": "sandbox", "emulates": "x", "handle": f"new{w.n()}.test"}
    return {"platform": "bluesky", "handle": "alice.test", "appPassword": PASSWORD, "pdsUrl": PDS_URL}


def unseen(value: Any) -> Any:
    """The same arguments naming nothing: every id's ULID part replaced, every idempotency key fresh."""
    if isinstance(value, dict):
        return {k: (v + "-unseen" if k in ("idempotencyKey", "state") else unseen(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [unseen(v) for v in value]
    if isinstance(value, str) and value.split("_", 1)[0] in ("acc", "post", "bat", "med", "whk"):
        return value.split("_", 1)[0] + "_" + UNSEEN
    return value


def ids_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [i for v in value.values() for i in ids_in(v)]
    if isinstance(value, list):
        return [i for v in value for i in ids_in(v)]
    return [value] if isinstance(value, str) and unseen(value) != value else []


@pytest.fixture
async def world(settings: Settings) -> World:
    return World(settings)


@asynccontextmanager
async def connected(world: World) -> AsyncIterator[World]:
    """The world's server with a client connected, for a bounded time."""
    with anyio.fail_after(60):
        async with Client(world.server) as client:
            world.client = client
            yield world


async def test_every_tool_has_a_row(client: Client) -> None:
    """A tool the table does not know (so nobody decided what a test key may do with it) fails here."""
    assert {t.name for t in (await client.list_tools()).tools} == set(TABLE)


@pytest.mark.parametrize("tool", sorted(TABLE))
async def test_a_test_key_reaches_only_sandbox_objects(tool: str, world: World) -> None:
    row = TABLE[tool]
    async with connected(world):
        if isinstance(row, Reaches):
            await _check_reaches(world, tool, row)
        elif isinstance(row, Lists):
            await _check_lists(world, tool, row)
        elif isinstance(row, Creates):
            await _check_creates(world, tool, row)
        else:
            await _check_same(world, tool, row)


def _tool_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if not k.startswith("_")}


async def _check_reaches(w: World, tool: str, row: Reaches) -> None:
    for token, kind in itertools.product((TEST, LIVE), KINDS):
        args = await row.arrange(w, kind)
        if token is TEST and kind == "real":
            for variant in [args, *row.also(args)]:
                await w.settle()
                before = await w.snapshot()
                refused = err(await w.call(TEST, tool, _tool_args(variant)))
                await w.settle()
                assert await w.snapshot() == before, f"{tool}: a refused call changed something"
                assert refused["code"] == row.refusal, (tool, refused)
                if row.refusal == "not_found":  # the very answer an unknown id gets: nothing says it exists
                    unknown = err(await w.call(LIVE, tool, _tool_args(unseen(variant))))
                    message = refused["message"]
                    for real_id in ids_in(_tool_args(variant)):
                        message = message.replace(real_id, unseen(real_id))
                    assert (refused["rule"], message) == (unknown["rule"], unknown["message"]), tool
        else:
            result = ok(await w.call(token, tool, _tool_args(args)))
            assert result is not None, (tool, mode_of(token), kind)
            await w.settle()


async def _check_lists(w: World, tool: str, row: Lists) -> None:
    made = {kind: await row.arrange(w, kind) for kind in KINDS}
    for token in (TEST, LIVE):
        listed = row.ids(ok(await w.call(token, tool, row.args or {})))
        expected = [made["sandbox"]] if token is TEST else [made["sandbox"], made["real"]]
        if tool == "scheduler_status":  # counts, not ids
            assert len(listed) == len(expected), (tool, mode_of(token))
        else:
            assert sorted(set(listed)) == sorted(expected), (tool, mode_of(token))


async def _check_creates(w: World, tool: str, row: Creates) -> None:
    made = {mode_of(token): row.created(ok(await w.call(token, tool, row.args(w)))) for token in (TEST, LIVE)}
    assert row.ids(ok(await w.call(TEST, row.listed_by, {}))) == [made["test"]], tool
    assert sorted(row.ids(ok(await w.call(LIVE, row.listed_by, {})))) == sorted(made.values()), tool


async def _check_same(w: World, tool: str, row: Same) -> None:
    for kind in KINDS:
        await w.account(kind)  # something of each kind exists, and makes no difference
    answers = [ok(await w.call(token, tool, row.args(w))) for token in (TEST, LIVE)]
    if not row.differs:
        assert answers[0] == answers[1], tool


# ---- beyond the table ----------------------------------------------------------------------------


async def test_an_idempotency_key_a_live_key_used_replays_nothing_to_a_test_key(world: World) -> None:
    """Test and live keys have separate idempotency keys (as Stripe's modes do): a replay would hand out the real object."""
    async with connected(world):
        queued = await world.post("real", "queued")
        ok(await world.call(LIVE, "cancel_post", {"id": queued, "idempotencyKey": "same"}))
        assert err(await world.call(TEST, "cancel_post", {"id": queued, "idempotencyKey": "same"}))["code"] == "not_found"
        request = await _request(world, "real") | {"idempotencyKey": "publish-once"}
        batch = ok(await world.call(LIVE, "publish_post", request))
        refused = err(await world.call(TEST, "publish_post", request))
        assert (refused["code"], refused["rule"]) == ("not_found", "targets[0].accountId")
        assert batch["id"] not in str(refused)


async def test_a_test_key_cannot_use_live_media_in_a_post(world: World) -> None:
    async with connected(world):
        account = await world.account("sandbox")
        answers = {}
        for name, media in (("live", await world.media("real")), ("test", await world.media("sandbox")), ("none", "med_" + UNSEEN)):
            request = {"text": "With a picture", "targets": [{"accountId": account}], "media": [{"mediaId": media}]}
            answers[name] = ok(await world.call(TEST, "validate_post", request))
        assert answers["test"]["valid"] is True
        assert answers["live"]["valid"] is False
        assert [e["rule"] for e in answers["live"]["results"][0]["errors"]] == [e["rule"] for e in answers["none"]["results"][0]["errors"]]


async def test_events_about_real_accounts_never_reach_a_test_mode_endpoint(world: World) -> None:
    async with connected(world):
        endpoints = {kind: await world.webhook(kind) for kind in KINDS}  # sandbox kind = made by a test key
        posts = {kind: await world.post(kind, "published") for kind in KINDS}
        async with world.db.session() as s:
            rows = (await s.exec(select(WebhookDelivery).where(WebhookDelivery.event_type == "post.published"))).all()
        got = {(r.endpoint_id, r.payload["data"]["postId"]) for r in rows}
        assert got == {(endpoints["real"], posts["real"]), (endpoints["real"], posts["sandbox"]),
                       (endpoints["sandbox"], posts["sandbox"])}


async def test_media_and_webhooks_stored_before_modes_are_live(tmp_path: Path, backend: Backend) -> None:
    old = await Database.open(backend.url, tmp_path, NOW, target_version=4)
    stamp = TIMESTAMP[backend.name]
    async with old.engine.begin() as conn:
        await conn.execute(sa.text(f"INSERT INTO profiles (id, name, created_at) VALUES ('prf_old', 'legacy', '{stamp}')"))
        await conn.execute(sa.text("INSERT INTO media (id, profile_id, sha256, kind, mime, size, created_at) "
                                   f"VALUES ('med_old', 'prf_old', 'ab', 'image', 'image/png', 1, '{stamp}')"))
        await conn.execute(sa.text("INSERT INTO webhook_endpoints (id, profile_id, url, events, secret, created_at) "
                                   f"VALUES ('whk_old', 'prf_old', 'https://example.com/', '[]', :secret, '{stamp}')"), {"secret": b"x"})
    await old.close()
    new = await Database.open(backend.url, tmp_path, NOW)
    async with new.session() as s:
        media, endpoint = await s.get(Media, "med_old"), await s.get(WebhookEndpoint, "whk_old")
        assert media is not None and endpoint is not None
        assert (media.mode, endpoint.mode) == ("live", "live")
    await new.close()


@pytest.mark.parametrize("tool", sorted(tool for tool, row in TABLE.items() if isinstance(row, Lists)))
async def test_lists_leave_out_what_a_test_key_cannot_see_on_postgresql_too(tool: str, settings: Settings, pg_url: str) -> None:
    world = World(settings.model_copy(update={"database_url": pg_url}))
    async with connected(world):
        await _check_lists(world, tool, TABLE[tool])  # type: ignore[arg-type]  # a Lists row by the parametrisation
