"""The platforms' published specs as the fakes' referee (reference-data/platform-specs/README.md).

- `OpenAPI`: an OpenAPI 3.0 or 3.1 document (X API v2, Pinterest v5; Mastodon 3.1). `check_request` refuses a
  request the operation does not allow: an unknown or ill-typed query parameter, a required one missing, an
  ill-typed path parameter, and, when the caller passes them, a missing or ill-typed header parameter, a body the
  operation's `requestBody` schema refuses (or one it does not take in that content type, or none when it is
  required), and missing credentials or scopes its `security` requires. `check_response` validates the fake's own
  answer against the operation's response schema for its status (or `NXX`, `default`), so a fake cannot drift from
  the spec. Schemas are checked with jsonschema: draft 4 for 3.0 (`nullable` turned into a null type), draft 2020-12
  for 3.1.
- `GraphNodes`: Meta's Graph API node specs (facebook-business-sdk-codegen `api_specs/specs/<Node>.json`): each
  node's fields with their types, each edge's parameters. `check_fields` checks a `fields=` selector (nested
  `a{b,c}` included) against a node, `check_params` an edge call's parameters, `check_object` an answer's object.

A violation raises `SpecViolation` inside the fake, which the ASGI transport re-raises in the test: it fails loudly,
it is never answered as if the platform had said it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft4Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

import refdata

SPECS = refdata.path("platform-specs")
_DOC = "urn:omnipost:openapi"
ABSENT: Any = object()  # check_request's `body` when the caller does not check bodies
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


class SpecViolation(AssertionError):
    """A request the platform's spec does not allow, or a fake answer its spec does not describe."""


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema: the type also admits null."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items()}  # pyright: ignore[reportUnknownVariableType]
        if out.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out  # pyright: ignore[reportUnknownVariableType]
    if isinstance(node, list):
        return [_nullable(v) for v in node]  # pyright: ignore[reportUnknownVariableType]
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class OpenAPI:
    """One OpenAPI document; paths are matched below `base` (the server URL's path, e.g. "/v5").

    `errata`: parameter name → the schema to check it with instead of the document's, for a parameter the document
    types wrongly (say why where the fake is built)."""

    def __init__(self, filename: str, *, base: str = "", errata: dict[str, dict[str, Any]] | None = None) -> None:
        raw = json.loads((SPECS / filename).read_text(encoding="utf-8"))
        self.v31 = str(raw.get("openapi", "")).startswith("3.1")
        self.doc: dict[str, Any] = raw if self.v31 else _nullable(raw)
        self.base = base
        self.errata = dict(errata or {})
        self._validator = Draft202012Validator if self.v31 else Draft4Validator
        # Schemas are validated in place, by a JSON pointer into the whole document, so #/components refs resolve.
        self._registry: Registry[Any] = Registry().with_resource(
            _DOC, Resource(contents=self.doc, specification=DRAFT202012 if self.v31 else DRAFT4))
        self._paths = [(re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(p)) + "$"), p) for p in self.doc["paths"]]

    def _at(self, pointer: str) -> Any:
        target: Any = self.doc
        for part in pointer.removeprefix("#/").split("/") if pointer != "#" else []:
            key = part.replace("~1", "/").replace("~0", "~")
            target = target[int(key)] if isinstance(target, list) else target[key]
        return target

    def _deref(self, pointer: str) -> tuple[dict[str, Any], str]:
        """The object at `pointer`, following `$ref`s; with the pointer where it really is."""
        node = self._at(pointer)
        while isinstance(node, dict) and "$ref" in node:
            pointer = str(node["$ref"])  # pyright: ignore[reportUnknownArgumentType]
            node = self._at(pointer)
        return node, pointer  # pyright: ignore[reportUnknownVariableType]

    def operation(self, method: str, path: str) -> tuple[str, str]:
        """The template and the operation's pointer that serve `method path` (the full request path)."""
        if not path.startswith(self.base):
            raise SpecViolation(f"{path} is not below the API's base {self.base}")
        rest = path[len(self.base):]
        for pattern, template in self._paths:
            if pattern.match(rest) and method.lower() in self.doc["paths"][template]:
                return template, f"#/paths/{_escape(template)}/{method.lower()}"
        raise SpecViolation(f"{method} {path}: no such operation in the spec")

    def _validate(self, pointer: str, value: Any, where: str) -> None:
        self._validate_schema({"$ref": _DOC + pointer}, value, where)

    def _validate_schema(self, schema: dict[str, Any], value: Any, where: str) -> None:
        validator = self._validator(schema, registry=self._registry)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            raise SpecViolation(f"{where}: " + "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]))

    def _params(self, template: str, op: str, where: str) -> dict[str, tuple[dict[str, Any], str]]:
        """The operation's parameters that sit `where` (query, path, header), by name (headers lower-cased)."""
        pointers = [f"#/paths/{_escape(template)}/parameters/{i}" for i in range(len(self.doc["paths"][template].get("parameters", [])))]
        pointers += [f"{op}/parameters/{i}" for i in range(len(self._at(op).get("parameters", [])))]
        known: dict[str, tuple[dict[str, Any], str]] = {}
        for pointer in pointers:
            param, at = self._deref(pointer)
            if param.get("in") == where:
                known[param["name"].lower() if where == "header" else param["name"]] = (param, at)
        return known

    def _check_value(self, param: dict[str, Any], at: str, raw: str, where: str) -> None:
        if param["name"] in self.errata:
            self._validate_schema(self.errata[param["name"]], raw, where)
            return
        schema, schema_at = self._deref(f"{at}/schema")
        value: Any = raw.split(",") if schema.get("type") == "array" else _scalar(raw, schema.get("type"))
        self._validate(schema_at, value, where)

    def check_request(self, method: str, path: str, query: dict[str, list[str]], *, headers: Mapping[str, str] | None = None,
                      body: Any = ABSENT, content_type: str | None = None, auth: tuple[str, Collection[str]] | None | bool = False) -> None:
        """Refuse what the operation does not take (see the module docstring).

        `headers`: the request's headers (checked when given: required header parameters, their types); `body`: the
        parsed body (a JSON value, or a form as an object of strings; checked when given, None meaning no body) sent as
        `content_type`; `auth`: the credentials presented, as (security scheme type: "oauth2" | "http", the token's
        scopes), or None for none (checked unless left False)."""
        template, op = self.operation(method, path)
        known = self._params(template, op, "query")
        for name, values in query.items():
            if name not in known:
                raise SpecViolation(f"{method} {path}: query parameter {name!r} is not in the spec")
            param, where = known[name]
            for raw in values:
                self._check_value(param, where, raw, f"{method} {path} ?{name}")
        for name, (param, _) in known.items():
            if param.get("required") and name not in query:
                raise SpecViolation(f"{method} {path}: required query parameter {name!r} missing")
        names = re.findall(r"\{([^/]+?)\}", template)
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(template)) + "$")
        if (match := pattern.match(path[len(self.base):])) is not None:
            values = dict(zip(names, match.groups()))
            for name, (param, where) in self._params(template, op, "path").items():
                if name in values:
                    self._check_value(param, where, unquote(values[name]), f"{method} {path} path {{{name}}}")
        if headers is not None:
            lowered = {k.lower(): v for k, v in headers.items()}
            for name, (param, where) in self._params(template, op, "header").items():
                if name in lowered:
                    self._check_value(param, where, lowered[name], f"{method} {path} header {param['name']}")
                elif param.get("required"):
                    raise SpecViolation(f"{method} {path}: required header {param['name']!r} missing")
        if body is not ABSENT:
            self._check_body(method, path, op, body, content_type)
        if auth is not False:
            self._check_security(method, path, op, auth)

    def _check_body(self, method: str, path: str, op: str, body: Any, content_type: str | None) -> None:
        spec = self._at(op).get("requestBody")
        if spec is None:
            if body is not None:
                raise SpecViolation(f"{method} {path}: the operation takes no request body")
            return
        spec, at = self._deref(f"{op}/requestBody")
        if body is None:
            if spec.get("required"):
                raise SpecViolation(f"{method} {path}: the request body is required")
            return
        kind = (content_type or "").split(";")[0].strip().lower()
        if kind not in spec.get("content", {}):
            raise SpecViolation(f"{method} {path}: the operation takes no {kind or 'untyped'} body "
                                f"(only {', '.join(spec.get('content', {}))})")
        if "schema" in spec["content"][kind]:
            pointer = f"{at}/content/{_escape(kind)}/schema"
            if kind in _FORMS and isinstance(body, dict):
                body = self._typed_form(pointer, body)  # pyright: ignore[reportUnknownArgumentType]
            self._validate(pointer, body, f"{method} {path} body")

    def _typed_form(self, pointer: str, form: dict[str, Any]) -> dict[str, Any]:
        """A form's fields are strings on the wire: each is read as its property's scalar type (an integer
        `segment_index`), as a server decoding the form by the schema would."""
        schema, pointer = self._deref(pointer)
        props = schema.get("properties", {})
        out: dict[str, Any] = {}
        for name, value in form.items():
            prop, _ = self._deref(f"{pointer}/properties/{_escape(name)}") if name in props else ({}, "")
            out[name] = _scalar(value, prop.get("type")) if isinstance(value, str) else value
        return out

    def _check_security(self, method: str, path: str, op: str, auth: tuple[str, Collection[str]] | None) -> None:
        required = self._at(op).get("security", self.doc.get("security"))
        if not required or any(not alternative for alternative in required):
            return  # no credentials needed (or an empty alternative: they are optional)
        if auth is None:
            raise SpecViolation(f"{method} {path}: the operation requires credentials and none were sent")
        kind, scopes = auth
        schemes = self.doc.get("components", {}).get("securitySchemes", {})
        for alternative in required:
            for name, needed in alternative.items():
                scheme = schemes.get(name, {})
                # A scope `a:b` is also granted by its parent `a` (Mastodon: `write` covers `write:statuses`).
                if scheme.get("type") == kind and all(n in scopes or n.split(":")[0] in scopes for n in needed):
                    return
        raise SpecViolation(f"{method} {path}: credentials of type {kind} with scopes {sorted(scopes)} meet none of "
                            f"its security requirements {required}")

    def check_response(self, method: str, path: str, status: int, body: Any, content_type: str = "application/json") -> None:
        """The fake's answer must be one the spec describes for this status."""
        _, op = self.operation(method, path)
        responses = self._at(op).get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX", f"{str(status)[0]}xx", "default") if k in responses), None)
        if key is None:
            raise SpecViolation(f"{method} {path}: the spec documents no {status} answer")
        response, at = self._deref(f"{op}/responses/{key}")
        if content_type not in response.get("content", {}):
            raise SpecViolation(f"{method} {path}: the spec documents no {content_type} body for {status}")
        if "schema" in response["content"][content_type]:
            self._validate(f"{at}/content/{_escape(content_type)}/schema", body, f"{method} {path} answer {status}")


