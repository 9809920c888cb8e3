"""A fake X API v2 (api.x.com), speaking platforms.md §2 and refereed by X's OpenAPI document
(reference-data/platform-specs/x-api-v2.openapi.json): every request is checked against its operation (method, path
and query parameters, headers, the JSON or multipart body, and the security requirement with the token's scopes),
every answer against the operation's response schema.

Routes:
- GET /2/users/me → {"data": {"id", "name", "username"}}.
- POST /2/tweets (JSON) → 201 {"data": {"id", "text", "edit_history_post_ids"}}: text and/or media (ids of this
  user's uploads, processed), a reply to an existing post, reply_settings. X's refusals: the same text as a live post
  of the same user → 403 duplicate content; a suspended user → 403 suspended; an unknown media id or parent → 400
  invalid-request naming the parameter. Answers carry x-rate-limit-* and x-user-limit-24hour-* headers.
- DELETE /2/tweets/{id} → {"data": {"deleted": true}} (false for a post it does not have); another user's → 403.
- GET /2/users/{id}/tweets (start_time, max_results, pagination_token, post.fields, expansions=referenced_posts),
  newest first. The stored text is what X makes of the sent one: `&<>` HTML-escaped, every link twitter-text finds
  (the product's own port of it, omnipost.preflight.twitter: the fake reuses the public algorithm, not the adapter)
  replaced by a t.co link, and a post with media ending with a t.co link to its media; `entities.urls` hold the
  expansions.
- Media upload v2: POST /2/media/upload/initialize (JSON) → POST /2/media/upload/{id}/append (multipart
  segment_index + media) → POST /2/media/upload/{id}/finalize → GET /2/media/upload?media_id=&command=STATUS.
  Images are ready at finalize. GIFs and videos are processed: finalize answers `pending`, then each STATUS read
  moves the state on (pending → in_progress → succeeded after `processing_reads` reads), or the fake's clock does
  (`processing_seconds` after finalize, when set); `fail_processing` makes them fail. A post may attach only media
  that succeeded. The bytes appended must add up to total_bytes.
- POST /2/media/metadata (alt text).
- POST /2/oauth2/token (grant_type=refresh_token): ROTATING refresh tokens: each refresh answers a new access and a
  new refresh token and revokes the one sent; a spent, revoked or unknown one → 400 {"error": "invalid_request",
  "error_description": "Value passed for the token was invalid."} (platforms.md §2.1, unconfirmed exact text).
  POST /2/oauth2/revoke (RFC 7009). Neither is in the OpenAPI document (X documents its OAuth endpoints apart), so
  they are checked here by hand: the form's grant type, and client authentication (HTTP Basic or a client_id).
- Test hooks (not X's), for a test that runs this fake in another process (tests/test_crash_platforms.py):
  GET /_test/posts → the fake's posts as {id, user, text, parent, media, deleted}, with how many POST /2/tweets it
  did not store (duplicate refusals and scripted failures) and the referee's violations; POST /_test/users {id,
  username} → the user (created if new) and a fresh token pair. `refuse_duplicates = False` stores a second copy of
  the same text instead of refusing it, so a crash test counts copies rather than relying on X's own guard.

Refused token → 401 problem details `{"title": "Unauthorized", "type": "about:blank", "status": 401, "detail":
"Unauthorized"}` (confirmed in platforms.md §2.4). Errata: the spec's `Problem` schema (a oneOf of nine problem
types) has no `about:blank`, `usage-capped` or `rate-limit-exceeded` variant, although X answers them (401, the 403s
above, 429); such answers are checked for the common problem fields (type, title, detail: strings) only.

State: `users` (id → XUser, `suspended`), `posts` (id → XPost, the original text kept), `media` (id → XMedia),
`refresh_tokens`; `issue_user_token(user_id, scopes=...)` issues a 2-hour access token with scopes,
`issue_refresh_token(user_id)` a refresh token; `tweet_bodies` is every POST /2/tweets body received, in order.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.datastructures import UploadFile

from fakes.specs import SpecViolation, x_api
from fakes.upstream import Answer, FakeUpstream, Handler, Req
from omnipost.preflight.twitter import twitter_urls

ACCESS_TTL = 7200.0  # 2 h (platforms.md §2)
SCOPES = ("tweet.read", "tweet.write", "users.read", "offline.access", "media.write")
DUPLICATE_WINDOW = 86400.0  # X refuses the same text again; how long it remembers is unconfirmed (a day here)
PROBLEM = "https://api.x.com/2/problems/"
_SPEC_TYPES = {PROBLEM + t for t in ("resource-not-found", "invalid-request", "not-authorized-for-resource",
                                     "not-authorized-for-field", "field-unauthorized", "field-hydration-failure",
                                     "resource-unavailable", "disallowed-resource", "internal-error")}
DUPLICATE = {"detail": "You are not allowed to create a Tweet with duplicate content.", "type": "about:blank",
             "title": "Forbidden", "status": 403}
SUSPENDED = {"detail": "Your account is suspended and is not permitted to access this feature.", "type": "about:blank",
             "title": "Forbidden", "status": 403}
BAD_TOKEN = {"error": "invalid_request", "error_description": "Value passed for the token was invalid."}


@dataclass
class XUser:
    id: str
    name: str
    username: str
    suspended: bool = False


@dataclass
class XMedia:
    id: str
    key: str
    user: str
    media_type: str
    category: str
    total: int
    segments: dict[int, int] = field(default_factory=lambda: {})  # segment_index -> bytes
    finalized_at: float | None = None
    reads: int = 0  # STATUS reads since finalize
    alt_text: str | None = None

    @property
    def processed(self) -> bool:
        return self.category in ("tweet_video", "tweet_gif", "amplify_video")


@dataclass
class XPost:
    id: str
    user: str
    text: str  # as sent
    stored: str  # as X keeps it (escaped, t.co links)
    urls: list[dict[str, Any]]
    media_keys: list[str]
    parent: str | None
    created_at: float
    reply_settings: str | None = None
    deleted: bool = False


@dataclass
class _Refresh:
    user: str
    scopes: tuple[str, ...]
    spent: bool = False


def invalid(detail: str, parameter: str, value: Any = None) -> Answer:
    """400 invalid-request naming the parameter (platforms.md §2.4; the inner `errors` shape is unconfirmed)."""
    return Answer(400, {"title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                        "type": PROBLEM + "invalid-request",
                        "errors": [{"parameters": {parameter: [str(value)]}, "message": detail}]})


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeX(FakeUpstream):
    """api.x.com."""

    origin = "https://api.x.com"
    token_prefix = "x"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.users: dict[str, XUser] = {}
        self.posts: dict[str, XPost] = {}
        self.media: dict[str, XMedia] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.tweet_bodies: list[dict[str, Any]] = []
        self.processing_reads = 2  # STATUS reads after which a video/GIF has succeeded
        self.processing_seconds: float | None = None  # or: seconds after finalize (the fake's clock)
        self.fail_processing = False
        self.refuse_duplicates = True  # False: a second copy is stored (a crash test counts copies, not refusals)
        self.violations: list[str] = []  # what the referee refused while served in its own process (tests/fakes/serve.py)
        self._ids = itertools.count(1)

    # --- state and tokens -------------------------------------------------------------------------------------------

    def add_user(self, id: str, username: str, name: str) -> XUser:
        self.users[id] = user = XUser(id, name, username)
        return user

    def issue_user_token(self, user_id: str, ttl: float = ACCESS_TTL, scopes: tuple[str, ...] = SCOPES) -> str:
        return self.issue(user_id, "user", ttl, scopes=tuple(scopes))

    def issue_refresh_token(self, user_id: str, scopes: tuple[str, ...] = SCOPES) -> str:
        token = self.issue(user_id, "refresh", None)
        self.refresh_tokens[token] = _Refresh(user_id, tuple(scopes))
        return token

    def expire_tokens(self, *, refresh: bool = False) -> None:
        """Every access token issued so far ends now (the next call answers 401); with `refresh`, every refresh token
        is revoked too (a refresh is refused: the user must reconnect)."""
        for token, grant in self.grants.items():
            if grant.kind == "user":
                grant.expires_at = min(grant.expires_at or self.clock(), self.clock())
            elif grant.kind == "refresh" and refresh:
                self.revoke(token)

    def live_posts(self, user: str | None = None) -> list[XPost]:
        return [p for p in self.posts.values() if not p.deleted and (user is None or p.user == user)]

    def _id(self, base: int) -> str:
        return str(base + next(self._ids))

    # --- the wire ---------------------------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(),
                ("GET", "/2/users/me", "users.me", self._me),
                ("POST", "/2/tweets", "tweets.create", self._create),
                ("DELETE", "/2/tweets/{id}", "tweets.delete", self._delete),
                ("GET", "/2/users/{id}/tweets", "users.tweets", self._timeline),
                ("POST", "/2/media/upload/initialize", "media.initialize", self._initialize),
                ("POST", "/2/media/upload/{id}/append", "media.append", self._append),
                ("POST", "/2/media/upload/{id}/finalize", "media.finalize", self._finalize),
                ("GET", "/2/media/upload", "media.status", self._status),
                ("POST", "/2/media/metadata", "media.metadata", self._metadata),
                ("POST", "/2/oauth2/token", "oauth2.token", self._token),
                ("POST", "/2/oauth2/revoke", "oauth2.revoke", self._revoke),
                ("GET", "/_test/posts", "test.posts", self._test_posts),
                ("POST", "/_test/users", "test.users", self._test_user)]

    def check(self, req: Req) -> None:
        if req.route.startswith(("oauth2.", "test.")):  # not in the OpenAPI document: checked by their handlers
            return
        # A token X would refuse (unknown, revoked, expired) is answered 401 by the handler; the referee checks the
        # scopes of the tokens X would accept.
        held = self.grants.get(req.bearer) if req.bearer else None
        live = held is None or (not held.revoked and (held.expires_at is None or held.expires_at > self.clock()))
        x_api().check_request(req.request.method, req.request.url.path, req.query, headers=req.request.headers, body=req.body,
                              content_type=req.content_type, auth=self.presented(req) if live and (held or not req.bearer) else False)

    def check_answer(self, req: Req, status: int, body: Any) -> None:
        if req.route.startswith(("oauth2.", "test.")):
            return
        if status >= 400 and body.get("type") not in _SPEC_TYPES:  # erratum above: not in the spec's oneOf
            if not all(isinstance(body.get(k), str) for k in ("type", "title", "detail")):
                raise SpecViolation(f"X problem answer without type/title/detail: {body}")
            return
        x_api().check_response(req.request.method, req.request.url.path, status, body, self.media_type(status))

    def media_type(self, status: int) -> str:
        return "application/json" if status < 400 else "application/problem+json"

    def refused(self, req: Req, why: str) -> Answer:
        return Answer(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})

    def _user(self, req: Req) -> XUser:
        user = self.users[self.grant(req, "user").subject]
        if user.suspended:
            raise Answer(403, SUSPENDED)
        return user

    def _limits(self, user: str) -> dict[str, str]:
        reset = str(int(self.clock()) + 900)
        made = len([p for p in self.posts.values() if p.user == user and p.created_at > self.clock() - 86400])
        return {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "99", "x-rate-limit-reset": reset,
                "x-user-limit-24hour-limit": "1000", "x-user-limit-24hour-remaining": str(max(0, 1000 - made)),
                "x-user-limit-24hour-reset": str(int(self.clock()) + 86400)}

    async def _me(self, req: Req) -> Any:
        user = self._user(req)
        return {"data": {"id": user.id, "name": user.name, "username": user.username}}

    # --- posts --------------------------------------------------------------------------------------------------------

    def _stored(self, text: str, media: list[str]) -> tuple[str, list[dict[str, Any]]]:
        """What X keeps of a text: escaped, links wrapped in t.co (with their entities), the media link at the end."""
        out, urls, last = "", [], 0
        for url, start, end in twitter_urls(text):
            out += html.escape(text[last:start], quote=False)
            short = f"https://t.co/{self._id(0):0>10}"
            urls.append({"start": len(out), "end": len(out) + len(short), "url": short, "expanded_url": url, "display_url": url[:30]})
            out += short
            last = end
        out += html.escape(text[last:], quote=False)
        if media:
            short = f"https://t.co/{self._id(0):0>10}"
            out = (out + " " if out else "") + short
            urls.append({"start": len(out) - len(short), "end": len(out), "url": short, "media_key": media[0],
                         "expanded_url": f"https://x.com/i/web/status/media", "display_url": "pic.x.com/media"})
        return out, urls

    async def _create(self, req: Req) -> Any:
        user = self._user(req)
        body: dict[str, Any] = req.body
        self.tweet_bodies.append(dict(body))
        text = str(body.get("text") or "")
        media_ids = list((body.get("media") or {}).get("media_ids") or [])
        for media_id in media_ids:
            m = self.media.get(media_id)
            if m is None or m.user != user.id or m.finalized_at is None or (m.processed and self._state(m) != "succeeded"):
                raise invalid(f"Your media IDs are invalid: {media_id}", "media.media_ids", media_id)
        if not text and not media_ids:
            raise invalid("Post text or media is required.", "text")
        parent = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if parent is not None and (parent not in self.posts or self.posts[parent].deleted):
            raise invalid("The post you are replying to was deleted or is not visible to you.", "reply.in_reply_to_tweet_id", parent)
        if self.refuse_duplicates and text and any(p.text == text for p in self.live_posts(user.id) if p.created_at > self.clock() - DUPLICATE_WINDOW):
            raise Answer(403, DUPLICATE, self._limits(user.id))
        post_id = self._id(1_860_000_000_000_000_000)
        stored, urls = self._stored(text, [self.media[m].key for m in media_ids])
        self.posts[post_id] = XPost(post_id, user.id, text, stored, urls, [self.media[m].key for m in media_ids], parent,
                                    self.clock(), body.get("reply_settings"))
        raise Answer(201, {"data": {"id": post_id, "text": stored, "edit_history_post_ids": [post_id]}}, self._limits(user.id))

    async def _delete(self, req: Req) -> Any:
        user = self._user(req)
        post = self.posts.get(req.path_params["id"])
        if post is None or post.deleted:
            return {"data": {"deleted": False}}
        if post.user != user.id:
            raise Answer(403, {"title": "Forbidden", "type": "about:blank", "status": 403,
                               "detail": "You are not authorized to delete this Post."})
        post.deleted = True
        return {"data": {"deleted": True}}

    async def _timeline(self, req: Req) -> Any:
        self._user(req)
        owner = req.path_params["id"]
        since = req.arg("start_time")
        floor = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp() if since else float("-inf")
        fields = set((req.arg("post.fields") or "").split(","))
        expand = "referenced_posts" in (req.arg("expansions") or "").split(",")
        found = sorted((p for p in self.live_posts(owner) if p.created_at >= floor), key=lambda p: (p.created_at, int(p.id)), reverse=True)
        start = int(req.arg("pagination_token") or 0)
        size = int(req.arg("max_results") or 10)
        page = found[start:start + size]
        data = []
        for p in page:
            item: dict[str, Any] = {"id": p.id, "text": p.stored, "edit_history_post_ids": [p.id]}
            if "created_at" in fields:
                item["created_at"] = _rfc3339(p.created_at)
            if "attachments" in fields and p.media_keys:
                item["attachments"] = {"media_keys": list(p.media_keys)}
            if "entities" in fields and p.urls:
                item["entities"] = {"urls": [dict(u) for u in p.urls]}
            if expand and p.parent is not None:
                item["referenced_posts"] = [{"type": "replied_to", "id": p.parent}]
            data.append(item)
        meta: dict[str, Any] = {"result_count": len(data)}
        if data:
            meta |= {"newest_id": data[0]["id"], "oldest_id": data[-1]["id"]}
        if start + size < len(found):
            meta["next_token"] = str(start + size)
        out: dict[str, Any] = {"meta": meta}
        if data:
            out["data"] = data
        return out

    # --- media --------------------------------------------------------------------------------------------------------

    def _own_media(self, req: Req, media_id: str) -> XMedia:
        user = self._user(req)
        m = self.media.get(media_id)
        if m is None or m.user != user.id:
            raise Answer(404, {"title": "Not Found Error", "type": PROBLEM + "resource-not-found", "status": 404,
                               "detail": f"Could not find media with id: [{media_id}].", "resource_type": "media",
                               "resource_id": media_id, "parameter": "id", "value": media_id})
        return m

    async def _initialize(self, req: Req) -> Any:
        user = self._user(req)
        body: dict[str, Any] = req.body
        media_id = self._id(1_880_000_000_000_000_000)
        category = str(body.get("media_category") or "tweet_image")
        prefix = {"tweet_video": "7", "amplify_video": "7", "tweet_gif": "16"}.get(category, "3")
        self.media[media_id] = XMedia(media_id, f"{prefix}_{media_id}", user.id, str(body.get("media_type")), category,
                                      int(body.get("total_bytes") or 0))
        return {"data": {"id": media_id, "media_key": self.media[media_id].key, "expires_after_secs": 86400}}

    async def _append(self, req: Req) -> Any:
        m = self._own_media(req, req.path_params["id"])
        form = await req.request.form()
        upload, index = form.get("media"), int(str(form.get("segment_index")))
        data = await upload.read() if isinstance(upload, UploadFile) else str(upload or "").encode()
        if m.finalized_at is not None:
            raise invalid("The media was already finalized.", "id", m.id)
        m.segments[index] = len(data)
        return {"data": {"expires_at": int(self.clock()) + 86400}}

    def _state(self, m: XMedia) -> str:
        if not m.processed:
            return "succeeded"
        if self.fail_processing:
            return "failed"
        timed = self.processing_seconds is not None and m.finalized_at is not None and self.clock() >= m.finalized_at + self.processing_seconds
        if timed or (self.processing_seconds is None and m.reads >= self.processing_reads):
            return "succeeded"
        return "in_progress" if m.reads else "pending"

    def _described(self, m: XMedia) -> dict[str, Any]:
        data: dict[str, Any] = {"id": m.id, "media_key": m.key, "size": m.total, "expires_after_secs": 86400}
        if m.processed:
            state = self._state(m)
            info: dict[str, Any] = {"state": state}
            if state in ("pending", "in_progress"):
                info |= {"check_after_secs": 1 if state == "pending" else 5, "progress_percent": 0 if state == "pending" else 50}
            elif state == "succeeded":
                info["progress_percent"] = 100
            data["processing_info"] = info
            if m.category != "tweet_gif":
                data["video"] = {"video_type": m.media_type}
        return {"data": data}

    async def _finalize(self, req: Req) -> Any:
        m = self._own_media(req, req.path_params["id"])
        got = sum(m.segments.values())
        if sorted(m.segments) != list(range(len(m.segments))) or got != m.total:
            raise invalid(f"File size mismatch: {got} bytes appended, {m.total} announced.", "total_bytes", got)
        if m.finalized_at is None:
            m.finalized_at = self.clock()
        return self._described(m)

    async def _status(self, req: Req) -> Any:
        m = self._own_media(req, str(req.arg("media_id")))
        if m.finalized_at is None:
            raise invalid("The media is not finalized.", "media_id", m.id)
        m.reads += 1
        return self._described(m)

    async def _metadata(self, req: Req) -> Any:
        body: dict[str, Any] = req.body
        m = self._own_media(req, str(body["id"]))
        alt = ((body.get("metadata") or {}).get("alt_text") or {}).get("text")
        if alt is not None:
            m.alt_text = str(alt)
        return {"data": {"id": m.id, "associated_metadata": {"alt_text": {"text": m.alt_text}} if m.alt_text else {}}}

    # --- OAuth (not in the OpenAPI document) ---------------------------------------------------------------------------

    async def _token(self, req: Req) -> Any:
        form: dict[str, Any] = req.body or {}
        basic = req.request.headers.get("authorization", "").lower().startswith("basic ")
        if req.content_type != "application/x-www-form-urlencoded" or not (basic or form.get("client_id")):
            raise Answer(401, {"error": "invalid_client", "error_description": "Missing valid authorization header"})
        if form.get("grant_type") != "refresh_token":
            raise Answer(400, {"error": "unsupported_grant_type", "error_description": "only refresh_token in this fake"})
        sent = str(form.get("refresh_token") or "")
        held = self.refresh_tokens.get(sent)
        grant = self.grants.get(sent)
        if held is None or held.spent or grant is None or grant.revoked:
            raise Answer(400, BAD_TOKEN)
        held.spent = True  # rotation: the refresh token sent is spent now
        self.revoke(sent)
        return {"token_type": "bearer", "expires_in": int(ACCESS_TTL), "scope": " ".join(held.scopes),
                "access_token": self.issue_user_token(held.user, scopes=held.scopes),
                "refresh_token": self.issue_refresh_token(held.user, held.scopes)}

    async def _revoke(self, req: Req) -> Any:
        form: dict[str, Any] = req.body or {}
        token = str(form.get("token") or "")
        if token in self.grants:
            self.revoke(token)
        return {"revoked": True}

    async def _test_posts(self, req: Req) -> Any:
        return {"posts": [{"id": p.id, "user": p.user, "text": p.text, "parent": p.parent, "media": len(p.media_keys),
                           "deleted": p.deleted} for p in self.posts.values()],
                "duplicateRefusals": sum(1 for c in self.log if c.route == "tweets.create") - len(self.posts),
                "violations": list(self.violations)}

    async def _test_user(self, req: Req) -> Any:
        """Test hook: a user (created if new) and a fresh token pair for it."""
        body: dict[str, Any] = req.body
        if str(body["id"]) not in self.users:
            self.add_user(str(body["id"]), str(body["username"]), str(body.get("name") or body["username"]))
        return {"access_token": self.issue_user_token(str(body["id"])), "refresh_token": self.issue_refresh_token(str(body["id"])),
                "expires_in": int(ACCESS_TTL)}
