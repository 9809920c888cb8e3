"""Lone UTF-16 surrogates in tool arguments: refused before any tool runs, naming the field.

A Python str can hold a code point in U+D800..U+DFFF on its own (a JSON `"\\ud83d"` escape decodes to
one, and an in-process client passes strings as they are). Such a string has no UTF-8 form: the store,
the logs and every platform would fail on it, and pydantic lets it through some field types (`str | None`,
dict keys). No platform accepts one, so it is a `validation_failed` error whose rule and path are the
JSON path of the field, and nothing runs.
"""

import json
import re
from typing import Any

from omnipost.errors import ErrorObject

_LONE = re.compile("[\ud800-\udfff]")
_MAX_DEPTH = 64  # deeper nesting is refused by the schema anyway; don't recurse without bound


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def lone_surrogate_path(value: Any, path: str = "", depth: int = 0) -> str | None:
    """The JSON path of the first string in `value` holding a lone surrogate, or None.

    A dict key holding one is reported as the dict's path (the key itself cannot be spelled back).
    A string that is JSON text of an object or array is looked into as well: tools decode such text
    into the field's value (clients that send nested arguments as strings).
    """
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, str):
        if _LONE.search(value):
            return path or "$"
        if value[:1] in ("{", "[") and "\\u" in value:
            try:
                decoded = json.loads(value)
            except (ValueError, RecursionError):
                return None
            if isinstance(decoded, dict | list):
                return lone_surrogate_path(decoded, path, depth + 1)
        return None
    if isinstance(value, dict):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]  # JSON from the wire
            if isinstance(key, str) and _LONE.search(key):
                return path or "$"
            found = lone_surrogate_path(item, _child(path, str(key)), depth + 1)  # pyright: ignore[reportUnknownArgumentType]
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            found = lone_surrogate_path(item, _child(path, index), depth + 1)
            if found is not None:
                return found
    return None


def refuse_lone_surrogates(arguments: Any, request_id: str) -> ErrorObject | None:
    """The validation_failed error for tool `arguments` holding a lone surrogate, or None when they hold none."""
    path = lone_surrogate_path(arguments)
    if path is None:
        return None
    return ErrorObject(
        code="validation_failed",
        message=f"{path}: the text holds a lone UTF-16 surrogate (U+D800..U+DFFF), which is not valid Unicode text.",
        rule=path,
        path=path,
        remediation=f"Fix {path}: send well-formed Unicode (a surrogate only as half of a pair in UTF-16 JSON escapes).",
        requestId=request_id,
    )
