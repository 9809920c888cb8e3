"""The post-exchange steps (issue 12): once a code (or a brought token) is exchanged, who the tokens belong to, as
the accounts to store. One step per OAuth platform in `STEPS`; the OAuth code flow calls the platform's step
with an ExchangeContext and stores each `Connected` it answers.

- x: GET /2/users/me → one account; extra {userId, username}.
- linkedin: GET /v2/userinfo (OpenID) → one account, urn:li:person:<sub>; extra {authorUrn, sub}, and the
  `authorUrn` account default the post body reads.
- facebook: fb_exchange_token (the long-lived user token), GET /me/accounts → one account per Page (or the one
  `pageId` names); extra {pageId, pageName}.
- instagram: fb_exchange_token, GET /me/accounts, GET /{page}?fields=instagram_business_account{id,username} →
  one account per linked Instagram professional account; extra {igUserId, username, pageId}.
- threads: th_exchange_token (long-lived, 60 days), GET /me?fields=id,username → one account; extra {userId, username}.
- pinterest: GET /v5/user_account → one account; extra {username, userId (when answered)}.

Facebook and Instagram store the Page's token (a Page token fetched with a long-lived user token does not expire),
never the short-lived user token the code gave. Every upstream answer goes through platforms/calls.py (send and
raise_for_status) with the platform's error map below: a refused token is PlatformAuthError (platform_auth_failed).
Valid tokens that name no account to connect raise ConnectError (connect_failed) with `rule`
`<facebook|instagram>.connect.no_page`, `<facebook|instagram>.connect.page_not_found` (the `pageId` asked for) or
`instagram.connect.no_business_account`; a missing or refused Meta app secret is ConfigError. Tokens never appear in
an error: Meta's exchange puts the short token and the app secret in the query string (the
only way it takes them), so no URL is ever quoted; every other call sends the token in the Authorization header.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from omnipost.errors import ConfigError, ConnectError, PlatformError, PlatformUnavailableError
from omnipost.oauth.model import ExchangeContext, OAuthCredentials, PostExchange, TokenSet
from omnipost.platforms.base import Connected
from omnipost.platforms.calls import raise_for_status, send
from omnipost.platforms.x.errors import ERRORS as ERRORS_OF_X
from omnipost.platforms.errormap import AUTH_REFUSED, FORBIDDEN, RATE_LIMITED, UNAVAILABLE, ErrorMap, Rule, body_field

# Error maps for the identity calls. Where a platform's adapter exists (X), its module constant ERRORS is the one place
# for these rules; for the others, when their adapters land, their ERRORS should replace the maps below.

# X answers problem details (platforms.md §2.4): its adapter's map (platforms/x/errors.py).
X_ERRORS = ERRORS_OF_X

# LinkedIn (§3.4): {"status", "serviceErrorCode", "code"?, "message"}; a 401 is a refused token whatever its code.
LINKEDIN_ERRORS = ErrorMap(
    rules=(Rule(AUTH_REFUSED, code="REVOKED_ACCESS_TOKEN"), Rule(AUTH_REFUSED, code="EXPIRED_ACCESS_TOKEN")),
    code=body_field("code"), message=body_field("message"))


def _graph_error(field: str) -> Callable[[Any], str | None]:
    """Reads `error.<field>` of a Graph error body ({"error": {"message", "type", "code", "error_subcode", ...}})."""
    def read(body: Any) -> str | None:
        error = body.get("error") if isinstance(body, dict) else None
        value = error.get(field) if isinstance(error, dict) else None
        return str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    return read


# Meta Graph (facebook, instagram, threads; §4.3): the numeric `error.code` decides, whatever the HTTP status (Meta
# answers a dead token, code 190, with HTTP 400).
GRAPH_ERRORS = ErrorMap(
    rules=(Rule(AUTH_REFUSED, code="190"), Rule(AUTH_REFUSED, code="102"),
           Rule(FORBIDDEN, code="10"), *(Rule(FORBIDDEN, code=str(c)) for c in range(200, 300)),
           *(Rule(RATE_LIMITED, code=str(c)) for c in (4, 17, 32, 341, 613, *range(80001, 80010))),
           Rule(UNAVAILABLE, code="1"), Rule(UNAVAILABLE, code="2")),
    code=_graph_error("code"), message=_graph_error("message"))

def _number(field: str) -> Callable[[Any], str | None]:
    """Reads an integer `field` of a JSON-object body, as text."""
    def read(body: Any) -> str | None:
        value = body.get(field) if isinstance(body, dict) else None
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    return read


# Pinterest (§7.3): {"code": <int>, "message"}; numeric codes per condition are unconfirmed, so the status decides.
PINTEREST_ERRORS = ErrorMap(code=_number("code"), message=body_field("message"))

_MAX_PAGE_LISTS = 20  # /me/accounts pages followed at most (100 Pages each)
_M = TypeVar("_M", bound=BaseModel)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


async def _get(ctx: ExchangeContext, url: str, *, platform: str, errors: ErrorMap, what: str,
               bearer: str | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    """One GET through calls.py; the answer's JSON object, or the PlatformError its status means."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    response = await send(ctx.http, "GET", url, platform=platform, write=False, params=params or {}, headers=headers)
    raise_for_status(response, platform, errors=errors, now=ctx.clock.now().timestamp())
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PlatformUnavailableError(f"{platform} answered {what} without a JSON object.", status=response.status_code,
                                       remediation="Retry later.")
    return data  # pyright: ignore[reportUnknownVariableType]  # raw upstream JSON, parsed by _parse next


