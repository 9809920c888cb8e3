"""LinkedIn limits, from the versioned REST Posts API docs (platforms.md §3, checked 2026-11-24)."""

import re
from collections.abc import Iterable

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules, ResolvedTarget, Violation
from omnipost.preflight.text import UTF16

SRC = c.Source(
    name="LinkedIn",
    doc_url="https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/posts-api",
    source="LinkedIn Posts API (rest/posts): commentary 3000 characters (counting unit unpublished: checked as UTF-16 "
    "code units, the stricter reading), visibility PUBLIC|CONNECTIONS|LOGGED_IN, multiImage 2–20, comments 1250",
    checked="2026-11-24",
)

TEXT_LIMIT = 3000
COMMENT_LIMIT = 1250
VISIBILITY = {"public": "PUBLIC", "connections_only": "CONNECTIONS", "logged_in": "LOGGED_IN"}
PERSON_URN = re.compile(r"^urn:li:person:[A-Za-z0-9_-]+$")
ORG_URN = re.compile(r"^urn:li:organization:[0-9]+$")


def _author(t: ResolvedTarget) -> str | None:
    return t.account.defaults.get("authorUrn") if t.account is not None else None


def _check_unresolved(t: ResolvedTarget) -> Iterable[Violation]:
    # Only a connected account has an author; a platform-only target is validated without one.
    if t.account is not None and not _author(t):
        yield Violation("linkedin.author.unresolved", f"{t.path}.accountId", "This LinkedIn account has no author URN.",
                        "Reconnect the LinkedIn account (connect_account) so omnipost can read its member id.")


def _check_urn_format(t: ResolvedTarget) -> Iterable[Violation]:
    urn = _author(t)
    if urn and not (PERSON_URN.match(urn) or ORG_URN.match(urn)):
        yield Violation("linkedin.author.urn_format", f"{t.path}.accountId", f"Author URN '{urn}' is not urn:li:person:{{id}}.",
                        "Reconnect the LinkedIn account; its stored author URN is malformed.", urn, "urn:li:person:{id}")


def _check_org(t: ResolvedTarget) -> Iterable[Violation]:
    urn = _author(t)
    if urn and ORG_URN.match(urn):
        yield Violation("linkedin.author.org_not_supported", f"{t.path}.accountId", "Posting as a LinkedIn organisation is not available yet.",
                        "Connect a LinkedIn member account and post as that person.", urn, "urn:li:person:{id}")


LINKEDIN = PlatformRules(
    platform=Platform.LINKEDIN,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=UTF16,
    text_limit=TEXT_LIMIT,
    supports_first_comment=True,
    supports_title=True,
    visibility=VISIBILITY,
    rules=(
        c.text_required(SRC, "linkedin.text.non_empty", media_may_replace=False),
        c.text_max(SRC, "linkedin.text.max_graphemes", limit=TEXT_LIMIT, unit=UTF16,
                   note=" (LinkedIn does not publish its unit; UTF-16 code units never undercount it)"),
        c.first_comment_non_empty(SRC, "linkedin.first_comment.non_empty"),
        c.first_comment_max(SRC, "linkedin.first_comment.max_graphemes", limit=COMMENT_LIMIT, unit=UTF16),
        c.media_count(SRC, "linkedin.media.count_max", max_images=20, max_videos=1, max_total=20, solo_kinds=("video",),
                      summary="A LinkedIn post carries 1 image, 2–20 images (multiImage), or 1 video."),
        c.mime_allowed(SRC, "linkedin.media.mime_allowed", mimes=("image/jpeg", "image/png", "image/gif", "video/mp4")),
        c.visibility_enum(SRC, "linkedin.visibility.enum", mapping=VISIBILITY, native=("PUBLIC", "CONNECTIONS", "LOGGED_IN"),
                          native_field="visibility"),
        c.custom(SRC, "linkedin.author.urn_format", check=_check_urn_format,
                 summary="The post author is a LinkedIn URN of the form urn:li:person:{id}.",
                 why="LinkedIn refuses a post whose author is not a member or organisation URN.",
                 remediation="Reconnect the LinkedIn account so omnipost stores a well-formed author URN.",
                 limit="urn:li:person:{id}",
                 example_fail={"accountId": "acc_linkedin_with_bad_urn", "text": "Hello"},
                 example_pass={"accountId": "acc_linkedin_member", "text": "Hello"}),
        c.custom(SRC, "linkedin.author.unresolved", check=_check_unresolved,
                 summary="The LinkedIn account has a usable author URN.",
                 why="Every LinkedIn post names its author; without the member id (OpenID sub) nothing can be posted.",
                 remediation="Reconnect the LinkedIn account.",
                 example_fail={"accountId": "acc_linkedin_without_urn", "text": "Hello"},
                 example_pass={"accountId": "acc_linkedin_member", "text": "Hello"}),
        c.custom(SRC, "linkedin.author.org_not_supported", check=_check_org,
                 summary="Posting as an organisation (urn:li:organization:…) is not available yet.",
                 why="Organisation posting needs the w_organization_social scope and page-admin checks omnipost does not do yet.",
                 remediation="Post as a member account.",
                 example_fail={"accountId": "acc_linkedin_company_page", "text": "Hello"},
                 example_pass={"accountId": "acc_linkedin_member", "text": "Hello"}),
    ),
)
