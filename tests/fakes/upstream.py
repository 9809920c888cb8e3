"""What the OAuth platforms' fakes share: one Starlette app per platform host, built from a route table that later
issues extend (a subclass adds its publishing routes to `routes()`), tokens the fake issued (who, what kind, until
when, revoked), a request log without tokens, and scripted failures.

A handler gets a `Req` (method, path, query, form, JSON, the grant its bearer token names) and returns the JSON body
(status 200) or a `(status, body)` pair, or raises `Answer(status, body, headers)`. Routes nobody added, and a
request the platform's spec refuses (fakes/specs.py), raise in the test instead of answering: a surprise fails
loudly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fakes import mounted_client

NOW = 1_795_521_600.0  # 2026-11-24T12:00:00Z, tests/conftest.py's NOW


class Answer(Exception):
    """A handler's non-2xx answer."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class Grant:
    """A token the fake issued: whose it is, its kind (e.g. "user_short", "page"), and until when it is good."""

    subject: str
    kind: str
    expires_at: float | None
    revoked: bool = False
    data: dict[str, Any] = field(default_factory=lambda: {})  # e.g. the Page a Page token is for


@dataclass(frozen=True)
class Call:
    """One request as the fake saw it; secrets (tokens, client secrets) are replaced by what they name."""

    method: str
    route: str
    path: str
    query: dict[str, list[str]]
    grant: str | None  # kind of the bearer token's grant (or "invalid"), never the token


@dataclass
class Req:
    """What a handler is given."""

    request: Request
    route: str
    query: dict[str, list[str]]
    path_params: dict[str, str]
    bearer: str | None  # the token from the Authorization header (Bearer or OAuth scheme)
    body: Any = None  # the parsed body: a JSON value, a form as {name: value} (a repeated name: a list), None for none
    content_type: str | None = None  # the body's media type, parameters dropped

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


Handler = Callable[[Req], Awaitable[Any]]
_SECRET_PARAMS = ("access_token", "client_secret", "fb_exchange_token", "code", "refresh_token", "code_verifier")


