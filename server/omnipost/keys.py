"""API keys for the network transports: mint, list, revoke, verify; the SDK token verifier; per-key rate limit.

A key is `op_live_<43 url-safe chars>` or `op_test_<43 url-safe chars>` (32 random bytes). It is shown
once, at mint; the database keeps only its SHA-256 (hex) and a short display prefix. Verifying
hashes the presented key and looks the hash up, so no stored secret is ever compared byte by byte.
"""

import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import anyio
from mcp.server.auth.provider import AccessToken
from sqlmodel import col, select

from omnipost.clock import Clock, SystemClock
from omnipost.errors import InputError, NotFoundError, ValidationFailedError, echo
from omnipost.store.db import Database, new_id
from omnipost.store.models import ApiKey, Profile

if TYPE_CHECKING:
    from omnipost.config import Settings

Mode = Literal["live", "test"]
PREFIXES: dict[str, str] = {"live": "op_live_", "test": "op_test_"}
SECRET_BYTES = 32  # token_urlsafe(32) -> 43 characters
SHOWN_CHARS = 4  # random characters kept in the display prefix
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
ENV_KEY_ID = "env"  # client_id of the static OMNIPOST_API_KEY


def hash_key(plaintext: str) -> str:
    """The stored form of a key: SHA-256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def mode_of(plaintext: str) -> Mode | None:
    """`live` / `test` from the key's prefix; None when it has neither."""
    for mode, prefix in PREFIXES.items():
        if plaintext.startswith(prefix):
            return mode  # type: ignore[return-value]  # the dict's keys are the two modes
    return None


def display_prefix(key: ApiKey) -> str:
    """How a key is shown after mint: `op_live_abcd…`."""
    return key.prefix + "…"


class KeyService:
    """The api_keys table: mint (hash only), list, revoke, verify."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, profile_id: str | None, mode: str, name: str | None = None) -> tuple[ApiKey, str]:
        """Mint a key; return the stored row and the plaintext (the only time it exists).

        Raises:
            ValidationFailedError: mode is not live/test.
            NotFoundError: profile_id names no profile.
        """
        if mode not in PREFIXES:
            raise ValidationFailedError(f"Unknown key mode '{echo(mode)}'.", path="mode", remediation="Use live or test.")
        async with self.db.session() as s:
            if profile_id is not None and await s.get(Profile, profile_id) is None:
                raise NotFoundError(f"Profile '{echo(profile_id)}' was not found.", rule="profileId")
            secret = secrets.token_urlsafe(SECRET_BYTES)
            plaintext = PREFIXES[mode] + secret
            key = ApiKey(id=new_id("key"), name=name, prefix=PREFIXES[mode] + secret[:SHOWN_CHARS], key_hash=hash_key(plaintext),
                         profile_id=profile_id, mode=mode, created_at=self.clock.now())
            s.add(key)
            await s.commit()
        return key, plaintext

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        async with self.db.session() as s:
            return list((await s.exec(select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id)))).all())

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (idempotent: the first revocation time stays). None if there is no such key."""
        async with self.db.session() as s:
            key = await s.get(ApiKey, key_id)
            if key is None:
                return None
            if key.revoked_at is None:
                key.revoked_at = self.clock.now()
                s.add(key)
                await s.commit()
            return key

    async def has_active(self) -> bool:
        """Whether at least one key is not revoked."""
        async with self.db.session() as s:
            return (await s.exec(select(ApiKey.id).where(col(ApiKey.revoked_at).is_(None)).limit(1))).first() is not None

    async def verify(self, plaintext: str) -> ApiKey | None:
        """The live row of this key, or None (unknown, malformed or revoked).

        The lookup is by the key's SHA-256, so timing depends on the hash, not on how many
        characters of a stored key the guess got right. No result is cached: a revocation
        holds from the next request on.
        """
        mode = mode_of(plaintext)
        if mode is None or len(plaintext) > 200:
            return None
        digest = hash_key(plaintext)
        async with self.db.session() as s:
            key = (await s.exec(select(ApiKey).where(ApiKey.key_hash == digest))).first()
            if key is None or key.revoked_at is not None or key.mode != mode:
                return None
            now = self.clock.now()
            if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
                key.last_used_at = now
                s.add(key)
                await s.commit()
            return key


def access_token(key_id: str, profile_id: str | None, mode: str) -> AccessToken:
    """The SDK's view of an authenticated key.

    `AccessToken.token` is a required string, but nothing downstream needs the secret (session
    ownership and request-state binding use client_id/issuer/subject), so it holds the key id.
    """
    return AccessToken(token=key_id, client_id=key_id, expires_at=None,
                       scopes=[f"profile:{profile_id}" if profile_id else "profile:*", f"mode:{mode}"])


class OmnipostTokenVerifier:
    """The SDK TokenVerifier: a bearer API key -> AccessToken (scopes profile:<id>|profile:*, mode:live|test).

    `service_getter` returns the KeyService to ask; it is called on every request (nothing is cached),
    so a revoked key is refused from the next request on. `static_key` is OMNIPOST_API_KEY: an org-wide key,
    client_id "env", live unless it starts with op_test_ (the prefix tells the mode, PRODUCT.md §1).
    """

    def __init__(self, service_getter: Callable[[], Awaitable[KeyService]], static_key: str | None = None) -> None:
        self._service = service_getter
        self._static = static_key.encode("utf-8") if static_key else None

    async def verify_token(self, token: str) -> AccessToken | None:
        if self._static is not None and hmac.compare_digest(token.encode("utf-8"), self._static):
            return access_token(ENV_KEY_ID, None, "test" if token.startswith(PREFIXES["test"]) else "live")
        service = await self._service()
        key = await service.verify(token)
        if key is None:
            return None
        return access_token(key.id, key.profile_id, key.mode)


