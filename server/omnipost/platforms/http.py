"""The one place where HTTP statuses and transport exceptions become the PlatformError family."""

import json
import re
from typing import Any

import anyio
import httpx2

from omnipost.errors import (
    PlatformAuthError,
    PlatformError,
    PlatformRateLimitError,
    PlatformRejectedError,
    PlatformUnavailableError,
    UnknownOutcomeError,
)
from omnipost.netguard import UpstreamForbiddenError, refused_reason

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


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def raise_for_status(response: httpx2.Response, platform: str) -> None:
    """Raise the PlatformError that matches a non-2xx answer."""
    if response.status_code < 400:
        return
    body = body_of(response)
    kw: dict[str, Any] = {"status": response.status_code, "platform_response": body}
    where = f"{platform} answered HTTP {response.status_code}"
    if response.status_code in (401, 403):
        raise PlatformAuthError(f"{where}: the account's credentials were refused.",
                                remediation="Reconnect the account (connect_account).", **kw)
    if response.status_code == 429:
        raise PlatformRateLimitError(f"{where}: rate limited.", retry_after=_retry_after(response),
                                     remediation="Retry after the platform's retry-after; omnipost's worker does this.", **kw)
    if response.status_code >= 500:
        raise PlatformUnavailableError(f"{where}: the platform is unavailable.", retry_after=_retry_after(response),
                                       remediation="Retry later.", **kw)
    raise PlatformRejectedError(f"{where}: the platform refused the request.",
                                remediation="Read platformResponse, change the post, and publish again.", **kw)


async def send(client: httpx2.AsyncClient, method: str, url: str, *, platform: str, write: bool,
               timeout: float = 30.0, **kwargs: Any) -> httpx2.Response:
    """Send one request; transport failures become PlatformErrors.

    A failure before the request could reach the platform is `platform_unavailable` (retryable);
    a write whose answer was lost after sending is `platform_outcome_unknown` (never retried blind).
    """
    try:
        with anyio.fail_after(timeout):
            return await client.request(method, url, **kwargs)
    except httpx2.ConnectError as exc:
        refused = refused_reason(exc)
        if refused is not None:  # the SSRF guard: nothing was sent
            raise UpstreamForbiddenError(f"omnipost does not connect to {platform} at that address: {refused}.") from None
        raise PlatformUnavailableError(f"Could not reach {platform}: {type(exc).__name__}.", remediation="Retry later.") from exc
    except (httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
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
