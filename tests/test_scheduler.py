"""The scheduler (PRODUCT §6), tick by tick with the injected clock: no sleeps, `run_due(now)` is one tick.

The in-server scheduler loop is switched off (scheduler_enabled=False) so only the ticks a test
runs happen; one subprocess test at the end runs the real `omnipost worker`.
"""

import os
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from sqlmodel import select
from procs import Proc
from test_publishing import faults
from toolresult import err, ok

from omnipost.app import OmnipostServer
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.scheduler import Scheduler
from omnipost.store.models import Attempt, Post

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's server and client fixtures use this: only the test's own ticks run the scheduler."""
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", scheduler_enabled=False, confirm="never",  # type: ignore[call-arg]
                    _env_file=None)


@pytest.fixture
async def account(client: Client) -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "sched"}))["id"]


def worker(server: OmnipostServer, clock: FixedClock, name: str = "A", **kw: Any) -> Scheduler:
    rt = server.runtime
    return Scheduler(rt.db, rt.publisher, clock, worker_id=name, rng=kw.pop("rng", random.Random(42)), **kw)


def received(settings: Settings) -> list[dict[str, Any]]:
    return [p for p in list_posts(settings.data_dir / "sandbox.db") if p["kind"] == "post"]


async def schedule(client: Client, account: str, when: datetime | str, text: str = "Later", **extra: Any) -> dict[str, Any]:
    at = when if isinstance(when, str) else when.isoformat()
    return ok(await client.call_tool("schedule_post", {"text": text, "scheduledAt": at, "targets": [{"accountId": account}], **extra}))


async def row(server: OmnipostServer, post_id: str) -> Post:
    async with server.runtime.db.session() as s:
        post = await s.get(Post, post_id)
        assert post is not None
        return post


async def test_a_scheduled_post_waits_until_due_then_publishes_once(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                    account: str, settings: Settings) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    assert batch["status"] == "queued" and batch["mode"] == "scheduled"
    assert datetime.fromisoformat(batch["scheduledAt"]) == NOW + HOUR
    result = batch["results"][0]
    assert result["status"] == "queued"
    assert [w["code"] for w in result["warnings"]] == ["scheduler.not_running"]  # no heartbeat yet
    a = worker(server, clock)
    assert (await a.run_due(NOW))["claimed"] == 0  # early: nothing happens
    clock.at = NOW + HOUR - timedelta(seconds=1)
    assert (await a.run_due(clock.at))["claimed"] == 0
    assert received(settings) == []
    clock.at = NOW + HOUR
    counts = await a.run_due(clock.at)
    assert counts["published"] == 1
    assert (await a.run_due(clock.at))["claimed"] == 0  # published exactly once
    assert [p["id"] for p in received(settings)] == [result["postId"]]
    detail = ok(await client.call_tool("get_post", {"postId": result["postId"]}))
    assert detail["status"] == "published" and detail["url"]
    post = await row(server, result["postId"])
    assert post.lease_owner is None and post.next_attempt_at is None
    # a scheduler is alive now (heartbeat of the last tick): no warning
    second = await schedule(client, account, clock.at + HOUR, text="Even later")
    assert second["results"][0]["warnings"] == []


async def test_publish_post_with_scheduled_at_queues_too(client: Client, account: str, settings: Settings) -> None:
    batch = ok(await client.call_tool("publish_post", {"text": "Via publish", "scheduledAt": (NOW + HOUR).isoformat(),
                                                       "targets": [{"accountId": account}]}))
    assert batch["status"] == "queued" and received(settings) == []
    error = err(await client.call_tool("schedule_post", {"text": "No time", "targets": [{"accountId": account}]}))
    assert (error["code"], error["rule"]) == ("validation_failed", "scheduledAt")
    error = err(await client.call_tool("schedule_post", {"text": "Past", "scheduledAt": NOW.isoformat(), "targets": [{"accountId": account}]}))
    assert error["rule"] == "scheduledAt"


async def test_late_within_grace_publishes_beyond_grace_fails_clearly(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                      account: str, settings: Settings) -> None:
    within = await schedule(client, account, NOW + HOUR, text="Within grace")
    beyond = await schedule(client, account, NOW + 2 * timedelta(minutes=1), text="Beyond grace")
    clock.at = NOW + HOUR + timedelta(minutes=30)  # nothing ran for a while; the second is 1 h 28 min late
    counts = await worker(server, clock).run_due(clock.at)
    assert counts["published"] == 1 and counts["missed"] == 1
    assert [p["id"] for p in received(settings)] == [within["results"][0]["postId"]]
    missed = ok(await client.call_tool("get_post", {"postId": beyond["results"][0]["postId"]}))
    assert missed["status"] == "failed" and missed["error"]["rule"] == "schedule.missed_grace"
    assert "grace" in missed["error"]["message"] and missed["error"]["retryable"] is False
    assert ok(await client.call_tool("get_post", {"postId": within["results"][0]["postId"]}))["status"] == "published"


async def test_grace_is_configurable(server: OmnipostServer, client: Client, clock: FixedClock, account: str) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    clock.at = NOW + HOUR + timedelta(seconds=11)
    counts = await worker(server, clock, grace=10).run_due(clock.at)
    assert counts["missed"] == 1 and counts["claimed"] == 0
    assert (await row(server, batch["results"][0]["postId"])).status == "failed"


@pytest.mark.parametrize("local, utc, code", [
    ("2026-03-29T02:30:00", "2026-03-29T01:30:00+00:00", "schedule.dst_gap"),  # 02:30 does not exist: 03:30 CEST
    ("2026-10-25T02:30:00", "2026-10-25T00:30:00+00:00", "schedule.dst_overlap"),  # twice: the first (CEST)
    ("2026-07-01T09:00:00", "2026-07-01T07:00:00+00:00", None),
])
async def test_local_times_in_a_dst_gap_or_overlap_are_resolved_and_reported(
        server: OmnipostServer, client: Client, clock: FixedClock, account: str, local: str, utc: str, code: str | None) -> None:
    clock.at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    batch = await schedule(client, account, local, timezone="Europe/Paris")
    assert datetime.fromisoformat(batch["scheduledAt"]) == datetime.fromisoformat(utc)
    codes = [w["code"] for w in batch["results"][0]["warnings"] if w["code"].startswith("schedule.")]
    assert codes == ([code] if code else [])
    stored = await row(server, batch["results"][0]["postId"])
    assert stored.next_attempt_at == datetime.fromisoformat(utc)


async def test_a_claimed_post_cannot_be_cancelled_an_unclaimed_one_can(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                       account: str, settings: Settings) -> None:
    first = await schedule(client, account, NOW + HOUR, text="Claimed")
    second = await schedule(client, account, NOW + 2 * HOUR, text="Cancelled")
    cancelled = ok(await client.call_tool("cancel_post", {"id": second["results"][0]["postId"]}))
    assert cancelled["results"][0]["status"] == "cancelled"
    clock.at = NOW + 2 * HOUR
    a = worker(server, clock)
    won = await a._claim(clock.at)  # the worker has claimed, not yet published
    assert [pid for pid, _ in won] == [first["results"][0]["postId"]]  # the cancelled one is not claimed
    error = err(await client.call_tool("cancel_post", {"id": first["results"][0]["postId"]}))
    assert (error["code"], error["rule"]) == ("validation_failed", "post.already_publishing")
    await a.publisher._fan_out([pid for pid, _ in won], None)
    await a._settle([pid for pid, _ in won], clock.at, {"published": 0, "failed": 0, "retrying": 0})
    assert [p["id"] for p in received(settings)] == [first["results"][0]["postId"]]
    assert ok(await client.call_tool("get_post", {"postId": second["results"][0]["postId"]}))["status"] == "cancelled"
    assert ok(await client.call_tool("get_post", {"postId": first["results"][0]["postId"]}))["status"] == "published"


async def test_two_workers_claiming_at_once_publish_once(server: OmnipostServer, client: Client, clock: FixedClock,
                                                         account: str, settings: Settings) -> None:
    await schedule(client, account, NOW + HOUR)
    clock.at = NOW + HOUR
    a, b = worker(server, clock, "A"), worker(server, clock, "B")
    results: list[dict[str, int]] = []

    async def tick(w: Scheduler) -> None:
        results.append(await w.run_due(clock.at))

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick, a)
        tg.start_soon(tick, b)
    assert sorted(r["claimed"] for r in results) == [0, 1]
    assert len(received(settings)) == 1


async def test_reschedule_moves_a_queued_post(server: OmnipostServer, client: Client, clock: FixedClock, account: str,
                                              settings: Settings) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    moved = ok(await client.call_tool("reschedule_post", {"id": batch["id"], "scheduledAt": "2026-11-24T17:00:00",
                                                          "timezone": "Europe/Paris"}))
    assert datetime.fromisoformat(moved["scheduledAt"]) == NOW + 4 * HOUR and moved["status"] == "queued"
    a = worker(server, clock)
    clock.at = NOW + HOUR
    assert (await a.run_due(clock.at))["claimed"] == 0
    clock.at = NOW + 4 * HOUR
    assert (await a.run_due(clock.at))["published"] == 1
    assert len(received(settings)) == 1
    error = err(await client.call_tool("reschedule_post", {"id": batch["results"][0]["postId"],
                                                           "scheduledAt": (clock.at + HOUR).isoformat()}))
    assert error["code"] == "validation_failed"  # published: nothing queued to move
    # a claimed post cannot be moved
    other = await schedule(client, account, clock.at + HOUR, text="Claimed one")
    clock.at += HOUR
    await worker(server, clock, "B")._claim(clock.at)
    error = err(await client.call_tool("reschedule_post", {"id": other["results"][0]["postId"],
                                                           "scheduledAt": (clock.at + HOUR).isoformat()}))
    assert error["rule"] == "post.already_publishing"


async def test_transient_failures_back_off_with_seeded_jitter_and_retry_after_wins(
        server: OmnipostServer, client: Client, clock: FixedClock, account: str, settings: Settings) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    post_id = batch["results"][0]["postId"]
    a = worker(server, clock, rng=random.Random(7), backoff_base=30, backoff_cap=3600)
    expected = random.Random(7)
    await faults(server, {"kinds": ["5xx"], "failRate": 1.0, "maxFaults": 1})
    clock.at = NOW + HOUR
    assert (await a.run_due(clock.at))["retrying"] == 1
    post = await row(server, post_id)
    assert post.status == "failed" and post.error and post.error["code"] == "platform_unavailable"
    first_delay = 15 + expected.uniform(0, 15)  # try 1: 30 s, half of it jittered
    assert post.next_attempt_at == clock.at + timedelta(seconds=first_delay)
    assert (await a.run_due(clock.at + timedelta(seconds=first_delay - 1)))["claimed"] == 0  # not yet due
    # try 2 is throttled: the platform's Retry-After (2 s) takes priority over the 60 s backoff
    await faults(server, {"kinds": ["429"], "failRate": 1.0, "maxFaults": 1})
    clock.at = post.next_attempt_at
    assert (await a.run_due(clock.at))["retrying"] == 1
    post = await row(server, post_id)
    assert post.next_attempt_at == clock.at + timedelta(seconds=2)
    await faults(server, None)
    clock.at = post.next_attempt_at
    assert (await a.run_due(clock.at))["published"] == 1
    detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert [x["outcome"] for x in detail["attempts"]] == ["failed", "failed", "published"]
    assert [p["id"] for p in received(settings)] == [post_id]
    assert a.backoff(3, None) <= 120 and a.backoff(3, None) >= 60 and a.backoff(20, None) <= 3600


async def test_after_max_attempts_a_post_stays_failed(server: OmnipostServer, client: Client, clock: FixedClock,
                                                      account: str, settings: Settings) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    post_id = batch["results"][0]["postId"]
    a = worker(server, clock, max_attempts=3)
    await faults(server, {"kinds": ["5xx"], "failRate": 1.0})
    clock.at = NOW + HOUR
    tries = 0
    while True:
        counts = await a.run_due(clock.at)
        tries += counts["claimed"]
        post = await row(server, post_id)
        if post.next_attempt_at is None:
            break
        clock.at = post.next_attempt_at
    assert tries == 3 and post.status == "failed"
    assert post.error is not None and post.error["retryable"] is False and "3 tries" in post.error["message"]
    clock.at += 10 * HOUR
    assert (await a.run_due(clock.at))["claimed"] == 0
    async with server.runtime.db.session() as s:
        attempts = list((await s.exec(select(Attempt).where(Attempt.post_id == post_id))).all())
    assert len(attempts) == 3 and not any(x.will_retry for x in attempts)
    assert received(settings) == []
    # retry_post re-queues only the failed target; the scheduler publishes it on its next tick
    await faults(server, None)
    requeued = ok(await client.call_tool("retry_post", {"batchId": batch["id"]}))
    assert requeued["status"] == "queued" and requeued["results"][0]["error"] is None
    assert (await a.run_due(clock.at))["published"] == 1
    assert [p["id"] for p in received(settings)] == [post_id]
    error = err(await client.call_tool("retry_post", {"batchId": batch["id"]}))
    assert error["code"] == "validation_failed"  # nothing failed any more


async def test_an_unknown_outcome_is_never_retried_automatically(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                account: str) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    post_id = batch["results"][0]["postId"]
    a = worker(server, clock)
    clock.at = NOW + HOUR
    claimed = await a._claim(clock.at)
    async with server.runtime.db.session() as s:  # as if the upstream answer had been lost and not reconcilable
        post = await s.get(Post, post_id)
        assert post is not None
        post.status, post.error = "unknown", {"code": "platform_outcome_unknown", "message": "lost", "retryable": False}
        s.add(post)
        await s.commit()
    await a._settle([pid for pid, _ in claimed], clock.at, {"published": 0, "failed": 0, "retrying": 0})
    clock.at += 10 * HOUR
    assert (await a.run_due(clock.at))["claimed"] == 0
    assert (await row(server, post_id)).status == "unknown"


@pytest.mark.parametrize("upstream_got_it", [True, False])
async def test_a_crashed_workers_lease_expires_and_another_reconciles_once(
        server: OmnipostServer, client: Client, clock: FixedClock, account: str, settings: Settings, upstream_got_it: bool) -> None:
    batch = await schedule(client, account, NOW + HOUR)
    post_id = batch["results"][0]["postId"]
    a, b = worker(server, clock, "A", lease_seconds=60), worker(server, clock, "B", lease_seconds=60)
    clock.at = NOW + HOUR
    assert [pid for pid, _ in await a._claim(clock.at)] == [post_id]
    if upstream_got_it:
        await a.publisher._fan_out([post_id], None)  # sent and stored upstream ...
    from omnipost.store.db import new_id

    async with server.runtime.db.session() as s:  # ... then A dies before writing the result
        post = await s.get(Post, post_id)
        assert post is not None
        post.status, post.upstream_id, post.url = "publishing", None, None
        s.add(post)
        s.add(Attempt(id=new_id("att"), post_id=post_id, number=2 if upstream_got_it else 1, started_at=clock.at))
        await s.commit()
    assert (await b.run_due(clock.at + timedelta(seconds=30)))["claimed"] == 0  # A's lease still holds
    clock.at += timedelta(seconds=61)
    counts = await b.run_due(clock.at)
    assert counts["claimed"] == 1 and counts["reconciled"] == 1 and counts["published"] == 1
    assert [p["id"] for p in received(settings)] == [post_id]  # exactly once, either way
    detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published"
    assert detail["attempts"][-1]["outcome"] == ("reconciled" if upstream_got_it else "published")
    assert (await b.run_due(clock.at + HOUR))["claimed"] == 0


async def test_scheduler_status_reports_workers_queue_and_next_due(server: OmnipostServer, client: Client, clock: FixedClock,
                                                                   account: str) -> None:
    idle = ok(await client.call_tool("scheduler_status", {}))
    assert idle == {"alive": False, "workers": [], "queueDepth": 0, "nextDueAt": None}
    await schedule(client, account, NOW + 2 * HOUR, text="Two")
    await schedule(client, account, NOW + HOUR, text="One")
    await worker(server, clock, "A").run_due(NOW)
    status = ok(await client.call_tool("scheduler_status", {}))
    assert status["alive"] is True and [w["workerId"] for w in status["workers"]] == ["A"]
    assert status["queueDepth"] == 2 and datetime.fromisoformat(status["nextDueAt"]) == NOW + HOUR
    clock.at = NOW + timedelta(seconds=3)  # more than two ticks without a heartbeat
    assert ok(await client.call_tool("scheduler_status", {}))["alive"] is False
    other = ok(await client.call_tool("create_profile", {"name": "other"}))
    assert ok(await client.call_tool("scheduler_status", {"profileId": other["id"]}))["queueDepth"] == 0


async def test_run_forever_ticks_until_stopped_and_retires_its_heartbeat(server: OmnipostServer, client: Client,
                                                                          clock: FixedClock, account: str) -> None:
    a = worker(server, clock, "loop", tick=0.01)
    stop = anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run_forever, stop)
            while not ok(await client.call_tool("scheduler_status", {}))["alive"]:
                await anyio.sleep(0.01)
            stop.set()
    assert ok(await client.call_tool("scheduler_status", {}))["workers"] == []


# ------------------------------------------------------------------ the real processes


def test_a_post_scheduled_through_stdio_is_published_once_by_omnipost_worker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env |= {"OMNIPOST_DATA_DIR": str(data), "OMNIPOST_LOG_LEVEL": "INFO", "OMNIPOST_SCHEDULER_ENABLED": "false",
            "OMNIPOST_CONFIRM": "never"}
    serve = Proc([sys.executable, "-m", "omnipost", "serve"], env, stdin=subprocess.PIPE)
    assert serve.proc.stdin is not None
    with serve.watchdog(60):
        serve.initialize()
        account = serve.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "w"})["id"]
        when = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
        batch = serve.call_tool("schedule_post", {"text": "From the worker", "scheduledAt": when, "targets": [{"accountId": account}]})
        assert batch["status"] == "queued", batch
        assert [w["code"] for w in batch["results"][0]["warnings"]] == ["scheduler.not_running"]
        serve.proc.stdin.close()
        assert serve.proc.wait(timeout=30) == 0
    post_id = batch["results"][0]["postId"]
    assert list_posts(data / "sandbox.db") == []

    work = Proc([sys.executable, "-m", "omnipost", "worker"], env)
    with work.watchdog(60):
        work.wait_for(f"published post {post_id}", timeout=30)
        work.terminate()
    assert any("worker stopped" in line for line in work.lines)
    assert [p["id"] for p in list_posts(data / "sandbox.db") if p["kind"] == "post"] == [post_id]
