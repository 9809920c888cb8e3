"""The /v1 ASGI app: Host/Origin checks, the bearer API key, the per-key rate limit, then one services call per route.

Every answer that is not 2xx is `{"error": <the PRODUCT §3 object>}` with the status its code fits (STATUS), including
an unknown route (404), a wrong method (405), a malformed body (400) and our own bugs (500, a request id and nothing
else): never an HTML page or a framework's default body.
"""

import json
import logging
import math
import re
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from omnipost.auth import caller_of
from omnipost.errors import AppError, ErrorObject, RateLimitedError, UnauthenticatedError, UnauthorizedError, ValidationFailedError
from omnipost.rest.routes import OPS, UPDATE_MODEL, Call, Op, UpdateBody
from omnipost.surrogates import refuse_lone_surrogates

logger = logging.getLogger("omnipost.rest")

PREFIX = "/v1"
MAX_BODY = 4 * 1024 * 1024  # as the MCP transport's max_request_body_size

# The HTTP status of each public error code (PRODUCT §3).
STATUS = {
    "validation_failed": 400,
    "unauthenticated": 401,
    "unauthorized": 403,
    "not_found": 404,
    "idempotency_conflict": 409,
    "preflight_failed": 422,
    "connect_failed": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "platform_auth_failed": 502,
    "platform_forbidden": 502,
    "platform_duplicate": 502,
    "platform_rejected": 502,
    "platform_unavailable": 503,
    "platform_outcome_unknown": 504,
}


