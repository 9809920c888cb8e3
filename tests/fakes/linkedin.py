"""A fake LinkedIn API (api.linkedin.com), speaking platforms.md §3. LinkedIn publishes no machine-readable spec
(reference-data/platform-specs/README.md), so platforms.md is the reference.

Routes so far (publishing routes, /rest/posts and media, join `routes()` later):
- GET /v2/userinfo, Bearer member token (OpenID Connect) → {"sub", "name", "given_name", "family_name", "picture",
  "locale", "email", "email_verified"}; query parameters are refused (the endpoint takes none).
Refused token → 401 {"serviceErrorCode": 65600, "message": "Invalid access token", "status": 401}; revoked →
401 {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN", "message": ...} (§3.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakes.specs import SpecViolation
from fakes.upstream import Answer, FakeUpstream, Handler, Req

ACCESS_TTL = 60 * 86400.0  # 60 days (§3)


@dataclass
class Member:
    sub: str
    given_name: str
    family_name: str
    email: str

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"


class FakeLinkedIn(FakeUpstream):
    """api.linkedin.com."""

    origin = "https://api.linkedin.com"
    token_prefix = "li"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members: dict[str, Member] = {}

    def add_member(self, sub: str, given_name: str, family_name: str, email: str = "member@example.com") -> Member:
        self.members[sub] = member = Member(sub, given_name, family_name, email)
        return member

    def issue_member_token(self, sub: str, ttl: float = ACCESS_TTL) -> str:
        return self.issue(sub, "member", ttl)

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(), ("GET", "/v2/userinfo", "userinfo", self._userinfo)]

    def check(self, req: Req) -> None:
        if req.route == "userinfo" and req.query:
            raise SpecViolation(f"/v2/userinfo takes no query parameters, got {sorted(req.query)}")

    def refused(self, req: Req, why: str) -> Answer:
        if why == "revoked":
            return Answer(401, {"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN",
                                "message": "The token used in the request has been revoked by the user"})
        return Answer(401, {"serviceErrorCode": 65600, "message": "Invalid access token", "status": 401})

    async def _userinfo(self, req: Req) -> Any:
        m = self.members[self.grant(req, "member").subject]
        return {"sub": m.sub, "email_verified": True, "name": m.name, "locale": {"country": "US", "language": "en"},
                "given_name": m.given_name, "family_name": m.family_name, "email": m.email,
                "picture": f"https://media.licdn.com/dms/image/{m.sub}/profile.jpg"}
