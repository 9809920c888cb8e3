"""BlueskyAdapter: sessions and refresh, records through the pieces ledger, blobs and video, link cards."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx2

from omnipost.clock import Clock
from omnipost.errors import (
    AppError,
    MediaError,
    PlatformAuthError,
    PlatformError,
    PlatformRateLimitError,
    PlatformRejectedError,
    PlatformUnavailableError,
    UnknownOutcomeError,
)
from omnipost.media.fetch import Resolver, fetch
from omnipost.media.probe import MediaFacts
from omnipost.platforms.base import AccountContext, AdapterDeps, DeepFinding, MediaFile, Published, PublishJob, assembled
from omnipost.platforms.common import pending
from omnipost.platforms.calls import redact, send
from omnipost.platforms.pieces import COMMENT, DONE, MAIN, Made, Processing, part
from omnipost.preflight.facets import MENTION, detect_mentions
from omnipost.preflight.model import MediaRef, ResolvedTarget
from omnipost.preflight.rules.bluesky import VIDEO_QUOTA
from omnipost.platforms.bluesky.cards import _parse_page
from omnipost.platforms.bluesky.keys import piece_key, tid_for, web_url
from omnipost.platforms.bluesky.lexicon import CREATE_RECORD, DEFAULT_PDS, DELETE_RECORD, EXTERNAL, GET_JOB_STATUS, GET_RECORD, GET_UPLOAD_LIMITS, GET_SERVICE_AUTH, PAGE_MAX_BYTES, PLATFORM, POST, RESOLVE_HANDLE, SERVICE_AUTH_SECONDS, THUMB_MAX_BYTES, UPLOAD_BLOB, UPLOAD_VIDEO, VIDEO_SERVICE
from omnipost.platforms.bluesky.preview import build_post, build_record
from omnipost.oauth.session import MemoryCredentialStore, TokenSession, TokenSessions
from omnipost.platforms.bluesky.session import BlueskyRefresher, _classify, _file_chunks, _iso, _json_of, _jwt_exp, _mime_of, _xrpc_error


@dataclass
class _Session:
    """One call sequence's view of the account: its DID and PDS, and its TokenSession (the tokens)."""

    account_id: str
    did: str
    pds: str
    tokens: TokenSession = field(repr=False)

    @property
    def access(self) -> str:
        return str(self.tokens.credentials.get("accessJwt") or "")


@dataclass
class _Piece:
    """What one publish needs while building its pieces."""

    session: _Session
    files: dict[int, MediaFile]
    warnings: list[str]
    handles: dict[str, str | None] = field(default_factory=lambda: {})
    video_job: str | None = None  # the video service job an earlier try started (the main post's pending handle)
    video_since: datetime | None = None  # when that job started


