"""XAdapter: posts, replies, threads and first comments through POST /2/tweets, media through media upload v2,
exactly once by searching the account's own posts (see the package docstring)."""

import html
import re
import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx2

from omnipost.clock import Clock
from omnipost.errors import PlatformAuthError, PlatformDuplicateError, PlatformRejectedError, PlatformUnavailableError, UnknownOutcomeError
from omnipost.oauth.session import MemoryCredentialStore, TokenSession, TokenSessions
from omnipost.platforms.base import AccountContext, AdapterDeps, MediaFile, Published, PublishJob, Verified, assembled
from omnipost.platforms.calls import raise_for_status, send
from omnipost.platforms.pieces import COMMENT, MAIN, PENDING, SENDING, Made, Mark, Processing, part
from omnipost.platforms.x.errors import ERRORS

PLATFORM = "x"
DEFAULT_API = "https://api.x.com"
CHUNK = 4 << 20  # append segments of 4 MiB (X takes up to 5 MB per segment; 1 MB is proven in Postiz)
STATUS_READS = 2  # STATUS reads in a row per try while media processes; then the post waits `processing`
CHECK_AFTER = 5  # seconds, when X's processing_info gives no check_after_secs
CLOCK_SKEW = timedelta(minutes=1)  # searched before the send time too: X's clock may be behind ours
RECONCILE_WINDOW = timedelta(hours=24)  # searched when the send time is unknown
SEARCH_PAGES = 5  # pages of 100 of the account's posts read at most by one reconcile; more: it cannot tell
POST_FIELDS = "created_at,attachments,entities"
_URL = "\x00"  # what any URL becomes in a compared text (X wraps every link in t.co)
_TCO = re.compile(r"https?://t\.co/[A-Za-z0-9]+")


def _iso(at: datetime) -> str:
    """X's RFC 3339 form (whole seconds, Z)."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _category(f: MediaFile) -> str:
    return {"video": "tweet_video", "gif": "tweet_gif"}.get(f.kind or "", "tweet_image")


def comparable(text: str, *, upstream: bool = False) -> tuple[str, int]:
    """A post's text as compared by reconcile, and how many links it holds.

    X stores the text with every link replaced by a t.co link (twitter-text's extractor decides what is a link, bare
    domains included), `&`, `<`, `>` HTML-escaped, and, for a post with media, a trailing t.co link to the media.
    So both sides are NFC-normalised, unescaped, and every link becomes one placeholder: ours where twitter-text
    finds one (what X will wrap), X's where a t.co link stands. The link targets themselves are not compared (X
    answers them only as entities, possibly rewritten); text, media count, parent and the time window are enough
    to tell an account's own post. Trailing extra placeholders (the media link) are dropped by `same_text`."""
    text = unicodedata.normalize("NFC", html.unescape(text) if upstream else text).replace("\r\n", "\n")
    if upstream:
        out, n = _TCO.subn(_URL, text)
        return out.strip(), n
    from omnipost.preflight.twitter import twitter_urls  # twitter-text (and pkg_resources) load at first use, not at start-up

    spans = twitter_urls(text)
    pieces, last = [], 0
    for _url, start, end in spans:
        pieces += [text[last:start], _URL]
        last = end
    pieces.append(text[last:])
    return "".join(pieces).strip(), len(spans)


def same_text(ours: str, theirs: str) -> bool:
    """Whether X's stored text is ours (see comparable): X may add the media's t.co link at the end."""
    mine, links = comparable(ours)
    stored, stored_links = comparable(theirs, upstream=True)
    while stored_links > links and stored.endswith(_URL):
        stored, stored_links = stored[:-1].rstrip(), stored_links - 1
    return mine == stored


@dataclass(frozen=True)
class _Want:
    """What one piece is, as reconcile looks for it."""

    text: str
    media: int
    parent: str | None


