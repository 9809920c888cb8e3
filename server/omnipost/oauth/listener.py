"""The loopback redirect listener: 127.0.0.1 only, up while a connect waits for the user.

It answers GET /callback?state=…&code=… (or ?error=…) by completing that connect at once, and shows a plain page:
"connected, you can close this tab", or what went wrong (the error's message and remediation, never a traceback
or a secret). Anything else gets a 404 page. One request per connection; the request head is bounded in size and
time, so a stray client cannot hold it.
"""

import html
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc

from omnipost.errors import AppError

logger = logging.getLogger("omnipost.oauth.listener")

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0

Complete = Callable[[str, str | None, str | None], Awaitable[str]]  # (state, code, error) -> what was connected


def page(title: str, body: str, status: int) -> bytes:
    text = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(body)}</p></body></html>").encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(text)}\r\n"
            "Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n").encode()
    return head + text


async def _read_head(stream: anyio.abc.ByteStream) -> bytes | None:
    data = b""
    with anyio.move_on_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
            try:
                chunk = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return None
            data += chunk
        return data
    return None


async def answer(target: str, complete: Complete, path: str) -> bytes:
    """The page for one request target (`/callback?…`)."""
    parts = urlsplit(target)
    if parts.path != path:
        return page("Not found", "This address only receives the sign-in redirect of omnipost's connect.", 404)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    state = query.get("state")
    if not state:
        return page("Not connected", "The sign-in came back without its state; start the connect again.", 400)
    try:
        who = await complete(state, query.get("code"), query.get("error"))
    except AppError as exc:
        return page("Not connected", exc.message + (" " + exc.remediation if exc.remediation else ""), 400)
    except Exception:  # noqa: BLE001 - a browser is the caller: a plain page, the traceback only in our log
        logger.exception("completing a connect from the redirect failed")
        return page("Not connected", "omnipost failed to finish the connect; see its log, then start the connect again.", 400)
    return page("Connected", f"{who} is connected to omnipost. You can close this tab.", 200)


async def serve(listener: anyio.abc.Listener[anyio.abc.SocketStream], complete: Complete, *, path: str = "/callback",
                served: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Answer redirects on `listener` until `served()` says to stop (checked after each request) or cancelled."""
    async with anyio.create_task_group() as tg:
        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                head = await _read_head(stream)
                if head is None:
                    return
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, _, rest = line.partition(" ")
                target = rest.rsplit(" ", 1)[0] if " " in rest else rest
                body = await answer(target, complete, path) if method == "GET" else page("Not found", "GET only.", 404)
                try:
                    await stream.send(body)
                except (anyio.BrokenResourceError, OSError):
                    return
            if served is not None and await served():
                tg.cancel_scope.cancel()

        await listener.serve(handle, task_group=tg)


async def open_listener(port: int) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    """Bind 127.0.0.1:port (never another interface). Raises OSError when the port is taken."""
    return await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
