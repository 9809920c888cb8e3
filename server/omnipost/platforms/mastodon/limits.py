"""A Mastodon instance's limits: what its `GET /api/v2/instance` says, stored on each account of that instance.

Every instance sets its own status length, attachment count, media sizes and description length; the stock values
(a Mastodon 4.x instance that changed nothing; platforms.md §10, the Mastodon API 4.7.0 OpenAPI document's Instance
example) apply when an account is not known or carries no limits. The connect flow reads the instance once and
stores `defaults_entry(from_instance(...))` under `defaults["mastodonInstance"]`; the preflight rules read it back
through `limits_of(account)`, so the same text passes on a 5000-character instance and fails on a 500 one.

Parsing never fails: an instance answer (or a stored entry) with a missing, ill-typed or non-positive value keeps
the stock value for that field only.
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from omnipost.preflight.model import AccountInfo

DEFAULTS_KEY = "mastodonInstance"
"""The key of an account's defaults that holds its instance's limits (`defaults_entry`)."""

MiB = 1024 * 1024

STOCK_MIME_TYPES: tuple[str, ...] = (
    "image/jpeg", "image/png", "image/gif", "image/heic", "image/heif", "image/webp", "image/avif",
    "video/webm", "video/mp4", "video/quicktime", "video/ogg",
    "audio/wave", "audio/wav", "audio/x-wav", "audio/x-pn-wave", "audio/vnd.wave", "audio/ogg", "audio/vorbis",
    "audio/mpeg", "audio/mp3", "audio/webm", "audio/flac", "audio/aac", "audio/m4a", "audio/x-m4a", "audio/mp4",
    "audio/3gpp", "video/x-ms-asf",
)
"""A stock 4.x instance's `configuration.media_attachments.supported_mime_types` (OpenAPI Instance example)."""


class InstanceLimits(BaseModel):
    """One instance's posting limits (camelCase: this is the stored shape). `url` and `checkedAt` are None for the
    stock limits; every other field always has a value (the stock one when the instance did not say)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str | None = None  # the instance's base URL, e.g. https://mastodon.social
    checkedAt: str | None = None  # ISO-8601 time the instance was read
    maxCharacters: int = 500
    charactersReservedPerUrl: int = 23
    maxMediaAttachments: int = 4
    supportedMimeTypes: tuple[str, ...] = STOCK_MIME_TYPES
    imageSizeLimit: int = 16 * MiB
    imageMatrixLimit: int = 33_177_600  # pixels (7680×4320)
    videoSizeLimit: int = 99 * MiB
    videoMatrixLimit: int = 8_294_400  # pixels (3840×2160)
    videoFrameRateLimit: int | None = 120
    descriptionLimit: int = 1500
    pollMaxOptions: int = 4
    pollMaxCharactersPerOption: int = 50
    pollMinExpiration: int = 300  # seconds
    pollMaxExpiration: int = 2_629_746  # seconds

    @property
    def host(self) -> str | None:
        """The instance's host name (None for the stock limits)."""
        if self.url is None:
            return None
        rest = self.url.split("://", 1)[-1]
        return rest.split("/", 1)[0] or None


STOCK = InstanceLimits()
"""A stock instance's limits: what applies without an account or stored limits."""

# (field, section of `configuration`, key in that section), for every limit `GET /api/v2/instance` reports.
_FROM_INSTANCE: tuple[tuple[str, str, str], ...] = (
    ("maxCharacters", "statuses", "max_characters"),
    ("charactersReservedPerUrl", "statuses", "characters_reserved_per_url"),
    ("maxMediaAttachments", "statuses", "max_media_attachments"),
    ("supportedMimeTypes", "media_attachments", "supported_mime_types"),
    ("imageSizeLimit", "media_attachments", "image_size_limit"),
    ("imageMatrixLimit", "media_attachments", "image_matrix_limit"),
    ("videoSizeLimit", "media_attachments", "video_size_limit"),
    ("videoMatrixLimit", "media_attachments", "video_matrix_limit"),
    ("videoFrameRateLimit", "media_attachments", "video_frame_rate_limit"),
    ("descriptionLimit", "media_attachments", "description_limit"),
    ("pollMaxOptions", "polls", "max_options"),
    ("pollMaxCharactersPerOption", "polls", "max_characters_per_option"),
    ("pollMinExpiration", "polls", "min_expiration"),
    ("pollMaxExpiration", "polls", "max_expiration"),
)


def _clean(name: str, value: Any) -> Any:
    """`value` if it is a usable value of field `name`, else None (the stock value stays)."""
    if name in ("url", "checkedAt"):
        return value if isinstance(value, str) and value else None
    if name == "supportedMimeTypes":
        if isinstance(value, (list, tuple)):
            mimes = tuple(v.strip().lower() for v in value if isinstance(v, str) and "/" in v)  # pyright: ignore[reportUnknownVariableType]
            return mimes or None
        return None
    # A count, a size or a duration: a positive integer (a bool is not one; 120.0 from a JSON float is).
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _lenient(values: dict[str, Any]) -> InstanceLimits:
    """InstanceLimits from `values`, keeping the stock value of each field that is missing or unusable."""
    fields: dict[str, Any] = {}
    for name in InstanceLimits.model_fields:
        if (value := _clean(name, values.get(name))) is not None:
            fields[name] = value
    try:
        return InstanceLimits(**fields)
    except ValidationError:  # cannot happen for cleaned values; stock rather than a crash if it ever does
        return STOCK


def _section(instance: Any, name: str) -> dict[str, Any]:
    configuration = instance.get("configuration") if isinstance(instance, dict) else None
    section = configuration.get(name) if isinstance(configuration, dict) else None
    return section if isinstance(section, dict) else {}


def from_instance(url: str, instance: dict[str, Any], checked_at: datetime) -> InstanceLimits:
    """The limits in a `GET /api/v2/instance` answer (`configuration.statuses`, `.media_attachments`, `.polls`) of the
    instance at `url`, read at `checked_at`. Missing or ill-typed values are the stock ones; it never raises."""
    values: dict[str, Any] = {"url": url.rstrip("/"), "checkedAt": checked_at.isoformat()}
    for name, section, key in _FROM_INSTANCE:
        values[name] = _section(instance, section).get(key)
    return _lenient(values)


def defaults_entry(limits: InstanceLimits) -> dict[str, Any]:
    """What an account stores under `defaults["mastodonInstance"]` (JSON: lists, not tuples)."""
    return limits.model_dump(mode="json")


# Every Mastodon rule reads its target's limits: one parse per stored entry object, not one per rule. Keyed by the
# entry's id, holding the entry itself so the id cannot be reused while cached; bounded.
_PARSED: dict[int, tuple[dict[str, Any], InstanceLimits]] = {}


def limits_of(account: AccountInfo | None) -> InstanceLimits:
    """The limits of the account's instance: the stock ones when there is no account or it stores none."""
    entry = account.defaults.get(DEFAULTS_KEY) if account is not None else None
    if not isinstance(entry, dict):
        return STOCK
    cached = _PARSED.get(id(entry))  # pyright: ignore[reportUnknownArgumentType]
    if cached is not None and cached[0] is entry:
        return cached[1]
    limits = _lenient(entry)  # pyright: ignore[reportUnknownArgumentType]
    if len(_PARSED) >= 256:
        _PARSED.clear()
    _PARSED[id(entry)] = (entry, limits)  # pyright: ignore[reportUnknownArgumentType]
    return limits
