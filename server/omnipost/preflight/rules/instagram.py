"""Instagram limits, from Meta's Content Publishing API docs (platforms.md §5, checked 2026-11-24)."""

from collections.abc import Iterable

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules, ResolvedTarget, Violation
from omnipost.preflight.text import UTF16

SRC = c.Source(
    name="Instagram",
    doc_url="https://developers.facebook.com/docs/instagram-platform/content-publishing",
    source="Instagram Content Publishing API: caption 2200, carousel 2–10, JPEG images ≤ 8 MB with aspect 4:5–1.91:1, "
    "video/reel MP4/MOV ≤ 1 GB, media pulled from a public URL, containers expire after 24 h",
    checked="2026-11-24",
)

TEXT_LIMIT = 2200


def _check_reel(t: ResolvedTarget) -> Iterable[Violation]:
    if t.options.get("contentType") != "reel":
        return
    kinds = [m.facts.kind if m.facts else None for m in t.media]
    if len(t.media) != 1 or kinds[0] not in ("video", None):
        yield Violation("instagram.reel.single_video", f"{t.path}.media", f"A reel is exactly one video; {len(t.media)} item(s) attached.",
                        "Attach exactly one video for a reel, or use contentType feed for photos.", len(t.media), 1)


def _check_story(t: ResolvedTarget) -> Iterable[Violation]:
    if t.options.get("contentType") == "story" and len(t.media) > 1:
        yield Violation("instagram.story.single_media", f"{t.path}.media", f"A story is one image or video; {len(t.media)} attached.",
                        "Attach one item per story; publish the others as separate stories.", len(t.media), 1)


INSTAGRAM = PlatformRules(
    platform=Platform.INSTAGRAM,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=UTF16,
    text_limit=TEXT_LIMIT,
    supports_first_comment=True,
    daily_post_cap=50,
    daily_post_cap_source="Instagram content publishing docs (https://developers.facebook.com/docs/instagram-platform/content-publishing): GET /{ig-user-id}/content_publishing_limit config.quota_total (doc example 50, "
    "quota_duration 86400; carousels count as 1); older docs said 25 and some 2026 tools 100 — unconfirmed, read it at runtime",
    daily_post_cap_checked="2026-11-24",
    rules=(
        c.text_max(SRC, "instagram.text.max_graphemes", limit=TEXT_LIMIT, unit=UTF16,
                   note=" (Meta does not publish its unit; UTF-16 code units never undercount it)"),
        c.first_comment_non_empty(SRC, "instagram.first_comment.non_empty"),
        c.first_comment_max(SRC, "instagram.first_comment.max_graphemes", limit=TEXT_LIMIT, unit=UTF16),
        c.media_required(SRC, "instagram.media.required"),
        c.media_count(SRC, "instagram.media.count_max", max_images=10, max_videos=10, max_total=10,
                      summary="An Instagram carousel has 2 to 10 items."),
        c.mime_allowed(SRC, "instagram.media.mime_allowed", mimes=("image/jpeg", "video/mp4", "video/quicktime"),
                       label="Instagram photos are JPEG only; videos and reels are MP4 or MOV."),
        c.size_max(SRC, "instagram.media.image_size_max", kinds=("image", "gif"), max_bytes=8 * c.MB, what="image"),
        c.size_max(SRC, "instagram.media.video_size_max", kinds=("video",), max_bytes=1_000_000_000, what="video or reel"),
        c.aspect_ratio(SRC, "instagram.media.aspect_ratio", min_ratio=(4, 5), max_ratio=(191, 100)),
        c.alt_text_max(SRC, "instagram.media.alt_text_max_graphemes", limit=2200, unit=UTF16),
        c.custom(SRC, "instagram.reel.single_video", check=_check_reel,
                 summary="A reel (contentType reel) is exactly one video.",
                 why="Instagram's REELS container takes one video_url.",
                 remediation="Attach exactly one video, or publish photos with contentType feed.",
                 limit=1, unit="videos",
                 example_fail={"text": "Reel", "instagram": {"contentType": "reel"}, "media": [{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.jpg"}]},
                 example_pass={"text": "Reel", "instagram": {"contentType": "reel"}, "media": [{"url": "https://example.com/clip.mp4"}]}),
        c.custom(SRC, "instagram.story.single_media", check=_check_story,
                 summary="A story (contentType story) is one image or one video.",
                 why="Instagram's STORIES container takes one image_url or video_url.",
                 remediation="Publish one story per media item.",
                 limit=1, unit="media items",
                 example_fail={"instagram": {"contentType": "story"}, "media": [{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.jpg"}]},
                 example_pass={"instagram": {"contentType": "story"}, "media": [{"url": "https://example.com/a.jpg"}]}),
        c.visibility_enum(SRC, "instagram.visibility.enum", mapping={"public": "public"}),
        c.info_rule(SRC, "instagram.media.reachable", stage="deep",
                    summary="Instagram media URLs answer 200 to an anonymous request.",
                    why="Instagram downloads the file itself from the URL you give; a private or broken URL fails the container.",
                    remediation="Use a public https URL (no login, no signed URL that expires before publishing), or upload the file first.",
                    example_fail={"media": [{"url": "https://example.com/missing.jpg"}]},
                    example_pass={"media": [{"url": "https://example.com/photo.jpg"}]}),
        c.info_rule(SRC, "meta.container.expired", stage="upstream",
                    summary="An Instagram or Threads media container must be published within 24 hours.",
                    why="Meta expires unpublished containers after 24 h (status_code EXPIRED).",
                    remediation="Publish again: omnipost re-creates the container."),
    ),
)
