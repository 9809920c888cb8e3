"""A fake OAuth 2.0 token endpoint with single-use rotating refresh tokens, and a test Refresher that speaks to it.

`FakeTokenServer.app` (Starlette), routes:
- POST /token  form grant_type=refresh_token&refresh_token=<rt>&client_id=<id> → 200 {access_token, token_type,
  expires_in, refresh_token, scope}: a new access token and a new refresh token; the refresh token sent is spent
  at once (strict rotation, like X and oidc-provider with rotation on). A spent, revoked or unknown refresh token
  → 400 {"error": "invalid_grant"}. With `grace` seconds, a spent token may be sent again within that time and the
  same successor is answered again (a rotation grace period, as the reference Bluesky PDS has).
- POST /revoke form token=<rt or at> → 200 (RFC 7009: unknown tokens too); the token is refused from then on.
- GET /me  Bearer <access token> → 200 {"id"}; expired or unknown → 401 {"error": "invalid_token"}.
Scripted trouble: `fail_next(path, status, body)`; `hold()` makes the next /token request wait until `release()`
(`arrived` is set when it is waiting; `hold_across_threads()` is the same for a server on another thread);
`expire_access()` ends every access token issued so far.
Every request is logged in `requests` (path, and for /token the refresh token sent). Unknown routes are 404.
Tokens are opaque counters ("at-3", "rt-3"), so a test can tell them apart and find them in logs.
"""

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omnipost.clock import Clock
from omnipost.errors import PlatformAuthError, PlatformRejectedError, PlatformUnavailableError
from omnipost.oauth.model import TokenSet

TOKEN_URL = "https://auth.example.test/token"
ACCESS_TTL = 3600
REFRESH_TTL = 30 * 86400


@dataclass
class _Refresh:
    token: str
    spent_at: float | None = None
    successor: dict[str, Any] | None = None
    revoked: bool = False


@dataclass
class FakeTokenServer:
    """The authorization server's state (in memory)."""

    clock: Callable[[], float]
    grace: float = 0.0
    requests: list[tuple[str, str | None]] = field(default_factory=lambda: [], repr=False)
    refresh_tokens: dict[str, _Refresh] = field(default_factory=lambda: {}, repr=False)
    access_tokens: dict[str, float] = field(default_factory=lambda: {}, repr=False)  # token -> exp (Unix seconds)
    _serial: Any = field(default_factory=lambda: itertools.count(1))
    _failures: dict[str, list[tuple[int, Any]]] = field(default_factory=lambda: {})
    _hold: bool = False
    arrived: anyio.Event | None = None
    _release: anyio.Event | None = None
    gate: threading.Event | None = None  # hold_across_threads(): served on another thread (uvicorn)
    arrived_sync: threading.Event = field(default_factory=threading.Event)

    def issue(self) -> dict[str, Any]:
        """A fresh token answer (as /token gives), e.g. the tokens an account was connected with."""
        n = next(self._serial)
        access, refresh = f"at-{n}", f"rt-{n}"
        self.access_tokens[access] = self.clock() + ACCESS_TTL
        self.refresh_tokens[refresh] = _Refresh(refresh)
        return {"access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TTL, "refresh_token": refresh,
                "refresh_token_expires_in": REFRESH_TTL, "scope": "post.write offline.access"}

    def valid_refresh_tokens(self) -> list[str]:
        return [r.token for r in self.refresh_tokens.values() if r.spent_at is None and not r.revoked]

    def token_requests(self) -> int:
        return sum(1 for path, _ in self.requests if path == "/token")

    def fail_next(self, path: str, status: int, body: Any = None) -> None:
        self._failures.setdefault(path, []).append((status, body))

    def hold(self) -> None:
        self._hold, self.arrived, self._release = True, anyio.Event(), anyio.Event()

    def hold_across_threads(self) -> threading.Event:
        """As hold(), for a server running on another thread: the next /token request sets `arrived_sync` and waits
        (at most 60 s) until the returned event is set."""
        self.gate = threading.Event()
        return self.gate

    def release(self) -> None:
        assert self._release is not None
        self._release.set()

    def expire_access(self) -> None:
        for token in self.access_tokens:
            self.access_tokens[token] = min(self.access_tokens[token], self.clock() - 1)

    def _failure(self, path: str) -> Response | None:
        queued = self._failures.get(path)
        if queued:
            status, body = queued.pop(0)
            return JSONResponse(body if body is not None else {"error": "server_error"}, status_code=status)
        return None

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        sent = str(form.get("refresh_token") or "")
        self.requests.append(("/token", sent))
        if self._hold and self.arrived is not None and self._release is not None:
            self._hold = False
            self.arrived.set()
            await self._release.wait()
        if self.gate is not None:
            gate, self.gate = self.gate, None
            self.arrived_sync.set()
            await anyio.to_thread.run_sync(gate.wait, 60)
        if (failed := self._failure("/token")) is not None:
            return failed
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        record = self.refresh_tokens.get(sent)
        if record is None or record.revoked:
            return JSONResponse({"error": "invalid_grant", "error_description": "unknown refresh token"}, status_code=400)
        if record.spent_at is not None:
            if record.successor is not None and self.grace > 0 and self.clock() - record.spent_at <= self.grace:
                return JSONResponse(record.successor)
            return JSONResponse({"error": "invalid_grant", "error_description": "refresh token already used"}, status_code=400)
        answer = self.issue()
        record.spent_at, record.successor = self.clock(), answer
        return JSONResponse(answer)

    async def _revoke(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token") or "")
        self.requests.append(("/revoke", None))
        if (failed := self._failure("/revoke")) is not None:
            return failed
        if token in self.refresh_tokens:
            self.refresh_tokens[token].revoked = True
        self.access_tokens.pop(token, None)
        return Response(status_code=200)

    async def _me(self, request: Request) -> Response:
        self.requests.append(("/me", None))
        if (failed := self._failure("/me")) is not None:
            return failed
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        exp = self.access_tokens.get(token)
        if exp is None or exp <= self.clock():
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"id": "user-1"})

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/token", self._token, methods=["POST"]), Route("/revoke", self._revoke, methods=["POST"]),
                                 Route("/me", self._me, methods=["GET"])])


