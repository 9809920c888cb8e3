"""update_post (issue 14): editing a draft or queued post, atomically, race-safe against the scheduler, with revisions,
idempotency and a post.updated event. Ticks are run by the tests (injected clock, no sleeps)."""

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from sqlmodel import select
from test_webhooks import MapResolver
from toolresult import err, ok

from omnipost.app import OmnipostServer, build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.scheduler import Scheduler
from omnipost.store.models import Post, PostRevision, WebhookDelivery

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", scheduler_enabled=False, confirm="never",  # type: ignore[call-arg]
                    _env_file=None)


@pytest.fixture
def server(settings: Settings, clock: FixedClock) -> OmnipostServer:
    """A webhook receiver's name resolves to a public address (add_webhook checks it); nothing is delivered here."""
    return build_server(settings, clock=clock, resolver=MapResolver({"hooks.example.test": ["93.184.216.34"]}))


@pytest.fixture
async def account(client: Client) -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "edits"}))["id"]


def worker(server: OmnipostServer, clock: FixedClock, name: str = "A") -> Scheduler:
    rt = server.runtime
    return Scheduler(rt.db, rt.publisher, clock, worker_id=name, rng=random.Random(1))


def received(settings: Settings) -> list[dict[str, Any]]:
    return [p for p in list_posts(settings.data_dir / "sandbox.db") if p["kind"] == "post"]


async def schedule(client: Client, account: str, text: str = "Old text", when: datetime = NOW + HOUR, **extra: Any) -> dict[str, Any]:
    return ok(await client.call_tool("schedule_post", {"text": text, "scheduledAt": when.isoformat(),
                                                       "targets": [{"accountId": account}], **extra}))


async def row(server: OmnipostServer, post_id: str) -> Post:
    async with server.runtime.db.session() as s:
        post = await s.get(Post, post_id)
        assert post is not None
        return post


async def test_an_edit_changes_the_text_keeps_the_time_and_is_kept_as_a_revision(server: OmnipostServer, client: Client,
                                                                                  account: str) -> None:
    batch = await schedule(client, account)
    post_id = batch["results"][0]["postId"]
    edited = ok(await client.call_tool("update_post", {"id": post_id, "text": "New text", "firstComment": "More below"}))
    assert edited["status"] == "queued" and datetime.fromisoformat(edited["scheduledAt"]) == NOW + HOUR
    detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["text"] == "New text" and datetime.fromisoformat(detail["scheduledAt"]) == NOW + HOUR
    assert [(r["number"], r["fields"], r["before"]) for r in detail["revisions"]] == [
        (1, ["firstComment", "text"], {"firstComment": None, "text": "Old text"})]
    stored = await row(server, post_id)
    assert stored.content["firstComment"] == "More below" and stored.next_attempt_at == NOW + HOUR
    ok(await client.call_tool("update_post", {"id": post_id, "firstComment": None, "campaign": "launch"}))
    detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert [r["fields"] for r in detail["revisions"]] == [["firstComment", "text"], ["firstComment", "campaign"]]
    assert detail["campaign"] == "launch" and (await row(server, post_id)).content["firstComment"] is None


async def test_an_invalid_edit_changes_nothing_and_answers_validate_posts_errors(server: OmnipostServer, client: Client,
                                                                                 account: str) -> None:
    batch = await schedule(client, account)
    post_id = batch["results"][0]["postId"]
    before = await row(server, post_id)
    long = "x" * 400
    error = err(await client.call_tool("update_post", {"id": post_id, "text": long}))
    checked = ok(await client.call_tool("validate_post", {"text": long, "targets": [{"accountId": account}]}))
    assert error["code"] == "preflight_failed"  # validate_post answers valid: false with the same violations
    assert [(d["rule"], d["path"]) for d in error["details"]] == [(e["rule"], e["path"]) for e in checked["results"][0]["errors"]]
    after = await row(server, post_id)
    assert (after.text, after.updated_at, after.content) == (before.text, before.updated_at, before.content)
    assert ok(await client.call_tool("get_post", {"postId": post_id}))["revisions"] == []
    error = err(await client.call_tool("update_post", {"id": post_id, "twitter": {"replySettings": "nobody"}}))
    assert (error["code"], error["path"]) == ("validation_failed", "twitter.replySettings")
    error = err(await client.call_tool("update_post", {"id": post_id, "pinterest": {"boardId": "1"}}))
    assert (error["code"], error["rule"]) == ("validation_failed", "pinterest")
    error = err(await client.call_tool("update_post", {"id": post_id}))
    assert (error["code"], error["rule"]) == ("validation_failed", "id")
    error = err(await client.call_tool("update_post", {"id": post_id, "scheduledAt": (NOW - HOUR).isoformat()}))
    assert (error["code"], error["rule"]) == ("validation_failed", "scheduledAt")
    assert err(await client.call_tool("update_post", {"id": "post_nope", "text": "x"}))["code"] == "not_found"


