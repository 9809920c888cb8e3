"""The HTTP guard in process (omnipost.httpguard): header-read timeout, connection cap, accept errors said once.

uvicorn serves a tiny ASGI app on a loopback socket the test binds, so connections queue in the backlog from the
start; `/hold` answers only once the test releases it (a connection busy with a request).
"""

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import uvicorn

from halfopen import PARTIAL, closed, is_open, stalled
from omnipost.httpguard import GuardedH11Protocol, GuardedServer, connection_cap

pytestmark = pytest.mark.anyio

GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HOLD = b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class App:
    """200 "ok" to every request; `/hold` waits for `release` first (`held` is set once `holds` of them wait)."""

    def __init__(self, holds: int = 1) -> None:
        self.holds = holds
        self.held = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]  # ASGI
        if scope["path"] == "/hold":
            self.holds -= 1
            if self.holds == 0:
                self.held.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def guarded(app: App, *, header_timeout: float = 60.0, max_connections: int = 100) -> AsyncIterator[int]:
    """GuardedServer on a loopback port (yielded) until the block ends. Keep-alive outlasts the test."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_config=None, http=GuardedH11Protocol, timeout_keep_alive=600)
    server = GuardedServer(config, header_timeout=header_timeout, max_connections=max_connections)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield port
        finally:
            server.should_exit = server.force_exit = True  # force: no wait for connections a failed test left open


async def request(port: int, raw: bytes = GET) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(raw)
        return await stream.receive()


async def test_a_connection_without_complete_headers_is_closed_after_the_header_timeout() -> None:
    app = App()
    async with guarded(app, header_timeout=0.2) as port:
        silent = socket.create_connection(("127.0.0.1", port))  # connects, sends nothing
        partial = stalled(port)
        async with await anyio.connect_tcp("127.0.0.1", port) as keep_alive:
            await keep_alive.send(GET)
            assert (await keep_alive.receive()).startswith(b"HTTP/1.1 200")
            await keep_alive.send(PARTIAL)  # the next request on the kept-alive connection stalls
            slow_app = await anyio.connect_tcp("127.0.0.1", port)
            await slow_app.send(HOLD)  # complete headers: the app may take longer than the header timeout
            with anyio.fail_after(10):
                silent.setblocking(False)
                await closed(silent)
                await closed(partial)
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await keep_alive.receive()
                app.release.set()
                assert (await slow_app.receive()).startswith(b"HTTP/1.1 200")
            await slow_app.aclose()
        silent.close()
        partial.close()


async def test_at_the_cap_a_new_connection_displaces_the_longest_stalled_one_and_is_served() -> None:
    async with guarded(App(), max_connections=3) as port:
        held = [stalled(port) for _ in range(3)]
        with anyio.fail_after(10):
            assert (await request(port)).startswith(b"HTTP/1.1 200")
            await closed(held[0])
        assert [is_open(s) for s in held[1:]] == [True, True]  # served while the other stalled ones still hold slots
        for s in held:
            s.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_closed_at_once() -> None:
    app = App(holds=2)
    async with guarded(app, max_connections=2) as port:
        busy = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(2)]
        for stream in busy:
            await stream.send(HOLD)
        with anyio.fail_after(10):
            await app.held.wait()  # both connections are in the app: none waits for headers
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await request(port)
            app.release.set()
            for stream in busy:
                assert (await stream.receive()).startswith(b"HTTP/1.1 200")
                await stream.aclose()


async def test_accept_failing_for_want_of_descriptors_is_one_warning_not_a_traceback_per_try(
        caplog: pytest.LogCaptureFixture) -> None:
    resource = pytest.importorskip("resource")
    warned = anyio.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "accept() failed" in record.getMessage():
                warned.set()

    seen = Seen()
    logging.getLogger("omnipost.http").addHandler(seen)
    caplog.set_level(logging.WARNING)
    try:
        async with guarded(App()) as port:
            with anyio.fail_after(10):
                assert (await request(port)).startswith(b"HTTP/1.1 200")  # serving: every import and file is open
            clients = [socket.socket() for _ in range(3)]
            lowest_free = os.dup(0)
            os.close(lowest_free)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor: accept() gets EMFILE
            try:
                for c in clients:
                    c.setblocking(False)
                    c.connect_ex(("127.0.0.1", port))
                with anyio.fail_after(10):
                    await warned.wait()  # asyncio retried accept() up to `backlog` times in that one round
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for c in clients:
                c.close()
            with anyio.fail_after(10):
                assert (await request(port)).startswith(b"HTTP/1.1 200")  # accept() resumes once descriptors are free
    finally:
        logging.getLogger("omnipost.http").removeHandler(seen)
    accept_records = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(accept_records) == 1, [r.getMessage() for r in accept_records[:3]]
    assert accept_records[0].levelno == logging.WARNING and accept_records[0].exc_info is None
    assert "Too many open files" in accept_records[0].getMessage()


def test_the_connection_cap_leaves_descriptors_for_the_rest_of_the_server() -> None:
    resource = pytest.importorskip("resource")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(5) == 5
    assert connection_cap(10 * soft) < soft
