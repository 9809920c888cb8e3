"""schedule_posts (issue 14): many scheduled posts in one call, validated first, a result per item, atomic and dryRun,
replayable with one idempotency key."""

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import func
from sqlmodel import select
from toolresult import err, ok

from omnipost.app import OmnipostServer
from omnipost.config import Settings
from omnipost.store.models import Batch, Post

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", scheduler_enabled=False, confirm="never",  # type: ignore[call-arg]
                    _env_file=None)


@pytest.fixture
async def account(client: Client) -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "bulk"}))["id"]


def week(account: str, n: int = 100) -> list[dict[str, Any]]:
    """n posts, one an hour from tomorrow on, each its own text."""
    return [{"text": f"Post number {i}", "scheduledAt": (NOW + timedelta(days=1) + i * HOUR).isoformat(),
             "targets": [{"accountId": account}]} for i in range(n)]


def with_three_invalid(account: str) -> list[dict[str, Any]]:
    items = week(account)
    items[3]["targets"][0]["text"] = "x" * 300  # over X's limit: preflight
    items[50]["targets"] = [{"accountId": account, "colour": "red"}]  # not a field: schema
    items[77]["targets"] = [{"accountId": "acc_nope"}]  # unknown account
    return items


async def stored(server: OmnipostServer) -> tuple[int, int]:
    async with server.runtime.db.session() as s:
        posts = (await s.exec(select(func.count()).select_from(Post))).one()
        batches = (await s.exec(select(func.count()).select_from(Batch))).one()
    return int(posts), int(batches)


async def test_a_hundred_items_with_three_invalid_queue_ninety_seven_and_say_where_each_error_is(
        server: OmnipostServer, client: Client, account: str) -> None:
    result = ok(await client.call_tool("schedule_posts", {"items": with_three_invalid(account), "campaign": "week-48"}))
    assert (result["status"], result["queued"], result["invalid"]) == ("partial_failed", 97, 3)
    bad = {item["index"]: item["error"] for item in result["items"] if item["status"] == "invalid"}
    assert set(bad) == {3, 50, 77}
    assert (bad[3]["code"], bad[3]["path"]) == ("preflight_failed", "items[3].targets[0].text")
    assert bad[3]["rule"].startswith("twitter.text")
    assert (bad[50]["code"], bad[50]["path"]) == ("validation_failed", "items[50].targets[0].colour")
    assert (bad[77]["code"], bad[77]["path"]) == ("not_found", "items[77].targets[0].accountId")
    assert await stored(server) == (97, 97)
    good = result["items"][0]
    assert good["status"] == "queued" and datetime.fromisoformat(good["scheduledAt"]) == NOW + timedelta(days=1)
    detail = ok(await client.call_tool("get_post", {"postId": good["postIds"][0]}))
    assert (detail["status"], detail["campaign"], detail["text"]) == ("queued", "week-48", "Post number 0")
    assert [w["code"] for w in result["warnings"]] == ["scheduler.not_running"]


async def test_atomic_stores_nothing_when_one_item_is_invalid(server: OmnipostServer, client: Client, account: str) -> None:
    error = err(await client.call_tool("schedule_posts", {"items": with_three_invalid(account), "atomic": True}))
    assert error["code"] == "preflight_failed" and error["path"] == "items[3].targets[0].text"
    assert [d["path"] for d in error["details"]] == ["items[3].targets[0].text", "items[50].targets[0].colour",
                                                      "items[77].targets[0].accountId"]
    assert await stored(server) == (0, 0)
    assert ok(await client.call_tool("schedule_posts", {"items": week(account, 5), "atomic": True}))["queued"] == 5


async def test_dry_run_checks_every_item_and_stores_nothing(server: OmnipostServer, client: Client, account: str) -> None:
    result = ok(await client.call_tool("schedule_posts", {"items": with_three_invalid(account), "dryRun": True}))
    assert (result["status"], result["queued"], result["invalid"]) == ("invalid", 0, 3)
    assert all(item["batchId"] is None for item in result["items"])
    assert await stored(server) == (0, 0)


async def test_the_same_key_replays_the_same_answer_and_stores_nothing_new(server: OmnipostServer, client: Client,
                                                                           account: str) -> None:
    args = {"items": with_three_invalid(account), "idempotencyKey": "week-48"}
    first = ok(await client.call_tool("schedule_posts", args))
    again = ok(await client.call_tool("schedule_posts", args))
    assert again["replay"] is True and again | {"replay": False} == first
    assert await stored(server) == (97, 97)
    assert err(await client.call_tool("schedule_posts", args | {"items": week(account, 2)}))["code"] == "idempotency_conflict"


async def test_items_repeating_a_text_to_one_account_are_duplicates_of_the_first(server: OmnipostServer, client: Client,
                                                                                 account: str) -> None:
    items = week(account, 3)
    items[2]["text"] = items[0]["text"]
    result = ok(await client.call_tool("schedule_posts", {"items": items}))
    assert [item["status"] for item in result["items"]] == ["queued", "queued", "invalid"]
    assert (result["items"][2]["error"]["rule"], result["items"][2]["error"]["path"]) == ("post.duplicate", "items[2].targets[0].text")
    again = ok(await client.call_tool("schedule_posts", {"items": week(account, 1)}))  # already stored: a duplicate too
    assert again["items"][0]["error"]["rule"] == "post.duplicate"
    items[2]["skipDuplicateCheck"] = True
    items[0]["text"] = items[1]["text"] = "fresh"
    assert await stored(server) == (2, 2)


async def test_a_bad_call_is_refused_whole(client: Client, account: str) -> None:
    error = err(await client.call_tool("schedule_posts", {"items": week(account, 101)}))
    assert (error["code"], error["path"]) == ("validation_failed", "items")
    error = err(await client.call_tool("schedule_posts", {"items": []}))
    assert (error["code"], error["path"]) == ("validation_failed", "items")
    result = ok(await client.call_tool("schedule_posts", {"items": [{"text": "no time", "targets": [{"accountId": account}]}]}))
    assert (result["status"], result["items"][0]["error"]["path"]) == ("failed", "items[0].scheduledAt")


async def test_a_claim_whose_call_stored_its_items_is_completed_by_recovery_not_freed(server: OmnipostServer, client: Client,
                                                                                      account: str) -> None:
    """schedule_posts attaches its answer to the idempotency claim in the transaction that stores the items: a crash
    after that commit leaves the claim in flight, and recovery completes it with that answer (a retry replays it)."""
    from omnipost.auth import Reach
    from omnipost.request import BulkRequest

    rt = server.runtime
    profile = ok(await client.call_tool("list_profiles", {}))["profiles"][0]["id"]
    claim = await rt.publisher.idempotency.claim(profile, "crashed-key", "schedule_posts", "hash")
    assert claim.record_id is not None
    answer = await rt.publisher.schedule_many(Reach(profile), BulkRequest(items=week(account, 2)), claim_id=claim.record_id)
    await rt.publisher._finish_claim(claim.record_id, None)  # what recovery does with a claim its process left in flight
    again = await rt.publisher.idempotency.claim(profile, "crashed-key", "schedule_posts", "hash")
    assert again.replay is not None and again.replay["items"][0]["batchId"] == answer.items[0].batchId
