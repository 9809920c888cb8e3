"""The sandbox's other half: own-id mode (the platform assigns ids and refuses duplicate text, as X or LinkedIn)
and container mode (create, process, publish, as Instagram or Threads), end to end and under faults."""

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from omnipost.app import OmnipostServer
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.errors import PlatformUnavailableError
from omnipost.platforms.base import AccountContext, chooses_ids, find
from omnipost.platforms.sandbox import SandboxAdapter, register_account
from omnipost.sandbox.upstream import create_sandbox_app, list_posts
from test_publishing import connect, faults, received
from test_sandbox import BASE, NOW, _job
from toolresult import ok

pytestmark = pytest.mark.anyio


async def processing(server: OmnipostServer, **plan: Any) -> None:
    response = await server.runtime.http.post(f"{BASE}/v1/_control/processing", json=plan)
    assert response.status_code == 200, response.text


async def publish(client: Client, account: str, text: str, **extra: Any) -> dict[str, Any]:
    with anyio.fail_after(30):
        batch = ok(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": account}], **extra}))
    return batch["results"][0]


# --- the wire format ------------------------------------------------------------------------------

@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[tuple[httpx2.AsyncClient, FixedClock]]:
    clock = FixedClock(NOW)
    app = create_sandbox_app(tmp_path / "sandbox.db", clock=clock)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=BASE) as http:
        yield http, clock


async def _login(http: httpx2.AsyncClient, handle: str, mode: str | None) -> dict[str, str]:
    body = {"handle": handle, "emulates": "x"} | ({"mode": mode} if mode else {})
    registered = (await http.post("/v1/accounts", json=body)).json()
    return {"Authorization": f"Bearer {registered['token']}"}


async def test_own_id_assigns_ids_refuses_duplicate_text_in_its_window_and_searches_since(wire: Any) -> None:
    http, clock = wire
    auth = await _login(http, "ann", "own_id")
    first = await http.post("/v1/posts", json={"text": "hello"}, headers=auth)
    assert first.status_code == 201 and first.json()["id"].startswith("sbp") and first.json()["kind"] == "post"
    again = await http.post("/v1/posts", json={"text": "hello", "media": [{"url": "https://x.test/a.png"}]}, headers=auth)
    assert again.status_code == 403
    assert {k: again.json()[k] for k in ("error", "title", "status", "type")} == {
        "error": "duplicate_content", "title": "Forbidden", "status": 403, "type": "about:blank"}
    assert "duplicate content" in again.json()["detail"]
    # caller-chosen ids belong to the caller_id mode only, and the other way round
    assert (await http.put("/v1/posts/mine", json={"text": "x"}, headers=auth)).json()["error"] == "wrong_mode"
    other = await _login(http, "bob", None)
    assert (await http.post("/v1/posts", json={"text": "x"}, headers=other)).json()["error"] == "wrong_mode"
    clock.at = NOW + timedelta(hours=24)  # the window has passed: the same text is a new post
    later = await http.post("/v1/posts", json={"text": "hello"}, headers=auth)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    since = (await http.get("/v1/posts", params={"text": "hello", "since": "2026-11-25T00:00:00Z"}, headers=auth)).json()
    assert [p["id"] for p in since["posts"]] == [later.json()["id"]]
    assert (await http.get("/v1/posts", params={"since": "yesterday"}, headers=auth)).status_code == 400


async def test_container_processes_publishes_once_and_refuses_not_ready_and_expired(wire: Any) -> None:
    http, clock = wire
    auth = await _login(http, "cat", "container")
    created = (await http.post("/v1/containers", json={"text": "pic", "media": [{"url": "https://x.test/a.jpg"}]}, headers=auth)).json()
    assert created["status"] == "IN_PROGRESS"
    container = f"/v1/containers/{created['id']}"
    early = await http.post(f"{container}/publish", headers=auth)
    assert early.status_code == 400
    assert (early.json()["error"]["code"], early.json()["error"]["error_subcode"]) == (9007, 2207027)
    assert (await http.get(container, headers=auth)).json()["status"] == "IN_PROGRESS"  # readyAfterPolls 1 by default
    assert (await http.get(container, headers=auth)).json()["status"] == "FINISHED"
    published = await http.post(f"{container}/publish", headers=auth)
    assert published.status_code == 201
    twice = await http.post(f"{container}/publish", headers=auth)
    assert twice.status_code == 200 and twice.json() == published.json()
    assert (await http.get(container, headers=auth)).json() == {"id": created["id"], "status": "PUBLISHED", "postId": published.json()["id"]}
    # by time instead of polls; and 24 h later an unpublished container has expired
    assert (await http.post("/v1/_control/processing", json={"readyAfterPolls": None, "readyAfterSeconds": 30})).status_code == 200
    slow = (await http.post("/v1/containers", json={"text": "slow"}, headers=auth)).json()["id"]
    assert (await http.get(f"/v1/containers/{slow}", headers=auth)).json()["status"] == "IN_PROGRESS"
    clock.at = NOW + timedelta(seconds=30)
    assert (await http.get(f"/v1/containers/{slow}", headers=auth)).json()["status"] == "FINISHED"
    clock.at = NOW + timedelta(hours=24)
    assert (await http.get(f"/v1/containers/{slow}", headers=auth)).json()["status"] == "EXPIRED"
    expired = await http.post(f"/v1/containers/{slow}/publish", headers=auth)
    assert expired.status_code == 400 and expired.json()["error"]["error_subcode"] == 2207008
    assert (await http.get(container, headers=auth)).json()["status"] == "PUBLISHED"  # a published one stays so
    assert [p["text"] for p in list_posts(Path(str(http._transport.app.state.sandbox.store.path)))] == ["pic"]  # type: ignore[attr-defined]


