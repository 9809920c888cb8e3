"""The adapter interface every platform implements (sandbox included).

Adapters only translate: no retries, no sleeps, no database, no preflight, and no HTTP client of
their own (one is injected). They raise the PlatformError family from errors.py, built only by
platforms/calls.py from statuses and transport exceptions.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, Self, runtime_checkable

import httpx2

from omnipost.clock import Clock

from omnipost.errors import PlatformError, UnknownOutcomeError
from omnipost.media.probe import MediaFacts
from omnipost.platforms.pieces import COMMENT, DONE, MAIN, Ledger, Made, NotSent, part
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
    # Where a platform that fetches media by URL gets this file (media/host.py); bound by the runtime.
    locate: "Callable[[], Awaitable[str]] | None" = field(default=None, repr=False, compare=False)

    async def public_url(self) -> str:
        """A URL the platform can fetch this file from: presigned S3, this server's signed URL, or the caller's own.

        Raises:
            PublicUrlUnavailableError: no media host is configured and the file did not come from a public URL.
            PlatformUnavailableError: the media bucket could not be reached (retryable).
        """
        if self.locate is not None:
            return await self.locate()
        if self.url is not None:
            return self.url
        from omnipost.media.host import PublicUrlUnavailableError

        raise PublicUrlUnavailableError(f"media[{self.index}] has no public URL and no media host is configured.")


@dataclass(frozen=True)
class PublishJob:
    """Everything needed to publish one target once."""

    post_id: str
    upstream_key: str  # deterministic id derived from post_id, for platforms that accept one
    account: AccountContext
    target: ResolvedTarget
    media: tuple[MediaFile, ...] = ()
    ledger: Ledger = field(default_factory=Ledger)  # the pieces already upstream; adapters publish through its step()


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


SaveCredentials = Callable[[str, dict[str, Any], datetime | None], Awaitable[None]]


@dataclass(frozen=True)
class AdapterDeps:
    """What every adapter is built from (`Adapter.from_deps(deps)`, the one constructor shape), by the runtime only.

    `save_credentials(account_id, credentials, expires_at)` persists credentials durably; `resolver` is DNS for
    fetches an adapter makes itself (link cards); `sandbox_url` is where the sandbox upstream answers; `sessions`
    is the runtime's oauth.session.TokenSessions: an adapter gets an account's tokens from `sessions.get(account)`
    (refreshed before expiry, refreshed once after an expiry answer with `expired(used)`, rotations committed
    before use), and never refreshes a token itself."""

    http: httpx2.AsyncClient
    clock: Clock
    timeout: float
    sandbox_url: str
    save_credentials: SaveCredentials
    resolver: Any
    sessions: Any = None  # oauth.session.TokenSessions (None: an adapter keeps its own in memory)
    environ: Mapping[str, str] | None = field(default=None, repr=False)  # the configuration (None: os.environ): API base overrides


@dataclass(frozen=True)
class ConnectRequest:
    """What connect_account hands a platform's connect flow (`PlatformSpec.connect_with`): the handle, the
    platform-specific arguments it was given (only those in its spec's `connect_args`), the account defaults, and
    the shared dependencies (the HTTP client is the runtime's SSRF-guarded one)."""

    handle: str
    args: dict[str, Any]
    defaults: dict[str, Any]
    deps: AdapterDeps


@dataclass(frozen=True)
class Connected:
    """What a connect flow established: stored as the account (credentials sealed at rest)."""

    handle: str
    credentials: dict[str, Any] = field(repr=False)
    defaults: dict[str, Any] = field(default_factory=lambda: {})
    token_expires_at: datetime | None = None
    emulates: str | None = None  # the sandbox: the platform whose rules apply
    identity: str | None = None  # who the account is upstream (a DID, a user id): a reconnect of it updates the account


@dataclass(frozen=True)
class DefaultsRefresh:
    """An account default a platform keeps fresh from upstream (Mastodon: its server's limits, read again daily), on
    its spec as `defaults_refresh`. Accounts.refresh_defaults applies it whenever accounts are looked up for validating
    or publishing: for an account whose defaults are `stale(defaults, now)`, `fetch(deps, source)` reads the entry
    again from its `source(defaults)` (the server), and it is stored under `key` on every account with that source."""

    key: str
    source: Callable[[dict[str, Any]], str | None]
    stale: Callable[[dict[str, Any], datetime], bool]
    fetch: Callable[[AdapterDeps, str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class DeepFinding:
    """What an adapter's deep check found about one target before anything is sent: an error fails that target only
    (preflight_failed under `rule`); a warning (the check could not be made) is noted and publishing goes on."""

    rule: str
    path: str
    message: str
    remediation: str
    severity: Literal["error", "warning"] = "error"
    platform_response: dict[str, Any] | str | None = None
    actual: Any = None
    limit: Any = None
    retryable: bool = False


@runtime_checkable
class DeepChecking(Protocol):
    """An adapter with deep checks that need the account itself (Bluesky: the daily video quota). Intake calls it for
    an immediate publish, after the media are stored, with the facts of each attachment by its index."""

    def deep_checks(self, target: ResolvedTarget) -> bool:
        """Whether the target may have something to check (no I/O): Intake neither opens the account's credentials nor
        calls deep_check for one that has not."""
        ...

    async def deep_check(self, account: AccountContext, target: ResolvedTarget, facts: dict[int, MediaFacts]) -> list[DeepFinding]:
        ...


@dataclass(frozen=True)
class Verified:
    """Who an account's credentials belong to upstream, as the platform's whoami answered."""

    id: str
    handle: str
    name: str | None = None


@runtime_checkable
class Verifying(Protocol):
    """An adapter that can ask the platform who the account is (a whoami, no side effects): get_account reports the
    account's health from it.

    Raises (verify): PlatformAuthError when the platform refuses the credentials (after one refresh); another
    PlatformError when it cannot be asked now."""

    async def verify(self, account: AccountContext) -> Verified:
        ...


class PlatformAdapter(Protocol):
    """Publishing on one platform."""

    platform: str
    caller_chosen_ids: bool  # the platform accepts our deterministic id (exactly-once by construction)

    @classmethod
    def from_deps(cls, deps: AdapterDeps) -> Self:
        """The adapter as the runtime builds it: every adapter takes the same dependencies."""
        ...

    async def publish(self, job: PublishJob) -> Published:
        """Publish the target (text, media, thread, first comment), each piece through `job.ledger.step` (which skips
        the pieces done and reconciles those an earlier try sent); raise a PlatformError on failure.
        `find` runs it with a probing ledger: then nothing may be uploaded or sent before a piece's step."""
        ...

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """Delete a published post upstream."""
        ...


def assembled(ledger: Ledger, target: ResolvedTarget, main: Made | None = None) -> Published | None:
    """The post as the ledger has it: the main post and the thread parts and first comment done so far (a chain is
    written in order: nothing after a gap). None when the main post is not done."""
    rec = ledger.get(MAIN)
    if main is None:
        if rec is None or rec.status != DONE or rec.upstream_id is None:
            return None
        main = Made(rec.upstream_id, rec.url, dict(rec.data), existed=True)
    thread: list[str] = []
    for i in range(1, len(target.thread) + 1):
        p = ledger.get(part(i))
        if p is None or p.status != DONE or p.upstream_id is None:
            break
        thread.append(p.upstream_id)
    comment = ledger.get(COMMENT)
    comments = (comment.upstream_id,) if target.first_comment and comment and comment.status == DONE and comment.upstream_id else ()
    return Published(upstream_id=main.upstream_id, url=main.url, extras=dict(main.data), thread_ids=tuple(thread),
                     first_comment_ids=comments, http_status=main.status if main.status is not None else 200,
                     response=main.body or {"id": main.upstream_id, "resumed": True}, already_existed=main.existed)


async def probe(adapter: PlatformAdapter, job: PublishJob) -> tuple[Published | None, Ledger]:
    """Look for the target upstream without sending anything: each piece not done is reconciled in order (one with
    no record as if it had been sent), up to the first one absent. Returns what is there (None: not even the main
    post) and the probing ledger, which holds the truth found.

    Raises:
        UnknownOutcomeError: the platform cannot tell whether a piece is there. PlatformError: reading it failed."""
    looking = replace(job, ledger=job.ledger.prober())
    try:
        return await adapter.publish(looking), looking.ledger
    except NotSent:
        return assembled(looking.ledger, job.target), looking.ledger
    except UnknownOutcomeError as exc:
        if isinstance(exc.__cause__, PlatformError):
            raise exc.__cause__ from None
        raise


async def find(adapter: PlatformAdapter, job: PublishJob) -> Published | None:
    """What of the target is upstream (see probe)."""
    return (await probe(adapter, job))[0]


def chooses_ids(adapter: PlatformAdapter, account: AccountContext) -> bool:
    """Whether this account's posts go upstream under our deterministic ids: the adapter's `caller_chosen_ids`,
    unless it decides per account with `caller_chosen_ids_for(account)` (the sandbox: only its caller_id mode)."""
    per_account = getattr(adapter, "caller_chosen_ids_for", None)
    return bool(per_account(account)) if callable(per_account) else adapter.caller_chosen_ids
