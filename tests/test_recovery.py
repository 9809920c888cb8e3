"""After a restart, posts left mid-publish are reconciled through the adapter, never re-posted blind."""

from typing import Any

import pytest
from toolresult import ok
from mcp import Client
from sqlmodel import select

from omnipost.app import build_server
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.store.models import Attempt, IdempotencyRecord, Post

pytestmark = pytest.mark.anyio



async def set_state(settings: Settings, clock: Any, post_id: str, status: str, *, with_attempt: bool) -> None:
    """Rewrite a post as a crash would have left it (the server is not running)."""
    from omnipost.store.db import Database, new_id

    db = await Database.open(None, settings.data_dir, clock.now())
    async with db.session() as s:
        post = await s.get(Post, post_id)
        assert post is not None
        post.status, post.upstream_id, post.url = status, None, None
        s.add(post)
        if with_attempt:
            s.add(Attempt(id=new_id("att"), post_id=post_id, number=9, started_at=clock.now()))
        await s.commit()
    await db.close()


async def test_a_post_published_before_the_crash_is_reconciled_not_sent_again(settings: Settings, clock: Any) -> None:
    async with Client(build_server(settings, clock=clock)) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "a"}))["id"]
        batch = ok(await client.call_tool("publish_post", {"text": "Crash me", "targets": [{"accountId": account}]}))
    post_id = batch["results"][0]["postId"]
    await set_state(settings, clock, post_id, "publishing", with_attempt=True)  # killed after the upstream stored it
    async with Client(build_server(settings, clock=clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published" and detail["url"]
    assert detail["attempts"][-1]["outcome"] == "reconciled"
    assert [p["id"] for p in list_posts(settings.data_dir / "sandbox.db")] == [post_id]


async def test_a_post_that_never_reached_the_platform_is_sent_once_after_restart(settings: Settings, clock: Any) -> None:
    async with Client(build_server(settings, clock=clock)) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "b"}))["id"]
        draft = ok(await client.call_tool("publish_post", {"text": "Never sent", "draft": True, "targets": [{"accountId": account}]}))
    post_id = draft["results"][0]["postId"]
    from omnipost.store.db import Database
    from omnipost.store.models import Batch

    db = await Database.open(None, settings.data_dir, clock.now())
    async with db.session() as s:
        batch = await s.get(Batch, draft["id"])
        assert batch is not None
        batch.mode = "immediate"
        s.add(batch)
        await s.commit()
    await db.close()
    await set_state(settings, clock, post_id, "publishing", with_attempt=True)  # killed before the request left
    async with Client(build_server(settings, clock=clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published"
    assert [p["id"] for p in list_posts(settings.data_dir / "sandbox.db")] == [post_id]


async def test_an_idempotency_claim_left_in_flight_is_completed_from_the_batch(settings: Settings, clock: Any) -> None:
    request = {"text": "Keyed", "idempotencyKey": "k-crash", "targets": [{"accountId": ""}]}
    async with Client(build_server(settings, clock=clock)) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "c"}))["id"]
        request["targets"] = [{"accountId": account}]
        first = ok(await client.call_tool("publish_post", request))
    from omnipost.store.db import Database

    db = await Database.open(None, settings.data_dir, clock.now())
    async with db.session() as s:
        record = (await s.exec(select(IdempotencyRecord))).one()
        record.state, record.response = "in_flight", {"batchId": first["id"]}  # killed before the answer was stored
        s.add(record)
        await s.commit()
    await db.close()
    async with Client(build_server(settings, clock=clock)) as client:
        replay = ok(await client.call_tool("publish_post", request))
    assert replay["replay"] is True and replay["id"] == first["id"]
    assert len(list_posts(settings.data_dir / "sandbox.db")) == 1
