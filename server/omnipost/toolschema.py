"""The JSON schemas tools/list advertises, kept small: every byte of them is in the context of every model that
connects, on every conversation (issue 11: the whole tools/list answer was 248 KB, 92 KB of it names, descriptions
and input schemas).

- slim_input: a tool's input schema without pydantic's generated `title`s, with an optional field's
  `anyOf [X, null]` + `default: null` written as just X (not being required already says it may be left out),
  and a definition used once written in place.
- slim_output: an output schema without titles, descriptions and defaults (the tool description says what comes
  back), `anyOf [X, null]` written as `type: [X, "null"]`, the error object as a compact shape every error
  satisfies (`code` and `message`, more allowed).
- update_schema / bulk_schema: update_post's and schedule_posts' inputs, their fields named, not spelt out (each
  validated in full as its pydantic model, with every field's path; schedule_posts' items one by one).
- request_schema: the input schema of a post tool (validate_post, schedule_post, publish_post): exactly the fields
  of its own request model (request.py), with the target's per-platform option objects summed up in one line of its
  description and the `platforms` overrides named, not spelt out; their full shapes are the resource
  PLATFORM_OPTIONS_URI. Validation is unchanged: the tool validates its arguments as its pydantic model, with every
  field's path (app.OmnipostServer.call_tool).
- a shared subschema (the content fields a request and its targets both have) is said once, under $defs.

Schemas are built once per model (functools.cache) and copied per tool; start-up builds each only once.
"""

import copy
import functools
import json
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer

PLATFORM_OPTIONS_URI = "omnipost://schemas/platform-options"

# The context budget (issue 11), in bytes of JSON as json.dumps writes it by default (", " and ": "; the wire form is
# compact and about 8% smaller), 1 KB = 1000 bytes. bench/context_budget.py prints the sizes; tests/test_context_budget.py
# fails when one is over.
CORE_BUDGET = 32_000  # names + descriptions + input schemas of every tool: what a model reads to choose and call one
LIST_BUDGET = 80_000  # the whole tools/list answer: output schemas, titles and annotations too

# Keywords whose value is one subschema, a list of them, or a name -> subschema map.
_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "$defs", "patternProperties")
_NULL = {"type": "null"}
# What every error object has; the rest of ErrorObject (rule, path, remediation, details ...) is allowed, not spelt out.
COMPACT_ERROR: dict[str, Any] = {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                                 "required": ["code", "message"]}


def _walk(node: Any, visit: Any) -> Any:
    """`visit` applied to every subschema, bottom-up (a map keyword's keys are names, never visited as schemas)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ONE:
            out[key] = _walk(value, visit)
        elif key in _MANY and isinstance(value, list):
            out[key] = [_walk(v, visit) for v in value]
        elif key in _MAP and isinstance(value, dict):
            out[key] = {name: _walk(v, visit) for name, v in value.items()}
        else:
            out[key] = value
    return visit(out)


def _drop(keys: tuple[str, ...]) -> Any:
    """Remove `keys` from every subschema, and `additionalProperties: true` (the default) too."""
    def visit(node: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in node.items() if k not in keys and not (k == "additionalProperties" and v is True)}
    return visit


def _optional_not_null(node: dict[str, Any]) -> dict[str, Any]:
    """In an object's properties: an optional `anyOf [X, null]` with `default: null` becomes X (with the outer keys)."""
    props = node.get("properties")
    if not isinstance(props, dict):
        return node
    required = set(node.get("required", []))
    out = {}
    for name, prop in props.items():
        if name not in required and isinstance(prop, dict) and prop.get("default", 0) is None:
            prop = {k: v for k, v in prop.items() if k != "default"}
            branches = prop.get("anyOf")
            if isinstance(branches, list) and _NULL in branches:
                kept = [b for b in branches if b != _NULL]
                rest = {k: v for k, v in prop.items() if k != "anyOf"}
                prop = {**kept[0], **rest} if len(kept) == 1 else {"anyOf": kept, **rest}
        out[name] = prop
    return {**node, "properties": out}


