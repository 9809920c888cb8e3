"""The REST surface (/v1) through the one ASGI app in process: the same server, store, sandbox and keys as /mcp.

Parity: the same request through POST /v1/posts and publish_post gives the same outcome, and one idempotency key is
shared by both surfaces. Auth: missing, wrong and revoked keys; a profile-bound key cannot read another profile's post.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from test_webhooks import MapResolver
from toolresult import err, ok

from omnipost.app import OmnipostServer
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.keys import LazyKeyService

pytestmark = pytest.mark.anyio

KEY = "op_live_" + "r" * 43
PORT = 8765


@dataclass
class Rest:
    server: OmnipostServer
    mcp: Client
    http: httpx2.AsyncClient
    keys: LazyKeyService
    clock: FixedClock
    settings: Settings

    async def account(self, emulates: str = "bluesky", handle: str = "alice", profile: str | None = None) -> str:
        args = {"platform": "sandbox", "emulates": emulates, "handle": handle} | ({"profileId": profile} if profile else {})
        return ok(await self.mcp.call_tool("connect_account", args))["id"]


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", log_level="WARNING", api_key=KEY, _env_file=None, **extra)  # type: ignore[call-arg]


@pytest.fixture
async def rest(tmp_path: Path, clock: FixedClock) -> AsyncIterator[Rest]:
    from omnipost.transports import build_http_app, build_http_server

    settings = _settings(tmp_path)
    resolver = MapResolver({"hooks.example.com": ["93.184.216.34"]})  # no DNS: tests send traffic only to loopback
    server, keys = build_http_server(settings, "127.0.0.1", PORT, clock=clock, resolver=resolver)
    async with Client(server) as mcp:  # opens the runtime: REST and MCP share it
        app = build_http_app(server, settings, "streamable-http", PORT, keys)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=f"http://127.0.0.1:{PORT}",
                                      headers={"Authorization": f"Bearer {KEY}"}) as http:
            yield Rest(server, mcp, http, keys, clock, settings)
    await keys.close()


def error(response: httpx2.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


# ---- posts ---------------------------------------------------------------------------------------------------------

async def test_publish_then_read_the_post_with_its_attempts(rest: Rest) -> None:
    account = await rest.account()
    created = await rest.http.post("/v1/posts", json={"text": "Hello from REST", "targets": [{"accountId": account}]})
    assert created.status_code == 201, created.text
    batch = created.json()
    assert batch["status"] == "published" and batch["results"][0]["status"] == "published"
    post_id = batch["results"][0]["postId"]
    got = await rest.http.get(f"/v1/posts/{post_id}")
    assert got.status_code == 200 and got.json()["status"] == "published" and len(got.json()["attempts"]) == 1
    page = (await rest.http.get("/v1/posts", params={"status": "published", "limit": 1})).json()
    assert [p["postId"] for p in page["posts"]] == [post_id]


async def test_scheduled_post_is_queued_rescheduled_and_cancelled(rest: Rest) -> None:
    account = await rest.account()
    when = (rest.clock.now() + timedelta(hours=2)).isoformat()
    batch = (await rest.http.post("/v1/posts", json={"text": "Later", "targets": [{"accountId": account}], "scheduledAt": when})).json()
    assert batch["status"] == "queued"
    post_id = batch["results"][0]["postId"]
    later = (rest.clock.now() + timedelta(hours=3)).isoformat()
    moved = await rest.http.post(f"/v1/posts/{post_id}/reschedule", json={"scheduledAt": later})
    assert moved.status_code == 200, moved.text
    edited = await rest.http.patch(f"/v1/posts/{post_id}", json={"text": "Later, edited"})
    assert edited.status_code == 200, edited.text
    assert (await rest.http.get(f"/v1/posts/{post_id}")).json()["text"] == "Later, edited"
    cancelled = await rest.http.post(f"/v1/posts/{post_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["results"][0]["status"] == "cancelled"


async def test_draft_is_published_by_id(rest: Rest) -> None:
    account = await rest.account()
    batch = (await rest.http.post("/v1/posts", json={"text": "Draft", "draft": True, "targets": [{"accountId": account}]})).json()
    assert batch["status"] == "draft"
    published = await rest.http.post(f"/v1/drafts/{batch['results'][0]['postId']}/publish")
    assert published.status_code == 200, published.text
    assert published.json()["results"][0]["status"] == "published"


async def test_bulk_and_campaign_routes(rest: Rest) -> None:
    account = await rest.account()
    when = (rest.clock.now() + timedelta(days=1)).isoformat()
    items = [{"text": f"Day {i}", "targets": [{"accountId": account}], "scheduledAt": when} for i in range(2)]
    bulk = await rest.http.post("/v1/posts/bulk", json={"items": items, "campaign": "launch"})
    assert bulk.status_code == 200 and bulk.json()["queued"] == 2, bulk.text
    listed = (await rest.http.get("/v1/posts", params={"campaign": "launch"})).json()["posts"]
    assert len(listed) == 2
    cancelled = await rest.http.post("/v1/campaigns/launch/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert {p["status"] for p in (await rest.http.get("/v1/posts", params={"campaign": "launch"})).json()["posts"]} == {"cancelled"}


async def test_validate_rules_versions_and_scheduler(rest: Rest) -> None:
    valid = await rest.http.post("/v1/posts/validate", json={"text": "x" * 301, "targets": [{"platform": "bluesky"}]})
    assert valid.status_code == 200 and valid.json()["valid"] is False
    assert "bluesky.text.max_graphemes" in {e["rule"] for e in valid.json()["results"][0]["errors"]}
    rules = (await rest.http.get("/v1/rules", params={"platform": "bluesky"})).json()
    assert rules["count"] == len(rules["rules"]) > 0
    assert (await rest.http.get("/v1/rules/bluesky.text.max_graphemes")).json()["id"] == "bluesky.text.max_graphemes"
    assert error(await rest.http.get("/v1/rules/bluesky.nope"), 404)["code"] == "not_found"
    assert (await rest.http.get("/v1/platform-versions")).json()["versions"]
    assert "alive" in (await rest.http.get("/v1/scheduler")).json()


# ---- errors --------------------------------------------------------------------------------------------------------

async def test_every_error_is_the_error_object_with_its_status(rest: Rest) -> None:
    account = await rest.account()
    bad = error(await rest.http.post("/v1/posts", json={"text": "Hi", "targets": [{"accountId": 5}]}), 400)
    assert (bad["code"], bad["rule"]) == ("validation_failed", "targets[0].accountId")
    assert error(await rest.http.post("/v1/posts", content=b"{not json"), 400)["rule"] == "$"
    too_long = error(await rest.http.post("/v1/posts", json={"text": "x" * 400, "targets": [{"accountId": account}]}), 422)
    assert too_long["code"] == "preflight_failed" and too_long["details"][0]["rule"] == "bluesky.text.max_graphemes"
    assert error(await rest.http.get("/v1/posts/post_nope"), 404)["code"] == "not_found"
    assert error(await rest.http.get("/v1/nowhere"), 404)["code"] == "not_found"
    wrong_method = await rest.http.put("/v1/posts")
    assert error(wrong_method, 405)["rule"] == "method" and set(wrong_method.headers["allow"].split(", ")) == {"GET", "POST"}
    assert error(await rest.http.get("/v1/posts", params={"limit": 0}), 400)["rule"] == "limit"
    assert error(await rest.http.post("/v1/posts", json={"text": "a", "targets": [{"accountId": account}]},
                                      headers={"Idempotency-Key": "k" * 129}), 400)["rule"] == "Idempotency-Key"
    lone = b'{"text": "\\ud800", "targets": [{"accountId": "%s"}]}' % account.encode()
    assert error(await rest.http.post("/v1/posts", content=lone), 400)["rule"] == "text"


async def test_host_and_origin_are_checked_as_for_mcp(rest: Rest) -> None:
    assert error(await rest.http.get("/v1/posts", headers={"Host": "evil.example"}), 421)["rule"] == "transport.host"
    assert error(await rest.http.get("/v1/posts", headers={"Origin": "http://evil.example"}), 403)["rule"] == "transport.origin"
    assert (await rest.http.get("/v1/posts", headers={"Origin": f"http://127.0.0.1:{PORT}"})).status_code == 200


async def test_rate_limit_is_per_key_and_shared_with_mcp(tmp_path: Path, clock: FixedClock) -> None:
    from omnipost.transports import build_http_app, build_http_server

    settings = _settings(tmp_path, rate_limit_per_minute=2)
    server, keys = build_http_server(settings, "127.0.0.1", PORT, clock=clock)
    async with Client(server):
        app = build_http_app(server, settings, "streamable-http", PORT, keys)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url=f"http://127.0.0.1:{PORT}",
                                      headers={"Authorization": f"Bearer {KEY}"}) as http:
            assert (await http.get("/v1/scheduler")).status_code == 200
            assert (await http.get("/v1/scheduler")).status_code == 200
            limited = await http.get("/v1/scheduler")
            assert error(limited, 429)["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
            clock.at += timedelta(seconds=30)
            assert (await http.get("/v1/scheduler")).status_code == 200
    await keys.close()


# ---- auth ----------------------------------------------------------------------------------------------------------

async def test_missing_wrong_and_revoked_keys_are_401(rest: Rest) -> None:
    service = await rest.keys.get()
    record, plaintext = await service.create(None, "live")
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer op_live_" + "A" * 43}, {"Authorization": "Basic abc"},
                    {"Authorization": KEY}):
        refused = await rest.http.get("/v1/posts", headers=headers)
        assert error(refused, 401)["code"] == "unauthenticated" and refused.headers["www-authenticate"].startswith("Bearer")
    async with httpx2.AsyncClient(transport=rest.http._transport, base_url=str(rest.http.base_url)) as anonymous:  # noqa: SLF001
        assert error(await anonymous.get("/v1/posts"), 401)["code"] == "unauthenticated"
        assert (await anonymous.get("/v1/openapi.json")).status_code == 200  # the document itself is public
    assert (await rest.http.get("/v1/posts", headers={"Authorization": f"Bearer {plaintext}"})).status_code == 200
    await service.revoke(record.id)
    revoked = await rest.http.get("/v1/posts", headers={"Authorization": f"Bearer {plaintext}"})
    assert error(revoked, 401)["code"] == "unauthenticated" and plaintext not in revoked.text


async def test_a_profile_bound_key_cannot_read_another_profiles_post(rest: Rest) -> None:
    other = ok(await rest.mcp.call_tool("create_profile", {"name": "brand-b"}))
    account = await rest.account()
    post_id = (await rest.http.post("/v1/posts", json={"text": "Default's", "targets": [{"accountId": account}]})).json()["results"][0]["postId"]
    service = await rest.keys.get()
    _, bound = await service.create(other["id"], "live")
    headers = {"Authorization": f"Bearer {bound}"}
    assert error(await rest.http.get(f"/v1/posts/{post_id}", headers=headers), 404)["code"] == "not_found"
    assert (await rest.http.get("/v1/posts", headers=headers)).json()["posts"] == []
    scope = error(await rest.http.get("/v1/posts", params={"profileId": "default"}, headers=headers), 403)
    assert (scope["code"], scope["rule"]) == ("unauthorized", "profile.scope_mismatch")


# ---- parity with the MCP tools -------------------------------------------------------------------------------------

def _outcome(batch: dict[str, Any]) -> tuple[Any, ...]:
    return (batch["status"], batch["mode"], [(r["status"], r["platform"], r["error"] and r["error"]["code"]) for r in batch["results"]])


async def test_the_same_request_gives_the_same_outcome_through_rest_and_publish_post(rest: Rest) -> None:
    bluesky, x = await rest.account("bluesky", "alice"), await rest.account("x", "bob")
    # A refused request: the same code and the same rule ids, in the same order.
    too_long = {"text": "y" * 400, "targets": [{"accountId": bluesky}, {"accountId": x}]}
    over_rest = error(await rest.http.post("/v1/posts", json=too_long), 422)
    over_mcp = err(await rest.mcp.call_tool("publish_post", too_long))
    assert over_rest["code"] == over_mcp["code"] == "preflight_failed"
    assert [d["rule"] for d in over_rest["details"]] == [d["rule"] for d in over_mcp["details"]]
    malformed = {"text": "Hi", "targets": [{"accountId": bluesky, "bogus": 1}]}
    assert error(await rest.http.post("/v1/posts", json=malformed), 400)["rule"] == err(await rest.mcp.call_tool("publish_post", malformed))["rule"]
    # An accepted one (each its own text: the second would be a duplicate of the first).
    via_rest = (await rest.http.post("/v1/posts", json={"text": "Parity A", "targets": [{"accountId": bluesky}, {"accountId": x}]})).json()
    via_mcp = ok(await rest.mcp.call_tool("publish_post", {"text": "Parity B", "targets": [{"accountId": bluesky}, {"accountId": x}]}))
    assert _outcome(via_rest) == _outcome(via_mcp)
    # The dry run and validate answer alike too.
    dry = {"text": "Dry", "targets": [{"accountId": bluesky}], "dryRun": True}
    dry_rest = await rest.http.post("/v1/posts", json=dry)
    assert dry_rest.status_code == 200 and dry_rest.json()["validation"] == ok(await rest.mcp.call_tool("publish_post", dry))["validation"]


async def test_one_idempotency_key_is_shared_by_both_surfaces(rest: Rest) -> None:
    account = await rest.account()
    body = {"text": "Once only", "targets": [{"accountId": account}]}
    first = await rest.http.post("/v1/posts", json=body, headers={"Idempotency-Key": "release-1"})
    assert first.status_code == 201
    replayed = ok(await rest.mcp.call_tool("publish_post", body | {"idempotencyKey": "release-1"}))
    assert replayed["replay"] is True and replayed["id"] == first.json()["id"]
    again = await rest.http.post("/v1/posts", json=body, headers={"Idempotency-Key": "release-1"})
    assert again.status_code == 200 and again.json()["replay"] is True and again.json()["id"] == first.json()["id"]
    conflict = error(await rest.http.post("/v1/posts", json=body | {"text": "Other"}, headers={"Idempotency-Key": "release-1"}), 409)
    assert conflict["code"] == "idempotency_conflict"
    assert err(await rest.mcp.call_tool("publish_post", body | {"text": "Other", "idempotencyKey": "release-1"}))["code"] == "idempotency_conflict"
    # The other way round, and for a non-publish write: cancel through MCP, replay through REST.
    when = (rest.clock.now() + timedelta(hours=1)).isoformat()
    queued = ok(await rest.mcp.call_tool("publish_post", {"text": "Queued", "targets": [{"accountId": account}], "scheduledAt": when}))
    post_id = queued["results"][0]["postId"]
    ok(await rest.mcp.call_tool("cancel_post", {"id": post_id, "idempotencyKey": "cancel-1"}))
    assert (await rest.http.post(f"/v1/posts/{post_id}/cancel", headers={"Idempotency-Key": "cancel-1"})).status_code == 200
    assert error(await rest.http.post("/v1/posts/post_other/cancel", headers={"Idempotency-Key": "cancel-1"}), 409)["code"] == "idempotency_conflict"
    # the key in the body and in the header must agree
    assert error(await rest.http.post("/v1/posts", json=body | {"idempotencyKey": "a"}, headers={"Idempotency-Key": "b"}), 400)["rule"] == "idempotencyKey"


async def test_openapi_and_reference_page_are_served(rest: Rest) -> None:
    document = (await rest.http.get("/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.1") and "/v1/posts" in document["paths"]
    page = await rest.http.get("/v1/docs")
    assert page.status_code == 200 and "publishPost" in page.text and "<script" not in page.text and "http" not in page.text.split("<body>")[0]


# ---- accounts and profiles -----------------------------------------------------------------------------------------

async def test_accounts_connect_list_get_disconnect_and_profiles(rest: Rest) -> None:
    connected = await rest.http.post("/v1/accounts", json={"platform": "sandbox", "emulates": "x", "handle": "rest.sandbox"})
    assert connected.status_code == 200, connected.text
    account = connected.json()
    assert account["status"] == "connected" and account["id"].startswith("acc_")
    assert [a["id"] for a in (await rest.http.get("/v1/accounts")).json()["accounts"]] == [account["id"]]
    assert (await rest.http.get(f"/v1/accounts/{account['id']}")).json()["handle"] == "rest.sandbox"
    # the same connect through MCP: the same refusal for an argument of another platform
    foreign = {"platform": "sandbox", "emulates": "x", "handle": "h", "appPassword": "secret-app-password"}
    over_rest = error(await rest.http.post("/v1/accounts", json=foreign), 400)
    assert (over_rest["code"], over_rest["rule"]) == ("validation_failed", "appPassword")
    assert err(await rest.mcp.call_tool("connect_account", foreign))["rule"] == "appPassword"
    assert "secret-app-password" not in str(over_rest)
    gone = await rest.http.delete(f"/v1/accounts/{account['id']}")
    assert gone.status_code == 200 and gone.json()["health"] == "disconnected"
    created = await rest.http.post("/v1/profiles", json={"name": "brand-c"})
    assert created.status_code == 201 and created.json()["name"] == "brand-c"
    assert {p["name"] for p in (await rest.http.get("/v1/profiles")).json()["profiles"]} == {"default", "brand-c"}
    assert error(await rest.http.post("/v1/profiles", json={"name": "brand-c"}), 400)["rule"] == "name"


# ---- media ---------------------------------------------------------------------------------------------------------

async def test_media_upload_raw_multipart_and_json_then_list_and_delete(rest: Rest) -> None:
    from mediagen import make_image

    png = make_image("PNG", 64, 48)
    raw = await rest.http.post("/v1/media", content=png, params={"altText": "a square", "filename": "sq.png"},
                               headers={"Content-Type": "image/png", "Idempotency-Key": "upload-1"})
    assert raw.status_code == 201, raw.text
    medium = raw.json()
    assert (medium["mime"], medium["width"], medium["height"], medium["altText"]) == ("image/png", 64, 48, "a square")
    form = await rest.http.post("/v1/media", files={"file": ("again.png", png, "application/octet-stream")})
    assert form.status_code == 201 and form.json()["id"] == medium["id"]  # the same bytes: the same record
    import base64

    as_json = await rest.http.post("/v1/media", json={"bytesBase64": base64.b64encode(png).decode()})
    assert as_json.status_code == 201 and as_json.json()["id"] == medium["id"]
    assert error(await rest.http.post("/v1/media", content=b"not an image", headers={"Content-Type": "application/octet-stream"}), 400)["code"] == "validation_failed"
    assert error(await rest.http.post("/v1/media", content=b""), 400)["rule"] == "body"
    assert error(await rest.http.post("/v1/media", json={}), 400)["code"] == "validation_failed"
    # the same upload over MCP, the same record
    mcp = ok(await rest.mcp.call_tool("upload_media", {"bytesBase64": base64.b64encode(png).decode()}))
    assert mcp["id"] == medium["id"]
    assert [m["id"] for m in (await rest.http.get("/v1/media")).json()["media"]] == [medium["id"]]
    assert (await rest.http.delete(f"/v1/media/{medium['id']}")).status_code == 200
    assert error(await rest.http.delete(f"/v1/media/{medium['id']}"), 404)["code"] == "not_found"


async def test_a_large_upload_streams_to_disk_with_flat_memory(rest: Rest) -> None:
    """40 MB of body through POST /v1/media: the server's Python heap never holds more than a few chunks of it."""
    import tracemalloc

    size, chunk = 40 * 1024 * 1024, b"\0" * (1024 * 1024)

    async def body() -> Any:
        yield make_mp4_head()
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        answer = await rest.http.post("/v1/media", content=body(), headers={"Content-Type": "video/mp4"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 400  # not a playable video: refused after streaming, and nothing kept
    assert peak < 8 * 1024 * 1024, peak  # a fifth of the body: flat, not proportional
    assert not [p for p in (rest.settings.data_dir / "media").rglob("*") if p.is_file()]


def make_mp4_head() -> bytes:
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


# ---- webhooks ------------------------------------------------------------------------------------------------------

async def test_webhooks_add_list_deliveries_delete(rest: Rest) -> None:
    added = await rest.http.post("/v1/webhooks", json={"url": "https://hooks.example.com/omnipost", "events": ["post.published"]})
    assert added.status_code == 201, added.text
    created = added.json()
    assert created["secret"].startswith("whsec_")
    hook = created["webhook"]["id"]
    assert [w["id"] for w in (await rest.http.get("/v1/webhooks")).json()["webhooks"]] == [hook]
    assert created["secret"] not in (await rest.http.get("/v1/webhooks")).text
    assert (await rest.http.get("/v1/webhooks/deliveries")).json()["deliveries"] == []
    assert (await rest.http.get(f"/v1/webhooks/{hook}/deliveries", params={"status": "failed"})).json()["deliveries"] == []
    private = error(await rest.http.post("/v1/webhooks", json={"url": "http://127.0.0.1/x", "events": ["post.published"]}), 400)
    assert private["code"] == "validation_failed"
    assert error(await rest.http.post("/v1/webhooks/whk_nope/test"), 404)["code"] == "not_found"
    assert (await rest.http.delete(f"/v1/webhooks/{hook}")).json()["id"] == hook
    assert ok(await rest.mcp.call_tool("list_webhooks", {}))["webhooks"] == []
