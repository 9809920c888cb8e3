"""Helpers shared by the request builders: how to name values only known at publish time."""

from omnipost.preflight.model import MediaRef


def pending(what: str) -> str:
    """A value the adapter fills in at publish time (an uploaded blob, an id, the clock)."""
    return f"<{what}>"


def media_url(m: MediaRef) -> str:
    """The public URL a URL-ingest platform would be given for this attachment."""
    if m.url is not None:
        return m.url
    if m.media_id is not None:
        return pending(f"public URL of {m.media_id}")
    return pending(f"public URL of media[{m.index}]")


def is_video(m: MediaRef) -> bool:
    """Whether an attachment is a video (by probed facts, else by a URL's extension)."""
    if m.facts is not None:
        return m.facts.kind == "video"
    return bool(m.url and m.url.lower().split("?")[0].endswith((".mp4", ".mov", ".m4v")))
