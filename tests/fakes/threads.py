"""A fake graph.threads.net, speaking platforms.md §6 (Threads publishes no machine-readable spec, so platforms.md
is the reference). Publishing routes (/{user}/threads, /threads_publish) join `routes()` later.

- GET /access_token (unversioned, as Meta documents it; the versioned path answers too)
  ?grant_type=th_exchange_token&client_secret&access_token=<short token> → {"access_token", "token_type", "expires_in"}.
- GET /v1.0/me?fields=id,username[,name,threads_profile_picture_url,threads_biography,is_verified] → the user.
Errors are Graph error objects (fakes/graph.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakes.graph import LONG_TTL, graph_error, only, token_refused
from fakes.specs import SpecViolation, parse_selector
from fakes.upstream import FakeUpstream, Handler, Req

THREADS_SHORT_TTL = 3600.0  # Threads: 1 h → 60 days (§6)
THREADS_VERSION = "v1.0"


@dataclass
class ThreadsUser:
    id: str
    username: str
    name: str = ""


THREADS_USER_FIELDS = {"id", "username", "name", "threads_profile_picture_url", "threads_biography", "is_verified"}


class FakeThreads(FakeUpstream):
    """graph.threads.net."""

    origin = "https://graph.threads.net"
    token_prefix = "THAA"

    def __init__(self, *args: Any, client_id: str = "9876543210", client_secret: str = "threads-app-secret",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_id, self.client_secret = client_id, client_secret
        self.users: dict[str, ThreadsUser] = {}

    def add_user(self, id: str, username: str, name: str = "") -> ThreadsUser:
        self.users[id] = user = ThreadsUser(id, username, name)
        return user

    def issue_short_token(self, user_id: str, ttl: float = THREADS_SHORT_TTL) -> str:
        return self.issue(user_id, "short", ttl)

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [*super().routes(),
                ("GET", "/access_token", "access_token", self._exchange),
                ("GET", f"/{THREADS_VERSION}/access_token", "access_token", self._exchange),
                ("GET", f"/{THREADS_VERSION}/me", "me", self._me)]

    def refused(self, req: Req, why: str) -> Answer:
        return token_refused(why)

    async def _exchange(self, req: Req) -> Any:
        only(req, {"grant_type", "client_secret", "access_token"}, {"grant_type", "client_secret", "access_token"})
        if req.arg("grant_type") != "th_exchange_token":
            raise SpecViolation("this fake's /access_token serves only grant_type=th_exchange_token so far")
        if req.arg("client_secret") != self.client_secret:
            raise graph_error(400, 1, "Error validating client secret.")
        grant = self.grant_of(req, req.arg("access_token") or "", "short")
        return {"access_token": self.issue(grant.subject, "long", LONG_TTL), "token_type": "bearer",
                "expires_in": int(LONG_TTL)}

    async def _me(self, req: Req) -> Any:
        only(req, {"fields", "access_token"})
        names = [n for n, _ in parse_selector(req.arg("fields") or "id")]
        if unknown := sorted(set(names) - THREADS_USER_FIELDS):
            raise SpecViolation(f"Threads user has no fields {unknown}")
        user = self.users[self.grant(req, "short", "long").subject]
        values = {"id": user.id, "username": user.username, "name": user.name}
        return {n: values[n] for n in names if n in values}
