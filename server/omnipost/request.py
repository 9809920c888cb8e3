"""The post request (PRODUCT.md §2.1): one pydantic model shared by every tool that takes a post.

Field names are the wire names (camelCase), so a validation error's location is already the
JSON path the model sent (`targets[3].media[0].url`). Unknown fields are refused rather than
ignored: a misspelt option would otherwise be dropped silently.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from omnipost.domain import PLATFORM_ALIASES, Platform

GenericVisibility = Literal["public", "private", "connections_only", "logged_in"]


def _platform_alias(value: Any) -> Any:
    """Accept "twitter" as another name for X, and any letter case."""
    if isinstance(value, str):
        return PLATFORM_ALIASES.get(value.strip().lower(), value)
    return value


PlatformId = Annotated[Platform, BeforeValidator(_platform_alias)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, populate_by_name=True)


class MediaItem(_Strict):
    """One attachment: exactly one of mediaId, url or bytesBase64, with optional alt text."""

    mediaId: str | None = Field(default=None, min_length=1, max_length=64, description="Id of uploaded media (med_…). Preferred.")
    url: str | None = Field(default=None, min_length=1, max_length=4096, description="Public https URL of the file.")
    bytesBase64: str | None = Field(default=None, min_length=1, description="The file's bytes, base64-encoded (small files only).")
    altText: str | None = Field(default=None, description="Alternative text for screen readers.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "MediaItem":
        given = [n for n in ("mediaId", "url", "bytesBase64") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of mediaId, url or bytesBase64")
        if self.url is not None and not self.url.lower().startswith(("https://", "http://")):
            raise ValueError("url must be an http(s) URL")
        return self


TextField = Annotated[str, Field(max_length=100_000, description="Post text.")]
MediaList = Annotated[list[MediaItem], Field(max_length=35, description="Attachments, in order.")]
ThreadList = Annotated[
    list[Annotated[str, Field(max_length=100_000)]],
    Field(max_length=50, description="Continuation segments published as a reply chain (Bluesky, X, Threads)."),
]


class BlueskyOptions(_Strict):
    """Bluesky-only options."""

    langs: list[Annotated[str, Field(min_length=2, max_length=35)]] | None = Field(
        default=None, max_length=3, description="Up to 3 BCP-47 language tags."
    )


class TwitterOptions(_Strict):
    """X-only options."""

    replySettings: Literal["following", "mentionedUsers", "subscribers", "verified"] | None = Field(
        default=None, description="Who may reply; omit for everyone."
    )


class LinkedInOptions(_Strict):
    """LinkedIn-only options."""

    visibility: str | None = Field(default=None, description="PUBLIC, CONNECTIONS or LOGGED_IN.")


class FacebookOptions(_Strict):
    """Facebook Page options."""

    videoType: Literal["video", "reel"] | None = Field(default=None, description="How a video is published.")


class InstagramOptions(_Strict):
    """Instagram options."""

    contentType: Literal["feed", "story", "reel"] | None = Field(default=None, description="feed (default), story or reel.")


class ThreadsOptions(_Strict):
    """Threads options."""

    replyToId: str | None = Field(default=None, min_length=1, max_length=64, description="Threads media id to reply to.")


class PinterestOptions(_Strict):
    """Pinterest options."""

    boardId: str | None = Field(default=None, min_length=1, max_length=64, description="Board to pin to (else the account default).")
    destinationUrl: str | None = Field(default=None, min_length=1, description="Click-through link of the pin.")
    title: str | None = Field(default=None, description="Pin title.")


class TiktokOptions(_Strict):
    """TikTok options (no TikTok adapter yet; accepted for forward compatibility)."""

    privacyLevel: str | None = None
    allowComments: bool | None = None


class YoutubeOptions(_Strict):
    """YouTube options (no YouTube adapter yet; accepted for forward compatibility)."""

    title: str | None = None
    privacyStatus: Literal["public", "unlisted", "private"] | None = None
    tags: list[str] | None = None


class _Content(_Strict):
    """Fields a target (or a per-platform override) may set for itself."""

    text: TextField | None = None
    media: MediaList | None = None
    firstComment: Annotated[str, Field(max_length=100_000)] | None = Field(
        default=None, description="Posted as a reply to the new post where the platform allows."
    )
    thread: ThreadList | None = None
    title: str | None = Field(default=None, description="Title (LinkedIn articles, Pinterest, YouTube).")
    visibility: GenericVisibility | None = Field(
        default=None, description="Generic audience, mapped to each platform's own values."
    )


# Per-platform override objects given once at top level: the common content fields plus
# that platform's own option fields, flattened ({"instagram": {"contentType": "reel"}}).
class BlueskyOverride(_Content, BlueskyOptions):
    """Overrides for every Bluesky target."""


class TwitterOverride(_Content, TwitterOptions):
    """Overrides for every X target."""


class LinkedInOverride(_Content, LinkedInOptions):
    """Overrides for every LinkedIn target."""


class FacebookOverride(_Content, FacebookOptions):
    """Overrides for every Facebook target."""


class InstagramOverride(_Content, InstagramOptions):
    """Overrides for every Instagram target."""


class ThreadsOverride(_Content, ThreadsOptions):
    """Overrides for every Threads target."""


class PinterestOverride(_Content, PinterestOptions):
    """Overrides for every Pinterest target."""


class PlatformOverrides(_Strict):
    """Per-platform overrides, folded into every target of that platform; a target's own values win."""

    bluesky: BlueskyOverride | None = None
    x: TwitterOverride | None = None
    twitter: TwitterOverride | None = None
    linkedin: LinkedInOverride | None = None
    facebook: FacebookOverride | None = None
    instagram: InstagramOverride | None = None
    threads: ThreadsOverride | None = None
    pinterest: PinterestOverride | None = None

    def for_platform(self, platform: Platform) -> _Content | None:
        """The override object for one platform (X accepts `x` or `twitter`)."""
        if platform is Platform.X:
            return self.x or self.twitter
        return getattr(self, platform.value)


