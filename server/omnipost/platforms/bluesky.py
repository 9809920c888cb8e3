"""Bluesky: the com.atproto.repo.createRecord body for an app.bsky.feed.post record."""

from typing import Any

from omnipost.platforms.common import is_video, pending
from omnipost.preflight.facets import detect_facets
from omnipost.preflight.model import MediaRef, ResolvedTarget


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


def build_record(text: str, media: tuple[MediaRef, ...] = (), langs: list[str] | None = None) -> dict[str, Any]:
    """The app.bsky.feed.post record, with link and tag facets in UTF-8 byte offsets."""
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": pending("publish time, ISO-8601 UTC")}
    facets = detect_facets(text)
    if facets:
        record["facets"] = facets
    if langs:
        record["langs"] = langs
    embed = _embed(media)
    if embed is not None:
        record["embed"] = embed
    return record


def build_post(t: ResolvedTarget) -> dict[str, Any]:
    """The createRecord request body for the target's first post."""
    repo = t.account.defaults.get("did") if t.account else None
    return {
        "repo": repo or pending("account DID"),
        "collection": "app.bsky.feed.post",
        "rkey": pending("record key derived from the post id"),
        "record": build_record(t.text, t.media, t.options.get("langs")),
    }
