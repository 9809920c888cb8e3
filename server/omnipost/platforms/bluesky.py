"""Bluesky: the createRecord body for an app.bsky.feed.post record (the validate_post preview), and BlueskyAdapter.

`build_record` / `build_post` build the exact body the adapter sends; values only known at publish time are
`pending(...)` placeholders (blobs, mention DIDs, the link card, the record key, the clock). The adapter builds the
same body and replaces each placeholder with the real value (platforms.md §1).

Sessions. Accounts are connected with an app password (`connect_bluesky`, com.atproto.server.createSession). The
stored credentials are `{"accessJwt", "refreshJwt", "did", "pdsUrl"}`; the app password is never stored, so when
the refresh token dies (90 days, revoked, or the app password deleted) the account must be reconnected. Every call
uses the access token. When the PDS answers `ExpiredToken` (HTTP 400, or 401), or 401 while the token's `exp` claim
is past, or before a call whose token `exp` is already past, the adapter calls com.atproto.server.refreshSession
ONCE with the refresh token (no body), takes both rotated tokens, hands them to `on_credentials(account_id,
credentials)` for the caller to persist, and repeats the call once. Rotations are also kept in memory (per
account, under a lock), so a job built from credentials read before a rotation uses the new tokens instead of
spending a refresh token that no longer works. A refresh the PDS refuses is a PlatformAuthError (the caller marks
the account needs_reconnect); a refresh that fails for transport/5xx/429 reasons keeps its own class (retryable).
Tokens never reach a log line or an error (platforms/http.py redacts `*Jwt`/`token` fields in bodies).

Exactly once. Every createRecord carries a record key chosen here (`tid_for`), derived from the job's
upstream_key (the omnipost post id): the main post from `<key>`, thread segment i from `<key>-t<i>`, the first
comment from `<key>-c`. A TID is a 64-bit integer (top bit 0, then 53 bits of microseconds since the Unix epoch,
then a 10-bit clock id) written as 13 characters of the sortable base32 alphabet `234567abcdefghijklmnopqrstuvwxyz`
(so the first character is one of `234567abcdefghij`). From the SHA-256 digest d of the piece's key:
- time: when the key holds a ULID (omnipost ids are `post_<ulid>`), the ULID's timestamp truncated to the whole
  second, plus `int(d[0:8]) mod 1_000_000` microseconds, so record keys sort like the posts were created and
  `listRecords` stays in a sensible order; otherwise the top 53 bits of `int(d[0:8])`;
- clock id: the low 10 bits of `int(d[8:10])`.
Two distinct keys of one account collide only when both fall in the same second and share 30 hashed bits (about
1 in 10^9 per such pair). The same job always yields the same keys, so a repeat cannot create a second record.

Detecting "record already exists". The reference PDS answers a createRecord whose rkey is taken with HTTP 500
`{"error": "InternalServerError"}` (seen with @atproto/pds 0.5.35 on loopback; atproto issue #4725, indigo #873
for the Go PDS); atproto PR #4728 (open, 2026-03) proposes a dedicated XRPC error whose name is not settled. So
nothing depends on the error's name: when createRecord answers 400, 409 or 5xx, the adapter reads the record back with
com.atproto.repo.getRecord under the same rkey; if it is there, it is ours (nobody else writes that key), and the
piece is taken as done (`already_existed=True` for the main post). If it is not there, the original error stands.

Pieces. The main post carries text, link/tag facets (`detect_facets`), mention facets (each `detect_mentions`
handle resolved with com.atproto.identity.resolveHandle; handles that do not resolve are dropped, not sent with an
empty DID), `langs`, and one embed: images (`uploadBlob`, raw bytes; alt; aspectRatio), one video (video service:
getServiceAuth with aud `did:web:<PDS host>`, uploadVideo, then ONE getJobStatus read per try: a job still
encoding raises pieces.Processing with the job id, so the post waits `processing` (not this adapter, holding it) and
a worker reads the same job again `poll_interval` seconds later, up to `video_max_wait` after it started), or else a link card for the first link (below). Thread segments reply with root = main post and
parent = the previous piece; the first comment replies to the main post (root = parent = main).

Link cards (`app.bsky.embed.external`). The page is fetched through omnipost.media.fetch (SSRF-safe: public
addresses only, decided through the injected `resolver`), og:title/og:description/og:image are read from it, and
og:image (at most 1,000,000 bytes) is uploaded as the thumb. When the page cannot be fetched or is not HTML (or
no resolver was given), the card is left out and the post is published without it; each such decision is a
sentence in `Published.response["warnings"]` (a list of strings, prefixed with the piece: `post`, `thread[i]`,
`firstComment`). A thumbnail that cannot be fetched or is refused leaves a card without `thumb`, also noted.

Ids. `Published.upstream_id` (and `uri`, `thread_ids`, `first_comment_ids`) are at-uris
(`at://<did>/app.bsky.feed.post/<rkey>`); `delete` accepts such an at-uri or a bare rkey (of the account's repo).
The web URL is `https://bsky.app/profile/<did>/post/<rkey>` (the DID, which survives handle changes).

Errors (platforms.md §1.6): the map `ERRORS` (platforms/errormap.py), applied by platforms/http.py, turns the status
and the XRPC `error` name into the family: AuthenticationRequired, AuthMissing, InvalidToken, ExpiredToken (after a
failed refresh), AccountTakedown, AccountDeactivated, AuthFactorTokenRequired, or a bare 401 → PlatformAuthError (the
account needs reconnecting); any other 403 → PlatformForbiddenError (the account stays connected); 429 /
RateLimitExceeded → PlatformRateLimitError with retry_after = RateLimit-Reset (epoch seconds) − now; other 4xx
(InvalidRequest, InvalidMimeType, InvalidSize, PayloadTooLarge, ...) → PlatformRejectedError; 5xx →
PlatformUnavailableError on a read, UnknownOutcomeError on a write (createRecord, deleteRecord: the PDS may have acted
before failing; createRecord first reads the rkey back, see above). The upstream body is kept as `platform_response`.
A write whose answer is lost (reset, timeout) is UnknownOutcomeError too (http.send).
"""

