"""LinkedIn: the POST /rest/posts body, with commentary in "little text" format, and its publish options model."""

import re
from typing import Any

from pydantic import Field

from omnipost.platforms.common import is_video, pending
from omnipost.preflight.model import ResolvedTarget
from omnipost.platforms.models import Strict

# LinkedIn silently truncates commentary at the first unescaped reserved character.
# A '#' that starts a hashtag is kept (it is meant as one); every other reserved char is escaped.
_RESERVED = re.compile(r"(?P<tag>(?<![\w#])#(?=\w))|(?P<ch>[\\|{}@\[\]()<>*_~#])")
_URL = re.compile(r"https?://\S+")


def escape_little_text(text: str) -> str:
    """Backslash-escape little-text reserved characters, leaving URLs and #hashtags intact."""
    out: list[str] = []
    pos = 0
    for m in _URL.finditer(text):
        out.append(_escape_plain(text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def _escape_plain(chunk: str) -> str:
    return _RESERVED.sub(lambda m: m.group("tag") or "\\" + m.group("ch"), chunk)


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The POST /rest/posts request body for the target."""
    visibility = t.options.get("visibility") or {"public": "PUBLIC", "connections_only": "CONNECTIONS", "logged_in": "LOGGED_IN"}.get(
        t.visibility or "public", "PUBLIC"
    )
    author = t.account.defaults.get("authorUrn") if t.account else None
    body: dict[str, Any] = {
        "author": author or pending("author URN of the account"),
        "commentary": escape_little_text(t.text),
        "visibility": visibility,
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }
    if len(t.media) == 1:
        m = t.media[0]
        kind = "video" if is_video(m) else "image"
        media: dict[str, Any] = {"id": pending(f"urn:li:{kind} of media[{m.index}]")}
        if t.title:
            media["title"] = t.title
        if m.alt_text and kind == "image":
            media["altText"] = m.alt_text
        body["content"] = {"media": media}
    elif len(t.media) > 1:
        body["content"] = {
            "multiImage": {
                "images": [
                    {"id": pending(f"urn:li:image of media[{m.index}]"), **({"altText": m.alt_text} if m.alt_text else {})}
                    for m in t.media
                ]
            }
        }
    return body


class LinkedInOptions(Strict):
    """LinkedIn-only options."""

    visibility: str | None = Field(default=None, description="PUBLIC, CONNECTIONS or LOGGED_IN.")