class Target(_Content):
    """One destination: an account, or (for validation without accounts) just a platform."""

    accountId: str | None = Field(default=None, min_length=1, max_length=64, description="Connected account (acc_…).")
    platform: PlatformId | None = Field(default=None, description="Platform to validate for when no account is named.")
    bluesky: BlueskyOptions | None = None
    twitter: TwitterOptions | None = None
    linkedin: LinkedInOptions | None = None
    facebook: FacebookOptions | None = None
    instagram: InstagramOptions | None = None
    threads: ThreadsOptions | None = None
    pinterest: PinterestOptions | None = None
    tiktok: TiktokOptions | None = None
    youtube: YoutubeOptions | None = None

    @model_validator(mode="after")
    def _names_a_destination(self) -> "Target":
        if self.accountId is None and self.platform is None:
            raise ValueError("name an accountId, or a platform to validate without an account")
        return self


class PostRequest(_Content):
    """A post to one or more targets. Top-level text/media/firstComment are defaults for targets that omit them."""

    targets: list[Target] = Field(min_length=1, max_length=25, description="1 to 25 destinations.")
    platforms: PlatformOverrides | None = Field(
        default=None, description='Overrides per platform, e.g. {"x": {"text": "..."}, "instagram": {"contentType": "reel"}}.'
    )
    scheduledAt: str | None = Field(default=None, description="ISO-8601 time to publish at (at least 1 s ahead).")
    timezone: str | None = Field(default=None, description="IANA zone for a scheduledAt without offset (default UTC).")
    publishNow: bool | None = Field(default=None, description="Publish immediately (the default mode).")
    draft: bool | None = Field(default=None, description="Store as a draft; publish later.")
    dryRun: bool | None = Field(default=None, description="Run every check, publish nothing.")
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=128, description="Same key + same body = same answer.")
    profileId: str | None = Field(default=None, min_length=1, max_length=64, description="Workspace (default profile if omitted).")
    skipDuplicateCheck: bool | None = Field(
        default=None, description="Publish even if the same text went to the same account in the last 24 h."
    )
