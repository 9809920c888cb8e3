"""Crash recovery across processes (PRODUCT §6): a server SIGKILLed with posts queued, then `omnipost worker`.

The server's own scheduler is on, so the kill lands while it is publishing; whatever it had claimed
(lease held, maybe mid-send in `publishing`) must be taken over by the worker once the lease lapses,
through reconciliation, never sent blind. The embedded sandbox keeps what it received in its own
SQLite file (data/sandbox.db), shared by both processes, so the test can count deliveries.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

from procs import Proc

from omnipost.sandbox.upstream import list_posts

EMULATES = ("x", "bluesky", "threads", "linkedin", "facebook")
OFFSETS = (1.5, 2.0, 2.5, 6.0, 8.0)  # seconds from now: some due before the kill, some after
LEASE = 3  # seconds; the killed server's claims lapse this long after they were taken (default 300 s)
FINAL = {"published", "failed", "rejected", "unknown", "cancelled"}


def _statuses(db: Path) -> dict[str, str]:
    """post id -> status, read-only from the omnipost database (another process may be writing)."""
    if not db.exists():
        return {}
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return dict(conn.execute("SELECT id, status FROM posts").fetchall())


def _received(data: Path) -> list[str]:
    return [p["id"] for p in list_posts(data / "sandbox.db") if p["kind"] == "post"]


def test_a_server_killed_with_posts_queued_leaves_them_to_a_new_worker_which_publishes_each_exactly_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env |= {"OMNIPOST_DATA_DIR": str(data), "OMNIPOST_LOG_LEVEL": "INFO", "OMNIPOST_CONFIRM": "never",
            "OMNIPOST_SCHEDULER_TICK": "0.2", "OMNIPOST_SCHEDULER_LEASE": str(LEASE)}
    serve = Proc([sys.executable, "-m", "omnipost", "serve"], env, stdin=subprocess.PIPE)
    post_ids: list[str] = []
    with serve.watchdog(40):
        serve.initialize()
        accounts = [serve.call_tool("connect_account", {"platform": "sandbox", "emulates": p, "handle": f"crash-{p}"})["id"]
                    for p in EMULATES]
        assert len(set(accounts)) == 5
        now = datetime.now(timezone.utc)
        for i, offset in enumerate(OFFSETS):
            batch = serve.call_tool("schedule_post", {
                "text": f"Restart batch {i}", "scheduledAt": (now + timedelta(seconds=offset)).isoformat(),
                "targets": [{"accountId": a} for a in accounts]})
            assert batch["status"] == "queued", batch
            assert [r["status"] for r in batch["results"]] == ["queued"] * 5, batch
            post_ids += [r["postId"] for r in batch["results"]]
        assert len(set(post_ids)) == 25

        # kill while the server's scheduler is at work: as soon as the sandbox holds a first post
        deadline = time.monotonic() + 15
        while not _received(data):
            assert time.monotonic() < deadline, "server published nothing in time; stderr:\n" + "".join(serve.lines[-40:])
            assert serve.proc.poll() is None, "server exited early; stderr:\n" + "".join(serve.lines[-40:])
            time.sleep(0.02)
        serve.proc.kill()  # SIGKILL, stdin still open: no shutdown of any kind
        assert serve.proc.wait(timeout=10) == -signal.SIGKILL
    at_kill = _statuses(data / "omnipost.db")
    assert set(at_kill) == set(post_ids)
    assert any(s in ("queued", "publishing") for s in at_kill.values()), at_kill  # work was left for the worker

    work = Proc([sys.executable, "-m", "omnipost", "worker"], env)
    with work.watchdog(60):
        work.wait_for("worker ready", timeout=20)
        deadline = time.monotonic() + 30
        while True:
            statuses, received = _statuses(data / "omnipost.db"), set(_received(data))
            if all(statuses.get(pid) in FINAL for pid in post_ids) and received >= set(post_ids):
                break
            assert time.monotonic() < deadline, (f"not settled in time; statuses: {statuses}; missing upstream: "
                                                 f"{set(post_ids) - received}; stderr:\n" + "".join(work.lines[-60:]))
            assert work.proc.poll() is None, "worker exited early; stderr:\n" + "".join(work.lines[-40:])
            time.sleep(0.1)
        work.terminate()
    assert any("worker stopped" in line for line in work.lines)

    received_ids = _received(data)
    counts = Counter(received_ids)
    assert [pid for pid, n in counts.items() if n > 1] == []  # nothing delivered twice
    assert set(received_ids) == set(post_ids)  # every post delivered, nothing else
    assert len(received_ids) == 25
    final = _statuses(data / "omnipost.db")
    assert {pid: final[pid] for pid in post_ids if final[pid] != "published"} == {}, final
    # every post the server had not finished was published by the worker
    left = {pid for pid, s in at_kill.items() if s != "published"}
    by_worker = {pid for pid in post_ids if any(f"published post {pid}" in line for line in work.lines)}
    assert left <= by_worker, (left - by_worker, "".join(work.lines[-60:]))
