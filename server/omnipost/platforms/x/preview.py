"""X: the POST /2/tweets body validate_post previews, and the publish options model."""

from typing import Any, Literal

from pydantic import Field

from omnipost.platforms.common import pending
from omnipost.preflight.model import ResolvedTarget
from omnipost.platforms.models import Strict


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The POST /2/tweets request body for the target's first post."""
    body: dict[str, Any] = {"text": t.text}
    if t.media:
        body["media"] = {"media_ids": [pending(f"media id of media[{m.index}] from /2/media/upload") for m in t.media]}
    if t.options.get("replySettings"):
        body["reply_settings"] = t.options["replySettings"]
    return body


class TwitterOptions(Strict):
    """X-only options."""

    replySettings: Literal["following", "mentionedUsers", "subscribers", "verified"] | None = Field(
        default=None, description="Who may reply; omit for everyone."
    )
