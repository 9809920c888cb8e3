"""resolve_post, the way out of `unknown`, and retry_post's note about unknown targets: through the MCP tools with
the embedded sandbox and the fake Bluesky PDS.

An unknown target is made the way the product makes one: the request reached the platform (or not) and the answer
was lost, and reconciliation could not tell. With Bluesky that is scripted on the fake (the createRecord answer is
dropped and the reconciling getRecord fails); the sandbox never faults a read, so there the lost answer is written
as the fan-out would write it (`lost_answer`), after sending the request upstream through the adapter or not.
"""

from typing import Any

import anyio
import pytest
from fakes.bluesky import PDS_URL
from mcp import Client
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from sqlalchemy import update as sa_update
from sqlmodel import col
from test_store import Backend, backend  # noqa: F401 - the fixture: SQLite and PostgreSQL
from test_tokens import PASSWORD, Setup
from test_webhooks import HOOK
from toolresult import err, ok

from omnipost.errors import UnknownOutcomeError
from omnipost.config import Settings
from omnipost.platforms.sandbox import SandboxAdapter
from omnipost.sandbox.upstream import list_posts
from omnipost.store.models import Account, Attempt, Post
from omnipost.store.db import new_id

pytestmark = pytest.mark.anyio

UNKNOWN = {"code": "platform_outcome_unknown", "message": "The answer was lost.", "retryable": False}


class Env(Setup):
    """Setup's server (sandbox + fake PDS + webhook sink) with one sandbox and one Bluesky account, post.published
    subscribed. The sandbox account emulates Bluesky: caller-chosen ids, whose exactly-once these tests hold it to."""

    client: Client
    sandbox: str
    bluesky: str

    async def open(self, client: Client) -> None:
        self.client = client
        self.sink.secret = ok(await client.call_tool("add_webhook", {"url": HOOK, "events": ["post.published"]}))["secret"]
        self.sandbox = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky",
                                                                     "handle": "sam.test"}))["id"]
        self.bluesky = ok(await client.call_tool("connect_account", {"platform": "bluesky", "handle": "alice.test",
                                                                     "appPassword": PASSWORD, "pdsUrl": PDS_URL}))["id"]

    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        return await self.client.call_tool(tool, args)

    async def draft(self, account: str, text: str) -> str:
        batch = ok(await self.call("publish_post", {"text": text, "draft": True, "targets": [{"accountId": account}]}))
        return batch["results"][0]["postId"]

    async def lost_answer(self, post_id: str, *, reached: bool) -> None:
        """A stored draft becomes what a send whose answer was lost (and could not be reconciled) leaves behind."""
        publisher = self.rt.publisher
        async with publisher.db.session() as s:
            post = await s.get(Post, post_id)
            assert post is not None
            account = await s.get(Account, post.account_id)
            assert account is not None
        if reached:  # the request got through upstream; only its answer never came back
            await publisher.adapters[account.platform].publish(await publisher._job(post, account))
        async with publisher.db.session() as s:
            await s.exec(sa_update(Post).where(col(Post.id) == post_id).values(status="unknown", error=UNKNOWN))
            s.add(Attempt(id=new_id("att"), post_id=post_id, number=1, started_at=self.clock.now(), finished_at=self.clock.now(),
                          outcome="unknown", error_code=UNKNOWN["code"]))
            await s.commit()

    async def published_events(self, post_id: str) -> list[dict[str, Any]]:
        await self.rt.webhooks.deliver_due(self.clock.now())
        return [r.json["data"] for r in self.sink.accepted if r.json["type"] == "post.published" and r.json["data"]["postId"] == post_id]


@pytest.fixture
async def env(settings: Settings, backend: Backend) -> Any:
    e = Env(settings.model_copy(update={"database_url": backend.url}))
    with anyio.fail_after(60):
        async with e.http, Client(e.server) as client:
            await e.open(client)
            yield e


def sandbox_posts(settings: Settings, post_id: str) -> list[dict[str, Any]]:
    return [p for p in list_posts(settings.data_dir / "sandbox.db") if p["id"] == post_id]


def last_attempt(detail: dict[str, Any]) -> dict[str, Any]:
    return detail["attempts"][-1]


# ---- it is there ---------------------------------------------------------------------------------


