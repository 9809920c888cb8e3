"""Mastodon limits: each instance sets its own (platforms.md §10, §11; checked 2026-12-05).

The catalogue entries (explain_preflight_rule, docs/rules.md) carry a stock instance's limits. A target's checks use
the limits of ITS account's instance, stored on the account by the connect flow (platforms/mastodon/limits.py,
`defaults["mastodonInstance"]`): each rule below is built from an InstanceLimits, once for the stock limits and once
per instance seen (cached), so violations and remediations quote the instance's own numbers.

Counting (text.py `mastodon_length`): grapheme clusters of the content warning (the request's `title`, sent as
`spoiler_text`) joined to the text, where each http(s) URL counts `charactersReservedPerUrl` and a mention
`@user@domain` counts as `@user` (Mastodon's StatusLengthValidator). A thread reply and the first comment carry no
content warning: they are counted alone. Alt text is counted in code points (Rails' length validation of
`description`), never fewer than graphemes.
"""

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable

from omnipost.domain import Platform
from omnipost.platforms.mastodon import VISIBILITY
from omnipost.platforms.mastodon.limits import STOCK, InstanceLimits, limits_of
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules, ResolvedTarget, Rule, Violation
from omnipost.preflight.text import CODEPOINTS, Unit, mastodon_length, mastodon_unit

SRC = c.Source(
    name="Mastodon",
    doc_url="https://docs.joinmastodon.org/methods/statuses/#create",
    source="Mastodon API (docs.joinmastodon.org; Mastodon API 4.7.0 OpenAPI, Instance schema): every limit is the "
    "instance's own, from GET /api/v2/instance configuration; stock instance: 500 characters (grapheme clusters of "
    "spoiler_text + text, a URL counts 23, @user@domain counts @user), 4 attachments (a video or audio alone), image "
    "16 MiB and 33,177,600 pixels, video 99 MiB and 8,294,400 pixels, description 1500 characters",
    checked="2026-12-05",
)

NATIVE_VISIBILITY = ("public", "unlisted", "private", "direct")
_LANGUAGE = re.compile(r"^[a-z]{2}$")
MATRIX = "pixels (width × height)"
_OWN_LIMITS = ("The limit shown is a stock instance's: every instance sets its own, and a target's check uses its "
               "account's instance limits (read when the account was connected).")


def _source(limits: InstanceLimits) -> c.Source:
    """The stock source, or one named after the instance (`Mastodon (mastodon.example)`) for its own limits."""
    host = limits.host
    return SRC if host is None else c.Source(f"Mastodon ({host})", SRC.doc_url, SRC.source, SRC.checked)


def _unit(limits: InstanceLimits) -> Unit:
    return mastodon_unit(limits.charactersReservedPerUrl)


# ---------------------------------------------------------------- rules built from an instance's limits


def _text_max(src: c.Source, limits: InstanceLimits) -> Rule:
    rule_id, limit, unit = "mastodon.text.max_characters", limits.maxCharacters, _unit(limits)

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        n = mastodon_length(t.text, t.title or "", limits.charactersReservedPerUrl)
        if n > limit:
            what = "The content warning (title) and text" if t.title else "Text"
            yield Violation(rule_id, f"{t.path}.text", f"{what} is {n} {unit.label}; {src.name} allows {limit}.",
                            f"{what} is {n} {unit.label}; {src.name} allows {limit}: cut {n - limit} or move the rest "
                            "into `thread`.", actual=n, limit=limit)

    return c.custom(
        src, rule_id, check=check,
        summary=f"On {src.name}, the content warning (title) and the text together are at most {limit} {unit.label}.",
        why=f"{src.name} refuses a longer status. It counts grapheme clusters of spoiler_text + text, each URL as "
            f"{limits.charactersReservedPerUrl} and a remote mention @user@domain as @user.",
        remediation=f"Shorten the text (or the title) to {limit} {unit.label} together, or move the rest into `thread`.",
        limit=limit, unit=unit.label,
        example_fail={"text": "a" * (limit + 1)}, example_pass={"text": "a" * limit},
    )


def _first_comment_max(src: c.Source, limits: InstanceLimits) -> Rule:
    return c.first_comment_max(src, "mastodon.first_comment.max_characters", limit=limits.maxCharacters, unit=_unit(limits))


def _thread_max(src: c.Source, limits: InstanceLimits) -> Rule:
    return c.thread_segments(src, "mastodon.thread.max_characters", limit=limits.maxCharacters, unit=_unit(limits))


def _count_max(src: c.Source, limits: InstanceLimits) -> Rule:
    n = limits.maxMediaAttachments
    return c.media_count(src, "mastodon.media.count_max", max_images=n, max_videos=1, max_total=n, solo_kinds=("video",),
                         summary=f"A status on {src.name} carries up to {n} attachments; a video must be the only one.")


def _mime_allowed(src: c.Source, limits: InstanceLimits) -> Rule:
    mimes = limits.supportedMimeTypes
    shown = [m for m in mimes if m.startswith(("image/", "video/"))]
    return c.mime_allowed(src, "mastodon.media.mime_allowed", mimes=mimes,
                          label=f"{src.name} accepts the media types its instance lists; images and video: {', '.join(shown)}.")


def _image_size(src: c.Source, limits: InstanceLimits) -> Rule:
    return c.size_max(src, "mastodon.media.image_size_max", kinds=("image", "gif"), max_bytes=limits.imageSizeLimit, what="image")


