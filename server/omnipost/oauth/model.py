"""The shapes the OAuth parts share: what a token endpoint answered (`TokenSet`), what an OAuth account stores
(`OAuthCredentials`, sealed at rest like every credential), the app's client credentials (`AppCredentials`), and
the two per-platform hooks:

- `PostExchange`: after the code (or a brought token) is exchanged, who the tokens belong to, as the accounts to
  store (Facebook: one per Page chosen; Instagram: the business account linked to a Page; LinkedIn: the author
  URN). It may swap the token first (Meta's long-lived token exchange).
- `Refresher`: renew an account's tokens (rotating single-use refresh tokens, Meta's exchange, Threads'
  th_refresh_token) and revoke them upstream. `TokenSession` (one per account) drives it.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

import httpx2
from pydantic import BaseModel, ConfigDict, Field

from omnipost.clock import Clock

if TYPE_CHECKING:
    from omnipost.oauth.providers import Provider
    from omnipost.platforms.base import Connected


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint answered (or a user brought), with `expires_in` already turned into an instant."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None  # None: the provider gave no lifetime
    scope: tuple[str, ...] = ()
    token_type: str = "Bearer"
    extra: dict[str, Any] = field(default_factory=lambda: {}, repr=False)  # the rest of the answer (id_token, user_id...)

    def refresh_lapse(self, now: datetime) -> datetime | None:
        """When the refresh token ends, as the answer's rest says: `refresh_token_expires_at` (Unix seconds, Pinterest)
        or `refresh_token_expires_in` (seconds from `now`: LinkedIn, Pinterest); None when it says neither."""
        at, lifetime = self.extra.get("refresh_token_expires_at"), self.extra.get("refresh_token_expires_in")
        if isinstance(at, int | float) and not isinstance(at, bool) and at > 0:
            return datetime.fromtimestamp(at, timezone.utc)
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
            return now + timedelta(seconds=lifetime)
        return None


class OAuthCredentials(BaseModel):
    """What an OAuth-connected account stores (sealed at rest). `extra` holds what the post-exchange steps learned
    that publishing needs (a Page id and its token, an Instagram user id, a LinkedIn author URN)."""

    model_config = ConfigDict(extra="forbid")

    access_token: str = Field(repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    scope: list[str] = Field(default_factory=list)
    token_type: str = "Bearer"
    extra: dict[str, Any] = Field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class AppCredentials:
    """The app's client id and secret for one platform (from the environment / .env; never logged)."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ExchangeContext:
    """What a post-exchange step is given: the one guarded HTTP client, the tokens just obtained, the app, the
    platform's API base URL (overridable so tests point it at a fake), the clock, and connect_account's arguments
    (e.g. which Facebook Page to connect)."""

    http: httpx2.AsyncClient
    tokens: TokenSet
    app: AppCredentials
    api_base: str
    clock: Clock
    args: dict[str, Any] = field(default_factory=lambda: {})


PostExchange = Callable[[ExchangeContext], Awaitable[list["Connected"]]]
"""Who the tokens belong to: one `Connected` per account to store (its credentials an OAuthCredentials dump)."""


Registrar = Callable[["httpx2.AsyncClient", "Provider", str, Clock, float], Awaitable[AppCredentials]]
"""Registers omnipost's app on a per-instance provider's server: (the guarded client, the provider placed on the
instance, the redirect URI, the clock, the timeout) → the app's client credentials (Mastodon: POST /api/v1/apps)."""


class Refresher(Protocol):
    """Renews and revokes one platform's tokens."""

    async def refresh(self, credentials: dict[str, Any]) -> TokenSet:
        """New tokens for these stored credentials. Raises PlatformAuthError when the platform refuses (the user
        must reconnect), another PlatformError when it may work later."""
        ...

    async def revoke(self, credentials: dict[str, Any]) -> bool:
        """Revoke upstream; False when the platform has no revoke endpoint. Raises a PlatformError on failure."""
        ...
