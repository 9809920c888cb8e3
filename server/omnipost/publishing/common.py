"""What every part of publishing shares: stored targets and their public views, the result of one try,
the media port."""

import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from omnipost.domain import Platform
from omnipost.validation import Warning_
from omnipost.outputs import TargetOutcome
from omnipost.errors import (
    AppError,
    ErrorObject,
)
from omnipost.media.probe import MediaFacts
from omnipost.platforms.base import MediaFile, Published, PublishJob
from omnipost.platforms.calls import MAX_BODY
from omnipost.preflight.model import AccountInfo, MediaRef, ResolvedTarget
from omnipost.store.models import Post

Progress = Callable[[int, int, str], Awaitable[None]]


def normalise(text: str) -> str:
    """Whitespace-insensitive form of a text, for duplicate detection."""
    return re.sub(r"\s+", " ", text).strip()


def text_hash(text: str) -> str:
    """Hash of the normalised text."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()


# ------------------------------------------------------------------ serialising resolved targets


def dump_target(t: ResolvedTarget, media_ids: dict[int, str]) -> dict[str, Any]:
    """A resolved target as JSON for the post row (media as uploaded ids), so recovery can rebuild it."""
    return {
        "platform": t.platform.value, "text": t.text, "firstComment": t.first_comment, "thread": list(t.thread),
        "title": t.title, "visibility": t.visibility, "options": t.options,
        "media": [{"index": m.index, "mediaId": media_ids.get(m.index, m.media_id), "url": m.url, "altText": m.alt_text}
                  for m in t.media],
    }


def load_target(position: int, content: dict[str, Any], account: AccountInfo | None, facts: dict[str, MediaFacts]) -> ResolvedTarget:
    """Rebuild the ResolvedTarget stored on a post row."""
    media = tuple(
        MediaRef(index=m["index"], source="mediaId" if m.get("mediaId") else "url", alt_text=m.get("altText"),
                 facts=facts.get(m.get("mediaId") or ""), media_id=m.get("mediaId"), url=m.get("url"))
        for m in content.get("media", [])
    )
    return ResolvedTarget(index=position, platform=Platform(content["platform"]), account=account, text=content["text"],
                          media=media, first_comment=content.get("firstComment"), thread=tuple(content.get("thread") or ()),
                          title=content.get("title"), visibility=content.get("visibility"), options=dict(content.get("options") or {}))


def outcome(post: Post) -> TargetOutcome:
    """The public view of a post row."""
    return TargetOutcome(
        postId=post.id, accountId=post.account_id, platform=post.platform, status=post.status, upstreamId=post.upstream_id,
        url=post.url, extras=dict(post.extras or {}), firstComment=list(post.first_comment_ids or []),
        thread=list(post.thread_ids or []),
        warnings=[Warning_(**w) for w in post.warnings or []],
        error=ErrorObject(**post.error) if post.error else None,
    )


def batch_status(statuses: Sequence[str], mode: str) -> str:
    """published (all), failed (none), partial_failed (some); drafts and in-flight batches say so."""
    if mode == "draft" and all(s == "draft" for s in statuses):
        return "draft"
    if any(s in ("validated", "publishing", "processing") for s in statuses):
        return "publishing"
    if any(s == "queued" for s in statuses):
        return "queued"
    if statuses and all(s == "cancelled" for s in statuses):
        return "cancelled"
    published = sum(s == "published" for s in statuses)
    if published == len(statuses):
        return "published"
    return "failed" if published == 0 else "partial_failed"


@dataclass
class MediaPort:
    """What publishing needs from the media service (materialise URLs/bytes, facts of an id)."""

    upload: Callable[..., Awaitable[Any]]
    facts_of: Callable[[str, str], Awaitable[MediaFacts | None]]
    file_of: Callable[[str, str], Awaitable[MediaFile | None]]
    check_url: Callable[[str], Awaitable[None]] | None = None  # raises MediaError when a URL is not reachable
    hosting: Any = None  # media.host.MediaHosting: which files a platform that fetches by URL can be handed


@dataclass
class Result:
    """The outcome of one upstream try, before it is written."""

    post_id: str
    attempt_id: str | None
    published: Published | None
    error: AppError | None
    outcome: str  # the attempt's outcome
    status: str  # the post's new status
    will_retry: bool = False
    pieces: dict[str, Any] | None = None  # the ledger after the try, written with the result (None: left as it is)
    check_at: datetime | None = None  # processing: when a worker checks it again (the post's next_attempt_at)


def _event_data(post: Post) -> dict[str, Any]:
    """The identifying part of every post.* webhook payload."""
    return {"postId": post.id, "batchId": post.batch_id, "accountId": post.account_id, "platform": post.platform}


def _whole(found: Published, job: PublishJob) -> bool:
    """Whether what `find` found holds every piece of the target: each thread part and the first comment."""
    return len(found.thread_ids) >= len(job.target.thread) and (not job.target.first_comment or bool(found.first_comment_ids))


def _clip(body: Any) -> str | None:
    if body is None:
        return None
    import json

    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text[:MAX_BODY]
