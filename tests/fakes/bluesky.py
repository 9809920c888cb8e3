"""A fake Bluesky PDS and video service: stateful, in process, speaking the XRPC wire shapes (platforms.md §1).

PDS (`PDS_URL`), every route `/xrpc/<nsid>`:
- com.atproto.server.createSession  POST {identifier, password} → session (accessJwt, refreshJwt, handle, did,
  didDoc with an #atproto_pds service, email, emailConfirmed, active); wrong → 401 AuthenticationRequired.
- com.atproto.server.refreshSession POST, no body, Bearer <refreshJwt> → a new session; both tokens rotate and the
  old refresh token is revoked at once (strict: the real PDS allows a short grace period).
- com.atproto.server.deleteSession POST, Bearer <refreshJwt> → {}; that refresh token is refused from then on.
- com.atproto.server.getSession, com.atproto.server.getServiceAuth (aud, lxm, exp → {token}).
- com.atproto.identity.resolveHandle ?handle → {did} or 400 HandleNotFound "Unable to resolve handle".
- com.atproto.repo.uploadBlob raw bytes → {blob: {$type, ref: {$link}, mimeType, size}}; over the cap → 413.
- com.atproto.repo.createRecord {repo, collection, rkey?, record} → {uri, cid, commit, validationStatus}. Posts are
  checked like the lexicon does (300 graphemes / 3000 bytes, createdAt, langs ≤ 3, facet features, reply refs,
  embeds with blobs that were uploaded) and, stricter than the PDS so adapter bugs show, facet byte ranges must
  lie inside the text and an app.bsky.feed.post rkey must be a TID. A taken rkey answers `duplicate_error`,
  by default what the reference PDS answers today: 500 InternalServerError (atproto #4725).
- com.atproto.repo.getRecord ?repo&collection&rkey (no auth) → {uri, cid, value} or 400 RecordNotFound.
- com.atproto.repo.deleteRecord {repo, collection, rkey} → {commit}, or {} when nothing was there.
Video service (`VIDEO_URL`): app.bsky.video.uploadVideo (service token with aud = the PDS's did:web and lxm =
uploadBlob; answers the JobStatus at top level, the real service's quirk; the same bytes again → 409
`already_exists` with the job), app.bsky.video.getJobStatus (wrapped in `jobStatus`; COMPLETED with a blob after
`video_polls` polls), app.bsky.video.getUploadLimits (service token with aud = the video service's did:web,
`video_did`, and lxm = getUploadLimits → {canUpload, remainingDailyVideos, remainingDailyBytes, message?, error?};
each accepted uploadVideo consumes one video and its bytes of the account's allowance for the UTC day of the
fake's clock: `daily_videos`, `daily_video_bytes`). `video_enabled=False` makes every video route 404, as where
no video service exists. The quota's message/error strings are the fake's own (the real ones are not in our
sources); the field names and types are the lexicon's.

Error names and messages are those @atproto/pds 0.5.35 gives (checked against it on loopback with tools/pds).
Auth errors: no header → 401 AuthMissing; unknown token or wrong scope → 400 InvalidToken; expired → 400
ExpiredToken (not 401). Every answer carries RateLimit-Limit/Remaining/Reset (epoch s)/Policy (a dev-mode PDS
sends none; bsky.social does).
Unknown routes → 404 {"error": "MethodNotImplemented"}, a wrong HTTP method → 400, so surprises fail loudly.

Controls: `fail_next(nsid, status, body, headers)` (the next call answers that, nothing happens),
`refuse_video(did, error, message)` (getUploadLimits says canUpload false, e.g. an unconfirmed email),
`drop_answer_next(nsid)` (the next call takes effect, then its answer is lost: httpx2.ReadTimeout),
`expire_tokens(refresh=False)`; state: `accounts`, `records`, `blobs`, `log` (every request: method, nsid,
params, json, token kind; never the token).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx2
import regex
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from fakes import mounted_client
from omnipost.clock import FixedClock

PDS_URL = "https://pds.test"
VIDEO_URL = "https://video.test"
VIDEO_SERVICE_DID = "did:web:video.test"
GET_UPLOAD_LIMITS = "app.bsky.video.getUploadLimits"
PDS_SERVICE_DID = "did:web:pds.test"
NOW = 1_795_521_600.0  # 2026-11-24T12:00:00Z


def unix_clock(seconds: float) -> FixedClock:
    """The injected clock standing at `seconds` (Unix time), as the adapter is given one."""
    return FixedClock(datetime.fromtimestamp(seconds, timezone.utc))


POST = "app.bsky.feed.post"
UPLOAD_BLOB = "com.atproto.repo.uploadBlob"
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_S32 = "234567abcdefghijklmnopqrstuvwxyz"
_GRAPHEME = regex.compile(r"\X")
RATE_LIMIT = 3000
RATE_WINDOW = 300
REAL_PDS_DUPLICATE = (500, {"error": "InternalServerError", "message": "Internal Server Error"})


class XrpcError(Exception):
    """An XRPC error answer."""

    def __init__(self, status: int, error: str, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or error)
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


@dataclass
class Call:
    """One request the fake received."""

    host: str
    method: str
    nsid: str
    params: dict[str, str]
    json: Any
    content_type: str | None
    size: int
    auth: str | None = None  # the kind of token presented: access, refresh, service


@dataclass
class FakeAccount:
    did: str
    handle: str
    password: str
    email: str


@dataclass
class _Token:
    kind: str
    did: str
    exp: float
    revoked: bool = False
    aud: str | None = None
    lxm: str | None = None


@dataclass
class _Failure:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=lambda: {})
    drop_answer: bool = False


@dataclass
class _Ctx:
    request: Request
    body: bytes
    call: Call

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"null")
        except ValueError:
            raise XrpcError(400, "InvalidRequest", "Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise XrpcError(400, "InvalidRequest", "Input must be an object")
        return data

    def param(self, name: str, required: bool = True) -> str | None:
        value = self.request.query_params.get(name)
        if value is None and required:
            raise XrpcError(400, "InvalidRequest", f'Params must have the property "{name}"')
        return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _cid(prefix: str, data: bytes) -> str:
    return prefix + base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")[:52]


def _tid(micros: int, clock_id: int) -> str:
    value = (micros << 10) | (clock_id & 0x3FF)
    return "".join(_S32[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


Handler = Callable[[_Ctx], Awaitable[Any]]


class FakeBluesky:
    """The fake PDS (`pds_app`) and video service (`video_app`), sharing one state."""

    def __init__(self, clock: Callable[[], float] = lambda: NOW, *, access_ttl: float = 7200.0, refresh_ttl: float = 90 * 86400.0,
                 duplicate_error: tuple[int, dict[str, Any]] = REAL_PDS_DUPLICATE, video_enabled: bool = True,
                 video_polls: int = 2, max_blob_bytes: int = 50 * 1024 * 1024, video_did: str = VIDEO_SERVICE_DID,
                 daily_videos: int = 25, daily_video_bytes: int = 10_000_000_000) -> None:
        self.clock = clock
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        self.duplicate_error = duplicate_error
        self.video_polls = video_polls
        self.max_blob_bytes = max_blob_bytes
        self.accounts: dict[str, FakeAccount] = {}
        self.handles: dict[str, str] = {}
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.blobs: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.video_did = video_did
        self.daily_videos, self.daily_video_bytes = daily_videos, daily_video_bytes
        self.video_usage: dict[tuple[str, int], list[int]] = {}  # (did, UTC day number) -> [videos, bytes] uploaded
        self.video_refused: dict[str, tuple[str, str]] = {}  # did -> (error, message) getUploadLimits gives
        self.log: list[Call] = []
        self._tokens: dict[str, _Token] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._serial = itertools.count(1)
        self._remaining = RATE_LIMIT
        pds: dict[str, tuple[str, Handler]] = {
            "com.atproto.server.createSession": ("POST", self._create_session),
            "com.atproto.server.refreshSession": ("POST", self._refresh_session),
            "com.atproto.server.deleteSession": ("POST", self._delete_session),
            "com.atproto.server.getSession": ("GET", self._get_session),
            "com.atproto.server.getServiceAuth": ("GET", self._get_service_auth),
            "com.atproto.identity.resolveHandle": ("GET", self._resolve_handle),
            UPLOAD_BLOB: ("POST", self._upload_blob),
            "com.atproto.repo.createRecord": ("POST", self._create_record),
            "com.atproto.repo.getRecord": ("GET", self._get_record),
            "com.atproto.repo.deleteRecord": ("POST", self._delete_record),
        }
        video: dict[str, tuple[str, Handler]] = {
            "app.bsky.video.uploadVideo": ("POST", self._upload_video),
            "app.bsky.video.getJobStatus": ("GET", self._get_job_status),
            GET_UPLOAD_LIMITS: ("GET", self._get_upload_limits),
        } if video_enabled else {}
        self.pds_app = self._app("pds.test", pds)
        self.video_app = self._app("video.test", video)

    # ------------------------------------------------------------------ controls

    def add_account(self, handle: str, password: str, *, did: str | None = None, email: str | None = None) -> FakeAccount:
        account = FakeAccount(did or f"did:plc:{hashlib.sha256(handle.encode()).hexdigest()[:24]}", handle, password,
                              email or f"{handle.split('.')[0]}@example.com")
        self.accounts[account.did] = account
        self.handles[handle.lower()] = account.did
        return account

    def add_handle(self, handle: str, did: str) -> None:
        """Another user's handle, resolvable by resolveHandle."""
        self.handles[handle.lower()] = did

    def fail_next(self, nsid: str, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """The next call of `nsid` answers this (and does nothing)."""
        self._failures.setdefault(nsid, []).append(_Failure(status, body, dict(headers or {})))

    def refuse_video(self, did: str, error: str = "unconfirmed_email", message: str = "Please confirm your email to upload videos") -> None:
        """getUploadLimits answers canUpload false for `did`, with this error and message."""
        self.video_refused[did] = (error, message)

    def used_today(self, did: str) -> tuple[int, int]:
        """(videos, bytes) the account uploaded today (the fake's clock, UTC day)."""
        videos, size = self.video_usage.get((did, int(self.clock() // 86400)), [0, 0])
        return videos, size

    def drop_answer_next(self, nsid: str) -> None:
        """The next call of `nsid` takes effect, then its answer is lost (the client sees httpx2.ReadTimeout)."""
        self._failures.setdefault(nsid, []).append(_Failure(drop_answer=True))

    def expire_tokens(self, *, refresh: bool = False) -> None:
        """Every access token issued so far expires now (and every refresh token too, with refresh=True)."""
        for token in self._tokens.values():
            if token.kind == "access" or (refresh and token.kind == "refresh"):
                token.exp = min(token.exp, self.clock() - 1)

    def calls(self, nsid: str) -> list[Call]:
        return [c for c in self.log if c.nsid == nsid]

    def posts(self) -> list[dict[str, Any]]:
        """Every stored app.bsky.feed.post record ({uri, cid, value}), in creation order."""
        return [r for (_d, c, _k), r in self.records.items() if c == POST]

    def record(self, did: str, rkey: str) -> dict[str, Any] | None:
        return self.records.get((did, POST, rkey))

    def client(self, mounts: dict[str, ASGIApp] | None = None) -> httpx2.AsyncClient:
        """One client: the PDS and video service mounted by host (plus `mounts`), every other host refused."""
        return mounted_client({PDS_URL: self.pds_app, VIDEO_URL: self.video_app, **(mounts or {})})

    # ------------------------------------------------------------------ plumbing

    def _app(self, host: str, table: dict[str, tuple[str, Handler]]) -> Starlette:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, host, table)

        async def not_found(request: Request, exc: Exception) -> Response:
            return self._finish(JSONResponse({"error": "MethodNotImplemented", "message": f"No route {request.url.path}"}, 404))

        return Starlette(routes=[Route("/xrpc/{nsid}", endpoint, methods=["GET", "POST"])],
                         exception_handlers={404: not_found, 405: not_found})

    def _finish(self, response: Response, headers: dict[str, str] | None = None) -> Response:
        self._remaining = max(0, self._remaining - 1)
        response.headers["RateLimit-Limit"] = str(RATE_LIMIT)
        response.headers["RateLimit-Remaining"] = str(self._remaining)
        response.headers["RateLimit-Reset"] = str(int(self.clock()) + RATE_WINDOW)
        response.headers["RateLimit-Policy"] = f"{RATE_LIMIT};w={RATE_WINDOW}"
        for k, v in (headers or {}).items():
            response.headers[k] = v
        return response

    async def _serve(self, request: Request, host: str, table: dict[str, tuple[str, Handler]]) -> Response:
        nsid = request.path_params["nsid"]
        body = await request.body()
        parsed: Any = None
        ctype = request.headers.get("content-type")
        if ctype and ctype.startswith("application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        call = Call(host, request.method, nsid, dict(request.query_params), parsed, ctype, len(body))
        self.log.append(call)
        failure: _Failure | None = None
        try:
            if nsid not in table:
                raise XrpcError(404, "MethodNotImplemented", f"Method Not Implemented: {nsid}")
            method, handler = table[nsid]
            if request.method != method:
                raise XrpcError(400, "InvalidRequest", f"Incorrect HTTP method ({request.method}) expected {method}")
            queue = self._failures.get(nsid)
            failure = queue.pop(0) if queue else None
            if failure is not None and not failure.drop_answer:
                answer = JSONResponse(failure.body, failure.status) if failure.body is not None else Response(status_code=failure.status)
                return self._finish(answer, failure.headers)
            result = await handler(_Ctx(request, body, call))
            response = result if isinstance(result, Response) else JSONResponse(result)
        except XrpcError as e:
            payload = {"error": e.error} | ({"message": e.message} if e.message else {})
            response = JSONResponse(payload, e.status)
            self._finish(response, e.headers)
            return response
        if failure is not None and failure.drop_answer:
            raise httpx2.ReadTimeout(f"fake {host}: the answer to {nsid} was lost after it took effect")
        return self._finish(response)

    def _issue(self, kind: str, did: str, ttl: float, **extra: Any) -> str:
        now = self.clock()
        n = next(self._serial)
        scope = {"access": "com.atproto.access", "refresh": "com.atproto.refresh"}.get(kind, extra.get("lxm") or "service")
        header = {"typ": {"access": "at+jwt", "refresh": "refresh+jwt"}.get(kind, "JWT"), "alg": "ES256K"}
        payload = {"scope": scope, "sub": did, "aud": extra.get("aud", PDS_SERVICE_DID), "iat": int(now), "exp": int(now + ttl), "jti": f"j{n}"}
        token = ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(hashlib.sha256(f"{kind}{n}".encode()).digest())))
        self._tokens[token] = _Token(kind, did, now + ttl, aud=extra.get("aud"), lxm=extra.get("lxm"))
        return token

    def _token(self, ctx: _Ctx, kind: str) -> _Token:
        header = ctx.request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise XrpcError(401, "AuthMissing", "Authentication Required")
        token = self._tokens.get(header[len("Bearer "):])
        if token is None:
            raise XrpcError(400, "InvalidToken", "Token could not be verified")
        ctx.call.auth = token.kind
        if token.kind != kind:
            raise XrpcError(400, "InvalidToken", "Bad token scope")
        if token.revoked:
            raise XrpcError(400, "InvalidToken", "Token has been revoked")
        if token.exp <= self.clock():
            raise XrpcError(400, "ExpiredToken", "Token has expired")
        return token

    def _did_doc(self, did: str, handle: str) -> dict[str, Any]:
        return {"@context": ["https://www.w3.org/ns/did/v1"], "id": did, "alsoKnownAs": [f"at://{handle}"],
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": PDS_URL}]}

    def _session(self, account: FakeAccount) -> dict[str, Any]:
        return {"accessJwt": self._issue("access", account.did, self.access_ttl),
                "refreshJwt": self._issue("refresh", account.did, self.refresh_ttl),
                "handle": account.handle, "did": account.did, "didDoc": self._did_doc(account.did, account.handle),
                "email": account.email, "emailConfirmed": True, "active": True}

    def _repo(self, value: Any) -> str:
        if isinstance(value, str):
            did = value if value.startswith("did:") else self.handles.get(value.lower())
            if did in self.accounts:
                return did  # type: ignore[return-value]
        raise XrpcError(400, "InvalidRequest", f"Could not find repo: {value}")

    # ------------------------------------------------------------------ server

    async def _create_session(self, ctx: _Ctx) -> dict[str, Any]:
        body = ctx.json()
        ident, password = str(body.get("identifier", "")).lower(), body.get("password")
        for account in self.accounts.values():
            if ident in (account.did, account.handle.lower(), account.email.lower()) and password == account.password:
                return self._session(account)
        raise XrpcError(401, "AuthenticationRequired", "Invalid identifier or password")

    async def _refresh_session(self, ctx: _Ctx) -> dict[str, Any]:
        token = self._token(ctx, "refresh")
        token.revoked = True
        return self._session(self.accounts[token.did])

    async def _delete_session(self, ctx: _Ctx) -> dict[str, Any]:
        self._token(ctx, "refresh").revoked = True  # the session ends: its refresh token is refused from now on
        return {}

    async def _get_session(self, ctx: _Ctx) -> dict[str, Any]:
        account = self.accounts[self._token(ctx, "access").did]
        return {"handle": account.handle, "did": account.did, "email": account.email, "emailConfirmed": True, "active": True,
                "didDoc": self._did_doc(account.did, account.handle)}

    async def _get_service_auth(self, ctx: _Ctx) -> dict[str, Any]:
        token = self._token(ctx, "access")
        aud = ctx.param("aud")
        assert aud is not None
        if not aud.startswith("did:"):
            raise XrpcError(400, "InvalidRequest", "aud must be a valid did")
        exp = int(ctx.param("exp", required=False) or self.clock() + 60)
        if exp - self.clock() > 3600:
            raise XrpcError(400, "BadExpiration", "expiration is too far in the future")
        return {"token": self._issue("service", token.did, exp - self.clock(), aud=aud, lxm=ctx.param("lxm", required=False))}

    async def _resolve_handle(self, ctx: _Ctx) -> dict[str, Any]:
        handle = (ctx.param("handle") or "").lower()
        if handle not in self.handles:
            raise XrpcError(400, "HandleNotFound", "Unable to resolve handle")
        return {"did": self.handles[handle]}

    async def _upload_blob(self, ctx: _Ctx) -> dict[str, Any]:
        self._token(ctx, "access")
        if len(ctx.body) > self.max_blob_bytes:
            raise XrpcError(413, "PayloadTooLarge", "request entity too large")
        mime = (ctx.request.headers.get("content-type") or "application/octet-stream").split(";")[0].strip()
        return {"blob": self._store_blob(ctx.body, mime)}

    def _store_blob(self, data: bytes, mime: str) -> dict[str, Any]:
        cid = _cid("bafkrei", data)
        self.blobs[cid] = {"mimeType": mime, "size": len(data), "data": data}
        return {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": len(data)}

    async def _create_record(self, ctx: _Ctx) -> dict[str, Any]:
        did = self._token(ctx, "access").did
        body = ctx.json()
        if self._repo(body.get("repo")) != did:
            raise XrpcError(403, "InvalidRequest", "Invalid repo: not the authenticated account")
        collection, record = body.get("collection"), body.get("record")
        if not isinstance(collection, str) or not isinstance(record, dict):
            raise XrpcError(400, "InvalidRequest", "Input must have the properties \"collection\" and \"record\"")
        if record.get("$type") != collection:
            raise XrpcError(400, "InvalidRequest", f"Invalid $type: expected {collection}, got {record.get('$type')}")
        rkey = body.get("rkey")
        micros = int(self.clock() * 1_000_000) + next(self._serial)
        if rkey is None:
            rkey = _tid(micros, 7)
        if not isinstance(rkey, str) or (collection == POST and not TID.match(rkey)):
            raise XrpcError(400, "InvalidRequest", f"Invalid record key for {collection}: Invalid TID string (got {json.dumps(rkey)}) at $")
        if collection == POST:
            problem = self._post_problem(record)
            if problem is not None:
                raise XrpcError(400, "InvalidRequest", f"Invalid app.bsky.feed.post record: {problem}")
        if (did, collection, rkey) in self.records:
            status, payload = self.duplicate_error
            return JSONResponse(payload, status)  # type: ignore[return-value]
        uri = f"at://{did}/{collection}/{rkey}"
        cid = _cid("bafyrei", json.dumps(record, sort_keys=True).encode())
        self.records[(did, collection, rkey)] = {"uri": uri, "cid": cid, "value": record}
        return {"uri": uri, "cid": cid, "commit": {"cid": _cid("bafyrei", uri.encode()), "rev": _tid(micros, 1)},
                "validationStatus": "valid"}

    def _blob_problem(self, path: str, blob: Any, accept: str, max_size: int | None = None) -> tuple[str, str] | None:
        if not isinstance(blob, dict) or blob.get("$type") != "blob" or not isinstance(blob.get("ref"), dict):
            return "InvalidRequest", f"{path} should be a blob ref"
        stored = self.blobs.get(str(blob["ref"].get("$link")))
        if stored is None:
            return "InvalidRequest", f"Could not find blob: {blob['ref'].get('$link')}"
        if not stored["mimeType"].startswith(accept):
            return "InvalidMimeType", f"Wrong type of file. It is {stored['mimeType']} but it must match {accept}*."
        if max_size is not None and stored["size"] > max_size:
            return "InvalidSize", f"This file is too large. It is {stored['size']} bytes but the maximum size is {max_size} bytes."
        return None

    def _post_problem(self, record: dict[str, Any]) -> str | None:
        text = record.get("text")
        if not isinstance(text, str):
            return 'Record must have the property "text"'
        if (count := len(_GRAPHEME.findall(text))) > 300:
            return f"grapheme too big (maximum 300, got {count}) at $.record.text"  # @atproto/pds 0.5.35's wording
        raw = text.encode("utf-8")
        if len(raw) > 3000:
            return f"string too long (maximum 3000, got {len(raw)}) at $.record.text"
        created = record.get("createdAt")
        try:
            if not isinstance(created, str) or not re.search(r"(Z|[+-]\d\d:\d\d)$", created):
                raise ValueError
            datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return "Record/createdAt must be an valid atproto datetime (both RFC-3339 and ISO-8601)"
        langs = record.get("langs")
        if langs is not None and (not isinstance(langs, list) or len(langs) > 3):
            return "Record/langs must not have more than 3 elements"
        for i, facet in enumerate(record.get("facets") or []):
            index = facet.get("index") if isinstance(facet, dict) else None
            if not isinstance(index, dict) or not all(isinstance(index.get(k), int) for k in ("byteStart", "byteEnd")):
                return f"Record/facets/{i}/index must be an object with byteStart and byteEnd"
            if not 0 <= index["byteStart"] < index["byteEnd"] <= len(raw):  # stricter than the lexicon (see module doc)
                return f"Record/facets/{i}/index is outside the text"
            for j, feature in enumerate(facet.get("features") or []):
                kind = feature.get("$type")
                if kind == "app.bsky.richtext.facet#mention" and not str(feature.get("did", "")).startswith("did:"):
                    return f"Record/facets/{i}/features/{j}/did must be a valid did"
                if kind == "app.bsky.richtext.facet#link" and not isinstance(feature.get("uri"), str):
                    return f"Record/facets/{i}/features/{j}/uri must be a uri"
                if kind == "app.bsky.richtext.facet#tag" and not feature.get("tag"):
                    return f"Record/facets/{i}/features/{j}/tag must not be empty"
                if kind not in ("app.bsky.richtext.facet#mention", "app.bsky.richtext.facet#link", "app.bsky.richtext.facet#tag"):
                    return f"Record/facets/{i}/features/{j} has an unknown $type {kind!r}"
        reply = record.get("reply")
        if reply is not None:
            for part in ("root", "parent"):
                ref = reply.get(part) if isinstance(reply, dict) else None
                if not isinstance(ref, dict) or not str(ref.get("uri", "")).startswith("at://") or not isinstance(ref.get("cid"), str):
                    return f"Record/reply/{part} must be a strong ref (uri, cid)"
        embed = record.get("embed")
        if embed is not None:
            problem = self._embed_problem(embed)
            if problem is not None:
                raise XrpcError(400, problem[0], f"Invalid app.bsky.feed.post record: {problem[1]}" if problem[0] == "InvalidRequest" else problem[1])
        return None

    def _embed_problem(self, embed: Any) -> tuple[str, str] | None:
        kind = embed.get("$type") if isinstance(embed, dict) else None
        if kind == "app.bsky.embed.images":
            images = embed.get("images")
            if not isinstance(images, list) or not 1 <= len(images) <= 4:
                return "InvalidRequest", "Record/embed/images must have 1 to 4 elements"
            for i, image in enumerate(images):
                if "alt" not in image or not isinstance(image["alt"], str):
                    return "InvalidRequest", f'Record/embed/images/{i} must have the property "alt"'
                ratio = image.get("aspectRatio")
                if ratio is not None and not (isinstance(ratio.get("width"), int) and isinstance(ratio.get("height"), int)
                                              and ratio["width"] > 0 and ratio["height"] > 0):
                    return "InvalidRequest", f"Record/embed/images/{i}/aspectRatio must have positive width and height"
                if (problem := self._blob_problem(f"Record/embed/images/{i}/image", image.get("image"), "image/", 2_000_000)) is not None:
                    return problem
            return None
        if kind == "app.bsky.embed.video":
            return self._blob_problem("Record/embed/video", embed.get("video"), "video/mp4", 300_000_000)
        if kind == "app.bsky.embed.external":
            external = embed.get("external")
            if not isinstance(external, dict) or not all(isinstance(external.get(k), str) for k in ("uri", "title", "description")):
                return "InvalidRequest", "Record/embed/external must have uri, title and description"
            if "thumb" in external:
                return self._blob_problem("Record/embed/external/thumb", external["thumb"], "image/", 1_000_000)
            return None
        return "InvalidRequest", f"Record/embed has an unsupported $type {kind!r}"

    async def _get_record(self, ctx: _Ctx) -> dict[str, Any]:
        repo, collection, rkey = ctx.param("repo"), ctx.param("collection"), ctx.param("rkey")
        did = self._repo(repo)
        stored = self.records.get((did, str(collection), str(rkey)))
        if stored is None:
            raise XrpcError(400, "RecordNotFound", f"Could not locate record: at://{did}/{collection}/{rkey}")
        return dict(stored)

    async def _delete_record(self, ctx: _Ctx) -> dict[str, Any]:
        did = self._token(ctx, "access").did
        body = ctx.json()
        if self._repo(body.get("repo")) != did:
            raise XrpcError(403, "InvalidRequest", "Invalid repo: not the authenticated account")
        if self.records.pop((did, str(body.get("collection")), str(body.get("rkey"))), None) is None:
            return {}  # nothing to delete: 200 with an empty body, as the PDS answers
        return {"commit": {"cid": _cid("bafyrei", f"delete{next(self._serial)}".encode()), "rev": _tid(int(self.clock() * 1e6), 2)}}

    # ------------------------------------------------------------------ video service

    async def _upload_video(self, ctx: _Ctx) -> Any:
        header = ctx.request.headers.get("authorization", "")
        token = self._tokens.get(header[len("Bearer "):]) if header.startswith("Bearer ") else None
        if token is not None:
            ctx.call.auth = token.kind
        if token is None or token.kind != "service" or token.aud != PDS_SERVICE_DID or token.lxm != UPLOAD_BLOB or token.exp <= self.clock():
            raise XrpcError(401, "AuthenticationRequired", "Invalid or missing service auth token")
        did = ctx.param("did")
        if did != token.did:
            raise XrpcError(400, "InvalidRequest", "did does not match the service token")
        digest = hashlib.sha256(ctx.body).hexdigest()
        for job in self.jobs.values():
            if job["sha256"] == digest and job["did"] == did:
                return JSONResponse({"error": "already_exists", "message": "Video already processed", "did": did,
                                     "jobId": job["jobId"], "state": job["state"]}, 409)
        used = self.video_usage.setdefault((did, int(self.clock() // 86400)), [0, 0])
        used[0] += 1
        used[1] += len(ctx.body)
        job_id = f"job{next(self._serial)}"
        self.jobs[job_id] = {"jobId": job_id, "did": did, "state": "JOB_STATE_CREATED", "polls": 0, "sha256": digest,
                             "data": ctx.body, "mime": (ctx.call.content_type or "").split(";")[0], "blob": None}
        return {"did": did, "jobId": job_id, "state": "JOB_STATE_CREATED"}  # top level: the real service's quirk

    async def _get_upload_limits(self, ctx: _Ctx) -> dict[str, Any]:
        header = ctx.request.headers.get("authorization", "")
        token = self._tokens.get(header[len("Bearer "):]) if header.startswith("Bearer ") else None
        if token is not None:
            ctx.call.auth = token.kind
        if (token is None or token.kind != "service" or token.aud != self.video_did or token.lxm != GET_UPLOAD_LIMITS
                or token.exp <= self.clock()):
            raise XrpcError(401, "AuthenticationRequired", "Invalid or missing service auth token")
        if token.did in self.video_refused:
            error, message = self.video_refused[token.did]
            return {"canUpload": False, "error": error, "message": message}
        videos, size = self.used_today(token.did)
        left_videos, left_bytes = max(0, self.daily_videos - videos), max(0, self.daily_video_bytes - size)
        answer: dict[str, Any] = {"canUpload": left_videos > 0 and left_bytes > 0, "remainingDailyVideos": left_videos,
                                  "remainingDailyBytes": left_bytes}
        if not answer["canUpload"]:
            answer |= {"error": "daily_limit_exceeded", "message": "You have reached your daily video upload limit"}
        return answer

    async def _get_job_status(self, ctx: _Ctx) -> dict[str, Any]:
        job = self.jobs.get(ctx.param("jobId") or "")
        if job is None:
            raise XrpcError(404, "NotFound", "job not found")
        job["polls"] += 1
        status: dict[str, Any] = {"jobId": job["jobId"], "did": job["did"]}
        if job["polls"] < self.video_polls and job["blob"] is None:
            job["state"] = "JOB_STATE_ENCODING"
            return {"jobStatus": status | {"state": job["state"], "progress": 50}}
        if job["blob"] is None:
            job["blob"] = self._store_blob(job["data"], job["mime"] or "video/mp4")
            job["state"] = "JOB_STATE_COMPLETED"
        return {"jobStatus": status | {"state": "JOB_STATE_COMPLETED", "progress": 100, "blob": job["blob"]}}
