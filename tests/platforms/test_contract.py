"""The adapter contract (ARCHITECTURE §2, issue 10): one suite of behaviours, written once, run against every adapter
of the registry (PLATFORMS) with its fake: the sandbox in each of its three modes, Bluesky, X and Mastodon.

Each case goes through the MCP tools only (publish_post, retry_post, resolve_post, delete_post, get_post), so it
survives the rewrite of the adapter seam, and asserts what the upstream holds afterwards. A `Harness` says per
platform/mode how to connect an account, which request is a piece's irreversible create (a fault is injected on
the Nth one with tests/fakes/scripted.py), which read reconciles, what the platform's refusals look like, and
what it can do at all (`caps`): a case needing a capability the platform lacks is not generated for it (see
NOT_APPLICABLE, which says why). A case the product does not pass yet is marked xfail(strict=True) for exactly
that (case, harness) pair in KNOWN_GAPS, with its cause, so it flips when the gap is closed."""

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from datetime import timedelta
from typing import Any

import anyio
import pytest
from fakes.bluesky import PDS_URL
from fakes.mastodon import FakeMastodon
from fakes.scripted import Scripted
from fakes.x import FakeX
from mcp import Client
from mediagen import b64, make_image
from refdata import requires_reference_data
from test_media_storage import write_video
from test_tokens import PASSWORD, Setup
from toolresult import err, ok

from omnipost.config import Settings
from omnipost.platforms.bluesky import VIDEO_SERVICE
from omnipost.platforms.registry import PLATFORMS
from omnipost.runtime import SANDBOX_HOST
from omnipost.sandbox.upstream import list_posts
from omnipost.scheduler import Scheduler
from omnipost.store.models import Attempt, Post

pytestmark = pytest.mark.anyio

WAIT = 30
X_DUPLICATE = {"error": "duplicate_content", "detail": "You are not allowed to create a Tweet with duplicate content.",
               "type": "about:blank", "title": "Forbidden", "status": 403}


@dataclass(frozen=True)
class Harness:
    """How one adapter is driven and observed; the cases below are written against this only."""

    id: str
    platform: str  # a key of PLATFORMS
    create: str  # regex of the path of the call that makes a piece public (POST/PUT), where write faults are injected
    create_method: str
    read: str  # regex of the path of the read that reconciles an unknown create (GET)
    read_skip: int  # such reads a publish makes before its first create (container: the status polls)
    rate_limited: tuple[int, dict[str, Any], dict[str, str]]  # the platform's 429, with its retry-after saying 90 s
    forbidden: dict[str, Any]  # its scope/permission refusal body (HTTP 403)
    unavailable: dict[str, Any]  # its 5xx body
    duplicate: dict[str, Any] | None  # what to script as its duplicate-content refusal (None: the fake refuses by itself)
    sandbox_mode: str | None = None
    emulates: str = "x"
    caps: frozenset[str] = field(default_factory=frozenset)  # "refresh", "processing"
    refereed: bool = False  # the fake checks every call against the platform's published spec (reference data)
    refresh: str = ""  # the route (fake's name) of a token refresh, for platforms with "refresh"


SANDBOX = dict(platform="sandbox", read=r"^/v1/(posts|containers)", read_skip=0, forbidden={"error": "forbidden", "message": "Missing scope."},
               unavailable={"error": "unavailable"},
               rate_limited=(429, {"error": "rate_limited"}, {"Retry-After": "90"}))
