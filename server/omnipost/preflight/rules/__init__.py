"""The rule registry: one line per platform, plus the generic rules."""

from omnipost.domain import Platform
from omnipost.preflight.model import PlatformRules, Rule
from omnipost.preflight.rules import generic
from omnipost.preflight.rules.bluesky import BLUESKY
from omnipost.preflight.rules.facebook import FACEBOOK
from omnipost.preflight.rules.instagram import INSTAGRAM
from omnipost.preflight.rules.linkedin import LINKEDIN
from omnipost.preflight.rules.pinterest import PINTEREST
from omnipost.preflight.rules.threads import THREADS
from omnipost.preflight.rules.x import X

RULES: dict[Platform, PlatformRules] = {
    Platform.BLUESKY: BLUESKY,
    Platform.X: X,
    Platform.THREADS: THREADS,
    Platform.LINKEDIN: LINKEDIN,
    Platform.INSTAGRAM: INSTAGRAM,
    Platform.FACEBOOK: FACEBOOK,
    Platform.PINTEREST: PINTEREST,
}

# Platforms whose publishing API pulls media from a public URL (platforms.md §0.4).
URL_ONLY_MEDIA: frozenset[Platform] = frozenset({Platform.INSTAGRAM, Platform.THREADS})


def _catalogue() -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for rule in (*generic.CATALOGUE, *(r for p in RULES.values() for r in p.rules)):
        if rule.id in out:
            raise ValueError(f"duplicate rule id {rule.id}")
        out[rule.id] = rule
    return out


CATALOGUE: dict[str, Rule] = _catalogue()


def largest_media_limit() -> int:
    """The largest per-file byte limit any platform's rule sets (Facebook's 4 GB video): the media store must accept
    at least this much, or that rule could never be reached."""
    return max(int(r.limit) for r in CATALOGUE.values() if r.unit == "bytes" and isinstance(r.limit, int))
