"""Scheduler throughput and lateness.

Run: .venv/bin/python bench/scheduler.py [--posts 10000] [--spread 100] [--only drain|lateness] [--tick S]

(a) drain: `--posts` sandbox posts (25 sandbox accounts emulating x, 25 targets per schedule_post call)
    all due at the same instant T, drained by ONE in-process Scheduler calling `run_due(T)` until a tick
    claims nothing (CLAIM_BATCH posts per tick). Prints the wall time of the drain only (creating the
    posts is not timed). Target <= 60 s for 10,000.
(b) lateness: `--spread` posts due at instants spread evenly over 60 s, published by the server's own
    scheduler loop (real clock, normal tick from Settings, 1 s) running inside the server process.
    Lateness = published_at - scheduledAt per post. Prints p50/p99/max. Target p99 <= 1 s. ~70 s.

Both use the embedded sandbox upstream (no network) and a fresh SQLite data dir.
"""

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
from mcp import Client
from sqlmodel import col, select

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.scheduler import Scheduler
from omnipost.store.models import Post

ACCOUNTS = 25


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


async def _accounts(client: Client, prefix: str) -> list[str]:
    out = []
    for i in range(ACCOUNTS):
        r = await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": f"{prefix}{i}"})
        assert not r.is_error, r
        out.append(r.structured_content["id"])  # type: ignore[index]
    return out


async def drain(n: int) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0)
    due = start + timedelta(hours=1)
    clock = FixedClock(start)
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=Path(d), log_level="WARNING", confirm="never", scheduler_enabled=False,  # type: ignore[call-arg]
                            _env_file=None)
        server = build_server(settings, clock=clock)
        async with Client(server) as client:
            accounts = await _accounts(client, "drain")
            t0 = time.perf_counter()
            made = 0
            while made < n:
                k = min(ACCOUNTS, n - made)
                r = await client.call_tool("schedule_post", {"text": f"Bench post {made}", "scheduledAt": due.isoformat(),
                                                             "targets": [{"accountId": a} for a in accounts[:k]]})
                assert not r.is_error, r
                made += k
            print(f"(a) created {n} queued posts due at the same instant in {time.perf_counter() - t0:.1f} s (not timed below)")
            rt = server.runtime
            clock.at = due
            worker = Scheduler(rt.db, rt.publisher, clock, worker_id="bench", tick=settings.scheduler_tick)
            totals: dict[str, int] = {}
            ticks = 0
            t0 = time.perf_counter()
            while True:
                counts = await worker.run_due(due)
                ticks += 1
                for key, value in counts.items():
                    totals[key] = totals.get(key, 0) + value
                if counts["claimed"] == 0:
                    break
            wall = time.perf_counter() - t0
            async with rt.db.session() as s:
                statuses = list((await s.exec(select(Post.status))).all())
            published = statuses.count("published")
            print(f"(a) drained {n} posts in {wall:.1f} s wall ({ticks} ticks, {published / wall:.0f} posts/s): "
                  f"published={published} failed={totals['failed']} deferred={totals.get('deferred', 0)} "
                  f"left={len(statuses) - published}  target <= 60 s: {'PASS' if wall <= 60 and published == n else 'FAIL'}")


async def lateness(n: int, spread: float = 60.0, lead: float = 8.0, tick: float | None = None) -> None:
    with tempfile.TemporaryDirectory() as d:
        extra = {} if tick is None else {"scheduler_tick": tick}
        settings = Settings(data_dir=Path(d), log_level="WARNING", confirm="never", _env_file=None, **extra)  # type: ignore[call-arg]
        server = build_server(settings)  # the real clock; the in-server scheduler loop runs (scheduler_enabled)
        async with Client(server) as client:
            accounts = await _accounts(client, "late")
            base = datetime.now(timezone.utc) + timedelta(seconds=lead)
            due: dict[str, datetime] = {}
            for i in range(n):
                at = base + timedelta(seconds=spread * i / n)
                r = await client.call_tool("schedule_post", {"text": f"Lateness {i}", "scheduledAt": at.isoformat(),
                                                             "targets": [{"accountId": accounts[i % ACCOUNTS]}]})
                assert not r.is_error, r
                due[r.structured_content["results"][0]["postId"]] = at  # type: ignore[index]
            if min(due.values()) < datetime.now(timezone.utc):
                print("(b) warning: scheduling took longer than the lead time; the first posts were already due")
            print(f"(b) {n} posts scheduled over {spread:.0f} s starting {lead:.0f} s ahead; tick {settings.scheduler_tick} s; waiting…")
            rt = server.runtime
            deadline = time.monotonic() + lead + spread + 30
            while time.monotonic() < deadline:
                await anyio.sleep(1.0)
                async with rt.db.session() as s:
                    rows = list((await s.exec(select(Post.id, Post.published_at).where(col(Post.id).in_(list(due)),
                                                                                          Post.status == "published"))).all())
                if len(rows) == n:
                    break
            late = sorted((_aware(at) - due[pid]).total_seconds() for pid, at in rows if at is not None)
            if len(late) < n:
                print(f"(b) only {len(late)} of {n} published in time")
            if late:
                p99 = late[min(len(late) - 1, int(round(0.99 * len(late))) - 1)]
                print(f"(b) lateness over {len(late)} posts: p50 {statistics.median(late):.3f} s, p99 {p99:.3f} s, "
                      f"max {late[-1]:.3f} s, min {late[0]:.3f} s  target p99 <= 1 s: {'PASS' if p99 <= 1.0 else 'FAIL'}")


async def main(args: argparse.Namespace) -> None:
    if args.only in (None, "drain"):
        await drain(args.posts)
    if args.only in (None, "lateness"):
        await lateness(args.spread, tick=args.tick)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--posts", type=int, default=10_000)
    ap.add_argument("--spread", type=int, default=100, help="posts in the lateness run (spread over 60 s)")
    ap.add_argument("--only", choices=("drain", "lateness"))
    ap.add_argument("--tick", type=float, default=None, help="scheduler tick for (b); default the Settings default (1 s)")
    anyio.run(main, ap.parse_args())
