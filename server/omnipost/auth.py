"""Who is calling: an API key's scope on the HTTP transports; the local user on stdio."""

from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token



@dataclass(frozen=True)
class Caller:
    """The caller's reach: a bound profile (None = all), and whether it is a test (sandbox-only) key."""

    key_id: str | None = None
    profile_id: str | None = None
    test_mode: bool = False


LOCAL = Caller()


def current_caller() -> Caller:
    """The caller of the tool being run (stdio, or in-process, is the local user with full reach)."""
    token = get_access_token()
    if token is None:
        return LOCAL
    profile = next((s.removeprefix("profile:") for s in token.scopes if s.startswith("profile:")), "*")
    return Caller(key_id=token.client_id, profile_id=None if profile == "*" else profile, test_mode="mode:test" in token.scopes)
