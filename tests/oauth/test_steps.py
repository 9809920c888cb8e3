"""The post-exchange steps (oauth/steps.py) against each platform's fake (tests/fakes/x.py, linkedin.py, facebook.py
with instagram.py on graph.facebook.com, threads.py, pinterest.py): who the tokens belong to, what each account
stores, and how a refusal is classified."""

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fakes.facebook import FakeGraph
from fakes.graph import LONG_TTL, graph_error
from fakes.instagram import IGAccount
from fakes.linkedin import FakeLinkedIn
from fakes.pinterest import FakePinterest
from fakes.specs import SpecViolation
from fakes.threads import FakeThreads
from fakes.upstream import FakeUpstream
from fakes.x import FakeX
from omnipost.clock import FixedClock
from omnipost.errors import (AppError, ConfigError, ConnectError, PlatformAuthError, PlatformForbiddenError,
                             PlatformRateLimitError)
from omnipost.oauth.model import AppCredentials, ExchangeContext, OAuthCredentials, TokenSet
from omnipost.oauth.providers import PROVIDERS
from omnipost.oauth.steps import STEPS
from omnipost.platforms.base import Connected
from omnipost.platforms.registry import PLATFORMS
from refdata import requires_reference_data

pytestmark = [pytest.mark.anyio, requires_reference_data]  # the fakes are refereed by the platforms' specs

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
T0 = NOW.timestamp()


class Clock:
    """One instant shared by the steps (a FixedClock) and the fakes (Unix seconds), moved by tests."""

    def __init__(self) -> None:
        self.fixed = FixedClock(NOW)

    def __call__(self) -> float:
        return self.fixed.now().timestamp()

    def advance(self, seconds: float) -> None:
        self.fixed.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def context(fake: FakeUpstream, platform: str, tokens: TokenSet, clock: Clock, *, secret: str | None = None,
            client_id: str = "client-id", **args: Any) -> ExchangeContext:
    return ExchangeContext(http=fake.client(), tokens=tokens, app=AppCredentials(client_id, secret),
                           api_base=PROVIDERS[platform].api_base, clock=clock.fixed, args=args)


def stored(account: Connected) -> OAuthCredentials:
    return OAuthCredentials.model_validate(account.credentials)


async def refused(step: str, ctx: ExchangeContext) -> AppError:
    with pytest.raises(AppError) as caught:
        await STEPS[step](ctx)
    return caught.value


def test_there_is_a_step_and_a_pinned_api_base_for_every_oauth_platform() -> None:
    assert set(STEPS) == set(PROVIDERS) == {"x", "linkedin", "facebook", "instagram", "threads", "pinterest"}
    assert all(PROVIDERS[p].step == p for p in STEPS)
    for platform in ("facebook", "instagram", "threads", "pinterest"):  # the providers' API base is the pinned version
        pin = PLATFORMS[platform].api_version
        assert pin is not None and PROVIDERS[platform].api_base.endswith("/" + pin.version)


# --- X ---------------------------------------------------------------------------------------------------------------

def x_fake(clock: Clock) -> FakeX:
    fake = FakeX(clock)
    fake.add_user("2244994945", "omnipost_dev", "Omnipost Dev")
    return fake


async def test_x_account_is_the_user_from_users_me_with_the_tokens_as_exchanged(clock: Clock) -> None:
    fake = x_fake(clock)
    access = fake.issue_user_token("2244994945")
    expires = NOW + timedelta(hours=2)
    tokens = TokenSet(access, "x-refresh", expires, ("tweet.read", "tweet.write", "users.read", "offline.access"))
    [account] = await STEPS["x"](context(fake, "x", tokens, clock))
    assert (account.identity, account.handle, account.token_expires_at) == ("2244994945", "omnipost_dev", expires)
    creds = stored(account)
    assert (creds.access_token, creds.refresh_token, creds.expires_at) == (access, "x-refresh", expires)
    assert creds.scope == ["tweet.read", "tweet.write", "users.read", "offline.access"]
    assert creds.extra == {"userId": "2244994945", "username": "omnipost_dev"}
    assert [(c.route, c.grant) for c in fake.log] == [("users.me", "user")]


