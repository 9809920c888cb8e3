"""Read-only resources: the rule catalogue (one fixed resource) and four templates, one rule, one post, one account, and
the calendar (a period's queued posts by day, issue 14).

A template is one entry in resources/templates/list however many rules, posts or accounts there are; the
client fills in the id (completion/complete offers the ids, see completions.py). A post or an account is read
within the caller's reach exactly as get_post / get_account read it (tools.common.reach_of): another profile's,
or a real one for an op_test_ key, is "resource not found", the same answer as an id that names nothing.
"""

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resources import FunctionResource
from pydantic import BaseModel

from omnipost.errors import AppError, NotFoundError, UnauthorizedError
from omnipost.preflight.render import rule_markdown
from omnipost.preflight.rules import CATALOGUE, find_rule

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime

CATALOGUE_URI = "omnipost://rules"
RULE_TEMPLATE = "omnipost://rules/{ruleId}"
POST_TEMPLATE = "omnipost://posts/{postId}{?profileId}"
ACCOUNT_TEMPLATE = "omnipost://accounts/{accountId}{?profileId}"
CALENDAR_TEMPLATE = "omnipost://calendar/{start}{?days,timezone,campaign,profileId}"


def catalogue_json() -> str:
    """Every rule as JSON (id, summary, limit, unit, stage, severity, uri)."""
    from omnipost.tools.drafting import summarize

    rules = [summarize(r).model_dump() for r in sorted(CATALOGUE.values(), key=lambda r: r.id)]
    return json.dumps({"count": len(rules), "rules": rules}, ensure_ascii=False)


def as_resource_error(exc: AppError, uri: str) -> ResourceError:
    """The protocol error for a read that failed on purpose.

    Unknown and out of reach are one answer, resource not found (an explicit profileId outside an API key's
    binding too: a URI names nothing the caller can see). Anything else keeps its message (never a traceback).
    """
    if isinstance(exc, NotFoundError | UnauthorizedError):
        return ResourceNotFoundError(f"Unknown resource: {uri}")
    return ResourceError(f"[{exc.code}] {exc}")


def register_resources(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register the catalogue and the rule, post, account and calendar templates (each rendered when read)."""
    from omnipost.auth import Reach
    from omnipost.outputs import account_out
    from omnipost.tools.common import reach_of

    async def read_within_reach(uri: str, profile_id: str | None, read: Callable[["Reach"], Awaitable[BaseModel]]) -> str:
        """What `read` answers within the caller's reach, as JSON; unknown or out of reach is resource not found."""
        try:
            return (await read(await reach_of(rt, profile_id))).model_dump_json(by_alias=True)
        except AppError as exc:
            raise as_resource_error(exc, uri) from None

    server.add_resource(
        FunctionResource(uri=CATALOGUE_URI, name="preflight-rules", title="Preflight rule catalogue",
                         description="Every rule omnipost checks, as JSON; each rule's page is omnipost://rules/{ruleId}.",
                         mime_type="application/json", fn=catalogue_json)
    )

    @server.resource(RULE_TEMPLATE, name="preflight-rule", title="Preflight rule", mime_type="text/markdown",
                     description="One preflight rule: what it checks, its limit and unit, and how to fix a violation.")
    def rule(ruleId: str) -> str:
        found = find_rule(ruleId)
        if found is None:
            raise ResourceNotFoundError(f"Unknown resource: omnipost://rules/{ruleId}")
        return rule_markdown(found)

    @server.resource(POST_TEMPLATE, name="post", title="Post", mime_type="application/json",
                     description=("One post (one target of a batch) as get_post returns it: status, upstream id and URL, "
                                  "error and every attempt. profileId: the profile it belongs to, if not the default."))
    async def post(postId: str, profileId: str | None = None) -> str:
        return await read_within_reach(f"omnipost://posts/{postId}", profileId,
                                       lambda reach: rt.publisher.get_post(reach, postId))

    @server.resource(ACCOUNT_TEMPLATE, name="account", title="Connected account", mime_type="application/json",
                     description=("One connected account as get_account returns it: platform, handle, health, token expiry "
                                  "and defaults (never its credentials). profileId: its profile, if not the default."))
    async def account(accountId: str, profileId: str | None = None) -> str:
        async def found(reach: "Reach") -> BaseModel:
            return account_out(await rt.accounts.get(reach, accountId))

        return await read_within_reach(f"omnipost://accounts/{accountId}", profileId, found)

    @server.resource(CALENDAR_TEMPLATE, name="calendar", title="Calendar of queued posts", mime_type="application/json",
                     description=("The queued posts of `days` days (default 7, at most 31) from the date `start` (e.g. "
                                  "2026-12-07), by day, in `timezone` (IANA, default UTC), optionally one campaign's: "
                                  "read it before planning more posts."))
    async def calendar(start: str, days: str = "7", timezone: str | None = None, campaign: str | None = None,
                       profileId: str | None = None) -> str:
        uri = f"omnipost://calendar/{start}"
        try:
            reach = await reach_of(rt, profileId)
            count = int(days) if days.isdigit() else 0
            return json.dumps(await rt.publisher.calendar(reach, start, count, timezone, campaign), ensure_ascii=False)
        except AppError as exc:
            raise as_resource_error(exc, uri) from None
