"""register_tools: the explicit list of every tool the server has."""

from typing import TYPE_CHECKING

from omnipost.tools import accounts, drafting, media, publishing, scheduling, versions, webhooks

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime


def register_tools(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register every tool, with its annotations."""
    drafting.register(server, rt)
    accounts.register(server, rt)
    publishing.register(server, rt)
    media.register(server, rt)
    scheduling.register(server, rt)
    webhooks.register(server, rt)
    versions.register(server, rt)
