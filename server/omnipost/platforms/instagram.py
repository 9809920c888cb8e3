"""Instagram: the POST /{ig-user-id}/media container parameters, and its publish options model."""

from typing import Any, Literal

from pydantic import Field

from omnipost.platforms.common import is_video, media_url, pending
from omnipost.preflight.model import ResolvedTarget
from omnipost.platforms.models import Strict


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """Container parameters for the target (a carousel lists its child containers)."""
    kind = t.options.get("contentType") or "feed"
    if not t.media:
        return {"caption": t.text}
    m = t.media[0]
    source = {"video_url": media_url(m)} if is_video(m) else {"image_url": media_url(m)}
    if kind == "story":
        return {"media_type": "STORIES", **source}
    if kind == "reel":
        return {"media_type": "REELS", **source, "caption": t.text, "share_to_feed": True}
    if len(t.media) > 1:
        return {
            "media_type": "CAROUSEL",
            "children": ",".join(pending(f"container id of media[{c.index}]") for c in t.media),
            "caption": t.text,
        }
    body: dict[str, Any] = {**source, "caption": t.text}
    if is_video(m):
        body["media_type"] = "REELS"
    if m.alt_text:
        body["alt_text"] = m.alt_text
    return body


class InstagramOptions(Strict):
    """Instagram options."""

    contentType: Literal["feed", "story", "reel"] | None = Field(default=None, description="feed (default), story or reel.")
