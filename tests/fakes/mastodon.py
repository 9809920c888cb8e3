"""A fake Mastodon instance (platforms.md §10), one per origin, stateful, checked against Mastodon's OpenAPI document
(reference-data/platform-specs/mastodon.openapi.json, `fakes.specs.mastodon_api()`): every request's path, query,
header parameters, body and security (the token's scopes) in `check`, every JSON answer in `check_answer`.

`FakeMastodon(origin, max_characters=500, characters_reserved_per_url=23, max_media_attachments=4, ...)`: the
instance's configuration is what `GET /api/v2/instance` answers and what the instance enforces itself.

Routes:
- POST /api/v1/apps {client_name, redirect_uris[], scopes, website} → CredentialApplication (client_id, client_secret).
- GET /oauth/authorize ?response_type=code&client_id&redirect_uri&scope&state&code_challenge&code_challenge_method
  → the consenting user (`consent`, a username; None: the user denies) approves at once: 302 to the redirect URI with
  `code` and `state` (or `error=access_denied`). A redirect URI the app did not register, scopes it did not ask for,
  or a challenge method other than S256 → 400.
- POST /oauth/revoke {client_id, client_secret, token} → {} (RFC 7009: an unknown token too); the token is refused
  from then on.
- POST /oauth/token grant_type=authorization_code (form or JSON; client_secret in the body) → Token {access_token,
  token_type: Bearer, scope, created_at}; a used or unknown code, a wrong verifier or redirect URI → 400
  invalid_grant; a wrong client → 401 invalid_client. Tokens do not expire.
- GET /api/v1/accounts/verify_credentials → CredentialAccount; GET /api/v2/instance (no token) → Instance.
- POST /api/v1/statuses (JSON) → Status. Its length is counted as Mastodon's StatusLengthValidator does: grapheme
  clusters of spoiler_text + text, each URL as `characters_reserved_per_url`, a remote mention as its local part;
  over the limit → 422 `Validation failed: Text character limit of N exceeded`. `Idempotency-Key`: the same key from
  the same user within an hour answers the status it made then (no new one). Media must be the user's and processed
  (else 422, as Mastodon).
- GET /api/v1/statuses/{id}, DELETE /api/v1/statuses/{id} (→ the Status with `text`), GET .../{id}/source
  (StatusSource: the plain text as sent), GET /api/v1/accounts/{id}/statuses (newest first; since_id, min_id,
  max_id, limit ≤ 40, exclude_replies).
- POST /api/v2/media (multipart file, description) → 200 MediaAttachment with `url` for an image; 202 with `url: null`
  for a video, which is processing until `processing_reads` reads of GET /api/v1/media/{id} answered 206 or the clock
  passed `processing_seconds` after the upload; then 200 with its url.
- Test hooks (not Mastodon's), for a test that runs this fake in another process (tests/test_crash_platforms.py):
  POST /_test/users {username} → the user (created if new) and a fresh token of it {id, username, access_token};
  GET /_test/posts → the statuses as {id, user, text, parent, media, deleted}, with `idempotentReplays` (how many
  POST /api/v1/statuses were answered with the status an earlier one made under the same Idempotency-Key: the
  resends the key made safe), `unkeyed` (statuses made by a POST without a key) and the referee's `violations`.
  Mastodon refuses no duplicate text: a status sent twice without its key (or past the key's hour) is simply a
  second status, which a crash test counts as a copy.

Ids are Mastodon snowflakes: the fake clock's milliseconds << 16, plus a sequence, so `since_id` made from an instant
finds what was created after it (as on a real instance).

Errors are `{"error": ...}` (OAuth ones add `error_description`). An unknown or revoked token → 401 `The access token
is invalid`; a live token without the scopes the operation's security requires (a token the user made with fewer
scopes) → 403 `This action is outside the authorized scopes`, as Mastodon answers; no token at all where the document
requires one is a broken request (SpecViolation).

Errata (the document against Mastodon's own documentation; checked here as described):
- `POST /oauth/token` is documented with a JSON body only; Mastodon (Doorkeeper) takes the RFC 6749 form too, which
  omnipost's OAuth client sends: a form is checked against the same schema.
- `GET /api/v1/accounts/verify_credentials` lists `profile` and `read:accounts` as one requirement (both);
  Mastodon's documentation says either (`profile` exists since 4.3): a token with either is checked as having both.
- `GET /api/v1/media/{id}` documents no body for 206; Mastodon answers the MediaAttachment (`url: null`): checked
  against the MediaAttachment schema.
- `POST /oauth/revoke` answers 200 "Empty"; Mastodon's body is `{}` (not checked).
- `GET /oauth/authorize` is documented as a 200 page; the fake's user consents at once and the answer is the 302 an
  approval redirects with (not checked: the document has no 302).
- `POST /api/v1/statuses`'s body is a oneOf of TextStatus, MediaStatus and PollStatus, but a status with text and
  media (Mastodon's documentation: `status` is optional when `media_ids` is given, not forbidden) is valid under two:
  the body must be valid under at least one (anyOf).
- Most operations document no 403, which Mastodon answers to a token outside the operation's scopes: checked
  against the Error schema.
- A token the instance does not know (or revoked) is answered 401 before its scopes are looked at, so such a request
  is checked without its security requirement.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import regex

from fakes.specs import ABSENT, SpecViolation, mastodon_api
from fakes.upstream import NOW, Answer, FakeUpstream, Handler, Req

IDEMPOTENCY_WINDOW = 3600.0  # Mastodon keeps an Idempotency-Key for 1 h (platforms.md §0.3)
_URL = re.compile(r"https?://[^\s<>\"]+")
_MENTION = re.compile(r"(?<![\w/])@(\w+)@[\w.-]+\w")
INVALID_TOKEN = {"error": "The access token is invalid"}


def iso(ts: float) -> str:
    at = datetime.fromtimestamp(ts, timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def snowflake_ms(status_id: str) -> int:
    return int(status_id) >> 16


@dataclass
class App:
    id: str
    name: str
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scopes: list[str]
    website: str | None


@dataclass
class User:
    id: str
    username: str
    display_name: str


@dataclass
class Code:
    client_id: str
    user_id: str
    redirect_uri: str
    scopes: list[str]
    challenge: str | None
    used: bool = False


@dataclass
class Media:
    id: str
    user_id: str
    kind: str  # image | video | gifv | audio | unknown
    mime: str
    size: int
    description: str | None
    reads_left: int = 0  # 206 answers left before it is processed (0: processed)
    ready_at: float | None = None  # or processed once the clock passes this

    def processed(self, now: float) -> bool:
        return now >= self.ready_at if self.ready_at is not None else self.reads_left <= 0


@dataclass
class Status:
    id: str
    user_id: str
    text: str
    spoiler_text: str
    visibility: str
    sensitive: bool
    language: str | None
    in_reply_to_id: str | None
    media_ids: list[str]
    created_at: float
    idempotency_key: str | None = None


@dataclass
class Config:
    max_characters: int = 500
    characters_reserved_per_url: int = 23
    max_media_attachments: int = 4
    image_size_limit: int = 16 * 1024 * 1024
    image_matrix_limit: int = 33_177_600
    video_size_limit: int = 99 * 1024 * 1024
    video_matrix_limit: int = 8_294_400
    video_frame_rate_limit: int = 120
    description_limit: int = 1500
    supported_mime_types: list[str] = field(default_factory=lambda: [
        "image/jpeg", "image/png", "image/gif", "image/heic", "image/heif", "image/webp", "image/avif",
        "video/webm", "video/mp4", "video/quicktime", "video/ogg", "audio/mpeg", "audio/ogg", "audio/wav"])


class FakeMastodon(FakeUpstream):
    """One Mastodon instance at `origin` (e.g. https://mastodon.example); its configuration as keyword arguments."""

    token_prefix = "masto"

    def __init__(self, origin: str = "https://mastodon.example", *, clock: Any = lambda: NOW, version: str = "4.3.2",
                 **config: Any) -> None:
        self.origin = origin.rstrip("/")
        self.domain = self.origin.split("://", 1)[1]
        self.version = version
        self.config = Config(**config)
        self.apps: dict[str, App] = {}
        self.users: dict[str, User] = {}
        self.codes: dict[str, Code] = {}
        self.statuses: dict[str, Status] = {}
        self.media: dict[str, Media] = {}
        self.keys: dict[tuple[str, str], tuple[str, float]] = {}  # (user, Idempotency-Key) -> (status id, when)
        self.consent: str | None = None  # the username who approves at /oauth/authorize (None: denies)
        self.processing_reads = 1  # a video upload's GET /api/v1/media/{id} answers 206 this many times
        self.processing_seconds: float | None = None  # ... or until this long after the upload
        self.outside_scopes: set[int] = set()  # requests whose live token lacks the operation's scopes (answered 403)
        self.replays = 0  # POST /api/v1/statuses answered with the status an earlier one made under its Idempotency-Key
        self.violations: list[str] = []  # what the referee refused while served in its own process (tests/fakes/serve.py)
        self._seq = itertools.count(1)
        self._ids = itertools.count(100)
        super().__init__(clock=clock)

    # --- state ----------------------------------------------------------------------------------------------------

    def add_user(self, username: str, display_name: str | None = None) -> User:
        user = User(str(next(self._ids) * 7919), username, display_name or username.title())
        self.users[user.id] = user
        self.consent = self.consent or username
        return user

    def user_token(self, username: str, scopes: tuple[str, ...] = ("read", "write")) -> str:
        """A token the user generated in the instance's settings (Development → New application)."""
        user = next(u for u in self.users.values() if u.username == username)
        return self.issue(user.id, "user", None, scopes=scopes)

    def live_statuses(self, user_id: str | None = None) -> list[Status]:
        return sorted((s for s in self.statuses.values() if user_id in (None, s.user_id)), key=lambda s: int(s.id))

    def _snowflake(self) -> str:
        return str((int(self.clock() * 1000) << 16) | (next(self._seq) & 0xFFFF))

    # --- routes ---------------------------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(),
                ("POST", "/api/v1/apps", "apps", self._apps),
                ("GET", "/oauth/authorize", "authorize", self._authorize),
                ("POST", "/oauth/token", "token", self._token),
                ("POST", "/oauth/revoke", "revoke", self._revoke_token),
                ("GET", "/api/v1/accounts/verify_credentials", "verify_credentials", self._verify),
                ("GET", "/api/v2/instance", "instance", self._instance),
                ("POST", "/api/v1/statuses", "statuses.create", self._create),
                ("GET", "/api/v1/statuses/{id}", "statuses.get", self._get_status),
                ("DELETE", "/api/v1/statuses/{id}", "statuses.delete", self._delete),
                ("GET", "/api/v1/statuses/{id}/source", "statuses.source", self._source),
                ("GET", "/api/v1/accounts/{id}/statuses", "accounts.statuses", self._account_statuses),
                ("POST", "/api/v2/media", "media.create", self._upload),
                ("GET", "/api/v1/media/{id}", "media.get", self._media),
                ("GET", "/_test/posts", "test.posts", self._test_posts),
                ("POST", "/_test/users", "test.users", self._test_user)]

    # --- the referee ------------------------------------------------------------------------------------------------

    def check(self, req: Req) -> None:
        if req.route.startswith("test."):  # not Mastodon's: checked by their handlers
            return
        method, path = req.request.method, req.request.url.path
        api = mastodon_api()
        auth: Any = self.presented(req)
        held = self.grants.get(req.bearer) if req.bearer else None
        if req.bearer is not None and (held is None or held.revoked):
            auth = False  # erratum: answered 401 before any scope is looked at
        elif auth and req.route == "verify_credentials":  # erratum: profile OR read:accounts
            scopes = set(auth[1])
            if scopes & {"profile", "read:accounts", "read"}:
                auth = ("oauth2", tuple(scopes | {"profile", "read:accounts"}))
        if auth:  # a live token without the operation's scopes: Mastodon answers 403 (see _user), not a broken request
            try:
                api._check_security(method, path, api.operation(method, path)[1], auth)  # noqa: SLF001
            except SpecViolation:
                self.outside_scopes.add(id(req.request))
                auth = False
        content_type, body = req.content_type, req.body
        if req.route in ("token", "revoke") and content_type == "application/x-www-form-urlencoded":
            content_type = "application/json"  # erratum: the form is checked against the JSON schema
        if req.route == "statuses.create":  # erratum: oneOf read as anyOf (checked below)
            body = ABSENT
        api.check_request(method, path, req.query, headers=req.request.headers, body=body, content_type=content_type, auth=auth)
        if req.route == "statuses.create":
            if content_type != "application/json" or not isinstance(req.body, dict):
                raise SpecViolation(f"POST {path}: the operation takes a JSON object")
            failures = []
            for branch in ("TextStatus", "MediaStatus", "PollStatus"):
                try:
                    api._validate(f"#/components/schemas/{branch}", req.body, f"POST {path} body as {branch}")  # noqa: SLF001
                    break
                except SpecViolation as exc:
                    failures.append(str(exc))
            else:
                raise SpecViolation("; ".join(failures))

    def check_answer(self, req: Req, status: int, body: Any) -> None:
        if req.route.startswith("test."):
            return
        method, path = req.request.method, req.request.url.path
        if req.route == "authorize" and status == 302:
            return  # erratum: the document has no 302
        if req.route == "revoke" and status == 200 and body == {}:
            return  # erratum: documented "Empty"; Mastodon answers {}
        if status == 403 and "403" not in mastodon_api()._at(mastodon_api().operation(method, path)[1])["responses"]:  # noqa: SLF001
            mastodon_api()._validate("#/components/schemas/Error", body, f"{method} {path} answer 403")  # noqa: SLF001
            return
        if req.route == "media.get" and status == 206:
            mastodon_api()._validate("#/components/schemas/MediaAttachment", body, f"{method} {path} answer 206")  # noqa: SLF001
            return
        mastodon_api().check_response(method, path, status, body)

    def refused(self, req: Req, why: str) -> Answer:
        return Answer(401, dict(INVALID_TOKEN))

    def _user(self, req: Req) -> User:
        user = self.users[self.grant(req, "user").subject]
        if id(req.request) in self.outside_scopes:
            self.outside_scopes.discard(id(req.request))
            raise Answer(403, {"error": "This action is outside the authorized scopes"})
        return user

    # --- OAuth ------------------------------------------------------------------------------------------------------

    async def _apps(self, req: Req) -> Any:
        body = req.body
        scopes = str(body.get("scopes") or "read").split()
        n = next(self._ids)
        app = App(str(n), body["client_name"], f"cid-{self.domain}-{n}", hashlib.sha256(f"{self.origin}{n}".encode()).hexdigest()[:32],
                  list(body["redirect_uris"]), scopes, body.get("website"))
        self.apps[app.client_id] = app
        return {"id": app.id, "name": app.name, "website": app.website, "scopes": app.scopes, "redirect_uri": "\n".join(app.redirect_uris),
                "redirect_uris": app.redirect_uris, "client_id": app.client_id, "client_secret": app.client_secret,
                "client_secret_expires_at": 0, "vapid_key": "BCk-QqERU0q-CfYZjcuB6lnyyOYfJ2AifKqfeGIm7Z-HiTU5T9eTG5GxVA0_OH5mMlI4UkkDTpaZwozy0TzdZ2M="}

    async def _authorize(self, req: Req) -> Any:
        app = self.apps.get(req.arg("client_id") or "")
        redirect = req.arg("redirect_uri") or ""
        if app is None or redirect not in app.redirect_uris or req.arg("response_type") != "code":
            raise Answer(400, {"error": "invalid_request", "error_description": "unknown client or redirect URI"})
        scopes = (req.arg("scope") or "read").split()
        if not set(scopes) <= set(app.scopes) or req.arg("code_challenge_method") not in (None, "S256"):
            raise Answer(400, {"error": "invalid_scope", "error_description": "scopes or challenge method not allowed"})
        user = next((u for u in self.users.values() if u.username == self.consent), None)
        query: dict[str, str] = {}
        if user is None:
            query["error"] = "access_denied"
        else:
            code = f"code-{next(self._ids)}"
            self.codes[code] = Code(app.client_id, user.id, redirect, scopes, req.arg("code_challenge"))
            query["code"] = code
        if req.arg("state") is not None:
            query["state"] = req.arg("state") or ""
        raise Answer(302, None, {"location": f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(query)}"})

    async def _token(self, req: Req) -> Any:
        body = req.body if isinstance(req.body, dict) else {}
        app = self.apps.get(str(body.get("client_id")))
        if app is None or body.get("client_secret") != app.client_secret:
            raise Answer(401, {"error": "invalid_client", "error_description": "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."})
        code = self.codes.get(str(body.get("code")))
        grant_error = Answer(400, {"error": "invalid_grant", "error_description": "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."})
        if body.get("grant_type") != "authorization_code" or code is None or code.used or code.client_id != app.client_id \
                or code.redirect_uri != body.get("redirect_uri"):
            raise grant_error
        if code.challenge is not None:
            import base64

            verifier = str(body.get("code_verifier") or "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != code.challenge:
                raise grant_error
        code.used = True
        token = self.issue(code.user_id, "user", None, scopes=tuple(code.scopes), client_id=app.client_id)
        return {"access_token": token, "token_type": "Bearer", "scope": " ".join(code.scopes), "created_at": int(self.clock())}

    async def _revoke_token(self, req: Req) -> Any:
        body = req.body if isinstance(req.body, dict) else {}
        app = self.apps.get(str(body.get("client_id")))
        if app is None or body.get("client_secret") != app.client_secret:
            raise Answer(403, {"error": "unauthorized_client", "error_description": "You are not authorized to revoke this token"})
        held = self.grants.get(str(body.get("token")))
        if held is not None and held.data.get("client_id") == app.client_id:
            held.revoked = True
        return {}

    # --- identity and instance --------------------------------------------------------------------------------------

    def _account(self, user: User, *, credential: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": user.id, "username": user.username, "acct": user.username, "display_name": user.display_name,
            "locked": False, "bot": False, "discoverable": True, "indexable": True, "group": False,
            "created_at": "2025-01-01T00:00:00.000Z", "note": "", "url": f"{self.origin}/@{user.username}",
            "uri": f"{self.origin}/users/{user.username}", "avatar": f"{self.origin}/avatars/original/missing.png",
            "avatar_static": f"{self.origin}/avatars/original/missing.png", "header": f"{self.origin}/headers/original/missing.png",
            "header_static": f"{self.origin}/headers/original/missing.png", "followers_count": 0, "following_count": 0,
            "statuses_count": sum(1 for s in self.statuses.values() if s.user_id == user.id), "last_status_at": None,
            "emojis": [], "fields": []}
        if credential:
            out["source"] = {"privacy": "public", "sensitive": False, "language": None, "note": "", "fields": [],
                             "follow_requests_count": 0, "indexable": True}
            out["role"] = {"id": "-99", "name": "", "color": "", "permissions": "0", "highlighted": False}
        return out

    async def _verify(self, req: Req) -> Any:
        return self._account(self._user(req), credential=True)

    async def _instance(self, req: Req) -> Any:
        c = self.config
        return {
            "domain": self.domain, "title": f"Fake {self.domain}", "version": self.version, "source_url": "https://github.com/mastodon/mastodon",
            "description": "A fake instance for omnipost's tests.", "usage": {"users": {"active_month": len(self.users)}},
            "thumbnail": {"url": f"{self.origin}/thumbnail.png"}, "icon": [], "languages": ["en"],
            "api_versions": {"mastodon": 2},
            "configuration": {
                "urls": {"streaming": f"wss://{self.domain}"},
                "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
                "statuses": {"max_characters": c.max_characters, "max_media_attachments": c.max_media_attachments,
                             "characters_reserved_per_url": c.characters_reserved_per_url},
                "media_attachments": {"supported_mime_types": list(c.supported_mime_types), "description_limit": c.description_limit,
                                      "image_size_limit": c.image_size_limit, "image_matrix_limit": c.image_matrix_limit,
                                      "video_size_limit": c.video_size_limit, "video_frame_rate_limit": c.video_frame_rate_limit,
                                      "video_matrix_limit": c.video_matrix_limit},
                "polls": {"max_options": 4, "max_characters_per_option": 50, "min_expiration": 300, "max_expiration": 2629746},
                "translation": {"enabled": False}},
            "registrations": {"enabled": False, "approval_required": False, "message": None},
            "contact": {"email": f"admin@{self.domain}", "account": None}, "rules": []}

    # --- statuses ---------------------------------------------------------------------------------------------------

    def length(self, text: str, spoiler_text: str = "") -> int:
        """As Mastodon's StatusLengthValidator counts: URLs as characters_reserved_per_url, remote mentions by local part."""
        countable = _URL.sub("x" * self.config.characters_reserved_per_url, text)
        countable = _MENTION.sub(lambda m: "@" + m.group(1), countable)
        return len(regex.findall(r"\X", countable)) + len(regex.findall(r"\X", spoiler_text))

    def _html(self, text: str) -> str:
        """The HTML `content` Mastodon renders: paragraphs, <br />, links with the scheme hidden and long ones cut."""
        def link(m: re.Match[str]) -> str:
            url = m.group(0)
            scheme, rest = url.split("://", 1)
            shown, more = rest[:30], rest[30:]
            return (f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener noreferrer" translate="no">'
                    f'<span class="invisible">{scheme}://</span><span class="{"ellipsis" if more else ""}">{html.escape(shown)}</span>'
                    f'<span class="invisible">{html.escape(more)}</span></a>')

        paragraphs = [p for p in re.split(r"\n{2,}", text.replace("\r\n", "\n"))]
        out = []
        for p in paragraphs:
            pieces, last = [], 0
            for m in _URL.finditer(p):
                pieces.append(html.escape(p[last:m.start()]).replace("\n", "<br />"))
                pieces.append(link(m))
                last = m.end()
            pieces.append(html.escape(p[last:]).replace("\n", "<br />"))
            out.append("<p>" + "".join(pieces) + "</p>")
        return "".join(out)

    def _media_json(self, m: Media) -> dict[str, Any]:
        done = m.processed(self.clock())
        ext = m.mime.split("/")[-1]
        return {"id": m.id, "type": m.kind, "url": f"{self.origin}/system/media/{m.id}/original.{ext}" if done else None,
                "preview_url": f"{self.origin}/system/media/{m.id}/small.png" if done else None, "remote_url": None,
                "preview_remote_url": None, "text_url": None, "meta": None, "description": m.description, "blurhash": None}

    def _status_json(self, s: Status, *, with_text: bool = False) -> dict[str, Any]:
        user = self.users[s.user_id]
        parent = self.statuses.get(s.in_reply_to_id or "")
        out: dict[str, Any] = {
            "id": s.id, "uri": f"{self.origin}/users/{user.username}/statuses/{s.id}", "url": f"{self.origin}/@{user.username}/{s.id}",
            "created_at": iso(s.created_at), "account": self._account(user), "content": self._html(s.text),
            "visibility": s.visibility, "sensitive": s.sensitive, "spoiler_text": s.spoiler_text,
            "media_attachments": [self._media_json(self.media[m]) for m in s.media_ids], "application": None,
            "mentions": [], "tags": [], "emojis": [], "reblogs_count": 0, "favourites_count": 0, "replies_count":
                sum(1 for o in self.statuses.values() if o.in_reply_to_id == s.id),
            "in_reply_to_id": s.in_reply_to_id, "in_reply_to_account_id": parent.user_id if parent else None,
            "reblog": None, "poll": None, "card": None, "language": s.language, "edited_at": None}
        if with_text:
            out["text"] = s.text
        return out

    async def _create(self, req: Req) -> Any:
        user = self._user(req)
        body = req.body
        key = req.request.headers.get("idempotency-key")
        now = self.clock()
        if key is not None and (seen := self.keys.get((user.id, key))) is not None and now - seen[1] < IDEMPOTENCY_WINDOW \
                and seen[0] in self.statuses:
            self.replays += 1
            return self._status_json(self.statuses[seen[0]])
        text, spoiler = str(body.get("status") or ""), str(body.get("spoiler_text") or "")
        media_ids = [str(m) for m in body.get("media_ids") or []]
        if not text.strip() and not media_ids:
            raise Answer(422, {"error": "Validation failed: Text can't be blank"})
        if self.length(text, spoiler) > self.config.max_characters:
            raise Answer(422, {"error": f"Validation failed: Text character limit of {self.config.max_characters} exceeded"})
        if len(media_ids) > self.config.max_media_attachments:
            raise Answer(422, {"error": "Validation failed: Media attachments limit exceeded"})
        for mid in media_ids:
            m = self.media.get(mid)
            if m is None or m.user_id != user.id:
                raise Answer(422, {"error": "Validation failed: Media attachments are invalid"})
            if not m.processed(now):
                raise Answer(422, {"error": "Cannot attach files that have not finished processing. Try again in a moment!"})
        parent = body.get("in_reply_to_id")
        if parent is not None and str(parent) not in self.statuses:
            raise Answer(404, {"error": "Record not found"})
        visibility = body.get("visibility") or "public"
        if visibility not in ("public", "unlisted", "private", "direct"):
            raise Answer(422, {"error": "Validation failed: Visibility is not included in the list"})
        status = Status(self._snowflake(), user.id, text, spoiler, visibility, bool(body.get("sensitive") or bool(spoiler)),
                        body.get("language"), str(parent) if parent is not None else None, media_ids, now, key)
        self.statuses[status.id] = status
        if key is not None:
            self.keys[(user.id, key)] = (status.id, now)
        return self._status_json(status)

    def _owned(self, req: Req, user: User) -> Status:
        s = self.statuses.get(req.path_params["id"])
        if s is None or (s.user_id != user.id and s.visibility in ("private", "direct")):
            raise Answer(404, {"error": "Record not found"})
        return s

    async def _get_status(self, req: Req) -> Any:
        return self._status_json(self._owned(req, self._user(req)))

    async def _source(self, req: Req) -> Any:
        s = self._owned(req, self._user(req))
        return {"id": s.id, "text": s.text, "spoiler_text": s.spoiler_text}

    async def _delete(self, req: Req) -> Any:
        user = self._user(req)
        s = self._owned(req, user)
        if s.user_id != user.id:
            raise Answer(403, {"error": "This action is not allowed"})
        del self.statuses[s.id]
        return self._status_json(s, with_text=True)

    async def _account_statuses(self, req: Req) -> Any:
        self._user(req)
        owner = self.users.get(req.path_params["id"])
        if owner is None:
            raise Answer(404, {"error": "Record not found"})
        found = [s for s in self.live_statuses(owner.id)]
        if req.arg("exclude_replies") == "true":
            found = [s for s in found if s.in_reply_to_id is None]
        for name, keep in (("since_id", lambda s, v: int(s.id) > v), ("min_id", lambda s, v: int(s.id) > v),
                           ("max_id", lambda s, v: int(s.id) < v)):
            if (value := req.arg(name)) is not None:
                found = [s for s in found if keep(s, int(value))]
        limit = min(int(req.arg("limit") or 20), 40)
        newest_first = list(reversed(found))
        page = found[:limit][::-1] if req.arg("min_id") is not None else newest_first[:limit]
        return [self._status_json(s) for s in page]

    # --- media ------------------------------------------------------------------------------------------------------

    async def _upload(self, req: Req) -> Any:
        user = self._user(req)
        form = await req.request.form()
        upload = form["file"]
        assert not isinstance(upload, str)
        mime = (upload.content_type or "application/octet-stream").split(";")[0]
        if mime not in self.config.supported_mime_types:
            raise Answer(422, {"error": "Validation failed: File content type is invalid, File is invalid"})
        size = upload.size or 0
        kind = "gifv" if mime == "image/gif" else mime.split("/")[0] if mime.split("/")[0] in ("image", "video", "audio") else "unknown"
        limit = self.config.image_size_limit if kind == "image" else self.config.video_size_limit
        if size > limit:
            raise Answer(422, {"error": f"Validation failed: File file size must be less than {limit // (1024 * 1024)} MB"})
        description = form.get("description")
        if isinstance(description, str) and len(description) > self.config.description_limit:
            raise Answer(422, {"error": f"Validation failed: Description is too long (maximum is {self.config.description_limit} characters)"})
        m = Media(self._snowflake(), user.id, kind, mime, size, description if isinstance(description, str) else None)
        if kind in ("video", "gifv", "audio"):
            m.reads_left = self.processing_reads
            m.ready_at = self.clock() + self.processing_seconds if self.processing_seconds is not None else None
        self.media[m.id] = m
        return (202 if not m.processed(self.clock()) else 200), self._media_json(m)

    async def _media(self, req: Req) -> Any:
        user = self._user(req)
        m = self.media.get(req.path_params["id"])
        if m is None or m.user_id != user.id:
            raise Answer(404, {"error": "Record not found"})
        if not m.processed(self.clock()):
            m.reads_left -= 1  # this read still finds it processing
            return 206, self._media_json(m)
        return self._media_json(m)

    # --- test hooks (not Mastodon's) --------------------------------------------------------------------------------

    async def _test_posts(self, req: Req) -> Any:
        return {"posts": [{"id": s.id, "user": s.user_id, "text": s.text, "parent": s.in_reply_to_id, "media": len(s.media_ids),
                           "deleted": False} for s in self.live_statuses()],
                "idempotentReplays": self.replays, "unkeyed": sum(1 for s in self.statuses.values() if s.idempotency_key is None),
                "violations": list(self.violations)}

    async def _test_user(self, req: Req) -> Any:
        """A user (created if new) and a fresh token of it, as if made in the instance's settings."""
        body: dict[str, Any] = req.body
        username = str(body["username"])
        user = next((u for u in self.users.values() if u.username == username), None) or self.add_user(username)
        return {"id": user.id, "username": user.username, "access_token": self.user_token(username)}
