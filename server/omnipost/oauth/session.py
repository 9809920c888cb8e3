"""TokenSession: one account's tokens, kept usable (ARCHITECTURE §2 Tokens; issue 12 item 3).

An adapter never refreshes a token itself. It asks the account's `TokenSession`:

- `await session.current()`: the account's credentials, refreshed first when the access token ends within `margin`
  (judged by the injected clock);
- after the platform said the token expired (a 401, Bluesky's 400 ExpiredToken): `await session.expired(used)`
  with the access token it used, then it repeats its call ONCE with the new credentials (never a loop);
  `await session.with_token(call, expired=...)` does both steps around one call;
- `session.credentials`: what the session holds now, without any call (e.g. the DID, the PDS URL).

The runtime builds one `TokenSessions` (the registry: one session per account id, shared by every adapter of the
process) from a `CredentialStore`, the clock and one `Refresher` per platform that can renew its tokens
(oauth/model.py: Bluesky's is platforms/bluesky/session.py's `BlueskyRefresher`; the OAuth platforms plug in an
`OAuthRefresher` through `PlatformSpec.refresher`). A platform without one gets a session that only hands out the
stored credentials (and `expired()` is a PlatformAuthError: nothing can renew them).

What a refresh guarantees (`TokenSession._refresh`):

1. One refresh at a time per account, in the process (an anyio lock) and across processes: the store's lock is taken
   before the token request (SQLite: `BEGIN IMMEDIATE`, the database's write lock; PostgreSQL: `SELECT ... FOR
   UPDATE` on the account row) and held until the new tokens are committed.
2. The credentials are read again under that lock. When another process (or task) already replaced the token this
   session found stale, those are adopted and no request is made: a waiter never spends a refresh token that the
   first one already rotated away.
3. The answer is merged into the stored credentials and committed (SQLite: with `synchronous=FULL` for that
   commit) BEFORE the new access token is returned to anyone: a rotated single-use refresh token is on disk before
   it is used.
4. A refused refresh (PlatformAuthError from the Refresher) rolls the transaction back, then `on_refused(account_id)`
   marks the account `needs_reconnect`, which emits `token.revoked` (publishing's mark_account), and the error is
   raised. Any other PlatformError is raised as is (retryable: the stored tokens are unchanged).

The window that cannot be closed: a rotating authorization server invalidates the old refresh token when it answers.
If the process dies after the server rotated and before our commit (the answer lost on the wire, or received and
not yet committed), the database keeps the old refresh token, which the server now refuses, so the account will need
a reconnect. Nothing runs between receiving the answer and the commit (no other I/O, no other await than the
commit), which keeps that window as short as the commit itself. Servers with a reuse grace period, and
non-rotating ones (the old token still works), do not have this problem: the reference Bluesky PDS answers a spent
refresh JWT sent again soon after with the same successor (tests/test_bluesky_pds.py), so a restarted process
recovers the session. tests/test_token_crash.py kills a real process before the request, between the answer and
the commit (with and without a grace period) and after the commit, and shows each outcome.

Tokens are never logged and never put in an error: log lines name the account id only.
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

import anyio

from omnipost.clock import Clock
from omnipost.errors import PlatformAuthError, PlatformError, PlatformUnavailableError
from omnipost.oauth.model import Refresher, TokenSet

if TYPE_CHECKING:
    from omnipost.platforms.base import AccountContext
    from omnipost.store.crypto import Vault
    from omnipost.store.db import Database

logger = logging.getLogger("omnipost.tokens")

DEFAULT_MARGIN = timedelta(minutes=5)  # an access token ending sooner than this is refreshed before use
# The store's lock is held during the token request (on SQLite: the database's write lock, which other writers wait
# for up to busy_timeout, 30 s): Refreshers are built with at most this HTTP timeout (runtime.py).
REFRESH_TIMEOUT = 10.0

Revoked = bool | Literal["unsupported"]
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------- credential shapes


@runtime_checkable
class CredentialShape(Protocol):
    """How a platform's stored credentials hold their tokens. A Refresher that implements these too (Bluesky's) is its
    own shape; any other is taken to store `OAuthCredentials` dumps (OAUTH_SHAPE)."""

    def access_token(self, credentials: dict[str, Any]) -> str | None:
        """The access token to send."""
        ...

    def access_expires_at(self, credentials: dict[str, Any]) -> datetime | None:
        """When the access token ends (None: unknown; then it is refreshed only when the platform says so)."""
        ...

    def lapses_at(self, credentials: dict[str, Any]) -> datetime | None:
        """When the account stops working unless refreshed (Account.token_expires_at; TokenWatcher reads it)."""
        ...

    def merge(self, credentials: dict[str, Any], tokens: TokenSet, now: datetime) -> dict[str, Any]:
        """The credentials to store after a refresh answered `tokens` at `now`."""
        ...


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


class OAuthShape:
    """Credentials stored as an `OAuthCredentials` dump (JSON: instants as ISO strings)."""

    def access_token(self, credentials: dict[str, Any]) -> str | None:
        token = credentials.get("access_token")
        return token if isinstance(token, str) and token else None

    def access_expires_at(self, credentials: dict[str, Any]) -> datetime | None:
        return _instant(credentials.get("expires_at"))

    def lapses_at(self, credentials: dict[str, Any]) -> datetime | None:
        if credentials.get("refresh_token"):
            return _instant(credentials.get("refresh_expires_at"))  # None: the refresh token does not end
        return _instant(credentials.get("expires_at"))

    def merge(self, credentials: dict[str, Any], tokens: TokenSet, now: datetime) -> dict[str, Any]:
        """The answer over the stored credentials. A provider that does not rotate answers without a refresh token:
        the old one stays, with its lifetime. A rotated one's is what the answer says (TokenSet.refresh_lapse), else
        unknown (None: it is not announced as lapsing)."""
        merged = dict(credentials)
        merged["access_token"] = tokens.access_token
        merged["expires_at"] = tokens.expires_at.isoformat() if tokens.expires_at else None
        merged["token_type"] = tokens.token_type or merged.get("token_type", "Bearer")
        if tokens.refresh_token:
            merged["refresh_token"] = tokens.refresh_token
            lapse = tokens.refresh_lapse(now)
            merged["refresh_expires_at"] = lapse.isoformat() if lapse else None
        if tokens.scope:
            merged["scope"] = list(tokens.scope)
        return merged


OAUTH_SHAPE = OAuthShape()


def shape_of(refresher: Refresher | None) -> CredentialShape:
    """The refresher itself when it knows its credentials' shape, else the OAuth one."""
    return refresher if isinstance(refresher, CredentialShape) else OAUTH_SHAPE