async def test_an_edit_to_a_text_already_sent_is_a_duplicate_and_its_own_text_is_not(client: Client, account: str) -> None:
    await schedule(client, account, text="Taken")
    other = (await schedule(client, account, text="Mine", when=NOW + 2 * HOUR))["results"][0]["postId"]
    error = err(await client.call_tool("update_post", {"id": other, "text": "Taken"}))
    assert (error["code"], error["rule"], error["details"][0]["path"]) == ("preflight_failed", "post.duplicate", "targets[0].text")
    ok(await client.call_tool("update_post", {"id": other, "text": "Mine", "title": "t"}))  # unchanged text: no duplicate of itself
    ok(await client.call_tool("update_post", {"id": other, "text": "Taken", "skipDuplicateCheck": True}))


async def test_a_batch_edit_changes_every_target_and_moves_the_time(server: OmnipostServer, client: Client, account: str) -> None:
    second = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "two"}))["id"]
    batch = ok(await client.call_tool("schedule_post", {"text": "Both", "scheduledAt": (NOW + HOUR).isoformat(),
                                                        "targets": [{"accountId": account}, {"accountId": second}]}))
    moved = ok(await client.call_tool("update_post", {"id": batch["id"], "text": "Both, edited",
                                                      "scheduledAt": (NOW + 3 * HOUR).isoformat()}))
    assert datetime.fromisoformat(moved["scheduledAt"]) == NOW + 3 * HOUR
    for result in moved["results"]:
        stored = await row(server, result["postId"])
        assert (stored.text, stored.next_attempt_at) == ("Both, edited", NOW + 3 * HOUR)


async def test_a_draft_can_be_edited_and_a_published_post_cannot(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                 account: str, settings: Settings) -> None:
    draft = ok(await client.call_tool("publish_post", {"text": "Draft", "draft": True, "targets": [{"accountId": account}]}))
    post_id = draft["results"][0]["postId"]
    assert ok(await client.call_tool("update_post", {"id": post_id, "text": "Draft 2"}))["status"] == "draft"
    queued = ok(await client.call_tool("update_post", {"id": post_id, "scheduledAt": (NOW + HOUR).isoformat()}))
    assert queued["status"] == "queued"
    clock.at = NOW + HOUR
    assert (await worker(server, clock).run_due(clock.at))["published"] == 1
    assert [p["text"] for p in received(settings)] == ["Draft 2"]
    error = err(await client.call_tool("update_post", {"id": post_id, "text": "Too late"}))
    assert (error["code"], error["rule"]) == ("validation_failed", "id")


async def test_an_edit_with_an_idempotency_key_replays_and_emits_one_post_updated_event(server: OmnipostServer, client: Client,
                                                                                         account: str) -> None:
    ok(await client.call_tool("add_webhook", {"url": "https://hooks.example.test/in", "events": ["post.updated"]}))
    post_id = (await schedule(client, account))["results"][0]["postId"]
    args = {"id": post_id, "text": "Once", "idempotencyKey": "edit-1"}
    first = ok(await client.call_tool("update_post", args))
    again = ok(await client.call_tool("update_post", args))
    assert again == first | {"replay": again["replay"]}
    assert err(await client.call_tool("update_post", args | {"text": "Other"}))["code"] == "idempotency_conflict"
    async with server.runtime.db.session() as s:
        events = (await s.exec(select(WebhookDelivery).where(WebhookDelivery.event_type == "post.updated"))).all()
        revisions = (await s.exec(select(PostRevision))).all()
    assert [e.payload["data"]["postId"] for e in events] == [post_id]
    assert events[0].payload["data"]["fields"] == ["text"] and len(revisions) == 1


