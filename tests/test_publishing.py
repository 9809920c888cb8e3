"""publish_post and the post history, end to end through the in-memory Client and the embedded sandbox."""

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from fakes import mounted_client
from mediagen import b64, make_image
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from test_store import Backend, backend  # noqa: F401 - the sqlite/postgresql fixture
from test_webhooks import MapResolver
from toolresult import err, ok
from mcp import Client
from mcp.types import ElicitResult

from omnipost.app import OmnipostServer, build_server
from omnipost.config import Settings
from omnipost.runtime import SANDBOX_HOST
from omnipost.sandbox.upstream import list_posts

pytestmark = pytest.mark.anyio




async def connect(client: Client, emulates: str, handle: str, **extra: Any) -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": emulates, "handle": handle, **extra}))["id"]


async def faults(server: OmnipostServer, plan: dict[str, Any] | None) -> None:
    http = server.runtime.http
    if plan is None:
        await http.delete(f"{SANDBOX_HOST}/v1/_control/faults")
    else:
        (await http.post(f"{SANDBOX_HOST}/v1/_control/faults", json=plan)).raise_for_status()


def received(settings: Settings) -> list[dict[str, Any]]:
    return list_posts(settings.data_dir / "sandbox.db")


@pytest.fixture
async def accounts(client: Client) -> AsyncIterator[list[str]]:
    yield [await connect(client, "bluesky", "alice"), await connect(client, "x", "bob"), await connect(client, "linkedin", "carol")]


async def test_one_post_fans_out_to_every_account_with_first_comment(client: Client, accounts: list[str], settings: Settings) -> None:
    batch = ok(await client.call_tool("publish_post", {
        "text": "Launch day https://example.com #omnipost", "firstComment": "Details inside",
        "targets": [{"accountId": a} for a in accounts]}))
    assert batch["status"] == "published" and batch["id"].startswith("bat_")
    assert [r["status"] for r in batch["results"]] == ["published"] * 3
    assert all(r["url"].startswith("https://sandbox.omnipost.local/") and len(r["firstComment"]) == 1 for r in batch["results"])
    got = received(settings)
    assert sorted(p["kind"] for p in got) == ["comment"] * 3 + ["post"] * 3
    assert {p["id"] for p in got if p["kind"] == "post"} == {r["postId"] for r in batch["results"]}


async def test_a_preflight_failure_publishes_and_stores_nothing(client: Client, accounts: list[str], settings: Settings) -> None:
    error = err(await client.call_tool("publish_post", {
        "text": "x" * 301, "targets": [{"accountId": a} for a in accounts]}))
    assert error["code"] == "preflight_failed"
    assert {d["rule"] for d in error["details"]} == {"bluesky.text.max_graphemes", "twitter.text.max_graphemes"}
    assert received(settings) == []
    assert ok(await client.call_tool("list_posts", {}))["posts"] == []


async def test_same_text_to_same_account_within_a_day_is_a_duplicate_unless_skipped(client: Client, accounts: list[str]) -> None:
    request = {"text": "Hello  world", "targets": [{"accountId": accounts[0]}]}
    first = ok(await client.call_tool("publish_post", request))
    error = err(await client.call_tool("publish_post", {**request, "text": "Hello world "}))
    assert error["details"][0]["rule"] == "post.duplicate"
    assert first["results"][0]["postId"] in error["details"][0]["message"]
    again = ok(await client.call_tool("publish_post", {**request, "skipDuplicateCheck": True}))
    assert again["status"] == "published"


async def test_idempotency_key_replays_and_refuses_another_body(client: Client, accounts: list[str], settings: Settings) -> None:
    request = {"text": "Once only", "idempotencyKey": "launch-1", "targets": [{"accountId": accounts[1]}]}
    first = ok(await client.call_tool("publish_post", request))
    replay = ok(await client.call_tool("publish_post", request))
    assert replay["replay"] is True and replay["id"] == first["id"] and replay["results"] == first["results"]
    assert len(received(settings)) == 1
    conflict = err(await client.call_tool("publish_post", {**request, "text": "Something else"}))
    assert (conflict["code"], conflict["rule"]) == ("idempotency_conflict", "idempotency.mismatch")