def _refs(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            counts[ref.removeprefix("#/$defs/")] = counts.get(ref.removeprefix("#/$defs/"), 0) + 1
        for value in node.values():
            _refs(value, counts)
    elif isinstance(node, list):
        for value in node:
            _refs(value, counts)


def inline_single_use(schema: dict[str, Any]) -> dict[str, Any]:
    """Definitions referenced once (and not from themselves) written in place; unreferenced ones dropped."""
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    while True:
        counts: dict[str, int] = {}
        _refs({k: v for k, v in schema.items() if k != "$defs"}, counts)
        _refs(defs, counts)
        defs = {name: d for name, d in defs.items() if counts.get(name)}
        once = next((name for name, d in defs.items() if counts[name] == 1 and not _mentions(d, name)), None)
        if once is None:
            break
        target = defs.pop(once)

        def place(node: dict[str, Any], name: str = once, definition: dict[str, Any] = target) -> dict[str, Any]:
            if node.get("$ref") == f"#/$defs/{name}":
                return {**definition, **{k: v for k, v in node.items() if k != "$ref"}}
            return node

        schema = _walk({k: v for k, v in schema.items() if k != "$defs"}, place)
        defs = {n: _walk(d, place) for n, d in defs.items()}
    schema = {k: v for k, v in schema.items() if k != "$defs"}
    return {**schema, "$defs": defs} if defs else schema


def _mentions(node: Any, name: str) -> bool:
    counts: dict[str, int] = {}
    _refs(node, counts)
    return name in counts


def share_repeats(schema: dict[str, Any], *, min_size: int = 60) -> dict[str, Any]:
    """A subschema written out more than once (of at least `min_size` bytes of compact JSON, where a reference
    would be shorter) moved to $defs, named after the property it first appears as, and referenced: said once."""
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    body = {k: v for k, v in schema.items() if k != "$defs"}
    ref_size = len('{"$ref":"#/$defs/"}') + 8
    while True:
        seen: dict[str, list[str]] = {}

        def key(node: Any, name: str, is_schema: bool) -> str:
            """`node` as canonical compact JSON (built from its children's, so each part is serialised once); every
            subschema on the way is noted in `seen` under the property name it appears as."""
            if isinstance(node, list):
                return "[" + ",".join(key(v, name, is_schema) for v in node) + "]"
            if not isinstance(node, dict):
                return json.dumps(node)
            parts = []
            for k in sorted(node):
                value = node[k]
                if is_schema and k in _MAP and isinstance(value, dict):
                    text = "{" + ",".join(json.dumps(n) + ":" + key(value[n], n, True) for n in sorted(value)) + "}"
                else:
                    text = key(value, name, is_schema and (k in _ONE or k in _MANY))
                parts.append(json.dumps(k) + ":" + text)
            text = "{" + ",".join(parts) + "}"
            if is_schema and "$ref" not in node:
                seen.setdefault(text, []).append(name)
            return text

        key(body, "", True)
        for definition in defs.values():
            key(definition, "", True)
        best = max(((len(text) * (len(names) - 1) - ref_size * len(names), text, names) for text, names in seen.items()
                    if len(names) > 1 and len(text) >= min_size), default=None)
        if best is None or best[0] <= 0:
            break
        _, text, names = best
        name = next((n for n in names if n), "shared")
        while name in defs:
            name += "_"
        target = json.loads(text)
        defs[name] = target

        def replace(node: dict[str, Any], target: dict[str, Any] = target, ref: str = f"#/$defs/{name}") -> dict[str, Any]:
            return {"$ref": ref} if node == target else node

        body = _walk(body, replace)
        defs = {n: (d if n == name else _walk(d, replace)) for n, d in defs.items()}
    return {**body, "$defs": defs} if defs else body


def context_sizes(listing: dict[str, Any]) -> dict[str, Any]:
    """Sizes of a tools/list answer (`ListToolsResult.model_dump(mode="json", by_alias=True, exclude_none=True)`):
    `list` (the whole answer), `core` (name + description + inputSchema of every tool), `wire` (the whole answer as
    compact JSON), and per tool its `core`, `input`, `output` and `description` bytes."""
    tools = {}
    for tool in listing["tools"]:
        core = {"name": tool["name"], "description": tool.get("description"), "inputSchema": tool["inputSchema"]}
        tools[tool["name"]] = {"core": len(json.dumps(core)), "input": len(json.dumps(tool["inputSchema"])),
                               "output": len(json.dumps(tool.get("outputSchema"))), "description": len(tool.get("description") or "")}
    return {"list": len(json.dumps(listing)), "core": sum(t["core"] for t in tools.values()),
            "wire": len(json.dumps(listing, separators=(",", ":"), ensure_ascii=False)), "tools": tools}


def slim_input(schema: dict[str, Any], *, finish: bool = True) -> dict[str, Any]:
    """A tool input schema as small as says the same: see the module docstring. finish=False: before the
    definitions are placed (inlined once used, shared when repeated), for a caller that edits it first."""
    slim = _walk(_walk(schema, _drop(("title",))), _optional_not_null)
    slim.pop("description", None)  # the tool's description says it
    return _place_defs(slim) if finish else slim


def _nullable_type(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf [{type: T, ...}, {type: null}]` written as `{type: [T, null], ...}`: the same values, said shorter."""
    branches = node.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and _NULL in branches:
        other = next(b for b in branches if b != _NULL)
        if isinstance(other, dict) and isinstance(other.get("type"), str) and not set(other) & set(node):
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return {**other, "type": [other["type"], "null"], **rest}
    return node


def slim_output(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema that every structured result still validates against: see the module docstring."""
    slim = _walk(_walk(schema, _drop(("title", "description", "default"))), _nullable_type)
    defs = slim.get("$defs", {})
    if "ErrorObject" in defs:
        defs["ErrorObject"] = copy.deepcopy(COMPACT_ERROR)
    return _place_defs(slim)


def _place_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Definitions used once written in place, repeated subschemas shared, and once more (sharing can leave a
    definition that only the new shared one uses)."""
    return inline_single_use(share_repeats(inline_single_use(schema)))


def with_error_branch(schema: dict[str, Any]) -> dict[str, Any]:
    """A (slim) tool output schema widened to `success | {"error": error object}`.

    A tool error carries the §3 object as structured content; clients that validate structured content against the
    output schema even for is_error results (the TypeScript SDK does) must find the error shape described there too.
    """
    success = dict(schema)
    defs: dict[str, Any] = success.pop("$defs", {})
    defs.setdefault("ErrorObject", copy.deepcopy(COMPACT_ERROR))
    envelope = {"type": "object", "properties": {"error": {"$ref": "#/$defs/ErrorObject"}}, "required": ["error"],
                "additionalProperties": False}
    return {"type": "object", "anyOf": [success, envelope], "$defs": defs}


@functools.cache
def _full_request_schema() -> dict[str, Any]:
    """PostRequest's schema, slimmed: every post tool's fields (pydantic generates it once; it is most of start-up)."""
    from omnipost.request import PostRequest

    def no_sanity_cap(node: dict[str, Any]) -> dict[str, Any]:
        # The 100 000-character caps on text fields only bound hostile input (still validated); a model writing a post
        # is bounded by its platforms' limits, which validate_post reports: not worth their bytes in three schemas.
        return {k: v for k, v in node.items() if not (k == "maxLength" and isinstance(v, int) and v >= 100_000)}

    schema = _walk(PostRequest.model_json_schema(ref_template="#/$defs/{model}"), no_sanity_cap)
    return inline_single_use(slim_input(schema, finish=False))


@functools.cache
def _request_schema(model: type[BaseModel]) -> dict[str, Any]:
    from omnipost.domain import PLATFORM_ALIASES
    from omnipost.request import OPTION_OBJECTS, ValidateRequest

    # The tool's own fields, as PostRequest's: the request models share each field's type (request.py), which
    # tests/test_context_budget.py checks against each model's own generated schema.
    schema = copy.deepcopy(_full_request_schema())
    fields = model.model_fields
    assert set(fields) <= set(schema["properties"]), f"{model.__name__} has fields PostRequest lacks"
    schema["properties"] = {name: prop for name, prop in schema["properties"].items() if name in fields}
    schema["required"] = [name for name, field in fields.items() if field.is_required()]
    defs = {k: v for k, v in schema.pop("$defs", {}).items() if not k.endswith("Override")}
    target = schema["properties"]["targets"]["items"]
    if "$ref" in target:
        target = defs[target["$ref"].removeprefix("#/$defs/")]
    # A target's option objects: named, summed up in the target's description, spelt out in the resource (and
    # validated in full, as before).
    for key in OPTION_OBJECTS:
        target["properties"][key] = {"type": "object"}
    options = f"Its platform's options object: {option_summary()} (all: {PLATFORM_OPTIONS_URI})."
    if model is ValidateRequest:
        target["description"] = f"An accountId, or just a platform to validate without an account. May override the content. {options}"
    else:  # publishing and scheduling refuse a target without an account (validation_failed, at its accountId)
        target["required"] = ["accountId"]
        target["properties"]["platform"]["description"] = "Optional: the account's platform, checked."
        target["description"] = f"A connected account. May override the content. {options}"
    defs["Override"] = {
        "type": "object",
        "description": "Content fields and the platform's options.",
    }
    schema["properties"]["platforms"] = {
        "type": "object",
        "description": 'Per-platform defaults for its targets, e.g. {"instagram": {"contentType": "reel"}}.',
        "properties": {name: {"$ref": "#/$defs/Override"} for name in PLATFORM_ALIASES},
        "additionalProperties": False,
    }
    schema["properties"]["targets"].pop("description", None)  # minItems/maxItems say it
    return _place_defs({**schema, "$defs": defs})


def _option_model(key: str) -> type[BaseModel]:
    """The model of a target's option object `key` (its field is `Model | None`)."""
    from omnipost.request import Target

    return next(a for a in typing.get_args(Target.model_fields[key].annotation) if a is not type(None))


@functools.cache
def option_summary() -> str:
    """Every target option object in a line: `instagram {contentType: feed|story|reel}; pinterest {boardId, ...}`."""
    from omnipost.request import OPTION_OBJECTS

    parts = []
    for key in OPTION_OBJECTS:
        model = _option_model(key)
        fields = []
        for name, field in model.model_fields.items():
            values = [v for a in (field.annotation, *typing.get_args(field.annotation)) for v in typing.get_args(a)
                      if typing.get_origin(a) is typing.Literal]
            fields.append(f"{name}: {'|'.join(values)}" if values else name)
        parts.append(f"{key} {{{', '.join(fields)}}}")
    return "; ".join(parts)


_STR: dict[str, Any] = {"type": "string"}
_OBJECTS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}


def update_schema() -> dict[str, Any]:
    """update_post's advertised input: the fields it changes, named, not spelt out (the tool validates its arguments
    as request.UpdateRequest, in full, with every field's path). The option objects are said in the description."""
    props: dict[str, Any] = {"id": _STR,
                             "text": _STR, "media": _OBJECTS, "firstComment": _STR,
                             "thread": {"type": "array", "items": _STR}, "title": _STR, "visibility": _STR,
                             "scheduledAt": _STR, "timezone": _STR, "campaign": _STR, "skipDuplicateCheck": {"type": "boolean"},
                             "idempotencyKey": _STR, "profileId": _STR}
    return {"type": "object", "properties": props, "required": ["id"]}


def bulk_schema() -> dict[str, Any]:
    """schedule_posts' advertised input: items named as schedule_post requests (each validated in full, on its own)."""
    return {"type": "object", "properties": {
        "items": {**_OBJECTS, "minItems": 1, "maxItems": 100, "description": "Each a schedule_post request."},
        "atomic": {"type": "boolean"}, "dryRun": {"type": "boolean"},
        "campaign": {**_STR, "description": "Items' default."}, "idempotencyKey": _STR, "profileId": _STR},
        "required": ["items"], "additionalProperties": False}


def request_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The advertised input schema of a post tool taking `model` (a copy: the caller may change it)."""
    return copy.deepcopy(_request_schema(model))


def platform_options_json() -> str:
    """What the post tools' schemas sum up: each target option object as JSON schema, with every field's description,
    and how the `platforms` overrides are made of them."""
    from omnipost.domain import PLATFORM_ALIASES
    from omnipost.request import OPTION_OBJECTS, _Content

    content = slim_input(_Content.model_json_schema(ref_template="#/$defs/{model}"))
    doc = {
        "targetOptions": {
            "description": ('A target may carry its own platform\'s options object, e.g. {"accountId": "acc_…", '
                            '"pinterest": {"boardId": "123"}}; one of another platform is ignored, with a warning.'),
            "properties": {key: slim_input(_option_model(key).model_json_schema()) for key in OPTION_OBJECTS},
        },
        "platforms": {
            "description": ("A request's `platforms` object: per platform, defaults for each of its targets (a target's own "
                            "values win), made of the content fields and that platform's target options, flattened: "
                            '{"instagram": {"text": "…", "contentType": "reel"}}. x and twitter are the same platform.'),
            "keys": list(PLATFORM_ALIASES),
            "contentFields": content,
        },
    }
    return json.dumps(doc, ensure_ascii=False)


def register_schema_resources(server: "OmnipostServer") -> None:
    """The resource the post tools' schemas point to for the per-platform option shapes."""
    from mcp.server.mcpserver.resources import FunctionResource

    server.add_resource(FunctionResource(
        uri=PLATFORM_OPTIONS_URI, name="platform-options", title="Per-platform post options",
        description="JSON schema of each platform's target options and of the `platforms` overrides of the post tools.",
        mime_type="application/json", fn=platform_options_json))
