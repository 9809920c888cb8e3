"""Each platform's preview is the exact body its adapter sends (platforms.md wire shapes)."""

from typing import Any

import pytest
from mcp import Client

from mediagen import b64, make_image, make_video
from omnipost.platforms.linkedin import escape_little_text

pytestmark = pytest.mark.anyio
PNG = b64(make_image("png", 1200, 800))
JPEG = b64(make_image("jpeg", 1080, 1080))
MP4 = b64(make_video(width=1280, height=720, duration=5.0))


async def preview(client: Client, target: dict[str, Any], **request: Any) -> dict[str, Any]:
    result = await client.call_tool("validate_post", {**request, "targets": [target]})
    assert not result.is_error, result
    return result.structured_content["results"][0]["preview"]  # type: ignore[index]


async def test_bluesky_images_embed_carries_alt_and_measured_aspect_ratio(client: Client) -> None:
    body = await preview(client, {"platform": "bluesky"}, text="Two charts", media=[{"bytesBase64": PNG, "altText": "Sales"}, {"bytesBase64": JPEG}])
    assert body["collection"] == "app.bsky.feed.post"
    embed = body["record"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [(i["alt"], i["aspectRatio"]) for i in embed["images"]] == [
        ("Sales", {"width": 1200, "height": 800}), ("", {"width": 1080, "height": 1080})]


async def test_bluesky_video_embed_and_langs(client: Client) -> None:
    body = await preview(client, {"platform": "bluesky", "bluesky": {"langs": ["en", "fr"]}}, text="Clip", media=[{"bytesBase64": MP4}])
    assert body["record"]["langs"] == ["en", "fr"]
    assert body["record"]["embed"]["$type"] == "app.bsky.embed.video"
    assert body["record"]["embed"]["aspectRatio"] == {"width": 1280, "height": 720}


async def test_x_body_has_only_api_fields(client: Client) -> None:
    body = await preview(client, {"platform": "x", "twitter": {"replySettings": "mentionedUsers"}}, text="Hi", media=[{"bytesBase64": PNG}])
    assert set(body) == {"text", "media", "reply_settings"}
    assert len(body["media"]["media_ids"]) == 1 and body["reply_settings"] == "mentionedUsers"


async def test_threads_container_kinds(client: Client) -> None:
    assert await preview(client, {"platform": "threads", "threads": {"replyToId": "123"}}, text="Hi") == {
        "media_type": "TEXT", "text": "Hi", "reply_to_id": "123"}
    image = await preview(client, {"platform": "threads"}, text="Pic", media=[{"url": "https://example.com/a.jpg", "altText": "A"}])
    assert image == {"media_type": "IMAGE", "image_url": "https://example.com/a.jpg", "text": "Pic", "alt_text": "A"}
    carousel = await preview(client, {"platform": "threads"}, text="Two", media=[{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.mp4"}])
    assert carousel["media_type"] == "CAROUSEL" and carousel["children"].count(",") == 1


async def test_instagram_reel_story_and_carousel(client: Client) -> None:
    reel = await preview(client, {"platform": "instagram", "instagram": {"contentType": "reel"}}, text="Reel", media=[{"url": "https://example.com/v.mp4"}])
    assert reel == {"media_type": "REELS", "video_url": "https://example.com/v.mp4", "caption": "Reel", "share_to_feed": True}
    story = await preview(client, {"platform": "instagram", "instagram": {"contentType": "story"}}, media=[{"url": "https://example.com/s.jpg"}])
    assert story == {"media_type": "STORIES", "image_url": "https://example.com/s.jpg"}
    feed = await preview(client, {"platform": "instagram"}, text="Cap", media=[{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.jpg"}])
    assert feed["media_type"] == "CAROUSEL" and feed["caption"] == "Cap"


async def test_facebook_feed_photo_and_multi_photo(client: Client) -> None:
    assert await preview(client, {"platform": "facebook"}, text="Hi") == {"message": "Hi", "published": True}
    one = await preview(client, {"platform": "facebook"}, text="Pic", media=[{"url": "https://example.com/a.jpg"}])
    assert one == {"message": "Pic", "published": True, "url": "https://example.com/a.jpg"}
    many = await preview(client, {"platform": "facebook"}, text="Pics", media=[{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.jpg"}])
    assert len(many["attached_media"]) == 2


async def test_linkedin_body_escapes_little_text_and_maps_visibility(client: Client) -> None:
    body = await preview(client, {"platform": "linkedin"}, text="Q&A (live) #events https://example.com/a_(b)", visibility="logged_in")
    assert body["commentary"] == "Q&A \\(live\\) #events https://example.com/a_(b)"
    assert body["visibility"] == "LOGGED_IN"
    assert body["lifecycleState"] == "PUBLISHED" and body["distribution"]["feedDistribution"] == "MAIN_FEED"


def test_little_text_escapes_every_reserved_character_outside_urls_and_hashtags() -> None:
    assert escape_little_text("a|b{c}d@e[f]g(h)i<j>k*l_m~n\\o") == "a\\|b\\{c\\}d\\@e\\[f\\]g\\(h\\)i\\<j\\>k\\*l\\_m\\~n\\\\o"
    assert escape_little_text("#tag and C# and ##x") == "#tag and C\\# and \\#\\#x"


async def test_pinterest_pin_uses_board_title_link_and_inline_image(client: Client) -> None:
    body = await preview(
        client, {"platform": "pinterest", "pinterest": {"boardId": "987", "destinationUrl": "https://example.com/r"}},
        text="Recipe", title="Soup", media=[{"bytesBase64": JPEG, "altText": "Soup bowl"}],
    )
    assert body["board_id"] == "987" and body["title"] == "Soup" and body["description"] == "Recipe"
    assert body["link"] == "https://example.com/r" and body["alt_text"] == "Soup bowl"
    assert body["media_source"]["source_type"] == "image_base64" and body["media_source"]["content_type"] == "image/jpeg"
