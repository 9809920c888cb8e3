"""Bluesky end to end against the reference PDS (@atproto/pds on loopback), through the MCP tools."""

from typing import Any

import pds
import pytest
from mcp import Client
from sqlmodel import select

from mediagen import b64, make_image
from omnipost.app import build_server
from omnipost.config import Settings
from toolresult import err, ok

pytestmark = pytest.mark.anyio
local_pds = pds.local_pds


class PrivateResolver:
    """Every name resolves to a private address: link-card fetches are refused before any connection."""

    async def resolve(self, host: str, port: int) -> list[str]:
        return ["10.0.0.1"]


def rkey(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


async def connect(client: Client, server_pds: Any, handle: str) -> tuple[str, dict[str, Any]]:
    account = server_pds.create_account(handle)
    password = server_pds.create_app_password(account)
    connected = ok(await client.call_tool("connect_account", {"platform": "bluesky", "handle": account["handle"],
                                                              "appPassword": password, "pdsUrl": server_pds.url}))
    assert connected["platform"] == "bluesky" and connected["defaults"]["did"] == account["did"]
    return connected["id"], account


def server_for(settings: Settings, clock: Any) -> Any:
    # The PDS is on loopback: the development setting admits it (and only loopback: link cards stay refused).
    return build_server(settings.model_copy(update={"confirm": "never", "upstream_allow_loopback": True}), clock=clock,
                        resolver=PrivateResolver())


async def test_publish_text_with_facets_images_and_a_thread_reads_back_as_sent(local_pds: Any, settings: Settings, clock: Any) -> None:
    async with Client(server_for(settings, clock)) as client:
        acc, alice = await connect(client, local_pds, None)
        _, bob = await connect(client, local_pds, None)
        text = f"Ünïcode hello @{bob['handle']} see https://example.com/page #omnipost"
        batch = ok(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": acc}]}))
        result = batch["results"][0]
        assert result["status"] == "published" and result["extras"]["uri"].startswith(f"at://{alice['did']}/app.bsky.feed.post/")
        record = local_pds.get_record(alice["did"], "app.bsky.feed.post", rkey(result["extras"]["uri"]))["value"]
        assert record["text"] == text
        raw = text.encode()
        spans = {f["features"][0]["$type"].rsplit("#", 1)[1]: (raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(), f["features"][0])
                 for f in record["facets"]}
        assert spans["mention"][0] == f"@{bob['handle']}" and spans["mention"][1]["did"] == bob["did"]
        assert spans["link"] == ("https://example.com/page", {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/page"})
        assert spans["tag"][0] == "#omnipost" and spans["tag"][1]["tag"] == "omnipost"

        image = ok(await client.call_tool("publish_post", {"text": "A chart", "targets": [{"accountId": acc}],
                                                           "media": [{"bytesBase64": b64(make_image("png", 640, 480)), "altText": "Sales by month"}]}))
        got = local_pds.get_record(alice["did"], "app.bsky.feed.post", rkey(image["results"][0]["extras"]["uri"]))["value"]
        assert got["embed"]["$type"] == "app.bsky.embed.images"
        assert got["embed"]["images"][0]["alt"] == "Sales by month"
        assert got["embed"]["images"][0]["aspectRatio"] == {"width": 640, "height": 480}
        assert got["embed"]["images"][0]["image"]["mimeType"] == "image/png"

        thread = ok(await client.call_tool("publish_post", {"text": "Part one", "thread": ["Part two", "Part three"],
                                                            "firstComment": "Comments welcome", "targets": [{"accountId": acc}]}))
        t = thread["results"][0]
        root = local_pds.get_record(alice["did"], "app.bsky.feed.post", rkey(t["extras"]["uri"]))
        replies = [local_pds.get_record(alice["did"], "app.bsky.feed.post", rkey(u))["value"] for u in t["thread"]]
        assert [r["text"] for r in replies] == ["Part two", "Part three"]
        assert all(r["reply"]["root"]["uri"] == t["extras"]["uri"] and r["reply"]["root"]["cid"] == root["cid"] for r in replies)
        assert t["extras"] == {"uri": t["upstreamId"], "cid": root["cid"]}  # Bluesky's upstream id is its at-uri
        assert replies[0]["reply"]["parent"]["uri"] == t["extras"]["uri"] and replies[1]["reply"]["parent"]["uri"] == t["thread"][0]
        comment = local_pds.get_record(alice["did"], "app.bsky.feed.post", rkey(t["firstComment"][0]))["value"]
        assert comment["text"] == "Comments welcome" and comment["reply"]["parent"]["uri"] == t["extras"]["uri"]

        deleted = ok(await client.call_tool("delete_post", {"postId": image["results"][0]["postId"]}))
        assert deleted["status"] == "deleted"
        assert local_pds.get_record(alice["did"], "app.bsky.feed.post", rkey(image["results"][0]["extras"]["uri"])) is None


async def test_300_graphemes_publish_and_301_are_stopped_before_the_pds(local_pds: Any, settings: Settings, clock: Any) -> None:
    async with Client(server_for(settings, clock)) as client:
        acc, alice = await connect(client, local_pds, None)
        before = len(local_pds.list_records(alice["did"], "app.bsky.feed.post"))
        exact = "e\u0301" * 300  # 300 graphemes, 600 code points
        assert ok(await client.call_tool("publish_post", {"text": exact, "targets": [{"accountId": acc}]}))["status"] == "published"
        error = err(await client.call_tool("publish_post", {"text": exact + "e", "targets": [{"accountId": acc}]}))
        assert error["details"][0]["rule"] == "bluesky.text.max_graphemes"
        assert len(local_pds.list_records(alice["did"], "app.bsky.feed.post")) == before + 1


@pytest.mark.parametrize("left_as", ["publishing", "validated"])
async def test_a_retry_after_a_crash_posts_nothing_twice(local_pds: Any, settings: Settings, clock: Any, left_as: str) -> None:
    """`publishing`: recovery finds the record by its rkey. `validated`: recovery sends it again with
    the same rkey; the PDS refuses the duplicate and the adapter reads the record back."""
    from omnipost.store.db import Database
    from omnipost.store.models import Post

    async with Client(server_for(settings, clock)) as client:
        acc, alice = await connect(client, local_pds, None)
        batch = ok(await client.call_tool("publish_post", {"text": f"Exactly once ({left_as})", "targets": [{"accountId": acc}]}))
    post_id = batch["results"][0]["postId"]
    db = await Database.open(None, settings.data_dir, clock.now())
    async with db.session() as s:  # as if the server died after the PDS stored the record
        post = (await s.exec(select(Post).where(Post.id == post_id))).one()
        post.status, post.upstream_id, post.extras = left_as, None, {}
        s.add(post)
        await s.commit()
    await db.close()
    async with Client(server_for(settings, clock)) as client:
        detail = ok(await client.call_tool("get_post", {"postId": post_id}))
    assert detail["status"] == "published" and detail["extras"]["uri"] == batch["results"][0]["extras"]["uri"]
    texts = [r["value"]["text"] for r in local_pds.list_records(alice["did"], "app.bsky.feed.post")]
    assert texts.count(f"Exactly once ({left_as})") == 1


async def test_the_refresher_rotates_and_revokes_a_real_session(local_pds: Any, clock: Any) -> None:
    """BlueskyRefresher (driven by TokenSession) against the reference PDS: refreshSession rotates the refresh token,
    a spent one is answered again with the same successor for a while (grace), and deleteSession ends the session,
    after which its refresh token is refused (a PlatformAuthError: reconnect)."""
    import anyio
    import httpx2

    from omnipost.errors import PlatformAuthError
    from omnipost.platforms.bluesky import BlueskyRefresher, connect_bluesky

    account = local_pds.create_account(None)
    password = local_pds.create_app_password(account)
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        with anyio.fail_after(60):
            session = await connect_bluesky(http, account["handle"], password, local_pds.url, clock=clock)
            old = session["credentials"]
            refresher = BlueskyRefresher(http, clock=clock)
            tokens = await refresher.refresh(old)
            new = refresher.merge(old, tokens, clock.now())
            rotated = new["refreshJwt"] != old["refreshJwt"]  # (the access JWT may repeat within the same second)
            assert rotated
            assert (new["did"], new["pdsUrl"]) == (old["did"], old["pdsUrl"]) and tokens.expires_at is not None
            # The spent refresh token sent again at once gets the same successor (the PDS's rotation grace period):
            # so a process killed after the PDS rotated and before our commit still refreshes after a restart.
            again = await refresher.refresh(old)
            same = again.refresh_token == tokens.refresh_token
            assert same
            assert await refresher.revoke(new) is True
            with pytest.raises(PlatformAuthError):
                await refresher.refresh(new)


async def test_the_server_refreshes_a_session_about_to_end_then_revokes_it_at_disconnect(local_pds: Any, settings: Settings,
                                                                                          clock: Any) -> None:
    """Through the tools: the account's TokenSession refreshes an access token about to end (by the injected clock)
    before publishing, the rotated session is committed, and disconnect_account ends the session at the PDS."""
    from datetime import datetime, timedelta, timezone

    from omnipost.platforms.bluesky import _jwt_exp

    server = server_for(settings, clock)
    async with Client(server) as client:
        acc, alice = await connect(client, local_pds, None)
        rt = server.runtime
        profile = (await rt.accounts.resolve_profile(None)).id
        before = rt.accounts.credentials(await rt.accounts.get(profile, acc))
        exp = _jwt_exp(before["accessJwt"])
        assert exp is not None
        clock.at = datetime.fromtimestamp(exp, timezone.utc) - timedelta(seconds=60)  # inside the refresh margin
        batch = ok(await client.call_tool("publish_post", {"text": "After a refresh", "targets": [{"accountId": acc}]}))
        assert batch["results"][0]["status"] == "published"
        after = rt.accounts.credentials(await rt.accounts.get(profile, acc))
        rotated = after["refreshJwt"] != before["refreshJwt"]
        assert rotated and after["did"] == alice["did"]
        out = ok(await client.call_tool("disconnect_account", {"accountId": acc}))
        assert (out["health"], out["revoked"], out["warnings"]) == ("disconnected", True, [])
