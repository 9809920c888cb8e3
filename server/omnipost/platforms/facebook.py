"""Facebook Pages: the Graph API body for /feed, /photos or /videos, and its publish options model."""

from typing import Any, Literal

from pydantic import Field

from omnipost.platforms.common import is_video, media_url, pending
from omnipost.preflight.model import ResolvedTarget
from omnipost.platforms.models import Strict


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The publish call's parameters for the target."""
    if not t.media:
        return {"message": t.text, "published": True}
    if is_video(t.media[0]):
        m = t.media[0]
        return {"description": t.text, "file_url": media_url(m)} if m.url else {"description": t.text, "source": pending(f"bytes of media[{m.index}]")}
    if len(t.media) == 1:
        m = t.media[0]
        body: dict[str, Any] = {"message": t.text, "published": True}
        body.update({"url": m.url} if m.url else {"source": pending(f"bytes of media[{m.index}]")})
        return body
    return {
        "message": t.text,
        "attached_media": [{"media_fbid": pending(f"unpublished photo id of media[{m.index}]")} for m in t.media],
        "published": True,
    }


class FacebookOptions(Strict):
    """Facebook Page options."""

    videoType: Literal["video", "reel"] | None = Field(default=None, description="How a video is published.")