HARNESSES = [
    Harness(id="sandbox-caller_id", create=r"^/v1/posts/[^/]+$", create_method="PUT", duplicate=X_DUPLICATE,
            sandbox_mode="caller_id", emulates="bluesky", **SANDBOX),  # type: ignore[arg-type]
    Harness(id="sandbox-own_id", create=r"^/v1/posts$", create_method="POST", duplicate=None, sandbox_mode="own_id",
            **SANDBOX),  # type: ignore[arg-type]
    Harness(id="sandbox-container", create=r"^/v1/containers/[^/]+/publish$", create_method="POST", duplicate=None,
            sandbox_mode="container", caps=frozenset({"processing"}), **(SANDBOX | {"read_skip": 2})),  # type: ignore[arg-type]
    Harness(id="bluesky", platform="bluesky", create=r"/com\.atproto\.repo\.createRecord$", create_method="POST",
            read=r"/com\.atproto\.repo\.getRecord$", read_skip=0, forbidden={"error": "Forbidden", "message": "Missing required scope"},
            unavailable={"error": "InternalServerError", "message": "Internal Server Error"},
            rate_limited=(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                          {"RateLimit-Reset": "1795521690", "RateLimit-Remaining": "0"}),  # now + 90 s (epoch seconds)
            duplicate=None, caps=frozenset({"refresh", "processing"}), refresh="com.atproto.server.refreshSession"),
    # X: POST /2/tweets creates; reconcile searches GET /2/users/{id}/tweets; the fake refuses duplicates itself.
    Harness(id="x", platform="x", create=r"^/2/tweets$", create_method="POST", read=r"^/2/users/[0-9]+/tweets$", read_skip=0,
            forbidden={"title": "Forbidden", "type": "about:blank", "status": 403, "detail": "Forbidden"},
            unavailable={"title": "Service Unavailable", "type": "about:blank", "status": 503, "detail": "Service Unavailable"},
            rate_limited=(429, {"title": "Too Many Requests", "type": "about:blank", "status": 429, "detail": "Too Many Requests"},
                          {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "1795521690"}),  # now + 90 s (epoch seconds)
            duplicate=None, caps=frozenset({"refresh", "processing"}), refresh="oauth2.token", refereed=True),
    # Mastodon has no duplicate refusal: the same Idempotency-Key answers the status it made (the fake does so itself).
    Harness(id="mastodon", platform="mastodon", create=r"^/api/v1/statuses$", create_method="POST",
            read=r"^/api/v1/(accounts/[^/]+/statuses|statuses/[^/]+/source)$", read_skip=0,
            forbidden={"error": "This action is outside the authorized scopes"}, unavailable={"error": "Service Unavailable"},
            rate_limited=(429, {"error": "Too many requests"}, {"X-RateLimit-Reset": "2026-11-24T12:01:30.000Z"}),  # now + 90 s
            duplicate=None, caps=frozenset({"processing"}), refereed=True),
]
X_USER = "2244994945"
X_ENV = {"OMNIPOST_X_CLIENT_ID": "omnipost-test-client", "OMNIPOST_X_CLIENT_SECRET": "omnipost-test-secret"}
MASTODON = "https://mastodon.example"
# Every platform with an adapter runs the contract: a new one fails here until it has a harness.
assert sorted({h.platform for h in HARNESSES}) == sorted(p for p, s in PLATFORMS.items() if s.adapter)

NOT_APPLICABLE = {
    "refresh": "the platform has no token refresh (a sandbox token never expires): 401 → refresh → success and a "
               "refused refresh cannot happen there",
    "processing": "the platform publishes synchronously: nothing is ever pending",
}

# (case, harness) pairs the product does not pass yet, and why. Each is xfail(strict=True): it flips when fixed.
KNOWN_GAPS: dict[tuple[str, str], str] = {}  # none since the pieces ledger and the processing state landed


def cases(name: str, needs: str | None = None) -> list[Any]:
    """The harnesses a case runs on: those with the capability it needs, each marked with its known gap if any."""
    out = []
    for h in HARNESSES:
        if needs is not None and needs not in h.caps:
            continue  # not applicable: NOT_APPLICABLE[needs]
        gap = KNOWN_GAPS.get((name, h.id))
        marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
        out.append(pytest.param(h, id=h.id, marks=marks + ([requires_reference_data] if h.refereed else [])))
    return out


# --- the environment: a server on the fakes, faults scripted in front of them --------------------------------