async def test_it_is_there_is_checked_on_the_sandbox_and_publishes(env: Env, settings: Settings) -> None:
    post_id = await env.draft(env.sandbox, "Lost answer, post arrived")
    await env.lost_answer(post_id, reached=True)
    url = sandbox_posts(settings, post_id)[0]["url"]
    result = ok(await env.call("resolve_post", {"postId": post_id, "resolution": "published", "upstream": url}))
    assert (result["status"], result["upstreamId"], result["url"], result["error"]) == ("published", post_id, url, None)
    assert result["warnings"] == []
    detail = ok(await env.call("get_post", {"postId": post_id}))
    assert detail["status"] == "published" and detail["publishedAt"] is not None
    attempt = last_attempt(detail)
    assert attempt["outcome"] == "resolved_published" and attempt["number"] == 2
    assert '"verifiedUpstream": true' in attempt["response"] and '"resolvedBy": "the local user"' in attempt["response"]
    assert [e["upstreamId"] for e in await env.published_events(post_id)] == [post_id]
    assert len(sandbox_posts(settings, post_id)) == 1


async def test_it_is_there_is_refused_when_the_platform_has_no_such_post(env: Env, settings: Settings) -> None:
    post_id = await env.draft(env.sandbox, "Lost answer, post never arrived")
    await env.lost_answer(post_id, reached=False)
    error = err(await env.call("resolve_post", {"postId": post_id, "resolution": "published",
                                                "upstream": f"https://sandbox.omnipost.local/sam.test/{post_id}"}))
    assert (error["code"], error["rule"]) == ("validation_failed", "upstream")
    assert "resend" in error["remediation"]
    detail = ok(await env.call("get_post", {"postId": post_id}))
    assert detail["status"] == "unknown" and len(detail["attempts"]) == 1  # nothing changed
    assert await env.published_events(post_id) == []


async def test_it_is_there_must_name_the_post_the_platform_has(env: Env) -> None:
    post_id = await env.draft(env.sandbox, "Lost answer, wrong link given")
    await env.lost_answer(post_id, reached=True)
    error = err(await env.call("resolve_post", {"postId": post_id, "resolution": "published", "upstream": "post_somebody_else"}))
    assert (error["code"], error["rule"]) == ("validation_failed", "upstream")
    assert ok(await env.call("get_post", {"postId": post_id}))["status"] == "unknown"


async def test_a_platform_that_cannot_tell_takes_the_users_word_recorded_as_unverified(env: Env) -> None:
    class CannotTell(SandboxAdapter):  # the real adapter on the real sandbox, on a platform with no way to look a post up
        async def _get(self, account: Any, post_id: str) -> None:  # its reconcile read
            raise UnknownOutcomeError("This platform cannot look a post up.")

    real = env.rt.publisher.adapters["sandbox"]
    assert isinstance(real, SandboxAdapter)
    post_id = await env.draft(env.sandbox, "Lost answer, nobody can check")
    await env.lost_answer(post_id, reached=False)
    env.rt.publisher.adapters["sandbox"] = CannotTell(real.http, real.base_url, real.timeout)
    url = "https://x.example/sam/status/1234"
    result = ok(await env.call("resolve_post", {"postId": post_id, "resolution": "published", "upstream": url}))
    assert (result["status"], result["upstreamId"], result["url"]) == ("published", url, url)
    assert [w["code"] for w in result["warnings"]] == ["resolve.unverified"]
    attempt = last_attempt(ok(await env.call("get_post", {"postId": post_id})))
    assert attempt["outcome"] == "resolved_unverified" and '"verifiedUpstream": false' in attempt["response"]
    assert len(await env.published_events(post_id)) == 1


async def test_bluesky_unknown_after_a_lost_answer_is_resolved_by_reading_the_record(env: Env) -> None:
    env.fake.drop_answer_next("com.atproto.repo.createRecord")  # it takes effect; its answer is lost
    env.fake.fail_next("com.atproto.repo.getRecord", 500, {"error": "InternalServerError", "message": "Internal Server Error"})
    batch = ok(await env.call("publish_post", {"text": "Bluesky, answer lost", "targets": [{"accountId": env.bluesky}]}))
    target = batch["results"][0]
    assert (target["status"], target["error"]["code"]) == ("unknown", "platform_outcome_unknown")
    [record] = env.fake.posts()
    web = "https://bsky.app/profile/alice.test/post/" + record["uri"].rsplit("/", 1)[-1]
    result = ok(await env.call("resolve_post", {"postId": target["postId"], "resolution": "published", "upstream": web}))
    assert (result["status"], result["upstreamId"], result["extras"]) == ("published", record["uri"], {"uri": record["uri"], "cid": record["cid"]})
    assert last_attempt(ok(await env.call("get_post", {"postId": target["postId"]})))["outcome"] == "resolved_published"


