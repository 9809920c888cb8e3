"""The sandbox platform: the simulated upstream (its own SQLite store, faults) and SandboxAdapter."""

import hashlib
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest

from omnipost.clock import FixedClock
from omnipost.domain import Platform
from omnipost.errors import (
    PlatformAuthError,
    PlatformRateLimitError,
    PlatformRejectedError,
    UnknownOutcomeError,
)
from omnipost.platforms.base import AccountContext, MediaFile, PublishJob, find
from omnipost.platforms.pieces import Ledger
from omnipost.platforms.sandbox import SandboxAdapter, register_account
from omnipost.preflight.model import AccountInfo, ResolvedTarget
from omnipost.sandbox.upstream import SimulatedConnectionReset, create_sandbox_app, list_posts

pytestmark = pytest.mark.anyio

BASE = "https://sandbox.omnipost.local"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
SHORT_TIMEOUT = 0.2  # the adapter's bounded wait for the timeout_after_accept fault


@dataclass
class Sandbox:
    """An in-process sandbox: its store file, a client mounted on it, and one registered account."""

    store: Path
    http: httpx2.AsyncClient
    account: AccountContext

    def adapter(self, timeout: float = 30.0) -> SandboxAdapter:
        return SandboxAdapter(self.http, BASE, timeout=timeout)

    async def faults(self, **plan: Any) -> None:
        response = await self.http.post("/v1/_control/faults", json=plan)
        assert response.status_code == 200, response.text


def _context(registered: dict[str, Any]) -> AccountContext:
    return AccountContext(id="acc_test", platform="sandbox", handle=registered["handle"],
                          credentials={"token": registered["token"]}, emulates=registered["emulates"])


def _job(account: AccountContext, key: str = "post_01", text: str = "hello sandbox", *, thread: tuple[str, ...] = (),
         first_comment: str | None = None, media: tuple[MediaFile, ...] = ()) -> PublishJob:
    target = ResolvedTarget(index=0, platform=Platform.X,
                            account=AccountInfo(id=account.id, platform=Platform.X, handle=account.handle),
                            text=text, media=(), first_comment=first_comment, thread=thread, title=None,
                            visibility=None, options={})
    return PublishJob(post_id=f"pst_{key}", upstream_key=key, account=account, target=target, media=media)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    store = tmp_path / "sandbox" / "sandbox.sqlite3"
    app = create_sandbox_app(store, clock=FixedClock(NOW))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=BASE) as http:
        registered = await register_account(http, BASE, "alice", "x")
        yield Sandbox(store, http, _context(registered))


# --- publishing -----------------------------------------------------------------------------------

async def test_publish_text(sandbox: Sandbox) -> None:
    published = await sandbox.adapter().publish(_job(sandbox.account))
    assert published.upstream_id == "post_01"
    assert published.url == f"{BASE}/alice/post_01"
    assert published.http_status == 201 and not published.already_existed
    assert published.thread_ids == () and published.first_comment_ids == ()
    assert published.response is not None and published.response["createdAt"] == "2026-11-24T12:00:00.000Z"
    [post] = list_posts(sandbox.store)
    assert (post["id"], post["text"], post["kind"], post["replyTo"], post["handle"]) == (
        "post_01", "hello sandbox", "post", None, "alice")


