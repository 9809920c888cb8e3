"""Rules that apply to every platform: media resolution, and options that a platform ignores."""

from collections.abc import Iterable

from omnipost.docpages import rule_doc_url
from omnipost.preflight import checks as c
from omnipost.preflight.model import ResolvedTarget, Rule, Violation

SRC = c.Source(
    name="omnipost",
    doc_url=rule_doc_url("{rule}"),
    source="omnipost's own request model and media store: no platform documents these rules",
    checked="2026-11-24",
)


def _check_unknown(t: ResolvedTarget) -> Iterable[Violation]:
    for m in t.media:
        if m.unknown:
            yield Violation("media.unknown", f"{t.path}.media[{m.index}].mediaId", f"mediaId '{m.media_id}' does not exist in this profile.",
                            "Upload the file with upload_media and use the mediaId it returns, or pass a url.", m.media_id, None)


def _check_not_probed(t: ResolvedTarget) -> Iterable[Violation]:
    for m in t.media:
        if m.source == "url":
            yield Violation("media.not_probed", f"{t.path}.media[{m.index}].url",
                            f"media[{m.index}] is a URL: its type, size and dimensions are checked when it is fetched at publish time.",
                            "Upload the file first (upload_media) to have every media rule checked now.", severity="warning")


def _check_public_url(t: ResolvedTarget) -> Iterable[Violation]:
    from omnipost.media.host import RULE, SETTINGS_HINT  # media.host imports httpx2; only this check needs it

    account = t.account
    if account is not None and account.adapter == "sandbox" and account.defaults.get("sandboxMode") != "container":
        return  # a sandbox account outside container mode takes the file's bytes
    for m in t.media:
        if m.source == "mediaId" and not m.unknown and not m.public_url:
            yield Violation(RULE, f"{t.path}.media[{m.index}].mediaId",
                            f"media[{m.index}] is a local file, and {t.platform.value} fetches media from a public URL; "
                            "this server has no media host to give it one.", SETTINGS_HINT, m.media_id, None)


def _ignored(rule_id: str, what: str) -> c.Check:
    def check(t: ResolvedTarget) -> Iterable[Violation]:
        from omnipost.preflight.rules import RULES  # the registry imports this module

        rules = RULES[t.platform]
        name = rules.platform.value
        if what == "thread" and t.thread and not rules.supports_thread:
            yield Violation(rule_id, f"{t.path}.thread", f"{name} has no native reply chain; thread is ignored for this target.",
                            "Remove thread for this platform, or put the whole text in one post.", severity="warning")
        if what == "firstComment" and t.first_comment is not None and not rules.supports_first_comment:
            yield Violation(rule_id, f"{t.path}.firstComment", f"{name} has no first comment; firstComment is ignored for this target.",
                            "Remove firstComment for this platform.", severity="warning")
        if what == "title" and t.title is not None and not rules.supports_title:
            yield Violation(rule_id, f"{t.path}.title", f"{name} posts have no title; title is ignored for this target.",
                            "Remove title for this platform, or fold it into the text.", severity="warning")
        if what == "options":
            for key in t.foreign_options:
                yield Violation(rule_id, f"{t.path}.{key}", f"Options '{key}' do not apply to a {name} target and are ignored.",
                                f"Remove {key} from this target.", severity="warning")
    return check