# ---------------------------------------------------------------------------------------------- stores


class LockedCredentials(Protocol):
    """An account's stored credentials, read under the account's refresh lock."""

    credentials: dict[str, Any] | None  # None: the account is gone or disconnected
    health: str | None

    async def save(self, credentials: dict[str, Any], lapses_at: datetime | None) -> None:
        """Store the new credentials and commit them durably (the lock ends with the commit)."""
        ...


class CredentialStore(Protocol):
    """Where accounts' credentials live, with a lock per account across every process that shares the store."""

    def locked(self, account_id: str) -> AbstractAsyncContextManager[LockedCredentials]:
        """Take the account's refresh lock, read its credentials; leaving without save() rolls back."""
        ...


@dataclass
class _Row:
    conn: Any
    account_id: str
    vault: "Vault"
    credentials: dict[str, Any] | None
    health: str | None
    saved: bool = False

    async def save(self, credentials: dict[str, Any], lapses_at: datetime | None) -> None:
        from sqlalchemy import update

        from omnipost.store.models import Account

        await self.conn.execute(update(Account).where(Account.id == self.account_id)  # type: ignore[arg-type]
                                .values(credentials=self.vault.seal(credentials), token_expires_at=lapses_at))
        await self.conn.commit()
        self.saved = True


@dataclass
class DatabaseCredentialStore:
    """The accounts table (SQLite or PostgreSQL), credentials sealed by the vault.

    SQLite: the lock is the database's write lock (`BEGIN IMMEDIATE`); a second process waits for it in SQLite's
    busy handler (busy_timeout, 30 s: a refresh must answer sooner, which REFRESH_TIMEOUT bounds), so every other
    write of the database (and a process starting up, whose migration check takes the write lock) waits during a
    refresh too: a refresh is a single short request, made rarely. A killed holder's lock dies with it.
    PostgreSQL: `SELECT ... FOR UPDATE` on the account's row; only that account's refreshes wait."""

    db: "Database"
    vault: "Vault"

    @asynccontextmanager
    async def locked(self, account_id: str) -> AsyncIterator[LockedCredentials]:
        from sqlalchemy import select
        from sqlalchemy.exc import OperationalError

        from omnipost.store.models import Account

        logger.debug("taking the refresh lock of account %s", account_id)
        async with self.db.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            try:
                if sqlite:
                    await conn.exec_driver_sql("PRAGMA synchronous=FULL")  # this connection's commits reach the disk
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                query = select(Account.credentials, Account.health).where(Account.id == account_id)  # type: ignore[arg-type]
                found = (await conn.execute(query.with_for_update())).first()
            except OperationalError as exc:  # SQLite's busy handler gave up: another refresh held the lock too long
                await conn.rollback()
                raise PlatformUnavailableError("Another process is refreshing this account's token; try again.",
                                               remediation="Retry in a moment.", retryable=True) from exc
            sealed = found[0] if found is not None and found[1] != "disconnected" else None
            row = _Row(conn, account_id, self.vault, self.vault.open(sealed) if sealed else None,
                       found[1] if found is not None else None)
            try:
                yield row
            finally:
                with anyio.CancelScope(shield=True):  # a cancelled refresh still releases the lock
                    if not row.saved:
                        await conn.rollback()
                    if sqlite:
                        await conn.exec_driver_sql("PRAGMA synchronous=NORMAL")  # as store/db.py sets it
                        await conn.commit()


