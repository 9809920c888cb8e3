"""Facebook Page limits, from the Graph API Pages docs (platforms.md §4, checked 2026-11-24)."""

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules
from omnipost.preflight.text import UTF16

SRC = c.Source(
    name="Facebook",
    doc_url="https://developers.facebook.com/docs/pages-api/posts",
    source="Graph API /{page-id}/feed, /photos, /videos: message about 63,206 characters, photos JPEG/PNG ≤ 4 MB "
    "(error subcode 1366046), up to 10 attached photos, videos ≤ 4 GB; comments 8000 characters (Graph API comment "
    "message limit, long-standing figure, unconfirmed)",
    checked="2026-11-24",
)

TEXT_LIMIT = 63_206

FACEBOOK = PlatformRules(
    platform=Platform.FACEBOOK,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=UTF16,
    text_limit=TEXT_LIMIT,
    supports_first_comment=True,
    rules=(
        c.text_required(SRC, "facebook.text.required", media_may_replace=True),
        c.text_max(SRC, "facebook.text.max_graphemes", limit=TEXT_LIMIT, unit=UTF16,
                   note=" (Meta does not publish its unit; UTF-16 code units never undercount it)"),
        c.first_comment_non_empty(SRC, "facebook.first_comment.non_empty"),
        c.first_comment_max(SRC, "facebook.first_comment.max_graphemes", limit=8000, unit=UTF16),
        c.media_count(SRC, "facebook.media.count_max", max_images=10, max_videos=1, max_total=10,
                      summary="A Facebook Page post carries up to 10 images, or 1 video."),
        c.media_exclusive(SRC, "facebook.media.image_video_exclusive"),
        c.mime_allowed(SRC, "facebook.media.mime_allowed", mimes=("image/jpeg", "image/png", "video/mp4", "video/quicktime")),
        c.size_max(SRC, "facebook.media.image_size_max", kinds=("image", "gif"), max_bytes=4 * c.MB, what="image"),
        c.size_max(SRC, "facebook.media.video_size_max", kinds=("video",), max_bytes=4_000_000_000, what="video"),
        c.visibility_enum(SRC, "facebook.visibility.enum", mapping={"public": "public"}),
        c.info_rule(SRC, "facebook.pages.none", stage="connect",
                    summary="The connecting Facebook user manages at least one Page.",
                    why="omnipost publishes as a Page; a user with no Page role has nothing to post as.",
                    remediation="Create a Page or ask its admin for a role, then connect again (grant pages_show_list and pages_manage_posts)."),
    ),
)
