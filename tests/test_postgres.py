"""PostgreSQL (OMNIPOST_DATABASE_URL=postgresql+asyncpg://...): concurrent starts migrate once, the
publishing flow works, and several `omnipost worker` processes share one queue without publishing a
post twice (FOR UPDATE SKIP LOCKED claims).

The store tests shared with SQLite (migrations, schema and native types, the default profile) run on
both backends in tests/test_store.py; this module keeps what only PostgreSQL does.
The cluster comes from tests/pg.py (skipped without PostgreSQL unless OMNIPOST_REQUIRE_PG is set).
"""

import os
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
from mcp import Client
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from sqlalchemy import func
from sqlmodel import select
from procs import Proc
from toolresult import err, ok

from omnipost.app import build_server
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts
from omnipost.store import migrations
from omnipost.store.db import Database
from omnipost.store.models import Post, Profile

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
KEY = "pg-test-shared-secret-key"  # every process decrypts the same stored credentials
PLATFORMS = ["bluesky", "x", "threads", "linkedin", "facebook"]


# ------------------------------------------------------------------ the store


# PostgreSQL-only: concurrent first opens serialize on pg_advisory_xact_lock; SQLite has no such lock.
async def test_pg_the_default_profile_exists_once_even_when_many_processes_start_at_once(tmp_path: Path, pg_url: str) -> None:
    dbs: list[Database] = []

    async def open_one() -> None:
        dbs.append(await Database.open(pg_url, tmp_path, NOW))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:  # concurrent migrations serialize on the advisory lock
            for _ in range(6):
                tg.start_soon(open_one)
    profile = await dbs[0].ensure_default_profile(NOW)
    assert profile.name == "default" and profile.created_at == NOW
    async with dbs[0].session() as s:
        assert (await s.exec(select(func.count()).select_from(Profile))).one() == 1
    async with dbs[0].engine.begin() as conn:
        assert await conn.run_sync(migrations.current_version) == migrations.LATEST
    for db in dbs:
        await db.close()


# ------------------------------------------------------------------ publishing through MCP


async def test_pg_publish_and_idempotency_replay_through_the_mcp_client(tmp_path: Path, pg_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, log_level="WARNING", confirm="never",  # type: ignore[call-arg]
                        scheduler_enabled=False, _env_file=None)
    server = build_server(settings)
    async with Client(server) as client:
        accounts = [ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": e, "handle": f"pg{i}"}))["id"]
                    for i, e in enumerate(("x", "bluesky", "threads"))]
        request = {"text": "Hello from PostgreSQL", "idempotencyKey": "pg-1", "targets": [{"accountId": a} for a in accounts]}
        first = ok(await client.call_tool("publish_post", request))
        assert first["status"] == "published", first
        replay = ok(await client.call_tool("publish_post", request))
        assert replay["replay"] is True and replay["id"] == first["id"] and replay["results"] == first["results"]
        conflict = err(await client.call_tool("publish_post", {**request, "text": "Something else"}))
        assert (conflict["code"], conflict["rule"]) == ("idempotency_conflict", "idempotency.mismatch")
        listed = ok(await client.call_tool("list_posts", {}))["posts"]
        assert len(listed) == 3
    received = [p for p in list_posts(settings.data_dir / "sandbox.db") if p["kind"] == "post"]
    assert sorted(p["id"] for p in received) == sorted(r["postId"] for r in first["results"])
    assert not (settings.data_dir / "omnipost.db").exists()


# ------------------------------------------------------------------ several workers, one queue


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_three_workers_drain_1000_due_posts_each_published_exactly_once(tmp_path: Path, pg_url: str) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    store = tmp_path / "sandbox.db"
    port = _free_port()
    sandbox = Proc([sys.executable, "-m", "omnipost", "sandbox", "serve", "--store", str(store), "--port", str(port)], base_env)
    workers: list[Proc] = []
    try:
        sandbox.wait_for("Uvicorn running", timeout=60)
        sandbox_url = f"http://127.0.0.1:{port}"
        settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, sandbox_url=sandbox_url, log_level="WARNING",  # type: ignore[call-arg]
                            confirm="never", scheduler_enabled=False, secret_key=KEY, _env_file=None)
        server = build_server(settings)
        started = time.monotonic()
        async with Client(server) as client:
            with anyio.fail_after(300):
                accounts = [ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": PLATFORMS[i % 5],
                                                                         "handle": f"w{i}"}))["id"] for i in range(25)]
                post_ids: list[str] = []
                for b in range(40):
                    when = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
                    batch = ok(await client.call_tool("schedule_post", {
                        "text": f"Queued batch {b}", "scheduledAt": when, "skipDuplicateCheck": True,
                        "targets": [{"accountId": a} for a in accounts]}))
                    assert batch["status"] == "queued", batch
                    post_ids += [r["postId"] for r in batch["results"]]
            assert len(set(post_ids)) == 1000
            scheduled = time.monotonic()
            while datetime.now(timezone.utc) < datetime.fromisoformat(when):  # every post is due before a worker starts
                await anyio.sleep(0.1)

            env = base_env | {"OMNIPOST_DATABASE_URL": pg_url, "OMNIPOST_SANDBOX_URL": sandbox_url,
                              "OMNIPOST_DATA_DIR": str(tmp_path / "worker"), "OMNIPOST_LOG_LEVEL": "INFO",
                              "OMNIPOST_SCHEDULER_TICK": "0.2", "OMNIPOST_SECRET_KEY": KEY}
            workers = [Proc([sys.executable, "-m", "omnipost", "worker"], env) for _ in range(3)]

            async def published() -> int:
                async with server.runtime.db.session() as s:
                    return int((await s.exec(select(func.count()).select_from(Post).where(Post.status == "published"))).one())

            deadline = time.monotonic() + 180
            count = 0
            while time.monotonic() < deadline:
                count = await published()
                if count == 1000 or any(w.proc.poll() is not None for w in workers):
                    break
                await anyio.sleep(0.2)
            drained = time.monotonic()
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
            codes = [w.proc.wait(timeout=60) for w in workers]
            logs = ["".join(w.lines[-40:]) for w in workers]
            assert count == 1000, f"{count} of 1000 published; worker logs:\n" + "\n---\n".join(logs)
            assert codes == [0, 0, 0], logs

            async with server.runtime.db.session() as s:
                posts = list((await s.exec(select(Post))).all())
    finally:
        for w in workers:
            w.kill()
        sandbox.kill()

    assert len(posts) == 1000 and all(p.status == "published" for p in posts)
    assert all(p.lease_owner is None for p in posts)
    upstream = [p for p in list_posts(store) if p["kind"] == "post"]
    ids = Counter(p["id"] for p in upstream)
    assert set(ids) == {p.id for p in posts} and max(ids.values()) == 1, [k for k, v in ids.items() if v > 1]
    by_content = Counter((p["handle"], p["text"]) for p in upstream)
    assert len(by_content) == 1000 and max(by_content.values()) == 1
    per_worker = [sum("published post" in line for line in w.lines) for w in workers]
    assert sum(per_worker) == 1000, per_worker
    assert sum(n > 0 for n in per_worker) >= 2, per_worker  # the queue was shared
    print(f"3 workers on PostgreSQL: scheduled 1000 posts in {scheduled - started:.1f} s, drained in "
          f"{drained - scheduled:.1f} s; per worker {per_worker}")