class XAdapter:
    """PlatformAdapter for X (API v2, OAuth 2.0 user tokens)."""

    platform = PLATFORM
    caller_chosen_ids = False  # X assigns ids: exactly-once by search (registry strategy "search")

    def __init__(self, http: httpx2.AsyncClient, *, clock: Clock, sessions: TokenSessions | None = None,
                 api_base: str = DEFAULT_API, timeout: float = 30.0, media_timeout: float = 600.0, chunk: int = CHUNK,
                 status_reads: int = STATUS_READS) -> None:
        """`sessions`: the accounts' TokenSessions (refreshes persisted before use); without it (the adapter alone:
        tests, scripts) tokens are kept in memory and never refreshed. `api_base`: where X answers (the provider's,
        overridable with OMNIPOST_X_API_BASE)."""
        self.http, self.clock, self.timeout = http, clock, timeout
        self.sessions = sessions if sessions is not None else TokenSessions(MemoryCredentialStore(), clock, {})
        self.api = api_base.rstrip("/")
        self.media_timeout = max(timeout, media_timeout)
        self.chunk, self.status_reads = chunk, status_reads

    @classmethod
    def from_deps(cls, deps: AdapterDeps) -> "XAdapter":
        """As the runtime builds it: its TokenSessions, and X's API base from the provider configuration."""
        return cls(deps.http, clock=deps.clock, sessions=deps.sessions, api_base=api_base(deps.environ), timeout=deps.timeout)

    # ------------------------------------------------------------------ calls

    def _now(self) -> float:
        return self.clock.now().timestamp()

    async def _call(self, tokens: TokenSession, method: str, path: str, *, write: bool, timeout: float | None = None,
                    **kw: Any) -> httpx2.Response:
        """One authenticated call; a 401 refreshes the token once (the session) and repeats the call once."""
        async def call(token: str) -> httpx2.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return await send(self.http, method, f"{self.api}{path}", platform=PLATFORM, write=write,
                              timeout=timeout or self.timeout, headers=headers, **kw)

        return await tokens.with_token(call, expired=lambda response, _token: response.status_code == 401)

    async def _json(self, tokens: TokenSession, method: str, path: str, *, write: bool, **kw: Any) -> dict[str, Any]:
        response = await self._call(tokens, method, path, write=write, **kw)
        raise_for_status(response, PLATFORM, errors=ERRORS, now=self._now())
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            error = UnknownOutcomeError if write else PlatformUnavailableError
            raise error(f"X answered {path} without a JSON object.", status=response.status_code,
                        remediation="omnipost reconciles before any retry." if write else "Retry later.")
        return body  # pyright: ignore[reportUnknownVariableType]  # raw upstream JSON, read field by field

    def _tokens(self, account: AccountContext) -> TokenSession:
        tokens = self.sessions.get(account)
        if not tokens.credentials.get("access_token"):
            raise PlatformAuthError("The X account has no access token.", remediation="Reconnect the account (connect_account).")
        return tokens

    async def _user(self, tokens: TokenSession) -> tuple[str, str]:
        """(user id, username) the connect stored; read with /2/users/me when it did not."""
        extra = tokens.credentials.get("extra") or {}
        if isinstance(extra.get("userId"), str) and isinstance(extra.get("username"), str):
            return extra["userId"], extra["username"]
        me = await self._me(tokens)
        return me.id, me.handle

    async def _me(self, tokens: TokenSession) -> Verified:
        data = (await self._json(tokens, "GET", "/2/users/me", write=False)).get("data") or {}
        if not (isinstance(data.get("id"), str) and isinstance(data.get("username"), str)):
            raise PlatformUnavailableError("X answered /2/users/me without id and username.", remediation="Retry later.")
        return Verified(id=data["id"], handle=data["username"], name=data.get("name"))

    # ------------------------------------------------------------------ media upload v2

    async def _upload(self, tokens: TokenSession, f: MediaFile) -> str:
        """initialize → append (segments) → finalize; the media id, once X has it ready.

        Raises:
            Processing: X is still processing it (its id is the handle; checked again later, never uploaded again)."""
        if f.path is None:
            raise PlatformRejectedError(f"media[{f.index}] has no stored file to upload; X takes bytes, not URLs.",
                                        remediation="Upload the media (upload_media) and publish again.")
        size = f.size if f.size is not None else (await anyio.Path(f.path).stat()).st_size
        init = await self._json(tokens, "POST", "/2/media/upload/initialize", write=False,
                                json={"media_type": f.mime or "application/octet-stream", "total_bytes": size,
                                      "media_category": _category(f)})
        media_id = str((init.get("data") or {}).get("id") or "")
        if not media_id:
            raise PlatformUnavailableError("X answered media initialize without an id.", remediation="Retry later.")
        index = 0
        async for segment in _segments(f, self.chunk):
            await self._json(tokens, "POST", f"/2/media/upload/{media_id}/append", write=False, timeout=self.media_timeout,
                             data={"segment_index": str(index)}, files={"media": ("blob", segment, "application/octet-stream")})
            index += 1
        final = await self._json(tokens, "POST", f"/2/media/upload/{media_id}/finalize", write=False)
        await self._ready(tokens, media_id, final)
        return media_id

    async def _ready(self, tokens: TokenSession, media_id: str, answer: dict[str, Any]) -> None:
        """Until X says the media is ready, at most `status_reads` STATUS reads (no waiting between them); still
        processing after them: Processing(media id, X's check_after_secs from now). A failed one is rejected."""
        for read in range(self.status_reads + 1):
            info = (answer.get("data") or {}).get("processing_info")
            state = info.get("state") if isinstance(info, dict) else None
            if state in (None, "succeeded"):
                return
            if state == "failed":
                raise PlatformRejectedError("X could not process the media.", platform_response=answer,
                                            remediation="Re-encode it (H.264/AAC MP4, or a smaller GIF) and publish again.")
            if read == self.status_reads:
                after = info.get("check_after_secs") if isinstance(info, dict) else None
                wait = after if isinstance(after, int) and not isinstance(after, bool) and after > 0 else CHECK_AFTER
                raise Processing(media_id, self.clock.now() + timedelta(seconds=wait), f"X is processing media {media_id} ({state})")
            answer = await self._json(tokens, "GET", "/2/media/upload", write=False,
                                      params={"media_id": media_id, "command": "STATUS"})

    async def _alt_text(self, tokens: TokenSession, media_id: str, text: str) -> None:
        await self._json(tokens, "POST", "/2/media/metadata", write=False,
                         json={"id": media_id, "metadata": {"alt_text": {"text": text}}})

    async def _media(self, tokens: TokenSession, files: tuple[MediaFile, ...], pending: str | None) -> list[str]:
        """The media ids of a post's attachments: uploaded now, or (`pending`) the one an earlier try left processing."""
        ids: list[str] = []
        for f in files:
            if pending is not None:  # a GIF or video is alone in its post: the pending handle is it
                await self._ready(tokens, pending, await self._json(tokens, "GET", "/2/media/upload", write=False,
                                                                    params={"media_id": pending, "command": "STATUS"}))
                media_id = pending
            else:
                media_id = await self._upload(tokens, f)
            if f.alt_text:
                await self._alt_text(tokens, media_id, f.alt_text)
            ids.append(media_id)
        return ids

    # ------------------------------------------------------------------ posts

    async def _create(self, tokens: TokenSession, username: str, body: dict[str, Any]) -> Made:
        answer = await self._json(tokens, "POST", "/2/tweets", write=True, json=body)
        data = answer.get("data") or {}
        if not isinstance(data.get("id"), str):
            raise UnknownOutcomeError("X answered POST /2/tweets without the post's id.", platform_response=answer,
                                      remediation="omnipost reconciles this post with X before any retry.")
        return Made(data["id"], f"https://x.com/{username}/status/{data['id']}", body=answer, status=201)

    async def _search(self, tokens: TokenSession, user_id: str, username: str, want: _Want, sent_at: datetime | None) -> Made | None:
        """The account's own post since `sent_at` (less the clock skew) with the piece's text, media count and parent
        (the earliest such, should there be several); None: certainly absent.

        Raises:
            UnknownOutcomeError: more of the account's posts than one reconcile reads (it cannot tell)."""
        since = (sent_at - CLOCK_SKEW) if sent_at is not None else self.clock.now() - RECONCILE_WINDOW
        params: dict[str, Any] = {"start_time": _iso(since), "max_results": 100, "post.fields": POST_FIELDS,
                                  "expansions": "referenced_posts"}
        found: list[dict[str, Any]] = []
        for _ in range(SEARCH_PAGES):
            page = await self._json(tokens, "GET", f"/2/users/{user_id}/tweets", write=False, params=params)
            found += [p for p in page.get("data") or [] if isinstance(p, dict) and _matches(p, want)]
            token = (page.get("meta") or {}).get("next_token")
            if not token:
                break
            params["pagination_token"] = token
        else:
            if not found:
                raise UnknownOutcomeError(f"The account has posted more than {100 * SEARCH_PAGES} posts since the piece was "
                                          "sent; omnipost cannot tell whether it is among them.",
                                          remediation="Check the account on X, then resolve_post.")
        if not found:
            return None
        post = found[-1]  # newest first: the earliest since the send is ours
        return Made(str(post["id"]), f"https://x.com/{username}/status/{post['id']}", body={"data": post}, status=200, existed=True)

    async def publish(self, job: PublishJob) -> Published:
        """The post (with its media), then the thread as a reply chain, then the first comment as a reply to the post:
        each piece through the job's ledger. A piece an earlier try sent is searched for first; media are uploaded
        only inside the main piece's send (a probe uploads nothing)."""
        ledger, target = job.ledger, job.target
        tokens = self._tokens(job.account)
        user_id, username = await self._user(tokens)
        options = target.options or {}

        async def piece(name: str, text: str, parent: str | None, files: tuple[MediaFile, ...] = (),
                        extra: Mapping[str, Any] | None = None) -> Made:
            rec = ledger.get(name)
            pending = rec.handle if rec is not None and rec.status == PENDING else None
            maybe_sent = rec is not None and rec.status == SENDING  # an earlier try may have made it public
            want = _Want(text, len(files), parent)

            async def create(mark: Mark) -> Made:
                body: dict[str, Any] = {"text": text} | dict(extra or {})
                if files:
                    body["media"] = {"media_ids": await self._media(tokens, files, pending)}
                if parent is not None:
                    body["reply"] = {"in_reply_to_tweet_id": parent}
                await mark(None)  # committed before the irreversible call
                try:
                    return await self._create(tokens, username, body)
                except PlatformDuplicateError as exc:
                    if not maybe_sent:
                        raise
                    # X refuses the same text again: after an earlier send of this very piece, that is it (X's
                    # timeline may not have shown it yet when reconcile looked).
                    if (found := await self._search(tokens, user_id, username, want, rec.sent_at if rec else None)) is not None:
                        return found
                    raise UnknownOutcomeError(f"{exc.message} An earlier try sent this piece, so it may be that post.",
                                              status=exc.status, platform_response=exc.platform_response,
                                              remediation="Check the account on X, then resolve_post.") from exc

            async def reconcile(rec: Any) -> Made | None:
                return await self._search(tokens, user_id, username, want, rec.sent_at)

            return await ledger.step(name, create, reconcile, marks=True)

        reply_settings = {"reply_settings": options["replySettings"]} if options.get("replySettings") else {}
        files = tuple(sorted(job.media, key=lambda f: f.index))
        main = await piece(MAIN, target.text, None, files, reply_settings)
        parent = main.upstream_id
        for i, segment in enumerate(target.thread, start=1):
            parent = (await piece(part(i), segment, parent)).upstream_id
        if target.first_comment:
            await piece(COMMENT, target.first_comment, main.upstream_id)
        published = assembled(ledger, target, main)
        assert published is not None
        return published

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """DELETE /2/tweets/{id}; a post X no longer has counts as deleted."""
        if not re.fullmatch(r"[0-9]{1,19}", upstream_id):
            raise PlatformRejectedError(f"'{upstream_id}' is not an X post id.", remediation="Pass the post's numeric id.")
        tokens = self._tokens(account)
        response = await self._call(tokens, "DELETE", f"/2/tweets/{upstream_id}", write=True)
        if response.status_code == 404:
            return
        raise_for_status(response, PLATFORM, errors=ERRORS, now=self._now())

    async def verify(self, account: AccountContext) -> Verified:
        """Whoami (GET /2/users/me) with the account's token (refreshed once if X says it expired); no side effects."""
        return await self._me(self._tokens(account))


def _matches(post: dict[str, Any], want: _Want) -> bool:
    """Whether one of the account's posts (as GET /2/users/{id}/tweets answers it) is the piece."""
    if not isinstance(post.get("text"), str) or not isinstance(post.get("id"), str):
        return False
    keys = (post.get("attachments") or {}).get("media_keys") or []
    replied = [r.get("id") for r in post.get("referenced_posts") or [] if isinstance(r, dict) and r.get("type") == "replied_to"]
    parent = replied[0] if replied else None
    return len(keys) == want.media and parent == want.parent and same_text(want.text, post["text"])


async def _segments(f: MediaFile, size: int) -> AsyncIterator[bytes]:
    assert f.path is not None
    async with await anyio.open_file(f.path, "rb") as handle:
        while chunk := await handle.read(size):
            yield chunk


def api_base(environ: Mapping[str, str] | None) -> str:
    """X's API base: the provider's (oauth/providers.py), with OMNIPOST_X_API_BASE applied."""
    import os

    from omnipost.oauth.providers import provider_for

    return provider_for(PLATFORM, environ if environ is not None else os.environ).api_base

