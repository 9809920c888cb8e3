"""X's error map (platforms.md §2.4): problem-details bodies `{"type", "title", "detail", "status", "errors"?}`.

The structured code is the problem `type` URI; X answers 401, 403 and most 429s with `type: about:blank`, so for
403 the `detail` sentence is the only thing that tells a duplicate from a suspension from a plain refusal: those
rules match substrings of it, each citing the answer it matches. A 400 invalid-request names the offending field
in `errors[].parameters` / `errors[].message`, which the message below appends to the detail (and the body itself
is kept as the error's platform_response, redacted by calls.body_of).
"""

from typing import Any

import httpx2

from omnipost.platforms.errormap import (AUTH_REFUSED, DUPLICATE, FORBIDDEN, RATE_LIMITED, REJECTED, ErrorMap, Rule, body_field,
                                         retry_after_header)

PROBLEM = "https://api.x.com/2/problems/"

# (remaining, reset) header pairs of X's windows (platforms.md §2.5): 15-minute per endpoint, and on POST /2/tweets
# the 24-hour per-user and per-app ones. Resets are Unix epoch seconds.
_WINDOWS = (("x-rate-limit-remaining", "x-rate-limit-reset"),
            ("x-user-limit-24hour-remaining", "x-user-limit-24hour-reset"),
            ("x-app-limit-24hour-remaining", "x-app-limit-24hour-reset"))


def retry_after(response: httpx2.Response, now: float | None) -> float | None:
    """Seconds until the latest exhausted window resets (remaining 0); without one, x-rate-limit-reset; then
    Retry-After (not normally sent by X)."""
    def reset(name: str) -> float | None:
        try:
            at = float(response.headers[name])
        except (KeyError, ValueError):
            return None
        return None if now is None else max(0.0, at - now)

    exhausted = [s for remaining, at in _WINDOWS if response.headers.get(remaining) == "0" and (s := reset(at)) is not None]
    if exhausted:
        return max(exhausted)
    if (seconds := reset("x-rate-limit-reset")) is not None:
        return seconds
    return retry_after_header(response, now)


def message(body: Any) -> str | None:
    """The problem's `detail`, with the inner errors' messages (the field a 400 names) appended."""
    detail = body_field("detail", "title")(body)
    inner = body.get("errors") if isinstance(body, dict) else None
    said = [str(e["message"]) for e in inner if isinstance(e, dict) and isinstance(e.get("message"), str)] if isinstance(inner, list) else []
    return "; ".join(part for part in (detail, *said) if part) or None


ERRORS = ErrorMap(
    rules=(
        # 403 {"detail": "You are not allowed to create a Tweet with duplicate content.", "type": "about:blank"}
        # (platforms.md §2.4, confirmed): the same text again.
        Rule(DUPLICATE, status=403, contains="duplicate content"),
        # A suspended or locked user, an app not enrolled for user context, OAuth 1 only apps: the account (or its
        # connection) must be fixed by the user, not the post. X's sentences: "... account is suspended ...",
        # "... account is temporarily locked ...", "Unsupported Authentication", problem type client-forbidden.
        Rule(AUTH_REFUSED, status=403, contains="suspended"),
        Rule(AUTH_REFUSED, status=403, contains="locked"),
        Rule(AUTH_REFUSED, status=403, contains="Unsupported Authentication"),
        Rule(AUTH_REFUSED, status=403, code=PROBLEM + "client-forbidden"),
        # 403 "You are not permitted to perform this action." is how X refuses content it will not post (Postiz maps
        # it to length/media problems): the post must change, the account is fine.
        Rule(REJECTED, status=403, contains="not permitted to perform this action"),
        Rule(FORBIDDEN, status=403),  # scope or permission: the account stays healthy
        Rule(RATE_LIMITED, code=PROBLEM + "usage-capped"),
        Rule(RATE_LIMITED, code=PROBLEM + "rate-limit-exceeded"),
    ),
    code=body_field("type"), message=message, retry_after=retry_after)
