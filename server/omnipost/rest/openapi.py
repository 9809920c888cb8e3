"""The OpenAPI 3.1 document of /v1, built from the operation table (rest/routes.py) and the pydantic models that
parse and render each route, so it cannot drift from the code. It is committed at the repository root as openapi.json
(tests/test_rest_openapi.py fails when it differs); regenerate it with `python -m omnipost.rest.openapi`
(`--check` only compares)."""

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from omnipost import __version__
from omnipost.errors import ErrorObject
from omnipost.rest.routes import OPS, UPDATE_MODEL, Op, UpdateBody, UploadArgs

REF = "#/components/schemas/{model}"
ROOT_FILE = Path(__file__).resolve().parents[3] / "openapi.json"

DESCRIPTIONS = {
    200: "OK.", 201: "Created.",
    400: "validation_failed: the request's shape or a field value is wrong; rule is the JSON path.",
    401: "unauthenticated: missing, malformed or revoked API key.",
    403: "unauthorized: the key may not do this (e.g. profile.scope_mismatch), or a disallowed Origin.",
    404: "not_found: no such resource within the key's reach (never says which).",
    409: "idempotency_conflict: the Idempotency-Key was used with another body, or its first request is still running.",
    422: "preflight_failed: a platform rule failed before any upstream call (every violation in details).",
    429: "rate_limited: this key's per-minute limit; Retry-After says when to come back.",
    500: "internal_error: a bug in omnipost; quote the requestId.",
    502: "platform_rejected / platform_auth_failed: the platform refused.",
    503: "platform_unavailable: the platform is down or throttling; retryable.",
    504: "platform_outcome_unknown: sent, no definite answer; reconciled, never resent blind.",
}
ERROR_EXAMPLES = {
    400: {"code": "validation_failed", "message": "targets[0].accountId: Field required", "rule": "targets[0].accountId",
          "path": "targets[0].accountId", "remediation": "Fix targets[0].accountId: Field required.", "retryable": False,
          "requestId": "req_0123456789abcdef"},
    422: {"code": "preflight_failed", "message": "1 preflight rule failed; nothing was published.",
          "rule": "bluesky.text.max_graphemes", "remediation": "Shorten the text by 17 graphemes for Bluesky.",
          "retryable": False, "requestId": "req_0123456789abcdef"},
    429: {"code": "rate_limited", "message": "This API key is limited to 120 tool calls a minute.", "rule": "rate_limit.per_key",
          "retryable": True, "retryAfter": 0.5, "requestId": "req_0123456789abcdef"},
}


class ErrorResponse(BaseModel):
    """Every non-2xx answer: the PRODUCT §3 error object."""

    error: ErrorObject


def _models() -> list[tuple[type[BaseModel], Any]]:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorResponse, "serialization")]
    for op in OPS:
        models.append((op.answer, "serialization"))
        if op.body is not None:
            models.append((UPDATE_MODEL if op.body is UpdateBody else op.body, "validation"))
        if op.query is not None:
            models.append((op.query, "validation"))
        if op.upload:
            models.append((UploadArgs, "validation"))
    seen: set[Any] = set()
    return [m for m in models if not (m in seen or seen.add(m))]  # type: ignore[func-returns-value]  # order-keeping dedupe


def _parameters(op: Op, query_schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _path_names(op.path):
        params.append({"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]+$"},
                       "description": {"id": "post_… or bat_… id.", "campaign": "The campaign's name.",
                                       "ruleId": "A rule id such as bluesky.text.max_graphemes."}.get(name, "")})
    if query_schema is not None:
        required = set(query_schema.get("required", []))
        for name, schema in query_schema.get("properties", {}).items():
            schema = dict(schema)
            description = schema.pop("description", "")
            schema.pop("title", None)
            schema.pop("default", None)
            params.append({"name": name, "in": "query", "required": name in required, "schema": _simplify(schema),
                           "description": description})
    if op.idempotent_key:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 128},
                       "description": "Same key + same body within 24 h: the first answer, replayed; the write is done once. "
                                      "Shared with the MCP tools' idempotencyKey."})
    return params