import base64
import binascii
import hashlib
import json
import logging
import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx2

from omnipost.clock import Clock
from omnipost.errors import (
    MediaError,
    PlatformAuthError,
    PlatformError,
    PlatformForbiddenError,
    PlatformRateLimitError,
    PlatformRejectedError,
    PlatformUnavailableError,
    UnknownOutcomeError,
)
from omnipost.media.fetch import Resolver, fetch
from omnipost.media.probe import MediaFacts
from omnipost.netguard import UpstreamForbiddenError, check_base_url
from omnipost.platforms.base import AccountContext, AdapterDeps, MediaFile, Published, PublishJob, assembled
from omnipost.platforms.common import is_video, pending
from omnipost.platforms.errormap import AUTH_REFUSED, RATE_LIMITED, ErrorMap, Rule, first_of, reset_header, retry_after_header
from omnipost.platforms.http import error_for, send
from omnipost.platforms.pieces import COMMENT, DONE, MAIN, Made, Processing, part
from omnipost.preflight.facets import LINK, MENTION, detect_facets, detect_mentions
from omnipost.preflight.model import MediaRef, ResolvedTarget

logger = logging.getLogger("omnipost.platforms.bluesky")

PLATFORM = "bluesky"
DEFAULT_PDS = "https://bsky.social"
VIDEO_SERVICE = "https://video.bsky.app"
POST = "app.bsky.feed.post"
EXTERNAL = "app.bsky.embed.external"

