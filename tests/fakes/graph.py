"""What Meta's Graph hosts share (platforms.md §4.3): the Graph error object, how a dead token is answered, and the
parameter check for calls no node spec covers. The hosts' fakes: fakes/facebook.py (graph.facebook.com, Facebook
Pages and Instagram with Facebook Login) and fakes/threads.py (graph.threads.net).

Errors are Graph error objects: a dead token answers HTTP 400 {"error": {"message": "Error validating access token:
...", "type": "OAuthException", "code": 190, "error_subcode": 463 (expired) | 460 (revoked: password changed) | 467
(invalid), "fbtrace_id"}}; no token at all code 2500; a wrong app secret code 1 "Error validating client secret.";
an unknown object code 100 subcode 33.
"""

from __future__ import annotations

from typing import Any

from fakes.specs import SpecViolation
from fakes.upstream import Answer, Req

LONG_TTL = 60 * 86400.0  # a long-lived token (Facebook user, Threads): ~60 days
_SUBCODES = {"expired": 463, "revoked": 460, "invalid": 467, "missing": None}


def graph_error(status: int, code: int, message: str, *, subcode: int | None = None, kind: str = "OAuthException") -> Answer:
    """A Graph error answer."""
    body: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if subcode is not None:
        body["error_subcode"] = subcode
    return Answer(status, {"error": body})


def token_refused(why: str) -> Answer:
    """Graph's answer to a missing, unknown, expired or revoked token."""
    if why == "missing":
        return graph_error(400, 2500, "An active access token must be used to query information about the current user.")
    return graph_error(400, 190, "Error validating access token: the session is invalid.", subcode=_SUBCODES[why])


def only(req: Req, allowed: set[str], required: frozenset[str] | set[str] = frozenset()) -> None:
    """The call's query parameters are among `allowed` and include `required` (calls no node spec describes)."""
    unknown, missing = sorted(set(req.query) - allowed), sorted(required - set(req.query))
    if unknown or missing:
        raise SpecViolation(f"{req.route}: unknown parameters {unknown}, missing {missing}")
