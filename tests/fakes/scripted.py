"""Scripted answers in front of a fake upstream: what a real platform says that the fake itself never does.

`Scripted(app)` passes every request to `app`, except the next ones a script line matches (method, and a regular
expression searched in the path): those get the line's answer, either instead of the app (`after=False`: nothing happens upstream) or
after the app has acted (`after=True`: the write takes effect and its answer is replaced, e.g. a 502 from a
gateway in front of a platform that did store the post).
"""

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class _Line:
    method: str
    path: str
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=lambda: {})
    after: bool = False
    skip: int = 0  # matching requests to let through before this line answers


class Scripted:
    """An ASGI app: `app`, with scripted answers for the next matching requests (each line answers once)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.script: list[_Line] = []
        self.answered: list[tuple[str, str, int]] = []  # (method, path, status) of each scripted answer given
        self.seen: list[tuple[str, str]] = []  # (method, path) of every HTTP request, scripted or not

    def next(self, method: str, path: str, status: int, body: Any, *, headers: dict[str, str] | None = None,
             after: bool = False, skip: int = 0) -> None:
        """The next `method` request whose path matches `path` (re.search) is answered `status` `body`; with `skip`,
        the one after `skip` matching requests went through (e.g. skip=1: the second write fails)."""
        self.script.append(_Line(method, path, status, body, dict(headers or {}), after, skip))

    def _take(self, scope: Scope) -> _Line | None:
        for i, line in enumerate(self.script):
            if scope["method"] == line.method and re.search(line.path, scope["path"]):
                if line.skip:
                    line.skip -= 1
                    return None
                return self.script.pop(i)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        line = self._take(scope) if scope["type"] == "http" else None
        if line is None:
            await self.app(scope, receive, send)
            return
        if line.after:
            async def discard(message: Message) -> None:
                pass

            await self.app(scope, receive, discard)
        self.answered.append((line.method, scope["path"], line.status))
        await JSONResponse(line.body, status_code=line.status, headers=line.headers)(scope, receive, send)