def _parse(model: type[_M], data: dict[str, Any], *, platform: str, what: str) -> _M:
    """The answer as `model`; an incomplete one is platform_unavailable (never quoting it: it may hold tokens)."""
    try:
        return model.model_validate(data)
    except ValidationError:
        raise PlatformUnavailableError(f"{platform} answered {what} without the fields omnipost needs.",
                                       remediation="Retry later.") from None


def _in(ctx: ExchangeContext, seconds: Any) -> datetime | None:
    """The instant `seconds` from now, when the platform gave a lifetime."""
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
        return ctx.clock.now() + timedelta(seconds=seconds)
    return None


def _stored(ctx: ExchangeContext, extra: dict[str, Any], *, access_token: str | None = None,
            expires_at: datetime | None = None, keep_refresh: bool = True) -> dict[str, Any]:
    """The OAuthCredentials an account stores, as JSON. Defaults: the tokens just obtained, as they are."""
    tokens = ctx.tokens
    return OAuthCredentials(
        access_token=tokens.access_token if access_token is None else access_token,
        refresh_token=tokens.refresh_token if keep_refresh else None,
        expires_at=tokens.expires_at if access_token is None else expires_at,
        refresh_expires_at=tokens.refresh_lapse(ctx.clock.now()) if keep_refresh and tokens.refresh_token else None,
        scope=list(tokens.scope), token_type="Bearer", extra=extra,
    ).model_dump(mode="json")


# --- X ---------------------------------------------------------------------------------------------------------------

class _XUser(_Loose):
    id: str
    username: str
    name: str | None = None


class _XMe(_Loose):
    data: _XUser


async def x(ctx: ExchangeContext) -> list[Connected]:
    """X: GET /2/users/me (platforms.md §2.1 step 5) → the user id and @username."""
    me = _parse(_XMe, await _get(ctx, f"{ctx.api_base}/2/users/me", platform="x", errors=X_ERRORS, what="/2/users/me",
                                 bearer=ctx.tokens.access_token), platform="x", what="/2/users/me").data
    return [Connected(handle=me.username, identity=me.id, token_expires_at=ctx.tokens.expires_at,
                      credentials=_stored(ctx, {"userId": me.id, "username": me.username}))]


# --- LinkedIn --------------------------------------------------------------------------------------------------------

class _UserInfo(_Loose):
    sub: str
    name: str | None = None


async def linkedin(ctx: ExchangeContext) -> list[Connected]:
    """LinkedIn: OpenID userinfo (§3.1 step 4); the member's author URN is urn:li:person:<sub>. The URN is also an
    account default (`authorUrn`), which the post body reads (platforms/linkedin.py)."""
    info = _parse(_UserInfo, await _get(ctx, f"{ctx.api_base}/v2/userinfo", platform="linkedin", errors=LINKEDIN_ERRORS,
                                        what="/v2/userinfo", bearer=ctx.tokens.access_token),
                  platform="linkedin", what="/v2/userinfo")
    urn = f"urn:li:person:{info.sub}"
    return [Connected(handle=info.name or info.sub, identity=urn, token_expires_at=ctx.tokens.expires_at,
                      defaults={"authorUrn": urn}, credentials=_stored(ctx, {"authorUrn": urn, "sub": info.sub}))]


# --- Meta: Facebook Pages and Instagram --------------------------------------------------------------------------------

class _Exchanged(_Loose):
    access_token: str
    expires_in: int | None = None


class _Page(_Loose):
    id: str
    name: str
    access_token: str | None = None  # Meta leaves it out when the user's role on the Page cannot use it


class _UsablePage(_Loose):
    id: str
    name: str
    access_token: str


