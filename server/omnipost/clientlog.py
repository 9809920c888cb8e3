"""omnipost's log records as MCP log notifications (`notifications/message`) to the client that asked for them.

stderr logging (logging.py) is unchanged; this is a second, per-request destination:

- Which client: the one whose request is being handled. A record is forwarded only when it is logged by that
  request's own task or a task it started (the publisher's per-target tasks), never by a background loop (the
  scheduler, webhook delivery, recovery), whose records may be about any profile's posts. Records logged from
  worker threads are not forwarded either.
- Which level: on handshake sessions (protocol <= 2025-11-25) the level the client set with `logging/setLevel`
  (nothing until it does); on 2026-07-28 the level the request carries in `_meta` (`io.modelcontextprotocol/logLevel`),
  the protocol's per-request opt-in. Records at or above it go out. While such a request runs, the "omnipost" logger
  is lowered to that level if need be, so a client asking for debug gets debug records even when stderr logs only
  warnings (stderr keeps its own level: logging.configure sets it on the handler).
- What: the record's message, redacted (logging.redact: tokens, passwords, API keys never leave), with the logger
  name; never a traceback.

The notifications ride the request's own stream, before its response.
"""

import logging
import threading
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import EmptyResult, LoggingMessageNotification, LoggingMessageNotificationParams, SetLevelRequestParams

from omnipost.logging import redact

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer

ROOT = "omnipost"
LEVEL_META_KEY = "io.modelcontextprotocol/logLevel"
_STATE_KEY = "omnipost.log_level"  # the connection's logging/setLevel level (handshake sessions)
BUFFER = 256  # records queued for one request before further ones are dropped (the client reads too slowly)

# The MCP (RFC 5424) levels, ascending, with the lowest Python level each one admits.
THRESHOLD: dict[str, int] = {"debug": logging.DEBUG, "info": logging.INFO, "notice": 25, "warning": logging.WARNING,
                             "error": logging.ERROR, "critical": logging.CRITICAL, "alert": 55, "emergency": 60}


def mcp_level(levelno: int) -> str:
    """The MCP level of a Python log level: the highest whose threshold it reaches (below DEBUG: debug)."""
    return next((name for name, at in reversed(THRESHOLD.items()) if levelno >= at), "debug")


@dataclass(eq=False)
class _Sink:
    """Where one request's records go, and whose they are."""

    threshold: int
    task_id: int
    thread: int
    send: MemoryObjectSendStream[tuple[str, str, str]]
    ours: set[int] = field(default_factory=set)
    theirs: set[int] = field(default_factory=set)
    dropped: int = 0

    def owns_current_task(self) -> bool:
        """Whether the running task is the request's, or one it started (directly or not)."""
        try:
            task = anyio.get_current_task()
        except Exception:  # noqa: BLE001 - no task (a callback outside any task): not the request's
            return False
        if task.id == self.task_id or task.id in self.ours:
            return True
        if task.id in self.theirs:
            return False
        parents = {t.id: t.parent_id for t in anyio.get_running_tasks()}
        seen: int | None = task.id
        while seen is not None and seen != self.task_id:
            seen = parents.get(seen)
        (self.ours if seen is not None else self.theirs).add(task.id)
        return seen is not None


_sink: ContextVar[_Sink | None] = ContextVar("omnipost_client_log_sink", default=None)


class ClientLogHandler(logging.Handler):
    """Hands a record to the sink of the request being handled, if that request asked for its level."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink.get()
        if sink is None or record.levelno < sink.threshold or threading.get_ident() != sink.thread:
            return
        if not sink.owns_current_task():
            return
        try:
            message = redact(record.getMessage())
        except Exception:  # noqa: BLE001 - a malformed record is the stderr handler's to report
            return
        try:
            sink.send.send_nowait((mcp_level(record.levelno), record.name, message))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            sink.dropped += 1


class _Lowered:
    """The "omnipost" logger's level while requests that want lower levels run (a count per level)."""

    def __init__(self) -> None:
        self.active: Counter[int] = Counter()
        self.own: int = logging.NOTSET  # the logger's own level when nothing is lowered
        self.baseline: int = logging.NOTSET  # its effective level then: what the other handlers get

    def enter(self, threshold: int) -> bool:
        log = logging.getLogger(ROOT)
        if threshold >= log.getEffectiveLevel() and not self.active:
            return False
        if not self.active:
            self.own, self.baseline = log.level, log.getEffectiveLevel()
        self.active[threshold] += 1
        log.setLevel(min(self.active))
        return True

    def leave(self, threshold: int) -> None:
        self.active[threshold] -= 1
        if self.active[threshold] <= 0:
            del self.active[threshold]
        logging.getLogger(ROOT).setLevel(min(self.active) if self.active else self.own)


