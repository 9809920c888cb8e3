"""The OAuth 2.0 client: authorization URL, code exchange, refresh and revoke, for any `Provider`.

Parameters are built and token answers parsed by `oauthlib` (sans-IO: `WebApplicationClient.prepare_request_uri`,
`prepare_request_body`, `prepare_refresh_body`, `parse_token_response`, RFC 7636 verifier and S256 challenge);
the requests go through the one injected `httpx2` client (the runtime's SSRF-guarded one) via platforms/calls.py,
the one place transport failures and statuses become PlatformErrors. oauthlib's own https check is not used: the
guard decides where omnipost may connect.

Nothing here logs or returns a token, code, verifier or client secret: errors carry the provider's error body
(`error`, `error_description`), which holds none.
"""

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx2
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient
from oauthlib.oauth2.rfc6749.parameters import parse_token_response

from omnipost.clock import Clock
from omnipost.errors import PlatformAuthError
from omnipost.oauth.model import OAuthCredentials, TokenSet
from omnipost.oauth.providers import Provider, provider_for
from omnipost.platforms.calls import body_of, raise_for_status, send
from omnipost.platforms.errormap import AUTH_REFUSED, ErrorMap, Rule, body_field

VERIFIER_LENGTH = 64  # RFC 7636 §4.1: 43..128 characters
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}

# A token endpoint refusing a code, a verifier, a refresh token or the client (RFC 6749 §5.2) means the user must
# connect again; X answers a dead refresh token with 400 invalid_request (platforms.md §2.1), so every 4xx but 429 is.
TOKEN_ERRORS = ErrorMap(rules=tuple(Rule(AUTH_REFUSED, status=s) for s in (400, 401, 403)),
                        message=body_field("error_description", "message"))


def new_verifier() -> str:
    """A fresh PKCE code verifier (RFC 7636 §4.1)."""
    return WebApplicationClient(None).create_code_verifier(VERIFIER_LENGTH)


def challenge_of(verifier: str) -> str:
    """Its S256 code challenge (RFC 7636 §4.2)."""
    return WebApplicationClient(None).create_code_challenge(verifier, "S256")


