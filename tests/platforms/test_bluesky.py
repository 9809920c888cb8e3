"""BlueskyAdapter against the fake PDS (tests/fakes/bluesky.py): wire shapes, sessions, exactly-once, errors."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from fakes.bluesky import NOW, PDS_URL, VIDEO_URL, FakeBluesky, unix_clock
from mediagen import make_image, make_video
from omnipost.domain import Platform
from omnipost.errors import (
    PlatformAuthError,
    PlatformForbiddenError,
    PlatformRateLimitError,
    PlatformRejectedError,
    PlatformUnavailableError,
    UnknownOutcomeError,
)
from omnipost.media.probe import MediaFacts
from omnipost.platforms.base import AccountContext, MediaFile, PublishJob, find
from omnipost.platforms.pieces import Ledger, Processing
from omnipost.platforms.bluesky import (
    TID_ALPHABET,
    TID_PATTERN,
    BlueskyAdapter,
    build_post,
    connect_bluesky,
    tid_for,
)
from omnipost.preflight.model import AccountInfo, MediaRef, ResolvedTarget

pytestmark = pytest.mark.anyio

WAIT = 10  # seconds a test may take before it counts as hung
KEY = "post_01m85ztxb2gjkfykw09f91z1zy"  # an omnipost post id (ULID)
KEY2 = "post_01m85zv0000000000000000000"
PASSWORD = "abcd-efgh-ijkl-mnop"
BOB = "did:plc:bobbobbobbobbobbobbobbob"
PAGE_IP = "93.184.216.34"  # a public address: the fetcher allows it, and the test client routes it to PAGES
CREATE = "com.atproto.repo.createRecord"
GET = "com.atproto.repo.getRecord"
REFRESH = "com.atproto.server.refreshSession"
PNG_THUMB = make_image("png", 64, 32)


async def _article(request: Request) -> Response:
    assert request.headers["host"] == "news.example"  # the fetcher pins the address but keeps the name
    return HTMLResponse('<html><head><title>ignored</title><meta property="og:title" content="Big &amp; news">'
                        '<meta property="og:description" content="  All   of it ">'
                        '<meta property="og:image" content="/thumb.png"></head><body>x</body></html>')


async def _thumb(request: Request) -> Response:
    return Response(PNG_THUMB, media_type="image/png")


PAGES = Starlette(routes=[Route("/article", _article), Route("/thumb.png", _thumb)])


class FakeResolver:
    """DNS from a table; unknown names fail like NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int) -> list[str]:
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return list(self.table[host])


@dataclass
class Env:
    fake: FakeBluesky
    http: httpx2.AsyncClient
    account: AccountContext
    tmp: Path
    persisted: list[tuple[str, dict[str, Any]]] = field(default_factory=lambda: [])

    def adapter(self, *, clock: float = NOW, **kw: Any) -> BlueskyAdapter:
        async def on_credentials(account_id: str, credentials: dict[str, Any]) -> None:
            self.persisted.append((account_id, credentials))

        return BlueskyAdapter(self.http, on_credentials=on_credentials, clock=unix_clock(clock), poll_interval=0,
                              video_service=VIDEO_URL, **kw)

    @property
    def did(self) -> str:
        return str(self.account.credentials["did"])

    def stored(self, key: str) -> dict[str, Any]:
        record = self.fake.record(self.did, tid_for(key))
        assert record is not None, f"no record under {key}"
        return record

    def image(self, index: int, fmt: str, width: int, height: int, alt: str | None) -> MediaFile:
        path = self.tmp / f"img{index}.{fmt}"
        path.write_bytes(make_image(fmt, width, height))
        return MediaFile(index=index, mime=f"image/{fmt}", kind="image", size=path.stat().st_size, path=path,
                         width=width, height=height, alt_text=alt)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    fake = FakeBluesky()
    fake.add_account("alice.test", PASSWORD)
    fake.add_handle("bob.test", BOB)
    async with fake.client(mounts={f"https://{PAGE_IP}": PAGES}) as http:
        session = await connect_bluesky(http, "alice.test", PASSWORD, PDS_URL, clock=unix_clock(NOW))
        account = AccountContext(id="acc_1", platform="bluesky", handle=session["handle"], credentials=session["credentials"],
                                 defaults={"did": session["did"], "pdsUrl": session["pdsUrl"]})
        yield Env(fake, http, account, tmp_path)