async def test_bluesky_refuses_it_is_there_when_no_record_exists(env: Env) -> None:
    post_id = await env.draft(env.bluesky, "Bluesky, never arrived")
    await env.lost_answer(post_id, reached=False)
    error = err(await env.call("resolve_post", {"postId": post_id, "resolution": "published",
                                                "upstream": "at://did:plc:nobody/app.bsky.feed.post/3kabcdefghijk"}))
    assert (error["code"], error["rule"]) == ("validation_failed", "upstream")
    assert env.fake.posts() == []


# ---- it is not, send it --------------------------------------------------------------------------


@pytest.mark.parametrize("reached", [False, True])
async def test_resend_publishes_the_sandbox_post_exactly_once(env: Env, settings: Settings, reached: bool) -> None:
    post_id = await env.draft(env.sandbox, f"Resend, reached={reached}")
    await env.lost_answer(post_id, reached=reached)
    result = ok(await env.call("resolve_post", {"postId": post_id, "resolution": "resend"}))
    assert (result["status"], result["upstreamId"], result["error"]) == ("published", post_id, None)
    assert len(sandbox_posts(settings, post_id)) == 1  # the same deterministic id: a post that did arrive is not doubled
    detail = ok(await env.call("get_post", {"postId": post_id}))
    assert [a["outcome"] for a in detail["attempts"]] == ["unknown", "resolved_resend", "published"]
    assert len(await env.published_events(post_id)) == 1
    batch = ok(await env.call("list_posts", {"status": "published"}))
    assert post_id in [p["postId"] for p in batch["posts"]]


async def test_resend_on_bluesky_reuses_the_record_key(env: Env) -> None:
    env.fake.drop_answer_next("com.atproto.repo.createRecord")
    env.fake.fail_next("com.atproto.repo.getRecord", 500, {"error": "InternalServerError", "message": "Internal Server Error"})
    batch = ok(await env.call("publish_post", {"text": "Bluesky, resend", "targets": [{"accountId": env.bluesky}]}))
    post_id = batch["results"][0]["postId"]
    assert batch["results"][0]["status"] == "unknown"
    result = ok(await env.call("resolve_post", {"postId": post_id, "resolution": "resend"}))
    [record] = env.fake.posts()
    assert (result["status"], result["upstreamId"]) == ("published", record["uri"])
    [event] = await env.published_events(post_id)  # the webhook carries Bluesky's fields under extras too
    assert (event["upstreamId"], event["extras"]) == (record["uri"], {"uri": record["uri"], "cid": record["cid"]})


async def test_resolve_replays_for_the_same_idempotency_key(env: Env, settings: Settings) -> None:
    post_id = await env.draft(env.sandbox, "Resend once, asked twice")
    await env.lost_answer(post_id, reached=False)
    args = {"postId": post_id, "resolution": "resend", "idempotencyKey": "resolve-1"}
    first = ok(await env.call("resolve_post", args))
    assert ok(await env.call("resolve_post", args)) == first
    assert len(ok(await env.call("get_post", {"postId": post_id}))["attempts"]) == 3
    assert len(sandbox_posts(settings, post_id)) == 1


# ---- refusals ------------------------------------------------------------------------------------


async def test_only_an_unknown_target_can_be_resolved(env: Env) -> None:
    batch = ok(await env.call("publish_post", {"text": "Published fine", "targets": [{"accountId": env.sandbox}]}))
    post_id = batch["results"][0]["postId"]
    for args in ({"resolution": "resend"}, {"resolution": "published", "upstream": post_id}):
        error = err(await env.call("resolve_post", {"postId": post_id, **args}))
        assert (error["code"], error["rule"]) == ("validation_failed", "postId")
    draft = await env.draft(env.sandbox, "Still a draft")
    assert err(await env.call("resolve_post", {"postId": draft, "resolution": "resend"}))["rule"] == "postId"
    missing = err(await env.call("resolve_post", {"postId": "post_" + "0" * 26, "resolution": "resend"}))
    assert (missing["code"], missing["rule"]) == ("not_found", "postId")
    assert len(ok(await env.call("get_post", {"postId": post_id}))["attempts"]) == 1