def credentials_from(answer: dict[str, Any], now: datetime) -> dict[str, Any]:
    """An OAuthCredentials dump (JSON) for a token answer received at `now`."""
    return {"access_token": answer["access_token"], "refresh_token": answer["refresh_token"],
            "expires_at": (now + timedelta(seconds=answer["expires_in"])).isoformat(),
            "refresh_expires_at": (now + timedelta(seconds=answer["refresh_token_expires_in"])).isoformat(),
            "scope": answer["scope"].split(), "token_type": "Bearer", "extra": {}}


class FakeOAuthRefresher:
    """A minimal Refresher (oauth/model.py) for the fake: what wtA's OAuthRefresher does for a real provider, reduced to
    the refresh_token grant and RFC 7009 revocation (the session under test does not depend on which one it drives)."""

    def __init__(self, http: httpx2.AsyncClient, *, clock: Clock, token_url: str = TOKEN_URL, client_id: str = "app") -> None:
        self.http, self.clock, self.token_url, self.client_id = http, clock, token_url, client_id
        self.base = token_url.rsplit("/", 1)[0]

    async def refresh(self, credentials: dict[str, Any]) -> TokenSet:
        try:
            response = await self.http.post(self.token_url, data={"grant_type": "refresh_token", "client_id": self.client_id,
                                                                  "refresh_token": credentials["refresh_token"]})
        except httpx2.HTTPError as exc:
            raise PlatformUnavailableError("The token endpoint could not be reached.", remediation="Retry later.") from exc
        if response.status_code == 400 and response.json().get("error") == "invalid_grant":
            raise PlatformAuthError("The refresh token was refused.", status=400, platform_response={"error": "invalid_grant"},
                                    remediation="Reconnect the account.")
        if response.status_code >= 500:
            raise PlatformUnavailableError("The token endpoint failed.", status=response.status_code, remediation="Retry later.")
        if not response.is_success:
            raise PlatformRejectedError("The token endpoint refused the request.", status=response.status_code)
        body = response.json()
        return TokenSet(access_token=body["access_token"], refresh_token=body.get("refresh_token"),
                        expires_at=self.clock.now() + timedelta(seconds=int(body["expires_in"])),
                        scope=tuple(str(body.get("scope", "")).split()),
                        extra={k: body[k] for k in ("refresh_token_expires_in",) if k in body})

    async def revoke(self, credentials: dict[str, Any]) -> bool:
        response = await self.http.post(f"{self.base}/revoke", data={"token": credentials["refresh_token"], "client_id": self.client_id})
        if not response.is_success:
            raise PlatformUnavailableError("The revocation endpoint failed.", status=response.status_code, remediation="Retry later.")
        return True


def unix(clock: Clock) -> Callable[[], float]:
    """The fake's clock from the program's (so both agree on expiry)."""
    return lambda: clock.now().timestamp()


UTC = timezone.utc
