"""The one place where HTTP statuses and transport exceptions become the PlatformError family.

`send` knows whether a call is a non-idempotent write: once such a write may have reached the platform
(a reset, a read timeout, or a 5xx answer), the outcome is UnknownOutcomeError, never "not sent".
Before anything was sent (connect error, pool timeout, the SSRF guard) it is PlatformUnavailableError.
Statuses become errors through the platform's ErrorMap (platforms/errormap.py).
"""

import json
import re
from typing import Any

import anyio
import httpx2

from omnipost.errors import PlatformError, PlatformUnavailableError, UnknownOutcomeError, echo
from omnipost.netguard import UpstreamForbiddenError, refused_reason
from omnipost.platforms import errormap
from omnipost.platforms.errormap import GENERIC, ErrorMap, Family

MAX_BODY = 2000
_SECRET_KEYS = re.compile(r"(?i)(token|jwt|password|secret|authorization|api[_-]?key|cookie)")


def redact(value: Any) -> Any:
    """Drop secret-looking fields from an upstream JSON body (recursively)."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if _SECRET_KEYS.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def body_of(response: httpx2.Response) -> dict[str, Any] | str:
    """The response body, parsed when JSON, redacted, and truncated to 2000 characters."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text[:MAX_BODY]
    data = redact(data)
    if len(json.dumps(data)) > MAX_BODY:
        return json.dumps(data)[:MAX_BODY]
    return data if isinstance(data, dict) else {"body": data}


WRITE = "omnipost.write"  # response.extensions key: send() records whether the call was a non-idempotent write

_SAYS: dict[Family, tuple[str, str]] = {  # family -> (what it means, remediation)
    errormap.AUTH_REFUSED: ("the account's credentials were refused", "Reconnect the account (connect_account)."),
    errormap.FORBIDDEN: ("the account lacks the permission or scope for this action (its token is fine)",
                         "Grant the permission on the platform (or reconnect with the scope it needs), then publish again."),
    errormap.DUPLICATE: ("the platform refused the post as a duplicate of one the account already has",
                         "Change the text, or check the account: the post may already be there."),
    errormap.RATE_LIMITED: ("rate limited", "Retry after the platform's retry-after; omnipost's worker does this."),
    errormap.UNAVAILABLE: ("the platform is unavailable", "Retry later."),
    errormap.UNKNOWN_OUTCOME: ("the platform received the write but gave no definite answer, so it may or may not have taken effect",
                               "omnipost reconciles this post with the platform before any retry; check get_post later."),
    errormap.REJECTED: ("the platform refused the request", "Read platformResponse, change the post, and publish again."),
}


def error_for(response: httpx2.Response, platform: str, *, errors: ErrorMap = GENERIC, write: bool | None = None,
              now: float | None = None) -> PlatformError | None:
    """The PlatformError a non-2xx answer means (None below 400), by the platform's ErrorMap.

    `platform` names who answered (in the message); `write` defaults to what send() recorded; `now` (Unix
    seconds, from the injected clock) is needed by epoch-based retry-after headers. A 5xx answer to a
    non-idempotent write is UnknownOutcomeError: the platform may have acted before it failed.
    """
    status = response.status_code
    if status < 400:
        return None
    body = body_of(response)
    family, code, message = errors.classify(status, body)
    sent_write = write if write is not None else bool(response.extensions.get(WRITE, False))
    if sent_write and status >= 500 and family is errormap.UNAVAILABLE:
        family = errormap.UNKNOWN_OUTCOME
    meaning, remediation = _SAYS.get(family, _SAYS[errormap.REJECTED])
    detail = " ".join(part for part in (code, f"({echo(message, 300)})" if message else None) if part)
    text = f"{platform} answered HTTP {status}" + (f" {detail}" if detail else "") + f": {meaning}."
    retry_after = errors.retry_after(response, now) if family in (errormap.RATE_LIMITED, errormap.UNAVAILABLE) else None
    return family(text, status=status, retry_after=retry_after, platform_response=body, remediation=remediation)


def raise_for_status(response: httpx2.Response, platform: str, *, errors: ErrorMap = GENERIC, write: bool | None = None,
                     now: float | None = None) -> None:
    """Raise the PlatformError that matches a non-2xx answer (see error_for)."""
    if (error := error_for(response, platform, errors=errors, write=write, now=now)) is not None:
        raise error


async def send(client: httpx2.AsyncClient, method: str, url: str, *, platform: str, write: bool,
               timeout: float = 30.0, **kwargs: Any) -> httpx2.Response:
    """Send one request; transport failures become PlatformErrors.

    A failure before the request could reach the platform is `platform_unavailable` (retryable);
    a write whose answer was lost after sending is `platform_outcome_unknown` (never retried blind).
    """
    try:
        with anyio.fail_after(timeout):
            response = await client.request(method, url, **kwargs)
    except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
        if (refused := refused_reason(exc)) is not None:  # the SSRF guard: nothing was sent
            raise UpstreamForbiddenError(f"omnipost does not connect to {platform} at that address: {refused}.") from None
        raise PlatformUnavailableError(f"Could not reach {platform}: {type(exc).__name__}.", remediation="Retry later.") from exc
    except (httpx2.ReadTimeout, httpx2.WriteTimeout, httpx2.RemoteProtocolError, httpx2.ReadError, TimeoutError) as exc:
        if write:
            raise UnknownOutcomeError(
                f"{platform} received the request but no answer came back ({type(exc).__name__}).",
                remediation="omnipost reconciles this post with the platform before any retry; check get_post later.",
            ) from exc
        raise PlatformUnavailableError(f"{platform} did not answer ({type(exc).__name__}).", remediation="Retry later.") from exc
    except httpx2.HTTPError as exc:
        raise PlatformError(f"HTTP error talking to {platform}: {type(exc).__name__}.") from exc
    response.extensions[WRITE] = write
    return response
