"""Issue 14's races on PostgreSQL (they run on SQLite in test_update_post.py and test_campaigns.py): an edit racing the
scheduler's claim, and a campaign cancel while the scheduler publishes; row locks and READ COMMITTED instead of SQLite's
one writer."""

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from sqlmodel import select
from toolresult import err, ok

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.scheduler import Scheduler
from omnipost.store.models import Post

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def settings_for(tmp_path: Path, url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, log_level="WARNING", confirm="never",  # type: ignore[call-arg]
                    scheduler_enabled=False, _env_file=None)


async def test_pg_edits_racing_the_scheduler_are_edited_or_published_as_they_were(tmp_path: Path, pg_url: str) -> None:
    settings, clock = settings_for(tmp_path, pg_url), FixedClock(NOW)
    server = build_server(settings, clock=clock)
    outcomes: list[bool] = []
    async with Client(server) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "pg"}))["id"]
        for delay in (0, 5, 10, 20, 40, 80, 160):
            at = NOW + (delay + 1) * HOUR
            post_id = ok(await client.call_tool("schedule_post", {"text": f"Old {delay}", "scheduledAt": at.isoformat(),
                                                                  "targets": [{"accountId": account}]}))["results"][0]["postId"]
            clock.at = at
            worker = Scheduler(server.runtime.db, server.runtime.publisher, clock, worker_id=f"w{delay}", rng=random.Random(1))
            got: dict[str, Any] = {}

            async def edit() -> None:
                got["edit"] = await client.call_tool("update_post", {"id": post_id, "text": f"New {delay}"})

            async def tick() -> None:
                for _ in range(delay):
                    await anyio.lowlevel.checkpoint()
                await worker.run_due(clock.at)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(edit)
                    tg.start_soon(tick)
                await worker.run_due(clock.at)
            sent = [p["text"] for p in list_posts(settings.data_dir / "sandbox.db") if p["kind"] == "post" and p["id"] == post_id]
            async with server.runtime.db.session() as s:
                stored = await s.get(Post, post_id)
            assert stored is not None and stored.status == "published"
            if got["edit"].is_error:
                assert err(got["edit"])["rule"] == "post.already_publishing"
                assert sent == [f"Old {delay}"] == [stored.text]
            else:
                assert sent == [f"New {delay}"] == [stored.text]
            outcomes.append(got["edit"].is_error)
    assert len(outcomes) == 7


async def test_pg_a_campaign_cancelled_while_the_scheduler_runs_ends_each_post_cancelled_or_published(
        tmp_path: Path, pg_url: str) -> None:
    settings, clock = settings_for(tmp_path, pg_url), FixedClock(NOW)
    server = build_server(settings, clock=clock)
    async with Client(server) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "pg"}))["id"]
        batch = ok(await client.call_tool("schedule_posts", {"campaign": "flash", "items": [
            {"text": f"flash {i}", "scheduledAt": (NOW + HOUR + timedelta(seconds=i)).isoformat(),
             "targets": [{"accountId": account}]} for i in range(50)]}))
        ids = {i["postIds"][0] for i in batch["items"]}
        clock.at = NOW + HOUR + timedelta(seconds=25)
        a = Scheduler(server.runtime.db, server.runtime.publisher, clock, worker_id="A", rng=random.Random(3))
        b = Scheduler(server.runtime.db, server.runtime.publisher, clock, worker_id="B", rng=random.Random(4))
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.run_due, clock.at)
                tg.start_soon(b.run_due, clock.at)
                tg.start_soon(client.call_tool, "cancel_post", {"campaign": "flash"})
            clock.at = NOW + 2 * HOUR
            await a.run_due(clock.at)
        async with server.runtime.db.session() as s:
            rows = {p.id: p.status for p in (await s.exec(select(Post).where(Post.campaign == "flash"))).all()}
    assert set(rows) == ids and set(rows.values()) <= {"cancelled", "published"}
    sent = [p["id"] for p in list_posts(settings.data_dir / "sandbox.db") if p["kind"] == "post"]
    assert sorted(sent) == sorted(pid for pid, status in rows.items() if status == "published")
