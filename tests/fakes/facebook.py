"""A fake graph.facebook.com: Facebook Pages, and Instagram with Facebook Login (whose accounts are the
`instagram_business_account` of a Page, on the same host: fakes/instagram.py), speaking platforms.md §4–5.
Publishing routes (Page /feed, /photos; IG /media, /media_publish) join `routes()` later.

Every route is under the pinned version (`/v24.0/...`; another version is refused):
- GET /oauth/access_token?grant_type=fb_exchange_token&client_id&client_secret&fb_exchange_token=<short user token>
  → {"access_token": <long-lived user token>, "token_type": "bearer", "expires_in": ~60 days} (§4.1 step 3).
- GET /me/accounts[?fields&limit&after], a user token → {"data": [Page...], "paging": {"cursors": {"before", "after"},
  "next"?}}; each Page's `access_token` is a Page token that never expires when the user token is long-lived, and
  lasts as long as a short-lived user token otherwise (Meta's rule, §4 tokens).
- GET /{page-id}?fields=..., a user token of one of the Page's admins (or the Page's token): the Page's id and the
  fields asked for, `instagram_business_account{id,username}` only when an Instagram professional account is linked.
Every edge call's parameters and `fields=` selector are checked against Meta's node specs (User.accounts, Page,
IGUser in reference-data/platform-specs/meta-graph-api/specs), and every answered object against its node's fields
and types. The token exchange is in no spec: platforms.md is its reference. Errors: fakes/graph.py.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from fakes.graph import LONG_TTL, graph_error, only, token_refused
from fakes.specs import SpecViolation, graph_nodes, parse_selector
from fakes.upstream import FakeUpstream, Handler, Req

SHORT_TTL = 2 * 3600.0  # Facebook short-lived user token: ~1–2 h (§4)
GRAPH_VERSION = "v24.0"


@dataclass
class IGAccount:
    id: str
    username: str


@dataclass
class FbPage:
    id: str
    name: str
    category: str = "Brand"
    instagram: IGAccount | None = None
    token_role: bool = True  # False: the user's role on the Page cannot use a Page token (Meta leaves it out)


@dataclass
class FbUser:
    id: str
    name: str
    pages: list[str] = field(default_factory=lambda: [])


class FakeGraph(FakeUpstream):
    """graph.facebook.com (Facebook Pages, and Instagram with Facebook Login)."""

    origin = "https://graph.facebook.com"
    token_prefix = "EAAfb"

    def __init__(self, *args: Any, client_id: str = "1234567890", client_secret: str = "fb-app-secret",
                 version: str = GRAPH_VERSION, **kwargs: Any) -> None:
        self.version = version
        super().__init__(*args, **kwargs)
        self.client_id, self.client_secret = client_id, client_secret
        self.users: dict[str, FbUser] = {}
        self.pages: dict[str, FbPage] = {}

    def add_user(self, id: str, name: str) -> FbUser:
        self.users[id] = user = FbUser(id, name)
        return user

    def add_page(self, user_id: str, id: str, name: str, *, instagram: IGAccount | None = None,
                 token_role: bool = True) -> FbPage:
        self.pages[id] = page = FbPage(id, name, instagram=instagram, token_role=token_role)
        self.users[user_id].pages.append(id)
        return page

    def issue_user_token(self, user_id: str, ttl: float = SHORT_TTL) -> str:
        """The short-lived user token a code exchange gives."""
        return self.issue(user_id, "user_short", ttl)

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(),
                ("GET", "/{version}/oauth/access_token", "oauth.access_token", self._access_token),
                ("GET", "/{version}/me/accounts", "me.accounts", self._accounts),
                ("GET", "/{version}/{node}", "node", self._node)]

    def check(self, req: Req) -> None:
        if req.path_params.get("version") != self.version:
            raise SpecViolation(f"{req.request.url.path}: not the pinned Graph version {self.version}")

    def refused(self, req: Req, why: str) -> Answer:
        return token_refused(why)

    async def _access_token(self, req: Req) -> Any:
        if req.arg("grant_type") != "fb_exchange_token":
            raise SpecViolation("this fake's /oauth/access_token serves only grant_type=fb_exchange_token so far")
        only(req, {"grant_type", "client_id", "client_secret", "fb_exchange_token"},
              {"grant_type", "client_id", "client_secret", "fb_exchange_token"})
        if req.arg("client_id") != self.client_id or req.arg("client_secret") != self.client_secret:
            raise graph_error(400, 1, "Error validating client secret.")
        grant = self.grant_of(req, req.arg("fb_exchange_token") or "", "user_short", "user_long")
        return {"access_token": self.issue(grant.subject, "user_long", LONG_TTL), "token_type": "bearer",
                "expires_in": int(LONG_TTL)}

    def _page_fields(self, page: FbPage, selector: str, grant_kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, sub in parse_selector(selector):
            if name == "id":
                out["id"] = page.id
            elif name == "name":
                out["name"] = page.name
            elif name == "category":
                out["category"] = page.category
            elif name == "access_token":
                if not page.token_role:
                    continue
                # Meta: a Page token from a long-lived user token has no expiry; from a short one it is short too.
                ttl = None if grant_kind == "user_long" else SHORT_TTL
                out["access_token"] = self.issue(page.id, "page", ttl, derived_from=grant_kind)
            elif name == "instagram_business_account":
                if page.instagram is not None:  # Graph leaves an unset field out of the answer
                    ig = {"id": page.instagram.id, "username": page.instagram.username}
                    out[name] = {k: v for k, v in ig.items() if k in {n for n, _ in parse_selector(sub or "id")}}
            else:
                raise SpecViolation(f"the fake does not serve Page.{name} yet")
        graph_nodes().check_object("Page", out)
        return out

    async def _accounts(self, req: Req) -> Any:
        graph_nodes().check_params("User", "GET", "accounts", req.query)
        selector = req.arg("fields") or "id,name,access_token,category"
        graph_nodes().check_fields(graph_nodes().edge_returns("User", "GET", "accounts"), selector)
        grant = self.grant(req, "user_short", "user_long")
        ids = self.users[grant.subject].pages
        limit = int(req.arg("limit") or 25)
        start = int(base64.b64decode(req.arg("after") or "MA==").decode()) if req.arg("after") else 0
        chunk = ids[start:start + limit]
        body: dict[str, Any] = {"data": [self._page_fields(self.pages[i], selector, grant.kind) for i in chunk]}
        if chunk:
            cursor = lambda n: base64.b64encode(str(n).encode()).decode()  # noqa: E731  # Graph cursors are opaque
            body["paging"] = {"cursors": {"before": cursor(start), "after": cursor(start + len(chunk))}}
            if start + len(chunk) < len(ids):
                body["paging"]["next"] = (f"{self.origin}/{self.version}/me/accounts?limit={limit}"
                                          f"&after={cursor(start + len(chunk))}&access_token=[redacted-by-fake]")
        return body

    async def _node(self, req: Req) -> Any:
        only(req, {"fields", "access_token"})
        page = self.pages.get(req.path_params["node"])
        if page is None:
            raise graph_error(400, 100, f"Unsupported get request. Object with ID '{req.path_params['node'][:40]}' "
                                        "does not exist, cannot be loaded due to missing permissions, or does not "
                                        "support this operation.", subcode=33, kind="GraphMethodException")
        selector = req.arg("fields") or "id,name"
        graph_nodes().check_fields("Page", selector)
        grant = self.grant(req, "user_short", "user_long", "page")
        allowed = grant.subject == page.id if grant.kind == "page" else page.id in self.users[grant.subject].pages
        if not allowed:
            raise graph_error(400, 100, "Unsupported get request.", subcode=33, kind="GraphMethodException")
        return {"id": page.id} | self._page_fields(page, selector, grant.kind)  # Graph always answers a node's id
