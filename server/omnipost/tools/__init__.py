"""register_tools: the explicit list of every tool the server has."""

from typing import TYPE_CHECKING

from omnipost.tools import drafting

if TYPE_CHECKING:
    from omnipost.app import Deps, OmnipostServer


def register_tools(server: "OmnipostServer", deps: "Deps") -> None:
    """Register every tool, with its annotations."""
    drafting.register(server, deps)
