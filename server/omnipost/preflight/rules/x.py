"""X limits, from X API v2 docs and twitter-text v3 (platforms.md §2, checked 2026-11-24)."""

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules
from omnipost.preflight.text import CODEPOINTS, TWITTER_WEIGHTED

SRC = c.Source(
    name="X",
    doc_url="https://docs.x.com/x-api/posts/manage-tweets/introduction",
    source="X API v2 POST /2/tweets and media best practices; twitter-text config/v3.json (maxWeightedTweetLength 280, "
    "transformedURLLength 23); POST /2/media/metadata alt_text ≤ 1000",
    checked="2026-11-24",
)

TEXT_LIMIT = 280

X = PlatformRules(
    platform=Platform.X,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=TWITTER_WEIGHTED,
    text_limit=TEXT_LIMIT,
    supports_thread=True,
    supports_first_comment=True,
    rules=(
        c.text_required(SRC, "twitter.text.non_empty", media_may_replace=True),
        c.text_max(SRC, "twitter.text.max_graphemes", limit=TEXT_LIMIT, unit=TWITTER_WEIGHTED, thread_ok=True,
                   note=" (twitter-text v3: NFC, every URL counts 23, CJK and emoji sequences weigh 2)"),
        c.first_comment_non_empty(SRC, "twitter.first_comment.non_empty"),
        c.first_comment_max(SRC, "twitter.first_comment.max_graphemes", limit=TEXT_LIMIT, unit=TWITTER_WEIGHTED),
        c.thread_segments(SRC, "twitter.thread.max_graphemes", limit=TEXT_LIMIT, unit=TWITTER_WEIGHTED),
        c.media_count(SRC, "twitter.media.count_max", max_images=4, max_videos=1, max_total=4, solo_kinds=("gif", "video"),
                      summary="An X post carries up to 4 images, or 1 animated GIF, or 1 video."),
        c.mime_allowed(SRC, "twitter.media.mime_allowed", mimes=("image/jpeg", "image/png", "image/webp", "image/gif", "video/mp4")),
        c.size_max(SRC, "twitter.media.image_size_max", kinds=("image",), max_bytes=5 * c.MB, what="static image"),
        c.size_max(SRC, "twitter.media.gif_size_max", kinds=("gif",), max_bytes=15 * c.MB, what="animated GIF"),
        c.size_max(SRC, "twitter.media.video_size_max", kinds=("video",), max_bytes=512 * c.MB, what="video"),
        # POST /2/media/metadata: alt_text.text up to 1000 characters.
        c.alt_text_max(SRC, "twitter.media.alt_text_max_graphemes", limit=1000, unit=CODEPOINTS),
        c.visibility_enum(SRC, "twitter.visibility.enum", mapping={"public": "everyone"}),
    ),
)