def _scalar(raw: str, kind: Any) -> Any:
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    return raw


@cache
def x_api() -> OpenAPI:
    """X API v2 (servers: https://api.x.com; paths start at /2/)."""
    return OpenAPI("x-api-v2.openapi.json")


@cache
def mastodon_api() -> OpenAPI:
    """Mastodon API (OpenAPI 3.1; servers https://{hostname}: paths start at /api/ and /oauth/). Erratum (the
    README of platform-specs): the document types `POST /api/v1/statuses`'s `Idempotency-Key` header as an object;
    Mastodon's documentation describes an arbitrary string, so it is checked as one."""
    return OpenAPI("mastodon.openapi.json", errata={"Idempotency-Key": {"type": "string", "minLength": 1}})


@cache
def pinterest_api() -> OpenAPI:
    """Pinterest API v5 (server https://api.pinterest.com/v5)."""
    return OpenAPI("pinterest-v5.openapi.json", base="/v5")


# --- Meta Graph API node specs ----------------------------------------------------------------------------------------

_GENERIC_PARAMS = frozenset({"fields", "limit", "after", "before", "access_token", "appsecret_proof"})  # every Graph call
_SCALARS: dict[str, type | tuple[type, ...]] = {"string": str, "bool": bool, "int": int, "unsigned int": int,
                                                "float": (int, float), "datetime": str, "id": str}