class _Cursors(_Loose):
    after: str | None = None


class _Paging(_Loose):
    cursors: _Cursors | None = None
    next: str | None = None


class _Pages(_Loose):
    data: list[_Page]
    paging: _Paging | None = None


class _IGAccount(_Loose):
    id: str
    username: str | None = None


class _PageIG(_Loose):
    instagram_business_account: _IGAccount | None = None


def _secret(ctx: ExchangeContext, platform: str) -> str:
    if not ctx.app.client_secret:
        raise ConfigError(f"Connecting {platform} needs the app's client secret (Meta's long-lived token exchange).",
                          remediation="Set the app secret of your Meta app in omnipost's environment, then connect again.")
    return ctx.app.client_secret


async def _exchange(ctx: ExchangeContext, url: str, platform: str, params: dict[str, str]) -> _Exchanged:
    """Meta's long-lived token exchange.

    Raises:
        ConfigError: Meta refused the app's id or secret. PlatformError: anything else (190: the token is dead)."""
    what = "the long-lived token exchange"
    try:
        return _parse(_Exchanged, await _get(ctx, url, platform=platform, errors=GRAPH_ERRORS, what=what, params=params),
                      platform=platform, what=what)
    except PlatformError as exc:
        # Meta answers a wrong app secret with the generic code 1 ("Error validating client secret.", type
        # OAuthException), which alone would read as "unavailable, retry": only the message says the app is wrong.
        body = exc.platform_response
        if _graph_error("code")(body) == "1" and "client secret" in (_graph_error("message")(body) or "").lower():
            raise ConfigError(f"{platform} refused the app's client id or secret.", platform_response=body,
                              remediation="Check the Meta app's id and secret in omnipost's environment, then connect "
                                          "again.") from None
        raise


async def _fb_long_lived(ctx: ExchangeContext, platform: str) -> tuple[str, datetime | None]:
    """Meta's long-lived user token (§4.1 step 3): the short-lived one from the code, exchanged (about 60 days)."""
    answer = await _exchange(ctx, f"{ctx.api_base}/oauth/access_token", platform,
                             {"grant_type": "fb_exchange_token", "client_id": ctx.app.client_id,
                              "client_secret": _secret(ctx, platform), "fb_exchange_token": ctx.tokens.access_token})
    return answer.access_token, _in(ctx, answer.expires_in)


async def _pages(ctx: ExchangeContext, user_token: str, platform: str) -> list[_UsablePage]:
    """The user's Pages with their Page tokens (§4.1 step 4), every page of the list (by cursor, so the token in
    Meta's `paging.next` URL is never handled). A Page answered without a token (the user's role there cannot use
    one) cannot be published to, so it is left out."""
    pages: list[_UsablePage] = []
    params = {"fields": "id,name,access_token", "limit": "100"}
    for _ in range(_MAX_PAGE_LISTS):
        answer = _parse(_Pages, await _get(ctx, f"{ctx.api_base}/me/accounts", platform=platform, errors=GRAPH_ERRORS,
                                           what="/me/accounts", bearer=user_token, params=params),
                        platform=platform, what="/me/accounts")
        pages.extend(_UsablePage(id=p.id, name=p.name, access_token=p.access_token) for p in answer.data if p.access_token)
        after = answer.paging.cursors.after if answer.paging and answer.paging.cursors else None
        if not (answer.paging and answer.paging.next and after and answer.data):
            break
        params = {**params, "after": after}
    return pages


def _chosen(pages: list[_UsablePage], ctx: ExchangeContext, platform: str) -> list[_UsablePage]:
    """The Pages to connect: the one `pageId` names, else all.

    Raises:
        ConnectError: no Page at all (`<platform>.connect.no_page`), or not the one asked for (`.page_not_found`)."""
    if not pages:
        raise ConnectError(f"The {platform} login granted omnipost no Facebook Page.", rule=f"{platform}.connect.no_page",
                           remediation="Create a Facebook Page (or get a role on one that can publish), connect again and "
                                       "select the Page when Facebook asks which Pages omnipost may use.")
    wanted = ctx.args.get("pageId")
    if wanted is None:
        return pages
    chosen = [p for p in pages if p.id == str(wanted)]
    if not chosen:
        raise ConnectError(f"The Page {str(wanted)[:40]} is not among the Pages this login granted.",
                           rule=f"{platform}.connect.page_not_found",
                           remediation="Connect again without pageId to connect every granted Page, or grant that Page "
                                       "when Facebook asks which Pages omnipost may use.")
    return chosen