async def test_faults_apply_to_the_new_writes(wire: Any) -> None:
    http, _ = wire
    own, ctr = await _login(http, "own", "own_id"), await _login(http, "ctr", "container")
    await http.post("/v1/_control/faults", json={"kinds": ["5xx"], "maxFaults": 2})
    assert (await http.post("/v1/posts", json={"text": "a"}, headers=own)).status_code == 503
    assert (await http.post("/v1/containers", json={"text": "b"}, headers=ctr)).status_code == 503
    await http.post("/v1/_control/faults", json={"kinds": ["5xx_after_accept"], "maxFaults": 1})
    assert (await http.post("/v1/posts", json={"text": "a"}, headers=own)).status_code == 503  # stored all the same
    assert [p["text"] for p in (await http.get("/v1/_control/posts")).json()["posts"]] == ["a"]
    await http.post("/v1/_control/faults", json={"kinds": ["429"], "maxFaults": 1})
    refused = await http.post("/v1/containers", json={"text": "b"}, headers=ctr)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"


# --- the adapter in each mode ---------------------------------------------------------------------

async def _account(http: httpx2.AsyncClient, handle: str, mode: str) -> AccountContext:
    registered = await register_account(http, BASE, handle, "x", mode=mode)
    return AccountContext(id=f"acc_{handle}", platform="sandbox", handle=handle, credentials={"token": registered["token"]},
                          defaults={"sandboxMode": mode}, emulates="x")


async def test_only_caller_id_accounts_take_our_ids(wire: Any) -> None:
    http, _ = wire
    adapter = SandboxAdapter(http, BASE)
    assert [chooses_ids(adapter, await _account(http, m, m)) for m in ("caller_id", "own_id", "container")] == [True, False, False]
    legacy = AccountContext(id="acc_old", platform="sandbox", handle="old", credentials={}, emulates="x")
    assert chooses_ids(adapter, legacy)  # connected before the modes: caller-chosen ids, as before


async def test_own_id_find_searches_since_the_send_by_text_and_media_count(wire: Any) -> None:
    http, clock = wire
    account = await _account(http, "finder", "own_id")
    adapter = SandboxAdapter(http, BASE, clock=clock)
    job = _job(account, "post_a", "once", thread=("two",), first_comment="note")
    published = await adapter.publish(job)
    found = await find(adapter, job)
    assert found is not None and (found.upstream_id, found.thread_ids, found.first_comment_ids) == (
        published.upstream_id, published.thread_ids, published.first_comment_ids)
    assert await find(adapter, _job(account, "post_b", "never sent")) is None
    # a post of the same text from before the send is not this one
    clock.at = NOW + timedelta(days=2)
    assert await find(SandboxAdapter(http, BASE, clock=clock), _job(account, "post_c", "once")) is None


async def test_a_duplicate_refusal_is_not_an_auth_failure(wire: Any) -> None:
    http, _ = wire
    account = await _account(http, "dup", "own_id")
    adapter = SandboxAdapter(http, BASE)
    await adapter.publish(_job(account, "post_1", "same words"))
    with pytest.raises(Exception) as refused:
        await adapter.publish(_job(account, "post_2", "same words"))
    assert refused.value.code == "platform_duplicate" and refused.value.status == 403  # type: ignore[attr-defined]


async def test_a_container_still_processing_is_not_published(wire: Any) -> None:
    http, _ = wire
    account = await _account(http, "busy", "container")
    await http.post("/v1/_control/processing", json={"readyAfterPolls": 50})
    with pytest.raises(PlatformUnavailableError):
        await SandboxAdapter(http, BASE).publish(_job(account, "post_busy", "later"))
    assert (await http.get("/v1/_control/posts")).json()["count"] == 0


# --- end to end through the tools -----------------------------------------------------------------

