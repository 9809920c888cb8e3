"""Error maps (platforms/errormap.py) and the HTTP layer that applies them (platforms/calls.py)."""

from typing import Any

import httpx2
import pytest
from fakes import mounted_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from omnipost.platforms import bluesky, sandbox
from omnipost.platforms.errormap import (
    AUTH_REFUSED,
    DUPLICATE,
    FORBIDDEN,
    RATE_LIMITED,
    REJECTED,
    UNAVAILABLE,
    UNKNOWN_OUTCOME,
    ErrorMap,
    Family,
    Rule,
    first_of,
    reset_header,
    retry_after_header,
)
from omnipost.platforms.calls import error_for, send

pytestmark = pytest.mark.anyio

NOW = 1_795_521_600.0  # 2026-11-24T12:00:00Z
HOST = "https://upstream.test"


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, json=body if body is not None else {}, headers=headers)


def family(response: httpx2.Response, errors: ErrorMap = ErrorMap(), *, write: bool = False) -> Family:
    error = error_for(response, "test", errors=errors, write=write, now=NOW)
    assert error is not None
    return type(error)


@pytest.mark.parametrize("status, expected", [
    (400, REJECTED), (401, AUTH_REFUSED), (403, FORBIDDEN), (404, REJECTED),
    (422, REJECTED), (429, RATE_LIMITED), (500, UNAVAILABLE), (503, UNAVAILABLE),
])
def test_with_no_rule_the_status_decides_and_403_is_not_auth(status: int, expected: Family) -> None:
    assert family(answer(status)) is expected


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_to_a_write_is_an_unknown_outcome_and_to_a_read_unavailable(status: int) -> None:
    assert family(answer(status), write=True) is UNKNOWN_OUTCOME
    assert family(answer(status), write=False) is UNAVAILABLE
    assert family(answer(429), write=True) is RATE_LIMITED  # refused before acting: not unknown


async def test_send_records_whether_the_call_was_a_write() -> None:
    async def busy(request: Request) -> JSONResponse:
        return JSONResponse({"error": "unavailable"}, status_code=503)

    async with mounted_client({HOST: Starlette(routes=[Route("/x", busy, methods=["GET", "POST"])])}) as http:
        wrote = await send(http, "POST", f"{HOST}/x", platform="test", write=True)
        read = await send(http, "GET", f"{HOST}/x", platform="test", write=False)
    assert type(error_for(wrote, "test")) is UNKNOWN_OUTCOME
    assert type(error_for(read, "test")) is UNAVAILABLE
    obj = error_for(wrote, "test").to_error_object()  # type: ignore[union-attr]
    assert (obj.code, obj.retryable, obj.platformResponse) == ("platform_outcome_unknown", False, {"error": "unavailable"})


def test_rules_match_structured_codes_first_then_substrings_then_the_status() -> None:
    errors = ErrorMap(rules=(Rule(AUTH_REFUSED, status=403, code="client-forbidden"),
                             Rule(DUPLICATE, status=403, contains="duplicate content")),
                      code=lambda body: body.get("type", "").rsplit("/", 1)[-1] or None, message=lambda body: body.get("detail"))
    refused = {"type": "https://api.x.com/2/problems/client-forbidden", "detail": "Unsupported Authentication"}
    duplicate = {"type": "about:blank", "detail": "You are not allowed to create a Tweet with duplicate content."}
    assert family(answer(403, refused), errors) is AUTH_REFUSED
    assert family(answer(403, duplicate), errors) is DUPLICATE
    assert family(answer(403, {"detail": "You are not permitted to perform this action."}), errors) is FORBIDDEN