async def test_concurrent_calls_with_one_key_execute_once(client: Client, accounts: list[str], settings: Settings) -> None:
    request = {"text": "Race", "idempotencyKey": "race-1", "targets": [{"accountId": a} for a in accounts]}
    outcomes: list[Any] = []

    async def call() -> None:
        outcomes.append(await client.call_tool("publish_post", request))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(call)
    batches = {o.structured_content["id"] for o in outcomes if not o.is_error}
    conflicts = [o.structured_content["error"] for o in outcomes if o.is_error]
    assert len(batches) == 1
    assert all(c["code"] == "idempotency_conflict" and c["rule"] == "idempotency.in_flight" for c in conflicts)
    assert len(received(settings)) == 3  # one execution: three posts, whatever the number of callers
    assert ok(await client.call_tool("publish_post", request))["replay"] is True


def fail_once(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> None:
    """Make `obj.name` raise a plain exception (a bug: internal_error) on its first call only."""
    real = getattr(obj, name)
    calls: list[int] = []

    async def faulty(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected bug")
        return await real(*args, **kwargs)

    monkeypatch.setattr(obj, name, faulty)


# before anything is stored / after it published (storing the answer for the key fails once)
@pytest.mark.parametrize("step", ["_materialise_media", "complete"])
async def test_an_internal_error_frees_the_idempotency_key_without_publishing_twice(
        server: OmnipostServer, client: Client, accounts: list[str], settings: Settings, monkeypatch: pytest.MonkeyPatch,
        step: str) -> None:
    publisher = server.runtime.publisher
    fail_once(monkeypatch, publisher.idempotency if step == "complete" else publisher, step)
    request = {"text": "Keyed through a bug", "idempotencyKey": f"bug-{step}", "targets": [{"accountId": accounts[0]}]}
    assert err(await client.call_tool("publish_post", request))["code"] == "internal_error"
    again = ok(await client.call_tool("publish_post", request))  # not idempotency_conflict (in_flight) for 24 h
    assert again["status"] == "published"
    assert again["replay"] is (step == "complete")  # already stored: replayed, never sent twice
    assert len(received(settings)) == 1


async def test_an_internal_error_in_a_keyed_tool_frees_its_key(server: OmnipostServer, client: Client, accounts: list[str],
                                                               settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    draft = ok(await client.call_tool("publish_post", {"text": "Draft through a bug", "draft": True,
                                                       "targets": [{"accountId": accounts[0]}]}))
    fail_once(monkeypatch, server.runtime.publisher, "publish_draft")
    request = {"id": draft["id"], "idempotencyKey": "draft-bug"}
    assert err(await client.call_tool("publish_draft", request))["code"] == "internal_error"
    assert ok(await client.call_tool("publish_draft", request))["status"] == "published"
    assert len(received(settings)) == 1


async def test_concurrent_identical_publishes_to_one_account_publish_once(backend: Backend, settings: Settings, clock: Any) -> None:
    """post.duplicate is decided atomically with storing the post (SQLite and PostgreSQL): of 20 identical concurrent
    publishes one is published and 19 get the sequential answer; different texts sent alongside all go."""
    server = build_server(settings.model_copy(update={"database_url": backend.url}), clock=clock)
    async with Client(server) as client:
        account = await connect(client, "bluesky", "racer")
        request = {"text": "Only once, however many callers", "targets": [{"accountId": account}]}
        same: list[Any] = []
        other: list[Any] = []

        async def call(out: list[Any], body: dict[str, Any]) -> None:
            out.append(await client.call_tool("publish_post", body))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(call, same, request)
                    if i % 4 == 0:
                        tg.start_soon(call, other, {**request, "text": f"A different post {i}"})
        sequential = err(await client.call_tool("publish_post", request))
    published = [ok(o) for o in same if not o.is_error]
    refused = [err(o) for o in same if o.is_error]
    assert len(published) == 1 and published[0]["status"] == "published"
    assert (sequential["code"], [d["rule"] for d in sequential["details"]]) == ("preflight_failed", ["post.duplicate"])
    assert len(refused) == 19
    assert all((e["code"], [d["rule"] for d in e["details"]]) == ("preflight_failed", ["post.duplicate"]) for e in refused)
    assert all(published[0]["results"][0]["postId"] in e["details"][0]["message"] for e in refused)
    assert [ok(o)["status"] for o in other] == ["published"] * 5
    texts = sorted(p["text"] for p in received(settings) if p["kind"] == "post")
    assert texts.count(request["text"]) == 1 and len(texts) == 6


async def test_draft_is_stored_then_published_later(client: Client, accounts: list[str], settings: Settings) -> None:
    draft = ok(await client.call_tool("publish_post", {"text": "Later", "draft": True, "targets": [{"accountId": accounts[0]}]}))
    assert draft["status"] == "draft" and received(settings) == []
    published = ok(await client.call_tool("publish_draft", {"id": draft["results"][0]["postId"]}))
    assert published["status"] == "published" and len(received(settings)) == 1


async def test_a_draft_can_be_cancelled_and_a_published_post_deleted(client: Client, accounts: list[str], settings: Settings) -> None:
    draft = ok(await client.call_tool("publish_post", {"text": "Maybe", "draft": True, "targets": [{"accountId": accounts[0]}]}))
    cancelled = ok(await client.call_tool("cancel_post", {"id": draft["results"][0]["postId"]}))
    assert cancelled["status"] == "cancelled" and cancelled["results"][0]["status"] == "cancelled"
    assert ok(await client.call_tool("cancel_post", {"id": draft["results"][0]["postId"]})) == cancelled  # again: no error
    assert err(await client.call_tool("publish_draft", {"id": draft["results"][0]["postId"]}))["code"] == "not_found"
    live = ok(await client.call_tool("publish_post", {"text": "Gone soon", "targets": [{"accountId": accounts[0]}]}))
    post_id = live["results"][0]["postId"]
    assert err(await client.call_tool("cancel_post", {"id": post_id}))["code"] == "validation_failed"
    assert ok(await client.call_tool("delete_post", {"postId": post_id}))["status"] == "deleted"
    assert received(settings) == []


async def test_cancel_post_takes_a_batch_and_cancels_its_drafts(client: Client, accounts: list[str], settings: Settings) -> None:
    drafts = ok(await client.call_tool("publish_post", {"text": "Both maybe", "draft": True,
                                                         "targets": [{"accountId": a} for a in accounts[:2]]}))
    cancelled = ok(await client.call_tool("cancel_post", {"id": drafts["id"]}))
    assert (cancelled["id"], cancelled["status"]) == (drafts["id"], "cancelled")
    assert [r["status"] for r in cancelled["results"]] == ["cancelled", "cancelled"]
    assert ok(await client.call_tool("cancel_post", {"id": drafts["id"]}))["status"] == "cancelled"  # idempotent
    assert err(await client.call_tool("cancel_post", {"id": "bat_nope"}))["code"] == "not_found"
    assert received(settings) == []


async def test_get_post_shows_every_attempt_and_list_posts_pages(client: Client, accounts: list[str]) -> None:
    for i in range(5):
        ok(await client.call_tool("publish_post", {"text": f"Post {i}", "targets": [{"accountId": accounts[1]}]}))
    page1 = ok(await client.call_tool("list_posts", {"limit": 2}))
    page2 = ok(await client.call_tool("list_posts", {"limit": 2, "cursor": page1["nextCursor"]}))
    page3 = ok(await client.call_tool("list_posts", {"limit": 2, "cursor": page2["nextCursor"]}))
    ids = [p["postId"] for p in page1["posts"] + page2["posts"] + page3["posts"]]
    assert len(ids) == len(set(ids)) == 5 and page3["nextCursor"] is None
    assert ids == sorted(ids, reverse=True)
    detail = ok(await client.call_tool("get_post", {"postId": ids[0]}))
    assert detail["text"] == "Post 4" and detail["attempts"][0]["outcome"] == "published"
    assert detail["attempts"][0]["httpStatus"] == 201
    assert ok(await client.call_tool("list_posts", {"status": "failed"}))["posts"] == []


async def test_a_25_target_batch_with_mixed_outcomes(server: OmnipostServer, client: Client, settings: Settings) -> None:
    accounts = [await connect(client, "x", f"user{i}") for i in range(25)]
    await faults(server, {"failRate": 0.4, "kinds": ["5xx", "429"], "seed": 7})
    batch = ok(await client.call_tool("publish_post", {"text": "Mixed", "targets": [{"accountId": a} for a in accounts]}))
    statuses = [r["status"] for r in batch["results"]]
    assert batch["status"] == "partial_failed" and set(statuses) == {"published", "failed"}
    for r in batch["results"]:
        if r["status"] == "failed":
            assert r["error"]["code"] == "platform_unavailable" and r["error"]["retryable"] is True
    assert len(received(settings)) == statuses.count("published")


@pytest.mark.parametrize("kind, status, code", [
    ("5xx", "failed", "platform_unavailable"),
    ("429", "failed", "platform_unavailable"),
    ("timeout_after_accept", "published", None),  # reconciled: the platform did store it
    ("reset", "failed", "platform_unavailable"),  # reconciled: certainly absent, safe to retry
])
async def test_each_failure_kind_ends_in_the_right_state(settings: Settings, clock: Any, kind: str, status: str, code: str | None) -> None:
    server = build_server(settings.model_copy(update={"upstream_timeout": 0.5}), clock=clock)
    async with Client(server) as client:
        account = await connect(client, "x", "faulty")
        await faults(server, {"kinds": [kind], "failRate": 1.0, "maxFaults": 1})
        with anyio.fail_after(30):
            batch = ok(await client.call_tool("publish_post", {"text": f"Fault {kind}", "targets": [{"accountId": account}]}))
        result = batch["results"][0]
        assert result["status"] == status
        assert (result["error"] or {}).get("code") == code
        stored = [p for p in received(settings) if p["id"] == result["postId"]]
        assert len(stored) == (1 if status == "published" else 0)


async def test_30_percent_faults_of_every_kind_leave_each_target_consistent(settings: Settings, clock: Any) -> None:
    server = build_server(settings.model_copy(update={"upstream_timeout": 0.5}), clock=clock)
    async with Client(server) as client:
        accounts = [await connect(client, "bluesky", f"f{i}") for i in range(20)]
        await faults(server, {"kinds": ["5xx", "429", "timeout_after_accept", "reset"], "failRate": 0.3, "seed": 3})
        with anyio.fail_after(120):
            batch = ok(await client.call_tool("publish_post", {"text": "Chaos", "targets": [{"accountId": a} for a in accounts]}))
    upstream = {p["id"] for p in received(settings)}
    for r in batch["results"]:
        assert r["status"] in ("published", "failed")
        assert (r["postId"] in upstream) == (r["status"] == "published")
        if r["status"] == "failed":
            assert r["error"]["code"] == "platform_unavailable"


async def test_an_account_of_another_profile_is_not_found(client: Client, accounts: list[str]) -> None:
    other = ok(await client.call_tool("create_profile", {"name": "client-b"}))
    error = err(await client.call_tool("publish_post", {"text": "Hi", "profileId": other["id"], "targets": [{"accountId": accounts[0]}]}))
    assert (error["code"], error["rule"]) == ("not_found", "targets[0].accountId")
    assert err(await client.call_tool("get_account", {"accountId": accounts[0], "profileId": "client-b"}))["code"] == "not_found"
    assert ok(await client.call_tool("list_accounts", {"profileId": "client-b"}))["accounts"] == []


async def test_the_user_is_asked_before_a_multi_account_publish(server: OmnipostServer, settings: Settings) -> None:
    answers: list[str] = []

    async def decline(ctx: Any, params: Any) -> ElicitResult:
        answers.append(params.message)
        return ElicitResult(action="decline")

    async with Client(server, elicitation_callback=decline) as client:
        a, b = await connect(client, "x", "one"), await connect(client, "bluesky", "two")
        error = err(await client.call_tool("publish_post", {"text": "Ask first", "targets": [{"accountId": a}, {"accountId": b}]}))
        assert error["rule"] == "confirmation.declined" and len(answers) == 1
        assert received(settings) == []
        single = ok(await client.call_tool("publish_post", {"text": "One account", "targets": [{"accountId": a}]}))
        assert single["status"] == "published" and len(answers) == 1  # one account: no question

    async def accept(ctx: Any, params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"publish": True})

    async with Client(build_server(settings), elicitation_callback=accept) as client:
        accounts = ok(await client.call_tool("list_accounts", {}))["accounts"]
        batch = ok(await client.call_tool("publish_post", {"text": "Asked", "targets": [{"accountId": x["id"]} for x in accounts]}))
        assert batch["status"] == "published"


async def test_disconnected_account_cannot_publish(client: Client, accounts: list[str]) -> None:
    ok(await client.call_tool("disconnect_account", {"accountId": accounts[0]}))
    assert err(await client.call_tool("publish_post", {"text": "Hi", "targets": [{"accountId": accounts[0]}]}))["code"] == "not_found"
    listed = ok(await client.call_tool("list_accounts", {}))["accounts"]
    assert accounts[0] not in {a["id"] for a in listed}


async def test_dry_run_validates_and_publishes_nothing(client: Client, accounts: list[str], settings: Settings) -> None:
    result = ok(await client.call_tool("publish_post", {"text": "Try", "dryRun": True, "targets": [{"accountId": accounts[0]}]}))
    assert result["status"] == "dry_run" and result["validation"]["valid"] is True
    assert received(settings) == []


async def test_a_pins_destination_link_is_checked_before_publishing_and_fails_only_its_target(settings: Settings, clock: Any) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    from omnipost.sandbox.upstream import create_sandbox_app

    shop_ip = "93.184.216.34"  # answered by the in-process app below: ASGI transport, nothing leaves the process
    seen: list[str] = []

    async def page(request: Any) -> Any:
        seen.append(request.url.path)
        if request.url.path == "/moved":
            return RedirectResponse("https://shop.example/ok", status_code=301)
        if request.url.path == "/ok":
            return PlainTextResponse("x" * 5_000_000)  # reachable however large: the body is not read
        return PlainTextResponse("gone", status_code=404)

    shop = Starlette(routes=[Route("/{p:path}", page)])
    http = mounted_client({SANDBOX_HOST: create_sandbox_app(settings.data_dir / "sandbox.db", clock=clock), f"https://{shop_ip}": shop})
    resolver = MapResolver({"shop.example": [shop_ip], "intranet.example": ["10.1.2.3"]})
    server = build_server(settings.model_copy(update={"confirm": "never"}), clock=clock, http=http, resolver=resolver)
    async with http, Client(server) as client:
        pin = await connect(client, "pinterest", "pins")
        links = ["https://shop.example/moved", "https://shop.example/gone", "https://intranet.example/", "https://shop.example/gone"]
        targets = [{"accountId": pin, "pinterest": {"boardId": "1", "destinationUrl": url}} for url in links]
        targets.append({"accountId": pin, "pinterest": {"boardId": "1"}})  # no link: nothing to check
        request = {"text": "New in the shop", "media": [{"bytesBase64": b64(make_image("JPEG", 800, 1200))}],
                   "targets": targets, "skipDuplicateCheck": True}
        with anyio.fail_after(20):
            batch = ok(await client.call_tool("publish_post", request))
            # A non-web scheme is not a deep failure of one target but a shallow rule: the request is refused whole.
            ftp = dict(request, targets=[{"accountId": pin, "pinterest": {"boardId": "1", "destinationUrl": "ftp://shop.example/x"}}])
            refused = err(await client.call_tool("publish_post", ftp))
    assert refused["code"] == "preflight_failed"
    assert [d["rule"] for d in refused["details"]] == ["pinterest.link.http_url"]
    statuses = [r["status"] for r in batch["results"]]
    assert batch["status"] == "partial_failed" and statuses == ["published", "rejected", "rejected", "rejected", "published"]
    for i in (1, 2, 3):
        error = batch["results"][i]["error"]
        assert (error["code"], error["rule"], error["path"]) == (
            "preflight_failed", "pinterest.destination_url.reachable", f"targets[{i}].pinterest.destinationUrl")
    assert batch["results"][1]["error"]["retryable"] is True  # a 404 may be fixed; a forbidden address is not
    assert batch["results"][2]["error"]["retryable"] is False
    assert seen.count("/gone") == 1 and seen.count("/moved") == 1 and seen.count("/ok") == 1  # each distinct URL once
    assert "intranet.example" in resolver.asked  # refused on its address, before any connection
    assert len(received(settings)) == 2


async def test_a_bluesky_video_post_past_the_daily_video_quota_fails_only_its_target(settings: Settings, clock: Any, tmp_path: Any) -> None:
    from fakes.bluesky import PDS_URL, FakeBluesky
    from omnipost.platforms.bluesky import VIDEO_SERVICE
    from omnipost.sandbox.upstream import create_sandbox_app
    from test_media_storage import write_video

    fake = FakeBluesky(clock=lambda: clock.now().timestamp(), video_did=f"did:web:{VIDEO_SERVICE.removeprefix('https://')}")
    alice = fake.add_account("alice.test", "abcd-efgh-ijkl-mnop")
    fake.refuse_video(alice.did, "daily_limit_exceeded", "You have reached your daily video upload limit")
    # The runtime's adapter asks the real service's address: the fake answers there (nothing leaves the process).
    http = fake.client(mounts={VIDEO_SERVICE: fake.video_app,
                               SANDBOX_HOST: create_sandbox_app(settings.data_dir / "sandbox.db", clock=clock)})
    server = build_server(settings.model_copy(update={"confirm": "never"}), clock=clock, http=http)
    clip = write_video(tmp_path / "clip.mp4").read_bytes()
    async with http, Client(server) as client:
        account = ok(await client.call_tool("connect_account", {"platform": "bluesky", "handle": "alice.test",
                                                               "appPassword": "abcd-efgh-ijkl-mnop", "pdsUrl": PDS_URL}))["id"]
        twin = await connect(client, "bluesky", "twin")  # a sandbox account emulating Bluesky: no quota to ask
        request = {"text": "Clip", "media": [{"bytesBase64": b64(clip)}], "skipDuplicateCheck": True,
                   "targets": [{"accountId": account}, {"accountId": twin}]}
        with anyio.fail_after(20):
            batch = ok(await client.call_tool("publish_post", request))
        # A post without media has no quota to ask about.
        words = ok(await client.call_tool("publish_post", {"text": "Words only", "targets": [{"accountId": account}]}))
    assert words["status"] == "published"
    first, second = batch["results"]
    assert batch["status"] == "partial_failed" and (first["status"], second["status"]) == ("rejected", "published")
    error = first["error"]
    assert (error["code"], error["rule"], error["path"], error["retryable"]) == (
        "preflight_failed", "bluesky.media.video_quota", "targets[0].media[0]", True)
    assert error["platformResponse"]["error"] == "daily_limit_exceeded"
    assert len(fake.calls("app.bsky.video.getUploadLimits")) == 1
    # The video post sent nothing; the one without media was not asked about a quota.
    assert fake.calls("app.bsky.video.uploadVideo") == [] and [p["value"]["text"] for p in fake.posts()] == ["Words only"]
