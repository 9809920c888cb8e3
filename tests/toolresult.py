"""Reading MCP tool results in tests: the structured content of a success, the error object of a failure."""

from typing import Any


def ok(result: Any) -> dict[str, Any]:
    """The structured content of a successful call (fails with the error text otherwise)."""
    assert not result.is_error, result.content[0].text
    return result.structured_content


def err(result: Any) -> dict[str, Any]:
    """The §3 error object of a failed call."""
    assert result.is_error, result
    assert result.structured_content is not None
    return result.structured_content["error"]
