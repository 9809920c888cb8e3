"""Connecting an account that is already connected (same platform, same upstream identity, same profile) updates
it instead of adding a second one (issue 11 item 7); list_posts' status is an enum of every post status."""

from typing import Any

import pytest
from mcp import Client
from test_publishing import connect
from test_tokens import PASSWORD, Setup
from fakes.bluesky import PDS_URL
from toolresult import err, ok

from omnipost.app import OmnipostServer
from omnipost.config import Settings
from omnipost.outputs import PostStatus

pytestmark = pytest.mark.anyio


async def accounts(client: Client, **args: Any) -> list[dict[str, Any]]:
    return ok(await client.call_tool("list_accounts", args))["accounts"]


async def test_the_same_sandbox_handle_again_updates_its_account(client: Client, server: OmnipostServer) -> None:
    first = await connect(client, "x", "sam", defaults={"boardId": "1"})
    await server.runtime.publisher.mark_account(first, "needs_reconnect")  # its token was refused meanwhile
    again = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "threads", "handle": "sam",
                                                          "defaults": {"note": "2"}}))
    assert (again["id"], again["health"], again["emulates"]) == (first, "active", "threads")
    assert again["defaults"] == {"boardId": "1", "note": "2", "sandboxMode": "caller_id"}
    assert [a["id"] for a in await accounts(client)] == [first]
    assert await connect(client, "x", "someone-else") != first  # another identity is another account


async def test_the_same_handle_in_another_profile_is_another_account(client: Client) -> None:
    ok(await client.call_tool("create_profile", {"name": "Other"}))
    mine = await connect(client, "x", "sam")
    theirs = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "x", "handle": "sam",
                                                           "profileId": "Other"}))["id"]
    assert mine != theirs


async def test_a_disconnected_account_connected_again_is_a_new_account(client: Client) -> None:
    first = await connect(client, "x", "sam")
    ok(await client.call_tool("disconnect_account", {"accountId": first}))
    assert await connect(client, "x", "sam") != first


async def test_bluesky_reconnect_by_did_keeps_the_account(settings: Settings) -> None:
    env = Setup(settings)
    async with env.http, Client(env.server) as client:
        await env.start(client, bluesky=False)
        args = {"platform": "bluesky", "handle": "alice.test", "appPassword": PASSWORD, "pdsUrl": PDS_URL}
        first = ok(await client.call_tool("connect_account", args))
        again = ok(await client.call_tool("connect_account", args | {"handle": first["defaults"]["did"]}))  # by DID this time
        assert again["id"] == first["id"] and [a["id"] for a in await accounts(client)] == [first["id"]]


async def test_list_posts_status_is_an_enum_of_every_status(client: Client) -> None:
    for status in PostStatus.__args__:  # type: ignore[attr-defined]
        assert ok(await client.call_tool("list_posts", {"status": status}))["posts"] == []
    error = err(await client.call_tool("list_posts", {"status": "bogus"}))
    assert (error["code"], error["path"]) == ("validation_failed", "status")
    tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["list_posts"].input_schema["properties"]["status"]
    enums = [o["enum"] for o in schema.get("anyOf", [schema]) if "enum" in o]
    assert enums == [list(PostStatus.__args__)]  # type: ignore[attr-defined]
