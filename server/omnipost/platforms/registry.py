"""The platform registry (ARCHITECTURE §2): one `PlatformSpec` per platform, in `PLATFORMS`.

Everything the rest of the program needs to know about a platform is data on its spec: the connect tool's
platform list, the request's per-platform option objects (request.py), the runtime's adapters (built through
`spec.adapter.from_deps`), the preview builders (platforms/__init__.py), the pinned API versions (versions.py), the daily
caps (caps.py) and the manifest's platform keywords (manifest.py) are all read from here.
tests/test_registry.py fails when a platform lacks a part (spec field, rules, preflight cases, fake, tests).

Adding a platform: its modules (preview builder platforms/<p>.py, options/credentials in platforms/models.py,
an adapter when it publishes), preflight/rules/<p>.py, a `Platform` member in domain.py, and one entry below.

Ids are the canonical platform ids (domain.Platform values) plus "sandbox", the local simulated platform,
which has no rules of its own (a sandbox account applies the rules of the platform it emulates).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from types import ModuleType
from typing import Any, Literal

import httpx2
from pydantic import BaseModel

from omnipost.clock import Clock
from omnipost.domain import Platform
from omnipost.oauth.model import Refresher
from omnipost.platforms import bluesky, facebook, instagram, linkedin, mastodon, pinterest, sandbox, threads, x
from omnipost.platforms.base import AdapterDeps, Connected, ConnectRequest, DefaultsRefresh, PlatformAdapter
from omnipost.platforms.mastodon import api as mastodon_api, connect as mastodon_connect
from omnipost.platforms.mastodon.adapter import MastodonAdapter
from omnipost.preflight.model import PlatformRules, ResolvedTarget
from omnipost.preflight.rules import RULES, URL_ONLY_MEDIA
from omnipost.versions import ApiVersion

ConnectKind = Literal["app_password", "oauth2", "token", "sandbox", "none"]  # "none": no connect flow built yet
Strategy = Literal["caller_id", "idempotency_key", "container", "search", "none"]  # how exactly-once is reached


@dataclass(frozen=True)
class Capabilities:
    """What a platform can carry, as the preflight rules encode it (see `_capabilities`)."""

    threads: bool
    first_comment: bool
    video: bool
    alt_text: bool
    media_by_url_only: bool


@dataclass(frozen=True)
class PlatformSpec:
    """Everything the program knows about one platform."""

    platform: str  # the canonical id (a domain.Platform value, or "sandbox")
    adapter: type[PlatformAdapter] | None  # None: validation and previews only; built with adapter.from_deps(deps)
    credentials: type[BaseModel] | None  # what a connect stores; None while there is no connect flow
    options: type[BaseModel] | None  # a target's option object for this platform; None: takes none
    preview: Callable[[ResolvedTarget], dict[str, Any]] | None  # the request body validate_post previews
    connect: ConnectKind
    connect_help: str  # how a user connects, for the connect tool's description
    connect_with: Callable[[ConnectRequest], Awaitable[Connected]] | None  # the connect flow (None: none built yet, or OAuth)
    connect_args: tuple[str, ...]  # connect_account's arguments only this platform takes (appPassword, ...)
    capabilities: Capabilities
    exactly_once: Strategy
    api_version: ApiVersion | None
    daily_cap: int | None  # posts per account per rolling 24 h (caps.py), from the rules' daily_post_cap
    errors: Any = None  # the platform's ErrorMap (platforms/errormap.py) once it exists: module constant ERRORS
    # Deep checks (made once the media are fetched, before anything is sent): the rule a medium the platform fetches
    # by URL breaks when that URL does not answer, and the option links the platform fetches itself, each with its rule.
    media_reachable_rule: str | None = None
    checked_links: tuple[tuple[str, str], ...] = ()  # (option name, rule id)
    rules: PlatformRules | None = field(default=None, repr=False)  # None only for the sandbox (it emulates)
    # Renews and revokes the platform's tokens (oauth/model.py Refresher), built from the runtime's AdapterDeps and
    # driven by each account's TokenSession (oauth/session.py). None: tokens are not renewed without the user.
    refresher: Callable[[AdapterDeps], Refresher | None] | None = None
    # Account defaults kept fresh from upstream (Mastodon: the server's limits, read again daily): Accounts.refresh_defaults.
    defaults_refresh: DefaultsRefresh | None = None

    @property
    def real(self) -> bool:
        """A real platform (with rules of its own), not the sandbox, which emulates one."""
        return self.rules is not None

    @property
    def publishes(self) -> bool:
        """Whether omnipost can publish to (and connect) this platform."""
        return self.adapter is not None


def _capabilities(p: Platform) -> Capabilities:
    """Read from the rules: threads / first comments as the rules allow them, video when an accepted media type
    is a video, alt text when a rule bounds it, media only by public URL for the URL-ingest platforms."""
    rules = RULES[p]
    mimes = [str(v) for r in rules.rules if r.id.endswith("mime_allowed") for v in (r.limit or ())]
    return Capabilities(threads=rules.supports_thread, first_comment=rules.supports_first_comment,
                        video=any(v.startswith("video/") for v in mimes),
                        alt_text=any("alt_text" in r.id for r in rules.rules),
                        media_by_url_only=p in URL_ONLY_MEDIA)


def _errors(module: ModuleType) -> Any:
    """The module's ErrorMap (`ERRORS`), when the platform has one."""
    return getattr(module, "ERRORS", None)


