"""The post request (PRODUCT.md §2.1): one pydantic model shared by every tool that takes a post.

Field names are the wire names (camelCase), so a validation error's location is already the
JSON path the model sent (`targets[3].media[0].url`). Unknown fields are refused rather than
ignored: a misspelt option would otherwise be dropped silently.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, create_model, model_validator

from omnipost.domain import DISPLAY_NAME, OPTION_KEY, PLATFORM_ALIASES, Platform
from omnipost.platforms.models import Strict as _Strict
from omnipost.platforms.registry import PLATFORMS

GenericVisibility = Literal["public", "private", "connections_only", "logged_in"]


def _platform_alias(value: Any) -> Any:
    """Accept "twitter" as another name for X, and any letter case."""
    if isinstance(value, str):
        return PLATFORM_ALIASES.get(value.strip().lower(), value)
    return value


PlatformId = Annotated[Platform, BeforeValidator(_platform_alias)]


class MediaItem(_Strict):
    """Exactly one of mediaId (preferred), url or bytesBase64."""

    mediaId: str | None = Field(default=None, min_length=1, max_length=64, description="From upload_media (med_…).")
    url: str | None = Field(default=None, min_length=1, max_length=4096, description="Public http(s) URL.")
    bytesBase64: str | None = Field(default=None, min_length=1, description="Base64 file bytes (small files).")
    altText: str | None = Field(default=None, description="For screen readers.")

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
    Field(max_length=50, description="Follow-up posts, as a reply chain (Bluesky, X, Threads)."),
]


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
        default=None, description="Posted as the first reply, where the platform allows."
    )
    thread: ThreadList | None = None
    title: str | None = Field(default=None, description="Title (LinkedIn articles, Pinterest, YouTube).")
    visibility: GenericVisibility | None = Field(
        default=None, description="Audience, mapped to each platform's values."
    )


class _PlatformOverridesBase(_Strict):
    def for_platform(self, platform: Platform) -> _Content | None:
        """The override object for one platform (under its id or an alias: X accepts `x` or `twitter`)."""
        return next((o for key in _aliases(platform) if (o := getattr(self, key, None)) is not None), None)


def _aliases(platform: Platform) -> list[str]:
    return [name for name, p in PLATFORM_ALIASES.items() if p is platform]


class _Destination(_Content):
    accountId: str | None = Field(default=None, min_length=1, max_length=64, description="Connected account (acc_…).")
    platform: PlatformId | None = Field(default=None, description="Platform to validate for when no account is named.")

    @model_validator(mode="after")
    def _names_a_destination(self) -> "_Destination":
        if self.accountId is None and self.platform is None:
            raise ValueError("name an accountId, or a platform to validate without an account")
        return self


# The per-platform fields come from the registry (platforms/registry.py), in its order: a target's option object
# per platform, and per-platform override objects given once at top level, which are the common content fields
# plus that platform's own option fields, flattened ({"instagram": {"contentType": "reel"}}).
_OPTIONS = [(Platform(p), spec.options) for p, spec in PLATFORMS.items() if spec.options is not None]


def _override(platform: Platform, options: type[BaseModel]) -> type[_Content]:
    name = options.__name__.removesuffix("Options") + "Override"
    return create_model(name, __base__=(_Content, options), __doc__=f"Overrides for every {DISPLAY_NAME[platform]} target.",
                        __module__=__name__)


_OVERRIDES = [(platform, _override(platform, options)) for platform, options in _OPTIONS]

PlatformOverrides = create_model(
    "PlatformOverrides", __base__=_PlatformOverridesBase, __module__=__name__,
    __doc__="Per-platform overrides, folded into every target of that platform; a target's own values win.",
    **{key: (override | None, None) for platform, override in _OVERRIDES for key in _aliases(platform)},
)

Target = create_model(
    "Target", __base__=_Destination, __module__=__name__,
    __doc__="One destination: an account, or (for validation without accounts) just a platform.",
    **{OPTION_KEY[platform]: (options | None, None) for platform, options in _OPTIONS},
    tiktok=(TiktokOptions | None, None),
    youtube=(YoutubeOptions | None, None),
)
OPTION_OBJECTS: tuple[str, ...] = tuple(k for k in Target.model_fields if k not in _Destination.model_fields)
"""The per-platform option objects a target may carry (bluesky, twitter, ..., tiktok, youtube)."""


ScheduledAt = Annotated[str, Field(description="ISO-8601 time to publish at (at least 1 s ahead).")]
Timezone = Annotated[str, Field(description="IANA zone for a scheduledAt without offset (default UTC).")]
ProfileId = Annotated[str, Field(min_length=1, max_length=64, description="Id or name (default profile if omitted).")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=128, description="Same key + same body = same answer.")]
SkipDuplicates = Annotated[bool, Field(description="Allow the same text to the same account within 24 h.")]
Campaign = Annotated[str, Field(min_length=1, max_length=64)]  # the name says it (the context budget)


class _PostBody(_Content):
    """What every post tool takes: the content, the targets and the per-platform overrides.

    Each tool has its own request model below with exactly the fields it accepts (an unknown field is refused, so a
    field a tool does not take is a validation error, not silently ignored); as_post_request() gives the services
    the one full PostRequest they work on.
    """

    targets: list[Target] = Field(min_length=1, max_length=25, description="1 to 25 destinations.")
    platforms: PlatformOverrides | None = Field(
        default=None, description='Overrides per platform, e.g. {"x": {"text": "..."}, "instagram": {"contentType": "reel"}}.'
    )

    def as_post_request(self) -> "PostRequest":
        """This request as the full PostRequest (the fields this tool does not take unset)."""
        if isinstance(self, PostRequest):
            return self
        return PostRequest.model_construct(_fields_set=set(self.model_fields_set),
                                           **{name: getattr(self, name) for name in type(self).model_fields})


class PostRequest(_PostBody):
    """publish_post's request, and the full request every service takes: any mode (now, scheduled, draft, dry run).
    Top-level text/media/firstComment are defaults for targets that omit them."""

    scheduledAt: ScheduledAt | None = None
    timezone: Timezone | None = None
    publishNow: bool | None = Field(default=None, description="Publish immediately (the default mode).")
    draft: bool | None = Field(default=None, description="Store as a draft; publish later.")
    dryRun: bool | None = Field(default=None, description="Run every check, publish nothing.")
    idempotencyKey: IdempotencyKey | None = None
    profileId: ProfileId | None = None
    skipDuplicateCheck: SkipDuplicates | None = None
    campaign: Campaign | None = None


class ScheduleRequest(_PostBody):
    """schedule_post's request: scheduledAt is required; no publishNow, draft or dryRun (they are other modes)."""

    scheduledAt: ScheduledAt
    timezone: Timezone | None = None
    idempotencyKey: IdempotencyKey | None = None
    profileId: ProfileId | None = None
    skipDuplicateCheck: SkipDuplicates | None = None
    campaign: Campaign | None = None