class OAuthClient:
    """One provider's authorization-code + PKCE client over the injected HTTP client."""

    def __init__(self, provider: Provider, http: httpx2.AsyncClient, clock: Clock, *, timeout: float = 30.0) -> None:
        if provider.app is None:
            raise ValueError(f"{provider.platform}: no app credentials")  # callers check configured first
        self.provider, self.http, self.clock, self.timeout = provider, http, clock, timeout
        self.app = provider.app
        self._lib = WebApplicationClient(self.app.client_id)

    # -- building requests -------------------------------------------------------------------------------------

    def authorization_url(self, *, redirect_uri: str, state: str, verifier: str | None) -> str:
        """Where the user consents. The challenge is sent unless the provider takes no PKCE."""
        p = self.provider
        pkce: dict[str, Any] = {}
        if p.pkce != "none" and verifier is not None:
            pkce = {"code_challenge": challenge_of(verifier), "code_challenge_method": "S256"}
        # oauthlib refuses a non-https endpoint; the SSRF guard, not it, decides where omnipost connects (a test
        # authorization server answers on http loopback), so its parameters are put on the configured URL.
        built = self._lib.prepare_request_uri("https://authorize.invalid/", redirect_uri=redirect_uri,
                                              scope=p.scope_string or None, state=state, **pkce)
        query = urlsplit(built).query
        return f"{p.authorize_url}{'&' if '?' in p.authorize_url else '?'}{query}"

    def _auth(self) -> tuple[dict[str, str], dict[str, Any]]:
        """Headers and form fields that authenticate the client (RFC 6749 §2.3.1): HTTP Basic with the
        form-encoded id and secret, or both in the body; a public client (no secret) sends its id in the body."""
        secret = self.app.client_secret
        if self.provider.client_auth == "basic" and secret is not None:
            pair = f"{quote(self.app.client_id, safe='')}:{quote(secret, safe='')}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}, {"include_client_id": False}
        fields: dict[str, Any] = {"include_client_id": True, "client_id": self.app.client_id}
        if secret is not None:
            fields["client_secret"] = secret
        return {}, fields

    async def _token_request(self, body: str, headers: dict[str, str], *, url: str | None = None) -> TokenSet:
        url = url or self.provider.token_url
        if self.provider.token_method == "GET":
            response = await send(self.http, "GET", f"{url}{'&' if '?' in url else '?'}{body}", platform=self.provider.platform,
                                  write=False, timeout=self.timeout, headers={k: v for k, v in headers.items() if k != "Content-Type"})
        else:
            response = await send(self.http, "POST", url, platform=self.provider.platform, write=False, timeout=self.timeout,
                                  headers={**FORM, **headers}, content=body.encode())
        raise_for_status(response, self.provider.platform, errors=TOKEN_ERRORS, now=self.clock.now().timestamp())
        return self.token_set(response)

    def token_set(self, response: httpx2.Response) -> TokenSet:
        """A token answer as a TokenSet, `expires_in` read against the injected clock.

        Raises:
            PlatformAuthError: the answer is an OAuth error, or carries no access token.
        """
        try:
            parsed = dict(parse_token_response(response.text, scope=None))
        except (OAuth2Error, ValueError) as exc:  # ValueError: not JSON nor a form; OAuth2Error: "error" in a 200
            raise PlatformAuthError(f"{self.provider.platform}'s token endpoint gave no usable token "
                                    f"({getattr(exc, 'error', type(exc).__name__)}).", status=response.status_code,
                                    platform_response=body_of(response),
                                    remediation="Connect the account again (connect_account).") from None
        return token_set_from(parsed, self.clock, separator=self.provider.scope_separator)

    # -- the grants ----------------------------------------------------------------------------------------------

    async def exchange(self, *, code: str, redirect_uri: str, verifier: str | None) -> TokenSet:
        """The authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
        headers, fields = self._auth()
        fields.pop("client_id", None)  # prepare_request_body adds its own client id when include_client_id
        body = self._lib.prepare_request_body(code=code, redirect_uri=redirect_uri,
                                              code_verifier=verifier if self.provider.pkce != "none" else None, **fields)
        return await self._token_request(body, headers)

    async def refresh(self, refresh_token: str) -> TokenSet:
        """The refresh_token grant (RFC 6749 §6); the answer may carry a new (rotated) refresh token."""
        headers, fields = self._auth()
        body = self._lib.prepare_refresh_body(refresh_token=refresh_token, scope=None, **fields)
        return await self._token_request(body, headers)

    async def exchange_long_lived(self, access_token: str) -> TokenSet:
        """Meta's long-lived user token: `fb_exchange_token` on the token endpoint (platforms.md §4.1), for a
        short-lived token at connect and for a long-lived one before it lapses."""
        query = urlencode({"grant_type": "fb_exchange_token", "client_id": self.app.client_id,
                           "client_secret": self.app.client_secret or "", "fb_exchange_token": access_token})
        response = await send(self.http, "GET", f"{self.provider.token_url}?{query}", platform=self.provider.platform,
                              write=False, timeout=self.timeout)
        raise_for_status(response, self.provider.platform, errors=TOKEN_ERRORS, now=self.clock.now().timestamp())
        return self.token_set(response)

    async def refresh_threads(self, access_token: str) -> TokenSet:
        """Threads' long-lived token renewed: GET /refresh_access_token?grant_type=th_refresh_token (platforms.md §6)."""
        origin = httpx2.URL(self.provider.api_base).copy_with(path="/refresh_access_token", query=None)
        query = urlencode({"grant_type": "th_refresh_token", "access_token": access_token})
        response = await send(self.http, "GET", f"{origin}?{query}", platform=self.provider.platform, write=False,
                              timeout=self.timeout)
        raise_for_status(response, self.provider.platform, errors=TOKEN_ERRORS, now=self.clock.now().timestamp())
        return self.token_set(response)

    async def revoke_token(self, token: str, hint: str) -> None:
        """RFC 7009 revocation of one token at the provider's revoke endpoint."""
        assert self.provider.revoke_url is not None
        headers, fields = self._auth()
        form = {"token": token, "token_type_hint": hint}
        if fields.pop("include_client_id"):
            form |= {k: v for k, v in fields.items() if v is not None}
        body = urlencode(form)
        response = await send(self.http, "POST", self.provider.revoke_url, platform=self.provider.platform, write=False,
                              timeout=self.timeout, headers={**FORM, **headers}, content=body.encode())
        raise_for_status(response, self.provider.platform, errors=TOKEN_ERRORS, now=self.clock.now().timestamp())