def _spec(p: Platform, module: ModuleType, *, options: type[BaseModel], exactly_once: Strategy,
          api_version: ApiVersion, connect: ConnectKind = "none", connect_help: str = "",
          adapter: type[PlatformAdapter] | None = None, credentials: type[BaseModel] | None = None,
          connect_with: Callable[[ConnectRequest], Awaitable[Connected]] | None = None, connect_args: tuple[str, ...] = (),
          media_reachable_rule: str | None = None, checked_links: tuple[tuple[str, str], ...] = (),
          refresher: Callable[[AdapterDeps], Refresher | None] | None = None, errors: Any = None,
          defaults_refresh: DefaultsRefresh | None = None) -> PlatformSpec:
    """A real platform's spec: preview builder, capabilities and daily cap come from its modules and rules."""
    rules = RULES[p]
    return PlatformSpec(platform=p.value, adapter=adapter, credentials=credentials, options=options,
                        preview=module.build_post, connect=connect, connect_help=connect_help,
                        connect_with=connect_with, connect_args=connect_args,
                        capabilities=_capabilities(p), exactly_once=exactly_once, api_version=api_version,
                        daily_cap=rules.daily_post_cap, errors=errors if errors is not None else _errors(module), rules=rules,
                        media_reachable_rule=media_reachable_rule, checked_links=checked_links, refresher=refresher,
                        defaults_refresh=defaults_refresh)


# API version pins (PRODUCT §10): what each adapter speaks upstream, and when that stops working (versions.py).
_META_CHANGELOG = ("Meta Graph API changelog, 'Available Graph API versions' table "
                   "(https://developers.facebook.com/docs/graph-api/changelog/versions): v24.0 introduced 2025-10-08, "
                   "available until 2028-02-18; pinned to a recent version (2026 docs show v24/v25)")

