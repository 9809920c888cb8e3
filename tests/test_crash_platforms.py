"""Crash test against a real platform's fake: SIGKILL the server at random moments during batches that publish to
several accounts of one platform through its adapter, restart it, and check every target ended exactly once.

tests/test_crash.py does this against the sandbox; here the upstream is the platform's own fake (tests/fakes/<p>.py)
served in its own loopback process (tests/fakes/serve.py, state in memory), and the server reaches it through the
platform's API base override (X: OMNIPOST_X_API_BASE) or the instance URL the account is connected on (Mastodon),
with loopback upstreams allowed (OMNIPOST_UPSTREAM_ALLOW_LOOPBACK: the SSRF guard refuses loopback otherwise). The
fake stores a second copy of the same text instead of refusing it (`--allow-duplicates`), so a blind resend shows up
as a copy, not as X's own duplicate guard saving us. Duplicates are counted from the fake's state (its test route).

`PlatformRun` holds what differs per platform (the fake to serve, the server's environment, how an account is
connected, how the fake's state reads); X and Mastodon run today.

Mastodon refuses no duplicate text (its fake has no guard to turn off): what keeps a resend after a kill from making
a copy is its Idempotency-Key (the same key from the same user within an hour answers the status it made then), which
the adapter sends with every status and sends again when it reconciles a piece sent without a recorded answer. The
run asserts every status was made under a key and prints how many POSTs the key answered with an existing status.

OMNIPOST_CRASH_KILLS sets the kills (20 by default, for CI; 200 by hand):

    OMNIPOST_CRASH_KILLS=200 PYTHONPATH=server python -m pytest tests/test_crash_platforms.py -q -s -p no:randomly

(`-k mastodon` or `-k x` runs one platform.)

Invariants, as in test_crash.py: 0 duplicates (per account, text and parent), 0 lost (a published target's post
and first comment are upstream under the ids it recorded, nothing upstream that no published target claims; any
other target ended failed/unknown/rejected with its error, unknown only when its write was in flight at a kill),
0 stuck (nothing left publishing/validated or leased), and no request the platform's spec refuses.
"""

import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from refdata import requires_reference_data
from test_crash import KEY, Proc, _free_port, call, db_rows, in_flight, publish_and_kill

KILLS = int(os.environ.get("OMNIPOST_CRASH_KILLS", "20"))
ACCOUNTS = 8
TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PlatformRun:
    """What the crash run needs to know about one platform."""

    platform: str
    env: Callable[[str], dict[str, str]]  # the server's environment for a fake at this URL
    connect: Callable[[str, int], Awaitable[dict[str, Any]]]  # connect_account's arguments for account i
    posts: Callable[[str], Awaitable[dict[str, Any]]]  # the fake's state: {"posts": [{id, user, text, parent, deleted}], "violations"}
    keyed: bool = False  # every create carries an idempotency key (the state says `unkeyed` and `idempotentReplays`)


async def _x_connect(url: str, i: int) -> dict[str, Any]:
    async with httpx2.AsyncClient() as http:
        tokens = (await http.post(f"{url}/_test/users", json={"id": str(4_000_000 + i), "username": f"crash{i}"})).json()
    expires = datetime.now(timezone.utc) + timedelta(seconds=tokens["expires_in"])
    return {"platform": "x", "accessToken": tokens["access_token"], "refreshToken": tokens["refresh_token"],
            "expiresAt": expires.isoformat()}


async def _mastodon_connect(url: str, i: int) -> dict[str, Any]:
    """A brought token (as made in the instance's Preferences → Development) on the fake instance."""
    async with httpx2.AsyncClient() as http:
        user = (await http.post(f"{url}/_test/users", json={"username": f"crash{i}"})).json()
    return {"platform": "mastodon", "instanceUrl": url, "accessToken": user["access_token"]}


async def _state(url: str) -> dict[str, Any]:
    async with httpx2.AsyncClient() as http:
        return (await http.get(f"{url}/_test/posts")).json()


RUNS = {
    "x": PlatformRun("x", env=lambda url: {"OMNIPOST_X_API_BASE": url, "OMNIPOST_X_TOKEN_URL": f"{url}/2/oauth2/token",
                                           "OMNIPOST_X_CLIENT_ID": "crash-client", "OMNIPOST_X_CLIENT_SECRET": "crash-secret"},
                     connect=_x_connect, posts=_state),
    "mastodon": PlatformRun("mastodon", env=lambda url: {}, connect=_mastodon_connect, posts=_state, keyed=True),
}


