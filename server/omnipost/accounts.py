"""Profiles and connected accounts, always scoped to a profile (out of scope = not found)."""

import re
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from omnipost.auth import SANDBOX, Reach, as_reach
from omnipost.clock import Clock
from omnipost.domain import PLATFORM_ALIASES, Platform
from omnipost.errors import NotFoundError, UnauthorizedError, ValidationFailedError, echo
from omnipost.media.probe import MediaFacts
from omnipost.preflight.model import AccountInfo
from omnipost.store.crypto import Vault
from omnipost.store.db import DEFAULT_PROFILE, Database, new_id
from omnipost.store.models import Account, Media, Post, Profile

if TYPE_CHECKING:
    from omnipost.platforms.base import AccountContext, AdapterDeps

logger = logging.getLogger("omnipost.accounts")


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")


@dataclass
class Accounts:
    """Profile and account records; every lookup takes the caller's profile."""

    db: Database
    vault: Vault
    clock: Clock
    # Profiles are never renamed or deleted, so a lookup by id or name can be remembered.
    _profiles: dict[str, Profile] = field(default_factory=lambda: {}, init=False)
    # What refresh_defaults fetches with (the runtime's adapter deps, built when first needed); None: never refreshed.
    deps: "Callable[[], AdapterDeps] | None" = field(default=None, init=False)

    async def resolve_profile(self, profile: str | None, *, bound: str | None = None) -> Profile:
        """The profile a request acts on: by id or name; the default when omitted.

        Raises:
            NotFoundError: unknown profile.
            UnauthorizedError: a profile outside the key's binding (`bound`).
        """
        key = profile if profile is not None else (bound or f"name:{DEFAULT_PROFILE}")
        found = self._profiles.get(key)
        if found is None:
            async with self.db.session() as s:
                if profile is None:
                    if bound is not None:
                        found = await s.get(Profile, bound)
                    else:
                        found = (await s.exec(select(Profile).where(Profile.name == DEFAULT_PROFILE))).first()
                else:
                    found = await s.get(Profile, profile) or (await s.exec(select(Profile).where(Profile.name == profile))).first()
            if found is not None:
                self._profiles[key] = found
        if found is None:
            raise NotFoundError(f"Profile '{echo(profile)}' was not found.", rule="profileId",
                                remediation="Call list_profiles, or leave profileId out for the default profile.")
        if bound is not None and found.id != bound:
            raise UnauthorizedError("This API key is bound to another profile.", rule="profile.scope_mismatch",
                                    remediation="Use a key for that profile or an org-wide key, or leave profileId out.")
        return found

    async def list_profiles(self, *, bound: str | None = None) -> list[Profile]:
        """Every profile (or only the key's own)."""
        async with self.db.session() as s:
            q = select(Profile).order_by(col(Profile.created_at))
            if bound is not None:
                q = q.where(Profile.id == bound)
            return list((await s.exec(q)).all())

    async def create_profile(self, name: str) -> Profile:
        """A new workspace.

        Raises:
            ValidationFailedError: a bad or taken name.
        """
        if not _PROFILE_NAME.match(name):
            raise ValidationFailedError("A profile name is 1–64 letters, digits, spaces, '_', '.' or '-'.", path="name")
        async with self.db.session() as s:
            if (await s.exec(select(Profile).where(Profile.name == name))).first() is not None:
                raise ValidationFailedError(f"A profile named '{echo(name)}' already exists.", path="name",
                                            remediation="Pick another name, or use the existing profile.")
            profile = Profile(id=new_id("prf"), name=name, created_at=self.clock.now())
            s.add(profile)
            await s.commit()
            return profile

    async def add(self, profile_id: str, *, platform: str, handle: str, credentials: dict[str, Any],
                  emulates: str | None = None, display_name: str | None = None, defaults: dict[str, Any] | None = None,
                  token_expires_at: datetime | None = None, identity: str | None = None) -> Account:
        """Store a connected account with its credentials encrypted (and when they end, if they do).

        An account of the profile already connected with the same platform and upstream `identity` is updated in
        place (handle, credentials, expiry, emulated platform, defaults merged over its own, health active) and
        returned, so connecting an account twice never makes two (its posts and id stay)."""
        async with self.db.session() as s:
            if identity is not None and (row := (await s.exec(select(Account).where(
                    Account.profile_id == profile_id, Account.platform == platform, Account.upstream_identity == identity,
                    Account.health != "disconnected"))).first()) is not None:
                row.handle, row.credentials, row.token_expires_at = handle, self.vault.seal(credentials), token_expires_at
                row.emulates, row.display_name = emulates, display_name or row.display_name
                row.defaults, row.health = dict(row.defaults or {}) | dict(defaults or {}), "active"
                s.add(row)
                await s.commit()
                await s.refresh(row)
                return row
            account = Account(id=new_id("acc"), profile_id=profile_id, platform=platform, emulates=emulates, handle=handle,
                              display_name=display_name, credentials=self.vault.seal(credentials), defaults=defaults or {},
                              health="active", created_at=self.clock.now(), token_expires_at=token_expires_at,
                              upstream_identity=identity)
            s.add(account)
            await s.commit()
        return account

    async def get(self, scope: Reach | str, account_id: str, *, include_disconnected: bool = False) -> Account:
        """One account of the profile, within reach.

        Raises:
            NotFoundError: missing, disconnected, in another profile, or out of reach (a real account to a test key).
        """
        reach = as_reach(scope)
        async with self.db.session() as s:
            account = await s.get(Account, account_id)
        if (account is None or account.profile_id != reach.profile_id or not reach.sees_account(account.platform)
                or (account.health == "disconnected" and not include_disconnected)):
            raise NotFoundError(f"Account '{echo(account_id)}' was not found.", rule="accountId",
                                remediation="Call list_accounts for the connected accounts.")
        return account

    async def list(self, scope: Reach | str, platform: str | None = None) -> list[Account]:
        """The profile's connected accounts within reach."""
        reach = as_reach(scope)
        async with self.db.session() as s:
            q = select(Account).where(Account.profile_id == reach.profile_id, Account.health != "disconnected")
            if reach.test_mode:
                q = q.where(Account.platform == SANDBOX)
            if platform:
                q = q.where((Account.platform == platform) | (Account.emulates == platform))
            return list((await s.exec(q.order_by(col(Account.created_at)))).all())

    async def disconnect(self, scope: Reach | str, account_id: str) -> Account:
        """Forget the account's credentials; its posts stay for history.

        Raises:
            NotFoundError: see get().
        """
        account = await self.get(scope, account_id)
        async with self.db.session() as s:
            row = await s.get(Account, account.id)
            assert row is not None
            row.health, row.credentials, row.disconnected_at = "disconnected", None, self.clock.now()
            s.add(row)
            await s.commit()
            return row

    async def update_credentials(self, account_id: str, credentials: dict[str, Any], *, expires_at: datetime | None = None) -> None:
        """Persist rotated credentials (e.g. a refreshed Bluesky session), encrypted, with their new expiry."""
        async with self.db.session() as s:
            row = await s.get(Account, account_id)
            if row is not None:
                row.credentials = self.vault.seal(credentials)
                row.token_expires_at = expires_at
                s.add(row)
                await s.commit()

    async def refresh_defaults(self, rows: "list[Account]") -> "list[Account]":
        """The accounts with their upstream-kept defaults fresh (a platform's spec `defaults_refresh`: Mastodon's server
        limits, read again when 24 h old): each stale source (a server) is read once, and its entry stored on every
        account of that platform and source (in every profile: it is the server's public data). A source that cannot
        be read keeps its entry (logged; tried again at the next lookup). Returns `rows` with the stored values."""
        if self.deps is None or not rows:
            return rows
        from omnipost.errors import AppError
        from omnipost.platforms.registry import PLATFORMS

        now = self.clock.now()
        stale: dict[tuple[str, str], Any] = {}
        for row in rows:
            spec = PLATFORMS.get(row.platform)
            keeper = spec.defaults_refresh if spec is not None else None
            if keeper is not None and row.health == "active" and (source := keeper.source(row.defaults or {})) \
                    and keeper.stale(row.defaults or {}, now):
                stale[(row.platform, source)] = keeper
        if not stale:
            return rows
        deps = self.deps()
        for (platform, source), keeper in stale.items():
            try:
                entry = await keeper.fetch(deps, source)
            except AppError as exc:
                logger.warning("could not refresh the %s defaults of a %s server (%s); keeping the stored ones", keeper.key,
                               platform, exc.code)
                continue
            async with self.db.session() as s:
                for row in (await s.exec(select(Account).where(Account.platform == platform, Account.health != "disconnected"))).all():
                    if keeper.source(row.defaults or {}) == source:
                        row.defaults = dict(row.defaults or {}) | {keeper.key: entry}
                        s.add(row)
                await s.commit()
            logger.info("refreshed the %s defaults of a %s server", keeper.key, platform)
        async with self.db.session() as s:
            fresh = {a.id: a for a in (await s.exec(select(Account).where(col(Account.id).in_([r.id for r in rows])))).all()}
        return [fresh.get(r.id, r) for r in rows]

    def credentials(self, account: Account) -> dict[str, Any]:
        """Decrypted credentials (never log them)."""
        return self.vault.open(account.credentials) if account.credentials else {}

    def context(self, account: Account) -> "AccountContext":
        """The account as an adapter sees it (platforms/base.py), its credentials opened."""
        from omnipost.platforms.base import AccountContext

        return AccountContext(id=account.id, platform=account.platform, handle=account.handle,
                              credentials=self.credentials(account), defaults=dict(account.defaults or {}),
                              emulates=account.emulates)


