"""A huge value in a request comes back in an error only clipped: the error stays a few KB, with the right code.

Before, a 1,000,000-character id came back about three times (message, the text content, the JSON), ~3 MB.
"""

import json
from typing import Any

import pytest
from mcp import Client

from omnipost.errors import echo
from toolresult import err

pytestmark = pytest.mark.anyio

HUGE = "x" * 1_000_000
BOUND = 8_000  # characters of the whole tool result: text content plus structured content


def size(result: Any) -> int:
    return sum(len(getattr(c, "text", "")) for c in result.content) + len(json.dumps(result.structured_content))


def test_echo_keeps_a_short_value_and_clips_a_long_one_with_its_length() -> None:
    assert echo("post_01") == "post_01"
    assert echo("y" * 200) == "y" * 200
    assert echo("y" * 201) == "y" * 200 + "… (201 characters)"
    assert echo(HUGE, 10) == "x" * 10 + "… (1000000 characters)"


@pytest.mark.parametrize("tool, arguments, code, rule", [
    ("get_post", {"postId": HUGE}, "not_found", "postId"),
    ("get_account", {"accountId": HUGE}, "not_found", "accountId"),
    ("list_accounts", {"profileId": HUGE}, "not_found", "profileId"),
    ("delete_media", {"mediaId": HUGE}, "not_found", "mediaId"),
    ("delete_webhook", {"webhookId": HUGE}, "not_found", "webhookId"),
    ("retry_post", {"batchId": "bat_" + HUGE}, "not_found", "batchId"),
    ("list_preflight_rules", {"platform": HUGE}, "validation_failed", "platform"),
    ("explain_preflight_rule", {"rule_id": HUGE}, "validation_failed", "rule_id"),
    ("validate_post", {"text": "hi", "targets": [{"accountId": HUGE}]}, "validation_failed", "targets[0].accountId"),
    ("validate_post", {"text": "hi", "targets": [{"platform": "bluesky"}], "scheduledAt": HUGE}, "validation_failed", "scheduledAt"),
])
async def test_a_million_character_value_comes_back_clipped(client: Client, tool: str, arguments: dict[str, Any],
                                                            code: str, rule: str) -> None:
    result = await client.call_tool(tool, arguments)
    error = err(result)
    assert (error["code"], error["rule"]) == (code, rule)
    assert size(result) < BOUND


async def test_a_million_character_field_name_is_clipped_in_the_path(client: Client) -> None:
    result = await client.call_tool("validate_post", {"text": "hi", "targets": [{"platform": "bluesky"}], HUGE: 1})
    error = err(result)
    assert error["code"] == "validation_failed"
    assert error["path"] == echo(HUGE)
    assert size(result) < BOUND


async def test_a_million_character_tool_name_is_clipped(client: Client) -> None:
    result = await client.call_tool(HUGE, {})
    assert size(result) < BOUND
    assert err(result)["code"] == "not_found"


@pytest.mark.parametrize("tool, arguments", [
    ("get_post", {"postId": HUGE}),
    ("publish_draft", {"id": HUGE}),
    ("cancel_post", {"id": HUGE}),
    ("delete_post", {"postId": HUGE}),
])
async def test_a_post_or_batch_id_is_quoted_clipped_with_its_length(client: Client, tool: str, arguments: dict[str, Any]) -> None:
    error = err(await client.call_tool(tool, arguments))
    assert error["code"] == "not_found" and echo(HUGE) in error["message"]