@dataclass
class _MemoryRow:
    store: "MemoryCredentialStore"
    account_id: str
    credentials: dict[str, Any] | None
    health: str | None = "active"

    async def save(self, credentials: dict[str, Any], lapses_at: datetime | None) -> None:
        self.store.data[self.account_id] = dict(credentials)
        if self.store.on_save is not None:
            await self.store.on_save(self.account_id, dict(credentials), lapses_at)


@dataclass
class MemoryCredentialStore:
    """Credentials in this process only (an adapter built without a database: tests, scripts). `on_save` is told of
    every refresh, after it is stored."""

    on_save: Callable[[str, dict[str, Any], datetime | None], Awaitable[None]] | None = None
    data: dict[str, dict[str, Any]] = field(default_factory=lambda: {})
    _locks: dict[str, anyio.Lock] = field(default_factory=lambda: {})

    def seed(self, account_id: str, credentials: dict[str, Any]) -> None:
        self.data.setdefault(account_id, dict(credentials))

    @asynccontextmanager
    async def locked(self, account_id: str) -> AsyncIterator[LockedCredentials]:
        async with self._locks.setdefault(account_id, anyio.Lock()):
            yield _MemoryRow(self, account_id, dict(self.data[account_id]) if account_id in self.data else None)


# ---------------------------------------------------------------------------------------------- the session