async def facebook(ctx: ExchangeContext) -> list[Connected]:
    """Facebook Pages: the long-lived user token, then one account per Page (or the one `pageId` names), each storing
    its Page token (no expiry when fetched with a long-lived user token)."""
    user_token, _ = await _fb_long_lived(ctx, "facebook")
    return [Connected(handle=p.name, identity=p.id, token_expires_at=None,
                      credentials=_stored(ctx, {"pageId": p.id, "pageName": p.name}, access_token=p.access_token,
                                          keep_refresh=False))
            for p in _chosen(await _pages(ctx, user_token, "facebook"), ctx, "facebook")]


async def instagram(ctx: ExchangeContext) -> list[Connected]:
    """Instagram (API with Facebook Login): the long-lived user token, the Pages, and the Instagram professional
    account linked to each; one account per linked account, storing its Page's token (IG publishing on
    graph.facebook.com takes it, and it does not expire).

    Raises:
        ConnectError: no Page (`instagram.connect.no_page`), or none with a linked account
            (`instagram.connect.no_business_account`)."""
    user_token, _ = await _fb_long_lived(ctx, "instagram")
    found: list[Connected] = []
    for page in _chosen(await _pages(ctx, user_token, "instagram"), ctx, "instagram"):
        what = "the Page's instagram_business_account"
        linked = _parse(_PageIG, await _get(ctx, f"{ctx.api_base}/{page.id}", platform="instagram", errors=GRAPH_ERRORS,
                                            what=what, bearer=user_token,
                                            params={"fields": "instagram_business_account{id,username}"}),
                        platform="instagram", what=what).instagram_business_account
        if linked is None:
            continue
        found.append(Connected(
            handle=linked.username or linked.id, identity=linked.id, token_expires_at=None,
            credentials=_stored(ctx, {"igUserId": linked.id, "username": linked.username, "pageId": page.id},
                                access_token=page.access_token, keep_refresh=False)))
    if not found:
        raise ConnectError("None of the granted Facebook Pages has an Instagram professional account linked.",
                           rule="instagram.connect.no_business_account",
                           remediation="Switch the Instagram account to a professional (business or creator) account, link "
                                       "it to a Facebook Page, then connect again and grant that Page.")
    return found


# --- Threads ---------------------------------------------------------------------------------------------------------

class _ThreadsUser(_Loose):
    id: str
    username: str


async def threads(ctx: ExchangeContext) -> list[Connected]:
    """Threads: the long-lived token (§6 tokens: th_exchange_token, 60 days, renewed by th_refresh_token from the
    token itself, so there is no refresh token), then /me?fields=id,username."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(ctx.api_base))  # Meta documents this exchange unversioned
    exchanged = await _exchange(ctx, f"{origin}/access_token", "threads",
                                {"grant_type": "th_exchange_token", "client_secret": _secret(ctx, "threads"),
                                 "access_token": ctx.tokens.access_token})
    me = _parse(_ThreadsUser, await _get(ctx, f"{ctx.api_base}/me", platform="threads", errors=GRAPH_ERRORS, what="/me",
                                         bearer=exchanged.access_token, params={"fields": "id,username"}),
                platform="threads", what="/me")
    expires_at = _in(ctx, exchanged.expires_in)
    return [Connected(handle=me.username, identity=me.id, token_expires_at=expires_at,
                      credentials=_stored(ctx, {"userId": me.id, "username": me.username},
                                          access_token=exchanged.access_token, expires_at=expires_at, keep_refresh=False))]


# --- Pinterest -------------------------------------------------------------------------------------------------------

class _PinterestAccount(_Loose):
    username: str
    id: str | None = None


async def pinterest(ctx: ExchangeContext) -> list[Connected]:
    """Pinterest: GET /v5/user_account (§7.1 step 4) → the username (and the id, when the answer has one)."""
    account = _parse(_PinterestAccount, await _get(ctx, f"{ctx.api_base}/user_account", platform="pinterest",
                                                   errors=PINTEREST_ERRORS, what="/user_account",
                                                   bearer=ctx.tokens.access_token),
                     platform="pinterest", what="/user_account")
    extra: dict[str, Any] = {"username": account.username} | ({"userId": account.id} if account.id else {})
    return [Connected(handle=account.username, identity=account.id or account.username,
                      token_expires_at=ctx.tokens.expires_at, credentials=_stored(ctx, extra))]


STEPS: dict[str, PostExchange] = {
    "x": x, "linkedin": linkedin, "facebook": facebook, "instagram": instagram, "threads": threads,
    "pinterest": pinterest,
}
"""Each OAuth platform's post-exchange step, by canonical platform id."""