class FakeUpstream:
    """Base of a platform's fake: `origin` is the host it is mounted at (e.g. "https://api.x.com")."""

    origin = "https://fake.invalid"
    token_prefix = "fake"

    def __init__(self, clock: Callable[[], float] = lambda: NOW) -> None:
        self.clock = clock
        self.grants: dict[str, Grant] = {}
        self.log: list[Call] = []
        self._failures: dict[str, list[Answer]] = {}
        self._drops: dict[str, int] = {}
        self._serial = itertools.count(1)
        self.app = Starlette(routes=[Route(path, self._endpoint(name, handler), methods=[method])
                                     for method, path, name, handler in self.routes()])

        async def no_route(request: Request, exc: Exception) -> Response:
            raise AssertionError(f"{self.origin} fake has no route for {request.method} {request.url.path}")

        self.app.add_exception_handler(404, no_route)
        self.app.add_exception_handler(405, no_route)

    # --- what subclasses provide -------------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        """(method, Starlette path, route name, handler); a subclass returns super().routes() plus its own."""
        return []

    def check(self, req: Req) -> None:
        """Validate a request against the platform's spec (raise SpecViolation); by default nothing to check."""

    def check_answer(self, req: Req, status: int, body: Any) -> None:
        """Validate the fake's own answer against the platform's spec; by default nothing to check."""

    def refused(self, req: Req, why: str) -> Answer:
        """The platform's answer to a missing, unknown, expired or revoked token (`why`)."""
        return Answer(401, {"error": why})

    # --- tokens ---------------------------------------------------------------------------------------------------------

    def issue(self, subject: str, kind: str, ttl: float | None, **data: Any) -> str:
        """A new token for `subject`, good for `ttl` seconds (None: no expiry)."""
        n = next(self._serial)
        token = f"{self.token_prefix}-{kind}-{n:04d}-" + hashlib.sha256(f"{self.origin}{n}{subject}".encode()).hexdigest()[:24]
        self.grants[token] = Grant(subject, kind, None if ttl is None else self.clock() + ttl, data=dict(data))
        return token

    def revoke(self, token: str) -> None:
        self.grants[token].revoked = True

    def grant(self, req: Req, *kinds: str) -> Grant:
        """The live grant of the request's bearer token, of one of `kinds` (any when none are named).

        Raises:
            Answer: the platform's refusal (see `refused`)."""
        if req.bearer is None:
            raise self.refused(req, "missing")
        return self.grant_of(req, req.bearer, *kinds)

    def grant_of(self, req: Req, token: str, *kinds: str) -> Grant:
        found = self.grants.get(token)
        if found is None or (kinds and found.kind not in kinds):
            raise self.refused(req, "invalid")
        if found.revoked:
            raise self.refused(req, "revoked")
        if found.expires_at is not None and found.expires_at <= self.clock():
            raise self.refused(req, "expired")
        return found

    # --- scripting ----------------------------------------------------------------------------------------------------

    def fail_next(self, route: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """The next call of `route` answers this, and nothing else happens."""
        self._failures.setdefault(route, []).append(Answer(status, body, headers))

    def drop_answer_next(self, route: str) -> None:
        """The next call of `route` takes effect, then its answer is lost: the client sees httpx2.ReadTimeout (raised
        through the ASGI transport), as when a connection drops after the platform acted."""
        self._drops[route] = self._drops.get(route, 0) + 1

    def calls(self, route: str) -> list[Call]:
        return [c for c in self.log if c.route == route]

    def client(self, *others: FakeUpstream) -> httpx2.AsyncClient:
        """One client with this fake (and `others`) mounted by origin; every other host fails loudly."""
        return mounted_client({self.origin: self.app, **{o.origin: o.app for o in others}})

    # --- serving --------------------------------------------------------------------------------------------------------

    def _endpoint(self, name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            query = parse_qs(request.url.query, keep_blank_values=True)
            auth = request.headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            bearer = value.strip() if scheme.lower() in ("bearer", "oauth") and value.strip() else None
            content_type, body = await _parsed(request)
            req = Req(request, name, query, {k: str(v) for k, v in request.path_params.items()}, bearer, body, content_type)
            held = self.grants.get(bearer) if bearer else None
            self.log.append(Call(request.method, name, request.url.path,
                                 {k: (["[secret]"] * len(v) if k in _SECRET_PARAMS else v) for k, v in query.items()},
                                 (held.kind if held else "invalid") if bearer else None))
            self.check(req)
            if self._failures.get(name):
                failure = self._failures[name].pop(0)
                return self._answer(req, failure.status, failure.body, failure.headers)
            try:
                result = await handler(req)
            except Answer as answer:
                if answer.status < 400:
                    self._lose(name)
                return self._answer(req, answer.status, answer.body, answer.headers)
            self._lose(name)
            status, body = result if isinstance(result, tuple) else (200, result)  # pyright: ignore[reportUnknownVariableType]
            return self._answer(req, status, body, {})  # pyright: ignore[reportUnknownArgumentType]
        return endpoint

    def _lose(self, name: str) -> None:
        """drop_answer_next: the call took effect; its answer never arrives."""
        if self._drops.get(name):
            self._drops[name] -= 1
            raise httpx2.ReadTimeout(f"{self.origin} fake: the answer to {name} was lost after it took effect")

    def presented(self, req: Req) -> tuple[str, tuple[str, ...]] | None:
        """The credentials a request presents, as fakes/specs.py's `check_request(auth=...)` takes them: an OAuth 2.0
        token this fake issued, with the scopes it was issued with (`issue(..., scopes=...)`); None without one."""
        if req.bearer is None:
            return None
        held = self.grants.get(req.bearer)
        return "oauth2", tuple(held.data.get("scopes", ())) if held is not None else ()

    def _answer(self, req: Req, status: int, body: Any, headers: dict[str, str]) -> Response:
        self.check_answer(req, status, body)
        return JSONResponse(body, status_code=status, headers=headers, media_type=self.media_type(status))

    def media_type(self, status: int) -> str:
        return "application/json"


async def _parsed(request: Request) -> tuple[str | None, Any]:
    """(media type, parsed body) of a request. A form becomes {name: value}, a name sent more than once a list; an
    uploaded file is named by a placeholder string (a handler reads its bytes from `await request.form()`, which
    Starlette keeps), so a spec's `format: binary` string field validates."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower() or None
    raw = await request.body()
    if not raw:
        return kind, None
    if kind == "application/json" or (kind or "").endswith("+json"):
        try:
            return kind, json.loads(raw)
        except ValueError:
            return kind, raw.decode("utf-8", "replace")
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            item = value if isinstance(value, str) else f"<file {value.filename} ({value.size} bytes)>"
            out[key] = [*out[key], item] if isinstance(out.get(key), list) else [out[key], item] if key in out else item
        return kind, out
    return kind, raw
