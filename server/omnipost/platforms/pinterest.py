"""Pinterest: the POST /v5/pins body, and its publish options model."""

from typing import Any

from pydantic import Field

from omnipost.platforms.common import pending
from omnipost.preflight.model import ResolvedTarget
from omnipost.platforms.models import Strict


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The POST /v5/pins request body for the target."""
    board = t.options.get("boardId") or (t.account.defaults.get("boardId") if t.account else None)
    body: dict[str, Any] = {"board_id": board or pending("board id")}
    if t.title:
        body["title"] = t.title
    if t.text:
        body["description"] = t.text
    if t.options.get("destinationUrl"):
        body["link"] = t.options["destinationUrl"]
    if t.media:
        m = t.media[0]
        if m.alt_text:
            body["alt_text"] = m.alt_text
        if m.url is not None:
            body["media_source"] = {"source_type": "image_url", "url": m.url}
        else:
            mime = m.facts.mime if m.facts else pending("content type")
            body["media_source"] = {"source_type": "image_base64", "content_type": mime, "data": pending(f"base64 of media[{m.index}]")}
    return body


class PinterestOptions(Strict):
    """Pinterest options."""

    boardId: str | None = Field(default=None, min_length=1, max_length=64, description="Board to pin to (else the account default).")
    destinationUrl: str | None = Field(default=None, min_length=1, description="Click-through link of the pin.")
    title: str | None = Field(default=None, description="Pin title.")
