"""Per-platform OAuth provider data (ARCHITECTURE §2, Connect; facts from shared platforms.md, sections named below).

A `Provider` is data: endpoints, scopes and their separator, how the client authenticates at the token endpoint,
whether PKCE is sent, how tokens are renewed, the revoke endpoint, and the post-exchange step (by platform name,
looked up lazily in `omnipost.oauth.steps.STEPS`). `provider_for(platform, environ)` applies the configuration:

    OMNIPOST_<PLATFORM>_CLIENT_ID / _CLIENT_SECRET    the app's credentials (from the developer portal)
    OMNIPOST_<PLATFORM>_AUTHORIZE_URL / _TOKEN_URL / _REVOKE_URL / _API_BASE / _SCOPES   endpoint overrides

(<PLATFORM> is the canonical id upper-cased: X, LINKEDIN, FACEBOOK, INSTAGRAM, THREADS, PINTEREST). The overrides
exist so a test, or a staging deployment, points a platform at another authorization server; `_SCOPES` is written
with the provider's own separator.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from omnipost.oauth.model import AppCredentials

ClientAuth = Literal["basic", "form"]  # HTTP Basic client_id:client_secret, or both in the form body
Pkce = Literal["required", "supported", "none"]  # S256 is sent unless "none"
RefreshKind = Literal["rotating", "refresh_token", "fb_exchange", "th_refresh", "ig_refresh", "none"]
# rotating: refresh_token grant, each answer carries a new single-use refresh token (X, Pinterest continuous)
# refresh_token: refresh_token grant, the refresh token may stay the same (LinkedIn's MDP apps)
# fb_exchange: no refresh token; a long-lived user token is exchanged again (fb_exchange_token); Page tokens do not lapse
# th_refresh / ig_refresh: GET <api>/refresh_access_token?grant_type=th_refresh_token|ig_refresh_token
# none: the token cannot be renewed without the user

META_VERSION = "v24.0"  # the Graph API version the registry pins (platforms/registry.py)


@dataclass(frozen=True)
class Provider:
    """One platform's OAuth 2.0 authorization-code data."""

    platform: str
    authorize_url: str
    token_url: str
    api_base: str  # where the post-exchange step (whoami, Pages...) calls
    scopes: tuple[str, ...]
    scope_separator: str = " "
    client_auth: ClientAuth = "form"
    pkce: Pkce = "supported"
    token_method: Literal["POST", "GET"] = "POST"  # Facebook's /oauth/access_token takes its parameters in the query
    refresh: RefreshKind = "rotating"
    revoke_url: str | None = None  # RFC 7009 revocation endpoint; None: the platform has none we use
    portal: str = ""  # the developer-portal page where the app's client id and secret are found
    step: str = ""  # the post-exchange step's name in omnipost.oauth.steps.STEPS (the platform id), or "module:function"
    app: AppCredentials | None = None  # filled by provider_for() from the configuration
    # Per-instance platforms (INSTANCE_PROVIDERS): the endpoints above are paths on the instance the user names, and
    # the app is registered there at the first connect ("module:function" of an oauth.model.Registrar).
    register: str = ""

    @property
    def env_prefix(self) -> str:
        return env_prefix(self.platform)

    @property
    def scope_string(self) -> str:
        return self.scope_separator.join(self.scopes)


def env_prefix(platform: str) -> str:
    """OMNIPOST_X_ for x."""
    return f"OMNIPOST_{platform.upper()}_"


def credential_variables(platform: str) -> tuple[str, str]:
    """The environment variables holding a platform's app credentials."""
    prefix = env_prefix(platform)
    return prefix + "CLIENT_ID", prefix + "CLIENT_SECRET"


_FB_DIALOG = f"https://www.facebook.com/{META_VERSION}/dialog/oauth"
_FB_GRAPH = f"https://graph.facebook.com/{META_VERSION}"

