"""Bluesky: the createRecord body for an app.bsky.feed.post record (the validate_post preview; the adapter
sends the same body with its placeholders filled in)."""

from typing import Annotated, Any

from pydantic import Field

from omnipost.platforms.common import is_video, pending
from omnipost.preflight.facets import LINK, MENTION, detect_facets, detect_mentions
from omnipost.preflight.model import MediaRef, ResolvedTarget
from omnipost.platforms.bluesky.lexicon import EXTERNAL, POST
from omnipost.platforms.models import Strict


def _aspect(m: MediaRef) -> dict[str, int] | None:
    if m.facts is not None and m.facts.width and m.facts.height:
        return {"width": m.facts.width, "height": m.facts.height}
    return None


def _embed(media: tuple[MediaRef, ...]) -> dict[str, Any] | None:
    if not media:
        return None
    if is_video(media[0]):
        m = media[0]
        embed: dict[str, Any] = {"$type": "app.bsky.embed.video", "video": pending(f"blob of media[{m.index}] from uploadVideo")}
        if m.alt_text:
            embed["alt"] = m.alt_text
        if (ratio := _aspect(m)) is not None:
            embed["aspectRatio"] = ratio
        return embed
    images: list[dict[str, Any]] = []
    for m in media:
        image: dict[str, Any] = {"image": pending(f"blob of media[{m.index}] from uploadBlob"), "alt": m.alt_text or ""}
        if (ratio := _aspect(m)) is not None:
            image["aspectRatio"] = ratio
        images.append(image)
    return {"$type": "app.bsky.embed.images", "images": images}


def _mention_facets(text: str) -> list[dict[str, Any]]:
    """Mention facets whose DID is resolved at publish time (unresolved handles are then dropped)."""
    return [{"index": {"byteStart": m["byteStart"], "byteEnd": m["byteEnd"]},
             "features": [{"$type": MENTION, "did": pending(f"DID of @{m['handle']}, resolved at publish; dropped if it does not resolve")}]}
            for m in detect_mentions(text)]


def _first_link(facets: list[dict[str, Any]]) -> str | None:
    for facet in facets:
        for feature in facet["features"]:
            if feature.get("$type") == LINK:
                return str(feature["uri"])
    return None


def _card(uri: str) -> dict[str, Any]:
    return {"$type": EXTERNAL, "external": {
        "uri": uri,
        "title": pending("the page's og:title (or <title>)"),
        "description": pending("the page's og:description"),
        "thumb": pending("blob of the page's og:image from uploadBlob, when it has one; no card if the page cannot be fetched"),
    }}


def build_record(text: str, media: tuple[MediaRef, ...] = (), langs: list[str] | None = None) -> dict[str, Any]:
    """The app.bsky.feed.post record, with link, tag and mention facets in UTF-8 byte offsets.

    Without media, the first link gets a link card (app.bsky.embed.external).
    """
    record: dict[str, Any] = {"$type": POST, "text": text, "createdAt": pending("publish time, ISO-8601 UTC")}
    facets = sorted(detect_facets(text) + _mention_facets(text), key=lambda f: f["index"]["byteStart"])
    if facets:
        record["facets"] = facets
    if langs:
        record["langs"] = langs
    embed = _embed(media)
    if embed is None and (uri := _first_link(facets)) is not None:
        embed = _card(uri)
    if embed is not None:
        record["embed"] = embed
    return record


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The createRecord request body for the target's first post."""
    repo = t.account.defaults.get("did") if t.account else None
    return {
        "repo": repo or pending("account DID"),
        "collection": POST,
        "rkey": pending("record key derived from the post id"),
        "record": build_record(t.text, t.media, t.options.get("langs")),
    }


class BlueskyOptions(Strict):
    """Bluesky-only options."""

    langs: list[Annotated[str, Field(min_length=2, max_length=35)]] | None = Field(
        default=None, max_length=3, description="Up to 3 BCP-47 language tags."
    )