MEDIA_UNKNOWN = c.custom(
    SRC, "media.unknown", check=_check_unknown,
    summary="A mediaId must name media uploaded to the same profile.",
    why="omnipost reads size, type and dimensions from its media record; an id outside the profile is treated as missing.",
    remediation="Upload with upload_media and pass the returned mediaId.",
    example_fail={"text": "Photo", "media": [{"mediaId": "med_doesnotexist"}]},
    example_pass={"text": "Photo", "media": [{"url": "https://example.com/photo.jpg"}]},
)
MEDIA_UNREADABLE = c.info_rule(
    SRC, "media.unreadable", stage="shallow",
    summary="Inline media bytes must be a recognised image or video (JPEG, PNG, WebP, GIF, BMP, TIFF, MP4, MOV, WebM).",
    why="The type is sniffed from the bytes; anything else cannot be published anywhere.",
    remediation="Send the file itself (not a page or an archive), base64-encoded.",
    example_fail={"media": [{"bytesBase64": "aGVsbG8gd29ybGQ="}]},
    example_pass={"media": [{"bytesBase64": "<a PNG image>"}]},
)
BYTES_INLINE = c.inline_bytes_unsupported(SRC)
NOT_PROBED = c.custom(
    SRC, "media.not_probed", check=_check_not_probed, severity="warning",
    summary="URL media is checked for type, size and dimensions when it is fetched, not at validation.",
    why="Validation does not download files; an uploaded mediaId or inline bytes are checked at once.",
    remediation="Upload the file first to have every rule checked now.",
    example_fail={"media": [{"url": "https://example.com/photo.jpg"}]},
    example_pass={"media": [{"mediaId": "med_uploaded"}]},
)
PUBLIC_URL = c.custom(
    SRC, "media.public_url_unavailable", check=_check_public_url,
    summary="Platforms that fetch media from a public URL (Instagram, Threads) need a media host for uploaded files.",
    why="They download the file themselves: a local file needs an S3-compatible bucket (presigned URLs) or this "
        "server's HTTP transport at a public address (signed URLs); media uploaded from a public URL can be given "
        "that URL.",
    remediation="Set OMNIPOST_MEDIA_S3_BUCKET (with OMNIPOST_MEDIA_S3_ENDPOINT_URL, OMNIPOST_MEDIA_S3_REGION, "
                "OMNIPOST_MEDIA_S3_ACCESS_KEY_ID, OMNIPOST_MEDIA_S3_SECRET_ACCESS_KEY) or OMNIPOST_PUBLIC_BASE_URL, "
                "or give the media as a public https url.",
    example_fail={"platform": "instagram", "text": "Photo", "media": [{"mediaId": "med_uploaded_from_disk"}]},
    example_pass={"platform": "instagram", "text": "Photo", "media": [{"url": "https://example.com/photo.jpg"}]},
)
THREAD_IGNORED = c.custom(
    SRC, "thread.unsupported", check=_ignored("thread.unsupported", "thread"), severity="warning",
    summary="thread is published as a reply chain only on Bluesky, X and Threads; elsewhere it is ignored.",
    why="Other platforms have no native reply chain.", remediation="Remove thread for that target.",
    example_fail={"platform": "linkedin", "text": "Part 1", "thread": ["Part 2"]},
    example_pass={"platform": "bluesky", "text": "Part 1", "thread": ["Part 2"]},
)
FIRST_COMMENT_IGNORED = c.custom(
    SRC, "first_comment.unsupported", check=_ignored("first_comment.unsupported", "firstComment"), severity="warning",
    summary="firstComment is ignored where the platform has no comments (Pinterest).",
    why="Pins have no author comment API.", remediation="Remove firstComment for that target.",
    example_fail={"platform": "pinterest", "firstComment": "More"},
    example_pass={"platform": "bluesky", "text": "Hi", "firstComment": "More"},
)
TITLE_IGNORED = c.custom(
    SRC, "title.unsupported", check=_ignored("title.unsupported", "title"), severity="warning",
    summary="title is used by LinkedIn and Pinterest (and YouTube); elsewhere it is ignored.",
    why="Other platforms' posts have no title field.", remediation="Remove title, or fold it into the text.",
    example_fail={"platform": "x", "text": "Hi", "title": "Launch"},
    example_pass={"platform": "pinterest", "title": "Launch"},
)
OPTIONS_IGNORED = c.custom(
    SRC, "options.ignored", check=_ignored("options.ignored", "options"), severity="warning",
    summary="An option object for another platform is ignored.",
    why="Each target takes only its own platform's options.", remediation="Remove the other platform's options from the target.",
    example_fail={"platform": "x", "text": "Hi", "instagram": {"contentType": "reel"}},
    example_pass={"platform": "x", "text": "Hi", "twitter": {"replySettings": "following"}},
)
PROFILE_SCOPE = c.info_rule(
    SRC, "profile.scope_mismatch", stage="auth",
    summary="An API key bound to one profile cannot act on another profile's accounts, posts or media (unauthorized).",
    why="Profiles separate brands or clients; a key is scoped to one of them unless it is org-wide.",
    remediation="Use a key for that profile, an org-wide key, or leave profileId out.",
)

DUPLICATE = c.info_rule(
    SRC, "post.duplicate", stage="history",
    summary="The same text (whitespace normalised) to the same account within 24 hours is refused, naming the earlier post.",
    why="Platforms reject duplicates anyway, opaquely and after the fact; a retry without an idempotencyKey would post twice.",
    remediation="Change the text, reuse the original idempotencyKey to get the earlier result, or set skipDuplicateCheck: true.",
    limit=24, unit="hours",
    example_fail={"accountId": "acc_…", "text": "Same words as an hour ago"},
    example_pass={"accountId": "acc_…", "text": "Same words as an hour ago", "skipDuplicateCheck": True},
)
URL_FETCH = c.info_rule(
    SRC, "media.url_unreachable", stage="deep",
    summary="Media given as a URL is fetched (SSRF-guarded) before publishing; it must answer 2xx within the size cap.",
    why="The file is needed to check its type, size and dimensions and to send it; a broken URL fails that target only.",
    remediation="Use a public https URL that answers 200, or upload the file (upload_media) and pass its mediaId.",
)
URL_FORBIDDEN = c.info_rule(
    SRC, "media.url_forbidden", stage="deep",
    summary="Media URLs must be public http(s): private, loopback, link-local and metadata addresses are refused.",
    why="Fetching internal addresses on a caller's behalf is server-side request forgery.",
    remediation="Give a public https URL, or upload the file from a local path with upload_media.",
)

# Applied to every target.
ALL: tuple[Rule, ...] = (MEDIA_UNKNOWN, MEDIA_UNREADABLE, NOT_PROBED, THREAD_IGNORED, FIRST_COMMENT_IGNORED, TITLE_IGNORED, OPTIONS_IGNORED)
# Applied only to platforms that ingest media from a public URL (Instagram, Threads).
URL_ONLY: tuple[Rule, ...] = (BYTES_INLINE, PUBLIC_URL)
CATALOGUE: tuple[Rule, ...] = ALL + URL_ONLY + (PROFILE_SCOPE, DUPLICATE, URL_FETCH, URL_FORBIDDEN)
