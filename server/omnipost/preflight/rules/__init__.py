"""The rule registry: one line per platform, plus the generic rules."""

import difflib

from omnipost.domain import PLATFORM_ALIASES, RULE_PREFIX, Platform
from omnipost.preflight.model import PlatformRules, Rule
from omnipost.preflight.rules import generic
from omnipost.preflight.rules.bluesky import BLUESKY
from omnipost.preflight.rules.facebook import FACEBOOK
from omnipost.preflight.rules.instagram import INSTAGRAM
from omnipost.preflight.rules.linkedin import LINKEDIN
from omnipost.preflight.rules.mastodon import MASTODON
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
    Platform.MASTODON: MASTODON,
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


# Each name a platform is known by (domain.PLATFORM_ALIASES: x, twitter, ...) leads to its rules' id prefix (X's are
# `twitter.*`, a public contract).
_PREFIX: dict[str, str] = {name: RULE_PREFIX[p] for name, p in PLATFORM_ALIASES.items()}


def find_rule(rule_id: str) -> Rule | None:
    """The rule with this id; a platform's other name in the first segment finds it too (x.text.max_graphemes is
    twitter.text.max_graphemes)."""
    rule_id = rule_id.strip()
    if (rule := CATALOGUE.get(rule_id)) is not None:
        return rule
    head, dot, rest = rule_id.partition(".")
    prefix = _PREFIX.get(head.lower())
    return CATALOGUE.get(f"{prefix}.{rest}") if prefix and dot else None


def closest_rules(rule_id: str, n: int = 3) -> list[str]:
    """The catalogue's ids closest to an unknown one (after the platform's other names), best first."""
    head, dot, rest = rule_id.strip().partition(".")
    wanted = f"{_PREFIX.get(head.lower(), head)}{dot}{rest}"
    return difflib.get_close_matches(wanted, list(CATALOGUE), n=n, cutoff=0.6)


def largest_media_limit() -> int:
    """The largest per-file byte limit any platform's rule sets (Facebook's 4 GB video): the media store must accept
    at least this much, or that rule could never be reached."""
    return max(int(r.limit) for r in CATALOGUE.values() if r.unit == "bytes" and isinstance(r.limit, int))
