"""Per-account daily publishing caps (PRODUCT §6) as rule data, enforced by the scheduler with the injected clock.

The cap is lowered to 3 for these tests by swapping threads' PlatformSpec in the platform registry
(`dataclasses.replace`, monkeypatched): the deferral logic is the same for 3 as for 250, and publishing
250 posts through the sandbox per test would cost seconds for no extra coverage. The real numbers are
asserted separately as data.
"""

import dataclasses
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from toolresult import ok

from omnipost.app import OmnipostServer
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.domain import Platform
from omnipost.platforms.registry import PLATFORMS
from omnipost.preflight.rules import RULES
from omnipost.scheduler import Scheduler, daily_cap
from omnipost.store.models import Post

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
DAY = timedelta(hours=24)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's server and client fixtures use this: only the test's own ticks run the scheduler."""
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", scheduler_enabled=False, confirm="never",  # type: ignore[call-arg]
                    _env_file=None)


@pytest.fixture
def cap3(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setitem(PLATFORMS, "threads", dataclasses.replace(PLATFORMS["threads"], daily_cap=3))  # caps read the registry
    return 3


async def connect(client: Client, emulates: str, handle: str) -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": emulates, "handle": handle}))["id"]


async def schedule(client: Client, account: str, when: datetime, text: str) -> str:
    batch = ok(await client.call_tool("schedule_post", {"text": text, "scheduledAt": when.isoformat(),
                                                        "targets": [{"accountId": account}]}))
    return batch["results"][0]["postId"]


async def rows(server: OmnipostServer, ids: list[str]) -> list[Post]:
    async with server.runtime.db.session() as s:
        return [p for p in [await s.get(Post, i) for i in ids] if p is not None]


def worker(server: OmnipostServer, clock: FixedClock) -> Scheduler:
    rt = server.runtime
    return Scheduler(rt.db, rt.publisher, clock, worker_id="A", rng=random.Random(7))


def aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=timezone.utc) if at is not None and at.tzinfo is None else at


def test_caps_are_rule_data_with_source_and_checked_date() -> None:
    ig, th = RULES[Platform.INSTAGRAM], RULES[Platform.THREADS]
    assert (ig.daily_post_cap, th.daily_post_cap) == (50, 250)
    for r in (ig, th):
        assert r.daily_post_cap_source and r.daily_post_cap_checked == "2026-11-24"
    assert RULES[Platform.X].daily_post_cap is None and RULES[Platform.BLUESKY].daily_post_cap is None
    assert daily_cap("instagram") == 50 and daily_cap("threads") == 250
    assert daily_cap("x") is None and daily_cap("sandbox") is None and daily_cap(None) is None


async def test_posts_past_the_cap_are_deferred_until_the_window_frees_not_failed(
        server: OmnipostServer, client: Client, clock: FixedClock, cap3: int) -> None:
    account = await connect(client, "threads", "capped")
    other = await connect(client, "threads", "other")  # a second account has its own window
    due = NOW + HOUR
    ids = [await schedule(client, account, due + timedelta(seconds=i), f"Post {i}") for i in range(5)]
    other_ids = [await schedule(client, other, due, f"Other {i}") for i in range(2)]
    a = worker(server, clock)
    clock.at = due + timedelta(seconds=10)
    counts = await a.run_due(clock.at)
    assert counts["published"] == 3 + 2 and counts["deferred"] == 2 and counts["failed"] == 0
    posts = await rows(server, ids)
    assert [p.status for p in posts] == ["published"] * 3 + ["queued"] * 2  # due order: the first three go
    assert all(p.status == "published" for p in await rows(server, other_ids))
    first_published = aware(posts[0].published_at)
    assert first_published == clock.at
    for p in posts[3:]:
        assert p.lease_owner is None and p.lease_until is None and p.error is None
        assert aware(p.next_attempt_at) == first_published + DAY + timedelta(seconds=1)
        codes = [w["code"] for w in p.warnings]
        assert codes.count("schedule.deferred_by_cap") == 1
        warning = next(w for w in p.warnings if w["code"] == "schedule.deferred_by_cap")
        assert "3" in warning["message"] and "threads" in warning["message"]
    detail = ok(await client.call_tool("get_post", {"postId": ids[3]}))
    assert detail["status"] == "queued"

    # nothing happens while the window is full
    clock.at = due + 23 * HOUR
    assert (await a.run_due(clock.at))["claimed"] == 0
    # a day later the three age out together (published in the same tick): both waiting posts go
    clock.at = first_published + DAY + timedelta(seconds=1)
    counts = await a.run_due(clock.at)
    assert counts["published"] == 2 and counts["deferred"] == 0
    assert [p.status for p in await rows(server, ids)] == ["published"] * 5


async def test_each_waiting_post_waits_for_its_own_slot(server: OmnipostServer, client: Client, clock: FixedClock,
                                                        cap3: int) -> None:
    account = await connect(client, "threads", "staggered")
    a = worker(server, clock)
    published_at: list[datetime] = []
    for i in range(3):  # three posts an hour apart fill the window
        clock.at = NOW + (i + 1) * HOUR
        await schedule(client, account, clock.at + timedelta(seconds=1), f"Early {i}")
        clock.at += timedelta(seconds=1)
        assert (await a.run_due(clock.at))["published"] == 1
        published_at.append(clock.at)
    clock.at += timedelta(minutes=1)
    late = [await schedule(client, account, clock.at + timedelta(seconds=1), f"Late {i}") for i in range(2)]
    clock.at += timedelta(seconds=1)
    counts = await a.run_due(clock.at)
    assert counts["deferred"] == 2 and counts["published"] == 0
    waiting = await rows(server, late)
    assert [aware(p.next_attempt_at) for p in waiting] == [published_at[0] + DAY + timedelta(seconds=1),
                                                           published_at[1] + DAY + timedelta(seconds=1)]
    clock.at = published_at[0] + DAY + timedelta(seconds=1)
    counts = await a.run_due(clock.at)
    assert counts["published"] == 1 and counts["deferred"] == 0
    clock.at = published_at[1] + DAY + timedelta(seconds=1)
    assert (await a.run_due(clock.at))["published"] == 1
    assert [p.status for p in await rows(server, late)] == ["published", "published"]


async def test_an_uncapped_platform_is_not_deferred(server: OmnipostServer, client: Client, clock: FixedClock,
                                                    cap3: int) -> None:
    account = await connect(client, "x", "uncapped")
    ids = [await schedule(client, account, NOW + HOUR, f"X post {i}") for i in range(5)]
    clock.at = NOW + HOUR
    counts = await worker(server, clock).run_due(clock.at)
    assert counts["published"] == 5 and counts["deferred"] == 0
    assert all(p.status == "published" for p in await rows(server, ids))


async def test_a_deferred_post_still_respects_later_rescheduling(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                 cap3: int) -> None:
    account = await connect(client, "threads", "resched")
    ids = [await schedule(client, account, NOW + HOUR, f"R {i}") for i in range(4)]
    clock.at = NOW + HOUR
    assert (await worker(server, clock).run_due(clock.at))["deferred"] == 1
    # the user can still cancel the waiting post: it is queued and lease-free
    result: dict[str, Any] = ok(await client.call_tool("cancel_post", {"id": ids[3]}))
    assert result
    assert (await rows(server, [ids[3]]))[0].status != "queued"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_two_workers_holding_claims_of_one_account_never_exceed_its_cap(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str, cap3: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnipost import scheduler as sched
    from omnipost.app import build_server
    from omnipost.sandbox.upstream import list_posts

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None  # skips without PostgreSQL
    settings = Settings(data_dir=tmp_path / "data", database_url=url, log_level="WARNING", scheduler_enabled=False,  # type: ignore[call-arg]
                        confirm="never", _env_file=None)
    clock = FixedClock(NOW)
    server = build_server(settings, clock=clock)
    async with Client(server) as client:
        account = await connect(client, "threads", "shared")
        ids = [await schedule(client, account, NOW + HOUR, f"Shared {i}") for i in range(8)]
        rt = server.runtime
        a, b = (Scheduler(rt.db, rt.publisher, clock, worker_id=w, rng=random.Random(7)) for w in ("A", "B"))
        clock.at = NOW + HOUR
        monkeypatch.setattr(sched, "CLAIM_BATCH", 4)
        claims = [[pid for pid, _ in await w._claim(clock.at)] for w in (a, b)]  # the same instant: 4 posts each
        assert sorted(claims[0] + claims[1]) == sorted(ids)
        # Both decide before either publishes: the moment a per-worker count of "published" cannot see the other.
        deferred = [await w._defer_capped(mine, clock.at) for w, mine in zip((a, b), claims)]
        for w, mine, later in zip((a, b), claims, deferred):
            await rt.publisher._fan_out([pid for pid in mine if pid not in later], None)
            await w._settle(mine, clock.at, {k: 0 for k in ("published", "failed", "retrying")})
        posts = await rows(server, ids)
    published = [p for p in posts if p.status == "published"]
    assert 1 <= len(published) <= cap3
    assert all(p.status == "queued" and aware(p.next_attempt_at) > clock.at for p in posts if p.status != "published")
    assert len(list_posts(settings.data_dir / "sandbox.db")) == len(published)


async def test_an_immediate_publish_past_the_cap_is_queued_for_when_a_slot_frees(
        server: OmnipostServer, client: Client, clock: FixedClock, cap3: int) -> None:
    account = await connect(client, "threads", "busy")
    first_at = clock.at
    answers = []
    for i in range(4):
        answers.append(ok(await client.call_tool("publish_post", {"text": f"Now {i}", "targets": [{"accountId": account}]})))
        clock.at += timedelta(minutes=1)
    assert [a["status"] for a in answers] == ["published"] * 3 + ["queued"]
    late = answers[3]["results"][0]
    assert late["status"] == "queued" and [w["code"] for w in late["warnings"]] == ["schedule.deferred_by_cap"]
    post = (await rows(server, [late["postId"]]))[0]
    assert aware(post.next_attempt_at) == first_at + DAY + timedelta(seconds=1)  # when the first one leaves the window
    a = worker(server, clock)
    assert (await a.run_due(clock.at))["claimed"] == 0  # not before
    clock.at = first_at + DAY + timedelta(seconds=1)
    assert (await a.run_due(clock.at))["published"] == 1
    assert (await rows(server, [late["postId"]]))[0].status == "published"
