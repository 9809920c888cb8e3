"""Crash test: SIGKILL the server at random moments during 25-target batches, restart it, and check
that every target was published exactly once or ended failed/unknown with a reason.

The server and the sandbox upstream are separate processes on loopback; the sandbox keeps what
it received in its own store, so duplicates are counted from outside. OMNIPOST_CRASH_KILLS sets
the number of kills (50 in CI; 200 by hand).
"""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from omnipost.sandbox.upstream import list_posts

KILLS = int(os.environ.get("OMNIPOST_CRASH_KILLS", "50"))
KEY = "op_live_crash_test_key_0123456789abcdef"
PLATFORMS = ["bluesky", "x", "threads", "linkedin", "facebook"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A subprocess whose stderr is drained by a thread; ready when a line contains `marker`."""

    def __init__(self, args: list[str], env: dict[str, str], marker: str) -> None:
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.ready = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._drain, args=(marker,), daemon=True).start()

    def _drain(self, marker: str) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if marker in line:
                self.ready.set()
        self.ready.set()  # exited: wake the waiter, which then sees the process is gone

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.ready.wait(timeout), "".join(self.lines[-30:])
        assert self.proc.poll() is None, "".join(self.lines[-30:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@contextmanager
def sandbox_upstream(store: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    p = Proc([sys.executable, "-m", "omnipost", "sandbox", "serve", "--store", str(store), "--port", str(port)], env, "Uvicorn running")
    try:
        p.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        p.kill()


def start_server(data_dir: Path, sandbox_url: str, port: int) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env.update(OMNIPOST_DATA_DIR=str(data_dir), OMNIPOST_SANDBOX_URL=sandbox_url, OMNIPOST_API_KEY=KEY,
               OMNIPOST_CONFIRM="never", OMNIPOST_UPSTREAM_TIMEOUT="5", OMNIPOST_LOG_LEVEL="INFO",
               OMNIPOST_RATE_LIMIT_PER_MINUTE="100000")
    p = Proc([sys.executable, "-m", "omnipost", "serve", "--transport", "streamable-http", "--port", str(port)], env, "Uvicorn running")
    p.wait_ready()
    return p


async def call(port: int, tool: str, args: dict[str, Any], on_progress: Any = None) -> Any:
    """One tool call over streamable HTTP with the API key."""
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
            return await client.call_tool(tool, args, progress_callback=on_progress)


def db_posts(data_dir: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(data_dir / "omnipost.db") as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute("SELECT id, account_id, text, status, error FROM posts"))


@pytest.mark.anyio
async def test_killing_the_server_mid_batch_never_publishes_a_target_twice(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    data_dir, store = tmp_path / "data", tmp_path / "sandbox.db"
    with sandbox_upstream(store) as sandbox_url:
        async with httpx2.AsyncClient() as http:  # every write takes a little while, so kills land mid-call
            (await http.post(f"{sandbox_url}/v1/_control/faults", json={"latencyMs": 20})).raise_for_status()
        port = _free_port()
        server = start_server(data_dir, sandbox_url, port)
        accounts = []
        with anyio.fail_after(120):
            for i in range(25):
                r = await call(port, "connect_account", {"platform": "sandbox", "emulates": PLATFORMS[i % 5], "handle": f"crash{i}"})
                assert not r.is_error, r.content[0].text
                accounts.append(r.structured_content["id"])
        kills = 0
        for batch in range(KILLS):
            request = {"text": f"Crash batch {batch}", "firstComment": f"Comment {batch}", "idempotencyKey": f"crash-{batch}",
                       "skipDuplicateCheck": True, "targets": [{"accountId": a} for a in accounts]}
            kill_after = rng.randint(0, 25)  # finished targets before the kill (0: as soon as the call is sent)
            reached = anyio.Event()

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                if done >= kill_after:
                    reached.set()

            async def publish() -> None:
                try:
                    await call(port, "publish_post", request, on_progress)
                except Exception:  # noqa: BLE001 - the server is killed under this call on purpose
                    pass
                reached.set()

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(publish)
                    if kill_after > 0:
                        await reached.wait()
                    else:
                        await anyio.lowlevel.checkpoint()
                    server.kill()
                    kills += 1
                    tg.cancel_scope.cancel()
            server = start_server(data_dir, sandbox_url, port)
            with anyio.fail_after(120):  # any tool call waits until start-up recovery has finished
                assert not (await call(port, "list_profiles", {})).is_error
            if batch % 5 == 0:
                # A client that retries with the same key after the crash gets the batch, not a second one.
                with anyio.fail_after(120):
                    again = await call(port, "publish_post", request)
                assert not again.is_error or again.structured_content["error"]["code"] == "idempotency_conflict", again
        server.kill()
    assert kills == KILLS

    posts = db_posts(data_dir)
    upstream = [p for p in list_posts(store) if p["kind"] == "post"]
    upstream_ids = Counter(p["id"] for p in upstream)
    assert not [p for p in posts if p["status"] in ("publishing", "validated")], "a post was left mid-publish"
    for p in posts:
        if p["status"] == "published":
            assert upstream_ids[p["id"]] == 1
        else:
            assert upstream_ids[p["id"]] == 0
            assert p["status"] in ("failed", "unknown", "rejected") and p["error"], dict(p)
    # Never twice: at most one upstream post per (account, text), and none we do not know of.
    by_content = Counter((p["handle"], p["text"]) for p in upstream)
    assert max(by_content.values(), default=1) == 1, [k for k, v in by_content.items() if v > 1]
    assert set(upstream_ids) <= {p["id"] for p in posts}
    published = sum(p["status"] == "published" for p in posts)
    print(f"crash test: {KILLS} kills, {len(posts)} target rows, {published} published, "
          f"{len(posts) - published} failed/unknown, {len(upstream)} upstream posts")
