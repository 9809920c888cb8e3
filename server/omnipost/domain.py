"""Pure value types shared by every layer: platforms and their canonical ids."""

from enum import StrEnum


class Platform(StrEnum):
    """A platform omnipost can validate for; the value is the canonical id."""

    BLUESKY = "bluesky"
    X = "x"
    THREADS = "threads"
    LINKEDIN = "linkedin"
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    PINTEREST = "pinterest"
    MASTODON = "mastodon"


# Rule ids and per-target option objects keep the historical "twitter" name for X
# (PRODUCT.md §2.1, preflight-rules.md); everywhere else the canonical id is "x".
RULE_PREFIX: dict[Platform, str] = {p: p.value for p in Platform} | {Platform.X: "twitter"}
OPTION_KEY: dict[Platform, str] = dict(RULE_PREFIX)

PLATFORM_ALIASES: dict[str, Platform] = {p.value: p for p in Platform} | {"twitter": Platform.X}

DISPLAY_NAME: dict[Platform, str] = {
    Platform.BLUESKY: "Bluesky",
    Platform.X: "X",
    Platform.THREADS: "Threads",
    Platform.LINKEDIN: "LinkedIn",
    Platform.INSTAGRAM: "Instagram",
    Platform.FACEBOOK: "Facebook",
    Platform.PINTEREST: "Pinterest",
    Platform.MASTODON: "Mastodon",
}