class _KeepLevel(logging.Filter):
    """On the root logger's handlers: an omnipost record below the level they had before a client lowered it
    is for that client only (stderr logs what it logged before)."""

    def filter(self, record: logging.LogRecord) -> bool:
        lowered = _LOWERED.active and record.levelno < _LOWERED.baseline
        return not (lowered and (record.name == ROOT or record.name.startswith(ROOT + ".")))


_HANDLER = ClientLogHandler()
_LOWERED = _Lowered()
_KEEP_LEVEL = _KeepLevel()


def install() -> None:
    """Attach the handler to the "omnipost" logger (once per process; it does nothing outside a request), and
    keep the root handlers present now (stderr) at their level. logging.configure also sets its stderr
    handler's own level, so stderr keeps its level whatever is installed in which order."""
    log = logging.getLogger(ROOT)
    if _HANDLER not in log.handlers:
        log.addHandler(_HANDLER)
    for handler in logging.getLogger().handlers:
        if _KEEP_LEVEL not in handler.filters:
            handler.addFilter(_KEEP_LEVEL)


def _connection_state(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any] | None:
    # Connection.state is the SDK's per-connection scratch space; the per-request session proxy holds the connection.
    connection = getattr(ctx.session, "_connection", None)
    state = getattr(connection, "state", None)
    return state if isinstance(state, dict) else None


def requested_level(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The level this request's client asked for: its `_meta` opt-in (2026-07-28), else its setLevel (handshake)."""
    meta = ctx.meta or {}
    level = meta.get(LEVEL_META_KEY) if isinstance(meta, dict) else None
    if level in THRESHOLD:
        return level
    state = _connection_state(ctx)
    return None if state is None else state.get(_STATE_KEY)


async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
    """logging/setLevel: records at or above `level` go to this connection's requests from now on."""
    state = _connection_state(ctx)
    if state is not None:
        state[_STATE_KEY] = params.level
    return EmptyResult()


class ClientLogMiddleware:
    """Server middleware: while a request that asked for logs runs, forward its records as notifications."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None or ctx.method in ("initialize", "logging/setLevel"):
            return await call_next(ctx)
        level = requested_level(ctx)
        if level is None:
            return await call_next(ctx)
        threshold = THRESHOLD[level]
        send, receive = anyio.create_memory_object_stream[tuple[str, str, str]](BUFFER)
        sink = _Sink(threshold=threshold, task_id=anyio.get_current_task().id, thread=threading.get_ident(), send=send)

        async def forward() -> None:
            async with receive:
                async for lvl, name, message in receive:
                    notification = LoggingMessageNotification(
                        params=LoggingMessageNotificationParams(level=lvl, logger=name, data=message))  # type: ignore[arg-type]
                    try:
                        await ctx.session.send_notification(notification, related_request_id=ctx.request_id)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the client is gone; the request's own answer will not arrive either

        lowered = _LOWERED.enter(threshold)
        token = _sink.set(sink)
        failed: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(forward)
                try:
                    result = await call_next(ctx)
                except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group, as it is (an
                    failed = exc          # MCPError must reach the dispatcher itself, not inside an ExceptionGroup)
                finally:
                    _sink.reset(token)
                    send.close()  # forward() sends what is queued, then ends: the records precede the response
        finally:
            if lowered:
                _LOWERED.leave(threshold)
        if failed is not None:
            raise failed
        return result


def register(server: "OmnipostServer") -> None:
    """logging/setLevel (handshake sessions; it advertises the logging capability), and the forwarding middleware."""
    install()
    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    server.middleware.append(ClientLogMiddleware())