async def test_x_refused_or_expired_token_is_platform_auth_failed(clock: Clock) -> None:
    fake = x_fake(clock)
    revoked = fake.issue_user_token("2244994945")
    fake.revoke(revoked)
    assert isinstance(await refused("x", context(fake, "x", TokenSet(revoked), clock)), PlatformAuthError)
    expiring = fake.issue_user_token("2244994945")
    clock.advance(7201)
    error = await refused("x", context(fake, "x", TokenSet(expiring), clock))
    assert (error.code, getattr(error, "status")) == ("platform_auth_failed", 401)


async def test_x_usage_cap_is_a_rate_limit_with_the_reset_header(clock: Clock) -> None:
    fake = x_fake(clock)
    fake.fail_next("users.me", 429, {"title": "Usage capped", "detail": "Usage cap exceeded: Monthly product cap",
                                     "type": "https://api.x.com/2/problems/usage-capped"},
                   headers={"x-rate-limit-reset": str(int(T0) + 900)})
    error = await refused("x", context(fake, "x", TokenSet(fake.issue_user_token("2244994945")), clock))
    assert isinstance(error, PlatformRateLimitError) and error.retryable and error.retry_after == 900


# --- LinkedIn ----------------------------------------------------------------------------------------------------------

async def test_linkedin_account_is_the_member_urn_from_openid_userinfo(clock: Clock) -> None:
    fake = FakeLinkedIn(clock)
    fake.add_member("782bbtaQ", "Ada", "Lovelace")
    access = fake.issue_member_token("782bbtaQ")
    tokens = TokenSet(access, "li-refresh", NOW + timedelta(days=60), ("openid", "profile", "w_member_social"),
                      extra={"refresh_token_expires_in": 365 * 86400})
    [account] = await STEPS["linkedin"](context(fake, "linkedin", tokens, clock))
    assert (account.identity, account.handle) == ("urn:li:person:782bbtaQ", "Ada Lovelace")
    assert account.defaults == {"authorUrn": "urn:li:person:782bbtaQ"}  # what platforms/linkedin.py's post body reads
    creds = stored(account)
    assert creds.extra == {"authorUrn": "urn:li:person:782bbtaQ", "sub": "782bbtaQ"}
    assert (creds.access_token, creds.refresh_token) == (access, "li-refresh")
    assert creds.refresh_expires_at == NOW + timedelta(days=365)
    assert account.token_expires_at == creds.expires_at == NOW + timedelta(days=60)


async def test_linkedin_invalid_or_revoked_token_is_platform_auth_failed(clock: Clock) -> None:
    fake = FakeLinkedIn(clock)
    fake.add_member("782bbtaQ", "Ada", "Lovelace")
    assert (await refused("linkedin", context(fake, "linkedin", TokenSet("not-a-token"), clock))).code == "platform_auth_failed"
    token = fake.issue_member_token("782bbtaQ")
    fake.revoke(token)
    assert isinstance(await refused("linkedin", context(fake, "linkedin", TokenSet(token), clock)), PlatformAuthError)


# --- Facebook ----------------------------------------------------------------------------------------------------------

def graph(clock: Clock, pages: int = 2) -> FakeGraph:
    fake = FakeGraph(clock)
    fake.add_user("10158", "Grace Hopper")
    for i in range(1, pages + 1):
        fake.add_page("10158", f"10{i:04d}", f"Page {i}")
    return fake


def meta_context(fake: FakeGraph, platform: str, clock: Clock, token: str, **args: Any) -> ExchangeContext:
    return context(fake, platform, TokenSet(token, expires_at=NOW + timedelta(hours=2)), clock,
                   secret=fake.client_secret, client_id=fake.client_id, **args)


