"""The HTTP transports (SSE, streamable HTTP): API keys through the SDK's bearer auth, Host/Origin protection, uvicorn.

Authentication is the MCP SDK's own: the server is built with `token_verifier=OmnipostTokenVerifier`
and `auth=AuthSettings(...)`, so the SDK's BearerAuthBackend verifies `Authorization: Bearer <key>` on
every HTTP request and its RequireAuthMiddleware refuses a request without a valid key (401). The
verified key reaches tools as the SDK's access token (omnipost.auth.current_caller). `UnauthenticatedAsJson`
only rewrites the body of that 401 into the PRODUCT.md §3 error object. `GET /media/<id>` (media/serve.py) is
answered before that check: its signature, not an API key, authorises it.
"""

import json
import logging
from typing import Any, Literal

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnipost.app import OmnipostServer, build_server
from omnipost.clock import Clock
from omnipost.config import Settings
from omnipost.errors import UnauthenticatedError
from omnipost.keys import LazyKeyService, OmnipostTokenVerifier, any_key_exists

logger = logging.getLogger("omnipost.http")

Transport = Literal["sse", "streamable-http"]
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")

NO_KEY_MESSAGE = (
    "omnipost: the HTTP transports require an API key, and none exists. Create one with "
    "`omnipost keys create --profile <profile> --mode live` (or `--org` for an org-wide key), "
    "or set OMNIPOST_API_KEY (in the environment or .env)."
)


class UnauthenticatedAsJson:
    """Give the SDK's 401 our §3 body, `{"error": {"code": "unauthenticated", ...}}`; close the key store at shutdown.

    The SDK answers `{"error": "invalid_token", "error_description": ...}` with a WWW-Authenticate header;
    the status and headers other than the body's length are kept.
    """

    def __init__(self, app: ASGIApp, keys: LazyKeyService | None = None) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = any(k.lower() == b"authorization" for k, _ in scope["headers"])
        rewriting = False

        async def send_wrapper(message: Message) -> None:
            nonlocal rewriting
            if message["type"] == "http.response.start" and message["status"] == 401:
                rewriting = True
                body = self._body(presented)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
                headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({**message, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            if rewriting:
                return  # the SDK's own body: already replaced
            await send(message)

        await self.app(scope, receive, send_wrapper)

    @staticmethod
    def _body(presented: bool) -> bytes:
        if presented:
            message = "The API key is not valid: it is unknown, malformed or revoked."
            remediation = "Send Authorization: Bearer <key> with a current key (omnipost keys list; omnipost keys create)."
        else:
            message = "An API key is required on this transport."
            remediation = "Send Authorization: Bearer <key> (create one with omnipost keys create)."
        error = UnauthenticatedError(message, remediation=remediation).to_error_object()
        return json.dumps({"error": error.model_dump(exclude_none=True)}).encode()

    def _closing_send(self, send: Send) -> Send:
        async def closing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self.keys is not None:
                await self.keys.close()
            await send(message)

        return closing


def security_settings(settings: Settings, port: int) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback on this port, plus what the operator configured."""
    hosts = [f"{h}:{port}" for h in LOOPBACK] + [h for h in LOOPBACK] + settings.allowed_hosts
    origins = [f"http://{h}:{port}" for h in LOOPBACK] + settings.allowed_origins
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def auth_settings(host: str, port: int) -> AuthSettings:
    """The SDK auth settings: bearer API keys checked by our verifier, no OAuth.

    `issuer_url` is required by the SDK but only used for OAuth routes and protected-resource
    metadata; `resource_server_url=None` keeps both off, so no client is sent looking for an
    authorization server that does not exist. `required_scopes=None`: any valid key may connect;
    what it may do is decided per tool from its scopes (profile:…, mode:…).
    """
    url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return AuthSettings(issuer_url=f"http://{url_host}:{port}", resource_server_url=None, required_scopes=None)  # type: ignore[arg-type]  # pydantic coerces the URL


def build_http_server(settings: Settings, host: str, port: int, *, clock: Clock | None = None,
                      **build_kwargs: Any) -> tuple[OmnipostServer, LazyKeyService]:
    """An omnipost server that authenticates API keys, and the key store its verifier reads."""
    keys = LazyKeyService(settings, clock)
    static = settings.api_key.get_secret_value() if settings.api_key is not None else None
    verifier = OmnipostTokenVerifier(keys.get, static_key=static or None)
    server = build_server(settings, clock=clock, token_verifier=verifier, auth=auth_settings(host, port), **build_kwargs)
    server.verifier = verifier  # the REST routes (/v1) check the same keys
    return server, keys


def build_http_app(server: OmnipostServer, settings: Settings, transport: Transport, port: int,
                   keys: LazyKeyService | None = None) -> ASGIApp:
    """The ASGI app for one HTTP transport of a server built by build_http_server().

    Raises:
        ValueError: the server was built without authentication.
    """
    if server.settings.auth is None:
        raise ValueError("the HTTP transports need a server built with build_http_server() (API-key authentication)")
    security = security_settings(settings, port)
    if transport == "sse":
        app = server.sse_app(transport_security=security)
    else:
        app = server.streamable_http_app(transport_security=security)
    from omnipost.media.serve import MediaRoute
    from omnipost.rest.app import RestApp, WithRest

    # The signed media URLs (OMNIPOST_PUBLIC_BASE_URL) are fetched anonymously by platforms: served before the API key.
    # /v1 (the REST surface) checks the same keys, limit and Host/Origin itself, on the same runtime.
    mcp = MediaRoute(UnauthenticatedAsJson(app, keys), server)
    return WithRest(mcp, RestApp(server, server.verifier, security), server)


def require_a_key(settings: Settings) -> None:
    """Refuse to serve HTTP when no key could ever be accepted.

    Raises:
        SystemExit: no OMNIPOST_API_KEY and no un-revoked key in the database.
    """
    if not anyio.run(any_key_exists, settings):
        raise SystemExit(NO_KEY_MESSAGE)


def serve_http(server: OmnipostServer | None, settings: Settings, transport: Transport, host: str, port: int) -> None:
    """Run one HTTP transport with uvicorn until interrupted, guarded against stalled and excess connections (httpguard).

    A server built without authentication (plain `build_server(settings)`) is replaced by one built
    by build_http_server(): the SDK's auth is fixed at construction, and building is cheap (no I/O).
    """
    from omnipost import httpguard

    require_a_key(settings)
    keys: LazyKeyService | None = None
    if server is None or server.settings.auth is None:
        clock = server.runtime.clock if server is not None and server.runtime is not None else None
        server, keys = build_http_server(settings, host, port, clock=clock)
    app = build_http_app(server, settings, transport, port, keys)
    path = "/sse" if transport == "sse" else "/mcp"
    logger.info("omnipost %s transport on http://%s:%d%s (REST: /v1, reference: /v1/docs)", transport, host, port, path)
    httpguard.run(app, settings, host, port)
