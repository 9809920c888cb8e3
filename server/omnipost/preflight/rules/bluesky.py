"""Bluesky limits, from the atproto lexicons and platforms.md §1 (checked 2026-11-24)."""

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules
from omnipost.preflight.text import GRAPHEMES

SRC = c.Source(
    name="Bluesky",
    doc_url="https://docs.bsky.app/docs/advanced-guides/posts",
    source="atproto lexicons app.bsky.feed.post (text maxGraphemes 300, maxLength 3000), app.bsky.embed.images "
    "(maxLength 4, blob maxSize 2000000), app.bsky.embed.video (blob maxSize 300000000); Bluesky app alt-text cap 2000",
    checked="2026-11-24",
)

TEXT_LIMIT = 300
TEXT_BYTES = 3000
IMAGE_MAX = 2_000_000  # raised from 1 MB in 2026-04
VIDEO_MAX = 300_000_000  # raised from 100 MB in 2026-08
ALT_MAX = 2000
VIDEO_QUOTA = "bluesky.media.video_quota"  # deep: app.bsky.video.getUploadLimits, asked before a video post is sent

BLUESKY = PlatformRules(
    platform=Platform.BLUESKY,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=GRAPHEMES,
    text_limit=TEXT_LIMIT,
    supports_thread=True,
    supports_first_comment=True,
    rules=(
        # The lexicon lets a post with an embed have empty text.
        c.text_required(SRC, "bluesky.text.non_empty", media_may_replace=True),
        c.text_max(SRC, "bluesky.text.max_graphemes", limit=TEXT_LIMIT, unit=GRAPHEMES, byte_limit=TEXT_BYTES, thread_ok=True,
                   note=" (extended grapheme clusters, as a browser's Intl.Segmenter counts them: an emoji sequence or flag is one)"),
        c.first_comment_non_empty(SRC, "bluesky.first_comment.non_empty"),
        c.first_comment_max(SRC, "bluesky.first_comment.max_graphemes", limit=TEXT_LIMIT, unit=GRAPHEMES, byte_limit=TEXT_BYTES),
        c.thread_segments(SRC, "bluesky.thread.max_graphemes", limit=TEXT_LIMIT, unit=GRAPHEMES, byte_limit=TEXT_BYTES),
        c.media_count(SRC, "bluesky.media.count_max", max_images=4, max_videos=1, max_total=4,
                      summary="A Bluesky post carries at most 4 images, or exactly 1 video."),
        c.media_exclusive(SRC, "bluesky.media.image_video_exclusive"),
        c.mime_allowed(SRC, "bluesky.media.mime_allowed", mimes=("image/jpeg", "image/png", "image/webp", "image/gif", "video/mp4")),
        c.size_max(SRC, "bluesky.media.image_size_max", kinds=("image", "gif"), max_bytes=IMAGE_MAX, what="image"),
        c.size_max(SRC, "bluesky.media.video_size_max", kinds=("video",), max_bytes=VIDEO_MAX, what="video"),
        c.alt_text_max(SRC, "bluesky.media.alt_text_max_graphemes", limit=ALT_MAX, unit=GRAPHEMES),
        c.visibility_enum(SRC, "bluesky.visibility.enum", mapping={"public": "public"}),
        # Asked with a service token (aud did:web:video.bsky.app, lxm getUploadLimits); the answer is
        # {canUpload, remainingDailyVideos, remainingDailyBytes, message, error} (platforms.md §1.4).
        c.info_rule(SRC, VIDEO_QUOTA, stage="deep",
                    summary="Before a video post is published, Bluesky's video service must accept another upload from the "
                    "account today: getUploadLimits says canUpload, at least 1 video and at least the video's size in bytes "
                    "remain of the daily allowance.",
                    why="video.bsky.app caps each account's uploads per day (videos and bytes) and refuses accounts it will not "
                    "take video from (e.g. an unconfirmed email); asking first fails only that target, with the service's own "
                    "message, instead of a failed upload. When the limits cannot be read (no video service for this PDS, "
                    "the service down) the target gets a warning with this rule id and publishing goes on.",
                    remediation="Wait for the daily allowance to renew, confirm the account's email, or post a smaller video; "
                    "the error's platformResponse carries the service's answer.",
                    doc_url="https://docs.bsky.app/docs/tutorials/video"),
    ),
)