async def test_publish_media_descriptors(sandbox: Sandbox, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG not really a png" * 100)
    media = (MediaFile(index=0, mime="image/png", kind="image", size=None, path=image, alt_text="a cat"),
             MediaFile(index=1, mime="video/mp4", kind="video", size=1234, url="https://example.com/v.mp4"))
    await sandbox.adapter().publish(_job(sandbox.account, media=media))
    [post] = list_posts(sandbox.store)
    assert post["media"] == [
        {"mime": "image/png", "size": image.stat().st_size, "sha256": hashlib.sha256(image.read_bytes()).hexdigest(),
         "altText": "a cat"},
        {"mime": "video/mp4", "size": 1234, "sha256": None, "url": "https://example.com/v.mp4"},
    ]


async def test_thread_and_first_comment_chain(sandbox: Sandbox) -> None:
    job = _job(sandbox.account, "k1", "one", thread=("two", "three"), first_comment="a comment")
    published = await sandbox.adapter().publish(job)
    assert published.upstream_id == "k1"
    assert published.thread_ids == ("k1-t1", "k1-t2")
    assert published.first_comment_ids == ("k1-c",)
    stored = {p["id"]: p for p in list_posts(sandbox.store)}
    assert [(i, stored[i]["text"], stored[i]["kind"], stored[i]["replyTo"]) for i in ("k1", "k1-t1", "k1-t2", "k1-c")] == [
        ("k1", "one", "post", None),
        ("k1-t1", "two", "reply", "k1"),
        ("k1-t2", "three", "reply", "k1-t1"),  # each segment replies to the previous one
        ("k1-c", "a comment", "comment", "k1"),  # the first comment goes on the post itself
    ]


async def test_same_job_twice_is_stored_once(sandbox: Sandbox) -> None:
    job = _job(sandbox.account, "twice", thread=("more",), first_comment="first!")
    first = await sandbox.adapter().publish(job)
    second = await sandbox.adapter().publish(replace(job, ledger=Ledger()))  # no record of the first: the 409s tell
    assert not first.already_existed and second.already_existed
    assert second.http_status == 409
    assert (second.upstream_id, second.url, second.thread_ids, second.first_comment_ids) == (
        first.upstream_id, first.url, first.thread_ids, first.first_comment_ids)
    assert sorted(p["id"] for p in list_posts(sandbox.store)) == ["twice", "twice-c", "twice-t1"]


async def test_retry_completes_a_partial_chain(sandbox: Sandbox) -> None:
    # An earlier attempt stored the post and died before the thread: a retry adds only what is missing.
    job = _job(sandbox.account, "part", "one", thread=("two",), first_comment="c")
    early = await sandbox.http.put("/v1/posts/part", json={"text": "one", "media": [], "replyTo": None, "kind": "post"},
                                   headers={"Authorization": f"Bearer {sandbox.account.credentials['token']}"})
    assert early.status_code == 201
    found = await find(sandbox.adapter(), job)
    assert found is not None and found.thread_ids == () and found.first_comment_ids == ()
    published = await sandbox.adapter().publish(job)
    assert published.already_existed and published.thread_ids == ("part-t1",) and published.first_comment_ids == ("part-c",)
    assert len(list_posts(sandbox.store)) == 3


async def test_find_and_delete(sandbox: Sandbox) -> None:
    adapter = sandbox.adapter()
    job = _job(sandbox.account, "f1", thread=("t",), first_comment="c")
    assert await find(adapter, job) is None
    published = await adapter.publish(job)
    found = await find(adapter, replace(job, ledger=Ledger()))  # read upstream, not from the ledger
    assert found is not None and found.already_existed
    assert (found.upstream_id, found.url, found.thread_ids, found.first_comment_ids) == (
        published.upstream_id, published.url, published.thread_ids, published.first_comment_ids)
    await adapter.delete(sandbox.account, published.upstream_id)
    assert await find(adapter, replace(job, ledger=Ledger())) is None
    assert sorted(p["id"] for p in list_posts(sandbox.store)) == ["f1-c", "f1-t1"]  # replies stay
    with pytest.raises(PlatformRejectedError) as err:  # 404 through raise_for_status
        await adapter.delete(sandbox.account, published.upstream_id)
    assert err.value.status == 404


# --- the wire format --------------------------------------------------------------------------------

async def test_wire_format_conflict_reply_and_search(sandbox: Sandbox) -> None:
    auth = {"Authorization": f"Bearer {sandbox.account.credentials['token']}"}
    body = {"text": "hi", "media": [], "replyTo": None, "kind": "post"}
    created = await sandbox.http.put("/v1/posts/w1", json=body, headers=auth)
    assert created.status_code == 201
    assert {"id", "url", "createdAt"} <= created.json().keys()
    again = await sandbox.http.put("/v1/posts/w1", json={**body, "text": "changed"}, headers=auth)
    assert again.status_code == 409
    assert again.json()["error"] == "already_exists" and again.json()["post"]["text"] == "hi"
    orphan = await sandbox.http.put("/v1/posts/w2", json={"text": "r", "replyTo": "nope", "kind": "reply"}, headers=auth)
    assert orphan.status_code == 400 and orphan.json()["error"] == "invalid_request"
    bad_id = await sandbox.http.put("/v1/posts/has.dot", json=body, headers=auth)
    assert bad_id.status_code == 400
    missing = await sandbox.http.get("/v1/posts/w9", headers=auth)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    await sandbox.http.put("/v1/posts/w3", json={**body, "text": "other"}, headers=auth)
    search = (await sandbox.http.get("/v1/posts", params={"text": "hi", "limit": 5}, headers=auth)).json()
    assert search["count"] == 1 and search["posts"][0]["id"] == "w1"
    recent = (await sandbox.http.get("/v1/posts", headers=auth)).json()
    assert [p["id"] for p in recent["posts"]] == ["w3", "w1"]  # newest first
    everything = (await sandbox.http.get("/v1/_control/posts")).json()
    assert everything["count"] == 2 and len(list_posts(sandbox.store)) == 2


async def test_accounts_are_separate_and_relogin_keeps_the_account(sandbox: Sandbox) -> None:
    again = await register_account(sandbox.http, BASE, "alice", "twitter")
    assert again["account"] != "" and again["emulates"] == "x" and again["token"] != sandbox.account.credentials["token"]
    bob = _context(await register_account(sandbox.http, BASE, "bob", "bluesky"))
    await sandbox.adapter().publish(_job(sandbox.account, "same"))
    bob_post = await sandbox.adapter().publish(_job(bob, "same"))  # ids are per account
    assert not bob_post.already_existed and bob_post.url == f"{BASE}/bob/same"
    relogged = await sandbox.adapter().publish(_job(_context(again), "same"))  # old and new token: one account
    assert relogged.already_existed
    assert len(list_posts(sandbox.store)) == 2


# --- errors and faults --------------------------------------------------------------------------------

async def test_bad_or_missing_token_is_auth_error(sandbox: Sandbox) -> None:
    wrong = AccountContext(id="acc_x", platform="sandbox", handle="alice", credentials={"token": "sbx_wrong"})
    with pytest.raises(PlatformAuthError) as err:
        await sandbox.adapter().publish(_job(wrong))
    assert err.value.status == 401
    none = AccountContext(id="acc_x", platform="sandbox", handle="alice", credentials={})
    with pytest.raises(PlatformAuthError):
        await find(sandbox.adapter(), _job(none))
    assert list_posts(sandbox.store) == []


async def test_fault_5xx_after_a_write_is_an_unknown_outcome_that_find_settles(sandbox: Sandbox) -> None:
    await sandbox.faults(kinds=["5xx"], failRate=1.0)
    with pytest.raises(UnknownOutcomeError) as err:
        await sandbox.adapter().publish(_job(sandbox.account))
    assert err.value.code == "platform_outcome_unknown" and err.value.status == 503 and not err.value.retryable
    assert list_posts(sandbox.store) == []
    assert await find(sandbox.adapter(), _job(sandbox.account)) is None  # reads are not faulted: certainly absent


async def test_fault_429_is_rate_limit_with_retry_after(sandbox: Sandbox) -> None:
    await sandbox.faults(kinds=["429"])
    with pytest.raises(PlatformRateLimitError) as err:
        await sandbox.adapter().publish(_job(sandbox.account))
    assert err.value.retry_after == 2.0 and err.value.status == 429
    assert list_posts(sandbox.store) == []


async def test_fault_timeout_after_accept_is_unknown_but_stored(sandbox: Sandbox) -> None:
    await sandbox.faults(kinds=["timeout_after_accept"], maxFaults=1)
    job = _job(sandbox.account, "slow")
    with pytest.raises(UnknownOutcomeError):
        await sandbox.adapter(timeout=SHORT_TIMEOUT).publish(job)
    assert [p["id"] for p in list_posts(sandbox.store)] == ["slow"]  # it went through upstream
    found = await find(sandbox.adapter(), job)  # reconciliation sees it
    assert found is not None and found.upstream_id == "slow"
    retried = await sandbox.adapter().publish(job)  # and a retry does not duplicate it
    assert retried.already_existed and len(list_posts(sandbox.store)) == 1


async def test_fault_reset_in_process_is_unknown_and_stores_nothing(sandbox: Sandbox) -> None:
    # In process there is no socket to drop: the app's SimulatedConnectionReset (an
    # httpx2.RemoteProtocolError) comes out of client.request and http.send() makes a write
    # that ends this way UnknownOutcomeError, exactly as a dropped TCP connection would.
    await sandbox.faults(kinds=["reset"])
    job = _job(sandbox.account, "gone")
    with pytest.raises(UnknownOutcomeError) as err:
        await sandbox.adapter().publish(job)
    assert isinstance(err.value.__cause__, SimulatedConnectionReset)
    await sandbox.http.delete("/v1/_control/faults")
    assert list_posts(sandbox.store) == []
    assert await find(sandbox.adapter(), job) is None  # reads are never faulted: reconciliation can tell


async def test_faults_apply_to_writes_only(sandbox: Sandbox) -> None:
    await sandbox.adapter().publish(_job(sandbox.account, "r1"))
    await sandbox.faults(kinds=["5xx"], failRate=1.0)
    assert await find(sandbox.adapter(), _job(sandbox.account, "r1")) is not None
    with pytest.raises(UnknownOutcomeError):  # a 5xx to a write: the platform may have acted
        await sandbox.adapter().delete(sandbox.account, "r1")
    plan = (await sandbox.http.get("/v1/_control/faults")).json()
    assert plan["injected"] == 1 and plan["kinds"] == ["5xx"]
    assert (await sandbox.http.delete("/v1/_control/faults")).status_code == 204
    await sandbox.adapter().delete(sandbox.account, "r1")


async def _outcomes(sandbox: Sandbox, prefix: str) -> list[str]:
    """Publish ten posts and name what happened to each."""
    out: list[str] = []
    for i in range(10):
        try:
            await sandbox.adapter().publish(_job(sandbox.account, f"{prefix}{i}"))
            out.append("ok")
        except PlatformRateLimitError:
            out.append("429")
        except UnknownOutcomeError:
            out.append("5xx")
    return out


async def test_faults_are_deterministic_with_a_seed(sandbox: Sandbox) -> None:
    plan = {"kinds": ["5xx", "429"], "failRate": 0.5, "seed": 1234}
    await sandbox.faults(**plan)
    first = await _outcomes(sandbox, "a")
    await sandbox.faults(**plan)  # the same plan again restarts the same sequence
    second = await _outcomes(sandbox, "b")
    assert first == second
    assert {"ok", "5xx", "429"} <= set(first)  # the seed chosen to exercise every branch
    assert len(list_posts(sandbox.store)) == 2 * first.count("ok")


async def test_store_is_its_own_file_readable_without_a_server(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere" / "upstream.sqlite3"
    assert list_posts(store) == [] and not store.exists()  # looking does not create it
    app = create_sandbox_app(store, clock=FixedClock(NOW))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=BASE) as http:
        account = _context(await register_account(http, BASE, "carol", "bluesky"))
        await SandboxAdapter(http, BASE).publish(_job(account, "kept"))
    del app
    assert store.is_file() and [p["id"] for p in list_posts(store)] == ["kept"]
    assert sorted(p.name for p in store.parent.iterdir() if p.suffix == ".sqlite3") == ["upstream.sqlite3"]


# --- a real server over loopback ------------------------------------------------------------------------

READY = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
STARTUP_LIMIT = 30.0  # watchdog on the subprocess's readiness, not a sleep
SHUTDOWN_LIMIT = 15.0


async def _wait_ready(stderr: anyio.abc.ByteReceiveStream, log: list[str]) -> int:
    """Read the server's stderr until uvicorn names its port (bounded by a watchdog)."""
    with anyio.fail_after(STARTUP_LIMIT):
        while (match := READY.search("".join(log))) is None:
            try:
                log.append((await stderr.receive()).decode(errors="replace"))
            except anyio.EndOfStream:
                pytest.fail("the sandbox server exited before it was ready:\n" + "".join(log))
    return int(match.group(1))


async def _drain(stderr: anyio.abc.ByteReceiveStream, log: list[str]) -> None:
    """Keep reading stderr so the server never blocks on a full pipe."""
    async for chunk in stderr:
        log.append(chunk.decode(errors="replace"))


async def _stop(process: anyio.abc.Process) -> None:
    """SIGTERM, a bounded wait for the graceful shutdown, then SIGKILL."""
    process.terminate()
    with anyio.move_on_after(SHUTDOWN_LIMIT):
        await process.wait()
        return
    process.kill()
    await process.wait()


async def test_real_server_over_loopback(tmp_path: Path) -> None:
    store = tmp_path / "served.sqlite3"
    command = [sys.executable, "-m", "omnipost.sandbox.cli", "serve", "--store", str(store), "--port", "0"]
    process = await anyio.open_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert process.stderr is not None
    log: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            port = await _wait_ready(process.stderr, log)
            tg.start_soon(_drain, process.stderr, log)
            base = f"http://127.0.0.1:{port}"
            try:
                async with httpx2.AsyncClient() as http:
                    account = _context(await register_account(http, base, "dave", "threads"))
                    adapter = SandboxAdapter(http, base, timeout=10.0)
                    job = _job(account, "tcp1", thread=("more",))
                    assert not (await adapter.publish(job)).already_existed
                    assert (await adapter.publish(job)).already_existed
                    assert len(list_posts(store)) == 2  # read from this process while the server runs

                    assert (await http.post(f"{base}/v1/_control/faults", json={"kinds": ["reset"]})).status_code == 200
                    lost = _job(account, "tcp2")
                    with pytest.raises(UnknownOutcomeError) as err:
                        await adapter.publish(lost)
                    # over TCP the client sees the connection end mid-answer, not the server's exception;
                    # which transport error it is depends on when the client was reading
                    assert isinstance(err.value.__cause__, (httpx2.RemoteProtocolError, httpx2.ReadError))
                    assert await find(adapter, lost) is None
                    assert [p["id"] for p in list_posts(store)] == ["tcp1", "tcp1-t1"]

                    plan = {"kinds": ["timeout_after_accept"], "maxFaults": 1}
                    assert (await http.post(f"{base}/v1/_control/faults", json=plan)).status_code == 200
                    with pytest.raises(UnknownOutcomeError):
                        await SandboxAdapter(http, base, timeout=1.0).publish(_job(account, "tcp3"))
                    assert [p["id"] for p in list_posts(store)][-1] == "tcp3"  # accepted, answer withheld
            finally:
                await _stop(process)  # inside the task group: the drain ends when the process does
    finally:
        if process.returncode is None:  # it never got ready
            process.kill()
            await process.wait()
        await process.aclose()
    # A graceful exit on SIGTERM (uvicorn re-raises the signal once it has finished) also shows the
    # withheld answer ended when the client gave up: a hung request would have needed the kill above.
    assert process.returncode in (0, -signal.SIGTERM) and "Finished server process" in "".join(log), "".join(log)
    assert "SimulatedConnectionReset" in "".join(log)  # uvicorn logged the dropped answer


async def test_concurrent_writes_of_one_id_store_it_once_and_of_many_ids_store_each(sandbox: Sandbox) -> None:
    # Writers run on worker threads, each with its own connection; check-then-insert must still not race.
    token = {"authorization": f"Bearer {sandbox.account.credentials['token']}"}
    answers: list[int] = []

    async def put(post_id: str) -> None:
        answers.append((await sandbox.http.put(f"{BASE}/v1/posts/{post_id}", json={"kind": "post", "text": "same"},
                                               headers=token)).status_code)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(put, "post_contended")
            for i in range(30):
                tg.start_soon(put, f"post_many_{i}")
    assert sorted(answers) == [201] * 31 + [409] * 29
    stored = [p["id"] for p in list_posts(sandbox.store)]
    assert stored.count("post_contended") == 1 and len(stored) == 31


async def test_a_known_token_is_accepted_only_as_a_bearer_token(sandbox: Sandbox) -> None:
    token = sandbox.account.credentials["token"]
    body = {"kind": "post", "text": "auth"}
    assert (await sandbox.http.put(f"{BASE}/v1/posts/post_auth_1", json=body, headers={"authorization": f"Bearer {token}"})).status_code == 201
    for header in (f"Basic {token}", token, "Bearer ", f"Bearer {token}x"):
        answer = await sandbox.http.put(f"{BASE}/v1/posts/post_auth_2", json=body, headers={"authorization": header})
        assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized"), header
