"""Per-platform request bodies. Adapters (publishing) send exactly what these build, so
`validate_post`'s preview is what would go upstream."""

from collections.abc import Callable
from typing import Any

from omnipost.domain import Platform
from omnipost.platforms import bluesky, facebook, instagram, linkedin, pinterest, threads, x
from omnipost.preflight.model import ResolvedTarget

PREVIEWS: dict[Platform, Callable[[ResolvedTarget], dict[str, Any]]] = {
    Platform.BLUESKY: bluesky.build_post,
    Platform.X: x.build_post,
    Platform.THREADS: threads.build_post,
    Platform.LINKEDIN: linkedin.build_post,
    Platform.INSTAGRAM: instagram.build_post,
    Platform.FACEBOOK: facebook.build_post,
    Platform.PINTEREST: pinterest.build_post,
}
