"""The public output shapes of the tools: plain pydantic, importable without the database layer
(so the server can register its tools, and answer tools/list, before the store is loaded)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from omnipost.validation import ValidateResult, Warning_
from omnipost.errors import ErrorObject

if TYPE_CHECKING:
    from omnipost.store.models import Account, Media, Profile


class ProfileOut(BaseModel):
    """A workspace."""

    id: str
    name: str
    createdAt: datetime


class AccountOut(BaseModel):
    """A connected account as the client sees it (never its credentials)."""

    id: str
    profileId: str
    platform: str = Field(description="The adapter: a real platform id, or sandbox.")
    emulates: str | None = Field(default=None, description="For sandbox accounts: the platform whose rules apply.")
    handle: str
    displayName: str | None = None
    health: str = Field(description="active, needs_reconnect or disconnected.")
    tokenExpiresAt: datetime | None = None
    defaults: dict[str, Any] = Field(default_factory=lambda: {})
    createdAt: datetime


class DisconnectedOut(AccountOut):
    """disconnect_account's answer: the account (now disconnected) and whether its access was revoked upstream."""

    revoked: bool | Literal["unsupported"] = Field(
        description="true: the platform revoked omnipost's token; false: revoking failed (the account was removed here "
                    "anyway, see warnings); unsupported: the platform offers no revocation.")
    warnings: list[str] = Field(default_factory=lambda: [])


def profile_out(p: "Profile") -> ProfileOut:
    """The public view of a profile."""
    return ProfileOut(id=p.id, name=p.name, createdAt=p.created_at)


def account_out(a: "Account") -> AccountOut:
    """The public view of an account."""
    return AccountOut(id=a.id, profileId=a.profile_id, platform=a.platform, emulates=a.emulates, handle=a.handle,
                      displayName=a.display_name, health=a.health, tokenExpiresAt=a.token_expires_at,
                      defaults=dict(a.defaults or {}), createdAt=a.created_at)


PostStatus = Literal["draft", "validated", "queued", "publishing", "processing", "published", "failed", "rejected",
                     "cancelled", "deleted", "unknown"]
"""Every status a post (one target) can have."""


class TargetOutcome(BaseModel):
    """One target's outcome, in request order."""

    postId: str
    accountId: str
    platform: str
    status: str = Field(description="draft, validated, queued (scheduled), publishing, processing (the platform is still processing a container or video; checked again by the scheduler), published, failed, rejected, cancelled, deleted or unknown (sent, no definite answer: see resolve_post).")
    upstreamId: str | None = Field(default=None, description="The platform's id of the published post.")
    url: str | None = Field(default=None, description="The published post's web address.")
    extras: dict[str, Any] = Field(default_factory=lambda: {}, description=(
        "Platform-specific upstream fields, {} if none. Bluesky: uri (the record's at:// URI) and cid (its content hash)."))
    firstComment: list[str] = Field(default_factory=lambda: [], description="Upstream ids of the first comment.")
    thread: list[str] = Field(default_factory=lambda: [], description="Upstream ids of the thread segments.")
    warnings: list[Warning_] = Field(default_factory=lambda: [])
    error: ErrorObject | None = None


class BatchResult(BaseModel):
    """The batch envelope (PRODUCT §2.4)."""

    id: str
    status: str = Field(description="published, partial_failed, failed, queued, draft or publishing.")
    mode: str
    createdAt: datetime
    scheduledAt: datetime | None = None
    replay: bool = Field(default=False, description="True when this answer was replayed for a repeated idempotencyKey.")
    results: list[TargetOutcome]
    # Advertised as an object: its shape is validate_post's output schema, said there once (seven tools return a batch,
    # and only publish_post's dryRun fills this; written out, it was 880 bytes of each one's schema in tools/list).
    validation: Annotated[ValidateResult | None, WithJsonSchema({"type": ["object", "null"]})] = Field(
        default=None, description="For dryRun: what validate_post reports; nothing was published.")