class LazyKeyService:
    """A KeyService on the verifier's own Database, opened at the first request and closed at shutdown.

    The HTTP transports verify the key before the MCP lifespan (which opens the Runtime's database) has
    run: SSE enters it per connection, after authenticating the GET. A separate engine on the same
    database file works the same for both transports.
    """

    def __init__(self, settings: "Settings", clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._service: KeyService | None = None
        self._lock: anyio.Lock | None = None

    async def get(self) -> KeyService:
        if self._service is None:
            if self._lock is None:
                self._lock = anyio.Lock()  # created in the server's event loop, not at import
            async with self._lock:
                if self._service is None:
                    db = await Database.open(self.settings.database_url, self.settings.data_dir, self.clock.now())
                    self._service = KeyService(db, self.clock)
        return self._service

    async def close(self) -> None:
        if self._service is not None:
            await self._service.db.close()
            self._service = None


async def any_key_exists(settings: "Settings") -> bool:
    """Whether the HTTP transports can be used at all: OMNIPOST_API_KEY set, or an un-revoked key in the database."""
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return True
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(settings.database_url, settings.data_dir, SystemClock().now())
    try:
        return await KeyService(db, SystemClock()).has_active()
    finally:
        await db.close()


# ---- command line (wired into argparse by __main__) -------------------------------------------

def _profile_label(profile: Profile | None) -> str:
    return "org-wide" if profile is None else f"{profile.id} ({profile.name})"


async def _open(settings: "Settings") -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return await Database.open(settings.database_url, settings.data_dir, SystemClock().now())


async def cli_create(settings: "Settings", profile: str | None, mode: str, name: str | None, as_json: bool = False) -> int:
    """`omnipost keys create`: mint a key and print it once. `profile` is an id or name; None = org-wide.

    stdout: one `field: value` per line (id, name, profile, mode, key), or one JSON object with --json.
    Exit 0; 2 (one line on stderr) for an unknown profile or mode.

    Raises:
        InputError: an unknown mode; NotFoundError: an unknown profile.
    """
    if mode not in PREFIXES:
        raise InputError(f"unknown key mode '{echo(mode)}': use live or test.")
    db = await _open(settings)
    try:
        found: Profile | None = None
        if profile is not None:
            async with db.session() as s:
                found = await s.get(Profile, profile) or (await s.exec(select(Profile).where(Profile.name == profile))).first()
            if found is None:
                raise NotFoundError(f"no profile '{echo(profile)}' (give a profile id or name, or --org for an org-wide key).")
        key, plaintext = await KeyService(db, SystemClock()).create(found.id if found else None, mode, name)
    finally:
        await db.close()
    if as_json:
        print(json.dumps({"id": key.id, "name": name, "profileId": found.id if found else None,
                          "profileName": found.name if found else None, "mode": mode, "key": plaintext}, indent=2))
    else:
        print(f"id: {key.id}")
        if name:
            print(f"name: {name}")
        print(f"profile: {_profile_label(found)}")
        print(f"mode: {mode}")
        print(f"key: {plaintext}")
    print("Copy the key now: it is shown only this once (omnipost stores only its hash).", file=sys.stderr)
    return 0


async def cli_list(settings: "Settings", as_json: bool) -> int:
    """`omnipost keys list`: every key (never a secret: id, name, display prefix, profile, mode, times)."""
    db = await _open(settings)
    try:
        keys = await KeyService(db, SystemClock()).list()
        async with db.session() as s:
            names = {p.id: p.name for p in (await s.exec(select(Profile))).all()}
    finally:
        await db.close()

    def iso(t: datetime | None) -> str | None:
        return t.isoformat().replace("+00:00", "Z") if t else None

    rows = [{"id": k.id, "name": k.name, "prefix": display_prefix(k), "profileId": k.profile_id,
             "profileName": names.get(k.profile_id) if k.profile_id else None, "mode": k.mode,
             "createdAt": iso(k.created_at), "lastUsedAt": iso(k.last_used_at), "revokedAt": iso(k.revoked_at)} for k in keys]
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print("no API keys (create one with: omnipost keys create)")
        return 0
    for r in rows:
        scope = f"{r['profileId']} ({r['profileName']})" if r["profileId"] else "org-wide"
        state = f"revoked {r['revokedAt']}" if r["revokedAt"] else f"last used {r['lastUsedAt'] or 'never'}"
        print(f"{r['id']}  {r['prefix']:14}  {r['mode']:4}  {scope}  {r['name'] or '-'}  created {r['createdAt']}  {state}")
    return 0


async def cli_revoke(settings: "Settings", key_id: str, as_json: bool = False) -> int:
    """`omnipost keys revoke KEY_ID`: refused from the next request on. Exit 0; 2 no such key.

    Raises:
        NotFoundError: no key with this id.
    """
    db = await _open(settings)
    try:
        key = await KeyService(db, SystemClock()).revoke(key_id)
    finally:
        await db.close()
    if key is None:
        raise NotFoundError(f"no API key '{echo(key_id)}' (see omnipost keys list).")
    if as_json:
        print(json.dumps({"id": key.id, "prefix": display_prefix(key), "revoked": True}))
    else:
        print(f"revoked {key.id} ({display_prefix(key)})")
    return 0
