"""completion/complete: the values a client may offer for a resource template's variable or a prompt's argument.

- omnipost://rules/{ruleId}: rule ids of the catalogue.
- omnipost://accounts/{accountId}, omnipost://posts/{postId}: ids within the caller's reach (the profile named by
  an already given profileId, else the default one; an op_test_ key sees only sandbox ones), exactly what reading
  the resource would find. An account also matches by its handle; posts are the newest 200.
- profileId (both templates): the ids and names of the profiles the caller can reach.
- Prompt arguments: what the argument's `complete` key in its prompts/*.md front matter names: platform,
  thread_platform (those with native threads), platform_list (comma-separated; the last item is completed) or
  timezone (IANA names; "berl" finds Europe/Berlin).

Matching is case-insensitive, prefix first, then anywhere in the value. At most 100 values go back (the spec's
cap), with the total and hasMore when there are more.
"""

import functools
import zoneinfo
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mcp.types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from omnipost.errors import AppError
from omnipost.preflight.rules import CATALOGUE

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime

MAX_VALUES = 100  # MCP: "Must not exceed 100 items"
RECENT_POSTS = 200  # the newest posts completion looks at (list_posts' largest page)


def ranked(candidates: Iterable[str], typed: str) -> list[str]:
    """The candidates matching `typed` (case-insensitive): those starting with it, then those containing it."""
    needle = typed.casefold()
    unique = list(dict.fromkeys(candidates))
    first = [c for c in unique if c.casefold().startswith(needle)]
    rest = [c for c in unique if needle in c.casefold() and not c.casefold().startswith(needle)]
    return first + rest


def capped(values: list[str]) -> Completion:
    """At most MAX_VALUES values, saying how many there are in all."""
    return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)


def platforms(*, threads_only: bool = False) -> list[str]:
    """The real platforms of the registry (not the sandbox), in registry order."""
    from omnipost.platforms.registry import PLATFORMS

    return [p for p, spec in PLATFORMS.items() if spec.real and (spec.capabilities.threads or not threads_only)]


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA zone name this system knows, sorted (the legacy upper-case aliases left out)."""
    return tuple(sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC"))


def zone_matches(typed: str) -> list[str]:
    """Zones whose name, or whose city part, starts with `typed`; then those containing it."""
    needle = typed.casefold().replace(" ", "_")
    zones = time_zones()
    by_name = [z for z in zones if z.casefold().startswith(needle)]
    by_city = [z for z in zones if z.rsplit("/", 1)[-1].casefold().startswith(needle)]
    return ranked([*by_name, *by_city, *zones], needle) if needle else list(zones)


def platform_list(typed: str) -> list[str]:
    """"bluesky, x, li" -> ["bluesky, x, linkedin"]: the last comma-separated item completed, the others kept."""
    head, sep, last = typed.rpartition(",")
    given = {p.strip().casefold() for p in head.split(",") if p.strip()}
    prefix = head + sep + (" " if sep else "")
    return [prefix + p for p in ranked(platforms(), last.strip()) if p not in given]


@functools.cache
def prompt_completions() -> dict[str, dict[str, str]]:
    """prompt name -> argument name -> completion kind, from the prompt files."""
    from omnipost.prompts import load_prompts

    return {p.name: dict(p.completions) for p in load_prompts()}


def prompt_values(prompt: str, argument: str, typed: str) -> list[str]:
    kind = prompt_completions().get(prompt, {}).get(argument)
    if kind == "platform":
        return ranked(platforms(), typed)
    if kind == "thread_platform":
        return ranked(platforms(threads_only=True), typed)
    if kind == "platform_list":
        return platform_list(typed)
    if kind == "timezone":
        return zone_matches(typed)
    return []


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register the completion/complete handler."""
    from omnipost.auth import current_caller
    from omnipost.resources import ACCOUNT_TEMPLATE, POST_TEMPLATE, RULE_TEMPLATE
    from omnipost.tools.common import reach_of

    async def profiles(typed: str) -> list[str]:
        await rt.wait_ready()
        reachable = await rt.accounts.list_profiles(bound=current_caller().profile_id)
        return ranked([v for p in reachable for v in (p.id, p.name)], typed)

    async def accounts(profile: str | None, typed: str) -> list[str]:
        reach = await reach_of(rt, profile)
        found = await rt.accounts.list(reach)
        by_id = ranked([a.id for a in found], typed)
        needle = typed.casefold().lstrip("@")
        by_handle = [a.id for a in found if needle and needle in a.handle.casefold().lstrip("@")]
        return list(dict.fromkeys(by_id + by_handle))

    async def posts(profile: str | None, typed: str) -> list[str]:
        reach = await reach_of(rt, profile)
        page = await rt.publisher.list_posts(reach, limit=RECENT_POSTS)
        return ranked([p.postId for p in page.posts], typed)

    async def template_values(uri: str, argument: str, typed: str, given: dict[str, str]) -> list[str]:
        if uri == RULE_TEMPLATE and argument == "ruleId":
            return ranked(sorted(CATALOGUE), typed)
        if uri not in (ACCOUNT_TEMPLATE, POST_TEMPLATE):
            return []
        if argument == "profileId":
            return await profiles(typed)
        try:
            if uri == ACCOUNT_TEMPLATE and argument == "accountId":
                return await accounts(given.get("profileId") or None, typed)
            if uri == POST_TEMPLATE and argument == "postId":
                return await posts(given.get("profileId") or None, typed)
        except AppError:  # a profileId the caller cannot reach: nothing to offer (reading would be not found too)
            return []
        return []

    @server.completion()
    async def complete(ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument,
                       context: CompletionContext | None) -> Completion:
        given: dict[str, Any] = dict((context.arguments if context is not None else None) or {})
        if isinstance(ref, ResourceTemplateReference):
            values = await template_values(ref.uri, argument.name, argument.value, given)
        else:
            values = prompt_values(ref.name, argument.name, argument.value)
        return capped(values)
