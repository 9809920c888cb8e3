"""After a restart, posts left mid-publish are reconciled through the adapter, never re-posted blind."""

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import timedelta
from typing import Any

import pytest
from toolresult import ok
from mcp import Client
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from omnipost.app import build_server
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.store.db import Database, new_id
from omnipost.store.models import Attempt, Batch, IdempotencyRecord, Post

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def stored(settings: Settings, clock: Any) -> AsyncIterator[AsyncSession]:
    """A session on the server's database while no server runs, committed at the end: to leave rows as a
    crash (or another process) would have left them."""
    db = await Database.open(None, settings.data_dir, clock.now())
    try:
        async with db.session() as s:
            yield s
            await s.commit()
    finally:
        await db.close()


async def set_state(settings: Settings, clock: Any, post_id: str, status: str, *, with_attempt: bool,
                    pieces: dict[str, Any] | None = None) -> None:
    """Rewrite a post as a crash would have left it (the server is not running). `pieces`: its ledger then (default
    empty: killed before its first piece's answer was in; the open attempt stands for the main post's marker)."""
    async with stored(settings, clock) as s:
        post = await s.get(Post, post_id)
        assert post is not None
        post.status, post.upstream_id, post.url, post.pieces = status, None, None, pieces or {}
        s.add(post)
        if with_attempt:
            s.add(Attempt(id=new_id("att"), post_id=post_id, number=9, started_at=clock.now()))


