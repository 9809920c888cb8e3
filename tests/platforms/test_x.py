"""XAdapter end to end, through the MCP tools, against the X fake (tests/fakes/x.py, refereed by X's OpenAPI
document): media upload v2 with processing, threads resumed after a failure, exactly-once by search, rotating
refresh tokens across a restart, the error map, delete and health."""

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from fakes.scripted import Scripted
from fakes.x import DUPLICATE, SUSPENDED, FakeX, invalid
from mcp import Client
from mediagen import b64, box, make_image
from test_media_storage import write_video
from test_tokens import Setup
from toolresult import ok

from omnipost.config import Settings
from omnipost.platforms.x import XAdapter, same_text
from omnipost.scheduler import Scheduler
from refdata import requires_reference_data

pytestmark = [pytest.mark.anyio, requires_reference_data]  # the fake is refereed by X's OpenAPI document

WAIT = 30
USER = "2244994945"
X_ENV = {"OMNIPOST_X_CLIENT_ID": "omnipost-test-client", "OMNIPOST_X_CLIENT_SECRET": "omnipost-test-secret"}
CREATE = r"^/2/tweets$"
SEARCH = r"^/2/users/[0-9]+/tweets$"
MB = 1 << 20


class XSetup(Setup):
    """A server whose X is the fake (behind a Scripted front), with X's OAuth app configured, and a webhook sink."""

    def __init__(self, settings: Settings, x: FakeX | None = None) -> None:
        self.x = x or FakeX(clock=lambda: self.clock.now().timestamp())
        if USER not in self.x.users:
            self.x.add_user(USER, "omnipost_dev", "Omnipost Dev")
        self.front = Scripted(self.x.app)
        super().__init__(settings, mounts={FakeX.origin: self.front})
        self.rt.extra["environ"] = dict(X_ENV)

    async def connect(self, client: Client) -> str:
        """An X account connected with a token pair from the developer portal (verified by /2/users/me)."""
        await self.start(client, bluesky=False)
        access, refresh = self.x.issue_user_token(USER), self.x.issue_refresh_token(USER)
        self.first_refresh = refresh
        out = ok(await client.call_tool("connect_account", {"platform": "x", "accessToken": access, "refreshToken": refresh,
                                                            "expiresAt": (self.clock.now() + timedelta(hours=2)).isoformat()}))
        return str(out["id"])

    def creates(self) -> int:
        return sum(1 for m, p in self.front.seen if m == "POST" and p == "/2/tweets")

    async def run_due(self) -> dict[str, int]:
        with anyio.fail_after(WAIT):
            return await Scheduler(self.rt.db, self.rt.publisher, self.clock, worker_id="x-test",
                                   rng=random.Random(7)).run_due(self.clock.now())

    def later(self, **delta: float) -> None:
        self.clock.at = self.clock.now() + timedelta(**delta)


