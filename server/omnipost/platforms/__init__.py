"""Platforms: everything that knows a platform.

- registry.py: one PlatformSpec per platform, the only registry (connect list, option models, adapters, versions,
  caps, manifest keywords are all read from it).
- <p>.py (x, linkedin, facebook, instagram, threads, pinterest): the platform's module. Today it holds the preview
  builder (the request body its adapter will send, so `validate_post`'s preview is what would go upstream) and,
  where there is one, its ErrorMap; its adapter, credentials and connect flow join it here when the platform is
  built. bluesky/ and sandbox.py are complete examples.
- base.py: the adapter contract (PlatformAdapter, AdapterDeps, PublishJob, Published; probe/find).
- pieces.py: the pieces ledger adapters publish through (exactly-once, processing).
- calls.py: the one boundary every upstream call goes through (statuses and transport errors -> PlatformError);
  errormap.py: the per-platform tables it reads. (omnipost/transports.py, by contrast, is our own server's HTTP.)
- models.py: per-platform option and credential models; common.py: helpers shared by previews.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omnipost.domain import Platform

if TYPE_CHECKING:
    from omnipost.preflight.model import ResolvedTarget

    PREVIEWS: dict[Platform, Callable[[ResolvedTarget], dict[str, Any]]]
    """The preview builder of each platform that has one (from the registry)."""


def __getattr__(name: str) -> Any:
    # PREVIEWS is read from the registry on first use, not when this package is imported: the preflight rules import
    # platform modules (mastodon/limits.py), and the registry imports the rules.
    if name == "PREVIEWS":
        from omnipost.platforms.registry import PLATFORMS

        previews = {Platform(p): spec.preview for p, spec in PLATFORMS.items() if spec.preview is not None}
        globals()["PREVIEWS"] = previews
        return previews
    raise AttributeError(name)
