"""upload_media / list_media / delete_media through the MCP client, and media in a publish."""

from pathlib import Path
from typing import Any

import pytest
from toolresult import err, ok
from mcp import Client

from mediagen import b64, make_image
from omnipost.app import build_server
from omnipost.config import Settings
from omnipost.sandbox.upstream import list_posts

pytestmark = pytest.mark.anyio




@pytest.fixture
def roots_settings(settings: Settings, tmp_path: Path) -> Settings:
    (tmp_path / "files").mkdir()
    return settings.model_copy(update={"media_roots": [tmp_path / "files"]})


async def test_upload_from_path_and_base64_list_dedupe_and_delete(roots_settings: Settings, tmp_path: Path, clock: Any) -> None:
    photo = tmp_path / "files" / "photo.png"
    photo.write_bytes(make_image("png", 640, 480))
    async with Client(build_server(roots_settings, clock=clock)) as client:
        first = ok(await client.call_tool("upload_media", {"path": str(photo), "altText": "A chart"}))
        assert (first["mime"], first["width"], first["height"], first["kind"]) == ("image/png", 640, 480, "image")
        same = ok(await client.call_tool("upload_media", {"bytesBase64": b64(photo.read_bytes())}))
        assert same["id"] == first["id"]  # content-addressed: the same file is the same media
        other = ok(await client.call_tool("upload_media", {"bytesBase64": b64(make_image("jpeg", 100, 100))}))
        listed = ok(await client.call_tool("list_media", {}))["media"]
        assert {m["id"] for m in listed} == {first["id"], other["id"]}
        ok(await client.call_tool("delete_media", {"mediaId": other["id"]}))
        assert err(await client.call_tool("delete_media", {"mediaId": other["id"]}))["code"] == "not_found"


async def test_paths_outside_the_roots_and_loopback_urls_are_refused(roots_settings: Settings, tmp_path: Path, clock: Any) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(make_image("png", 10, 10))
    (tmp_path / "files" / "link.png").symlink_to(outside)
    async with Client(build_server(roots_settings, clock=clock)) as client:
        for path in (str(outside), str(tmp_path / "files" / ".." / "secret.png"), str(tmp_path / "files" / "link.png")):
            assert err(await client.call_tool("upload_media", {"path": path}))["rule"] == "media.path_forbidden"
        for url in ("http://127.0.0.1:9/a.png", "http://2130706433/a.png", "http://[::ffff:127.0.0.1]/a.png", "http://localhost/a.png"):
            assert err(await client.call_tool("upload_media", {"url": url}))["rule"] == "media.url_forbidden"
        assert err(await client.call_tool("upload_media", {"path": str(outside), "url": "https://example.com/a.png"}))["code"] == "validation_failed"


async def test_uploaded_media_is_checked_by_preflight_and_sent_with_the_post(roots_settings: Settings, clock: Any) -> None:
    async with Client(build_server(roots_settings, clock=clock)) as client:
        big = ok(await client.call_tool("upload_media", {"bytesBase64": b64(make_image("png", 800, 600, size=2_500_000))}))
        small = ok(await client.call_tool("upload_media", {"bytesBase64": b64(make_image("jpeg", 800, 600)), "altText": "Small"}))
        account = ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": "bluesky", "handle": "pics"}))["id"]
        refused = err(await client.call_tool("publish_post", {"text": "Big", "media": [{"mediaId": big["id"]}], "targets": [{"accountId": account}]}))
        assert refused["details"][0]["rule"] == "bluesky.media.image_size_max"
        batch = ok(await client.call_tool("publish_post", {"text": "Small", "media": [{"mediaId": small["id"], "altText": "Small"}],
                                                           "targets": [{"accountId": account}]}))
        assert batch["status"] == "published"
        inline = ok(await client.call_tool("publish_post", {"text": "Inline", "media": [{"bytesBase64": b64(make_image("webp", 300, 200))}],
                                                            "targets": [{"accountId": account}]}))
        assert inline["status"] == "published"
    sent = {p["text"]: p for p in list_posts(roots_settings.data_dir / "sandbox.db")}
    assert sent["Small"]["media"][0]["mime"] == "image/jpeg" and sent["Small"]["media"][0]["altText"] == "Small"
    assert sent["Inline"]["media"][0]["mime"] == "image/webp"
