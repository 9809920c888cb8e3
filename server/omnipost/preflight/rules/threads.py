"""Threads limits, from Meta's Threads API docs (platforms.md §6, checked 2026-11-24)."""

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules
from omnipost.preflight.text import THREADS_CHARS

SRC = c.Source(
    name="Threads",
    doc_url="https://developers.facebook.com/docs/threads/posts",
    source="Meta Threads API: text 500 characters (emoji count as their UTF-8 byte length), carousel 2–20 items, "
    "image 8 MB, video 1 GB, alt text 1000",
    checked="2026-11-24",
)

TEXT_LIMIT = 500

THREADS = PlatformRules(
    platform=Platform.THREADS,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=THREADS_CHARS,
    text_limit=TEXT_LIMIT,
    supports_thread=True,
    supports_first_comment=True,
    daily_post_cap=250,
    daily_post_cap_source="Threads API docs (https://developers.facebook.com/docs/threads/posts): 250 API-published posts (and 1,000 replies) per profile per rolling 24 h; "
    "GET /{user-id}/threads_publishing_limit reports quota_total 250, quota_duration 86400",
    daily_post_cap_checked="2026-11-24",
    rules=(
        c.text_required(SRC, "threads.text.required", media_may_replace=True),
        c.text_max(SRC, "threads.text.max_graphemes", limit=TEXT_LIMIT, unit=THREADS_CHARS, thread_ok=True,
                   note=" (conservatively: one per code point, but an emoji counts its UTF-8 byte length, as Meta's counter "
                   "has been seen to do)"),
        c.first_comment_non_empty(SRC, "threads.first_comment.non_empty"),
        c.first_comment_max(SRC, "threads.first_comment.max_graphemes", limit=TEXT_LIMIT, unit=THREADS_CHARS),
        c.thread_segments(SRC, "threads.thread.max_graphemes", limit=TEXT_LIMIT, unit=THREADS_CHARS),
        c.media_count(SRC, "threads.media.count_max", max_images=20, max_videos=20, max_total=20,
                      summary="A Threads carousel has 2 to 20 items (a single image or video is a plain post)."),
        c.mime_allowed(SRC, "threads.media.mime_allowed",
                       mimes=("image/jpeg", "image/png", "image/webp", "video/mp4", "video/quicktime")),
        c.size_max(SRC, "threads.media.image_size_max", kinds=("image", "gif"), max_bytes=8 * c.MB, what="image"),
        c.size_max(SRC, "threads.media.video_size_max", kinds=("video",), max_bytes=1_000_000_000, what="video"),
        c.alt_text_max(SRC, "threads.media.alt_text_max_graphemes", limit=1000, unit=THREADS_CHARS),
        c.visibility_enum(SRC, "threads.visibility.enum", mapping={"public": "public"}),
        c.info_rule(SRC, "threads.container.expired", stage="upstream",
                    summary="A Threads media container must be published within 24 hours of creation.",
                    why="Threads expires unpublished containers after 24 h (status EXPIRED).",
                    remediation="Publish again: omnipost re-creates the container."),
        c.info_rule(SRC, "threads.container.error", stage="upstream",
                    summary="The Threads container went to ERROR while processing the media.",
                    why="Threads downloads and transcodes media asynchronously; errors such as FAILED_DOWNLOADING_VIDEO or "
                    "INVALID_ASPEC_RATIO arrive on the container, not on the create call.",
                    remediation="Read the upstream error in platformResponse, fix the media (format, ratio, duration), and publish again."),
    ),
)