PLATFORMS: dict[str, PlatformSpec] = {s.platform: s for s in (
    _spec(Platform.BLUESKY, bluesky, options=bluesky.BlueskyOptions, exactly_once="caller_id",
          adapter=bluesky.BlueskyAdapter, credentials=bluesky.BlueskyCredentials, connect="app_password",
          connect_with=bluesky.connect_account, connect_args=("appPassword", "pdsUrl"), refresher=bluesky.refresher,
          connect_help="bluesky (handle + app password)",
          api_version=ApiVersion(
              "bluesky", "AT Protocol XRPC lexicons (com.atproto.*, app.bsky.*)", "lexicons", None,
              source="atproto lexicons (https://github.com/bluesky-social/atproto/tree/main/lexicons, snapshot 2026-08): lexicons evolve by backwards-compatible "
                     "additions; there is no versioned endpoint and no published sunset",
              checked="2026-11-24")),
    # OAuth 2.0 (oauth/providers.py, oauth/connect.py): connect_account starts the flow itself, no connect_with.
    _spec(Platform.X, x, options=x.TwitterOptions, exactly_once="search", adapter=x.XAdapter, credentials=x.XCredentials,
          connect="oauth2", connect_help="x",  # the OAuth flow needs nothing more (the budget of tools/list is tight)
          refresher=x.refresher,
          api_version=ApiVersion(
              "x", "X API", "v2", None,
              source="X API v2 OpenAPI document (https://api.x.com/2/openapi.json, 2026-08): POST /2/tweets, /2/media/upload; "
                     "no published sunset for v2",
              checked="2026-11-24")),
    _spec(Platform.LINKEDIN, linkedin, options=linkedin.LinkedInOptions, exactly_once="search",
          api_version=ApiVersion(
              "linkedin", "LinkedIn-Version header (versioned REST)", "202607", date(2027, 7, 15),
              source="LinkedIn API versioning (https://learn.microsoft.com/en-us/linkedin/marketing/versioning): `LinkedIn-Version: YYYYMM`; LinkedIn's migrations page lists each monthly "
                     "version's sunset about a year after release (202601: 2027-01-15, 202602: 2027-02-15, "
                     "202603: 2027-03-16); 202607 (July 2026) is the newest version in our sources",
              checked="2026-12-04", confirmed=False,
              note="202607's sunset is not yet listed in our sources: estimated as the 15th of the same month a year "
                   "later, as for the listed versions. Bump to a newer month before it.")),
    _spec(Platform.FACEBOOK, facebook, options=facebook.FacebookOptions, exactly_once="search",
          api_version=ApiVersion("facebook", "Graph API", "v24.0", date(2028, 2, 18), source=_META_CHANGELOG,
                                 checked="2026-11-24")),
    _spec(Platform.INSTAGRAM, instagram, options=instagram.InstagramOptions, exactly_once="container",
          media_reachable_rule="instagram.media.reachable",
          api_version=ApiVersion("instagram", "Graph API (Instagram Content Publishing)", "v24.0", date(2028, 2, 18),
                                 source=_META_CHANGELOG, checked="2026-11-24")),
    _spec(Platform.THREADS, threads, options=threads.ThreadsOptions, exactly_once="container",
          api_version=ApiVersion(
              "threads", "Threads API (graph.threads.net)", "v1.0", None,
              source="Threads API docs (https://developers.facebook.com/docs/threads): base https://graph.threads.net/v1.0",
              checked="2026-11-24", confirmed=False,
              note="Meta publishes no expiry for Threads v1.0 in our sources; unconfirmed that none exists.")),
    _spec(Platform.PINTEREST, pinterest, options=pinterest.PinterestOptions, exactly_once="search",
          media_reachable_rule="pinterest.image_url.reachable",
          checked_links=(("destinationUrl", "pinterest.destination_url.reachable"),),
          api_version=ApiVersion(
              "pinterest", "Pinterest API", "v5", None,
              source="Pinterest API v5 reference (https://developers.pinterest.com/docs/api/v5/): base https://api.pinterest.com/v5",
              checked="2026-11-24", confirmed=False, note="No published sunset for v5 in our sources (unconfirmed).")),
    # Any server: connect_account takes its instanceUrl, then OAuth (the app registered per server) or an accessToken;
    # tokens do not expire. Exactly once by Idempotency-Key (platforms/mastodon/adapter.py).
    _spec(Platform.MASTODON, mastodon, options=mastodon.MastodonOptions, exactly_once="idempotency_key",
          adapter=MastodonAdapter, credentials=mastodon_connect.MastodonCredentials, connect="oauth2",
          connect_with=mastodon_connect.connect_account, connect_args=("instanceUrl",), errors=mastodon_api.ERRORS,
          defaults_refresh=mastodon_connect.instance_refresh(), refresher=mastodon_connect.refresher,
          connect_help="mastodon (instanceUrl)",
          api_version=ApiVersion(
              "mastodon", "Mastodon REST API (/api/v1, /api/v2 paths)", "4.7.0", None,
              source="Mastodon API 4.7.0 OpenAPI document (abraham/mastodon-openapi dist/schema.json, 2026-08-19): "
                     "POST /api/v1/statuses (Idempotency-Key), POST /api/v2/media, GET /api/v2/instance; endpoints are "
                     "versioned by path (v1/v2) and Mastodon publishes no sunset for them",
              checked="2026-12-05")),
    # The local simulated platform: it writes every piece (post, thread replies, first comment, media with alt
    # text) under an id we choose, and takes any media; the rules are those of the platform it emulates.
    PlatformSpec(
        platform="sandbox", adapter=sandbox.SandboxAdapter, credentials=sandbox.SandboxCredentials,
        options=None, preview=None, connect="sandbox", connect_help="sandbox: a local simulated platform",
        connect_with=sandbox.connect_account, connect_args=("emulates", "sandboxMode"),
        capabilities=Capabilities(threads=True, first_comment=True, video=True, alt_text=True, media_by_url_only=False),
        exactly_once="caller_id",
        api_version=ApiVersion("sandbox", "omnipost sandbox (local simulated platform)", "v1", None,
                               source="omnipost's own sandbox upstream (/v1/…); versioned with omnipost", checked="2026-11-24"),
        daily_cap=None, errors=_errors(sandbox)),
)}

CONNECTABLE: tuple[str, ...] = tuple(sorted((p for p, s in PLATFORMS.items() if s.publishes), key=lambda p: PLATFORMS[p].real))
"""The platforms connect_account takes (those with an adapter), the sandbox first."""

CONNECT_HELP = (", ".join(PLATFORMS[p].connect_help for p in CONNECTABLE if PLATFORMS[p].real) + ", or "
                + ", ".join(PLATFORMS[p].connect_help for p in CONNECTABLE if not PLATFORMS[p].real) + ".")
"""How to connect each of them (the connect tool's `platform` description)."""

CONNECT_ARGS: dict[str, str] = {arg: p for p, s in PLATFORMS.items() for arg in s.connect_args}
"""connect_account's platform-specific arguments and the one platform that takes each."""


def spec_of(platform: str | None) -> PlatformSpec | None:
    """The spec of a canonical platform id (not an alias), or None."""
    return PLATFORMS.get(platform) if platform else None
