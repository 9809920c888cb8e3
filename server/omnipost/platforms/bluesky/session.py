"""Bluesky sessions and the XRPC wire: error bodies and their classes (ERRORS), session expiry, the
DID document's PDS, connect_bluesky (createSession)."""

import base64
import binascii
import json
import mimetypes
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx2
from pydantic import BaseModel, SecretStr

from omnipost.clock import Clock
from omnipost.errors import (
    PlatformAuthError,
    PlatformError,
    PlatformForbiddenError,
    PlatformRejectedError,
    PlatformUnavailableError,
    ValidationFailedError,
)
from omnipost.oauth.model import TokenSet
from omnipost.netguard import UpstreamForbiddenError, check_base_url
from omnipost.platforms.base import ConnectRequest, Connected, MediaFile
from omnipost.platforms.errormap import AUTH_REFUSED, RATE_LIMITED, ErrorMap, Rule, first_of, reset_header, retry_after_header
from omnipost.platforms.calls import error_for, send
from omnipost.platforms.bluesky.lexicon import (
    AUTH_ERRORS,
    CREATE_SESSION,
    DEFAULT_PDS,
    DELETE_SESSION,
    GET_SESSION,
    PLATFORM,
    POST,
    REFRESH_SESSION,
)

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


async def connect_account(req: ConnectRequest) -> Connected:
    """connect_account for Bluesky: an app password (never the account password, never stored) opens a session,
    which is kept and refreshed; pdsUrl names a self-hosted PDS (default bsky.social).

    Raises:
        ValidationFailedError: no appPassword. See connect_bluesky for the rest."""
    password = req.args.get("appPassword")
    if not password:
        raise ValidationFailedError("Connecting Bluesky needs an app password.", path="appPassword",
                                    remediation="Create one in Bluesky: Settings → Privacy and security → App passwords.")
    session = await connect_bluesky(req.deps.http, req.handle.strip(), password, req.args.get("pdsUrl") or DEFAULT_PDS,
                                    clock=req.deps.clock)
    return Connected(handle=session["handle"], credentials=session["credentials"],
                     defaults={"did": session["did"], "pdsUrl": session["pdsUrl"], **req.defaults},
                     token_expires_at=session_expiry(session["credentials"]), identity=session["did"])


class BlueskyCredentials(BaseModel):
    """A Bluesky session (com.atproto.server.createSession); the app password itself is never stored."""

    accessJwt: SecretStr
    refreshJwt: SecretStr
    did: str
    pdsUrl: str


class BlueskyRefresher:
    """The Refresher of Bluesky sessions (oauth/model.py), driven by TokenSession (oauth/session.py), and the shape of
    the stored session `{"accessJwt", "refreshJwt", "did", "pdsUrl"}` (oauth/session.py's CredentialShape).

    refresh: com.atproto.server.refreshSession with the refresh JWT (no body); both tokens rotate and the old refresh
    JWT is spent. A refusal (ExpiredToken, InvalidToken, a takedown; also a 403 or another 4xx, since a refresh has
    nothing else to refuse) is a PlatformAuthError: the app password is not stored, so the user must reconnect.
    revoke: com.atproto.server.deleteSession with the refresh JWT (the PDS forgets the session; access JWTs already
    issued stay valid until their `exp`, at most about two hours)."""

    def __init__(self, http: httpx2.AsyncClient, *, clock: Clock, timeout: float = 30.0) -> None:
        self.http, self.clock, self.timeout = http, clock, timeout

    @staticmethod
    def _pds(credentials: dict[str, Any]) -> str:
        return str(credentials.get("pdsUrl") or DEFAULT_PDS).rstrip("/")

    async def refresh(self, credentials: dict[str, Any]) -> TokenSet:
        refresh = credentials.get("refreshJwt")
        if not isinstance(refresh, str) or not refresh:
            raise PlatformAuthError("The Bluesky account has no session to refresh.",
                                    remediation="Reconnect the Bluesky account (connect_account with an app password).")
        # Not a write for any post: a lost answer publishes nothing (retryable as far as posts go).
        response = await send(self.http, "POST", f"{self._pds(credentials)}/xrpc/{REFRESH_SESSION}", platform=PLATFORM,
                              write=False, timeout=self.timeout, headers={"Authorization": f"Bearer {refresh}"})
        if not response.is_success:
            error = _classify(response, REFRESH_SESSION, self.clock.now().timestamp())
            if isinstance(error, PlatformAuthError | PlatformForbiddenError | PlatformRejectedError):
                raise PlatformAuthError(f"The Bluesky session could not be refreshed: {error.message}", status=error.status,
                                        platform_response=error.platform_response,
                                        remediation="Reconnect the Bluesky account (connect_account with an app password).") from error
            raise error
        body = _json_of(response)
        access, rotated = body.get("accessJwt"), body.get("refreshJwt")
        if not (isinstance(access, str) and access and isinstance(rotated, str) and rotated):
            raise PlatformAuthError("Bluesky refreshSession answered without tokens.", status=response.status_code,
                                    remediation="Reconnect the Bluesky account.")
        exp = _jwt_exp(access)
        extra: dict[str, Any] = {}
        if isinstance(body.get("did"), str):
            extra["did"] = body["did"]
        if (pds := pds_from_did_doc(body.get("didDoc"))) is not None:
            extra["pdsUrl"] = pds
        return TokenSet(access_token=access, refresh_token=rotated,
                        expires_at=datetime.fromtimestamp(exp, timezone.utc) if exp is not None else None, extra=extra)

    async def revoke(self, credentials: dict[str, Any]) -> bool:
        refresh = credentials.get("refreshJwt")
        if not isinstance(refresh, str) or not refresh:
            return True  # no session upstream to end
        response = await send(self.http, "POST", f"{self._pds(credentials)}/xrpc/{DELETE_SESSION}", platform=PLATFORM,
                              write=False, timeout=self.timeout, headers={"Authorization": f"Bearer {refresh}"})
        if response.is_success:
            return True
        error = _classify(response, DELETE_SESSION, self.clock.now().timestamp())
        if isinstance(error, PlatformAuthError):
            return True  # the session is already dead upstream: nothing left to revoke
        raise error

    # CredentialShape: how a stored Bluesky session holds its tokens.

    def access_token(self, credentials: dict[str, Any]) -> str | None:
        token = credentials.get("accessJwt")
        return token if isinstance(token, str) and token else None

    def access_expires_at(self, credentials: dict[str, Any]) -> datetime | None:
        exp = _jwt_exp(credentials.get("accessJwt"))
        return datetime.fromtimestamp(exp, timezone.utc) if exp is not None else None

    def lapses_at(self, credentials: dict[str, Any]) -> datetime | None:
        return session_expiry(credentials)

    def merge(self, credentials: dict[str, Any], tokens: TokenSet, now: datetime) -> dict[str, Any]:
        merged = {**credentials, "accessJwt": tokens.access_token}
        if tokens.refresh_token:
            merged["refreshJwt"] = tokens.refresh_token
        for key in ("did", "pdsUrl"):
            if isinstance(tokens.extra.get(key), str):
                merged[key] = tokens.extra[key]
        return merged
