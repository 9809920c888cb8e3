"""A fake X API v2 (api.x.com), speaking platforms.md §2 and checked against X's OpenAPI document
(reference-data/platform-specs/x-api-v2.openapi.json): every request's query against its operation, every answer
against the operation's response schema.

Routes so far (the identity a connect needs; publishing routes, /2/tweets and media upload, join `routes()` later):
- GET /2/users/me, Bearer user token → {"data": {"id", "name", "username"}}.
Refused token → 401 problem details `{"title": "Unauthorized", "type": "about:blank", "status": 401, "detail":
"Unauthorized"}` (confirmed in platforms.md §2.4). Erratum: the spec's `Problem` schema (a oneOf of nine problem
types) has no `about:blank`, `usage-capped` or `rate-limit-exceeded` variant, although platforms.md lists those
types; so 401 and 429 answers are checked for the common problem fields (type, title, detail: strings) only.

State: `users` (id → {id, name, username}); `issue_user_token(user_id)` issues a 2-hour access token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakes.specs import SpecViolation, x_api
from fakes.upstream import Answer, FakeUpstream, Handler, Req

ACCESS_TTL = 7200.0  # 2 h (platforms.md §2)


@dataclass
class XUser:
    id: str
    name: str
    username: str


class FakeX(FakeUpstream):
    """api.x.com."""

    origin = "https://api.x.com"
    token_prefix = "x"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.users: dict[str, XUser] = {}

    def add_user(self, id: str, username: str, name: str) -> XUser:
        self.users[id] = user = XUser(id, name, username)
        return user

    def issue_user_token(self, user_id: str, ttl: float = ACCESS_TTL) -> str:
        return self.issue(user_id, "user", ttl)

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(), ("GET", "/2/users/me", "users.me", self._me)]

    def check(self, req: Req) -> None:
        x_api().check_request(req.request.method, req.request.url.path, req.query)

    def check_answer(self, req: Req, status: int, body: Any) -> None:
        if status in (401, 429):  # erratum above: these problems are not in the spec's oneOf
            if not all(isinstance(body.get(k), str) for k in ("type", "title", "detail")):
                raise SpecViolation(f"X problem answer without type/title/detail: {body}")
            return
        x_api().check_response(req.request.method, req.request.url.path, status, body, self.media_type(status))

    def media_type(self, status: int) -> str:
        return "application/json" if status < 400 else "application/problem+json"

    def refused(self, req: Req, why: str) -> Answer:
        return Answer(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})

    async def _me(self, req: Req) -> Any:
        user = self.users[self.grant(req, "user").subject]
        return {"data": {"id": user.id, "name": user.name, "username": user.username}}