async def test_the_upstream_argument_goes_with_published_only(env: Env) -> None:
    post_id = await env.draft(env.sandbox, "Arguments checked")
    await env.lost_answer(post_id, reached=False)
    no_link = err(await env.call("resolve_post", {"postId": post_id, "resolution": "published"}))
    extra = err(await env.call("resolve_post", {"postId": post_id, "resolution": "resend", "upstream": "something"}))
    assert [(e["code"], e["rule"]) for e in (no_link, extra)] == [("validation_failed", "upstream")] * 2
    bad = err(await env.call("resolve_post", {"postId": post_id, "resolution": "maybe"}))
    assert bad["code"] == "validation_failed"
    assert ok(await env.call("get_post", {"postId": post_id}))["status"] == "unknown"


# ---- retry_post explains ---------------------------------------------------------------------------


async def test_retry_post_says_an_unknown_target_was_not_retried_and_how_to_resolve_it(env: Env, settings: Settings) -> None:
    other = ok(await env.call("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "kim.test"}))["id"]
    batch = ok(await env.call("publish_post", {"text": "Two targets", "draft": True,
                                               "targets": [{"accountId": env.sandbox}, {"accountId": other}]}))
    unknown_id, failed_id = (r["postId"] for r in batch["results"])
    await env.lost_answer(unknown_id, reached=False)
    error = err(await env.call("retry_post", {"batchId": batch["id"]}))  # nothing failed: the refusal names the unknown one
    assert (error["code"], error["rule"]) == ("validation_failed", "batchId")
    assert unknown_id in error["message"] and "resolve_post" in error["remediation"]
    async with env.rt.publisher.db.session() as s:
        await s.exec(sa_update(Post).where(col(Post.id) == failed_id).values(
            status="failed", error={"code": "platform_unavailable", "message": "down", "retryable": True}))
        await s.commit()
    retried = ok(await env.call("retry_post", {"batchId": batch["id"]}))
    by_id = {r["postId"]: r for r in retried["results"]}
    assert by_id[unknown_id]["status"] == "unknown" and by_id[failed_id]["status"] == "queued"
    [note] = by_id[unknown_id]["warnings"]
    assert (note["code"], note["rule"]) == ("retry.outcome_unknown", "retry.outcome_unknown")
    assert "resolve_post" in note["remediation"] and unknown_id in note["remediation"]
    assert by_id[failed_id]["warnings"] == []
    assert sandbox_posts(settings, unknown_id) == []


async def test_resolve_post_is_announced_as_a_tool_that_may_publish(env: Env) -> None:
    tool = {t.name: t for t in (await env.client.list_tools()).tools}["resolve_post"]
    assert tool.annotations is not None
    assert (tool.annotations.open_world_hint, tool.annotations.read_only_hint, tool.annotations.idempotent_hint) == (True, False, False)
    assert tool.input_schema["properties"]["resolution"]["enum"] == ["published", "resend"]
    assert tool.input_schema["required"] == ["postId", "resolution"]


async def test_a_post_whose_thread_stopped_part_way_is_not_there_and_resend_completes_it(env: Env, settings: Settings) -> None:
    batch = ok(await env.call("publish_post", {"text": "Thread, part one", "thread": ["Part two", "Part three"], "draft": True,
                                               "targets": [{"accountId": env.sandbox}]}))
    post_id = batch["results"][0]["postId"]
    await env.lost_answer(post_id, reached=True)
    publisher = env.rt.publisher
    async with publisher.db.session() as s:
        post, account = await s.get(Post, post_id), await s.get(Account, env.sandbox)
        assert post is not None and account is not None
    job = await publisher._job(post, account)
    await publisher.adapters["sandbox"].delete(job.account, f"{post_id}-t2")  # the send stopped after part two
    url = sandbox_posts(settings, post_id)[0]["url"]
    error = err(await env.call("resolve_post", {"postId": post_id, "resolution": "published", "upstream": url}))
    assert (error["code"], error["rule"]) == ("validation_failed", "upstream") and "resend" in error["remediation"]
    result = ok(await env.call("resolve_post", {"postId": post_id, "resolution": "resend"}))
    assert result["status"] == "published" and len(result["thread"]) == 2
    pieces = [p["id"] for p in list_posts(settings.data_dir / "sandbox.db") if p["id"].startswith(post_id)]
    assert sorted(pieces) == [post_id, f"{post_id}-t1", f"{post_id}-t2"]  # each piece once