async def test_connect_takes_the_mode_and_the_account_remembers_it(client: Client) -> None:
    modes = {}
    for mode in ("own_id", "container", "caller_id", None):
        account = ok(await client.call_tool("get_account", {"accountId": await connect(client, "x", f"m-{mode}", sandboxMode=mode)}))
        modes[mode] = account["defaults"]["sandboxMode"]
    assert modes == {"own_id": "own_id", "container": "container", "caller_id": "caller_id", None: "caller_id"}


async def test_own_id_end_to_end_text_thread_comment_and_delete(client: Client, settings: Settings) -> None:
    account = await connect(client, "x", "owner", sandboxMode="own_id")
    result = await publish(client, account, "Own ids", thread=["part two", "part three"], firstComment="a note")
    assert result["status"] == "published" and result["upstreamId"] != result["postId"]
    got = {p["id"]: p for p in received(settings)}
    assert got[result["upstreamId"]]["text"] == "Own ids" and len(result["thread"]) == 2 and len(result["firstComment"]) == 1
    assert got[result["firstComment"][0]]["replyTo"] == result["upstreamId"]
    assert ok(await client.call_tool("delete_post", {"postId": result["postId"]}))["status"] == "deleted"
    assert result["upstreamId"] not in {p["id"] for p in received(settings)}


async def test_container_end_to_end_text_thread_comment_and_image(client: Client, settings: Settings) -> None:
    from mediagen import b64, make_image

    threads = await connect(client, "threads", "spool", sandboxMode="container")
    insta = await connect(client, "x", "gram", sandboxMode="container")  # Instagram takes media by URL only: no fetch here
    result = await publish(client, threads, "Containers", thread=["and more"], firstComment="first!")
    assert result["status"] == "published" and len(result["thread"]) == 1 and len(result["firstComment"]) == 1
    assert result["upstreamId"] != result["postId"]  # the platform assigned it on publishing the container
    picture = await publish(client, insta, "A picture", media=[{"bytesBase64": b64(make_image("JPEG", 1080, 1080))}])
    assert picture["status"] == "published", picture
    got = {p["id"]: p for p in received(settings)}
    assert len(got[picture["upstreamId"]]["media"]) == 1 and got[result["thread"][0]]["replyTo"] == result["upstreamId"]
    assert ok(await client.call_tool("delete_post", {"postId": picture["postId"]}))["status"] == "deleted"


async def test_own_id_5xx_after_the_create_is_reconciled_by_search_never_sent_twice(
        client: Client, server: OmnipostServer, settings: Settings) -> None:
    account = await connect(client, "x", "flaky", sandboxMode="own_id")
    await faults(server, {"kinds": ["5xx_after_accept"], "maxFaults": 1})
    result = await publish(client, account, "Sent once")
    assert result["status"] == "published"
    assert [p["id"] for p in received(settings)] == [result["upstreamId"]]


async def test_own_id_5xx_with_nothing_stored_is_searched_for_and_found_absent(
        client: Client, server: OmnipostServer, settings: Settings) -> None:
    """A 5xx after the write: never re-sent blind. The search of the account's posts since the send (the ledger's marker)
    finds nothing, so the post certainly did not arrive: failed, retryable, and nothing was sent twice."""
    account = await connect(client, "x", "dark", sandboxMode="own_id")
    await faults(server, {"kinds": ["5xx"], "maxFaults": 1})
    result = await publish(client, account, "Maybe sent")
    assert (result["status"], result["error"]["code"], result["error"]["retryable"]) == ("failed", "platform_unavailable", True)
    assert received(settings) == []


async def test_container_publish_answered_5xx_is_reconciled_from_the_container(
        client: Client, server: OmnipostServer, settings: Settings) -> None:
    account = await connect(client, "threads", "boxes", sandboxMode="container")
    # the container is created, then its publish takes effect and answers 503
    await faults(server, {"kinds": ["5xx_after_accept"], "failRate": 0.5, "seed": 10, "maxFaults": 1})  # the 2nd write
    result = await publish(client, account, "Boxed once")
    assert result["status"] == "published", result
    assert [p["id"] for p in received(settings)] == [result["upstreamId"]]


async def test_a_container_still_processing_is_stored_processing_and_publishes_nothing(
        client: Client, server: OmnipostServer, settings: Settings) -> None:
    account = await connect(client, "threads", "slow", sandboxMode="container")
    await processing(server, readyAfterPolls=None, readyAfterSeconds=3600)
    result = await publish(client, account, "Not yet")
    assert (result["status"], result["error"]) == ("processing", None), result
    detail = ok(await client.call_tool("get_post", {"postId": result["postId"]}))
    assert detail["status"] == "processing" and detail["attempts"][-1]["outcome"] == "processing"
    assert received(settings) == []
