"""Platforms: the registry of per-platform specs (registry.py), the preview builders (<p>.py: the request bodies
adapters send, so `validate_post`'s preview is what would go upstream), the adapters and the upstream HTTP
boundary (http.py)."""

from collections.abc import Callable
from typing import Any

from omnipost.domain import Platform
from omnipost.platforms.registry import PLATFORMS
from omnipost.preflight.model import ResolvedTarget

PREVIEWS: dict[Platform, Callable[[ResolvedTarget], dict[str, Any]]] = {
    Platform(p): spec.preview for p, spec in PLATFORMS.items() if spec.preview is not None
}
