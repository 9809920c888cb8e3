"""The HTTP transports (SSE, streamable HTTP): API-key check, Host/Origin protection, uvicorn."""

import hmac
import json
import logging
from typing import Literal

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from omnipost.app import OmnipostServer
from omnipost.config import Settings

logger = logging.getLogger("omnipost.http")

Transport = Literal["sse", "streamable-http"]
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


class RequireApiKey:
    """Refuse every HTTP request that lacks `Authorization: Bearer <OMNIPOST_API_KEY>`."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            # compare_digest: the comparison time does not reveal how much of the key matched
            if not hmac.compare_digest(given, self._expected):
                body = json.dumps({"error": {"code": "unauthenticated", "message": "Missing or wrong API key.",
                                             "remediation": "Send Authorization: Bearer <OMNIPOST_API_KEY>.", "retryable": False}}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="omnipost"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def security_settings(settings: Settings, port: int) -> TransportSecuritySettings:
    """Host/Origin allow-lists: loopback on this port, plus what the operator configured."""
    hosts = [f"{h}:{port}" for h in LOOPBACK] + [h for h in LOOPBACK] + settings.allowed_hosts
    origins = [f"http://{h}:{port}" for h in LOOPBACK] + settings.allowed_origins
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def build_http_app(server: OmnipostServer, settings: Settings, transport: Transport, port: int) -> ASGIApp:
    """The ASGI app for one HTTP transport, behind the API-key check.

    Raises:
        SystemExit: no API key is configured (network transports always require one).
    """
    if settings.api_key is None or not settings.api_key.get_secret_value():
        raise SystemExit("omnipost: the HTTP transports require an API key: set OMNIPOST_API_KEY (in the environment or .env).")
    security = security_settings(settings, port)
    if transport == "sse":
        app = server.sse_app(transport_security=security)
    else:
        app = server.streamable_http_app(transport_security=security)
    return RequireApiKey(app, settings.api_key.get_secret_value())


def serve_http(server: OmnipostServer, settings: Settings, transport: Transport, host: str, port: int) -> None:
    """Run one HTTP transport with uvicorn until interrupted."""
    import uvicorn

    app = build_http_app(server, settings, transport, port)
    path = "/sse" if transport == "sse" else "/mcp"
    logger.info("omnipost %s transport on http://%s:%d%s", transport, host, port, path)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), log_config=None)