def real_batches() -> Any:
    """Ids of the batches with a target on a non-sandbox account, as a subquery: what a test reach never sees.

    (A post of such a batch is out of reach too: every answer about a post names its batch.)"""
    target = aliased(Post)
    return select(target.batch_id).join(Account, col(Account.id) == col(target.account_id)).where(Account.platform != SANDBOX)


async def hides_batches(s: Any, reach: Reach, batch_ids: Iterable[str]) -> bool:
    """Whether any of these batches is out of reach (a test reach, and a target on a non-sandbox account)."""
    if not reach.test_mode:
        return False
    q = (select(Post.id).join(Account, col(Account.id) == col(Post.account_id))
         .where(col(Post.batch_id).in_(list(batch_ids)), Account.platform != SANDBOX).limit(1))
    return (await s.exec(q)).first() is not None


def info(account: Account) -> AccountInfo:
    """What preflight needs: a sandbox account is judged by the platform it emulates."""
    name = account.emulates if account.platform == "sandbox" else account.platform
    return AccountInfo(id=account.id, platform=Platform(PLATFORM_ALIASES[name or "x"]), handle=account.handle,
                       health=account.health, defaults=dict(account.defaults or {}),
                       adapter="sandbox" if account.platform == "sandbox" else None)


# Built once: a publish runs these statements every time, and building one costs more than running it (~0.14 ms).
_PRIME = select(Account).where(col(Account.id).in_(bindparam("ids", expanding=True)), Account.profile_id == bindparam("profile"),
                               Account.health != "disconnected")