async def test_facebook_makes_one_account_per_page_storing_the_never_expiring_page_token(clock: Clock) -> None:
    fake = graph(clock, pages=2)
    short = fake.issue_user_token("10158")
    accounts = await STEPS["facebook"](meta_context(fake, "facebook", clock, short))
    assert [(a.identity, a.handle, a.token_expires_at) for a in accounts] == [("100001", "Page 1", None), ("100002", "Page 2", None)]
    for account in accounts:
        creds = stored(account)
        assert creds.extra == {"pageId": account.identity, "pageName": account.handle}
        assert creds.access_token != short and creds.refresh_token is None and creds.expires_at is None
        grant = fake.grants[creds.access_token]
        # The long-lived exchange came first: the Page token derives from the long-lived user token, so it never expires.
        assert (grant.kind, grant.subject, grant.expires_at, grant.data) == ("page", account.identity, None, {"derived_from": "user_long"})
    assert [(c.route, c.grant) for c in fake.log] == [("oauth.access_token", None), ("me.accounts", "user_long")]
    assert fake.calls("oauth.access_token")[0].query == {"grant_type": ["fb_exchange_token"], "client_id": [fake.client_id],
                                                        "client_secret": ["[secret]"], "fb_exchange_token": ["[secret]"]}


async def test_facebook_page_id_connects_only_that_page(clock: Clock) -> None:
    fake = graph(clock, pages=3)
    accounts = await STEPS["facebook"](meta_context(fake, "facebook", clock, fake.issue_user_token("10158"), pageId="100002"))
    assert [(a.identity, stored(a).extra["pageId"]) for a in accounts] == [("100002", "100002")]


async def test_facebook_page_id_of_a_page_not_granted_is_connect_failed(clock: Clock) -> None:
    fake = graph(clock, pages=1)
    error = await refused("facebook", meta_context(fake, "facebook", clock, fake.issue_user_token("10158"), pageId="999"))
    assert isinstance(error, ConnectError)
    assert (error.code, error.rule) == ("connect_failed", "facebook.connect.page_not_found")


async def test_facebook_user_without_a_page_is_connect_failed_no_page(clock: Clock) -> None:
    fake = graph(clock, pages=0)
    error = await refused("facebook", meta_context(fake, "facebook", clock, fake.issue_user_token("10158")))
    assert (error.code, error.rule) == ("connect_failed", "facebook.connect.no_page")


async def test_facebook_leaves_out_a_page_answered_without_a_page_token(clock: Clock) -> None:
    fake = graph(clock, pages=1)
    fake.add_page("10158", "100009", "Moderated only", token_role=False)
    accounts = await STEPS["facebook"](meta_context(fake, "facebook", clock, fake.issue_user_token("10158")))
    assert [a.identity for a in accounts] == ["100001"]
    only_moderated = graph(clock, pages=0)
    only_moderated.add_page("10158", "100009", "Moderated only", token_role=False)
    error = await refused("facebook", meta_context(only_moderated, "facebook", clock, only_moderated.issue_user_token("10158")))
    assert (error.code, error.rule) == ("connect_failed", "facebook.connect.no_page")


async def test_facebook_reads_every_page_of_the_page_list(clock: Clock) -> None:
    fake = graph(clock, pages=101)
    accounts = await STEPS["facebook"](meta_context(fake, "facebook", clock, fake.issue_user_token("10158")))
    assert len({a.identity for a in accounts}) == 101
    assert [c.query.get("after") is not None for c in fake.calls("me.accounts")] == [False, True]


async def test_facebook_dead_user_token_oauthexception_190_is_platform_auth_failed(clock: Clock) -> None:
    fake = graph(clock)
    short = fake.issue_user_token("10158")
    clock.advance(3 * 3600)  # past the short-lived token's 2 hours
    error = await refused("facebook", meta_context(fake, "facebook", clock, short))
    assert isinstance(error, PlatformAuthError) and error.code == "platform_auth_failed"
    assert getattr(error, "status") == 400  # Meta answers 190 with HTTP 400: the Graph code decides, not the status


async def test_facebook_throttling_code_is_a_rate_limit(clock: Clock) -> None:
    fake = graph(clock)
    fake.fail_next("me.accounts", 400, graph_error(400, 4, "Application request limit reached", kind="OAuthException").body)
    error = await refused("facebook", meta_context(fake, "facebook", clock, fake.issue_user_token("10158")))
    assert isinstance(error, PlatformRateLimitError) and error.retryable