class BulkItem(_PostBody):
    """One item of schedule_posts: a schedule_post request without the call-wide idempotencyKey and profileId."""

    scheduledAt: ScheduledAt
    timezone: Timezone | None = None
    skipDuplicateCheck: SkipDuplicates | None = None
    campaign: Campaign | None = None

    def as_schedule(self, profile_id: str | None) -> ScheduleRequest:
        """The item as the schedule_post request it stands for."""
        return ScheduleRequest.model_construct(_fields_set=set(self.model_fields_set) | {"profileId"}, profileId=profile_id,
                                               **{name: getattr(self, name) for name in type(self).model_fields})


class BulkRequest(_Strict):
    """schedule_posts' request. Items stay raw here: each is validated on its own (one bad item fails alone, its errors
    at items[i]...)."""

    items: list[dict[str, Any]] = Field(min_length=1, max_length=100)
    atomic: bool | None = None
    dryRun: bool | None = None
    campaign: Campaign | None = None
    idempotencyKey: IdempotencyKey | None = None
    profileId: ProfileId | None = None


class _UpdateBase(_Content):
    """update_post's request: the post or batch, and only the fields to change (a field sent as null is removed)."""

    id: str = Field(min_length=1, max_length=64)
    scheduledAt: ScheduledAt | None = None
    timezone: Timezone | None = None
    campaign: Campaign | None = None
    skipDuplicateCheck: SkipDuplicates | None = None
    idempotencyKey: IdempotencyKey | None = None
    profileId: ProfileId | None = None


UpdateRequest = create_model(
    "UpdateRequest", __base__=_UpdateBase, __module__=__name__, __doc__=_UpdateBase.__doc__,
    **{OPTION_KEY[platform]: (options | None, None) for platform, options in _OPTIONS},
    tiktok=(TiktokOptions | None, None),
    youtube=(YoutubeOptions | None, None),
)


class ValidateRequest(_PostBody):
    """validate_post's request: a post and, optionally, the time it would be scheduled at. Nothing is stored, so
    there is no idempotencyKey, draft, publishNow, dryRun or skipDuplicateCheck."""

    scheduledAt: ScheduledAt | None = None
    timezone: Timezone | None = None
    profileId: ProfileId | None = None