class Env(Setup):
    """Setup (tests/test_tokens.py) with the sandbox and the PDS each behind a Scripted front, the video service
    mounted where the runtime's Bluesky adapter sends videos, and one account of the harness's platform/mode."""

    def __init__(self, settings: Settings, harness: Harness) -> None:
        self.h = harness
        self.fronts: dict[str, Scripted] = {}
        self.x = FakeX(clock=lambda: self.clock.now().timestamp())
        self.x.add_user(X_USER, "contract_x", "Contract X")
        self.mastodon = FakeMastodon(MASTODON)
        self.mastodon.add_user("alice")
        super().__init__(settings, sandbox=lambda app: self._front("sandbox", app), pds=lambda app: self._front("bluesky", app),
                         mounts={VIDEO_SERVICE: self._video_app(), FakeX.origin: self._front("x", self.x.app),
                                 MASTODON: self._front("mastodon", self.mastodon.app)})
        self.mastodon.clock = lambda: self.clock.now().timestamp()
        self.rt.extra["environ"] = dict(X_ENV)  # X's OAuth app: bring a token, refresh it
        self.settings = settings

    def _front(self, platform: str, app: Any) -> Scripted:
        self.fronts[platform] = Scripted(app)
        return self.fronts[platform]

    def _video_app(self) -> Any:
        return lambda scope, receive, send: self.fake.video_app(scope, receive, send)

    @property
    def script(self) -> Scripted:
        return self.fronts[self.h.platform]

    @property
    def upstream_fake(self) -> Any:
        """The harness's platform fake (for token scripting and its request log)."""
        return self.x if self.h.platform == "x" else self.fake

    async def connect(self, client: Client) -> str:
        await self.start(client, bluesky=False)
        if self.h.platform == "bluesky":
            args = {"platform": "bluesky", "handle": "alice.test", "appPassword": PASSWORD, "pdsUrl": PDS_URL}
        elif self.h.platform == "x":
            args = {"platform": "x", "accessToken": self.x.issue_user_token(X_USER), "refreshToken": self.x.issue_refresh_token(X_USER),
                    "expiresAt": (self.clock.now() + timedelta(hours=2)).isoformat()}
        elif self.h.platform == "mastodon":
            args = {"platform": "mastodon", "instanceUrl": MASTODON, "accessToken": self.mastodon.user_token("alice")}
        else:
            args = {"platform": "sandbox", "emulates": self.h.emulates, "handle": "contract", "sandboxMode": self.h.sandbox_mode}
        self.account = ok(await client.call_tool("connect_account", args))["id"]
        return self.account

    def fail_create(self, nth: int, status: int, body: Any, headers: dict[str, str] | None = None, *, after: bool = False) -> None:
        """The nth piece create (1-based) from now answers `status` `body`: instead of acting, or after it (`after`)."""
        self.script.next(self.h.create_method, self.h.create, status, body, headers=headers, after=after, skip=nth - 1)

    def creates(self) -> int:
        """How many piece creates reached the upstream (scripted answers included)."""
        return sum(1 for m, p in self.script.seen if m == self.h.create_method and re.search(self.h.create, p))

    def upstream(self) -> list[dict[str, Any]]:
        """What the upstream holds, oldest first: {id, text, parent, media} per post (id as omnipost reports it)."""
        if self.h.platform == "sandbox":
            return [{"id": p["id"], "text": p["text"], "parent": p["replyTo"], "media": len(p["media"])}
                    for p in list_posts(self.settings.data_dir / "sandbox.db")]
        if self.h.platform == "x":
            return [{"id": p.id, "text": p.text, "parent": p.parent, "media": len(p.media_keys)} for p in self.x.live_posts()]
        if self.h.platform == "mastodon":
            return [{"id": s.id, "text": s.text, "parent": s.in_reply_to_id, "media": len(s.media_ids)}
                    for s in self.mastodon.live_statuses()]
        out = []
        for r in self.fake.posts():
            value, embed = r["value"], r["value"].get("embed") or {}
            media = len(embed.get("images", [])) + (1 if embed.get("$type") == "app.bsky.embed.video" else 0)
            out.append({"id": r["uri"], "text": value["text"], "parent": (value.get("reply") or {}).get("parent", {}).get("uri"),
                        "media": media})
        return out

    def texts(self) -> list[str]:
        return sorted(p["text"] for p in self.upstream())

    async def run_due(self) -> dict[str, int]:
        """One scheduler pass (the server's own scheduler is off in tests)."""
        with anyio.fail_after(WAIT):
            return await Scheduler(self.rt.db, self.rt.publisher, self.clock, worker_id="contract",
                                   rng=random.Random(7)).run_due(self.clock.now())


