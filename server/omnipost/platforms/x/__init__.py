"""X (API v2): the POST /2/tweets preview, the publish options, and XAdapter (platforms.md §2).

Connect. OAuth 2.0 authorization code with PKCE (oauth/providers.py's "x" provider, oauth/steps.py's whoami step),
or a token brought from the developer portal (connect_account accessToken, verified by the same whoami). Accounts
store an `OAuthCredentials` dump (`XCredentials` is its sealed shape) with `extra = {userId, username}`. The adapter
never refreshes: it takes tokens from the account's TokenSession; the runtime gives that session the OAuth refresher
(`refresher` below, oauth/client.py's `refresher_for`) when the app's client id is configured. X's refresh tokens
are single-use and rotate on every refresh: the session commits the new one before the new access token is used.
Every call that X answers 401 is repeated once after one refresh (`with_token`).

API base. `https://api.x.com`, or OMNIPOST_X_API_BASE (provider_for): tests and proxies point X elsewhere; the
runtime's SSRF guard still decides whether that address may be reached (loopback only with
upstream_allow_loopback).

Publish. The main post carries the text, `reply_settings` (TwitterOptions.replySettings) and up to 4 images, or one
GIF, or one video, each uploaded with media upload v2 (initialize → append in 4 MiB segments → finalize), with alt
text through POST /2/media/metadata. X processes GIFs and videos asynchronously: after finalize the adapter reads
STATUS at most `status_reads` times in a row (no waiting); still processing, it raises pieces.Processing with the
media id as the piece's handle and X's check_after_secs as when to look again. The next try finds the pending handle
and reads STATUS again instead of uploading. Thread parts are replies to the previous part, the first comment a
reply to the main post; reply_settings applies to the main post only (the author can always reply to it, so the
thread is unaffected), and a media id left pending is reused only for the piece it was uploaded for. Uploads happen only inside the main piece's send: a probe (`find`) uploads nothing.

Exactly once: strategy `search`. X assigns ids and has no idempotency key. A piece an earlier try sent (`sending`)
is reconciled by GET /2/users/{id}/tweets with start_time = the piece's sent_at less CLOCK_SKEW (1 min), up to
SEARCH_PAGES pages of 100, matching the same text, the same number of media and the same parent (`referenced_posts`
replied_to): found → done, none → certainly absent → sent again; more posts than it reads → unknown. Text is compared
after X's normalisation (adapter.comparable): NFC, HTML entities unescaped, every link replaced by one placeholder on
both sides (ours where twitter-text finds a link, which X wraps in t.co; X's where a t.co link stands), X's trailing
media link dropped. Link targets are not compared: X returns them rewritten (t.co, expanded forms), and text +
media count + parent + time window already single out an account's own post. Caveat: X's timelines are eventually
consistent, so a post made seconds ago may be missing; the resend that follows is then refused as duplicate content
(403), which, for a piece an earlier try sent, triggers one more search (found → done; else unknown). The publisher
does the same for a duplicate after an earlier unknown outcome (publishing/dispatch.py).

Errors: `ERRORS` (errors.py). Deep checks: none. X reports its per-user 24-hour post limit only in the headers of
POST /2/tweets answers (x-user-limit-24hour-remaining), not through a read an account can make before posting, so
there is nothing to check ahead; its 429 is mapped with the reset of the exhausted window.
"""

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from omnipost.platforms.x.adapter import PLATFORM, XAdapter, api_base, comparable, same_text  # noqa: F401
from omnipost.platforms.x.errors import ERRORS  # noqa: F401
from omnipost.platforms.x.preview import TwitterOptions, build_post  # noqa: F401

if TYPE_CHECKING:
    from omnipost.oauth.model import Refresher
    from omnipost.platforms.base import AdapterDeps


class XCredentials(BaseModel):
    """What an X account stores (an OAuthCredentials dump, sealed at rest): the user token, its refresh token (single
    use, rotating), their ends, the scopes granted, and extra {userId, username}."""

    model_config = ConfigDict(extra="forbid")

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    scope: list[str] = Field(default_factory=list)
    token_type: str = "Bearer"
    extra: dict[str, Any] = Field(default_factory=dict)


def refresher(deps: "AdapterDeps") -> "Refresher | None":
    """X's Refresher as the runtime builds it (PlatformSpec.refresher): the OAuth one, when the app is configured
    (None: tokens cannot be renewed here, a 401 then needs a reconnect)."""
    from omnipost.oauth.providers import oauth_configured

    environ = deps.environ if deps.environ is not None else os.environ
    if not oauth_configured(PLATFORM, environ):
        return None  # and the OAuth library is not loaded (idle memory)
    from omnipost.oauth.client import refresher_for

    return refresher_for(PLATFORM, deps.http, deps.clock, environ, timeout=deps.timeout)
