"""Who is calling: an API key's scope on the HTTP transports; the local user on stdio."""

from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken


@dataclass(frozen=True)
class Caller:
    """The caller's reach: a bound profile (None = all), and whether it is a test (sandbox-only) key."""

    key_id: str | None = None
    profile_id: str | None = None
    test_mode: bool = False


LOCAL = Caller()

SANDBOX = "sandbox"  # the one platform an op_test_ key reaches (PRODUCT §7)
TEST_KEY_PREFIX = "test:"  # an op_test_ key's idempotency keys live apart from a live key's


@dataclass(frozen=True)
class Reach:
    """What one call may touch: one profile and, for an op_test_ key, only its test side.

    Every service operation that reads or changes an account, a post, a batch, a draft, media or a
    webhook takes a Reach (tools get theirs from `tools.common.reach_of`). A bare profile id given
    instead is the trusted local reach (stdio user, scheduler, recovery, internal jobs): everything.
    A test reach sees sandbox accounts, the posts and batches that target only sandbox accounts, and
    media and webhook endpoints created in test mode; anything else is `not_found` to it, exactly as
    an unknown id is, and lists leave it out. A live reach sees everything (Stripe's livemode model).
    """

    profile_id: str
    test_mode: bool = False

    @property
    def mode(self) -> str:
        """The mode objects created through this reach are recorded with: live or test."""
        return "test" if self.test_mode else "live"

    def sees_account(self, platform: str) -> bool:
        """Whether an account on `platform` (and what targets it) is within reach."""
        return not self.test_mode or platform == SANDBOX

    def sees_mode(self, mode: str) -> bool:
        """Whether a media record or webhook endpoint created in `mode` is within reach."""
        return not self.test_mode or mode == "test"

    def idempotency_key(self, key: str | None) -> str | None:
        """The stored form of an idempotency key: a test key's never meets a live key's (a replay would
        hand out a real object). A live key that itself starts with the test prefix is set apart too."""
        if key is None:
            return None
        if self.test_mode:
            return TEST_KEY_PREFIX + key
        return "live:" + key if key.startswith(TEST_KEY_PREFIX) else key


def as_reach(scope: "Reach | str") -> Reach:
    """A Reach as given, or the trusted local reach of a bare profile id."""
    return scope if isinstance(scope, Reach) else Reach(scope)


def current_caller() -> Caller:
    """The caller of the tool being run (stdio, or in-process, is the local user with full reach)."""
    token = get_access_token()
    return LOCAL if token is None else caller_of(token)


def caller_of(token: AccessToken) -> Caller:
    """The caller an API key's access token (keys.OmnipostTokenVerifier) stands for, on any HTTP surface."""
    profile = next((s.removeprefix("profile:") for s in token.scopes if s.startswith("profile:")), "*")
    return Caller(key_id=token.client_id, profile_id=None if profile == "*" else profile, test_mode="mode:test" in token.scopes)