PROVIDERS: dict[str, Provider] = {p.platform: p for p in (
    # platforms.md §2.1: PKCE S256, space-separated scopes, Basic for a confidential client, 30 s code lifetime,
    # refresh only with offline.access, single-use rotating refresh tokens (unconfirmed but widely reported).
    Provider("x", authorize_url="https://x.com/i/oauth2/authorize", token_url="https://api.x.com/2/oauth2/token",
             api_base="https://api.x.com", scopes=("tweet.read", "tweet.write", "users.read", "offline.access", "media.write"),
             client_auth="basic", pkce="required", refresh="rotating", revoke_url="https://api.x.com/2/oauth2/revoke",
             portal="https://developer.x.com/en/portal/dashboard (your app → Keys and tokens → OAuth 2.0 Client ID and Client Secret)",
             step="x"),
    # §3.1: form client auth, space-separated scopes; refresh tokens only for approved (MDP) apps, not rotated.
    Provider("linkedin", authorize_url="https://www.linkedin.com/oauth/v2/authorization",
             token_url="https://www.linkedin.com/oauth/v2/accessToken", api_base="https://api.linkedin.com",
             scopes=("openid", "profile", "w_member_social"), client_auth="form", pkce="none", refresh="refresh_token",
             portal="https://www.linkedin.com/developers/apps (your app → Auth → Client ID and Primary Client Secret)",
             step="linkedin"),
    # §4.1: Facebook Login; GET token endpoint; a short-lived user token exchanged for a long-lived one (the step),
    # Page tokens then do not lapse. Comma-separated scopes.
    Provider("facebook", authorize_url=_FB_DIALOG, token_url=f"{_FB_GRAPH}/oauth/access_token", api_base=_FB_GRAPH,
             scopes=("pages_show_list", "pages_read_engagement", "pages_manage_posts", "business_management"),
             scope_separator=",", token_method="GET", pkce="supported", refresh="fb_exchange",
             portal="https://developers.facebook.com/apps (your app → App settings → Basic: App ID and App secret)",
             step="facebook"),
    # §5: Instagram professional accounts through Facebook Login (the business account linked to a Page).
    Provider("instagram", authorize_url=_FB_DIALOG, token_url=f"{_FB_GRAPH}/oauth/access_token", api_base=_FB_GRAPH,
             scopes=("instagram_basic", "instagram_content_publish", "pages_show_list", "pages_read_engagement",
                     "business_management"),
             scope_separator=",", token_method="GET", pkce="supported", refresh="fb_exchange",
             portal="https://developers.facebook.com/apps (your app → App settings → Basic: App ID and App secret)",
             step="instagram"),
    # §6.1: comma-separated scopes, form client auth; short-lived → long-lived (th_exchange_token, the step);
    # renewed with th_refresh_token.
    Provider("threads", authorize_url="https://threads.net/oauth/authorize",
             token_url="https://graph.threads.net/oauth/access_token", api_base="https://graph.threads.net/v1.0",
             scopes=("threads_basic", "threads_content_publish", "threads_manage_replies"), scope_separator=",",
             pkce="supported", refresh="th_refresh",
             portal="https://developers.facebook.com/apps (your Threads app → App settings → Basic: Threads App ID and secret)",
             step="threads"),
    # §7: HTTP Basic at the token endpoint, comma-separated scopes, continuous rotating refresh tokens.
    Provider("pinterest", authorize_url="https://www.pinterest.com/oauth/", token_url="https://api.pinterest.com/v5/oauth/token",
             api_base="https://api.pinterest.com/v5", scopes=("boards:read", "pins:read", "pins:write", "user_accounts:read"),
             scope_separator=",", client_auth="basic", pkce="supported", refresh="rotating",
             portal="https://developers.pinterest.com/apps/ (your app → App id and App secret key)",
             step="pinterest"),
)}
"""Every OAuth platform's provider data, before configuration."""


INSTANCE_PROVIDERS: dict[str, Provider] = {p.platform: p for p in (
    # platforms.md §10: any Mastodon server; the app is registered per instance (POST /api/v1/apps) and its client id
    # and secret stored (oauth/apps.py); PKCE S256 (4.3+; older servers ignore it); tokens do not expire. read:statuses
    # is asked besides the publishing scopes for reconciling: the account's own statuses and a status's source.
    Provider("mastodon", authorize_url="/oauth/authorize", token_url="/oauth/token", api_base="",
             scopes=("read:accounts", "read:statuses", "write:statuses", "write:media"), client_auth="form",
             pkce="supported", refresh="none", revoke_url="/oauth/revoke",
             portal="your Mastodon server's Preferences → Development (to generate a token yourself)",
             step="omnipost.platforms.mastodon.connect:connected",
             register="omnipost.platforms.mastodon.connect:register_app"),
)}
"""The OAuth platforms whose authorization server is the instance a user names (connect_account's instanceUrl): no app
credentials are configured; ConnectService registers one per instance (oauth/apps.py) and reuses it."""


def on_instance(base: Provider, instance: str, app: AppCredentials | None) -> Provider:
    """A per-instance provider placed on the instance at `instance` (a checked base URL), with its registered app."""
    return replace(base, authorize_url=instance + base.authorize_url, token_url=instance + base.token_url,
                   revoke_url=instance + base.revoke_url if base.revoke_url else None, api_base=instance, app=app)


def _value(environ: Mapping[str, str], name: str) -> str | None:
    value = (environ.get(name) or "").strip()
    # An unset bundle setting arrives empty, or (a host that does not substitute it) as the "${user_config...}" itself.
    return value if value and not value.startswith("${") else None


def provider_for(platform: str, environ: Mapping[str, str]) -> Provider:
    """The platform's provider with the configuration applied: endpoint overrides and the app credentials (None
    when the client id is not set). Raises KeyError for a platform that does not connect through OAuth."""
    base = PROVIDERS[platform]
    prefix = base.env_prefix
    scopes = _value(environ, prefix + "SCOPES")
    client_id, client_secret = (_value(environ, name) for name in credential_variables(platform))
    return replace(
        base,
        authorize_url=_value(environ, prefix + "AUTHORIZE_URL") or base.authorize_url,
        token_url=_value(environ, prefix + "TOKEN_URL") or base.token_url,
        revoke_url=_value(environ, prefix + "REVOKE_URL") or base.revoke_url,
        api_base=(_value(environ, prefix + "API_BASE") or base.api_base).rstrip("/"),
        scopes=tuple(s for s in scopes.split(base.scope_separator) if s) if scopes else base.scopes,
        app=AppCredentials(client_id, client_secret) if client_id else None,
    )


def oauth_configured(platform: str, environ: Mapping[str, str]) -> bool:
    """Whether the platform connects through OAuth and its app's client id is set."""
    return platform in PROVIDERS and provider_for(platform, environ).app is not None
