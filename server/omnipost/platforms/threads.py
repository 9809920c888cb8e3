"""Threads: the POST /{user-id}/threads container parameters, and its publish options model."""

from typing import Any

from pydantic import Field

from omnipost.platforms.common import is_video, media_url, pending
from omnipost.preflight.model import ResolvedTarget
from omnipost.platforms.models import Strict


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """Container parameters for the target's first post (a carousel lists its child containers)."""
    body: dict[str, Any]
    if not t.media:
        body = {"media_type": "TEXT", "text": t.text}
    elif len(t.media) == 1:
        m = t.media[0]
        body = {"media_type": "VIDEO", "video_url": media_url(m)} if is_video(m) else {"media_type": "IMAGE", "image_url": media_url(m)}
        body["text"] = t.text
        if m.alt_text:
            body["alt_text"] = m.alt_text
    else:
        body = {
            "media_type": "CAROUSEL",
            "children": ",".join(pending(f"container id of media[{m.index}]") for m in t.media),
            "text": t.text,
        }
    if t.options.get("replyToId"):
        body["reply_to_id"] = t.options["replyToId"]
    return body


class ThreadsOptions(Strict):
    """Threads options."""

    replyToId: str | None = Field(default=None, min_length=1, max_length=64, description="Threads media id to reply to.")