class ProfileDirectory:
    """AccountLookup and MediaLookup for preflight, bound to one profile."""

    def __init__(self, accounts: Accounts, db: Database, profile_id: str, *, test_mode: bool = False,
                 hosting: Any = None) -> None:
        self._accounts, self._db, self._profile = accounts, db, profile_id
        self._hosting = hosting  # media.host.MediaHosting: whether a local file can get a public URL
        self._sources: dict[str, str | None] = {}  # media id -> the public URL it was fetched from (get_media reads it)
        self._reach = Reach(profile_id, test_mode)
        self._primed: dict[str, Account] = {}

    async def prime(self, account_ids: set[str]) -> None:
        """Load many accounts in one query (a 25-target request would otherwise make 25)."""
        async with self._db.session() as s:
            rows = (await s.exec(_PRIME, params={"ids": list(account_ids), "profile": self._profile})).all()
        self._primed.update({a.id: a for a in rows})
        # Defaults kept fresh from upstream (a Mastodon server's limits, daily), for the accounts this caller reaches.
        self._primed.update({a.id: a for a in await self._accounts.refresh_defaults(
            [a for a in rows if self._reach.sees_account(a.platform)])})

    def row(self, account_id: str) -> Account | None:
        """The account's row as prime() loaded it (None if it was not primed)."""
        return self._primed.get(account_id)

    async def get_account(self, account_id: str, profile_id: str | None) -> AccountInfo | None:
        account: Account | None = self._primed.get(account_id)
        if account is None:
            try:
                account = (await self._accounts.refresh_defaults([await self._accounts.get(self._reach, account_id)]))[0]
            except NotFoundError:
                return None
            self._primed[account.id] = account
        if not self._reach.sees_account(account.platform):
            return None  # an op_test_ key reaches only sandbox accounts
        return info(account)

    async def get_media(self, media_id: str, profile_id: str | None) -> MediaFacts | None:
        async with self._db.session() as s:
            m = await s.get(Media, media_id)
        if m is None or m.profile_id != self._profile or m.deleted_at is not None or not self._reach.sees_mode(m.mode):
            return None
        self._sources[media_id] = m.source_url
        return MediaFacts(kind=m.kind, mime=m.mime, size=m.size, width=m.width, height=m.height,  # type: ignore[arg-type]
                          duration=m.duration, frames=m.frames, sha256=m.sha256)

    async def public_url_available(self, media_id: str, profile_id: str | None) -> bool:
        """Whether a platform that fetches media by URL can be handed one for this (already looked up) media."""
        return self._hosting is None or self._hosting.can_serve(self._sources.get(media_id))