async def published_then_interrupted(settings: Settings, clock: Any, handle: str, text: str) -> str:
    """A post the sandbox received, left `publishing` with an open attempt: killed before the outcome was written."""
    async with Client(build_server(settings, clock=clock)) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": handle}))["id"]
        batch = ok(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": account}]}))
    post_id: str = batch["results"][0]["postId"]
    await set_state(settings, clock, post_id, "publishing", with_attempt=True)
    return post_id


async def test_a_post_published_before_the_crash_is_reconciled_not_sent_again(settings: Settings, clock: Any) -> None:
    post_id = await published_then_interrupted(settings, clock, "a", "Crash me")  # killed after the upstream stored it
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
    async with stored(settings, clock) as s:
        batch = await s.get(Batch, draft["id"])
        assert batch is not None
        batch.mode = "immediate"
        s.add(batch)
    await set_state(settings, clock, post_id, "publishing", with_attempt=True)  # killed before the request left
    async with Client(build_server(settings, clock=clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published"
    assert [p["id"] for p in list_posts(settings.data_dir / "sandbox.db")] == [post_id]


async def keyed_publish(settings: Settings, clock: Any, handle: str, text: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A publish with an idempotency key to a new sandbox account: (the request, to send again; its answer)."""
    async with Client(build_server(settings, clock=clock)) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": handle}))["id"]
        request = {"text": text, "idempotencyKey": key, "targets": [{"accountId": account}]}
        return request, ok(await client.call_tool("publish_post", request))


async def test_an_idempotency_claim_left_in_flight_is_completed_from_the_batch(settings: Settings, clock: Any) -> None:
    request, first = await keyed_publish(settings, clock, "c", "Keyed", "k-crash")
    async with stored(settings, clock) as s:
        record = (await s.exec(select(IdempotencyRecord))).one()
        record.state, record.response = "in_flight", {"batchId": first["id"]}  # killed before the answer was stored
        s.add(record)
    async with Client(build_server(settings, clock=clock)) as client:
        replay = ok(await client.call_tool("publish_post", request))
    assert replay["replay"] is True and replay["id"] == first["id"]
    assert len(list_posts(settings.data_dir / "sandbox.db")) == 1


def _dead_owner() -> str:
    """The owner id of a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:gone00"


def _live_owner() -> str:
    """The owner id of a process that still runs (this one, as another server sharing the database would be)."""
    return f"{socket.gethostname()}:{os.getpid()}:peer00"


async def _lease(settings: Settings, clock: Any, post_id: str, owner: str, until: Any) -> None:
    async with stored(settings, clock) as s:
        post = await s.get(Post, post_id)
        assert post is not None
        post.lease_owner, post.lease_until = owner, until
        s.add(post)


async def test_a_post_a_live_process_is_publishing_is_left_to_it_until_its_lease_lapses(settings: Settings, clock: Any) -> None:
    post_id = await published_then_interrupted(settings, clock, "shared", "In flight elsewhere")
    # Another server on this database is mid-call on it: a server starting now must not touch it.
    await _lease(settings, clock, post_id, _live_owner(), clock.now() + timedelta(minutes=5))
    async with Client(build_server(settings, clock=clock)) as client:
        assert ok(await client.call_tool("get_post", {"postId": post_id}))["status"] == "publishing"
    # Its lease lapsed (that server hung or died elsewhere): the next start reconciles it, without re-sending.
    await _lease(settings, clock, post_id, _live_owner(), clock.now() - timedelta(seconds=1))
    async with Client(build_server(settings, clock=clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published" and detail["attempts"][-1]["outcome"] == "reconciled"
    assert [p["id"] for p in list_posts(settings.data_dir / "sandbox.db")] == [post_id]


async def test_a_post_whose_owner_process_is_gone_is_taken_over_at_once(settings: Settings, clock: Any) -> None:
    post_id = await published_then_interrupted(settings, clock, "dead", "Owner killed")
    await _lease(settings, clock, post_id, _dead_owner(), clock.now() + timedelta(minutes=5))  # lease still running
    async with Client(build_server(settings, clock=clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published" and detail["attempts"][-1]["outcome"] == "reconciled"
    assert [p["id"] for p in list_posts(settings.data_dir / "sandbox.db")] == [post_id]


@pytest.mark.parametrize("owner, replayed", [("live", False), ("dead", True)])
async def test_an_in_flight_claim_of_a_live_process_is_not_finished_by_another(settings: Settings, clock: Any, owner: str,
                                                                               replayed: bool) -> None:
    request, first = await keyed_publish(settings, clock, "k", "Keyed elsewhere", "k-shared")
    async with stored(settings, clock) as s:
        record = (await s.exec(select(IdempotencyRecord))).one()
        record.state = "in_flight"
        record.response = {"batchId": first["id"], "owner": _live_owner() if owner == "live" else _dead_owner()}
        s.add(record)
    async with Client(build_server(settings, clock=clock)) as client:
        again = await client.call_tool("publish_post", request)
    if replayed:
        assert ok(again)["replay"] is True and ok(again)["id"] == first["id"]
    else:
        assert again.is_error and again.structured_content["error"]["rule"] == "idempotency.in_flight"
    assert len(list_posts(settings.data_dir / "sandbox.db")) == 1


def test_only_a_process_of_this_host_that_has_exited_counts_as_gone() -> None:
    from omnipost.leases import new_owner_id, owner_is_gone

    assert owner_is_gone(_dead_owner()) and owner_is_gone(None)
    assert not owner_is_gone(_live_owner()) and not owner_is_gone(new_owner_id())
    assert not owner_is_gone("some-other-host:1:abcdef")  # its processes cannot be seen from here: wait for the lease
    assert not owner_is_gone("garbage") and not owner_is_gone(f"{_live_owner().split(':')[0]}:notapid:x")


async def test_a_post_whose_first_comment_the_crash_cut_off_is_completed_not_sent_again(settings: Settings, clock: Any) -> None:
    async with Client(build_server(settings, clock=clock)) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "cut"}))["id"]
        batch = ok(await client.call_tool("publish_post", {"text": "Cut short", "firstComment": "The comment",
                                                           "targets": [{"accountId": account}]}))
    post_id = batch["results"][0]["postId"]
    # Killed after the main post was stored upstream and the comment's marker committed, before the comment was sent.
    with closing(sqlite3.connect(settings.data_dir / "sandbox.db")) as conn, conn:
        assert conn.execute("DELETE FROM posts WHERE id = ?", (f"{post_id}-c",)).rowcount == 1
    await set_state(settings, clock, post_id, "publishing", with_attempt=True,
                    pieces={"post": {"status": "done", "id": post_id}, "c": {"status": "sending"}})
    async with Client(build_server(settings, clock=clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published" and detail["firstComment"] == [f"{post_id}-c"]
    assert sorted((p["id"], p["kind"]) for p in list_posts(settings.data_dir / "sandbox.db")) == [
        (post_id, "post"), (f"{post_id}-c", "comment")]