def _video_size(src: c.Source, limits: InstanceLimits) -> Rule:
    return c.size_max(src, "mastodon.media.video_size_max", kinds=("video",), max_bytes=limits.videoSizeLimit, what="video")


def _matrix_max(rule_id: str, kinds: tuple[str, ...], what: str, limit_of: Callable[[InstanceLimits], int]) -> Callable[[c.Source, InstanceLimits], Rule]:
    def build(src: c.Source, limits: InstanceLimits) -> Rule:
        limit = limit_of(limits)

        def check(t: ResolvedTarget) -> Iterable[Violation]:
            for m in t.media:
                f = m.facts
                if f is None or f.kind not in kinds or not f.width or not f.height:
                    continue
                pixels = f.width * f.height
                if pixels > limit:
                    scale = (limit / pixels) ** 0.5
                    yield Violation(rule_id, f"{t.path}.media[{m.index}]",
                                    f"media[{m.index}] is {f.width}×{f.height} ({pixels} pixels); {src.name} allows {limit} pixels per {what}.",
                                    f"Resize media[{m.index}] to at most {limit} pixels, e.g. {int(f.width * scale)}×{int(f.height * scale)}.",
                                    pixels, limit)

        return c.custom(
            src, rule_id, check=check,
            summary=f"Each {what} on {src.name} is at most {limit} {MATRIX}.",
            why=f"{src.name} refuses an upload whose width × height exceeds its {what} matrix limit.",
            remediation=f"Resize the {what} to at most {limit} pixels in all.",
            limit=limit, unit=MATRIX,
            example_fail={"text": "Photo", "media": [{"bytesBase64": f"<a {what} over {limit} pixels>"}]},
            example_pass={"text": "Photo", "media": [{"bytesBase64": f"<a 1080×1080 {what}>"}]},
        )

    return build


def _alt_text_max(src: c.Source, limits: InstanceLimits) -> Rule:
    return c.alt_text_max(src, "mastodon.media.alt_text_max_characters", limit=limits.descriptionLimit, unit=CODEPOINTS)


Builder = Callable[[c.Source, InstanceLimits], Rule]

_PER_INSTANCE: tuple[Builder, ...] = (
    _text_max,
    _first_comment_max,
    _thread_max,
    _count_max,
    _mime_allowed,
    _image_size,
    _video_size,
    _matrix_max("mastodon.media.image_matrix_max", ("image", "gif"), "image", lambda lim: lim.imageMatrixLimit),
    _matrix_max("mastodon.media.video_matrix_max", ("video",), "video", lambda lim: lim.videoMatrixLimit),
    _alt_text_max,
)


@functools.lru_cache(maxsize=256)
def _built(build: Builder, limits: InstanceLimits) -> Rule:
    return build(_source(limits), limits)


def _per_instance(build: Builder) -> Rule:
    """The stock rule for the catalogue, whose check applies the target's own instance limits."""
    stock = _built(build, STOCK)

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        rule = _built(build, limits_of(t.account))
        assert rule.check is not None
        return rule.check(t)

    return dataclasses.replace(stock, check=check, why=f"{stock.why} {_OWN_LIMITS}")


# ---------------------------------------------------------------- rules that do not depend on the instance


def _check_language(t: ResolvedTarget) -> Iterable[Violation]:
    value = t.options.get("language")
    if value is not None and not _LANGUAGE.match(str(value)):
        yield Violation("mastodon.language.iso639_1", f"{t.path}.mastodon.language",
                        f"Language '{value}' is not an ISO 639-1 code.",
                        "Give a two-letter lower-case ISO 639-1 code such as en, de or ja, or leave language out.",
                        value, "ISO 639-1")


def _measure(t: ResolvedTarget) -> tuple[Unit, int, int]:
    """validate_post's `measure`: the content warning and text as the target's instance counts them, and its limit."""
    limits = limits_of(t.account)
    return _unit(limits), mastodon_length(t.text, t.title or "", limits.charactersReservedPerUrl), limits.maxCharacters


MASTODON = PlatformRules(
    platform=Platform.MASTODON,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=mastodon_unit(STOCK.charactersReservedPerUrl),
    text_limit=STOCK.maxCharacters,
    supports_thread=True,
    supports_first_comment=True,
    supports_title=True,
    visibility=VISIBILITY,
    measure=_measure,
    rules=(
        c.text_required(SRC, "mastodon.text.non_empty", media_may_replace=True),
        *(_per_instance(b) for b in _PER_INSTANCE),
        c.first_comment_non_empty(SRC, "mastodon.first_comment.non_empty"),
        c.visibility_enum(SRC, "mastodon.visibility.enum", mapping=VISIBILITY, native=NATIVE_VISIBILITY, native_field="visibility"),
        c.custom(SRC, "mastodon.language.iso639_1", check=_check_language,
                 summary="The status language is a two-letter ISO 639-1 code.",
                 why="Mastodon takes the language of a status as an ISO 639 code and refuses an unknown one.",
                 remediation="Use a code such as en, de or ja, or leave language out (the instance guesses it).",
                 limit="ISO 639-1", unit="language code",
                 example_fail={"text": "Hello", "mastodon": {"language": "English"}},
                 example_pass={"text": "Hello", "mastodon": {"language": "en"}}),
    ),
)
