"""`GET|HEAD /media/<id>?expires=&signature=` on the HTTP transports: the file behind a signed URL (media/host.py).

Platforms fetch these URLs anonymously, so the route sits in front of the MCP app and its API-key check; the
signature is the authorisation. A bad signature and an expired one are refused (403) before the database is read,
so an unsigned request learns nothing about which ids exist. The file is streamed from the content-addressed store
(Starlette's FileResponse: ranges, HEAD, Content-Length).
"""

import json
import logging
from typing import Any

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from omnipost.errors import AppError, NotFoundError, UnauthorizedError
from omnipost.media.host import SignatureExpiredError, SignatureInvalidError, SignedUrlHost

logger = logging.getLogger("omnipost.media.serve")

PREFIX = "/media/"


def _refusal(status: int, error: AppError) -> Response:
    body = {"error": error.to_error_object().model_dump(exclude_none=True)}
    return Response(json.dumps(body), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


class MediaRoute:
    """Answers the signed media URLs; every other request goes to `app` (the MCP transport, behind its API key)."""

    def __init__(self, app: ASGIApp, server: Any) -> None:
        self.app = app
        self.server = server  # OmnipostServer: its runtime has the hosting, the database and the store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX) and scope["method"] in ("GET", "HEAD"):
            response = await self.answer(Request(scope))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def answer(self, request: Request) -> Response:
        """The file, or the refusal (403 bad or expired signature, 404 unknown or deleted, 503 not serving media)."""
        runtime = self.server.runtime
        host = getattr(getattr(runtime, "hosting", None), "host", None)
        media_id = request.url.path[len(PREFIX):]
        if runtime is None or runtime.db is None or not isinstance(host, SignedUrlHost):
            return _refusal(503, AppError("This server does not serve media URLs now.",
                                          remediation="Set OMNIPOST_PUBLIC_BASE_URL, or use an S3 media host."))
        try:
            host.verify(media_id, request.query_params.get("expires"), request.query_params.get("signature"))
        except SignatureInvalidError:
            return _refusal(403, UnauthorizedError("The media URL's signature is not valid.", rule="media.url_signature_invalid"))
        except SignatureExpiredError:
            return _refusal(403, UnauthorizedError("The media URL has expired.", rule="media.url_expired",
                                                   remediation="Publish again: a fresh URL is made for each publish."))
        from omnipost.store.models import Media

        async with runtime.db.session() as s:
            media = (await s.exec(select(Media).where(Media.id == media_id, col(Media.deleted_at).is_(None)))).first()
        path = runtime.media_.store.path_for(media.sha256) if media is not None else None
        if media is None or path is None or not path.is_file():
            return _refusal(404, NotFoundError("No such media.", rule="mediaId"))
        return FileResponse(path, media_type=media.mime, headers={"Cache-Control": "private, max-age=60"})
