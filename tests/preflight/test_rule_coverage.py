"""Every shallow rule id has a failing case and a passing case; every platform has a clean case."""

from casekit import load_cases

from omnipost.preflight.rules import CATALOGUE, RULES

CASES = load_cases()
# Rules decided outside shallow preflight: they need the network (deep), a connect flow, an API
# key, or an upstream answer. Their checks land with the stage that can observe them.
NOT_SHALLOW = {rid for rid, rule in CATALOGUE.items() if rule.stage != "shallow"}


def test_every_shallow_rule_has_a_failing_case() -> None:
    failing = {rid for c in CASES for rid in c.expected} | {w for c in CASES for w in c.warnings}
    missing = sorted(set(CATALOGUE) - NOT_SHALLOW - failing)
    assert missing == [], f"rules without a failing case: {missing}"


def test_every_shallow_rule_has_a_passing_case() -> None:
    passing = {rid for c in CASES for rid in c.passes}
    missing = sorted(set(CATALOGUE) - NOT_SHALLOW - passing)
    assert missing == [], f"rules without a passing case: {missing}"


def test_every_platform_has_a_clean_case() -> None:
    # A clean case on a platform passes every rule that applies there.
    clean_platforms = {c.platform for c in CASES if not c.expected}
    for platform in RULES:
        assert platform.value in clean_platforms, f"{platform.value} has no clean case"


def test_non_shallow_rules_are_exactly_the_deep_connect_auth_and_upstream_ones() -> None:
    assert NOT_SHALLOW == {
        "instagram.media.reachable", "pinterest.image_url.reachable", "pinterest.destination_url.reachable",
        "pinterest.url.reachable", "facebook.pages.none", "profile.scope_mismatch", "meta.container.expired",
        "threads.container.expired", "threads.container.error", "post.duplicate", "media.url_unreachable",
        "media.url_forbidden", "bluesky.media.video_quota",
    }
