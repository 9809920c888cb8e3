"""Mastodon: the POST /api/v1/statuses body (the validate_post preview) and the publish options model.

Every instance is its own server with its own limits (limits.py: read from GET /api/v2/instance at connect, stored
on the account under defaults["mastodonInstance"], applied by preflight/rules/mastodon.py). The request's `title`
is the status's content warning (`spoiler_text`); it counts into the instance's character limit.
Values only known at publish time are `pending(...)` placeholders (the media ids from POST /api/v2/media).
"""

from typing import Any

from pydantic import Field

from omnipost.platforms.common import pending
from omnipost.platforms.models import Strict
from omnipost.preflight.model import ResolvedTarget

# Generic visibility -> Mastodon's (preflight/rules/mastodon.py checks it); a `mastodon.visibility` option wins.
VISIBILITY = {"public": "public", "connections_only": "private", "private": "private"}


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The POST /api/v1/statuses body of the target's first status (sent as JSON, with an Idempotency-Key header).
    Without a visibility the account's own default applies, as in Mastodon's composer."""
    body: dict[str, Any] = {"status": t.text}
    if t.media:
        body["media_ids"] = [pending(f"media id of media[{m.index}] from POST /api/v2/media") for m in t.media]
    visibility = t.options.get("visibility") or (VISIBILITY.get(t.visibility) if t.visibility else None)
    if visibility:
        body["visibility"] = visibility
    if t.title:
        body["spoiler_text"] = t.title
    if t.options.get("sensitive") is not None:
        body["sensitive"] = t.options["sensitive"]
    if t.options.get("language"):
        body["language"] = t.options["language"]
    return body


class MastodonOptions(Strict):
    """Mastodon options."""

    visibility: str | None = Field(default=None, description="public, unlisted, private or direct.")
    language: str | None = Field(default=None, description="ISO 639-1 code.")
    sensitive: bool | None = Field(default=None, description="Hide media behind a warning.")