class BulkItemOut(BaseModel):
    """One item of schedule_posts, in call order."""

    index: int
    status: str = Field(description="queued, invalid (error says why, at items[index]...), valid (dryRun), or "
                                    "partial_failed/failed (a target failed a deep check; error).")
    batchId: str | None = None
    scheduledAt: datetime | None = None
    postIds: list[str] = Field(default_factory=lambda: [])
    error: ErrorObject | None = None
    warnings: list[Warning_] = Field(default_factory=lambda: [])


class BulkResult(BaseModel):
    """schedule_posts' answer: a result per item."""

    status: str = Field(description="queued (every item), partial_failed, failed; dryRun: valid or invalid.")
    queued: int
    invalid: int
    replay: bool = False
    warnings: list[Warning_] = Field(default_factory=lambda: [])
    items: list[BulkItemOut]


class AttemptOut(BaseModel):
    """One try at the upstream."""

    number: int
    startedAt: datetime
    finishedAt: datetime | None
    httpStatus: int | None
    outcome: str
    errorCode: str | None
    willRetry: bool
    response: str | None = Field(description="The upstream body, secrets redacted, at most 2000 characters.")


class RevisionOut(BaseModel):
    """One edit (update_post): the fields it changed and their values before it."""

    number: int
    at: datetime
    fields: list[str]
    before: dict[str, Any]


class PostDetail(TargetOutcome):
    """A post with its text, every attempt and every edit."""

    batchId: str
    text: str
    createdAt: datetime
    updatedAt: datetime
    publishedAt: datetime | None
    scheduledAt: datetime | None = None
    campaign: str | None = None
    attempts: list[AttemptOut]
    revisions: list[RevisionOut] = Field(default_factory=lambda: [])


class PostPage(BaseModel):
    """A page of posts, newest first."""

    posts: list[TargetOutcome]
    nextCursor: str | None = Field(description="Pass as cursor to get the next page; null at the end.")


class MediaOut(BaseModel):
    """An uploaded file."""

    id: str
    kind: str = Field(description="image, gif (animated) or video.")
    mime: str = Field(description="Sniffed from the bytes, never from the name.")
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    duration: float | None = Field(default=None, description="Seconds (video).")
    altText: str | None = None
    filename: str | None = None
    createdAt: datetime


class MediaPage(BaseModel):
    """A page of media, newest first."""

    media: list[MediaOut]
    nextCursor: str | None


def media_out(m: "Media") -> MediaOut:
    """The public view of a media record."""
    return MediaOut(id=m.id, kind=m.kind, mime=m.mime, size=m.size, sha256=m.sha256, width=m.width, height=m.height,
                    duration=m.duration, altText=m.alt_text, filename=m.filename, createdAt=m.created_at)




class ConnectOut(AccountOut):
    """connect_account's answer: the account connected now (as get_account), or, status pending, an OAuth connect
    waiting for the user at authorizationUrl (its account fields empty)."""

    id: str | None = None  # type: ignore[assignment]  # empty while pending
    profileId: str | None = None  # type: ignore[assignment]
    platform: str | None = None  # type: ignore[assignment]
    handle: str | None = None  # type: ignore[assignment]
    health: str | None = None  # type: ignore[assignment]
    createdAt: datetime | None = None  # type: ignore[assignment]
    status: Literal["connected", "pending"] = "connected"
    accountIds: list[str] = Field(default_factory=lambda: [])  # every account connected (Facebook: one per Page)
    state: str | None = None  # pending: complete_connect's argument
    authorizationUrl: str | None = None  # pending: the user opens it and approves
    redirectUri: str | None = None
    expiresAt: datetime | None = None
    opened: bool = False  # pending: the client was asked to open the URL (URL-mode elicitation)


class ConnectStatus(BaseModel):
    """Where an OAuth connect stands."""

    state: str
    platform: str
    status: Literal["pending", "exchanging", "connected", "failed", "expired"]
    expiresAt: datetime
    accounts: list[AccountOut] = Field(default_factory=lambda: [])
    error: dict[str, Any] | None = None


class AccountList(BaseModel):
    """Connected accounts of a profile."""

    accounts: list[AccountOut]


class ProfileList(BaseModel):
    """Profiles the caller can reach."""

    profiles: list[ProfileOut]
