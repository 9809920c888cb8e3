"""A webhook receiver for tests: verifies Standard Webhooks signatures on its own (not with omnipost's
code), refuses stale timestamps, records what it accepted, and can be told to fail the next N."""

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from omnipost.clock import Clock

TOLERANCE = 5 * 60  # seconds of clock skew accepted, as the Standard Webhooks libraries do


@dataclass
class Received:
    """One request the sink saw."""

    id: str
    timestamp: int
    host: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the sink answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookSink:
    """State + the Starlette app. `accepted` holds verified deliveries; `seen` every request."""

    clock: Clock
    secret: str = ""  # set once the endpoint is created (the secret is shown then)
    accepted: list[Received] = field(default_factory=lambda: [])
    seen: list[Received] = field(default_factory=lambda: [])
    _fail: list[int] = field(default_factory=lambda: [])

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` valid deliveries with `status`."""
        self._fail.extend([status] * n)

    def verify(self, msg_id: str, timestamp: str, signature: str, body: bytes) -> str | None:
        """Why the request is not authentic, or None."""
        try:
            ts = int(timestamp)
        except ValueError:
            return "bad timestamp"
        if abs(int(self.clock.now().timestamp()) - ts) > TOLERANCE:
            return "stale timestamp"
        key = base64.b64decode(self.secret.split("_", 1)[1])
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        for part in signature.split(" "):
            version, _, sig = part.partition(",")
            if version == "v1" and hmac.compare_digest(sig, expected):
                return None
        return "bad signature"

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        h = request.headers
        msg_id, ts, sig = h.get("webhook-id", ""), h.get("webhook-timestamp", ""), h.get("webhook-signature", "")
        problem = self.verify(msg_id, ts, sig, body) if msg_id and ts and sig else "missing headers"
        status = 400 if problem else (self._fail.pop(0) if self._fail else 204)
        record = Received(id=msg_id, timestamp=int(ts) if ts.isdigit() else 0, host=h.get("host", ""), path=request.url.path,
                          headers=dict(h), body=body, status=status)
        self.seen.append(record)
        if problem:
            return JSONResponse({"error": problem}, status_code=400)
        if status < 300:
            self.accepted.append(record)
        return Response(status_code=status)

    def app(self) -> Starlette:
        """The ASGI app (mount it with httpx2.ASGITransport)."""
        return Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])
