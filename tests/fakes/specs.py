"""The platforms' published specs as the fakes' referee (reference-data/platform-specs/README.md).

- `OpenAPI`: an OpenAPI 3.0 document (X API v2, Pinterest v5). `check_request` refuses a request the operation does
  not allow (unknown or ill-typed query parameter, a required one missing); `check_response` validates the fake's
  own answer against the operation's response schema for its status (or `default`), so a fake cannot drift from the
  spec. Schemas are checked with jsonschema (draft 4 semantics, OpenAPI's `nullable` turned into a null type).
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
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

import refdata

SPECS = refdata.path("platform-specs")
_DOC = "urn:omnipost:openapi"


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
    """One OpenAPI document; paths are matched below `base` (the server URL's path, e.g. "/v5")."""

    def __init__(self, filename: str, *, base: str = "") -> None:
        self.doc: dict[str, Any] = _nullable(json.loads((SPECS / filename).read_text(encoding="utf-8")))
        self.base = base
        # Schemas are validated in place, by a JSON pointer into the whole document, so #/components refs resolve.
        self._registry: Registry[Any] = Registry().with_resource(_DOC, Resource(contents=self.doc, specification=DRAFT4))
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
        validator = Draft4Validator({"$ref": _DOC + pointer}, registry=self._registry)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            raise SpecViolation(f"{where}: " + "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]))

    def check_request(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        """Refuse what the operation does not take: unknown query parameters, ill-typed values, missing required ones."""
        template, op = self.operation(method, path)
        pointers = [f"#/paths/{_escape(template)}/parameters/{i}" for i in range(len(self.doc["paths"][template].get("parameters", [])))]
        pointers += [f"{op}/parameters/{i}" for i in range(len(self._at(op).get("parameters", [])))]
        known: dict[str, tuple[dict[str, Any], str]] = {}
        for pointer in pointers:
            param, where = self._deref(pointer)
            if param.get("in") == "query":
                known[param["name"]] = (param, where)
        for name, values in query.items():
            if name not in known:
                raise SpecViolation(f"{method} {path}: query parameter {name!r} is not in the spec")
            param, where = known[name]
            schema, schema_at = self._deref(f"{where}/schema")
            for raw in values:
                value: Any = raw.split(",") if schema.get("type") == "array" else _scalar(raw, schema.get("type"))
                self._validate(schema_at, value, f"{method} {path} ?{name}")
        for name, (param, _) in known.items():
            if param.get("required") and name not in query:
                raise SpecViolation(f"{method} {path}: required query parameter {name!r} missing")

    def check_response(self, method: str, path: str, status: int, body: Any, content_type: str = "application/json") -> None:
        """The fake's answer must be one the spec describes for this status."""
        _, op = self.operation(method, path)
        responses = self._at(op).get("responses", {})
        key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
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