def _simplify(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: `X | None` (anyOf with null) as X (an absent parameter is the null)."""
    options = schema.get("anyOf")
    if options is not None:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return schema


def _path_names(path: str) -> list[str]:
    import re

    return re.findall(r"\{(\w+)\}", path)


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    keyed, defs = models_json_schema(_models(), ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    update = dict(schemas[UPDATE_MODEL.__name__])  # the path names the post: the body has no id
    update["properties"] = {k: v for k, v in update["properties"].items() if k != "id"}
    update["required"] = [r for r in update.get("required", []) if r != "id"]
    schemas["UpdateBody"] = update

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        if model is UpdateBody:
            return {"$ref": REF.format(model="UpdateBody")}
        return keyed[(model, mode)]

    def inline(model: type[BaseModel]) -> dict[str, Any]:
        found = ref(model, "validation")
        return schemas[found["$ref"].rsplit("/", 1)[-1]] if "$ref" in found else found

    error_ref = ref(ErrorResponse, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        responses: dict[str, Any] = {}
        success = {"description": DESCRIPTIONS[op.status], "content": {"application/json": {"schema": ref(op.answer, "serialization")}}}
        if op.answer_example is not None:
            success["content"]["application/json"]["example"] = op.answer_example
        if op.links:
            success["links"] = op.links
        responses[str(op.status)] = success
        if op.status == 201:
            responses["200"] = {"description": "A replay of the first answer (same Idempotency-Key and body), or a dry run.",
                                "content": {"application/json": {"schema": ref(op.answer, "serialization")}}}
        for status in sorted({*op.errors, 500}):
            content: dict[str, Any] = {"schema": error_ref}
            if status in ERROR_EXAMPLES:
                content["example"] = {"error": ERROR_EXAMPLES[status]}
            response: dict[str, Any] = {"description": DESCRIPTIONS[status], "content": {"application/json": content}}
            if status == 429:
                response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 1}}}
            if status == 401:
                response["headers"] = {"WWW-Authenticate": {"description": "Bearer.", "schema": {"type": "string"}}}
            responses[str(status)] = response
        entry: dict[str, Any] = {"operationId": op.id, "summary": op.summary, "tags": [op.tag],
                                 "parameters": _parameters(op, inline(op.query) if op.query is not None else None),
                                 "responses": responses}
        if op.description:
            entry["description"] = op.description
        if op.body is not None:
            body: dict[str, Any] = {"schema": ref(op.body, "validation")}
            if op.example is not None:
                body["example"] = op.example
            entry["requestBody"] = {"required": True, "content": {"application/json": body}}
        if op.upload:
            binary = {"type": "string", "format": "binary"}
            entry["requestBody"] = {"required": True, "content": {
                "application/octet-stream": {"schema": binary},
                "image/*": {"schema": binary},
                "video/*": {"schema": binary},
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": binary}}},
                "application/json": {"schema": ref(UploadArgs, "validation")},
            }}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    for query in {op.query for op in OPS if op.query is not None}:  # inlined as parameters; not needed as components
        name = ref(query, "validation").get("$ref", "").rsplit("/", 1)[-1]
        if name and not any(name in json.dumps(s) for k, s in schemas.items() if k != name):
            schemas.pop(name, None)
    return {
        "openapi": "3.1.0",
        "info": {"title": "omnipost REST API", "version": __version__,
                 "description": ("The omnipost engine over HTTP: the same services, API keys, rate limit, idempotency and "
                                 "errors as the MCP tools. Every non-2xx answer is {\"error\": {code, message, rule, "
                                 "remediation, ...}}.")},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in OPS)],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())),
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                          "description": "An omnipost API key (op_live_… or op_test_…)."}}},
    }


def document_bytes() -> bytes:
    """The document as committed: indented, sorted keys are not used (the table's order is the reading order)."""
    return (json.dumps(document(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    """Write openapi.json at the repository root, or (--check) say whether it is current."""
    args = sys.argv[1:] if argv is None else argv
    fresh = document_bytes()
    current = ROOT_FILE.read_bytes() if ROOT_FILE.exists() else b""
    if "--check" in args:
        if current != fresh:
            print("openapi.json is out of date: run python -m omnipost.rest.openapi", file=sys.stderr)
            return 1
        return 0
    if current != fresh:
        ROOT_FILE.write_bytes(fresh)
        print(f"wrote {ROOT_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