def token_set_from(parsed: dict[str, Any], clock: Clock, *, separator: str = " ") -> TokenSet:
    """A parsed token answer (or a brought token) as a TokenSet."""
    known = {"access_token", "refresh_token", "expires_in", "expires_at", "scope", "token_type"}
    expires_in = parsed.get("expires_in")
    expires_at = clock.now() + timedelta(seconds=int(expires_in)) if isinstance(expires_in, int | float) and expires_in > 0 else None
    scope = parsed.get("scope") or ()
    if isinstance(scope, str):
        scope = scope.replace(separator, " ").split()
    return TokenSet(access_token=str(parsed["access_token"]), refresh_token=parsed.get("refresh_token") or None,
                    expires_at=expires_at, scope=tuple(str(s) for s in scope),
                    token_type=str(parsed.get("token_type") or "Bearer"),
                    extra={k: v for k, v in parsed.items() if k not in known})


def credentials_from(tokens: TokenSet, now: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """What an OAuth account stores (OAuthCredentials, as JSON), sealed by the caller. `now`: when the tokens were
    received, to date the refresh token's end (TokenSet.refresh_lapse)."""
    lapse = tokens.refresh_lapse(now) if now is not None and tokens.refresh_token else None
    return OAuthCredentials(access_token=tokens.access_token, refresh_token=tokens.refresh_token, expires_at=tokens.expires_at,
                            refresh_expires_at=lapse, scope=list(tokens.scope), token_type=tokens.token_type,
                            extra=dict(extra)).model_dump(mode="json")


class OAuthRefresher:
    """model.Refresher for any OAuth provider: renews by the provider's refresh kind, revokes per RFC 7009.

    Built as `OAuthRefresher(provider, http, clock, timeout=...)` with `provider = provider_for(platform, environ)`
    (the app credentials are needed). `refresh` answers the new TokenSet; the caller (TokenSession) persists it,
    rotated refresh token included, before using the new access token. A refresh answer without a refresh token
    keeps the old one (LinkedIn, and any provider that does not rotate)."""

    def __init__(self, provider: Provider, http: httpx2.AsyncClient, clock: Clock, *, timeout: float = 30.0) -> None:
        self.provider = provider
        self.client = OAuthClient(provider, http, clock, timeout=timeout)

    async def refresh(self, credentials: dict[str, Any]) -> TokenSet:
        stored = OAuthCredentials.model_validate({k: v for k, v in credentials.items() if k in OAuthCredentials.model_fields})
        kind = self.provider.refresh
        if kind in ("rotating", "refresh_token"):
            if not stored.refresh_token:
                raise PlatformAuthError(f"This {self.provider.platform} account has no refresh token; its token cannot be renewed.",
                                        remediation="Connect the account again (connect_account).")
            fresh = await self.client.refresh(stored.refresh_token)
            if fresh.refresh_token is None:
                fresh = TokenSet(access_token=fresh.access_token, refresh_token=stored.refresh_token, expires_at=fresh.expires_at,
                                 scope=fresh.scope or tuple(stored.scope), token_type=fresh.token_type, extra=fresh.extra)
            return fresh
        if kind == "fb_exchange":
            return await self.client.exchange_long_lived(stored.access_token)
        if kind == "th_refresh":
            return await self.client.refresh_threads(stored.access_token)
        raise PlatformAuthError(f"{self.provider.platform} tokens cannot be renewed without the user.",
                                remediation="Connect the account again (connect_account).")

    async def revoke(self, credentials: dict[str, Any]) -> bool:
        if self.provider.revoke_url is None:
            return False
        stored = OAuthCredentials.model_validate({k: v for k, v in credentials.items() if k in OAuthCredentials.model_fields})
        if stored.refresh_token:  # revoking the refresh token ends the grant (RFC 7009 §2.1)
            await self.client.revoke_token(stored.refresh_token, "refresh_token")
        await self.client.revoke_token(stored.access_token, "access_token")  # RFC 7009 §2.2: 200 even if already gone
        return True


def refresher_for(platform: str, http: httpx2.AsyncClient, clock: Clock, environ: Mapping[str, str], *,
                  timeout: float = 30.0) -> OAuthRefresher | None:
    """The platform's refresher as configured (None: the platform is not an OAuth one, or has no app credentials,
    so its tokens cannot be renewed here)."""
    try:
        provider = provider_for(platform, environ)
    except KeyError:
        return None
    return OAuthRefresher(provider, http, clock, timeout=timeout) if provider.app is not None else None