@contextmanager
def served_fake(platform: str) -> Iterator[str]:
    """The platform's fake in its own process on a free loopback port."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    p = Proc([sys.executable, str(TESTS / "fakes" / "serve.py"), platform, "--port", str(port), "--latency-ms", "20",
              "--allow-duplicates"], env, "Uvicorn running")
    try:
        p.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        p.kill()


def start_server(data_dir: Path, run: PlatformRun, fake_url: str, port: int) -> Proc:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env.update(OMNIPOST_DATA_DIR=str(data_dir), OMNIPOST_API_KEY=KEY, OMNIPOST_CONFIRM="never", OMNIPOST_UPSTREAM_TIMEOUT="5",
               OMNIPOST_LOG_LEVEL="INFO", OMNIPOST_RATE_LIMIT_PER_MINUTE="100000", OMNIPOST_UPSTREAM_ALLOW_LOOPBACK="true",
               **run.env(fake_url))
    p = Proc([sys.executable, "-m", "omnipost", "serve", "--transport", "streamable-http", "--port", str(port)], env, "Uvicorn running")
    p.wait_ready()
    return p


@pytest.mark.anyio
@requires_reference_data  # the served fake checks every call against the platform's published spec
@pytest.mark.parametrize("platform", list(RUNS))
async def test_killing_the_server_mid_batch_never_publishes_to_the_platform_twice(tmp_path: Path, platform: str) -> None:
    run = RUNS[platform]
    started = time.monotonic()
    rng = random.Random(20261205)
    data_dir = tmp_path / "data"
    may_hold: set[str] = set()  # targets in flight at some kill: the only ones that may end `unknown`
    with served_fake(platform) as fake_url:
        port = _free_port()
        server = start_server(data_dir, run, fake_url, port)
        accounts: list[str] = []
        with anyio.fail_after(120):
            for i in range(ACCOUNTS):
                r = await call(port, "connect_account", await run.connect(fake_url, i))
                assert not r.is_error, r.content[0].text
                accounts.append(r.structured_content["id"])
        kills = 0
        for batch in range(KILLS):
            request = {"text": f"Crash batch {batch}", "firstComment": f"Comment {batch}", "idempotencyKey": f"crash-{batch}",
                       "skipDuplicateCheck": True, "targets": [{"accountId": a} for a in accounts]}
            kill_after = rng.randint(0, ACCOUNTS)  # finished targets before the kill (0: as soon as the call is sent)
            await publish_and_kill(server, port, request, kill_after)
            kills += 1
            may_hold |= in_flight(data_dir)
            server = start_server(data_dir, run, fake_url, port)
            with anyio.fail_after(120):  # any tool call waits until start-up recovery has finished
                assert not (await call(port, "list_profiles", {})).is_error
        state = await run.posts(fake_url)
        server.kill()
    assert kills == KILLS

    posts = db_rows(data_dir, "SELECT p.id, p.text, p.status, p.error, p.upstream_id, p.first_comment_ids, p.lease_owner "
                              "FROM posts p")
    upstream = [p for p in state["posts"] if not p["deleted"]]
    by_id = {p["id"]: p for p in upstream}
    copies = Counter((p["user"], p["text"], p["parent"]) for p in upstream)
    duplicates = [k for k, v in copies.items() if v > 1]
    stuck = [p["id"] for p in posts if p["status"] in ("publishing", "validated") or p["lease_owner"] is not None]
    lost, cut_off, known = [], [], set()
    for p in posts:
        comment_ids = json.loads(p["first_comment_ids"] or "[]")
        if p["status"] == "published":
            main, comment = by_id.get(p["upstream_id"]), by_id.get((comment_ids or [None])[0])
            known |= {p["upstream_id"], *comment_ids}
            if main is None or main["text"] != p["text"] or main["parent"] is not None:
                lost.append(dict(p))
            elif comment is None or comment["parent"] != main["id"]:
                cut_off.append(dict(p))
        elif p["status"] not in ("failed", "unknown", "rejected") or not p["error"] or (p["status"] == "unknown" and p["id"] not in may_hold):
            lost.append(dict(p))
    unclaimed = [p for p in upstream if p["id"] not in known]
    statuses = Counter(p["status"] for p in posts)
    print(f"crash test [{platform}]: {KILLS} kills, {len(posts)} targets, {statuses['published']} published, {statuses['failed']} failed, "
          f"{statuses['unknown']} unknown, {statuses['rejected']} rejected, {len(duplicates)} duplicates, "
          f"{len(lost) + len(cut_off)} lost ({len(cut_off)} first comments), {len(stuck)} stuck, {len(unclaimed)} upstream posts "
          f"unclaimed, {len(state['violations'])} spec violations, {len(may_hold)} in flight at a kill"
          + (f", {state['idempotentReplays']} resends answered by their Idempotency-Key" if run.keyed else "")
          + f", {time.monotonic() - started:.0f} s")
    assert not state["violations"], state["violations"][:3]
    assert not run.keyed or state["unkeyed"] == 0, f"{state['unkeyed']} statuses made without an Idempotency-Key"
    assert not duplicates, duplicates
    assert not stuck, stuck
    assert not lost, [(p["status"], p["upstream_id"], p["first_comment_ids"], p["error"]) for p in lost[:5]]
    assert not unclaimed, unclaimed[:5]
    assert not cut_off, f"{len(cut_off)} targets published without their first comment: {[p['id'] for p in cut_off[:5]]}"
