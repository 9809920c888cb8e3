"""Tables. Ids are prefixed and sortable (ULID): prf_, acc_, bat_, post_, att_, med_, key_, whk_, msg_."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from omnipost.store.types import UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))



def new_list() -> list[Any]:
    """An empty JSON list column value. A Python function, not the builtin `list`: pydantic inspects a
    default factory's signature on every construction, and a builtin's costs ~50 µs to parse (a Post
    with three such columns took 0.15 ms to build instead of 0.04 ms)."""
    return []


def new_dict() -> dict[str, Any]:
    """An empty JSON object column value (see new_list)."""
    return {}

class Profile(SQLModel, table=True):
    """A workspace: accounts, posts, media and keys belong to one."""

    __tablename__ = "profiles"
    id: str = Field(primary_key=True)
    name: str = Field(unique=True)
    created_at: datetime = _ts()


class Account(SQLModel, table=True):
    """One connected platform identity; credentials are encrypted (store/crypto.py)."""

    __tablename__ = "accounts"
    id: str = Field(primary_key=True)
    profile_id: str = Field(foreign_key="profiles.id", index=True)
    platform: str
    emulates: str | None = None  # sandbox accounts: the real platform whose rules apply
    handle: str
    display_name: str | None = None
    credentials: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    token_expires_at: datetime | None = _ts(nullable=True)
    defaults: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))
    health: str = "active"  # active | needs_reconnect | disconnected
    # Who the account is upstream (Bluesky: its DID; sandbox: its sandbox account id): connecting the same identity
    # again in the same profile updates this account instead of adding a second one. None: connected before v8.
    upstream_identity: str | None = None
    created_at: datetime = _ts()
    disconnected_at: datetime | None = _ts(nullable=True)


class Batch(SQLModel, table=True):
    """One publish request."""

    __tablename__ = "batches"
    id: str = Field(primary_key=True)
    profile_id: str = Field(foreign_key="profiles.id", index=True)
    idempotency_key: str | None = None
    request_hash: str
    mode: str  # immediate | scheduled | draft
    status: str
    created_at: datetime = _ts()
    scheduled_at: datetime | None = _ts(nullable=True)


class Post(SQLModel, table=True):
    """One target of a batch: what is (or was) published to one account."""

    __tablename__ = "posts"
    __table_args__ = (Index("ix_posts_dup", "account_id", "text_hash", "created_at"),
                      Index("ix_posts_status", "status"),
                      Index("ix_posts_due", "status", "next_attempt_at"))
    id: str = Field(primary_key=True)
    batch_id: str = Field(foreign_key="batches.id", index=True)
    profile_id: str = Field(foreign_key="profiles.id", index=True)
    account_id: str = Field(foreign_key="accounts.id", index=True)
    position: int  # index of the target in the request
    platform: str  # the platform whose rules and adapter apply (a sandbox account's is "sandbox")
    status: str
    text: str
    text_hash: str
    content: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))  # resolved target
    upstream_id: str | None = None  # the platform's id of the main post
    url: str | None = None
    # Platform-specific upstream fields (Bluesky: the record's at-uri and cid); {} for the others.
    extras: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))
    first_comment_ids: list[str] = Field(default_factory=new_list, sa_column=Column(JSON, nullable=False))
    thread_ids: list[str] = Field(default_factory=new_list, sa_column=Column(JSON, nullable=False))
    # The pieces ledger (platforms/pieces.py): what of this target exists upstream, piece by piece.
    pieces: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))
    warnings: list[dict[str, Any]] = Field(default_factory=new_list, sa_column=Column(JSON, nullable=False))
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    published_at: datetime | None = _ts(nullable=True)
    next_attempt_at: datetime | None = _ts(nullable=True)  # queued: the scheduled time; failed: when the scheduler retries
    lease_owner: str | None = None  # the scheduler worker that claimed the post
    lease_until: datetime | None = _ts(nullable=True)  # the claim lapses after this (a crashed worker)


class SchedulerHeartbeat(SQLModel, table=True):
    """The last time a scheduler worker ticked (alive = within two ticks)."""

    __tablename__ = "scheduler_heartbeats"
    worker_id: str = Field(primary_key=True)
    seen_at: datetime = _ts()


class Notice(SQLModel, table=True):
    """When a recurring notice (a log warning such as an API version's coming sunset) was last given, so every
    process of one installation gives it at most once a day (versions.py)."""

    __tablename__ = "notices"
    key: str = Field(primary_key=True)
    last_at: datetime = _ts()


class Attempt(SQLModel, table=True):
    """One try at the upstream for a post, committed before the call is made."""

    __tablename__ = "attempts"
    id: str = Field(primary_key=True)
    post_id: str = Field(foreign_key="posts.id", index=True)
    number: int
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
    http_status: int | None = None
    response_body: str | None = None  # secrets redacted, truncated to 2000 characters
    error_code: str | None = None
    outcome: str = "pending"  # pending | published | failed | rejected | unknown | reconciled
    will_retry: bool = False


class Media(SQLModel, table=True):
    """An uploaded file, stored content-addressed under the data directory."""

    __tablename__ = "media"
    id: str = Field(primary_key=True)
    profile_id: str = Field(foreign_key="profiles.id", index=True)
    sha256: str = Field(index=True)
    kind: str
    mime: str
    size: int
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    frames: int | None = None
    alt_text: str | None = None
    filename: str | None = None
    source_url: str | None = None  # the public URL it was fetched from (a platform that fetches by URL may get it)
    mode: str = "live"  # of the key that uploaded it: live | test (a test key sees only test media)
    created_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)


class IdempotencyRecord(SQLModel, table=True):
    """A write's key and body hash, claimed before the write runs; its answer once it has one."""

    __tablename__ = "idempotency"
    __table_args__ = (UniqueConstraint("profile_id", "key", name="uq_idempotency_profile_key"),)
    id: str = Field(primary_key=True)
    profile_id: str = Field(foreign_key="profiles.id")
    key: str
    tool: str
    request_hash: str
    state: str = "in_flight"  # in_flight | done
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    is_error: bool = False
    created_at: datetime = _ts()
    expires_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """A key for the network transports: shown once, stored as a SHA-256 hash."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True)
    name: str | None = None
    prefix: str  # op_live_ or op_test_ plus the first characters, for display
    key_hash: str = Field(unique=True)
    profile_id: str | None = Field(default=None, foreign_key="profiles.id")  # None = org-wide
    mode: str  # live | test
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    last_used_at: datetime | None = _ts(nullable=True)


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives signed event deliveries; its signing secret is encrypted (store/crypto.py)."""

    __tablename__ = "webhook_endpoints"
    id: str = Field(primary_key=True)  # whk_
    profile_id: str = Field(foreign_key="profiles.id", index=True)
    url: str
    events: list[str] = Field(default_factory=new_list, sa_column=Column(JSON, nullable=False))
    secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    mode: str = "live"  # of the key that added it: live | test (a test key sees only test endpoints)
    created_at: datetime = _ts()
    disabled_at: datetime | None = _ts(nullable=True)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: the durable queue entry and, once settled, the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)
    id: str = Field(primary_key=True)  # msg_, sent as the webhook-id header
    endpoint_id: str = Field(foreign_key="webhook_endpoints.id", index=True)
    profile_id: str = Field(foreign_key="profiles.id", index=True)
    event_type: str
    payload: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))  # the exact envelope sent
    status: str = "pending"  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)


