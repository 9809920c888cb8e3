"""Helpers every tool module uses: the caller's profile and reach, annotation presets."""

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated

from mcp.types import ToolAnnotations
from pydantic import AfterValidator, Field

from omnipost.auth import Caller, Reach, current_caller

if TYPE_CHECKING:
    from omnipost.runtime import Runtime
    from omnipost.store.models import Profile

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
LOCAL_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
LOCAL_DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
PUBLISH = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
UPSTREAM_DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)


# The arguments most tools take, described once (every tool's schema carries the description: keep it short). profileId
# has none: 26 tools take it, and the server's instructions say once what it is (app.INSTRUCTIONS; the context budget).
ProfileArg = Annotated[str | None, Field()]
KeyArg = Annotated[str | None, Field(min_length=1, max_length=128,
                                     description="Same key + arguments in 24 h: the first answer, done once.")]


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # before year 1 or after 9999 once in UTC: the nearest instant there is
        return (datetime.max if value.year == 9999 else datetime.min).replace(tzinfo=timezone.utc)


# An ISO-8601 instant argument (a filter bound): a time without an offset is read as UTC.
Instant = Annotated[datetime, AfterValidator(_as_utc)]


async def profile_of(rt: "Runtime", requested: str | None) -> tuple["Profile", Caller]:
    """The profile this call acts on, within the caller's reach (Services.profile), with the caller.

    Raises:
        NotFoundError, UnauthorizedError: see Accounts.resolve_profile.
    """
    caller = current_caller()
    return await rt.services.profile(caller, requested), caller


async def reach_of(rt: "Runtime", requested: str | None) -> Reach:
    """What this call may touch (Services.reach): the profile it acts on and, for an op_test_ key, only the test side
    of it. For the MCP-only readers (resources, completions, the confirmation); tools call the services.

    Raises:
        NotFoundError, UnauthorizedError: see Accounts.resolve_profile.
    """
    return await rt.services.reach(current_caller(), requested)