class BlueskyAdapter:
    """PlatformAdapter for Bluesky (AT Protocol): app-password sessions, deterministic TID record keys."""

    platform = PLATFORM
    caller_chosen_ids = True

    def __init__(self, http: httpx2.AsyncClient, *, timeout: float = 30.0, sessions: TokenSessions | None = None,
                 on_credentials: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
                 resolver: Resolver | None = None, clock: Clock,
                 poll_interval: float = 1.0, video_max_wait: float = 600.0, video_service: str = VIDEO_SERVICE,
                 media_timeout: float = 600.0, card_timeout: float = 10.0, fetch_http: httpx2.AsyncClient | None = None) -> None:
        """`sessions`: the accounts' TokenSessions (oauth/session.py), which refresh and persist the tokens; without
        it (an adapter used alone: tests, scripts) sessions are kept in memory and each refresh is reported to
        `on_credentials(account_id, credentials)`. `resolver`: DNS for link-card pages (None: no link cards).
        `clock`: the program's injected clock (token expiry, record timestamps and rate-limit resets are judged by
        it, never by the wall clock).
        `poll_interval`: how long a video still encoding waits (stored `processing`) before its job is read again;
        `video_max_wait`: how long after its start a job still encoding is given up (retryable). `fetch_http`: client for link-card pages
        (default: `http`). `media_timeout` bounds one blob/video upload, `card_timeout` one page or thumb fetch."""
        self.http = http
        self.timeout = timeout
        if sessions is None:
            async def saved(account_id: str, credentials: dict[str, Any], _lapses: Any) -> None:
                if on_credentials is not None:
                    await on_credentials(account_id, credentials)

            sessions = TokenSessions(MemoryCredentialStore(on_save=saved), clock,
                                     {PLATFORM: BlueskyRefresher(http, clock=clock, timeout=timeout)})
        self.sessions = sessions
        self.resolver = resolver
        self.clock = clock
        self.poll_interval = poll_interval
        self.video_max_wait = video_max_wait
        self.video_service = video_service.rstrip("/")
        self.media_timeout = max(timeout, media_timeout)
        self.card_timeout = card_timeout
        self.fetch_http = fetch_http

    @classmethod
    def from_deps(cls, deps: AdapterDeps) -> "BlueskyAdapter":
        """As the runtime builds it: the runtime's TokenSessions (refreshes committed to the database before use),
        link cards resolved through DNS."""
        return cls(deps.http, timeout=deps.timeout, sessions=deps.sessions, clock=deps.clock, resolver=deps.resolver)

    # ------------------------------------------------------------------ sessions and calls

    def _now(self) -> float:
        """The injected clock's instant as Unix seconds (JWT exp and RateLimit-Reset are Unix seconds)."""
        return self.clock.now().timestamp()

    def _session(self, account: AccountContext, *, need_token: bool = True) -> _Session:
        tokens = self.sessions.get(account)  # a job read before a refresh gets the newer tokens from it
        creds = tokens.credentials
        did = creds.get("did") or account.defaults.get("did")
        pds = str(creds.get("pdsUrl") or account.defaults.get("pdsUrl") or DEFAULT_PDS).rstrip("/")
        if not did or (need_token and not creds.get("accessJwt")):
            raise PlatformAuthError("The Bluesky account has no session.", remediation="Reconnect the account (connect_account).")
        return _Session(account.id, str(did), pds, tokens)

    async def _call(self, base: str, method: str, nsid: str, *, write: bool, token: str | None = None,
                    timeout: float | None = None, headers: dict[str, str] | None = None, **kw: Any) -> httpx2.Response:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        return await send(self.http, method, f"{base}/xrpc/{nsid}", platform=PLATFORM, write=write,
                          timeout=timeout or self.timeout, headers=sent, **kw)

    def _stale(self, response: httpx2.Response, token: str) -> bool:
        """Whether an answer says the access token expired (ExpiredToken, or 401 past the token's exp)."""
        if response.status_code not in (400, 401):
            return False
        name, _ = _xrpc_error(_json_of(response))
        if name == "ExpiredToken":
            return True
        exp = _jwt_exp(token)
        return response.status_code == 401 and exp is not None and exp <= self._now()

    async def _authed(self, s: _Session, method: str, nsid: str, *, write: bool, **kw: Any) -> httpx2.Response:
        """One call with the access token (refreshed first when it is about to end); after an expiry answer the
        session is refreshed once and the call repeated once."""
        async def call(token: str) -> httpx2.Response:
            return await self._call(s.pds, method, nsid, write=write, token=token, **kw)

        return await s.tokens.with_token(call, expired=self._stale)

    def _error(self, response: httpx2.Response, nsid: str) -> PlatformError:
        return _classify(response, nsid, self._now())

    # ------------------------------------------------------------------ records

    async def _get_record(self, s: _Session, rkey: str) -> dict[str, Any] | None:
        """The stored record under rkey (public read, no token), or None when the PDS has no such record."""
        response = await self._call(s.pds, "GET", GET_RECORD, write=False, params={"repo": s.did, "collection": POST, "rkey": rkey})
        if response.is_success:
            body = _json_of(response)
            if isinstance(body.get("uri"), str) and isinstance(body.get("cid"), str):
                return body
            raise PlatformUnavailableError("Bluesky getRecord answered without uri/cid.", status=response.status_code, remediation="Retry later.")
        name, _ = _xrpc_error(_json_of(response))
        if response.status_code == 404 or name == "RecordNotFound":
            return None
        raise self._error(response, GET_RECORD)

    async def _create(self, s: _Session, rkey: str, record: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
        """createRecord under rkey: (uri/cid body, HTTP status, whether the record already existed)."""
        response = await self._authed(s, "POST", CREATE_RECORD, write=True,
                                      json={"repo": s.did, "collection": POST, "rkey": rkey, "record": record})
        if response.is_success:
            body = _json_of(response)
            if not (isinstance(body.get("uri"), str) and isinstance(body.get("cid"), str)):
                raise UnknownOutcomeError("Bluesky createRecord answered success without uri/cid.", status=response.status_code,
                                          remediation="omnipost reconciles this post with the platform before any retry.")
            return body, response.status_code, False
        error = self._error(response, CREATE_RECORD)
        if response.status_code in (400, 409) or response.status_code >= 500:
            # A taken rkey is 500 on today's PDS (a named error is proposed): look, whatever the name.
            if not isinstance(error, PlatformAuthError | PlatformRateLimitError):
                try:
                    existing = await self._get_record(s, rkey)
                except PlatformError:
                    existing = None
                if existing is not None:
                    return existing, 200, True
        raise error

    async def _upload_blob(self, s: _Session, data: bytes, mime: str) -> dict[str, Any]:
        response = await self._authed(s, "POST", UPLOAD_BLOB, write=False, content=data, headers={"Content-Type": mime},
                                      timeout=self.media_timeout)
        if not response.is_success:
            raise self._error(response, UPLOAD_BLOB)
        blob = _json_of(response).get("blob")
        if not isinstance(blob, dict):
            raise PlatformUnavailableError("Bluesky uploadBlob answered without a blob.", status=response.status_code, remediation="Retry later.")
        return blob

    def _file(self, p: _Piece, index: int) -> MediaFile:
        f = p.files.get(index)
        if f is None or f.path is None:
            raise PlatformRejectedError(f"media[{index}] has no stored file to upload; Bluesky takes bytes, not URLs.",
                                        remediation="Upload the media (upload_media) and publish again.")
        return f

    async def _upload_video(self, p: _Piece, f: MediaFile) -> dict[str, Any]:
        """The video service flow (platforms.md §1.4): service auth, uploadVideo, then one getJobStatus read (a job an
        earlier try started is read, not uploaded again). Still encoding: pieces.Processing with the job id."""
        if p.video_job is not None:
            return await self._video_blob(p.video_job, p.video_since)
        s = p.session
        assert f.path is not None
        token = await self._service_token(s, f"did:web:{httpx2.URL(s.pds).host}", UPLOAD_BLOB)
        size = f.size if f.size is not None else (await anyio.Path(f.path).stat()).st_size
        name = f"{f.path.stem[:40] or 'video'}.mp4"
        response = await send(self.http, "POST", f"{self.video_service}/xrpc/{UPLOAD_VIDEO}", platform=PLATFORM, write=False,
                              timeout=self.media_timeout, params={"did": s.did, "name": name}, content=_file_chunks(f.path),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": _mime_of(f), "Content-Length": str(size)})
        if response.status_code == 404:
            raise PlatformRejectedError(
                f"Video upload is not available: {self.video_service} answered HTTP 404 to {UPLOAD_VIDEO}.", status=404,
                platform_response=_json_of(response) or response.text[:500],
                remediation="Post the video through a PDS served by Bluesky's video service, or publish without the video.")
        body = _json_of(response)
        status = body.get("jobStatus") if isinstance(body.get("jobStatus"), dict) else body  # both shapes are seen
        if isinstance(status.get("blob"), dict):
            return status["blob"]
        job_id = status.get("jobId") or body.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            if not response.is_success:
                raise self._error(response, UPLOAD_VIDEO)
            name_, message = _xrpc_error(body)
            raise PlatformRejectedError(f"Bluesky {UPLOAD_VIDEO} refused the video" + (f": {name_}" if name_ else "") +
                                        (f" ({message})" if message else "") + ".", status=response.status_code, platform_response=body,
                                        remediation="Check the account's email is verified and the daily video limits; then publish again.")
        return await self._video_blob(job_id, None)

    async def _video_blob(self, job_id: str, since: datetime | None) -> dict[str, Any]:
        """One getJobStatus read: the blob, or Processing(job id, when to read again); a failed job is rejected, one
        still encoding `video_max_wait` after it started is given up (retryable: a retry uploads again)."""
        response = await send(self.http, "GET", f"{self.video_service}/xrpc/{GET_JOB_STATUS}", platform=PLATFORM, write=False,
                              timeout=self.timeout, params={"jobId": job_id})
        if not response.is_success:
            raise self._error(response, GET_JOB_STATUS)
        body = _json_of(response)
        status = body.get("jobStatus") if isinstance(body.get("jobStatus"), dict) else body
        if isinstance(status.get("blob"), dict):
            return status["blob"]
        if status.get("state") == "JOB_STATE_FAILED":
            code, message = status.get("error"), status.get("message")
            raise PlatformRejectedError(f"Bluesky's video service could not process the video ({code or 'failed'}"
                                        + (f": {message}" if message else "") + ").", status=response.status_code,
                                        platform_response=body, remediation="Re-encode the video (H.264 MP4) and publish again.")
        now = self.clock.now()
        if since is not None and (now - since).total_seconds() >= self.video_max_wait:
            raise PlatformUnavailableError(f"Bluesky's video service was still processing the video after {self.video_max_wait:g} s.",
                                           platform_response=body, remediation="Retry later.")
        raise Processing(job_id, now + timedelta(seconds=self.poll_interval), f"video job {job_id} is {status.get('state') or 'processing'}")

    async def _service_token(self, s: _Session, audience: str, method: str) -> str:
        """A service auth token from the PDS for calling `method` on the service `audience` (a did:web)."""
        response = await self._authed(s, "GET", GET_SERVICE_AUTH, write=False, params={
            "aud": audience, "lxm": method, "exp": int(self._now()) + SERVICE_AUTH_SECONDS})
        if not response.is_success:
            raise self._error(response, GET_SERVICE_AUTH)
        token = _json_of(response).get("token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("Bluesky getServiceAuth answered without a token.", status=response.status_code, remediation="Retry later.")
        return token

    async def upload_limits(self, account: AccountContext) -> dict[str, Any]:
        """The video service's getUploadLimits answer for the account: {canUpload, remainingDailyVideos,
        remainingDailyBytes, message, error} (platforms.md §1.4); the token's audience is the video service's did:web."""
        s = self._session(account)
        token = await self._service_token(s, f"did:web:{httpx2.URL(self.video_service).host}", GET_UPLOAD_LIMITS)
        response = await send(self.http, "GET", f"{self.video_service}/xrpc/{GET_UPLOAD_LIMITS}", platform=PLATFORM, write=False,
                              timeout=self.timeout, headers={"Authorization": f"Bearer {token}"})
        if not response.is_success:
            raise self._error(response, GET_UPLOAD_LIMITS)
        body = _json_of(response)
        if not isinstance(body.get("canUpload"), bool):
            raise PlatformUnavailableError(f"Bluesky {GET_UPLOAD_LIMITS} answered without canUpload.", status=response.status_code,
                                           platform_response=redact(body), remediation="Retry later.")
        return body

    def deep_checks(self, target: ResolvedTarget) -> bool:
        """Only a post with media may carry a video (the one deep check)."""
        return bool(target.media)

    async def deep_check(self, account: AccountContext, target: ResolvedTarget, facts: dict[int, MediaFacts]) -> list[DeepFinding]:
        """bluesky.media.video_quota: before a video post, ask the video service whether the account may upload this
        video today. Limits that cannot be read give a warning under the same rule, never an error: the upload
        itself is the final word (and a PDS with no video service fails it clearly)."""
        videos = sorted((i, f) for i, f in facts.items() if f.kind == "video")
        if not videos:
            return []
        index, video = videos[0]
        path = f"{target.path}.media[{index}]"
        try:
            limits = await self.upload_limits(account)
        except AppError as exc:
            return [DeepFinding(VIDEO_QUOTA, path, f"Bluesky's daily video upload limits could not be checked: {exc.message}",
                                "Nothing to do if the account may upload videos today; otherwise the upload will be refused.",
                                severity="warning", platform_response=getattr(exc, "platform_response", None))]
        shown = redact(limits)
        said = "; ".join(str(v) for v in (limits.get("error"), limits.get("message")) if isinstance(v, str) and v)
        videos_left, bytes_left = limits.get("remainingDailyVideos"), limits.get("remainingDailyBytes")
        if not limits["canUpload"]:
            return [DeepFinding(VIDEO_QUOTA, path, "Bluesky's video service will not take a video from this account now"
                                + (f": {said}" if said else " (canUpload is false)") + ".",
                                "Confirm the account's email, or wait for the daily video allowance to renew, then publish again.",
                                platform_response=shown, actual=False, limit=True, retryable=True)]
        if isinstance(videos_left, int) and not isinstance(videos_left, bool) and videos_left < 1:
            return [DeepFinding(VIDEO_QUOTA, path, "The account has no video uploads left on Bluesky today"
                                + (f" ({said})" if said else "") + ".",
                                "Wait for the daily video allowance to renew, then publish again (or publish without the video).",
                                platform_response=shown, actual=1, limit=videos_left, retryable=True)]
        if isinstance(bytes_left, int) and not isinstance(bytes_left, bool) and bytes_left < video.size:
            return [DeepFinding(VIDEO_QUOTA, path, f"media[{index}] is {video.size:,} bytes but the account may upload only "
                                f"{max(bytes_left, 0):,} more bytes of video to Bluesky today" + (f" ({said})" if said else "") + ".",
                                f"Post a video of at most {max(bytes_left, 0):,} bytes, or wait for the daily allowance to renew.",
                                platform_response=shown, actual=video.size, limit=bytes_left, retryable=True)]
        return []

    async def _resolve(self, p: _Piece, handle: str) -> str | None:
        if handle in p.handles:
            return p.handles[handle]
        response = await self._call(p.session.pds, "GET", RESOLVE_HANDLE, write=False, params={"handle": handle})
        did: str | None = None
        if response.is_success:
            value = _json_of(response).get("did")
            did = value if isinstance(value, str) and value.startswith("did:") else None
        elif response.status_code not in (400, 404):  # 400 HandleNotFound (InvalidRequest on older PDSes): no such handle
            raise self._error(response, RESOLVE_HANDLE)
        p.handles[handle] = did
        return did

    async def _fetch(self, url: str, max_bytes: int) -> tuple[bytes, str, str]:
        """GET a public URL (SSRF-safe): (body, content type, final URL). Raises MediaError."""
        assert self.resolver is not None
        buf = BytesIO()
        result = await fetch(url, http=self.fetch_http or self.http, resolver=self.resolver, max_bytes=max_bytes,
                             timeout=self.card_timeout, dest=buf)
        return buf.getvalue(), result.content_type or "", result.url

    async def _link_card(self, p: _Piece, uri: str, label: str) -> dict[str, Any] | None:
        if self.resolver is None:
            p.warnings.append(f"{label}: no link card for {uri}: pages are not fetched on this server (no resolver).")
            return None
        try:
            page, content_type, final_url = await self._fetch(uri, PAGE_MAX_BYTES)
        except MediaError as exc:
            p.warnings.append(f"{label}: no link card for {uri}: {exc.message}.")
            return None
        if "html" not in content_type.lower():
            p.warnings.append(f"{label}: no link card for {uri}: the page is {content_type or 'of unknown type'}, not HTML.")
            return None
        meta = _parse_page(page, content_type)
        external: dict[str, Any] = {
            "uri": uri,
            "title": (meta.first("og:title", "twitter:title") or " ".join((meta.title or "").split()))[:300],
            "description": meta.first("og:description", "twitter:description", "description")[:1000],
        }
        image = meta.first("og:image", "og:image:url", "og:image:secure_url", "twitter:image")
        if image:
            thumb_url = urljoin(final_url, image)
            try:
                data, thumb_type, _ = await self._fetch(thumb_url, THUMB_MAX_BYTES)
                mime = thumb_type.split(";")[0].strip().lower()
                if not mime.startswith("image/"):
                    p.warnings.append(f"{label}: link card for {uri} has no thumbnail: {thumb_url} is {mime or 'of unknown type'}, not an image.")
                else:
                    external["thumb"] = await self._upload_blob(p.session, data, mime)
            except MediaError as exc:
                p.warnings.append(f"{label}: link card for {uri} has no thumbnail: {exc.message}.")
            except PlatformRejectedError as exc:
                p.warnings.append(f"{label}: link card for {uri} has no thumbnail: {exc.message}")
        return {"$type": EXTERNAL, "external": external}

    async def _complete(self, p: _Piece, record: dict[str, Any], media: tuple[MediaRef, ...], created_at: str, label: str) -> dict[str, Any]:
        """Replace the preview's placeholders with real values (clock, mention DIDs, blobs, link card)."""
        record["createdAt"] = created_at
        if "facets" in record:
            handles = {(m["byteStart"], m["byteEnd"]): m["handle"] for m in detect_mentions(record["text"])}
            kept: list[dict[str, Any]] = []
            for facet in record["facets"]:
                feature = facet["features"][0]
                if feature.get("$type") == MENTION:
                    handle = handles[(facet["index"]["byteStart"], facet["index"]["byteEnd"])]
                    did = await self._resolve(p, handle)
                    if did is None:
                        continue  # the reference client would send did "": drop the facet instead
                    facet = {"index": facet["index"], "features": [{"$type": MENTION, "did": did}]}
                kept.append(facet)
            if kept:
                record["facets"] = kept
            else:
                del record["facets"]
        embed = record.get("embed")
        if embed is None:
            return record
        kind = embed["$type"]
        if kind == "app.bsky.embed.images":
            for ref, image in zip(media, embed["images"]):
                f = self._file(p, ref.index)
                assert f.path is not None
                image["image"] = await self._upload_blob(p.session, await anyio.Path(f.path).read_bytes(), _mime_of(f))
                if "aspectRatio" not in image and f.width and f.height:
                    image["aspectRatio"] = {"width": f.width, "height": f.height}
        elif kind == "app.bsky.embed.video":
            f = self._file(p, media[0].index)
            embed["video"] = await self._upload_video(p, f)
            if "aspectRatio" not in embed and f.width and f.height:
                embed["aspectRatio"] = {"width": f.width, "height": f.height}
        elif kind == EXTERNAL:
            card = await self._link_card(p, embed["external"]["uri"], label)
            if card is None:
                del record["embed"]
            else:
                record["embed"] = card
        return record

    # ------------------------------------------------------------------ the adapter interface

    async def publish(self, job: PublishJob) -> Published:
        """Publish the post, then the thread as a reply chain, then the first comment (each under its own TID), each
        piece through the job's ledger: one done is never created again, one an earlier try sent is read back first
        (getRecord at its rkey). A record is completed (blobs, mention DIDs, link card) only when it is sent."""
        ledger, target, key = job.ledger, job.target, job.upstream_key
        s = self._session(job.account, need_token=not ledger.probe)
        p = _Piece(s, {f.index: f for f in job.media}, [])
        if (rec := ledger.get(MAIN)) is not None and rec.status != DONE and rec.handle:  # a video job still encoding
            p.video_job, p.video_since = rec.handle, rec.pending_since
        langs = target.options.get("langs")
        started = self._now()

        async def piece(name: str, label: str, offset: int, build: Callable[[], dict[str, Any]],
                        media: tuple[MediaRef, ...] = ()) -> Made:
            rkey = tid_for(piece_key(key, "" if name == MAIN else name))

            async def create() -> Made:
                record = await self._complete(p, build(), media, _iso(started + offset / 1000), label)
                return self._made(s, rkey, *await self._create(s, rkey, record))

            async def read(_: Any) -> Made | None:
                found = await self._get_record(s, rkey)
                return None if found is None else self._made(s, rkey, found, 200, True)

            return await ledger.step(name, create, read)

        media = tuple(_with_facts(m, p.files.get(m.index)) for m in target.media)
        main = await piece(MAIN, "post", 0, lambda: build_post(replace(target, media=media))["record"], media)
        root = {"uri": main.data["uri"], "cid": main.data["cid"]}
        parent = root
        for i, segment in enumerate(target.thread, start=1):
            def reply(text: str = segment, to: dict[str, str] = parent) -> dict[str, Any]:
                return build_record(text, (), langs) | {"reply": {"root": root, "parent": to}}
            made = await piece(part(i), f"thread[{i}]", i, reply)
            parent = {"uri": made.data["uri"], "cid": made.data["cid"]}
        if target.first_comment:
            comment = target.first_comment
            await piece(COMMENT, "firstComment", len(target.thread) + 1,
                        lambda: build_record(comment, (), langs) | {"reply": {"root": root, "parent": root}})
        if p.warnings:
            main = replace(main, body=(main.body or {}) | {"warnings": list(p.warnings)})
        published = assembled(ledger, target, main)
        assert published is not None
        return published

    @staticmethod
    def _made(s: _Session, rkey: str, body: dict[str, Any], status: int, existed: bool) -> Made:
        """A record as a piece: its at-uri is the upstream id, its web URL the url; uri and cid are the extras."""
        return Made(body["uri"], web_url(s.did, rkey), {"uri": body["uri"], "cid": body["cid"]}, dict(body), status, existed)

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """Delete one record: `upstream_id` is its at-uri, or a bare rkey of an app.bsky.feed.post of this account."""
        s = self._session(account)
        repo, collection, rkey = s.did, POST, upstream_id
        if upstream_id.startswith("at://"):
            parts = upstream_id[len("at://"):].split("/")
            if len(parts) != 3 or not all(parts):
                raise PlatformRejectedError(f"'{upstream_id}' is not an at://<did>/<collection>/<rkey> URI.",
                                            remediation="Pass the post's at-uri or its record key.")
            repo, collection, rkey = parts
            if repo != s.did:
                raise PlatformRejectedError(f"'{upstream_id}' belongs to another account than {s.did}.",
                                            remediation="Delete it with the account that published it.")
        elif not re.fullmatch(r"[A-Za-z0-9._:~-]{1,512}", upstream_id):
            raise PlatformRejectedError(f"'{upstream_id}' is neither an at-uri nor a record key.",
                                        remediation="Pass the post's at-uri or its record key.")
        response = await self._authed(s, "POST", DELETE_RECORD, write=True, json={"repo": repo, "collection": collection, "rkey": rkey})
        if not response.is_success:
            raise self._error(response, DELETE_RECORD)


def _with_facts(m: MediaRef, f: MediaFile | None) -> MediaRef:
    """The attachment with facts from its stored file when preflight had none (so video/image and ratio are known)."""
    if m.facts is not None or f is None or f.kind is None or f.mime is None:
        return m
    facts = MediaFacts(kind=f.kind, mime=f.mime, size=f.size or 0, width=f.width, height=f.height,  # type: ignore[arg-type]
                       duration=None, frames=None, sha256="")
    return replace(m, facts=facts)