class InstanceApp(SQLModel, table=True):
    """omnipost's OAuth app registered on one server a user named (a Mastodon instance), reused by later connects
    there (oauth/apps.py)."""

    __tablename__ = "instance_apps"
    platform: str = Field(primary_key=True)
    instance: str = Field(primary_key=True)  # the server's base URL, as check_base_url normalised it
    redirect_uri: str = Field(primary_key=True)
    scopes: str  # as registered (space-separated): other scopes need another registration
    client_id: str
    client_secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # sealed (store/crypto.py)
    created_at: datetime = _ts()


class ConnectSession(SQLModel, table=True):
    """One OAuth connect started by connect_account (oauth/connect.py), found by its `state`."""

    __tablename__ = "connect_sessions"
    state: str = Field(primary_key=True)
    profile_id: str = Field(index=True)
    platform: str  # whose OAuth provider (x, linkedin, ...)
    target: str  # what the tokens become: "account" (a platform account) or "sandbox" (a sandbox account emulating it)
    redirect_uri: str
    verifier: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the PKCE verifier, sealed (store/crypto.py)
    args: dict[str, Any] = Field(default_factory=new_dict, sa_column=Column(JSON, nullable=False))  # handle, defaults, step args
    status: str = "pending"  # pending | connected | failed | expired
    account_ids: list[Any] = Field(default_factory=new_list, sa_column=Column(JSON, nullable=False))
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
