"""The HTTP transports under hostile clients: a header-read timeout, a connection cap, accept errors said once.

uvicorn's h11 protocol times out only an idle keep-alive connection, and its `limit_concurrency` answers 503
only once a request's headers are complete. A connection that sends part of its headers and stalls (slowloris)
therefore holds a file descriptor forever; past the open-file limit accept() fails with EMFILE, every
legitimate client waits, and asyncio (3.11) logs a traceback for each of up to `backlog` retries a second.

- `GuardedH11Protocol` closes a connection that has not sent a complete request head within `header_timeout`
  seconds of opening (or of the end of its previous response, on a keep-alive connection).
- At `max_connections` a new connection closes the one that has waited longest for its headers, so a client
  that sends its request at once is served while stalled ones hold every slot; when every connection is busy
  with a request, the new one is closed at once (no read, no parse). The cap is lowered to fit the open-file
  limit, and is also the listen backlog, so a burst of connects cannot exhaust descriptors either.
- `GuardedServer` collapses asyncio's "socket.accept() out of system resource" reports, and the guard's own
  closings, into at most one warning a minute with a count.
"""

import asyncio
import logging
import socket
from typing import Any

import h11
from starlette.types import ASGIApp
from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from omnipost.config import Settings

logger = logging.getLogger("omnipost.http")

# Descriptors kept for everything but client connections: the database, upstream and webhook sockets, media files.
RESERVED_FILES = 128
SUMMARY_INTERVAL = 60.0  # seconds between two warnings of one kind
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


def connection_cap(configured: int) -> int:
    """`configured`, lowered so that the connections held plus one round of accepts (as many again: the listen
    backlog) cannot take the descriptors the rest of the server needs."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    cap = max((soft - RESERVED_FILES) // 2, soft // 4, 1)
    if configured > cap:
        logger.warning("OMNIPOST_HTTP_MAX_CONNECTIONS=%d does not fit the open-file limit (%d); serving at most %d "
                       "connections (raise `ulimit -n` for more)", configured, soft, cap)
        return cap
    return configured


def run(app: ASGIApp, settings: Settings, host: str, port: int) -> None:
    """Serve `app` on host:port with the guard until interrupted.

    The listen backlog is the connection cap: asyncio accepts up to `backlog` connections in one go before any
    of them can be turned away, so it bounds the descriptors a burst takes; past it the kernel holds clients back.

    Raises:
        SystemExit: the server did not start (port taken, app failed), as uvicorn.run.
    """
    cap = connection_cap(settings.http_max_connections)
    config = Config(app, host=host, port=port, log_level=settings.log_level.lower(), log_config=None,
                    http=GuardedH11Protocol, backlog=cap)
    server = GuardedServer(config, header_timeout=settings.http_header_timeout, max_connections=cap)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled gracefully
        pass
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


class Summary:
    """A warning said at most once per SUMMARY_INTERVAL: the first occurrence at once, later ones as a count."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.pending = 0
        self.flush: asyncio.TimerHandle | None = None

    def note(self, detail: str = "") -> None:
        if self.flush is not None:
            self.pending += 1
            return
        logger.warning("%s%s", self.message, f": {detail}" if detail else "")
        self.flush = asyncio.get_running_loop().call_later(SUMMARY_INTERVAL, self._flush)

    def _flush(self) -> None:
        self.flush = None
        if self.pending:
            logger.warning("%s (%d more times in the last %.0f s)", self.message, self.pending, SUMMARY_INTERVAL)
            self.pending = 0
            self.flush = asyncio.get_running_loop().call_later(SUMMARY_INTERVAL, self._flush)


class GuardState(ServerState):
    """uvicorn's shared server state, plus the guard's limits and the connections still waiting for headers."""

    def __init__(self, header_timeout: float, max_connections: int) -> None:
        super().__init__()
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.waiting: dict["GuardedH11Protocol", None] = {}  # insertion order: the longest-waiting first
        self.timed_out = Summary(f"closed a connection that sent no complete request headers within {header_timeout:g} s "
                                 "(OMNIPOST_HTTP_HEADER_TIMEOUT)")
        self.full = Summary(f"{max_connections} HTTP connections open (OMNIPOST_HTTP_MAX_CONNECTIONS): closed the one "
                            "waiting longest for its headers, or the new one when none was waiting")
        self.accept_failed = Summary("accept() failed; new connections wait until descriptors are free")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout and the connection cap (see the module docstring)."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(server_state, GuardState), "serve GuardedH11Protocol with GuardedServer"
        self.guard = server_state
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.guard.max_connections
        super().connection_made(transport)
        if full:
            self.guard.full.note()
            stalled = next(iter(self.guard.waiting), None)
            if stalled is None:
                self._close()
                return
            stalled._close()
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        """Time the request head while h11 waits for one (IDLE); stop once it has arrived."""
        if self.transport.is_closing():
            self._stop_watching()
        elif self.conn.their_state is h11.IDLE:
            if self.header_timer is None:
                self.header_timer = self.loop.call_later(self.guard.header_timeout, self._header_timeout)
                self.guard.waiting[self] = None
        else:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self.guard.waiting.pop(self, None)

    def _header_timeout(self) -> None:
        self.header_timer = None
        self.guard.timed_out.note()
        self._close()

    def _close(self) -> None:
        """Close without a response; the slot is free for the next connection at once."""
        self._stop_watching()
        self.connections.discard(self)
        self.transport.close()


class GuardedServer(Server):
    """uvicorn's Server with GuardState, and asyncio's accept() resource errors collapsed into one warning a minute."""

    def __init__(self, config: Config, *, header_timeout: float, max_connections: int) -> None:
        super().__init__(config)
        self.guard = GuardState(header_timeout, max_connections)
        self.server_state = self.guard

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        await super().startup(sockets)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_OUT_OF_RESOURCES:
            self.guard.accept_failed.note(str(context.get("exception")))
            return
        loop.default_exception_handler(context)
