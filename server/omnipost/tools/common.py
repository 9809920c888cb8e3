"""Helpers every tool module uses: the caller's profile, annotation presets."""

from typing import TYPE_CHECKING

from mcp.types import ToolAnnotations

from omnipost.auth import Caller, current_caller

if TYPE_CHECKING:
    from omnipost.runtime import Runtime
    from omnipost.store.models import Profile

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
LOCAL_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
LOCAL_DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
PUBLISH = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
UPSTREAM_DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)


async def profile_of(rt: "Runtime", requested: str | None) -> tuple["Profile", Caller]:
    """The profile this call acts on, within the caller's reach.

    Raises:
        NotFoundError, UnauthorizedError: see Accounts.resolve_profile.
    """
    await rt.wait_ready()
    caller = current_caller()
    return await rt.accounts.resolve_profile(requested, bound=caller.profile_id), caller
