"""Connecting a Mastodon account on any server (issue 13; platforms.md §10), through the OAuth connect service.

connect_account(platform="mastodon", instanceUrl=...) goes through ConnectService (oauth/connect.py) like every OAuth
platform, with Mastodon's provider in INSTANCE_PROVIDERS (oauth/providers.py): its endpoints are paths on the
server the user names, and omnipost's app is registered there (`register_app`: POST /api/v1/apps, JSON
{client_name, redirect_uris, scopes}) at the first connect to that server and kept per instance (oauth/apps.py,
table instance_apps, the secret sealed); later connects there reuse it. The user consents at /oauth/authorize (code
flow, PKCE S256), the loopback listener or complete_connect takes the code, and /oauth/token answers a token that
does not expire (no refresh token, no refresher). With accessToken (a token the user made in Preferences →
Development) nothing is registered.

Either way `connected` (the post-exchange step) checks the token and reads who it is, before anything is stored:
GET /api/v1/accounts/verify_credentials (the account id, the username) and GET /api/v2/instance (the server's
domain and limits). The account is `@username@domain`; its identity `<id>@<instance URL>` (a reconnect updates
it); its credentials the OAuthCredentials with extra {instanceUrl, accountId, username}; its defaults
{"instanceUrl", "mastodonInstance": the limits (limits.py's defaults_entry)}.

Limits are refreshed daily (`instance_refresh`, on the PlatformSpec as `defaults_refresh`): whenever accounts are
looked up for validate_post, publish_post or schedule_post (accounts.ProfileDirectory), an account whose limits
were read more than 24 hours ago by the injected clock has its server's /api/v2/instance read again, and the new
limits are stored on every account of that server (Accounts.refresh_defaults). A server that cannot be read then
keeps its last limits (logged; tried again at the next lookup).

The instance URL is user input: it is shape-checked (netguard.check_base_url) and every request goes through the
runtime's guarded client, so a server at a non-public address is refused before any connection
(upstream.url_forbidden, path instanceUrl).
"""

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from omnipost.clock import Clock
from omnipost.errors import PlatformAuthError, PlatformUnavailableError, ValidationFailedError
from omnipost.netguard import check_base_url
from omnipost.oauth.model import AppCredentials, ExchangeContext, OAuthCredentials, TokenSet
from omnipost.oauth.providers import Provider
from omnipost.platforms.base import AdapterDeps, Connected, ConnectRequest
from omnipost.platforms.mastodon.api import INSTANCE_KEY, call

CLIENT_NAME = "omnipost"
LIMITS_TTL = timedelta(hours=24)


class MastodonCredentials(BaseModel):
    """What a Mastodon account stores (sealed at rest): an OAuthCredentials dump whose extra names the server and
    the account there."""

    model_config = ConfigDict(extra="allow")

    access_token: SecretStr
    scope: list[str] = Field(default_factory=list)
    token_type: str = "Bearer"
    extra: dict[str, Any] = Field(default_factory=dict)  # {instanceUrl, accountId, username}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _App(_Loose):
    client_id: str
    client_secret: str


class _Me(_Loose):
    id: str
    username: str
    acct: str | None = None


async def register_app(http: httpx2.AsyncClient, provider: Provider, redirect_uri: str, clock: Clock, timeout: float) -> AppCredentials:
    """omnipost's app on the server (POST /api/v1/apps): its client id and secret (oauth.model.Registrar)."""
    answer = await call(http, "POST", f"{provider.api_base}/api/v1/apps", write=False, now=clock.now().timestamp(),
                        timeout=timeout, what="/api/v1/apps",
                        json={"client_name": CLIENT_NAME, "redirect_uris": [redirect_uri], "scopes": provider.scope_string})
    try:
        app = _App.model_validate(answer.body)
    except ValidationError:
        raise PlatformUnavailableError("Mastodon registered the app without client credentials.", remediation="Retry later.") from None
    return AppCredentials(app.client_id, app.client_secret)


async def read_instance(http: httpx2.AsyncClient, instance: str, *, clock: Clock, timeout: float) -> dict[str, Any]:
    """GET /api/v2/instance (public): the server's description and configuration."""
    answer = await call(http, "GET", f"{instance}/api/v2/instance", write=False, now=clock.now().timestamp(), timeout=timeout,
                        what="/api/v2/instance")
    if not isinstance(answer.body, dict):
        raise PlatformUnavailableError("Mastodon answered /api/v2/instance without an object.", remediation="Retry later.")
    return answer.body  # pyright: ignore[reportUnknownVariableType]


