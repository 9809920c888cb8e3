"""MastodonAdapter: statuses on any Mastodon server, exactly once through Mastodon's Idempotency-Key (platforms.md §10).

Pieces (platforms/pieces.py): the main post, each thread part (a reply to the previous part: `in_reply_to_id`) and
the first comment (a reply to the main post), each one `POST /api/v1/statuses` (JSON) through `job.ledger.step`,
with the header `Idempotency-Key: <upstream_key>:<piece>` (the job's deterministic key and the piece's name), so
the same piece always carries the same key. The main body is the one validate_post previews (`build_post`: `status`,
`visibility`, `language`, `sensitive`, `spoiler_text` = the request's `title`, the content warning) with the real
`media_ids`; replies (`in_reply_to_id`) carry the same visibility, language and sensitivity, and no content warning
(preflight counts the warning into the main post only).

Media (the main post's): each attachment is uploaded inside the piece's send, right before its status, never before
(`find` probes with a ledger that must not send): `POST /api/v2/media` (multipart `file`, `description` = alt text)
answers 200 (processed) or 202 (processing); a 202 is read at most `media_reads` times (`GET /api/v1/media/{id}`: 206
still processing, 200 done; no waiting between reads), and if still processing the piece raises
`pieces.Processing(handle, check_at)` with the uploaded ids as handle: the post waits `processing`, and a worker's
next try reads the same media again (never uploading them twice), up to `media_max_wait` after the upload. The
ids are the piece's marker handle too, so a re-send after a crash posts the same media.

Reconcile (a piece sent whose answer was not recorded: a timeout, a 5xx, a crash):
- within Mastodon's idempotency window (an hour; `IDEMPOTENCY_WINDOW` less a margin, judged by the injected clock
  from the piece's sent_at), the status is POSTed again with the same key and the same media: Mastodon answers the
  status it made for that key, or makes it now if the first never arrived: either way exactly one exists;
- past it, or while probing (`find`: nothing may be sent), the account's own statuses are searched
  (`GET /api/v1/accounts/{id}/statuses?since_id=<snowflake of sent_at less CLOCK_SKEW>`, 40 a page, at most
  `SEARCH_PAGES` pages): a status with the same parent (`in_reply_to_id`), content warning and media count is
  compared by its source (`GET /api/v1/statuses/{id}/source`: the plain text as it was sent, so the HTML `content`,
  with its links shortened and its paragraphs rebuilt, is never compared); equal text → found. Mastodon's ids are
  snowflakes (milliseconds << 16), so since_id made from an instant lists what was created after it. Nothing found
  in a complete listing → certainly absent (sent again); more than the pages allow → unknown.

Delete: `DELETE /api/v1/statuses/{id}` (a status already gone, 404, counts as deleted).
Health (base.Verifying, for get_account): `GET /api/v1/accounts/verify_credentials` with the account's token, no side
effects; 401 (a revoked token, a suspended account) is AuthRefused, so the account needs reconnecting.
Errors: api.ERRORS (platforms/calls.py applies it). Tokens come from the account's TokenSession (`deps.sessions`);
Mastodon tokens do not expire, so there is no refresh: a 401 is AuthRefused (reconnect).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx2

from omnipost.clock import Clock
from omnipost.errors import PlatformAuthError, PlatformError, PlatformRejectedError, PlatformUnavailableError, UnknownOutcomeError
from omnipost.oauth.session import MemoryCredentialStore, TokenSession, TokenSessions
from omnipost.platforms.base import AccountContext, AdapterDeps, MediaFile, Published, PublishJob, Verified, assembled
from omnipost.platforms.mastodon import build_post
from omnipost.platforms.mastodon.api import PLATFORM, call
from omnipost.platforms.pieces import COMMENT, MAIN, PENDING, Made, Mark, Piece, Processing, part

IDEMPOTENCY_WINDOW = timedelta(hours=1)  # how long Mastodon remembers an Idempotency-Key (platforms.md §0.3)
WINDOW_MARGIN = timedelta(minutes=5)  # re-POSTed only well inside it (clocks differ)
CLOCK_SKEW = timedelta(minutes=2)  # searched before the send time too: the server's clock may be behind ours
SEARCH_WINDOW = timedelta(hours=24)  # how far back `find` looks for a piece it has no send time for
SEARCH_PAGES = 5  # 40 statuses each


def idempotency_key(upstream_key: str, piece: str) -> str:
    """The piece's Idempotency-Key: the job's deterministic key and the piece's name (`post`, `t1`, ..., `c`)."""
    return f"{upstream_key}:{piece}"