def make_job(account: AccountContext, text: str = "hello bluesky", *, key: str = KEY, thread: tuple[str, ...] = (),
             first_comment: str | None = None, files: tuple[MediaFile, ...] = (), langs: list[str] | None = None) -> PublishJob:
    refs = tuple(MediaRef(index=f.index, source="mediaId", alt_text=f.alt_text, media_id=f"med_{f.index}",
                          facts=MediaFacts(kind=f.kind, mime=f.mime or "", size=f.size or 0, width=f.width, height=f.height,  # type: ignore[arg-type]
                                           duration=None, frames=1, sha256="0" * 64))
                 for f in files)
    info = AccountInfo(id=account.id, platform=Platform.BLUESKY, handle=account.handle, defaults=dict(account.defaults))
    target = ResolvedTarget(index=0, platform=Platform.BLUESKY, account=info, text=text, media=refs, first_comment=first_comment,
                            thread=thread, title=None, visibility=None, options={"langs": langs} if langs else {})
    return PublishJob(post_id=key, upstream_key=key, account=account, target=target, media=files)


def spans(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each facet as (the text its byte range covers, its feature)."""
    raw = record["text"].encode("utf-8")
    return [(raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode("utf-8"), f["features"][0]) for f in record["facets"]]


def ref(record: dict[str, Any]) -> dict[str, str]:
    return {"uri": record["uri"], "cid": record["cid"]}


# --- connecting ------------------------------------------------------------------------------------


async def test_connect_returns_the_session_and_the_pds_from_the_did_document(env: Env) -> None:
    with anyio.fail_after(WAIT):
        session = await connect_bluesky(env.http, "alice.test", PASSWORD, PDS_URL + "/", clock=unix_clock(NOW))
    assert session["handle"] == "alice.test" and session["did"].startswith("did:plc:")
    assert session["pdsUrl"] == PDS_URL
    assert set(session["credentials"]) == {"accessJwt", "refreshJwt", "did", "pdsUrl"}
    assert PASSWORD not in json.dumps(session)


async def test_connect_with_a_wrong_password_is_an_auth_error(env: Env) -> None:
    with anyio.fail_after(WAIT), pytest.raises(PlatformAuthError) as caught:
        await connect_bluesky(env.http, "alice.test", "wrong", PDS_URL, clock=unix_clock(NOW))
    assert caught.value.status == 401
    assert caught.value.platform_response == {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}


# --- publishing ------------------------------------------------------------------------------------


async def test_text_with_link_mention_and_tag_facets_in_byte_offsets(env: Env) -> None:
    text = "Héllo @bob.test, see https://example.com/a?b=1 and #omnipost ✨ cc @nobody.test"
    with anyio.fail_after(WAIT):
        published = await env.adapter().publish(make_job(env.account, text, langs=["en", "fr"]))
    stored = env.stored(KEY)
    record = stored["value"]
    assert record["text"] == text and record["langs"] == ["en", "fr"] and record["createdAt"] == "2026-11-24T12:00:00.000Z"
    assert spans(record) == [
        ("@bob.test", {"$type": "app.bsky.richtext.facet#mention", "did": BOB}),
        ("https://example.com/a?b=1", {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/a?b=1"}),
        ("#omnipost", {"$type": "app.bsky.richtext.facet#tag", "tag": "omnipost"}),
    ]  # @nobody.test does not resolve: its facet is dropped, not sent with an empty DID
    assert [c.params["handle"] for c in env.fake.calls("com.atproto.identity.resolveHandle")] == ["bob.test", "nobody.test"]
    rkey = tid_for(KEY)
    assert published.upstream_id == published.extras["uri"] == stored["uri"] == f"at://{env.did}/app.bsky.feed.post/{rkey}"
    assert published.extras["cid"] == stored["cid"] and published.already_existed is False and published.http_status == 200
    assert published.url == f"https://bsky.app/profile/{env.did}/post/{rkey}"
    assert "embed" not in record  # no resolver was given, so no link card ...
    assert published.response is not None and "no resolver" in published.response["warnings"][0]  # ... and it says so


async def test_images_carry_alt_aspect_ratio_and_the_uploaded_blobs(env: Env) -> None:
    files = (env.image(0, "png", 1200, 800, "Sales chart"), env.image(1, "jpeg", 1080, 1080, None))
    with anyio.fail_after(WAIT):
        await env.adapter().publish(make_job(env.account, "Two charts", files=files))
    embed = env.stored(KEY)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [(i["alt"], i["aspectRatio"]) for i in embed["images"]] == [
        ("Sales chart", {"width": 1200, "height": 800}), ("", {"width": 1080, "height": 1080})]
    uploads = env.fake.calls("com.atproto.repo.uploadBlob")
    assert [(c.content_type, c.size) for c in uploads] == [("image/png", files[0].size), ("image/jpeg", files[1].size)]
    for image, f in zip(embed["images"], files):
        blob = image["image"]
        assert blob["$type"] == "blob" and blob["mimeType"] == f.mime and blob["size"] == f.size
        assert env.fake.blobs[blob["ref"]["$link"]]["data"] == f.path.read_bytes()  # type: ignore[union-attr]


async def test_video_goes_through_the_video_service(env: Env) -> None:
    path = env.tmp / "clip.mp4"
    path.write_bytes(make_video(width=1280, height=720, duration=5.0))
    video = MediaFile(index=0, mime="video/mp4", kind="video", size=path.stat().st_size, path=path, width=1280, height=720, alt_text="A clip")
    job = make_job(env.account, "Clip", files=(video,))
    adapter = env.adapter()
    with anyio.fail_after(WAIT):
        with pytest.raises(Processing) as still:  # one status read per try: the job is still encoding
            await adapter.publish(job)
        assert env.fake.posts() == [] and job.ledger.get("post").status == "pending"  # type: ignore[union-attr]
        assert still.value.handle == env.fake.calls("app.bsky.video.getJobStatus")[0].params["jobId"]
        await adapter.publish(job)  # the next try reads the same job (from the ledger), not uploading again
    embed = env.stored(KEY)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.video" and embed["alt"] == "A clip"
    assert embed["aspectRatio"] == {"width": 1280, "height": 720}
    assert embed["video"]["mimeType"] == "video/mp4" and embed["video"]["size"] == video.size
    service_auth = env.fake.calls("com.atproto.server.getServiceAuth")[0]
    assert service_auth.params["aud"] == "did:web:pds.test" and service_auth.params["lxm"] == "com.atproto.repo.uploadBlob"
    upload = env.fake.calls("app.bsky.video.uploadVideo")[0]
    assert upload.auth == "service" and upload.params["did"] == env.did and upload.size == video.size
    assert len(env.fake.calls("app.bsky.video.getJobStatus")) == 2 and len(env.fake.calls("app.bsky.video.uploadVideo")) == 1


async def test_without_a_video_service_the_video_is_rejected_clearly(tmp_path: Path) -> None:
    fake = FakeBluesky(video_enabled=False)
    fake.add_account("alice.test", PASSWORD)
    path = tmp_path / "clip.mp4"
    path.write_bytes(make_video())
    video = MediaFile(index=0, mime="video/mp4", kind="video", size=path.stat().st_size, path=path, width=1280, height=720)
    async with fake.client() as http:
        session = await connect_bluesky(http, "alice.test", PASSWORD, PDS_URL, clock=unix_clock(NOW))
        account = AccountContext(id="acc_1", platform="bluesky", handle="alice.test", credentials=session["credentials"])
        adapter = BlueskyAdapter(http, clock=unix_clock(NOW), poll_interval=0, video_service=VIDEO_URL)
        with anyio.fail_after(WAIT), pytest.raises(PlatformRejectedError, match="Video upload is not available"):
            await adapter.publish(make_job(account, "Clip", files=(video,)))
    assert fake.posts() == []


# --- the daily video quota (deep rule bluesky.media.video_quota) ------------------------------------

QUOTA = "bluesky.media.video_quota"


def video_job(env: Env, *, key: str = KEY, size: int = 4096) -> tuple[PublishJob, dict[int, MediaFacts]]:
    path = env.tmp / f"{key}.mp4"
    path.write_bytes(make_video(width=1280, height=720, duration=5.0, size=size))
    video = MediaFile(index=0, mime="video/mp4", kind="video", size=size, path=path, width=1280, height=720)
    job = make_job(env.account, "Clip", key=key, files=(video,))
    return job, {m.index: m.facts for m in job.target.media if m.facts is not None}


async def test_upload_limits_are_read_with_a_service_token_for_the_video_service(env: Env) -> None:
    with anyio.fail_after(WAIT):
        limits = await env.adapter().upload_limits(env.account)
    assert limits == {"canUpload": True, "remainingDailyVideos": 25, "remainingDailyBytes": 10_000_000_000}
    auth = env.fake.calls("com.atproto.server.getServiceAuth")[-1]
    assert (auth.params["aud"], auth.params["lxm"]) == ("did:web:video.test", "app.bsky.video.getUploadLimits")
    assert env.fake.calls("app.bsky.video.getUploadLimits")[0].auth == "service"


async def test_the_quota_check_passes_until_the_days_videos_are_used_up(env: Env) -> None:
    env.fake.daily_videos = 1
    adapter = env.adapter()
    job, facts = video_job(env)
    with anyio.fail_after(WAIT):
        assert await adapter.deep_check(env.account, job.target, facts) == []
        with pytest.raises(Processing):
            await adapter.publish(job)  # the upload counts against today's allowance
        assert env.fake.used_today(env.did) == (1, 4096)
        later, later_facts = video_job(env, key=KEY2)
        (finding,) = await adapter.deep_check(env.account, later.target, later_facts)
    assert (finding.rule, finding.severity, finding.path, finding.retryable) == (QUOTA, "error", "targets[0].media[0]", True)
    assert finding.platform_response == {"canUpload": False, "remainingDailyVideos": 0, "remainingDailyBytes": 10_000_000_000 - 4096,
                                         "error": "daily_limit_exceeded", "message": "You have reached your daily video upload limit"}
    assert "daily video upload limit" in finding.message  # the service's own words reach the user


async def test_the_quota_check_fails_a_video_larger_than_the_bytes_left_today(env: Env) -> None:
    env.fake.daily_video_bytes = 10_000
    job, facts = video_job(env, size=12_000)
    with anyio.fail_after(WAIT):
        (finding,) = await env.adapter().deep_check(env.account, job.target, facts)
    assert (finding.rule, finding.severity, finding.actual, finding.limit) == (QUOTA, "error", 12_000, 10_000)
    small, small_facts = video_job(env, key=KEY2, size=9_000)
    with anyio.fail_after(WAIT):
        assert await env.adapter().deep_check(env.account, small.target, small_facts) == []


async def test_an_account_the_video_service_refuses_fails_with_the_services_error(env: Env) -> None:
    env.fake.refuse_video(env.did)
    job, facts = video_job(env)
    with anyio.fail_after(WAIT):
        (finding,) = await env.adapter().deep_check(env.account, job.target, facts)
    assert (finding.rule, finding.severity) == (QUOTA, "error")
    assert finding.platform_response == {"canUpload": False, "error": "unconfirmed_email",
                                         "message": "Please confirm your email to upload videos"}
    assert "unconfirmed_email" in finding.message


async def test_without_a_video_service_the_quota_could_not_be_checked_is_a_warning(tmp_path: Path) -> None:
    fake = FakeBluesky(video_enabled=False)  # as a PDS of one's own: no video.bsky.app to ask
    fake.add_account("alice.test", PASSWORD)
    async with fake.client() as http:
        session = await connect_bluesky(http, "alice.test", PASSWORD, PDS_URL, clock=unix_clock(NOW))
        account = AccountContext(id="acc_1", platform="bluesky", handle="alice.test", credentials=session["credentials"])
        env = Env(fake, http, account, tmp_path)
        job, facts = video_job(env)
        with anyio.fail_after(WAIT):
            (finding,) = await env.adapter().deep_check(account, job.target, facts)
    assert (finding.rule, finding.severity, finding.path) == (QUOTA, "warning", "targets[0].media[0]")
    assert "could not be checked" in finding.message


async def test_a_failing_token_or_service_degrades_to_a_warning_and_posts_without_video_ask_nothing(env: Env) -> None:
    job, facts = video_job(env)
    adapter = env.adapter()
    env.fake.fail_next("app.bsky.video.getUploadLimits", 503, {"error": "UpstreamFailure"})
    env.fake.fail_next("com.atproto.server.getServiceAuth", 400, {"error": "InvalidRequest", "message": "nope"})
    with anyio.fail_after(WAIT):
        (by_token,) = await adapter.deep_check(env.account, job.target, facts)
        (by_service,) = await adapter.deep_check(env.account, job.target, facts)
        env.fake.fail_next("app.bsky.video.getUploadLimits", 200, {"remainingDailyVideos": 3})  # no canUpload
        (malformed,) = await adapter.deep_check(env.account, job.target, facts)
    assert [f.severity for f in (by_token, by_service, malformed)] == ["warning"] * 3
    assert by_service.platform_response == {"error": "UpstreamFailure"}
    before = len(env.fake.log)
    text_only = make_job(env.account, "Just words")
    image = make_job(env.account, "Photo", files=(env.image(0, "png", 10, 10, None),))
    with anyio.fail_after(WAIT):
        for plain in (text_only, image):
            assert await adapter.deep_check(env.account, plain.target, {m.index: m.facts for m in plain.target.media if m.facts}) == []
    assert len(env.fake.log) == before  # nothing asked when there is no video


async def test_thread_and_first_comment_are_reply_chains_under_their_own_keys(env: Env) -> None:
    job = make_job(env.account, "1/3 main", thread=("2/3 middle", "3/3 end"), first_comment="Links go here")
    with anyio.fail_after(WAIT):
        published = await env.adapter().publish(job)
    main, t1, t2, comment = (env.stored(k) for k in (KEY, f"{KEY}-t1", f"{KEY}-t2", f"{KEY}-c"))
    assert "reply" not in main["value"]
    assert t1["value"]["reply"] == {"root": ref(main), "parent": ref(main)}
    assert t2["value"]["reply"] == {"root": ref(main), "parent": ref(t1)}
    assert comment["value"]["reply"] == {"root": ref(main), "parent": ref(main)}
    assert [r["value"]["text"] for r in (main, t1, t2, comment)] == ["1/3 main", "2/3 middle", "3/3 end", "Links go here"]
    assert published.thread_ids == (t1["uri"], t2["uri"]) and published.first_comment_ids == (comment["uri"],)
    assert len({tid_for(k) for k in (KEY, f"{KEY}-t1", f"{KEY}-t2", f"{KEY}-c")}) == 4


async def test_link_card_with_og_metadata_and_thumbnail(env: Env) -> None:
    resolver = FakeResolver({"news.example": [PAGE_IP]})
    with anyio.fail_after(WAIT):
        published = await env.adapter(resolver=resolver).publish(make_job(env.account, "Read https://news.example/article now"))
    embed = env.stored(KEY)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.external"
    external = embed["external"]
    assert (external["uri"], external["title"], external["description"]) == ("https://news.example/article", "Big & news", "All of it")
    assert external["thumb"]["mimeType"] == "image/png" and env.fake.blobs[external["thumb"]["ref"]["$link"]]["data"] == PNG_THUMB
    assert published.response is not None and "warnings" not in published.response


async def test_link_card_is_skipped_with_a_note_when_the_page_cannot_be_fetched(env: Env) -> None:
    resolver = FakeResolver({"intranet.example": ["10.0.0.5"]})  # refused by the SSRF guard before any connection
    with anyio.fail_after(WAIT):
        published = await env.adapter(resolver=resolver).publish(make_job(env.account, "See https://intranet.example/page"))
    record = env.stored(KEY)["value"]
    assert "embed" not in record and record["facets"][0]["features"][0]["uri"] == "https://intranet.example/page"
    assert published.response is not None
    [warning] = published.response["warnings"]
    assert warning.startswith("post: no link card for https://intranet.example/page") and "10.0.0.5" in warning


class IdnaResolver(FakeResolver):
    """Encodes the name to IDNA first, as getaddrinfo does (an empty or 64-character label raises UnicodeError there)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        host.encode("idna")
        return await super().resolve(host, port)


@pytest.mark.parametrize("host", ["example..com", "a" * 64 + ".example"])
async def test_a_link_whose_host_is_not_a_dns_name_is_published_without_a_card(env: Env, host: str) -> None:
    text = f"See http://{host}/page now"
    with anyio.fail_after(WAIT):
        published = await env.adapter(resolver=IdnaResolver({})).publish(make_job(env.account, text))
    record = env.stored(KEY)["value"]
    assert record["text"] == text and "embed" not in record
    assert record["facets"][0]["features"][0]["uri"] == f"http://{host}/page"
    assert published.response is not None
    [warning] = published.response["warnings"]
    assert warning.startswith(f"post: no link card for http://{host}/page")


# --- sessions --------------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_rotated_and_persisted(env: Env) -> None:
    old = dict(env.account.credentials)
    env.fake.expire_tokens()
    adapter = env.adapter()
    with anyio.fail_after(WAIT):
        published = await adapter.publish(make_job(env.account))
    assert published.extras["uri"] == env.stored(KEY)["uri"]
    assert len(env.fake.calls(REFRESH)) == 1 and env.fake.calls(REFRESH)[0].auth == "refresh"
    assert len(env.fake.calls(CREATE)) == 2  # 400 ExpiredToken, then the same call with the new token
    [(account_id, new)] = env.persisted
    assert account_id == "acc_1" and new["did"] == old["did"] and new["pdsUrl"] == PDS_URL
    assert new["accessJwt"] != old["accessJwt"] and new["refreshJwt"] != old["refreshJwt"]
    # A job built from the credentials read before the rotation uses the rotated ones: no second refresh.
    with anyio.fail_after(WAIT):
        await adapter.publish(make_job(env.account, "second", key=KEY2))
    assert len(env.fake.calls(REFRESH)) == 1 and len(env.persisted) == 1
    assert env.fake.record(env.did, tid_for(KEY2)) is not None


async def test_token_past_its_exp_is_refreshed_before_the_call(env: Env) -> None:
    with anyio.fail_after(WAIT):
        await env.adapter(clock=NOW + 7201).publish(make_job(env.account))
    assert len(env.fake.calls(REFRESH)) == 1 and len(env.fake.calls(CREATE)) == 1 and len(env.persisted) == 1


async def test_a_refused_refresh_is_an_auth_error_and_nothing_is_posted(env: Env) -> None:
    env.fake.expire_tokens(refresh=True)
    with anyio.fail_after(WAIT), pytest.raises(PlatformAuthError) as caught:
        await env.adapter().publish(make_job(env.account))
    assert caught.value.platform_response == {"error": "ExpiredToken", "message": "Token has expired"}
    assert env.persisted == [] and env.fake.posts() == []
    shown = str(caught.value) + json.dumps(caught.value.to_error_object().model_dump())
    assert env.account.credentials["accessJwt"] not in shown and env.account.credentials["refreshJwt"] not in shown


async def test_invalid_token_is_an_auth_error_without_a_refresh(env: Env) -> None:
    env.fake.fail_next(CREATE, 400, {"error": "InvalidToken", "message": "Token could not be verified"})
    with anyio.fail_after(WAIT), pytest.raises(PlatformAuthError):
        await env.adapter().publish(make_job(env.account))
    assert env.fake.calls(REFRESH) == [] and env.fake.calls(GET) == []


async def test_account_takedown_is_an_auth_error(env: Env) -> None:
    env.fake.fail_next(CREATE, 401, {"error": "AccountTakedown", "message": "Account has been taken down"})
    with anyio.fail_after(WAIT), pytest.raises(PlatformAuthError, match="AccountTakedown"):
        await env.adapter().publish(make_job(env.account))


# --- errors ----------------------------------------------------------------------------------------


async def test_rate_limit_waits_until_ratelimit_reset(env: Env) -> None:
    env.fake.fail_next(CREATE, 429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                       {"RateLimit-Reset": str(int(NOW) + 42), "RateLimit-Remaining": "0"})
    with anyio.fail_after(WAIT), pytest.raises(PlatformRateLimitError) as caught:
        await env.adapter().publish(make_job(env.account))
    assert caught.value.retry_after == 42 and caught.value.status == 429 and caught.value.retryable


async def test_lexicon_rejection_keeps_the_raw_body(env: Env) -> None:
    with anyio.fail_after(WAIT), pytest.raises(PlatformRejectedError) as caught:
        await env.adapter().publish(make_job(env.account, "é" * 301))
    assert caught.value.status == 400
    assert caught.value.platform_response == {
        "error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record: grapheme too big (maximum 300, got 301) at $.record.text"}
    assert env.fake.posts() == [] and len(env.fake.calls(GET)) == 1  # it checked that the rkey was not taken


@pytest.mark.parametrize("status, name", [(500, "InternalServerError"), (502, "UpstreamFailure"), (503, "NotEnoughResources"),
                                          (504, "UpstreamTimeout")])
async def test_a_5xx_after_the_write_is_an_unknown_outcome_not_unavailable(env: Env, status: int, name: str) -> None:
    env.fake.fail_next(CREATE, status, {"error": name, "message": "busy"})
    with anyio.fail_after(WAIT), pytest.raises(UnknownOutcomeError) as caught:
        await env.adapter().publish(make_job(env.account))
    error = caught.value.to_error_object()
    assert (error.code, error.retryable, caught.value.status) == ("platform_outcome_unknown", False, status)
    assert env.fake.posts() == [] and len(env.fake.calls(GET)) == 1  # it read the rkey back before saying so


async def test_a_5xx_on_a_read_is_retryable_unavailable(env: Env) -> None:
    env.fake.fail_next(GET, 503, {"error": "NotEnoughResources", "message": "busy"})
    with anyio.fail_after(WAIT), pytest.raises(PlatformUnavailableError) as caught:
        await find(env.adapter(), make_job(env.account))
    assert type(caught.value) is PlatformUnavailableError and caught.value.code == "platform_unavailable" and caught.value.retryable


async def test_a_403_without_a_token_error_is_a_permission_refusal_not_auth(env: Env) -> None:
    # Any 403 whose XRPC name is not a refused token: the account's token is fine, it may not do this.
    env.fake.fail_next(CREATE, 403, {"error": "Forbidden", "message": "Missing required scope"})
    with anyio.fail_after(WAIT), pytest.raises(PlatformForbiddenError) as caught:
        await env.adapter().publish(make_job(env.account))
    assert caught.value.code == "platform_forbidden" and not caught.value.retryable and env.fake.calls(REFRESH) == []


async def test_a_403_naming_a_refused_token_is_still_auth(env: Env) -> None:
    env.fake.fail_next(CREATE, 403, {"error": "AccountDeactivated", "message": "Account is deactivated"})
    with anyio.fail_after(WAIT), pytest.raises(PlatformAuthError):
        await env.adapter().publish(make_job(env.account))


async def test_lost_answer_after_the_write_is_unknown_outcome_then_found(env: Env) -> None:
    env.fake.drop_answer_next(CREATE)
    adapter = env.adapter()
    job = make_job(env.account)
    with anyio.fail_after(WAIT):
        with pytest.raises(UnknownOutcomeError):
            await adapter.publish(job)
        found = await find(adapter, job)
        again = await adapter.publish(job)
    stored = env.stored(KEY)
    assert found is not None and found.extras == {"uri": stored["uri"], "cid": stored["cid"]}
    assert again.already_existed and again.extras["uri"] == stored["uri"] and len(env.fake.posts()) == 1


# --- exactly once ----------------------------------------------------------------------------------


@pytest.mark.parametrize("duplicate", [
    (500, {"error": "InternalServerError", "message": "Internal Server Error"}),  # the reference PDS today
    (400, {"error": "RecordAlreadyExists", "message": "Record already exists"}),  # a named error (proposed, name unconfirmed)
], ids=["500-today", "400-named"])
async def test_the_same_job_twice_makes_one_record_per_piece(tmp_path: Path, duplicate: tuple[int, dict[str, Any]]) -> None:
    fake = FakeBluesky(duplicate_error=duplicate)
    fake.add_account("alice.test", PASSWORD)
    async with fake.client() as http:
        session = await connect_bluesky(http, "alice.test", PASSWORD, PDS_URL, clock=unix_clock(NOW))
        account = AccountContext(id="acc_1", platform="bluesky", handle="alice.test", credentials=session["credentials"])
        adapter = BlueskyAdapter(http, clock=unix_clock(NOW))
        job = make_job(account, "once", thread=("twice?",), first_comment="thrice?")
        with anyio.fail_after(WAIT):
            first = await adapter.publish(job)
            second = await adapter.publish(unrecorded(job))  # no record of the first: the PDS dedupes by our rkeys
    assert not first.already_existed and second.already_existed
    assert (second.extras, second.thread_ids, second.first_comment_ids) == (first.extras, first.thread_ids, first.first_comment_ids)
    assert len(fake.posts()) == 3 and len(fake.calls(CREATE)) == 6 and len(fake.calls(GET)) == 3


def unrecorded(job: PublishJob) -> PublishJob:
    """The job with an empty ledger: as if nothing had been recorded of earlier tries (each piece is read upstream)."""
    return replace(job, ledger=Ledger())


async def test_a_second_try_with_the_ledger_sends_nothing_again(env: Env) -> None:
    adapter = env.adapter()
    job = make_job(env.account, "ledger", thread=("part two",), first_comment="comment")
    with anyio.fail_after(WAIT):
        first = await adapter.publish(job)
        creates, reads = len(env.fake.calls(CREATE)), len(env.fake.calls(GET))
        second = await adapter.publish(job)
    assert (creates, len(env.fake.calls(CREATE)), len(env.fake.calls(GET))) == (3, 3, reads)  # not even a read
    assert second.already_existed and (second.extras, second.thread_ids) == (first.extras, first.thread_ids)


async def test_find_before_and_after_then_delete(env: Env) -> None:
    adapter = env.adapter()
    job = make_job(env.account, "find me", thread=("part two",), first_comment="comment")
    with anyio.fail_after(WAIT):
        assert await find(adapter, job) is None
        published = await adapter.publish(job)
        found = await find(adapter, unrecorded(job))
        assert found is not None and found.already_existed
        assert (found.extras, found.url, found.thread_ids, found.first_comment_ids) == (
            published.extras, published.url, published.thread_ids, published.first_comment_ids)
        await adapter.delete(env.account, published.upstream_id)
        assert await find(adapter, unrecorded(job)) is None
        await adapter.delete(env.account, tid_for(f"{KEY}-c"))  # a bare rkey works too
    assert [r["value"]["text"] for r in env.fake.posts()] == ["part two"]


async def test_delete_refuses_another_accounts_uri(env: Env) -> None:
    with anyio.fail_after(WAIT), pytest.raises(PlatformRejectedError, match="another account"):
        await env.adapter().delete(env.account, f"at://{BOB}/app.bsky.feed.post/{tid_for(KEY)}")
    assert env.fake.calls("com.atproto.repo.deleteRecord") == []


# --- record keys and the preview -------------------------------------------------------------------


def _tid_value(tid: str) -> int:
    value = 0
    for ch in tid:
        value = value * 32 + TID_ALPHABET.index(ch)
    return value


def test_record_keys_are_valid_deterministic_tids() -> None:
    keys = [KEY, f"{KEY}-t1", f"{KEY}-t2", f"{KEY}-c", KEY2, "not-a-ulid", ""]
    tids = [tid_for(k) for k in keys]
    assert all(TID_PATTERN.match(t) and len(t) == 13 for t in tids), tids
    assert tids == [tid_for(k) for k in keys] and len(set(tids)) == len(tids)
    # The time part sits in the post id's (ULID) second: 01m85ztxb2 ms → 2026-11-24.
    ulid_ms = 0
    for ch in KEY[5:15].upper():
        ulid_ms = ulid_ms * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    for k in (KEY, f"{KEY}-t1", f"{KEY}-c"):
        assert (_tid_value(tid_for(k)) >> 10) // 1_000_000 == ulid_ms // 1000


def test_preview_names_what_is_resolved_at_publish_time() -> None:
    account = AccountContext(id="acc_1", platform="bluesky", handle="alice.test", credentials={}, defaults={"did": "did:plc:alice"})
    body = build_post(make_job(account, "Hi @bob.test https://example.com").target)
    assert body["repo"] == "did:plc:alice" and body["rkey"].startswith("<")
    mention, link = body["record"]["facets"]
    assert mention["features"][0]["did"].startswith("<DID of @bob.test")
    assert link["features"][0]["uri"] == "https://example.com"
    external = body["record"]["embed"]["external"]
    assert body["record"]["embed"]["$type"] == "app.bsky.embed.external" and external["uri"] == "https://example.com"
    assert external["title"].startswith("<") and external["thumb"].startswith("<")