class TokenSession:
    """One account's tokens (see the module docstring). Built by TokenSessions.get, never directly by adapters."""

    def __init__(self, account_id: str, platform: str, credentials: dict[str, Any], *, refresher: Refresher | None,
                 store: CredentialStore, clock: Clock, margin: timedelta = DEFAULT_MARGIN,
                 on_refused: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.account_id, self.platform = account_id, platform
        self.refresher, self.store, self.clock, self.margin, self.on_refused = refresher, store, clock, margin, on_refused
        self.shape = shape_of(refresher)
        self._credentials = dict(credentials)
        self._superseded: set[str] = set()  # access tokens this session replaced: a job holding one is behind
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"TokenSession({self.account_id!r}, {self.platform!r})"

    @property
    def credentials(self) -> dict[str, Any]:
        """What the session holds now (a copy; never log it)."""
        return dict(self._credentials)

    @property
    def access_token(self) -> str | None:
        """The access token held now (no refresh)."""
        return self.shape.access_token(self._credentials)

    def offer(self, credentials: dict[str, Any]) -> bool:
        """Credentials a caller read from the store (an AccountContext): taken unless they are ones this session
        already replaced (read before a refresh) or the same. Newer ones (a reconnect, another process's refresh) win.
        True when taken."""
        offered = self.shape.access_token(credentials)
        if offered is None or offered in self._superseded or offered == self.access_token:
            return False
        self._adopt(credentials)
        return True

    def _adopt(self, credentials: dict[str, Any]) -> None:
        old = self.access_token
        if old is not None and old != self.shape.access_token(credentials):
            self._superseded.add(old)
        self._credentials = dict(credentials)

    def _due(self, credentials: dict[str, Any]) -> bool:
        ends = self.shape.access_expires_at(credentials)
        return ends is not None and ends - self.margin <= self.clock.now()

    async def current(self) -> dict[str, Any]:
        """The credentials to call with: refreshed first when the access token ends within the margin.

        Raises:
            PlatformAuthError: the refresh was refused (the account is marked needs_reconnect). PlatformError: the
            refresh failed for now (the call may be retried later)."""
        if self.refresher is not None and self._due(self._credentials):
            await self._refresh(stale=self.access_token)
        return self.credentials

    async def expired(self, used: str | None) -> dict[str, Any]:
        """The platform said the access token `used` expired: refresh (unless it was replaced meanwhile, here or by
        another process) and return the new credentials. The caller repeats its call once with them.

        Raises:
            PlatformAuthError: nothing can renew the token, or the refresh was refused. PlatformError: see current()."""
        if self.refresher is None:
            raise PlatformAuthError("The account's token expired and this platform cannot renew it.",
                                    remediation="Reconnect the account (connect_account).")
        await self._refresh(stale=used)
        return self.credentials

    async def with_token(self, call: Callable[[str], Awaitable[R]], *, expired: Callable[[R, str], bool]) -> R:
        """`call(access_token)` with a current token; when `expired(answer, token)` says the platform found it expired,
        one refresh (`expired()` above) and the call once more; that second answer is returned whatever it is.

        Raises:
            PlatformAuthError: no token, or the refresh was refused. PlatformError: see current()."""
        token = self.shape.access_token(await self.current())
        if token is None:
            raise PlatformAuthError("The account has no access token.", remediation="Reconnect the account (connect_account).")
        answer = await call(token)
        if not expired(answer, token):
            return answer
        again = self.shape.access_token(await self.expired(token))
        if again is None:
            raise PlatformAuthError("The account has no access token.", remediation="Reconnect the account (connect_account).")
        return await call(again)

    async def renew(self, *, unless_lapses_after: datetime | None = None) -> bool:
        """Refresh now (TokenWatcher: before the account lapses), unless the stored credentials already last beyond
        `unless_lapses_after` (another process renewed them). True when a refresh was made."""
        if self.refresher is None:
            return False
        return await self._refresh(stale=None, unless_lapses_after=unless_lapses_after)

    async def _refresh(self, *, stale: str | None, unless_lapses_after: datetime | None = None) -> bool:
        assert self.refresher is not None
        async with self._lock:
            if stale is not None and self.access_token != stale and not self._due(self._credentials):
                return False  # another task of this process refreshed while this one waited
            refused: PlatformAuthError | None = None
            async with self.store.locked(self.account_id) as row:
                stored = row.credentials
                if stored is None:
                    raise PlatformAuthError("The account is not connected any more.",
                                            remediation="Reconnect the account (connect_account).")
                if stale is not None and self.shape.access_token(stored) != stale and not self._due(stored):
                    self._adopt(stored)  # another process refreshed first: use its tokens, spend nothing
                    return False
                lapses = self.shape.lapses_at(stored)
                if unless_lapses_after is not None and lapses is not None and lapses > unless_lapses_after:
                    self._adopt(stored)
                    return False
                try:
                    tokens = await self.refresher.refresh(stored)
                except PlatformAuthError as exc:
                    refused = exc  # rolled back on leaving the lock, then the account is marked
                else:
                    # Nothing between the answer and the commit: the rotated refresh token is on disk before use.
                    new = self.shape.merge(stored, tokens, self.clock.now())
                    await row.save(new, self.shape.lapses_at(new))
            if refused is not None:
                logger.warning("the token refresh of account %s was refused: it needs reconnecting", self.account_id)
                if self.on_refused is not None:
                    await self.on_refused(self.account_id)
                raise refused
            self._adopt(new)
            logger.info("refreshed the token of account %s", self.account_id)
            return True

    async def revoke(self) -> Revoked:
        """Revoke the tokens upstream with the stored (current) credentials, under the refresh lock so no refresh
        rotates them meanwhile: True, or "unsupported" (no refresher, or no revoke endpoint).

        Raises:
            PlatformError: the platform refused or failed."""
        if self.refresher is None:
            return "unsupported"
        async with self._lock, self.store.locked(self.account_id) as row:
            stored = row.credentials if row.credentials is not None else self._credentials
            return True if await self.refresher.revoke(stored) else "unsupported"


class TokenSessions:
    """The registry: one TokenSession per account id for the whole process (adapters, TokenWatcher, disconnect)."""

    def __init__(self, store: CredentialStore, clock: Clock, refreshers: dict[str, Refresher], *,
                 margin: timedelta = DEFAULT_MARGIN, on_refused: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.store, self.clock, self.refreshers, self.margin, self.on_refused = store, clock, dict(refreshers), margin, on_refused
        self._sessions: dict[str, TokenSession] = {}

    def refresher(self, platform: str) -> Refresher | None:
        """The platform's Refresher (None: its tokens cannot be renewed without the user)."""
        return self.refreshers.get(platform)

    def get(self, account: "AccountContext") -> TokenSession:
        """The account's session (made at first use, from these credentials; later ones are offered to it)."""
        session = self._sessions.get(account.id)
        if session is None:
            if isinstance(self.store, MemoryCredentialStore):
                self.store.seed(account.id, account.credentials)
            session = self._sessions[account.id] = TokenSession(
                account.id, account.platform, account.credentials, refresher=self.refreshers.get(account.platform),
                store=self.store, clock=self.clock, margin=self.margin, on_refused=self.on_refused)
        elif session.offer(account.credentials) and isinstance(self.store, MemoryCredentialStore):
            self.store.data[account.id] = dict(account.credentials)  # the memory store is the caller's copy: follow it
        return session

    def forget(self, account_id: str) -> None:
        """Drop the account's session (after a disconnect)."""
        self._sessions.pop(account_id, None)

    async def revoke(self, account: "AccountContext") -> tuple[Revoked, str | None]:
        """Revoke the account's tokens upstream for a disconnect: (True | False | "unsupported", a warning when it
        could not be done). Never raises for the platform's answer: the disconnect goes on locally."""
        try:
            result = await self.get(account).revoke()
        except PlatformError as exc:
            logger.warning("revoking the tokens of account %s upstream failed (%s)", account.id, exc.code)
            return False, (f"The platform did not confirm revoking the account's access ({exc.code}); it was removed here "
                           "anyway. Revoke omnipost's access in the platform's settings to be sure.")
        finally:
            self.forget(account.id)
        if result == "unsupported":
            return result, "This platform offers no way to revoke a token; the account was removed here only."
        return result, None