def snowflake_at(at: datetime) -> str:
    """The smallest Mastodon id of a status created at `at` (Mastodon::Snowflake: milliseconds << 16)."""
    return str(max(0, int(at.timestamp() * 1000)) << 16)


def _same_text(a: str, b: str) -> bool:
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


@dataclass
class _Api:
    """One account's server, token and id for one call sequence."""

    base: str
    account_id: str | None
    tokens: TokenSession = field(repr=False)

    @property
    def token(self) -> str:
        return str(self.tokens.credentials.get("access_token") or "")


class MastodonAdapter:
    """PlatformAdapter for Mastodon (any server): the server assigns ids; exactly once by Idempotency-Key."""

    platform = PLATFORM
    caller_chosen_ids = False

    def __init__(self, http: httpx2.AsyncClient, *, clock: Clock, timeout: float = 30.0, sessions: TokenSessions | None = None,
                 media_timeout: float = 600.0, media_reads: int = 2, check_after: timedelta = timedelta(seconds=10),
                 media_max_wait: timedelta = timedelta(minutes=30)) -> None:
        """`sessions`: the runtime's TokenSessions (an adapter used alone keeps the stored credentials in memory).
        `media_reads`: status reads of a processing upload per try; `check_after`: when a worker reads it again;
        `media_max_wait`: how long after the upload a medium still processing is given up (retryable)."""
        self.http, self.clock, self.timeout = http, clock, timeout
        self.sessions = sessions if sessions is not None else TokenSessions(MemoryCredentialStore(), clock, {})
        self.media_timeout = max(timeout, media_timeout)
        self.media_reads, self.check_after, self.media_max_wait = media_reads, check_after, media_max_wait

    @classmethod
    def from_deps(cls, deps: AdapterDeps) -> "MastodonAdapter":
        return cls(deps.http, clock=deps.clock, timeout=deps.timeout, sessions=deps.sessions)

    # ------------------------------------------------------------------ calls

    def _api(self, account: AccountContext) -> _Api:
        tokens = self.sessions.get(account)
        creds = tokens.credentials
        extra = creds.get("extra") if isinstance(creds.get("extra"), dict) else {}
        base = str(extra.get("instanceUrl") or account.defaults.get("instanceUrl") or "").rstrip("/")
        if not base or not creds.get("access_token"):
            raise PlatformAuthError("The Mastodon account has no token or server.", remediation="Reconnect the account (connect_account).")
        account_id = extra.get("accountId")
        return _Api(base, str(account_id) if account_id else None, tokens)

    async def _call(self, api: _Api, method: str, path: str, *, write: bool, what: str, timeout: float | None = None, **kw: Any) -> Any:
        return await call(self.http, method, f"{api.base}{path}", write=write, now=self.clock.now().timestamp(),
                          timeout=timeout or self.timeout, token=api.token, what=what, **kw)

    # ------------------------------------------------------------------ media

    async def _upload(self, api: _Api, f: MediaFile) -> tuple[str, bool]:
        """POST /api/v2/media: (the attachment id, whether it is processed)."""
        if f.path is None:
            raise PlatformRejectedError(f"media[{f.index}] has no stored file to upload; Mastodon takes bytes, not URLs.",
                                        remediation="Upload the media (upload_media) and publish again.")
        data = await anyio.Path(f.path).read_bytes()
        form = {"description": f.alt_text} if f.alt_text else {}
        answer = await self._call(api, "POST", "/api/v2/media", write=False, what="/api/v2/media", timeout=self.media_timeout,
                                  files={"file": (f.path.name, data, f.mime or "application/octet-stream")}, data=form)
        body = answer.obj("/api/v2/media")
        return str(body["id"]), answer.status == 200 and body.get("url") is not None

    async def _processed(self, api: _Api, media_id: str) -> bool:
        """One GET /api/v1/media/{id}: 200 done, 206 still processing."""
        answer = await self._call(api, "GET", f"/api/v1/media/{media_id}", write=False, what="/api/v1/media")
        return answer.status == 200

    async def _media(self, api: _Api, job: PublishJob, name: str) -> list[str]:
        """The main post's attachment ids, uploaded now (or by an earlier try, still processing: read again).

        Raises:
            Processing: an attachment is still processing after `media_reads` reads (handle: every id, in order)."""
        target = job.target
        if not target.media:
            return []
        rec = job.ledger.get(name)
        files = {f.index: f for f in job.media}
        if rec is not None and rec.status == PENDING and rec.handle:
            ids = rec.handle.split(",")
            waiting = list(ids)
            since = rec.pending_since
        else:
            ids, waiting, since = [], [], None
            for ref in target.media:
                f = files.get(ref.index)
                if f is None:
                    raise PlatformRejectedError(f"media[{ref.index}] has no stored file.", remediation="Upload the media and publish again.")
                media_id, done = await self._upload(api, f)
                ids.append(media_id)
                if not done:
                    waiting.append(media_id)
        for _ in range(self.media_reads if waiting else 0):
            waiting = [m for m in waiting if not await self._processed(api, m)]
            if not waiting:
                break
        if waiting:
            now = self.clock.now()
            if since is not None and now - since > self.media_max_wait:
                raise PlatformUnavailableError(f"Mastodon is still processing media {waiting[0]} {self.media_max_wait} after the upload.",
                                               remediation="Retry the post later, or publish a smaller or re-encoded file.")
            raise Processing(",".join(ids), now + self.check_after, f"Mastodon is processing media {', '.join(waiting)}")
        return ids

    # ------------------------------------------------------------------ statuses

    @staticmethod
    def _made(body: dict[str, Any], status: int | None, existed: bool) -> Made:
        kept = {k: body[k] for k in ("id", "uri", "url", "created_at", "visibility", "in_reply_to_id") if k in body}
        return Made(str(body["id"]), body.get("url") if isinstance(body.get("url"), str) else None,
                    {"uri": body["uri"]} if isinstance(body.get("uri"), str) else {}, kept, status, existed)

    async def _post(self, api: _Api, key: str, body: dict[str, Any], *, existed: bool = False) -> Made:
        answer = await self._call(api, "POST", "/api/v1/statuses", write=True, what="/api/v1/statuses", json=body,
                                  headers={"Idempotency-Key": key})
        return self._made(answer.obj("/api/v1/statuses"), answer.status, existed)

    async def _search(self, api: _Api, sent_at: datetime | None, body: dict[str, Any], media_count: int) -> Made | None:
        """The account's own status matching the piece since it was sent (see the module docstring), or None."""
        if api.account_id is None:
            raise UnknownOutcomeError("The Mastodon account's id is not known, so its statuses cannot be searched.",
                                      remediation="Reconnect the account, then resolve_post.")
        since = (sent_at or self.clock.now() - SEARCH_WINDOW) - CLOCK_SKEW
        params: dict[str, str] = {"since_id": snowflake_at(since), "limit": "40", "exclude_reblogs": "true"}
        for _ in range(SEARCH_PAGES):
            page = (await self._call(api, "GET", f"/api/v1/accounts/{api.account_id}/statuses", write=False,
                                     what="the account's statuses", params=params)).body
            if not isinstance(page, list):
                raise PlatformUnavailableError("Mastodon listed the account's statuses without a list.", remediation="Retry later.")
            for s in page:
                if not isinstance(s, dict) or not isinstance(s.get("id"), str):
                    continue
                if (s.get("in_reply_to_id") != body.get("in_reply_to_id") or (s.get("spoiler_text") or "") != body.get("spoiler_text", "")
                        or len(s.get("media_attachments") or []) != media_count):
                    continue
                source = (await self._call(api, "GET", f"/api/v1/statuses/{s['id']}/source", write=False,
                                           what="a status's source")).body
                if isinstance(source, dict) and isinstance(source.get("text"), str) and _same_text(source["text"], body["status"]):
                    return self._made(s, 200, True)
            if len(page) < 40:
                return None
            params = {**params, "max_id": str(page[-1]["id"])}
        raise UnknownOutcomeError(f"More than {40 * SEARCH_PAGES} statuses since the piece was sent: omnipost cannot tell "
                                  "whether it is among them.", remediation="Check the account on Mastodon, then resolve_post.")

    # ------------------------------------------------------------------ the adapter interface

    async def publish(self, job: PublishJob) -> Published:
        """The main post (with its media), each thread part replying to the previous one, then the first comment
        replying to the main post; each piece through the job's ledger (see the module docstring)."""
        ledger, target = job.ledger, job.target
        api = self._api(job.account)
        # The body validate_post previews (platforms/mastodon/__init__.py), its media placeholders replaced at send time;
        # replies carry the same visibility, language and sensitivity, the content warning only the main post.
        main_body = {k: v for k, v in build_post(target).items() if k != "media_ids"}
        common = {k: main_body[k] for k in ("visibility", "sensitive", "language") if k in main_body}

        async def piece(name: str, body: dict[str, Any], with_media: bool) -> Made:
            key = idempotency_key(job.upstream_key, name)
            count = len(target.media) if with_media else 0

            async def send(mark: Mark) -> Made:
                ids = await self._media(api, job, name) if with_media else []
                await mark(",".join(ids) or None)  # the media go with the piece: a re-send posts the same ones
                return await self._post(api, key, body | ({"media_ids": ids} if ids else {}))

            async def reconcile(rec: Piece) -> Made | None:
                now = self.clock.now()
                if not ledger.probe and rec.sent_at is not None and now - rec.sent_at < IDEMPOTENCY_WINDOW - WINDOW_MARGIN \
                        and (not count or rec.handle):
                    ids = rec.handle.split(",") if rec.handle else []
                    return await self._post(api, key, body | ({"media_ids": ids} if ids else {}), existed=True)
                return await self._search(api, rec.sent_at, body, count)

            return await ledger.step(name, send, reconcile, marks=True)

        main = await piece(MAIN, main_body, True)
        parent = main.upstream_id
        for i, text in enumerate(target.thread, start=1):
            made = await piece(part(i), {"status": text, "in_reply_to_id": parent, **common}, False)
            parent = made.upstream_id
        if target.first_comment:
            await piece(COMMENT, {"status": target.first_comment, "in_reply_to_id": main.upstream_id, **common}, False)
        published = assembled(ledger, target, main)
        assert published is not None
        return published

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """DELETE /api/v1/statuses/{id}; one already gone counts as deleted."""
        api = self._api(account)
        if not upstream_id.isdigit():
            raise PlatformRejectedError(f"'{upstream_id[:40]}' is not a Mastodon status id.", remediation="Pass the post's status id.")
        try:
            await self._call(api, "DELETE", f"/api/v1/statuses/{upstream_id}", write=True, what="DELETE /api/v1/statuses")
        except PlatformError as exc:
            if exc.status != 404:
                raise

    async def verify(self, account: AccountContext) -> Verified:
        """Whoami: GET /api/v1/accounts/verify_credentials with the account's token (Mastodon tokens are not renewed, so
        a refusal is final). The handle is the username, as the instance names it; the name its display name.

        Raises:
            PlatformAuthError: the instance refused the token (401). PlatformError: it could not be asked now."""
        api = self._api(account)
        body = (await self._call(api, "GET", "/api/v1/accounts/verify_credentials", write=False, what="verify_credentials")).body
        if not (isinstance(body, dict) and isinstance(body.get("id"), str) and isinstance(body.get("username"), str)):
            raise PlatformUnavailableError("Mastodon answered verify_credentials without id and username.",
                                           remediation="Retry later.")
        name = body.get("display_name")
        return Verified(id=body["id"], handle=body["username"], name=name if isinstance(name, str) and name else None)