async def test_facebook_and_threads_need_the_app_secret(clock: Clock) -> None:
    fake = graph(clock)
    ctx = context(fake, "facebook", TokenSet(fake.issue_user_token("10158")), clock)  # no secret
    assert isinstance(error := await refused("facebook", ctx), ConfigError) and error.code == "validation_failed"
    threads = FakeThreads(clock)
    threads.add_user("25000000000000001", "ada.threads")
    ctx = context(threads, "threads", TokenSet(threads.issue_short_token("25000000000000001")), clock)
    assert isinstance(await refused("threads", ctx), ConfigError)
    assert fake.log == threads.log == []  # refused before any upstream call


async def test_a_wrong_meta_app_secret_is_a_config_error_not_a_retry(clock: Clock) -> None:
    fake = graph(clock)
    ctx = context(fake, "facebook", TokenSet(fake.issue_user_token("10158")), clock, secret="wrong", client_id=fake.client_id)
    error = await refused("facebook", ctx)
    assert isinstance(error, ConfigError) and not error.retryable
    threads = FakeThreads(clock)
    threads.add_user("25000000000000001", "ada.threads")
    ctx = context(threads, "threads", TokenSet(threads.issue_short_token("25000000000000001")), clock, secret="wrong")
    assert isinstance(await refused("threads", ctx), ConfigError)


async def test_a_5xx_on_an_identity_read_is_retryable_unavailable(clock: Clock) -> None:
    fake = FakePinterest(clock)
    fake.add_user("549755885175", "omnipostpins")
    fake.fail_next("user_account", 503, {"code": 503, "message": "Service unavailable"})
    error = await refused("pinterest", context(fake, "pinterest", TokenSet(fake.issue_user_token("549755885175")), clock))
    assert (error.code, error.retryable, type(error).__name__) == ("platform_unavailable", True, "PlatformUnavailableError")


# --- Instagram ---------------------------------------------------------------------------------------------------------

async def test_instagram_makes_one_account_per_linked_business_account_and_skips_pages_without_one(clock: Clock) -> None:
    fake = FakeGraph(clock)
    fake.add_user("10158", "Grace Hopper")
    fake.add_page("10158", "100001", "Shop", instagram=IGAccount("17841400000000001", "shop.ig"))
    fake.add_page("10158", "100002", "Blog")  # no Instagram account linked
    short = fake.issue_user_token("10158")
    [account] = await STEPS["instagram"](meta_context(fake, "instagram", clock, short))
    assert (account.identity, account.handle, account.token_expires_at) == ("17841400000000001", "shop.ig", None)
    creds = stored(account)
    assert creds.extra == {"igUserId": "17841400000000001", "username": "shop.ig", "pageId": "100001"}
    assert creds.access_token != short
    assert (fake.grants[creds.access_token].kind, fake.grants[creds.access_token].expires_at) == ("page", None)
    assert [c.route for c in fake.log] == ["oauth.access_token", "me.accounts", "node", "node"]
    assert fake.calls("node")[0].query["fields"] == ["instagram_business_account{id,username}"]


async def test_instagram_without_a_linked_business_account_is_connect_failed(clock: Clock) -> None:
    fake = graph(clock, pages=2)
    error = await refused("instagram", meta_context(fake, "instagram", clock, fake.issue_user_token("10158")))
    assert (error.code, error.rule) == ("connect_failed", "instagram.connect.no_business_account")
    fake_without = graph(clock, pages=0)
    error = await refused("instagram", meta_context(fake_without, "instagram", clock, fake_without.issue_user_token("10158")))
    assert (error.code, error.rule) == ("connect_failed", "instagram.connect.no_page")


async def test_instagram_page_id_chooses_the_page_whose_account_is_connected(clock: Clock) -> None:
    fake = FakeGraph(clock)
    fake.add_user("10158", "Grace Hopper")
    fake.add_page("10158", "100001", "Shop", instagram=IGAccount("17841400000000001", "shop.ig"))
    fake.add_page("10158", "100002", "Studio", instagram=IGAccount("17841400000000002", "studio.ig"))
    [account] = await STEPS["instagram"](meta_context(fake, "instagram", clock, fake.issue_user_token("10158"), pageId="100002"))
    assert (account.identity, stored(account).extra["pageId"]) == ("17841400000000002", "100002")