def limits_entry(instance: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The account default `mastodonInstance` for this /api/v2/instance answer (limits.py)."""
    from omnipost.platforms.mastodon.limits import defaults_entry, from_instance

    return defaults_entry(from_instance(instance, body, now))


async def connected(ctx: ExchangeContext) -> list[Connected]:
    """The post-exchange step (oauth.model.PostExchange): who the token is, and the server's limits.

    Raises:
        PlatformAuthError: the server refused the token. PlatformError: it could not be read."""
    instance, clock = ctx.api_base, ctx.clock
    answer = await call(ctx.http, "GET", f"{instance}/api/v1/accounts/verify_credentials", write=False,
                        now=clock.now().timestamp(), timeout=30.0, token=ctx.tokens.access_token, what="verify_credentials")
    try:
        me = _Me.model_validate(answer.body)
    except ValidationError:
        raise PlatformAuthError("Mastodon's verify_credentials named no account.", remediation="Connect again.") from None
    server = await read_instance(ctx.http, instance, clock=clock, timeout=30.0)
    domain = server.get("domain") if isinstance(server.get("domain"), str) else httpx2.URL(instance).host
    extra: dict[str, Any] = {"instanceUrl": instance, "accountId": me.id, "username": me.username}
    if ctx.app is not None and ctx.app.client_id and ctx.app.client_secret:  # the app the token was issued to: revoking needs it
        extra |= {"clientId": ctx.app.client_id, "clientSecret": ctx.app.client_secret}
    credentials = OAuthCredentials(access_token=ctx.tokens.access_token, scope=list(ctx.tokens.scope), token_type="Bearer",
                                   extra=extra).model_dump(mode="json")
    return [Connected(handle=f"@{me.username}@{domain}", identity=f"{me.id}@{instance}", token_expires_at=None,
                      credentials=credentials,
                      defaults={"instanceUrl": instance, INSTANCE_KEY: limits_entry(instance, server, clock.now())})]


async def connect_account(req: ConnectRequest) -> Connected:
    """A brought token (`accessToken`) on `instanceUrl`, checked by `connected` (PlatformSpec.connect_with; the tool
    itself goes through the connect service, which calls `connected` the same way).

    Raises:
        ValidationFailedError: no accessToken or instanceUrl. See connected."""
    token, url = req.args.get("accessToken"), req.args.get("instanceUrl")
    if not token:
        raise ValidationFailedError("Connecting Mastodon without OAuth needs accessToken.", path="accessToken")
    if not url:
        raise ValidationFailedError("Connecting Mastodon needs instanceUrl.", path="instanceUrl")
    ctx = ExchangeContext(http=req.deps.http, tokens=TokenSet(access_token=str(token)), app=AppCredentials(""),
                          api_base=check_base_url(str(url), path="instanceUrl"), clock=req.deps.clock)
    [found] = await connected(ctx)
    return Connected(handle=found.handle, credentials=found.credentials, defaults={**req.defaults, **found.defaults},
                     identity=found.identity)


# --- revoking ------------------------------------------------------------------------------------------------------------

class MastodonRevoker:
    """The Refresher (oauth/model.py) of Mastodon accounts, for disconnect_account: Mastodon tokens do not expire, so
    there is nothing to refresh; revoking is POST /oauth/revoke with the app the token was issued to (stored with an
    account connected through OAuth; a brought token's app is unknown, so it cannot be revoked here)."""

    def __init__(self, http: httpx2.AsyncClient, *, clock: Clock, timeout: float = 30.0) -> None:
        self.http, self.clock, self.timeout = http, clock, timeout

    async def refresh(self, credentials: dict[str, Any]) -> TokenSet:
        raise PlatformAuthError("Mastodon tokens are not renewed: the token was refused.", remediation="Reconnect the account (connect_account).")

    async def revoke(self, credentials: dict[str, Any]) -> bool:
        extra = credentials.get("extra") if isinstance(credentials.get("extra"), dict) else {}
        instance, client_id, secret = extra.get("instanceUrl"), extra.get("clientId"), extra.get("clientSecret")
        token = credentials.get("access_token")
        if not (instance and client_id and secret and token):
            return False
        try:
            await call(self.http, "POST", f"{instance}/oauth/revoke", write=False, now=self.clock.now().timestamp(),
                       timeout=self.timeout, what="/oauth/revoke", json={"client_id": client_id, "client_secret": secret, "token": token})
        except PlatformAuthError:
            return True  # the server no longer knows the token: nothing left to revoke
        return True


def refresher(deps: AdapterDeps) -> MastodonRevoker:
    """The spec's `refresher` (revoking only; see MastodonRevoker)."""
    return MastodonRevoker(deps.http, clock=deps.clock, timeout=deps.timeout)


# --- the daily refresh of the limits ----------------------------------------------------------------------------------

def _instance_of(defaults: dict[str, Any]) -> str | None:
    """The account's server: its `instanceUrl`, else the one its stored limits were read from."""
    entry = defaults.get(INSTANCE_KEY)
    url = defaults.get("instanceUrl") or (entry.get("url") if isinstance(entry, dict) else None)
    return url.rstrip("/") if isinstance(url, str) and url else None


def _stale(defaults: dict[str, Any], now: datetime) -> bool:
    """Whether the stored limits were read 24 hours ago or more (or never, or unreadably)."""
    entry = defaults.get(INSTANCE_KEY)
    raw = entry.get("checkedAt") if isinstance(entry, dict) else None
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when is None or now - when >= LIMITS_TTL


async def _fetch(deps: AdapterDeps, instance: str) -> dict[str, Any]:
    return limits_entry(instance, await read_instance(deps.http, instance, clock=deps.clock, timeout=deps.timeout),
                        deps.clock.now())


def instance_refresh() -> Any:
    """The spec's `defaults_refresh` (platforms/base.py DefaultsRefresh): the instance's limits, daily, per server."""
    from omnipost.platforms.base import DefaultsRefresh

    return DefaultsRefresh(key=INSTANCE_KEY, source=_instance_of, stale=_stale, fetch=_fetch)