CREATE_SESSION = "com.atproto.server.createSession"
REFRESH_SESSION = "com.atproto.server.refreshSession"
GET_SESSION = "com.atproto.server.getSession"
GET_SERVICE_AUTH = "com.atproto.server.getServiceAuth"
RESOLVE_HANDLE = "com.atproto.identity.resolveHandle"
UPLOAD_BLOB = "com.atproto.repo.uploadBlob"
CREATE_RECORD = "com.atproto.repo.createRecord"
GET_RECORD = "com.atproto.repo.getRecord"
DELETE_RECORD = "com.atproto.repo.deleteRecord"
UPLOAD_VIDEO = "app.bsky.video.uploadVideo"
GET_JOB_STATUS = "app.bsky.video.getJobStatus"

THUMB_MAX_BYTES = 1_000_000  # app.bsky.embed.external thumb (platforms.md §1.4)
PAGE_MAX_BYTES = 5_000_000  # a link-card page larger than this is not read (no card)
SERVICE_AUTH_SECONDS = 1800

AUTH_ERRORS = frozenset({
    "AuthenticationRequired", "AuthMissing", "InvalidToken", "ExpiredToken", "AccountTakedown",
    "AccountDeactivated", "AuthFactorTokenRequired",
})

# --------------------------------------------------------------------------------- the preview


def _aspect(m: MediaRef) -> dict[str, int] | None:
    if m.facts is not None and m.facts.width and m.facts.height:
        return {"width": m.facts.width, "height": m.facts.height}
    return None


def _embed(media: tuple[MediaRef, ...]) -> dict[str, Any] | None:
    if not media:
        return None
    if is_video(media[0]):
        m = media[0]
        embed: dict[str, Any] = {"$type": "app.bsky.embed.video", "video": pending(f"blob of media[{m.index}] from uploadVideo")}
        if m.alt_text:
            embed["alt"] = m.alt_text
        if (ratio := _aspect(m)) is not None:
            embed["aspectRatio"] = ratio
        return embed
    images: list[dict[str, Any]] = []
    for m in media:
        image: dict[str, Any] = {"image": pending(f"blob of media[{m.index}] from uploadBlob"), "alt": m.alt_text or ""}
        if (ratio := _aspect(m)) is not None:
            image["aspectRatio"] = ratio
        images.append(image)
    return {"$type": "app.bsky.embed.images", "images": images}


def _mention_facets(text: str) -> list[dict[str, Any]]:
    """Mention facets whose DID is resolved at publish time (unresolved handles are then dropped)."""
    return [{"index": {"byteStart": m["byteStart"], "byteEnd": m["byteEnd"]},
             "features": [{"$type": MENTION, "did": pending(f"DID of @{m['handle']}, resolved at publish; dropped if it does not resolve")}]}
            for m in detect_mentions(text)]


def _first_link(facets: list[dict[str, Any]]) -> str | None:
    for facet in facets:
        for feature in facet["features"]:
            if feature.get("$type") == LINK:
                return str(feature["uri"])
    return None


def _card(uri: str) -> dict[str, Any]:
    return {"$type": EXTERNAL, "external": {
        "uri": uri,
        "title": pending("the page's og:title (or <title>)"),
        "description": pending("the page's og:description"),
        "thumb": pending("blob of the page's og:image from uploadBlob, when it has one; no card if the page cannot be fetched"),
    }}


def build_record(text: str, media: tuple[MediaRef, ...] = (), langs: list[str] | None = None) -> dict[str, Any]:
    """The app.bsky.feed.post record, with link, tag and mention facets in UTF-8 byte offsets.

    Without media, the first link gets a link card (app.bsky.embed.external).
    """
    record: dict[str, Any] = {"$type": POST, "text": text, "createdAt": pending("publish time, ISO-8601 UTC")}
    facets = sorted(detect_facets(text) + _mention_facets(text), key=lambda f: f["index"]["byteStart"])
    if facets:
        record["facets"] = facets
    if langs:
        record["langs"] = langs
    embed = _embed(media)
    if embed is None and (uri := _first_link(facets)) is not None:
        embed = _card(uri)
    if embed is not None:
        record["embed"] = embed
    return record


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The createRecord request body for the target's first post."""
    repo = t.account.defaults.get("did") if t.account else None
    return {
        "repo": repo or pending("account DID"),
        "collection": POST,
        "rkey": pending("record key derived from the post id"),
        "record": build_record(t.text, t.media, t.options.get("langs")),
    }