# --- Threads -----------------------------------------------------------------------------------------------------------

async def test_threads_exchanges_for_the_long_lived_token_and_names_the_user(clock: Clock) -> None:
    fake = FakeThreads(clock)
    fake.add_user("25000000000000001", "ada.threads", "Ada")
    short = fake.issue_short_token("25000000000000001")
    tokens = TokenSet(short, expires_at=NOW + timedelta(hours=1), scope=("threads_basic", "threads_content_publish"),
                      extra={"user_id": 25000000000000001})
    [account] = await STEPS["threads"](context(fake, "threads", tokens, clock, secret=fake.client_secret))
    creds = stored(account)
    assert (account.identity, account.handle) == ("25000000000000001", "ada.threads")
    assert creds.access_token != short and fake.grants[creds.access_token].kind == "long"
    assert account.token_expires_at == creds.expires_at == NOW + timedelta(seconds=LONG_TTL)
    assert creds.refresh_token is None and creds.extra == {"userId": "25000000000000001", "username": "ada.threads"}
    assert [(c.route, c.path, c.grant) for c in fake.log] == [("access_token", "/access_token", None), ("me", "/v1.0/me", "long")]


async def test_threads_dead_token_is_platform_auth_failed(clock: Clock) -> None:
    fake = FakeThreads(clock)
    fake.add_user("25000000000000001", "ada.threads")
    short = fake.issue_short_token("25000000000000001")
    fake.revoke(short)
    assert isinstance(await refused("threads", context(fake, "threads", TokenSet(short), clock, secret=fake.client_secret)),
                      PlatformAuthError)


# --- Pinterest ---------------------------------------------------------------------------------------------------------

async def test_pinterest_account_is_the_user_account(clock: Clock) -> None:
    fake = FakePinterest(clock)
    fake.add_user("549755885175", "omnipostpins")
    access = fake.issue_user_token("549755885175")
    tokens = TokenSet(access, "pinr-refresh", NOW + timedelta(days=30), ("boards:read", "pins:write", "user_accounts:read"),
                      extra={"refresh_token_expires_at": int(T0) + 60 * 86400, "refresh_token_expires_in": 60 * 86400})
    [account] = await STEPS["pinterest"](context(fake, "pinterest", tokens, clock))
    creds = stored(account)
    assert (account.identity, account.handle) == ("549755885175", "omnipostpins")
    assert creds.extra == {"username": "omnipostpins", "userId": "549755885175"}
    assert (creds.access_token, creds.refresh_token, creds.refresh_expires_at) == (access, "pinr-refresh", NOW + timedelta(days=60))
    assert [(c.path, c.grant) for c in fake.log] == [("/v5/user_account", "user")]


async def test_pinterest_refused_token_is_auth_failed_and_missing_scope_is_forbidden(clock: Clock) -> None:
    fake = FakePinterest(clock)
    fake.add_user("549755885175", "omnipostpins")
    assert isinstance(await refused("pinterest", context(fake, "pinterest", TokenSet("nope"), clock)), PlatformAuthError)
    narrow = fake.issue_user_token("549755885175", scopes=("pins:read",))
    error = await refused("pinterest", context(fake, "pinterest", TokenSet(narrow), clock))
    assert isinstance(error, PlatformForbiddenError) and error.code == "platform_forbidden"


# --- across platforms --------------------------------------------------------------------------------------------------

