"""A loopback reverse proxy that adds `Authorization: Bearer <key>`: how the MCP conformance suite reaches omnipost.

    AUTHPROXY_BEARER=<key> python tests/conformance/authproxy.py http://127.0.0.1:<omnipost port>

The suite (@modelcontextprotocol/conformance) cannot send an API key, and omnipost's HTTP transports refuse
every request without one. Rather than a key-less server mode (production code that could be switched on by
mistake), the test puts this shim in front of an unmodified `omnipost serve --transport streamable-http`: the
server's real bearer-key authentication, Host/Origin checks and connection guard all stay on the path.

It binds 127.0.0.1 on a free port and prints that port as the first line of stdout. Every request is forwarded
as it came (method, path, query, body, and every header including Host, so DNS-rebinding checks see the
client's Host), plus the Authorization header when the request has none. Responses are streamed back chunk by
chunk (SSE streams stay open as long as the server keeps them). Logs go to stderr. Stdlib, uvicorn and httpx2:
what omnipost already depends on.
"""

import os
import socket
import sys

import anyio
import httpx2
import uvicorn
from starlette.types import Message, Receive, Scope, Send

HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
              b"proxy-authorization", b"proxy-authenticate"}


class AuthProxy:
    """ASGI app: forward to `upstream` with a bearer key added."""

    def __init__(self, upstream: str, key: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.authorization = f"Bearer {key}".encode()
        self.client: httpx2.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # No timeouts: a GET stream (server-to-client SSE) stays open until either side closes it.
                self.client = httpx2.AsyncClient(timeout=None, trust_env=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.client is not None
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP and k.lower() != b"content-length"]
        if not any(k.lower() == b"authorization" for k, _ in headers):
            headers.append((b"authorization", self.authorization))
        url = self.upstream + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        async with anyio.create_task_group() as tg:

            async def cancel_on_disconnect() -> None:
                message: Message = await receive()
                while message["type"] != "http.disconnect":
                    message = await receive()
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_on_disconnect)
            try:
                response = await self.client.send(request, stream=True)
            except httpx2.HTTPError as exc:
                print(f"authproxy: upstream error: {exc!r}", file=sys.stderr, flush=True)
                await send({"type": "http.response.start", "status": 502, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                tg.cancel_scope.cancel()
                return
            try:
                out = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
                await send({"type": "http.response.start", "status": response.status_code, "headers": out})
                async for chunk in response.aiter_raw():  # raw: any content-encoding passes through untouched
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except httpx2.HTTPError as exc:  # the server closed a stream mid-way: end ours too
                print(f"authproxy: upstream stream ended: {exc!r}", file=sys.stderr, flush=True)
            finally:
                await response.aclose()
            tg.cancel_scope.cancel()


def main() -> None:
    upstream = sys.argv[1]
    key = os.environ["AUTHPROXY_BEARER"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # loopback only
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(AuthProxy(upstream, key), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
