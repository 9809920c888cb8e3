"""Mastodon's wire, shared by the connect flow and the adapter (platforms.md §10): the error map, the one call
helper (every request through platforms/calls.py) and where an account's server and token are.

Errors: bodies are `{"error": "<message>"}`; OAuth endpoints answer `{"error": "<code>", "error_description"}`. The
status decides (errormap defaults): 401 `The access token is invalid` → AuthRefused (reconnect), 403 (outside the
token's scopes) → Forbidden, 422 `Validation failed: ...` → Rejected with Mastodon's message, 429 → RateLimited
with `X-RateLimit-Reset` (an ISO-8601 instant) as retry-after, 5xx/503 → Unavailable (UnknownOutcome after a write).
One 422 is not a refusal of the post: `Cannot attach files that have not finished processing` (Mastodon's
StatusesController answers it while an attachment is still processing), which is retryable.
"""

from typing import Any

import httpx2

from omnipost.errors import PlatformError, PlatformUnavailableError, UnknownOutcomeError
from omnipost.netguard import UpstreamForbiddenError
from omnipost.platforms.calls import error_for, send
from omnipost.platforms.errormap import UNAVAILABLE, ErrorMap, Rule, first_of, iso_reset_header, retry_after_header

PLATFORM = "mastodon"
INSTANCE_KEY = "mastodonInstance"  # the account default holding the instance's limits (platforms/mastodon/limits.py)


def _oauth_code(body: Any) -> str | None:
    """An OAuth error's code (`error` beside `error_description`); Mastodon's API errors carry only a message."""
    if isinstance(body, dict) and isinstance(body.get("error_description"), str) and isinstance(body.get("error"), str):
        return str(body["error"])
    return None


def _message(body: Any) -> str | None:
    if isinstance(body, dict):
        for name in ("error_description", "error"):
            if isinstance(value := body.get(name), str):
                return value
    return None


ERRORS = ErrorMap(
    # Cited: 422 {"error": "Cannot attach files that have not finished processing. Try again in a moment!"}
    rules=(Rule(UNAVAILABLE, status=422, contains="have not finished processing"),),
    code=_oauth_code, message=_message,
    retry_after=first_of(iso_reset_header("x-ratelimit-reset"), retry_after_header))


def json_of(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


async def call(http: httpx2.AsyncClient, method: str, url: str, *, write: bool, now: float, timeout: float,
               token: str | None = None, what: str = "", path: str = "instanceUrl", **kw: Any) -> "_Answer":
    """One request to the instance; the parsed JSON answer of a 2xx (a 206 too), else the PlatformError ERRORS says.

    Raises:
        UpstreamForbiddenError: the instance is at a non-public address (named by `path`). PlatformError: see ERRORS."""
    headers = dict(kw.pop("headers", None) or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = await send(http, method, url, platform=PLATFORM, write=write, timeout=timeout, headers=headers, **kw)
    except UpstreamForbiddenError as exc:
        raise UpstreamForbiddenError(f"{path}: {exc.message}", path=path) from None
    error = error_for(response, f"Mastodon {what or method}", errors=ERRORS, now=now)
    if error is not None:
        raise error
    body = json_of(response)
    if body is None:
        cls = UnknownOutcomeError if write else PlatformUnavailableError
        raise cls(f"Mastodon answered {what or method} without JSON.", status=response.status_code, remediation="Retry later.")
    return _Answer(response.status_code, body)


class _Answer:
    """A 2xx answer: its status (200, 202, 206) and parsed body."""

    __slots__ = ("status", "body")

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body

    def obj(self, what: str) -> dict[str, Any]:
        """The body as a JSON object with an `id` (Status, MediaAttachment, Account)."""
        if not isinstance(self.body, dict) or not isinstance(self.body.get("id"), str):
            raise PlatformUnavailableError(f"Mastodon answered {what} without an id.", status=self.status, remediation="Retry later.")
        return self.body  # pyright: ignore[reportUnknownVariableType]


__all__ = ["ERRORS", "INSTANCE_KEY", "PLATFORM", "PlatformError", "call", "json_of"]
