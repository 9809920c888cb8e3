"""Protocol surface of issue 11 items 2 and 3, through the in-memory Client against the real server: resource templates
and reading them within the caller's reach, completion/complete, logging/setLevel and log notifications, prompts/get
and resources/read errors, and the publish confirmation's question."""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
import regex
from mcp import Client, MCPError
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import INVALID_PARAMS, ElicitResult, PromptReference, ResourceTemplateReference
from toolresult import err, ok

from omnipost.app import OmnipostServer, build_server
from omnipost.config import Settings
from omnipost.keys import access_token
from omnipost.preflight.rules import CATALOGUE

pytestmark = pytest.mark.anyio

RULE = "omnipost://rules/{ruleId}"
POST = "omnipost://posts/{postId}{?profileId}"
ACCOUNT = "omnipost://accounts/{accountId}{?profileId}"
MODES = ["auto", "legacy"]  # auto negotiates 2026-07-28; legacy the 2025-11-25 handshake


@contextmanager
def as_key(token: AccessToken | None) -> Iterator[None]:
    """Requests in this block come from `token`'s API key, as the HTTP transports set it (None: the local user)."""
    reset = auth_context_var.set(AuthenticatedUser(token) if token is not None else None)
    try:
        yield
    finally:
        auth_context_var.reset(reset)


async def connect(client: Client, emulates: str, handle: str, profile: str | None = None) -> str:
    args = {"platform": "sandbox", "emulates": emulates, "handle": handle} | ({"profileId": profile} if profile else {})
    return ok(await client.call_tool("connect_account", args))["id"]


async def publish(client: Client, account: str, text: str, profile: str | None = None) -> str:
    args = {"text": text, "targets": [{"accountId": account}]} | ({"profileId": profile} if profile else {})
    return ok(await client.call_tool("publish_post", args))["results"][0]["postId"]


async def read_text(client: Client, uri: str) -> str:
    return (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]


async def not_found(client: Client, uri: str) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    assert caught.value.error.code == INVALID_PARAMS  # SEP-2164: resource not found is -32602 (-32002 is retired)
    assert caught.value.error.data == {"uri": uri}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


async def complete(client: Client, ref: str, argument: str, value: str, **given: str) -> Any:
    reference: Any = (ResourceTemplateReference(type="ref/resource", uri=ref) if "://" in ref
                      else PromptReference(type="ref/prompt", name=ref))
    return (await client.complete(reference, {"name": argument, "value": value}, given or None)).completion


# --- prompts/get errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_prompt_or_a_missing_argument_is_invalid_params_without_a_traceback(
        server: OmnipostServer, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    async with Client(server, mode=mode) as client:
        for name, arguments in (("no_such_prompt", {}), ("split_thread", {"text": "only the text"}), ("adapt_post", None)):
            with pytest.raises(MCPError) as caught:
                await client.get_prompt(name, arguments)
            assert caught.value.error.code == INVALID_PARAMS
        assert caught.value.error.data == {"name": "adapt_post", "missing": ["announcement", "platforms"]}
        # an optional argument may be left out
        got = await client.get_prompt("fix_preflight", {"result": "{}"})
        assert "Original request:" in got.messages[0].content.text  # type: ignore[union-attr]
    assert tracebacks(caplog) == []