def error_response(error: ErrorObject, status: int | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The §3 object as an HTTP answer, with the status its code fits."""
    status = status or STATUS.get(error.code, 500)
    headers = dict(headers or {})
    if error.retryAfter is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retryAfter)))
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    return JSONResponse({"error": error.model_dump(exclude_none=True)}, status_code=status, headers=headers)


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")


_ROUTES = [(_compile(op.path), op) for op in OPS]


class RestApp:
    """The /v1 routes of one server (`server`: app.OmnipostServer, its runtime's services)."""

    def __init__(self, server: Any, verifier: Any, security: Any = None) -> None:
        from mcp.server.transport_security import TransportSecurityMiddleware

        self.server = server
        self.verifier = verifier  # keys.OmnipostTokenVerifier: the same keys as /mcp
        self.security = TransportSecurityMiddleware(security) if security is not None else None
        self._document: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from omnipost.app import new_request_id

        request = Request(scope, receive)
        request_id = new_request_id()
        try:
            response = await self._answer(request, request_id)
        except AppError as exc:
            response = error_response(exc.to_error_object(request_id))
        except Exception:  # noqa: BLE001 - the REST boundary, as call_tool's: logged once, answered with a ref only
            logger.exception("internal error %s in %s %s", request_id, request.method, request.url.path)
            response = error_response(ErrorObject(code="internal_error", message=f"Internal error (ref {request_id}).",
                                                  remediation="This is a bug in omnipost; retrying will not help. Report the ref.",
                                                  requestId=request_id))
        await response(scope, receive, send)

    async def _answer(self, request: Request, request_id: str) -> Response:
        if self.security is not None and (refused := await self.security.validate_request(request, is_post=False)) is not None:
            which = "host" if refused.status_code == 421 else "origin"
            error = UnauthorizedError(f"The request's {which.title()} header is not allowed here.", rule=f"transport.{which}",
                                      remediation="Call from an allowed host or origin (OMNIPOST_ALLOWED_HOSTS / _ORIGINS).")
            return error_response(error.to_error_object(request_id), status=refused.status_code)
        path = request.url.path
        if path in ("/v1/openapi.json", "/v1/docs") and request.method in ("GET", "HEAD"):
            return self._docs(path)
        allowed: list[str] = []
        for pattern, op in _ROUTES:
            if (m := pattern.match(path)) is None:
                continue
            if op.method != request.method:
                allowed.append(op.method)
                continue
            return await self._run(op, request, m.groupdict(), request_id)
        if allowed:
            return error_response(ErrorObject(code="validation_failed", message=f"{request.method} is not allowed on this path.",
                                              rule="method", remediation=f"Use {', '.join(allowed)}.", requestId=request_id),
                                  status=405, headers={"Allow": ", ".join(allowed)})
        return error_response(ErrorObject(code="not_found", message="There is no such route.", rule="path",
                                          remediation="GET /v1/openapi.json lists every route.", requestId=request_id))

    async def _run(self, op: Op, request: Request, path: dict[str, str], request_id: str) -> Response:
        caller = await self._caller(request)
        services = self.server.runtime.services
        try:
            services.admit(caller)
        except RateLimitedError as exc:
            return error_response(exc.to_error_object(request_id))
        call = Call(caller=caller, path=path, services=services)
        if (refused := refuse_lone_surrogates(path, request_id)) is not None:
            return error_response(refused)
        if op.idempotent_key:
            call.key = request.headers.get("idempotency-key")
            if call.key is not None and not 1 <= len(call.key) <= 128:
                raise ValidationFailedError("The Idempotency-Key header must be 1 to 128 characters.", path="Idempotency-Key",
                                            remediation="Send a shorter key (a UUID is fine).")
        try:
            if op.query is not None:
                query = dict(request.query_params)
                if (refused := refuse_lone_surrogates(query, request_id)) is not None:
                    return error_response(refused)
                call.query = op.query.model_validate(query)
            if op.upload:
                await self._upload_body(request, call, request_id)
            elif op.body is not None:
                raw = await self._json(request)
                if (refused := refuse_lone_surrogates(raw, request_id)) is not None:
                    return error_response(refused)
                if op.body is UpdateBody:
                    if not isinstance(raw, dict):
                        raise ValidationFailedError("The body must be a JSON object.", path="$")
                    call.body = UPDATE_MODEL.model_validate({**raw, "id": path["id"]})
                else:
                    call.body = op.body.model_validate(raw)
        except ValidationError as exc:
            from omnipost.app import validation_error

            return error_response(validation_error(exc, request_id))
        if call.key is not None and getattr(call.body, "idempotencyKey", None) not in (None, call.key):
            raise ValidationFailedError("idempotencyKey in the body differs from the Idempotency-Key header.", path="idempotencyKey",
                                        remediation="Send the key once, in the Idempotency-Key header.")
        answer = await op.handler(call)
        status = op.status
        if op.status == 201 and (getattr(answer, "replay", False) or getattr(answer, "mode", None) == "dry_run"):
            status = 200  # nothing new was created
        return JSONResponse(answer.model_dump(mode="json", by_alias=True), status_code=status)

    async def _upload_body(self, request: Request, call: Call, request_id: str) -> None:
        """An upload's body: JSON arguments (validated as UploadArgs), the `file` part of a multipart form, or the raw
        bytes; the bytes are handed on as a stream, never read into memory whole.

        Raises:
            ValidationFailedError, ValidationError: a malformed body.
        """
        from omnipost.rest.routes import UploadArgs

        kind = request.headers.get("content-type", "application/octet-stream").split(";", 1)[0].strip().lower()
        if kind == "application/json":
            raw = await self._json(request)
            if (refused := refuse_lone_surrogates(raw, request_id)) is not None:
                raise ValidationFailedError(refused.message, path=refused.rule or "$", remediation=refused.remediation)
            call.body = UploadArgs.model_validate(raw)
            return
        if kind == "multipart/form-data":
            from starlette.datastructures import UploadFile

            try:  # the form parser spools each file part to a temporary file (1 MiB in memory at most)
                form = await request.form(max_files=1, max_fields=8)
            except Exception as exc:  # noqa: BLE001 - python-multipart's and starlette's parse errors: a malformed body
                raise ValidationFailedError("The multipart body could not be read.", path="file",
                                            remediation="Send multipart/form-data with the file in a part named file.") from exc
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise ValidationFailedError("The form has no file part named file.", path="file",
                                            remediation="Send the file in a part named file.")

            async def parts() -> Any:
                try:
                    while chunk := await part.read(1024 * 1024):
                        yield chunk
                finally:
                    await form.close()

            call.stream = parts()
            call.stream_length = str(part.size) if part.size is not None else None
            if call.query is not None and call.query.filename is None and part.filename:
                call.query = call.query.model_copy(update={"filename": part.filename[-255:].rsplit("/", 1)[-1] or None})
            return
        call.stream = request.stream()
        call.stream_length = request.headers.get("content-length")

    async def _caller(self, request: Request) -> Any:
        header = request.headers.get("authorization")
        if header is None:
            raise UnauthenticatedError("An API key is required.",
                                       remediation="Send Authorization: Bearer <key> (create one with omnipost keys create).")
        scheme, _, token = header.partition(" ")
        access = await self.verifier.verify_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if access is None:
            raise UnauthenticatedError("The API key is not valid: it is unknown, malformed or revoked.",
                                       remediation="Send Authorization: Bearer <key> with a current key (omnipost keys list).")
        return caller_of(access)

    @staticmethod
    async def _json(request: Request) -> Any:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise ValidationFailedError(f"The body is over {MAX_BODY} bytes.", path="$",
                                            remediation="Send media through POST /v1/media, then name it by mediaId.")
        try:
            return json.loads(body) if body else {}
        except (ValueError, RecursionError):
            raise ValidationFailedError("The body is not valid JSON.", path="$",
                                        remediation="Send a JSON object with Content-Type: application/json.") from None

    def _docs(self, path: str) -> Response:
        from omnipost.rest.openapi import document_bytes

        if self._document is None:
            self._document = document_bytes()
        if path.endswith(".json"):
            return Response(self._document, media_type="application/json")
        from omnipost.rest.reference import render

        return HTMLResponse(render(json.loads(self._document)))


class WithRest:
    """Route /v1 to the REST app and everything else to `inner` (the MCP transport), in one ASGI app.

    The REST routes need the server's runtime open whichever MCP transport runs (SSE opens it per connection only):
    at start-up this app enters the runtime's lifespan as one more user and leaves it before shutdown completes.
    """

    def __init__(self, inner: ASGIApp, rest: RestApp, server: Any) -> None:
        self.inner = inner
        self.rest = rest
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/")):
            await self.rest(scope, receive, send)
            return
        if scope["type"] != "lifespan" or self.server.runtime is None:
            await self.inner(scope, receive, send)
            return
        from contextlib import AsyncExitStack

        stack = AsyncExitStack()
        await stack.enter_async_context(self.server.runtime.lifespan(self.server))

        async def closing(message: Any) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await stack.aclose()
            await send(message)

        try:
            await self.inner(scope, receive, closing)
        finally:
            await stack.aclose()