@pytest.mark.parametrize("headers, seconds", [
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": "Tue, 24 Nov 2026 12:00:45 GMT"}, 45.0),  # against `now`
    ({"Retry-After": "Tue, 24 Nov 2026 12:01:00 GMT", "Date": "Tue, 24 Nov 2026 12:00:30 GMT"}, 30.0),  # against Date
    ({"Retry-After": "soon"}, None),
    ({}, None),
])
def test_retry_after_header_reads_seconds_and_http_dates(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_header(answer(429, headers=headers), NOW) == seconds


def test_epoch_reset_headers_count_from_the_injected_clock() -> None:
    x = first_of(reset_header("x-rate-limit-reset"), retry_after_header)
    assert x(answer(429, headers={"x-rate-limit-reset": str(int(NOW) + 120)}), NOW) == 120
    assert x(answer(429, headers={"x-rate-limit-reset": str(int(NOW) - 5)}), NOW) == 0  # already past
    assert x(answer(429, headers={"Retry-After": "3"}), NOW) == 3
    assert x(answer(429, headers={"x-rate-limit-reset": str(int(NOW))}), None) is None  # no clock, no guess


@pytest.mark.parametrize("status, body, expected", [
    (400, {"error": "InvalidToken"}, AUTH_REFUSED),
    (403, {"error": "AccountTakedown"}, AUTH_REFUSED),
    (403, {"error": "Forbidden", "message": "Missing required scope"}, FORBIDDEN),
    (401, {"error": "SomethingNew"}, AUTH_REFUSED),
    (400, {"error": "RateLimitExceeded"}, RATE_LIMITED),
    (400, {"error": "InvalidRequest"}, REJECTED),
])
def test_the_bluesky_map(status: int, body: dict[str, Any], expected: Family) -> None:
    assert family(answer(status, body), bluesky.ERRORS) is expected


@pytest.mark.parametrize("status, body, expected", [
    (401, {"error": "unauthorized"}, AUTH_REFUSED),
    (403, {"error": "forbidden"}, FORBIDDEN),
    (403, {"error": "duplicate_content", "detail": "You are not allowed to create a Tweet with duplicate content."},
     DUPLICATE),
    (429, {"error": "rate_limited"}, RATE_LIMITED),
    (400, {"error": "invalid_request"}, REJECTED),
])
def test_the_sandbox_map(status: int, body: dict[str, Any], expected: Family) -> None:
    assert family(answer(status, body), sandbox.ERRORS) is expected


def test_new_error_objects_keep_the_public_shape() -> None:
    for error, code in ((FORBIDDEN("no scope", status=403), "platform_forbidden"),
                        (DUPLICATE("again", status=403), "platform_duplicate")):
        obj = error.to_error_object("req_1").model_dump()
        assert obj["code"] == code and obj["retryable"] is False and obj["requestId"] == "req_1"
        assert {"code", "message", "rule", "platformResponse", "remediation", "retryable", "requestId", "retryAfter"} <= obj.keys()


@pytest.mark.parametrize(("value", "seconds"), [
    ("2026-11-24T12:01:30.000Z", 90.0),  # Mastodon's X-RateLimit-Reset: an ISO-8601 instant (platforms.md §0.2)
    ("2026-11-24T12:01:30+00:00", 90.0),
    ("2026-11-24T11:59:00Z", 0.0),  # already past: retry now
    ("2026-11-24T12:01:30", None),  # no zone: unreadable as an instant
    ("1795521690", None),  # an epoch is not what Mastodon sends
    (None, None),
])
def test_an_iso_reset_header_is_read_against_now(value: str | None, seconds: float | None) -> None:
    from omnipost.platforms.errormap import iso_reset_header

    headers = {"X-RateLimit-Reset": value} if value is not None else {}
    assert iso_reset_header("x-ratelimit-reset")(httpx2.Response(429, headers=headers), 1_795_521_600.0) == seconds


@pytest.mark.parametrize(("status", "body", "family", "message"), [
    (401, {"error": "The access token is invalid"}, AUTH_REFUSED, "The access token is invalid"),
    (403, {"error": "This action is outside the authorized scopes"}, FORBIDDEN, "This action is outside the authorized scopes"),
    (422, {"error": "Validation failed: Text character limit of 500 exceeded"}, REJECTED,
     "Validation failed: Text character limit of 500 exceeded"),
    (422, {"error": "Cannot attach files that have not finished processing. Try again in a moment!"}, UNAVAILABLE, None),
    (429, {"error": "Too many requests"}, RATE_LIMITED, "Too many requests"),
    (503, {"error": "Service Unavailable"}, UNAVAILABLE, "Service Unavailable"),
    (400, {"error": "invalid_grant", "error_description": "The provided authorization grant is invalid"}, REJECTED,
     "The provided authorization grant is invalid"),
])
def test_mastodon_answers_map_to_their_families(status: int, body: dict[str, Any], family: Family, message: str | None) -> None:
    from omnipost.platforms.mastodon.api import ERRORS

    got, code, said = ERRORS.classify(status, body)
    assert got is family and (message is None or said == message)
    assert code == ("invalid_grant" if "error_description" in body else None)