async def publish(client: Client, account: str, text: str, **extra: Any) -> dict[str, Any]:
    with anyio.fail_after(WAIT):
        batch = ok(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": account}], **extra}))
    return batch["results"][0] | {"batchId": batch["id"]}


async def post(client: Client, post_id: str) -> dict[str, Any]:
    return ok(await client.call_tool("get_post", {"postId": post_id}))


async def health(client: Client, account: str) -> str:
    return ok(await client.call_tool("get_account", {"accountId": account}))["health"]


def env_of(settings: Settings, h: Harness) -> Env:
    return Env(settings, h)


# --- the cases ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h", cases("text"))
async def test_text(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        result = await publish(client, await env.connect(client), "Contract: plain text")
        assert result["status"] == "published" and result["error"] is None
        assert env.upstream() == [{"id": result["upstreamId"], "text": "Contract: plain text", "parent": None, "media": 0}]
        assert (await post(client, result["postId"]))["status"] == "published"


@pytest.mark.parametrize("h", cases("image"))
async def test_image(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        image = {"bytesBase64": b64(make_image("png", 1080, 1080)), "altText": "A square"}
        result = await publish(client, await env.connect(client), "Contract: a picture", media=[image])
        assert result["status"] == "published", result
        assert env.upstream() == [{"id": result["upstreamId"], "text": "Contract: a picture", "parent": None, "media": 1}]


THREAD = {"thread": ["Contract: part two", "Contract: part three"], "firstComment": "Contract: the first comment"}


def assert_thread(env: Env, result: dict[str, Any]) -> None:
    """The main post, its two replies chained under it, and the first comment on the main post: each exactly once."""
    got = {p["id"]: p for p in env.upstream()}
    assert len(got) == len(env.upstream()) == 4
    main, (two, three), (comment,) = result["upstreamId"], result["thread"], result["firstComment"]
    assert (got[main]["text"], got[main]["parent"]) == ("Contract: thread", None)
    assert (got[two]["text"], got[two]["parent"]) == ("Contract: part two", main)
    assert (got[three]["text"], got[three]["parent"]) == ("Contract: part three", two)
    assert (got[comment]["text"], got[comment]["parent"]) == ("Contract: the first comment", main)


@pytest.mark.parametrize("h", cases("thread"))
async def test_thread_of_three_and_a_first_comment(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        result = await publish(client, await env.connect(client), "Contract: thread", **THREAD)
        assert result["status"] == "published", result
        assert_thread(env, result)
        assert env.creates() == 4


@pytest.mark.parametrize("h", cases("part_two_fails"))
async def test_a_failure_on_part_two_then_retry_never_resends_part_one(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        status, body, headers = h.rate_limited  # refused before acting: part two was certainly not created
        env.fail_create(2, status, body, headers)
        first = await publish(client, account, "Contract: thread", **THREAD)
        assert (first["status"], first["error"]["retryable"]) == ("failed", True), first
        assert env.texts() == ["Contract: thread"]
        ok(await client.call_tool("retry_post", {"batchId": first["batchId"]}))
        env.clock.at = env.clock.now() + timedelta(seconds=90)  # past the platform's retry-after
        await env.run_due()
        again = await post(client, first["postId"])
        assert again["status"] == "published", again
        assert_thread(env, again)
        assert env.creates() == 4 + 1  # each piece created once, plus the one refused: part one never re-sent


@pytest.mark.parametrize("h", cases("rate_limited"))
async def test_a_429_carries_the_platforms_retry_after(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        status, body, headers = h.rate_limited
        env.fail_create(1, status, body, headers)
        result = await publish(client, account, "Contract: throttled")
        assert (result["status"], result["error"]["retryable"], result["error"]["retryAfter"]) == ("failed", True, 90)
        assert env.upstream() == [] and await health(client, account) == "active"


@pytest.mark.parametrize("h", cases("refresh", needs="refresh"))
async def test_an_expired_token_is_refreshed_and_the_post_published(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.upstream_fake.expire_tokens()  # the next call answers "expired"
        result = await publish(client, account, "Contract: after a refresh")
        assert result["status"] == "published", result
        assert env.texts() == ["Contract: after a refresh"] and await health(client, account) == "active"
        assert len(env.upstream_fake.calls(h.refresh)) == 1


@pytest.mark.parametrize("h", cases("refused_refresh", needs="refresh"))
async def test_a_refused_refresh_needs_reconnect(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.upstream_fake.expire_tokens(refresh=True)  # the access token expired and the refresh is refused
        result = await publish(client, account, "Contract: no session")
        assert (result["status"], result["error"]["code"]) == ("rejected", "platform_auth_failed"), result
        assert env.upstream() == [] and await health(client, account) == "needs_reconnect"
        assert await env.events() == [("token.revoked", account)]


@pytest.mark.parametrize("h", cases("scope_refusal"))
async def test_a_scope_refusal_rejects_the_target_and_the_account_stays_healthy(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.fail_create(1, 403, h.forbidden)
        result = await publish(client, account, "Contract: not allowed")
        assert (result["status"], result["error"]["code"], result["error"]["retryable"]) == ("rejected", "platform_forbidden", False)
        assert env.upstream() == [] and await health(client, account) == "active" and await env.events() == []
        assert (await publish(client, account, "Contract: allowed again"))["status"] == "published"
        assert env.texts() == ["Contract: allowed again"]


@pytest.mark.parametrize("h", cases("unknown_reconciled"))
async def test_a_5xx_after_the_write_is_unknown_then_reconciled(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.fail_create(1, 502, h.unavailable, after=True)  # stored upstream, then the answer is a 502
        result = await publish(client, account, "Contract: through a gateway")
        assert (result["status"], result["error"]) == ("published", None), result
        assert [p["id"] for p in env.upstream()] == [result["upstreamId"]]
        assert env.creates() == 1  # found by the platform's reconcile strategy, never sent again blind


@pytest.mark.parametrize("h", cases("duplicate_after_unknown"))
async def test_a_duplicate_refusal_after_an_unknown_outcome_is_reconciled_as_published(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.fail_create(1, 502, h.unavailable, after=True)  # stored, the answer lost in a 502 ...
        for _ in range(3):  # ... and every reconciling read fails too (the adapter's own and the publisher's): unknown
            env.script.next("GET", h.read, 503, h.unavailable, skip=h.read_skip)
        first = await publish(client, account, "Contract: maybe there")
        env.script.script.clear()
        assert (first["status"], first["error"]["code"]) == ("unknown", "platform_outcome_unknown"), first
        assert err(await client.call_tool("retry_post", {"batchId": first["batchId"]}))["code"] == "validation_failed"
        if h.duplicate is not None:  # the platform's own duplicate refusal, where its fake does not give it by itself
            env.fail_create(1, 403, h.duplicate)
        with anyio.fail_after(WAIT):
            resolved = ok(await client.call_tool("resolve_post", {"postId": first["postId"], "resolution": "resend"}))
        assert resolved["status"] == "published", resolved
        assert [p["text"] for p in env.upstream()] == ["Contract: maybe there"]
        assert await health(client, account) == "active"


async def slow_processing(env: Env, h: Harness, tmp_path: Path) -> dict[str, Any]:
    """Make the platform's processing slow (sandbox: a container finishes 10 minutes after its creation; Bluesky: the
    video service is still encoding at the first two status reads; X: 10 minutes after finalize; Mastodon: the video is
    processed 5 minutes after its upload); the publish arguments that need it."""
    if h.platform == "sandbox":
        plan = await env.rt.http.post(f"{SANDBOX_HOST}/v1/_control/processing", json={"readyAfterPolls": None, "readyAfterSeconds": 600})
        assert plan.status_code == 200
        return {}
    if h.platform == "x":
        env.x.processing_seconds = 600  # X processes the video for 10 minutes of its clock
    if h.platform == "mastodon":
        env.mastodon.processing_seconds = 300  # the video is processed 5 minutes after its upload
    env.fake.video_polls = 3
    clip = write_video(tmp_path / "clip.mp4", width=640, height=360, frames=24).read_bytes()
    return {"media": [{"bytesBase64": b64(clip), "altText": "A clip"}]}


def processing_started(env: Env, h: Harness) -> int:
    """How many times the platform was asked to start processing (containers created, videos uploaded)."""
    if h.platform == "sandbox":
        return sum(1 for m, p in env.script.seen if m == "POST" and re.fullmatch(r"/v1/containers", p))
    if h.platform == "x":
        return len(env.x.calls("media.initialize"))
    if h.platform == "mastodon":
        return len(env.mastodon.calls("media.create"))
    return len(env.fake.calls("app.bsky.video.uploadVideo"))


@pytest.mark.parametrize("h", cases("pending", needs="processing"))
async def test_pending_is_polled_then_published(settings: Settings, h: Harness, tmp_path: Path) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        extra = await slow_processing(env, h, tmp_path)
        first = await publish(client, account, "Contract: processing", **extra)
        assert first["status"] == "processing", first  # persisted; no adapter waits holding the lease
        assert env.upstream() == []
        env.fake.video_polls = 1
        env.clock.at = env.clock.now() + timedelta(minutes=10)
        await env.run_due()
        done = await post(client, first["postId"])
        assert done["status"] == "published" and [p["id"] for p in env.upstream()] == [done["upstreamId"]]
        assert processing_started(env, h) == 1  # the same container / video job was checked, never started again


@pytest.mark.parametrize("h", cases("takeover", needs="processing"))
async def test_a_lapsed_lease_while_processing_is_resumed_not_resent(settings: Settings, h: Harness, tmp_path: Path) -> None:
    """A worker claims a post due for its processing check and dies mid-check: once its lease lapses another worker
    takes the post over and resumes from the ledger (the same container or video job), sending nothing twice."""
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        first = await publish(client, account, "Contract: taken over", **await slow_processing(env, h, tmp_path))
        assert first["status"] == "processing", first
        env.clock.at = env.clock.now() + timedelta(minutes=10)
        async with env.rt.db.session() as s:  # what the dead worker left: claimed, its attempt open, its lease lapsing
            row = await s.get(Post, first["postId"])
            assert row is not None
            row.status, row.lease_owner, row.lease_until = "publishing", "worker-gone", env.clock.now() + timedelta(minutes=5)
            s.add(row)
            s.add(Attempt(id="att_dead_worker", post_id=row.id, number=9, started_at=env.clock.now()))
            await s.commit()
        env.fake.video_polls = 1
        assert (await env.run_due())["claimed"] == 0  # its lease still runs: left alone
        env.clock.at = env.clock.now() + timedelta(minutes=6)
        assert (await env.run_due())["reconciled"] == 1
        done = await post(client, first["postId"])
        assert done["status"] == "published" and [p["id"] for p in env.upstream()] == [done["upstreamId"]]
        assert processing_started(env, h) == 1 and env.creates() == 1


@pytest.mark.parametrize("h", cases("delete"))
async def test_delete(settings: Settings, h: Harness) -> None:
    env = env_of(settings, h)
    async with env.http, Client(env.server) as client:
        result = await publish(client, await env.connect(client), "Contract: short-lived")
        assert env.texts() == ["Contract: short-lived"]
        assert ok(await client.call_tool("delete_post", {"postId": result["postId"]}))["status"] == "deleted"
        assert env.upstream() == [] and (await post(client, result["postId"]))["status"] == "deleted"


def test_every_case_runs_on_every_harness_unless_not_applicable_or_a_known_gap() -> None:
    """The parametrization itself: a harness lacks a case only for a capability NOT_APPLICABLE explains."""
    assert set(NOT_APPLICABLE) == {c for h in HARNESSES for c in h.caps}
    assert {h for _, h in KNOWN_GAPS} <= {h.id for h in HARNESSES}


def test_no_adapter_sleeps() -> None:
    """ARCHITECTURE §2: an adapter never waits while it holds a post; a slow platform answers pieces.Processing."""
    import ast

    import omnipost.platforms as package

    sleepers = []
    for path in sorted(Path(package.__file__).parent.rglob("*.py")):  # the platform packages (bluesky/, x/) too
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name == "sleep":
                    sleepers.append(f"{path.name}:{node.lineno}")
    assert sleepers == []