async def publish(client: Client, account: str, text: str, **extra: Any) -> dict[str, Any]:
    with anyio.fail_after(WAIT):
        batch = ok(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": account}], **extra}))
    return batch["results"][0] | {"batchId": batch["id"]}


async def get_post(client: Client, post_id: str) -> dict[str, Any]:
    return ok(await client.call_tool("get_post", {"postId": post_id}))


async def account_of(client: Client, account: str) -> dict[str, Any]:
    return ok(await client.call_tool("get_account", {"accountId": account}))


# --- text, images, GIF -------------------------------------------------------------------------------------------------

async def test_a_text_post_carries_reply_settings_and_links_to_the_users_status(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        result = await publish(client, account, "Hello from omnipost", platforms={"x": {"replySettings": "following"}})
        assert result["status"] == "published", result
        [post] = env.x.live_posts()
        assert (post.text, post.reply_settings, result["upstreamId"]) == ("Hello from omnipost", "following", post.id)
        assert result["url"] == f"https://x.com/omnipost_dev/status/{post.id}"
        assert env.x.tweet_bodies == [{"text": "Hello from omnipost", "reply_settings": "following"}]


async def test_four_images_are_uploaded_with_their_alt_text(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        media = [{"bytesBase64": b64(make_image("png", 200 + i, 100)), "altText": f"Picture {i}"} for i in range(4)]
        result = await publish(client, account, "Four pictures", media=media)
        assert result["status"] == "published", result
        [post] = env.x.live_posts()
        uploads = [env.x.media[k.split("_", 1)[1]] for k in post.media_keys]
        assert [(m.category, m.media_type, m.alt_text) for m in uploads] == [
            ("tweet_image", "image/png", f"Picture {i}") for i in range(4)]
        assert len(env.x.calls("media.status")) == 0  # images are ready at finalize


async def test_an_animated_gif_is_one_tweet_gif_upload(settings: Settings) -> None:
    env = XSetup(settings)
    env.x.processing_reads = 1  # ready at the first STATUS read
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        gif = make_image("gif", 120, 80, frames=4)
        result = await publish(client, account, "Moving", media=[{"bytesBase64": b64(gif), "altText": "A loop"}])
        assert result["status"] == "published", result
        [m] = env.x.media.values()
        assert (m.category, m.media_type, m.total, m.alt_text) == ("tweet_gif", "image/gif", len(gif), "A loop")
        assert env.x.live_posts()[0].media_keys == [m.key] and m.key.startswith("16_")


# --- video: chunks and processing ----------------------------------------------------------------------------------------

async def big_video(client: Client, tmp_path: Path) -> str:
    path = write_video(tmp_path / "clip.mp4", width=640, height=360, frames=24)  # real H.264, padded to 20 MB:
    with path.open("ab") as f:  # a trailing `free` box (ISO BMFF: skipped by readers)
        pad = 20 * MB - path.stat().st_size
        f.write(box(b"free", bytes(pad - 8)))
    return str(ok(await client.call_tool("upload_media", {"path": str(path), "altText": "A clip"}))["id"])


def video_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"media_roots": [tmp_path]})


async def test_a_20_mb_video_is_uploaded_in_chunks_processed_then_published(settings: Settings, tmp_path: Path) -> None:
    env = XSetup(video_settings(settings, tmp_path))
    env.x.processing_seconds = 30  # X processes the video for 30 s of the fake's clock
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        media_id = await big_video(client, tmp_path)
        first = await publish(client, account, "A long video", media=[{"mediaId": media_id, "altText": "A clip"}])
        assert first["status"] == "processing", first  # nothing waited: the post is stored, a worker checks later
        [m] = env.x.media.values()
        assert (m.category, m.total, sorted(m.segments)) == ("tweet_video", 20 * MB, [0, 1, 2, 3, 4])  # 4 MiB segments
        assert all(size <= 4 * MB for size in m.segments.values()) and env.x.live_posts() == []
        assert len(env.x.calls("media.status")) == 2  # STATUS read twice after finalize, then left `processing`
        env.later(seconds=10)
        await env.run_due()  # due again (check_after_secs), still processing: one more STATUS read
        assert (await get_post(client, first["postId"]))["status"] == "processing"
        env.later(seconds=30)
        await env.run_due()
        done = await get_post(client, first["postId"])
        assert done["status"] == "published", done
        assert len(env.x.calls("media.initialize")) == 1 and len(env.x.calls("media.append")) == 5  # never uploaded again
        [post] = env.x.live_posts()
        assert post.media_keys == [m.key] and m.alt_text == "A clip" and env.creates() == 1


async def test_a_scheduled_20_mb_video_is_published_by_the_scheduler(settings: Settings, tmp_path: Path) -> None:
    env = XSetup(video_settings(settings, tmp_path))
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        media_id = await big_video(client, tmp_path)
        at = env.clock.now() + timedelta(hours=1)
        batch = ok(await client.call_tool("schedule_post", {"text": "Later, a video", "targets": [{"accountId": account}],
                                                            "media": [{"mediaId": media_id}], "scheduledAt": at.isoformat()}))
        post_id = batch["results"][0]["postId"]
        assert env.x.media == {}  # nothing uploaded before it is due
        env.clock.at = at
        await env.run_due()  # uploads; the default fake finishes processing at the second STATUS read
        done = await get_post(client, post_id)
        assert done["status"] == "published", done
        [post] = env.x.live_posts()
        assert (post.text, len(post.media_keys)) == ("Later, a video", 1)
        states = [c.route for c in env.x.log if c.route.startswith("media.")]
        assert states == ["media.initialize", *["media.append"] * 5, "media.finalize", "media.status", "media.status"]


# --- threads: resumed, never re-sent ---------------------------------------------------------------------------------------

async def test_a_thread_of_five_failing_on_part_three_resumes_without_resending_parts_one_and_two(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        reset = int(env.clock.now().timestamp()) + 120
        env.front.next("POST", CREATE, 429, {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                                             "status": 429}, headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}, skip=2)
        thread = ["Part 2 of 5", "Part 3 of 5", "Part 4 of 5", "Part 5 of 5"]
        first = await publish(client, account, "Part 1 of 5", thread=thread)
        assert (first["status"], first["error"]["code"], first["error"]["retryAfter"]) == ("failed", "platform_unavailable", 120), first
        ok(await client.call_tool("retry_post", {"batchId": first["batchId"]}))
        env.later(seconds=120)
        await env.run_due()
        done = await get_post(client, first["postId"])
        assert done["status"] == "published", done
        sent = [b["text"] for b in env.x.tweet_bodies]  # every POST /2/tweets the fake received (the 429 never reached it)
        assert sent == ["Part 1 of 5", "Part 2 of 5", "Part 3 of 5", "Part 4 of 5", "Part 5 of 5"]
        chain = [done["upstreamId"], *done["thread"]]
        assert [(p.text, p.parent) for p in env.x.live_posts()] == [
            (t, chain[i - 1] if i else None) for i, t in enumerate(["Part 1 of 5", *thread])]


# --- exactly once ---------------------------------------------------------------------------------------------------------

async def test_a_duplicate_refusal_after_a_timeout_is_reconciled_to_the_one_post(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        text = "Read this: https://example.com/a-long/path?x=1 & tell me"  # X stores it t.co-wrapped and escaped
        env.x.drop_answer_next("tweets.create")  # X posts it, the answer is lost: a timeout
        for _ in range(2):  # and X's timeline does not show it yet: the probe after the timeout and the resend's check
            env.front.next("GET", SEARCH, 503, {"title": "Service Unavailable", "detail": "Service Unavailable",
                                                "type": "about:blank", "status": 503})
        first = await publish(client, account, text)
        assert (first["status"], first["error"]["code"]) == ("unknown", "platform_outcome_unknown"), first
        with anyio.fail_after(WAIT):
            resolved = ok(await client.call_tool("resolve_post", {"postId": first["postId"], "resolution": "resend"}))
        assert resolved["status"] == "published", resolved
        [post] = env.x.live_posts()
        assert resolved["upstreamId"] == post.id and post.text == text and "t.co" in post.stored
        assert env.creates() == 2 and env.front.answered == [("GET", f"/2/users/{USER}/tweets", 503)] * 2  # the resend got the 403


async def test_a_lost_answer_is_found_by_searching_the_accounts_posts(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        await publish(client, account, "An older post with the same words, replied to")  # noise in the timeline
        env.x.drop_answer_next("tweets.create")
        result = await publish(client, account, "Lost on the way back", media=[{"bytesBase64": b64(make_image("png", 64, 64))}])
        assert result["status"] == "published", result
        assert [p.text for p in env.x.live_posts()] == ["An older post with the same words, replied to", "Lost on the way back"]
        assert env.creates() == 2


def test_reconcile_compares_text_the_way_x_stores_it() -> None:
    assert same_text("see example.com & more", "see https://t.co/abc &amp; more")
    assert same_text("a\r\nb https://x.org/q", "a\nb https://t.co/1 https://t.co/media")  # the media link at the end
    assert not same_text("see example.com", "see https://t.co/abc too")
    assert not same_text("Part 1", "Part 2")


# --- tokens ----------------------------------------------------------------------------------------------------------------

async def test_the_rotated_refresh_token_survives_a_restart_and_the_old_one_is_refused(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.later(hours=2, minutes=1)  # the access token expired
        assert (await publish(client, account, "After the first refresh"))["status"] == "published"
    assert len(env.x.calls("oauth2.token")) == 1
    again = XSetup(settings, env.x)  # a new server process on the same data directory, the same X
    again.clock.at = env.clock.now()
    async with again.http, Client(again.server) as client:
        again.later(hours=2, minutes=1)
        result = await publish(client, account, "After a restart and a second refresh")
        assert result["status"] == "published", result
        assert (await account_of(client, account))["health"] == "active"
    assert len(env.x.calls("oauth2.token")) == 2
    async with env.x.client() as http:  # the connect's refresh token was spent by the first refresh: refused now
        answer = await http.post("https://api.x.com/2/oauth2/token", data={"grant_type": "refresh_token", "client_id": "c",
                                                                          "refresh_token": env.first_refresh})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    # No token X issued is anywhere in the database in clear (credentials are sealed; attempts keep redacted bodies).
    stored = (settings.data_dir / "omnipost.db").read_bytes() + b"".join(
        p.read_bytes() for p in settings.data_dir.glob("omnipost.db-*") if p.is_file())
    assert [t for t in env.x.grants if t.encode() in stored] == []


# --- the error map --------------------------------------------------------------------------------------------------------

async def test_a_401_refreshes_once_and_repeats_the_call(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.x.expire_tokens()  # X says 401 although the stored expiry is hours away
        assert (await publish(client, account, "Through a 401"))["status"] == "published"
        assert len(env.x.calls("oauth2.token")) == 1 and len(env.x.calls("tweets.create")) == 2


async def test_a_401_after_the_refresh_needs_reconnect(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        unauthorized = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
        for _ in range(2):
            env.front.next("POST", CREATE, 401, unauthorized)
        result = await publish(client, account, "Refused twice")
        assert (result["status"], result["error"]["code"]) == ("rejected", "platform_auth_failed"), result
        assert len(env.x.calls("oauth2.token")) == 1 and (await account_of(client, account))["health"] == "needs_reconnect"
        assert await env.events() == [("token.revoked", account)]


@pytest.mark.parametrize(("body", "code", "health"), [
    ({"title": "Forbidden", "type": "about:blank", "status": 403, "detail": "Forbidden"}, "platform_forbidden", "active"),
    (DUPLICATE, "platform_duplicate", "active"),
    ({"title": "Forbidden", "type": "about:blank", "status": 403, "detail": "You are not permitted to perform this action."},
     "platform_rejected", "active"),
    (SUSPENDED, "platform_auth_failed", "needs_reconnect"),
], ids=["forbidden", "duplicate", "not_permitted", "suspended"])
async def test_403_variants_map_to_their_families(settings: Settings, body: dict[str, Any], code: str, health: str) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.front.next("POST", CREATE, 403, body)
        result = await publish(client, account, "Refused with a 403")
        assert (result["status"], result["error"]["code"], result["error"]["retryable"]) == ("rejected", code, False), result
        assert result["error"]["platformResponse"] == body and env.x.live_posts() == []
        assert (await account_of(client, account))["health"] == health


async def test_a_suspended_user_is_refused_by_x_itself_and_needs_reconnect(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.x.users[USER].suspended = True
        result = await publish(client, account, "From a suspended account")
        assert (result["status"], result["error"]["code"]) == ("rejected", "platform_auth_failed"), result
        assert (await account_of(client, account))["health"] == "needs_reconnect"


async def test_a_429_waits_for_the_latest_exhausted_window(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        now = int(env.clock.now().timestamp())
        env.front.next("POST", CREATE, 429, {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                                             "status": 429},
                       headers={"x-rate-limit-remaining": "5", "x-rate-limit-reset": str(now + 60),
                                "x-user-limit-24hour-remaining": "0", "x-user-limit-24hour-reset": str(now + 3600)})
        result = await publish(client, account, "Too many today")
        assert (result["status"], result["error"]["code"], result["error"]["retryable"], result["error"]["retryAfter"]) == (
            "failed", "platform_unavailable", True, 3600), result


async def test_a_400_names_the_field_in_the_platform_response(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        env.x.fail_next("tweets.create", 400, invalid("reply_settings is not one of [following, mentionedUsers]",
                                                      "reply_settings", "everyone").body)
        result = await publish(client, account, "A bad field")
        assert (result["status"], result["error"]["code"]) == ("rejected", "platform_rejected"), result
        assert list(result["error"]["platformResponse"]["errors"][0]["parameters"]) == ["reply_settings"]


# --- delete and health ---------------------------------------------------------------------------------------------------

async def test_delete_removes_the_post_on_x(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        result = await publish(client, account, "Short-lived")
        assert ok(await client.call_tool("delete_post", {"postId": result["postId"]}))["status"] == "deleted"
        assert env.x.live_posts() == [] and env.x.posts[result["upstreamId"]].deleted


async def test_get_account_reports_health_from_x_whoami(settings: Settings) -> None:
    env = XSetup(settings)
    async with env.http, Client(env.server) as client:
        account = await env.connect(client)
        out = await account_of(client, account)
        assert (out["health"], out["displayName"], out["handle"]) == ("active", "Omnipost Dev", "omnipost_dev")
        env.x.expire_tokens()  # verified with one refresh
        assert (await account_of(client, account))["health"] == "active" and len(env.x.calls("oauth2.token")) == 1
        env.x.users[USER].suspended = True
        assert (await account_of(client, account))["health"] == "needs_reconnect"
        assert await env.events() == [("token.revoked", account)]
        assert len(env.x.calls("users.me")) == 5  # connect, healthy, 401 + repeated after the refresh, suspended


async def test_the_adapter_alone_uses_the_api_base_it_is_given(settings: Settings) -> None:
    from omnipost.platforms.x import api_base

    assert api_base({"OMNIPOST_X_API_BASE": "http://127.0.0.1:8123/"}) == "http://127.0.0.1:8123"
    assert api_base({}) == "https://api.x.com" and XAdapter.caller_chosen_ids is False


# --- the adapter alone ------------------------------------------------------------------------------------------------------

async def test_find_uploads_nothing_and_finds_a_post_sent_with_its_media(tmp_path: Path) -> None:
    """`find` probes every piece through reconcile only: no media upload, no post; a post already there is found."""
    from omnipost.clock import FixedClock
    from omnipost.domain import Platform
    from omnipost.platforms.base import AccountContext, MediaFile, PublishJob, find
    from omnipost.platforms.pieces import Ledger
    from omnipost.preflight.model import MediaRef, ResolvedTarget
    from test_tokens import NOW

    clock = FixedClock(NOW)
    x = FakeX(clock=lambda: clock.now().timestamp())
    x.add_user(USER, "omnipost_dev", "Omnipost Dev")
    image = tmp_path / "a.png"
    image.write_bytes(make_image("png", 64, 64))
    credentials = {"access_token": x.issue_user_token(USER), "extra": {"userId": USER, "username": "omnipost_dev"}}
    account = AccountContext("acc_1", "x", "omnipost_dev", credentials)
    target = ResolvedTarget(index=0, platform=Platform.X, account=None, text="Probe me https://example.com",
                            media=(MediaRef(0, "mediaId", None, None, media_id="med_1"),), first_comment="A comment",
                            thread=(), title=None, visibility=None, options={})
    files = (MediaFile(0, "image/png", "image", image.stat().st_size, path=image),)
    async with x.client() as http:
        adapter = XAdapter(http, clock=clock)
        job = PublishJob("post_1", "post_1", account, target, files, Ledger(clock=clock))
        with anyio.fail_after(WAIT):
            assert await find(adapter, job) is None
        assert x.media == {} and x.posts == {} and [c.route for c in x.log] == ["users.tweets"]
        with anyio.fail_after(WAIT):
            published = await adapter.publish(job)
        clock.at += timedelta(minutes=5)
        with anyio.fail_after(WAIT):
            found = await find(adapter, PublishJob("post_1", "post_1", account, target, files, Ledger(clock=clock)))
    assert found is not None and (found.upstream_id, found.first_comment_ids) == (published.upstream_id, published.first_comment_ids)
    assert len(x.media) == 1 and len(x.posts) == 2  # the probe after the publish uploaded and posted nothing more
