"""Per-platform error maps: an upstream answer (status + structured body code) -> one error family.

Each adapter module exposes its map as `ERRORS` (the platform registry puts it on the PlatformSpec);
platforms/calls.py's `raise_for_status` applies it and builds the error. A map is data:

- `rules`, tried in order: (status, structured code, message substring) -> family; a field left None
  matches anything. Match on the platform's structured code; a `contains` substring only when the
  platform offers nothing else, with a comment citing the response it matches.
- `code` / `message`: where the structured code and the human message sit in the body.
- `retry_after`: seconds to wait, read from the platform's headers or body.

With no rule matching, the status decides (`default_family`): 401 → AuthRefused (the token was
refused), 403 → Forbidden (permission or scope: the account stays healthy), 429 → RateLimited,
5xx → Unavailable, any other 4xx → Rejected. Whatever the family, a 5xx answer to a non-idempotent
write is an unknown outcome (calls.py decides that, since only it knows what was sent).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2

from omnipost import errors

Family = type[errors.PlatformError]
AUTH_REFUSED: Family = errors.PlatformAuthError  # the token was refused: the account needs reconnecting
FORBIDDEN: Family = errors.PlatformForbiddenError  # permission or scope: the account stays healthy
DUPLICATE: Family = errors.PlatformDuplicateError
RATE_LIMITED: Family = errors.PlatformRateLimitError
REJECTED: Family = errors.PlatformRejectedError
UNAVAILABLE: Family = errors.PlatformUnavailableError
UNKNOWN_OUTCOME: Family = errors.UnknownOutcomeError

RetryAfter = Callable[[httpx2.Response, float | None], float | None]  # (answer, now in Unix seconds) -> seconds


def default_family(status: int) -> Family:
    """The family a status means when no rule of the platform's map says otherwise."""
    if status == 401:
        return AUTH_REFUSED
    if status == 403:
        return FORBIDDEN
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return UNAVAILABLE
    return REJECTED


@dataclass(frozen=True)
class Rule:
    """One line of a map; a None field matches anything."""

    family: Family
    status: int | None = None
    code: str | None = None
    contains: str | None = None  # case-insensitive substring of the body's message (cite the response)

    def matches(self, status: int, code: str | None, message: str | None) -> bool:
        return ((self.status is None or self.status == status) and (self.code is None or self.code == code)
                and (self.contains is None or self.contains.lower() in (message or "").lower()))


def body_field(*names: str) -> Callable[[Any], str | None]:
    """Reads the first of `names` that holds a string in a JSON-object body."""
    def read(body: Any) -> str | None:
        if isinstance(body, dict):
            for name in names:
                if isinstance(value := body.get(name), str):
                    return value
        return None
    return read


def _seconds(value: str | None, now: float | None, *, epoch: bool) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if epoch:
        return None if now is None else max(0.0, number - now)
    return max(0.0, number)


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        at: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return at.timestamp() if at.tzinfo is not None else None


def retry_after_header(response: httpx2.Response, now: float | None) -> float | None:
    """`Retry-After`: delay seconds, or an HTTP date, counted from the answer's own `Date` (RFC 9110 §10.2.3)
    when it has one, else from `now`."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if (seconds := _seconds(value, now, epoch=False)) is not None:
        return seconds
    at = _http_date(value)
    base = _http_date(response.headers.get("date"))
    base = base if base is not None else now
    return None if at is None or base is None else max(0.0, at - base)


def reset_header(name: str) -> RetryAfter:
    """A header holding the Unix epoch second the limit resets (Bluesky's RateLimit-Reset, X's x-rate-limit-reset)."""
    def read(response: httpx2.Response, now: float | None) -> float | None:
        return _seconds(response.headers.get(name), now, epoch=True)
    return read


def iso_reset_header(name: str) -> RetryAfter:
    """A header holding the ISO-8601 instant the limit resets (Mastodon's X-RateLimit-Reset, e.g.
    `2026-11-24T12:05:00.000Z`: platforms.md §0.2), counted from `now`; None when absent, unreadable or without a zone."""
    def read(response: httpx2.Response, now: float | None) -> float | None:
        value = response.headers.get(name)
        if value is None or now is None:
            return None
        try:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return None if at.tzinfo is None else max(0.0, at.timestamp() - now)
    return read


def first_of(*extractors: RetryAfter) -> RetryAfter:
    """The first extractor that finds a value."""
    def read(response: httpx2.Response, now: float | None) -> float | None:
        for extract in extractors:
            if (seconds := extract(response, now)) is not None:
                return seconds
        return None
    return read


@dataclass(frozen=True)
class ErrorMap:
    """One platform's error map (see the module docstring)."""

    rules: tuple[Rule, ...] = ()
    code: Callable[[Any], str | None] = body_field("error")
    message: Callable[[Any], str | None] = body_field("message")
    retry_after: RetryAfter = retry_after_header

    def classify(self, status: int, body: Any) -> tuple[Family, str | None, str | None]:
        """(family, structured code, message) of a non-2xx answer whose parsed body is `body`."""
        code, message = self.code(body), self.message(body)
        for rule in self.rules:
            if rule.matches(status, code, message):
                return rule.family, code, message
        return default_family(status), code, message


GENERIC = ErrorMap()  # the fallback for a caller that names no map
