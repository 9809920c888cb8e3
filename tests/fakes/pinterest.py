"""A fake Pinterest API v5 (api.pinterest.com/v5), speaking platforms.md §7 and checked against Pinterest's OpenAPI
document (reference-data/platform-specs/pinterest-v5.openapi.json): requests against their operation, answers
against its response schema.

Routes so far (publishing routes, /v5/pins and /v5/media, join `routes()` later):
- GET /v5/user_account, Bearer user token → Account {username, id, account_type, profile_image, website_url, ...}.
Refused token → 401 {"code": 2, "message": "Authentication failed."} (the shape of §7.3; the numeric code is
unconfirmed there); a token without the user_accounts:read scope → 403 {"code": 403, "message": "Not authorized to
access the user account."} (the spec's own example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakes.specs import pinterest_api
from fakes.upstream import Answer, FakeUpstream, Handler, Req

ACCESS_TTL = 30 * 86400.0  # commonly 30 days (§7, unconfirmed)


@dataclass
class PinterestUser:
    id: str
    username: str
    account_type: str = "BUSINESS"


class FakePinterest(FakeUpstream):
    """api.pinterest.com (the API under /v5)."""

    origin = "https://api.pinterest.com"
    token_prefix = "pina"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.users: dict[str, PinterestUser] = {}

    def add_user(self, id: str, username: str, account_type: str = "BUSINESS") -> PinterestUser:
        self.users[id] = user = PinterestUser(id, username, account_type)
        return user

    def issue_user_token(self, user_id: str, ttl: float = ACCESS_TTL,
                         scopes: tuple[str, ...] = ("boards:read", "pins:read", "pins:write", "user_accounts:read")) -> str:
        return self.issue(user_id, "user", ttl, scopes=scopes)

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(), ("GET", "/v5/user_account", "user_account", self._user_account)]

    def check(self, req: Req) -> None:
        pinterest_api().check_request(req.request.method, req.request.url.path, req.query)

    def check_answer(self, req: Req, status: int, body: Any) -> None:
        pinterest_api().check_response(req.request.method, req.request.url.path, status, body)

    def refused(self, req: Req, why: str) -> Answer:
        return Answer(401, {"code": 2, "message": "Authentication failed."})

    async def _user_account(self, req: Req) -> Any:
        grant = self.grant(req, "user")
        if "user_accounts:read" not in grant.data.get("scopes", ()):
            raise Answer(403, {"code": 403, "message": "Not authorized to access the user account."})
        user = self.users[grant.subject]
        return {"account_type": user.account_type, "id": user.id, "username": user.username,
                "profile_image": f"https://i.pinimg.com/600x600_R/{user.id}.jpg", "website_url": "https://example.com",
                "about": "", "business_name": user.username}
