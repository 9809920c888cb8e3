"""Honest upstream errors, end to end (issue 10 item 2): the family an upstream answer means decides the target's
status and the account's health. Bluesky answers come from its fake PDS; the sandbox is scripted (tests/fakes/
scripted.py) with the answers real platforms give that the sandbox itself does not (a gateway 5xx after the write
took effect, X's 403 duplicate content, a scope refusal).

Only a refused token marks the account needs_reconnect and emits token.revoked; a permission/scope refusal or a
duplicate rejects the target and leaves the account active; a 5xx after a write is reconciled, never "not sent"."""

from typing import Any

import anyio
import pytest
from fakes.scripted import Scripted
from mcp import Client
from test_publishing import received
from test_tokens import Setup
from toolresult import ok

from omnipost.config import Settings

pytestmark = pytest.mark.anyio

WAIT = 20
CREATE = "com.atproto.repo.createRecord"
POSTS = "/v1/posts/"
X_DUPLICATE = {"error": "duplicate_content", "detail": "You are not allowed to create a Tweet with duplicate content.",
               "type": "about:blank", "title": "Forbidden", "status": 403}


async def publish(client: Client, account: str, text: str) -> dict[str, Any]:
    with anyio.fail_after(WAIT):
        batch = ok(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": account}]}))
    return batch["results"][0]


async def health(client: Client, account: str) -> str:
    return ok(await client.call_tool("get_account", {"accountId": account}))["health"]


async def attempts(client: Client, post_id: str) -> list[str]:
    return [a["outcome"] for a in ok(await client.call_tool("get_post", {"postId": post_id}))["attempts"]]


class Sandboxed(Setup):
    """Setup (tests/test_tokens.py) with the sandbox behind a Scripted front."""

    def __init__(self, settings: Settings) -> None:
        self.front: Scripted | None = None
        super().__init__(settings, sandbox=self._front)

    def _front(self, app: Any) -> Scripted:
        self.front = Scripted(app)
        return self.front

    @property
    def script(self) -> Scripted:
        assert self.front is not None
        return self.front

    async def account(self, client: Client) -> str:
        """A sandbox account that takes our ids (PUT /v1/posts/<id>, the scripted requests)."""
        await self.start(client, bluesky=False)
        return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "sbuser"}))["id"]


@pytest.mark.parametrize("status, body, code, health_after, revoked", [
    (403, {"error": "Forbidden", "message": "Missing required scope"}, "platform_forbidden", "active", False),  # scope
    (401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, "platform_auth_failed",
     "needs_reconnect", True),  # the token itself was refused
], ids=["scope-refusal", "refused-token"])
async def test_only_a_refused_bluesky_token_marks_the_account_and_emits_token_revoked(
        settings: Settings, status: int, body: dict[str, Any], code: str, health_after: str, revoked: bool) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.start(client)
        env.fake.fail_next(CREATE, status, body)
        result = await publish(client, account, "Refused")
        assert (result["status"], result["error"]["code"], result["error"]["retryable"]) == ("rejected", code, False)
        assert await health(client, account) == health_after
        assert await env.events() == ([("token.revoked", account)] if revoked else [])
        if not revoked:
            assert (await publish(client, account, "Still connected"))["status"] == "published"


@pytest.mark.parametrize("status, body, code", [
    (403, {"error": "forbidden", "message": "This app may not post for the account."}, "platform_forbidden"),
    (403, X_DUPLICATE, "platform_duplicate"),
])
async def test_a_permission_or_duplicate_refusal_on_the_sandbox_keeps_the_account_active(
        settings: Settings, status: int, body: dict[str, Any], code: str) -> None:
    env = Sandboxed(settings)
    async with env.http, Client(env.server) as client:
        account = await env.account(client)
        env.script.next("PUT", POSTS, status, body)
        result = await publish(client, account, "Refused politely")
        assert (result["status"], result["error"]["code"], result["error"]["retryable"]) == ("rejected", code, False)
        assert result["error"]["platformResponse"] == body
        assert await health(client, account) == "active"
        assert await env.events() == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_5xx_after_a_write_that_took_effect_is_reconciled_as_published(settings: Settings, status: int) -> None:
    env = Sandboxed(settings)
    async with env.http, Client(env.server) as client:
        account = await env.account(client)
        env.script.next("PUT", POSTS, status, {"error": "bad_gateway"}, after=True)  # stored, then the gateway failed
        result = await publish(client, account, f"Through a gateway {status}")
        assert result["status"] == "published" and result["error"] is None
        assert await attempts(client, result["postId"]) == ["reconciled"]
        assert [p["id"] for p in received(settings)] == [result["postId"]]


async def test_a_5xx_on_the_first_comment_after_the_post_took_effect_is_retried_not_published_half(settings: Settings) -> None:
    env = Sandboxed(settings)
    async with env.http, Client(env.server) as client:
        account = await env.account(client)
        env.script.next("PUT", r"-c$", 503, {"error": "unavailable"})  # the post is stored, its first comment is not
        with anyio.fail_after(WAIT):
            batch = ok(await client.call_tool("publish_post", {"text": "Two pieces", "firstComment": "Second piece",
                                                               "targets": [{"accountId": account}]}))
        result = batch["results"][0]
        assert (result["status"], result["error"]["code"], result["error"]["retryable"]) == ("failed", "platform_unavailable", True)
        with anyio.fail_after(WAIT):  # the retry sends only what is missing
            assert await env.rt.publisher.publish_post_row(result["postId"]) == "published"
        assert sorted(p["kind"] for p in received(settings)) == ["comment", "post"]


async def test_a_429_reads_the_http_date_retry_after_against_the_answers_date(settings: Settings) -> None:
    env = Sandboxed(settings)
    async with env.http, Client(env.server) as client:
        account = await env.account(client)
        env.script.next("PUT", POSTS, 429, {"error": "rate_limited"},
                        headers={"Retry-After": "Tue, 24 Nov 2026 12:01:30 GMT", "Date": "Tue, 24 Nov 2026 12:00:00 GMT"})
        result = await publish(client, account, "Throttled")
        assert (result["status"], result["error"]["code"], result["error"]["retryAfter"]) == ("failed", "platform_unavailable", 90)


async def test_a_duplicate_refusal_after_an_unknown_outcome_is_reconciled_not_rejected(settings: Settings) -> None:
    env = Sandboxed(settings)
    async with env.http, Client(env.server) as client:
        account = await env.account(client)
        env.script.next("PUT", POSTS, 502, {"error": "bad_gateway"}, after=True)  # stored, answer lost in a 502
        env.script.next("GET", POSTS, 503, {"error": "unavailable"})  # and the reconciling read fails: unknown
        first = await publish(client, account, "Maybe there")
        assert (first["status"], first["error"]["code"]) == ("unknown", "platform_outcome_unknown")
        env.script.next("PUT", POSTS, 403, X_DUPLICATE)  # sent again, the platform says it has it
        with anyio.fail_after(WAIT):
            status = await env.rt.publisher.publish_post_row(first["postId"])
        assert status == "published"
        assert await attempts(client, first["postId"]) == ["unknown", "reconciled"]
        assert await health(client, account) == "active" and len(received(settings)) == 1