async def test_a_post_claimed_by_a_worker_is_not_edited(server: OmnipostServer, client: Client, clock: FixedClock,
                                                        account: str, settings: Settings) -> None:
    post_id = (await schedule(client, account))["results"][0]["postId"]
    clock.at = NOW + HOUR
    a = worker(server, clock)
    won = await a._claim(clock.at)
    assert [pid for pid, _ in won] == [post_id]
    error = err(await client.call_tool("update_post", {"id": post_id, "text": "Too late"}))
    assert (error["code"], error["rule"]) == ("validation_failed", "post.already_publishing")
    await a.publisher._fan_out([post_id], None)
    await a._settle([post_id], clock.at, {"published": 0, "failed": 0, "retrying": 0, "processing": 0})
    assert [p["text"] for p in received(settings)] == ["Old text"]
    assert ok(await client.call_tool("get_post", {"postId": post_id}))["revisions"] == []


@pytest.mark.parametrize("delay", [0, 5, 8, 10, 12, 15, 30, 60, 120, 400])
async def test_an_edit_racing_the_scheduler_is_either_edited_or_published_as_it_was_never_a_mix(
        server: OmnipostServer, client: Client, clock: FixedClock, account: str, settings: Settings, delay: int) -> None:
    """The tick starts `delay` event-loop steps after the edit: small delays let the claim win, larger ones the edit, and
    the ones between land the claim inside the edit (between its read and its write)."""
    post_id = (await schedule(client, account, text=f"Old text {delay}"))["results"][0]["postId"]
    clock.at = NOW + HOUR
    a = worker(server, clock)
    outcome: dict[str, Any] = {}

    async def edit() -> None:
        outcome["edit"] = await client.call_tool("update_post", {"id": post_id, "text": f"New text {delay}"})

    async def tick() -> None:
        for _ in range(delay):
            await anyio.lowlevel.checkpoint()
        outcome["tick"] = await a.run_due(clock.at)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(edit)
            tg.start_soon(tick)
        await a.run_due(clock.at)  # an edit that won is published by the next tick, with the new text
    sent = [p["text"] for p in received(settings)]
    stored = await row(server, post_id)
    revisions = ok(await client.call_tool("get_post", {"postId": post_id}))["revisions"]
    if outcome["edit"].is_error:
        assert err(outcome["edit"])["rule"] == "post.already_publishing"
        assert sent == [f"Old text {delay}"] and stored.text == f"Old text {delay}" and revisions == []
    else:
        assert sent == [f"New text {delay}"] and stored.text == f"New text {delay}" and len(revisions) == 1
    assert stored.status == "published"


async def test_platform_options_are_merged_and_a_null_option_removed(server: OmnipostServer, client: Client, account: str) -> None:
    batch = ok(await client.call_tool("schedule_post", {"text": "Opts", "scheduledAt": (NOW + HOUR).isoformat(),
                                                        "targets": [{"accountId": account, "twitter": {"replySettings": "following"}}]}))
    post_id = batch["results"][0]["postId"]
    assert (await row(server, post_id)).content["options"] == {"replySettings": "following"}
    ok(await client.call_tool("update_post", {"id": post_id, "twitter": {"replySettings": "verified"}}))
    assert (await row(server, post_id)).content["options"] == {"replySettings": "verified"}
    ok(await client.call_tool("update_post", {"id": post_id, "twitter": {"replySettings": None}}))
    assert (await row(server, post_id)).content["options"] == {}
    detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert [r["before"] for r in detail["revisions"]] == [{"twitter": {"replySettings": "following"}},
                                                          {"twitter": {"replySettings": "verified"}}]