class GraphNodes:
    """Meta's node specs: fields and types per node, parameters per edge."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._nodes: dict[str, dict[str, Any]] = {}

    def node(self, name: str) -> dict[str, Any]:
        if name not in self._nodes:
            path = self.directory / f"{name}.json"
            if not path.is_file():
                raise SpecViolation(f"no Graph node spec {name}")
            self._nodes[name] = json.loads(path.read_text(encoding="utf-8"))
        return self._nodes[name]

    def fields(self, name: str) -> dict[str, str]:
        """The node's fields and their types ("string", "IGUser", "list<Page>"...)."""
        return {f["name"]: f["type"] for f in self.node(name).get("fields", [])}

    def check_fields(self, name: str, selector: str) -> None:
        """A `fields=` selector (e.g. `id,name,instagram_business_account{id,username}`) names fields of the node."""
        for field, sub in parse_selector(selector):
            kinds = self.fields(name)
            if field not in kinds:
                raise SpecViolation(f"{name} has no field {field!r}")
            if sub is not None:
                inner = kinds[field].removeprefix("list<").removesuffix(">")
                self.check_fields(inner, sub)

    def check_params(self, name: str, method: str, endpoint: str, params: dict[str, list[str]]) -> None:
        """An edge call's parameters are the edge's (plus Graph's generic ones)."""
        apis = [a for a in self.node(name).get("apis", []) if a.get("method") == method and a.get("endpoint") == endpoint]
        if not apis:
            raise SpecViolation(f"{name} has no {method} {endpoint!r} edge")
        allowed = {p["name"] for p in apis[0].get("params", [])} | _GENERIC_PARAMS
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise SpecViolation(f"{method} {name}/{endpoint}: parameters not in the spec: {unknown}")

    def edge_returns(self, name: str, method: str, endpoint: str) -> str:
        apis = [a for a in self.node(name).get("apis", []) if a.get("method") == method and a.get("endpoint") == endpoint]
        if not apis:
            raise SpecViolation(f"{name} has no {method} {endpoint!r} edge")
        return str(apis[0]["return"])

    def check_object(self, name: str, obj: dict[str, Any]) -> None:
        """An answer's object has only the node's fields, each of its type (nested nodes checked in turn)."""
        kinds = self.fields(name)
        for field, value in obj.items():
            if field not in kinds:
                raise SpecViolation(f"{name} answer has field {field!r}, not in the spec")
            kind = kinds[field]
            if kind in _SCALARS:
                if not isinstance(value, _SCALARS[kind]) or (kind != "bool" and isinstance(value, bool)):
                    raise SpecViolation(f"{name}.{field} should be {kind}, is {type(value).__name__}")
            elif (self.directory / f"{kind}.json").is_file():
                if not isinstance(value, dict):
                    raise SpecViolation(f"{name}.{field} should be a {kind} object")
                self.check_object(kind, value)  # pyright: ignore[reportUnknownArgumentType]


def parse_selector(selector: str) -> list[tuple[str, str | None]]:
    """`a,b{c,d{e}},f` → [("a", None), ("b", "c,d{e}"), ("f", None)]."""
    out: list[tuple[str, str | None]] = []
    depth, start, name_end = 0, 0, -1
    for i, ch in enumerate(selector + ","):
        if ch == "{":
            if depth == 0:
                name_end = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise SpecViolation(f"unbalanced fields selector {selector!r}")
        elif ch == "," and depth == 0:
            part = selector[start:i]
            if name_end >= start:
                out.append((part[: name_end - start].strip(), part[name_end - start + 1 : -1]))
            elif part.strip():
                out.append((part.strip(), None))
            start, name_end = i + 1, -1
    if depth != 0:
        raise SpecViolation(f"unbalanced fields selector {selector!r}")
    return out


@cache
def graph_nodes() -> GraphNodes:
    return GraphNodes(SPECS / "meta-graph-api" / "specs")