async def test_no_token_or_secret_appears_in_what_a_step_returns_or_raises(clock: Clock) -> None:
    seen: list[object] = []
    fakes: list[FakeUpstream] = []

    async def run(fake: FakeUpstream, step: str, ctx: ExchangeContext) -> None:
        fakes.append(fake)
        try:
            seen.extend(await STEPS[step](ctx))
        except AppError as error:
            seen.extend([error, error.to_error_object().model_dump_json()])

    x = x_fake(clock)
    await run(x, "x", context(x, "x", TokenSet(x.issue_user_token("2244994945"), "x-refresh-secret"), clock))
    await run(x, "x", context(x, "x", TokenSet("x-bogus-token-secret"), clock))
    li = FakeLinkedIn(clock)
    li.add_member("782bbtaQ", "Ada", "Lovelace")
    await run(li, "linkedin", context(li, "linkedin", TokenSet(li.issue_member_token("782bbtaQ"), "li-refresh-secret"), clock))
    fb = graph(clock)
    fb.pages["100001"].instagram = IGAccount("17841400000000001", "shop.ig")
    await run(fb, "facebook", meta_context(fb, "facebook", clock, fb.issue_user_token("10158")))
    await run(fb, "instagram", meta_context(fb, "instagram", clock, fb.issue_user_token("10158")))
    await run(fb, "facebook", meta_context(fb, "facebook", clock, "fb-bogus-token-secret"))
    th = FakeThreads(clock)
    th.add_user("25000000000000001", "ada.threads")
    await run(th, "threads", context(th, "threads", TokenSet(th.issue_short_token("25000000000000001")), clock, secret=th.client_secret))
    await run(th, "threads", context(th, "threads", TokenSet("th-bogus-token-secret"), clock, secret=th.client_secret))
    pin = FakePinterest(clock)
    pin.add_user("549755885175", "omnipostpins")
    await run(pin, "pinterest", context(pin, "pinterest", TokenSet(pin.issue_user_token("549755885175")), clock))
    await run(pin, "pinterest", context(pin, "pinterest", TokenSet("pin-bogus-token-secret"), clock))

    secrets = {t for f in fakes for t in f.grants} | {"x-refresh-secret", "li-refresh-secret", "x-bogus-token-secret",
                                                       "fb-bogus-token-secret", "th-bogus-token-secret",
                                                       "pin-bogus-token-secret", fb.client_secret, th.client_secret}
    assert sum(isinstance(s, Connected) for s in seen) == 7 and sum(isinstance(s, AppError) for s in seen) == 4
    for thing in seen:
        text = repr(thing) + str(thing) + (repr(vars(thing)) if isinstance(thing, AppError) else "")
        assert not [s for s in secrets if s in text], thing


async def test_a_host_with_no_fake_fails_loudly(clock: Clock) -> None:
    fake = x_fake(clock)
    ctx = ExchangeContext(http=fake.client(), tokens=TokenSet("t"), app=AppCredentials("c"),
                          api_base="https://api.twitter.com", clock=clock.fixed)
    with pytest.raises(RuntimeError, match="only mounted fakes"):
        await STEPS["x"](ctx)


async def test_the_fakes_refuse_requests_their_platform_spec_does_not_allow(clock: Clock) -> None:
    x = x_fake(clock)
    async with x.client() as http:
        with pytest.raises(SpecViolation, match="not in the spec"):
            await http.get("https://api.x.com/2/users/me", params={"user.fields": "id", "pretty": "1"})
        with pytest.raises(SpecViolation):
            await http.get("https://api.x.com/2/users/me", params={"user.fields": "shoe_size"})
        with pytest.raises(SpecViolation, match="requires credentials"):  # the operation's security
            await http.post("https://api.x.com/2/tweets", json={"text": "hi"})
        read_only = x.issue_user_token("2244994945", scopes=("tweet.read", "users.read"))
        with pytest.raises(SpecViolation, match="security requirements"):  # a token without tweet.write
            await http.post("https://api.x.com/2/tweets", json={"text": "hi"}, headers={"Authorization": f"Bearer {read_only}"})
        with pytest.raises(SpecViolation, match="body"):  # X's schema takes no unknown field
            await http.post("https://api.x.com/2/tweets", json={"text": "hi", "colour": "red"},
                            headers={"Authorization": f"Bearer {x.issue_user_token('2244994945')}"})
    fb = graph(clock)
    async with fb.client() as http:
        with pytest.raises(SpecViolation, match="no field"):
            await http.get("https://graph.facebook.com/v24.0/me/accounts", params={"fields": "id,favourite_colour"})
        with pytest.raises(SpecViolation, match="pinned Graph version"):
            await http.get("https://graph.facebook.com/v19.0/me/accounts")
    pin = FakePinterest(clock)
    async with pin.client() as http:
        with pytest.raises(SpecViolation):
            await http.get("https://api.pinterest.com/v5/user_account", params={"ad_account_id": "not-digits"})
