"""The adapter interface every platform implements (sandbox included).

Adapters only translate: no retries, no sleeps, no database, no preflight, and no HTTP client of
their own (one is injected). They raise the PlatformError family from errors.py, built only by
platforms/http.py from statuses and transport exceptions.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from omnipost.preflight.model import ResolvedTarget


@dataclass(frozen=True)
class AccountContext:
    """A connected account as an adapter sees it (credentials decrypted, never logged)."""

    id: str
    platform: str
    handle: str
    credentials: dict[str, Any] = field(repr=False)
    defaults: dict[str, Any] = field(default_factory=lambda: {})
    emulates: str | None = None


@dataclass(frozen=True)
class MediaFile:
    """One attachment ready to send: a stored file and/or a public URL, with its facts."""

    index: int
    mime: str | None
    kind: str | None
    size: int | None
    path: Path | None = None
    url: str | None = None
    width: int | None = None
    height: int | None = None
    alt_text: str | None = None


@dataclass(frozen=True)
class PublishJob:
    """Everything needed to publish one target once."""

    post_id: str
    upstream_key: str  # deterministic id derived from post_id, for platforms that accept one
    account: AccountContext
    target: ResolvedTarget
    media: tuple[MediaFile, ...] = ()


@dataclass(frozen=True)
class Published:
    """What the platform answered for a published post."""

    upstream_id: str
    url: str | None = None
    extras: dict[str, Any] = field(default_factory=lambda: {})  # platform-specific fields (Bluesky: uri, cid), stored as is
    first_comment_ids: tuple[str, ...] = ()
    thread_ids: tuple[str, ...] = ()
    http_status: int | None = None
    response: dict[str, Any] | None = None  # the upstream body, for the attempt record (redacted there)
    already_existed: bool = False  # found upstream under the deterministic id: a retry, not a new post


class PlatformAdapter(Protocol):
    """Publishing on one platform."""

    platform: str
    caller_chosen_ids: bool  # the platform accepts our deterministic id (exactly-once by construction)

    async def publish(self, job: PublishJob) -> Published:
        """Publish the target (text, media, thread, first comment); raise a PlatformError on failure."""
        ...

    async def find(self, job: PublishJob) -> Published | None:
        """Look for this post upstream (reconciliation after a crash); None = certainly not there."""
        ...

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """Delete a published post upstream."""
        ...


def chooses_ids(adapter: PlatformAdapter, account: AccountContext) -> bool:
    """Whether this account's posts go upstream under our deterministic ids: the adapter's `caller_chosen_ids`,
    unless it decides per account with `caller_chosen_ids_for(account)` (the sandbox: only its caller_id mode)."""
    per_account = getattr(adapter, "caller_chosen_ids_for", None)
    return bool(per_account(account)) if callable(per_account) else adapter.caller_chosen_ids


@runtime_checkable
class RefreshingAdapter(Protocol):
    """An adapter whose account tokens expire and can be renewed without the user (tokens.py drives it)."""

    async def refresh_credentials(self, account: AccountContext) -> None:
        """Renew the account's tokens now and persist them (with their new expiry); raise a PlatformError on failure:
        PlatformAuthError when the platform refuses (the user must reconnect), another one when it may work later."""
        ...
