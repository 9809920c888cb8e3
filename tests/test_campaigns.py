"""Campaigns (issue 14): a label set at schedule time, in bulk or by update_post; list_posts filters by it; cancel_post and
reschedule_post act on all its queued posts; the calendar resource lists a period's queued posts by day."""

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from toolresult import err, ok

from omnipost.app import OmnipostServer
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.scheduler import Scheduler
from omnipost.store.models import Post
from sqlmodel import select

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", scheduler_enabled=False, confirm="never",  # type: ignore[call-arg]
                    _env_file=None)


@pytest.fixture
async def account(client: Client) -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "camp"}))["id"]


def items(account: str, n: int, start: datetime, step: timedelta, campaign: str | None = None) -> list[dict[str, Any]]:
    return [{"text": f"{campaign or 'solo'} post {i}", "scheduledAt": (start + i * step).isoformat(),
             "targets": [{"accountId": account}], **({"campaign": campaign} if campaign else {})} for i in range(n)]


async def read(client: Client, uri: str) -> Any:
    return json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]


async def test_list_posts_filters_by_campaign_and_update_post_moves_a_post_into_one(client: Client, account: str) -> None:
    ok(await client.call_tool("schedule_posts", {"items": items(account, 3, NOW + HOUR, HOUR), "campaign": "launch"}))
    other = ok(await client.call_tool("schedule_post", {"text": "Elsewhere", "scheduledAt": (NOW + HOUR).isoformat(),
                                                        "targets": [{"accountId": account}], "campaign": "other"}))
    assert len(ok(await client.call_tool("list_posts", {"campaign": "launch"}))["posts"]) == 3
    ok(await client.call_tool("update_post", {"id": other["id"], "campaign": "launch"}))
    assert len(ok(await client.call_tool("list_posts", {"campaign": "launch"}))["posts"]) == 4
    assert ok(await client.call_tool("list_posts", {"campaign": "other"}))["posts"] == []


async def test_reschedule_moves_a_campaign_keeping_its_spacing_and_the_calendar_shows_it_by_day(
        client: Client, account: str) -> None:
    ok(await client.call_tool("schedule_posts", {"items": items(account, 3, NOW + timedelta(days=1), timedelta(days=1), "week")}))
    ok(await client.call_tool("schedule_post", {"text": "Not in it", "scheduledAt": (NOW + 2 * HOUR).isoformat(),
                                                "targets": [{"accountId": account}]}))
    moved = ok(await client.call_tool("reschedule_post", {"campaign": "week", "scheduledAt": "2026-11-30T09:00:00",
                                                          "timezone": "Europe/Paris"}))
    assert (moved["id"], moved["mode"], moved["status"]) == ("week", "campaign", "queued")
    calendar = await read(client, "omnipost://calendar/2026-11-30?days=3&timezone=Europe/Paris")
    assert [d["date"] for d in calendar["byDay"]] == ["2026-11-30", "2026-12-01", "2026-12-02"]
    assert [[p["at"] for p in d["posts"]] for d in calendar["byDay"]] == [
        ["2026-11-30T09:00:00+01:00"], ["2026-12-01T09:00:00+01:00"], ["2026-12-02T09:00:00+01:00"]]
    assert calendar["count"] == 3 and calendar["byDay"][0]["posts"][0]["campaign"] == "week"
    today = await read(client, "omnipost://calendar/2026-11-24")
    assert today["days"] == 7 and [p["text"] for p in today["byDay"][0]["posts"]] == ["Not in it"]
    assert (await read(client, "omnipost://calendar/2026-11-24?campaign=week"))["count"] == 1  # the 30th; the rest later
    with pytest.raises(MCPError):
        await client.read_resource("omnipost://calendar/not-a-date")
    error = err(await client.call_tool("reschedule_post", {"scheduledAt": "2026-11-30T09:00:00Z"}))
    assert (error["code"], error["rule"]) == ("validation_failed", "id")
    assert err(await client.call_tool("cancel_post", {"campaign": "nope"}))["code"] == "not_found"


@pytest.mark.parametrize("delay", [0, 3, 10, 30])
async def test_cancelling_a_campaign_while_the_scheduler_runs_ends_each_post_cancelled_or_published_never_both(
        server: OmnipostServer, client: Client, clock: FixedClock, account: str, settings: Settings, delay: int) -> None:
    """The cancel starts `delay` event-loop steps into the tick, which is claiming and publishing the due half."""
    batch = ok(await client.call_tool("schedule_posts", {"items": items(account, 50, NOW + HOUR, timedelta(seconds=1), "flash")}))
    ids = [i["postIds"][0] for i in batch["items"]]
    clock.at = NOW + HOUR + 25 * timedelta(seconds=1)  # half of them are due
    rt = server.runtime
    a = Scheduler(rt.db, rt.publisher, clock, worker_id="A", rng=random.Random(3))
    answer: dict[str, Any] = {}

    async def cancel() -> None:
        for _ in range(delay):
            await anyio.lowlevel.checkpoint()
        answer["cancel"] = ok(await client.call_tool("cancel_post", {"campaign": "flash"}))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run_due, clock.at)
            tg.start_soon(cancel)
        clock.at = NOW + 2 * HOUR
        await a.run_due(clock.at)  # anything left queued would be published now
    async with rt.db.session() as s:
        rows = {p.id: p for p in (await s.exec(select(Post).where(Post.campaign == "flash"))).all()}
    assert set(rows) == set(ids)  # none lost
    statuses = {p.status for p in rows.values()}
    assert statuses <= {"cancelled", "published"}, statuses
    sent = [p["id"] for p in list_posts(settings.data_dir / "sandbox.db") if p["kind"] == "post"]
    assert sorted(sent) == sorted(pid for pid, p in rows.items() if p.status == "published")  # published = sent, once
    assert len(sent) == len(set(sent))
    reported = {r["postId"]: r["status"] for r in answer["cancel"]["results"]}
    assert set(reported) == set(ids)  # the answer names every post of the campaign it acted on
    # what the answer says was cancelled was never sent; what it left (claimed by the worker meanwhile) was published
    assert all((status == "cancelled") == (rows[pid].status == "cancelled") for pid, status in reported.items())