# --------------------------------------------------------------------------------- record keys

TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID_PATTERN = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_IN_KEY = re.compile(r"(?:^|_)([0-7][0-9A-HJKMNP-TV-Z]{25})(?=$|-)", re.IGNORECASE)


def _ulid_ms(key: str) -> int | None:
    """The millisecond timestamp of the ULID inside an omnipost id (`post_01J...`), if there is one."""
    m = _ULID_IN_KEY.search(key)
    if m is None:
        return None
    value = 0
    for ch in m.group(1)[:10].upper():
        value = value * 32 + _CROCKFORD.index(ch)
    return value


def tid_for(key: str) -> str:
    """The deterministic TID record key for one piece's key (see the module docstring)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    word = int.from_bytes(digest[:8], "big")
    ms = _ulid_ms(key)
    micros = (ms // 1000) * 1_000_000 + word % 1_000_000 if ms is not None else word >> 11
    micros &= (1 << 53) - 1
    clock_id = int.from_bytes(digest[8:10], "big") & 0x3FF
    value = (micros << 10) | clock_id
    return "".join(TID_ALPHABET[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


def piece_key(upstream_key: str, piece: str) -> str:
    """The key of one piece: `""` main post, `"t<i>"` thread segment i (from 1), `"c"` the first comment."""
    return upstream_key if not piece else f"{upstream_key}-{piece}"


def at_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST}/{rkey}"


def web_url(did: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{did}/post/{rkey}"


# --------------------------------------------------------------------------------- wire helpers


def _xrpc_error(body: Any) -> tuple[str | None, str | None]:
    """The XRPC `error` name and `message` of an error body (also inside the video service's `jobStatus`)."""
    if not isinstance(body, dict):
        return None, None
    inner = body.get("jobStatus")
    source = body if "error" in body or not isinstance(inner, dict) else inner
    name, message = source.get("error"), source.get("message")
    return (name if isinstance(name, str) else None), (message[:500] if isinstance(message, str) else None)


def _json_of(response: httpx2.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _xrpc_name(body: Any) -> str | None:
    return _xrpc_error(body)[0]


def _xrpc_message(body: Any) -> str | None:
    return _xrpc_error(body)[1]


# platforms.md §1.6: bodies are XRPC `{"error": <Name>, "message"}`; 429 RateLimitExceeded with RateLimit-Reset
# (Unix epoch seconds). A refused token is one of AUTH_ERRORS (at 400 or 401); a 403 without one of them is a
# permission refusal (the defaults: 401 auth, 403 forbidden, 5xx unavailable, other 4xx rejected).
ERRORS = ErrorMap(
    rules=(Rule(RATE_LIMITED, code="RateLimitExceeded"), *(Rule(AUTH_REFUSED, code=name) for name in sorted(AUTH_ERRORS))),
    code=_xrpc_name, message=_xrpc_message,
    retry_after=first_of(reset_header("ratelimit-reset"), retry_after_header),
)


def _classify(response: httpx2.Response, nsid: str, now: float) -> PlatformError:
    """The PlatformError for a failed XRPC answer, by ERRORS (a 5xx to a write is an unknown outcome)."""
    error = error_for(response, f"Bluesky {nsid}", errors=ERRORS, now=now)
    if error is None:
        return PlatformUnavailableError(f"Bluesky {nsid} answered an unexpected HTTP {response.status_code}.", status=response.status_code,
                                        remediation="Retry later.")
    if isinstance(error, PlatformAuthError):
        error.remediation = ("Connect with an app password (Settings → Privacy and security → App passwords), not the account password."
                             if _xrpc_name(error.platform_response) == "AuthFactorTokenRequired"
                             else "Reconnect the Bluesky account (connect_account with a new app password).")
    return error


def _jwt_exp(token: str | None) -> float | None:
    """The `exp` claim of a JWT (not verified: only used to decide whether to refresh first)."""
    if not token or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def session_expiry(credentials: dict[str, Any]) -> datetime | None:
    """When a stored session ends unless refreshed: the refresh token's `exp` (each refresh issues a new one)."""
    exp = _jwt_exp(credentials.get("refreshJwt"))
    return datetime.fromtimestamp(exp, timezone.utc) if exp is not None else None


def pds_from_did_doc(doc: Any) -> str | None:
    """The #atproto_pds service endpoint of a DID document, if it has an http(s) one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("service"), list):
        return None
    for service in doc["service"]:
        if not isinstance(service, dict):
            continue
        sid, endpoint = service.get("id"), service.get("serviceEndpoint")
        if isinstance(sid, str) and sid.endswith("#atproto_pds") and isinstance(endpoint, str) \
                and endpoint.startswith(("https://", "http://")):
            return endpoint.rstrip("/")
    return None


def _iso(ts: float) -> str:
    at = datetime.fromtimestamp(ts, timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _mime_of(f: MediaFile) -> str:
    if f.mime:
        return f.mime
    guessed = mimetypes.guess_type(f.path.name)[0] if f.path is not None else None
    return guessed or "application/octet-stream"


async def _file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(size):
            yield chunk


async def connect_bluesky(http: httpx2.AsyncClient, identifier: str, app_password: str, pds_url: str = DEFAULT_PDS,
                          *, clock: Clock, timeout: float = 30.0) -> dict[str, Any]:
    """Log in with an app password (com.atproto.server.createSession).

    Returns `{"did", "handle", "pdsUrl", "credentials": {"accessJwt", "refreshJwt", "did", "pdsUrl"}}`; pdsUrl is
    the DID document's #atproto_pds endpoint when present (else `pds_url`). The app password is not returned.

    The DID document is the PDS's word, not ours: its endpoint must be a well-formed server URL, and when it is
    not `pds_url` the new session is checked there (getSession) before anything is stored, so a connection the
    SSRF guard refuses (netguard.py) fails the connect instead of a later publish that would carry the token.

    Raises:
        ValidationFailedError: `pds_url` (path pdsUrl) is not a usable server URL.
        UpstreamForbiddenError: `pds_url`, or the DID document's endpoint, is at a non-public address.
        PlatformAuthError: wrong identifier/password, 2FA required, account taken down.
        PlatformError: any other failure (see _classify).
    """
    base = check_base_url(pds_url, path="pdsUrl")
    try:
        response = await send(http, "POST", f"{base}/xrpc/{CREATE_SESSION}", platform=PLATFORM, write=False,
                              timeout=timeout, json={"identifier": identifier, "password": app_password})
    except UpstreamForbiddenError as exc:
        raise UpstreamForbiddenError(f"pdsUrl: {exc.message}", path="pdsUrl") from None
    if not response.is_success:
        raise _classify(response, CREATE_SESSION, clock.now().timestamp())
    body = _json_of(response)
    did, handle = body.get("did"), body.get("handle")
    access, refresh = body.get("accessJwt"), body.get("refreshJwt")
    if not all(isinstance(v, str) and v for v in (did, handle, access, refresh)):
        raise PlatformUnavailableError("Bluesky createSession answered without a complete session.", status=response.status_code,
                                       remediation="Retry later.")
    pds = pds_from_did_doc(body.get("didDoc")) or base
    if pds != base:
        pds = check_base_url(pds, path="pdsUrl")
        try:
            checked = await send(http, "GET", f"{pds}/xrpc/{GET_SESSION}", platform=PLATFORM, write=False, timeout=timeout,
                                 headers={"Authorization": f"Bearer {access}"})
        except UpstreamForbiddenError as exc:
            raise UpstreamForbiddenError(f"The PDS's DID document names {pds[:200]}, where omnipost does not connect "
                                         f"({exc.message})", path="pdsUrl") from None
        if not checked.is_success:
            raise _classify(checked, GET_SESSION, clock.now().timestamp())
    return {"did": did, "handle": handle, "pdsUrl": pds,
            "credentials": {"accessJwt": access, "refreshJwt": refresh, "did": did, "pdsUrl": pds}}


# --------------------------------------------------------------------------------- link-card pages


class _PageMeta(HTMLParser):
    """Collects <meta property|name=... content=...> and the first <title> of a page's head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: str | None = None
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            a = {k.lower(): (v or "") for k, v in attrs}
            key = (a.get("property") or a.get("name") or "").strip().lower()
            if key and "content" in a:
                self.meta.setdefault(key, a["content"])
        elif tag == "title" and self.title is None:
            self._title = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self.title, self._title = "".join(self._title), None

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)

    def first(self, *keys: str) -> str:
        for key in keys:
            value = " ".join(self.meta.get(key, "").split())
            if value:
                return value
        return ""


def _parse_page(data: bytes, content_type: str) -> _PageMeta:
    charset = "utf-8"
    m = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
    if m:
        charset = m.group(1)
    try:
        text = data.decode(charset, errors="replace")
    except LookupError:
        text = data.decode("utf-8", errors="replace")
    parser = _PageMeta()
    parser.feed(text)
    parser.close()
    return parser


# --------------------------------------------------------------------------------- the adapter


@dataclass
class _Rotation:
    """The newest credentials of an account after refreshes in this process, and the refresh tokens they replace."""

    superseded: set[str] = field(repr=False)
    current: dict[str, Any] = field(repr=False)


@dataclass
class _Session:
    account_id: str
    did: str
    pds: str
    credentials: dict[str, Any] = field(repr=False)

    @property
    def access(self) -> str:
        return str(self.credentials.get("accessJwt") or "")

    @property
    def refresh(self) -> str:
        return str(self.credentials.get("refreshJwt") or "")


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

    def __init__(self, http: httpx2.AsyncClient, *, timeout: float = 30.0,
                 on_credentials: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
                 resolver: Resolver | None = None, clock: Clock,
                 poll_interval: float = 1.0, video_max_wait: float = 600.0, video_service: str = VIDEO_SERVICE,
                 media_timeout: float = 600.0, card_timeout: float = 10.0, fetch_http: httpx2.AsyncClient | None = None) -> None:
        """`resolver`: DNS for link-card pages (None: no link cards). `clock`: the program's injected clock (token
        expiry, record timestamps and rate-limit resets are judged by it, never by the wall clock).
        `poll_interval`: how long a video still encoding waits (stored `processing`) before its job is read again;
        `video_max_wait`: how long after its start a job still encoding is given up (retryable). `fetch_http`: client for link-card pages
        (default: `http`). `media_timeout` bounds one blob/video upload, `card_timeout` one page or thumb fetch."""
        self.http = http
        self.timeout = timeout
        self.on_credentials = on_credentials
        self.resolver = resolver
        self.clock = clock
        self.poll_interval = poll_interval
        self.video_max_wait = video_max_wait
        self.video_service = video_service.rstrip("/")
        self.media_timeout = max(timeout, media_timeout)
        self.card_timeout = card_timeout
        self.fetch_http = fetch_http
        self._rotations: dict[str, _Rotation] = {}
        self._locks: dict[str, anyio.Lock] = {}

    @classmethod
    def from_deps(cls, deps: AdapterDeps) -> "BlueskyAdapter":
        """As the runtime builds it: rotated sessions are saved with their expiry, link cards resolved through DNS."""
        async def rotated(account_id: str, credentials: dict[str, Any]) -> None:
            await deps.save_credentials(account_id, credentials, session_expiry(credentials))

        return cls(deps.http, timeout=deps.timeout, on_credentials=rotated, clock=deps.clock, resolver=deps.resolver)

    # ------------------------------------------------------------------ sessions and calls

    def _now(self) -> float:
        """The injected clock's instant as Unix seconds (JWT exp and RateLimit-Reset are Unix seconds)."""
        return self.clock.now().timestamp()

    def _session(self, account: AccountContext, *, need_token: bool = True) -> _Session:
        creds = dict(account.credentials)
        rotation = self._rotations.get(account.id)
        if rotation is not None and creds.get("refreshJwt") in rotation.superseded:
            creds = dict(rotation.current)  # the job was built before a rotation: use the newer tokens
        did = creds.get("did") or account.defaults.get("did")
        pds = str(creds.get("pdsUrl") or account.defaults.get("pdsUrl") or DEFAULT_PDS).rstrip("/")
        if not did or (need_token and not creds.get("accessJwt")):
            raise PlatformAuthError("The Bluesky account has no session.", remediation="Reconnect the account (connect_account).")
        return _Session(account.id, str(did), pds, creds)

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
        """One call with the access token; refreshed once (before, or after an expiry answer) and repeated once."""
        exp = _jwt_exp(s.access)
        if exp is not None and exp <= self._now():
            await self._refresh(s)
        token = s.access
        response = await self._call(s.pds, method, nsid, write=write, token=token, **kw)
        if self._stale(response, token):
            await self._refresh(s)
            response = await self._call(s.pds, method, nsid, write=write, token=s.access, **kw)
        return response

    async def _refresh(self, s: _Session) -> None:
        """Rotate the session's tokens with refreshSession (once per expiry, even with concurrent callers)."""
        lock = self._locks.setdefault(s.account_id, anyio.Lock())
        async with lock:
            rotation = self._rotations.get(s.account_id)
            if rotation is not None and s.refresh in rotation.superseded:
                s.credentials = dict(rotation.current)  # another call rotated meanwhile
                return
            # Not a write for the post: a lost answer means nothing was published (retryable).
            response = await self._call(s.pds, "POST", REFRESH_SESSION, write=False, token=s.refresh)
            if not response.is_success:
                error = _classify(response, REFRESH_SESSION, self._now())
                if isinstance(error, PlatformAuthError | PlatformForbiddenError | PlatformRejectedError):
                    raise PlatformAuthError(f"The Bluesky session could not be refreshed: {error.message}", status=error.status,
                                            platform_response=error.platform_response,
                                            remediation="Reconnect the Bluesky account (connect_account with an app password).") from error
                raise error
            body = _json_of(response)
            access, refresh = body.get("accessJwt"), body.get("refreshJwt")
            if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
                raise PlatformAuthError("Bluesky refreshSession answered without tokens.", status=response.status_code,
                                        remediation="Reconnect the Bluesky account.")
            new = {**s.credentials, "accessJwt": access, "refreshJwt": refresh}
            if isinstance(body.get("did"), str):
                new["did"] = body["did"]
            if (pds := pds_from_did_doc(body.get("didDoc"))) is not None:
                new["pdsUrl"] = pds
            superseded = (rotation.superseded if rotation is not None else set()) | {s.refresh}
            self._rotations[s.account_id] = _Rotation(superseded, new)
            s.credentials = dict(new)
            if self.on_credentials is not None:
                try:
                    await self.on_credentials(s.account_id, dict(new))
                except Exception as exc:  # noqa: BLE001 - the new tokens still work from memory; only persisting failed
                    logger.warning("could not persist rotated Bluesky credentials for %s (%s)", s.account_id, type(exc).__name__)

    async def refresh_credentials(self, account: AccountContext) -> None:
        """Rotate the session now (RefreshingAdapter): a session used less often than its refresh token lives
        would otherwise lapse. The new tokens reach `on_credentials` like any rotation."""
        await self._refresh(self._session(account, need_token=False))

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
        host = httpx2.URL(s.pds).host
        response = await self._authed(s, "GET", GET_SERVICE_AUTH, write=False, params={
            "aud": f"did:web:{host}", "lxm": UPLOAD_BLOB, "exp": int(self._now()) + SERVICE_AUTH_SECONDS})
        if not response.is_success:
            raise self._error(response, GET_SERVICE_AUTH)
        token = _json_of(response).get("token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("Bluesky getServiceAuth answered without a token.", status=response.status_code, remediation="Retry later.")
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
