"""Generic, pure checks driven by limit data. Each constructor returns a catalogue `Rule`
whose summary and remediation are rendered from the same numbers the check uses, so prose
and behaviour cannot drift apart (ARCHITECTURE §3)."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from omnipost.preflight.model import Check, MediaRef, ResolvedTarget, Rule, Severity, Stage, Violation

__all__ = ["Check", "MB", "Source"]
from omnipost.preflight.text import Unit

MB = 1_000_000
MediaKind = Literal["image", "gif", "video"]


@dataclass(frozen=True)
class Source:
    """Where a platform's limits come from and when they were last checked."""

    name: str  # e.g. "Bluesky"
    doc_url: str
    source: str
    checked: str


def human_bytes(n: int) -> str:
    """1500000 -> '1.5 MB' (decimal units, as the platforms document them)."""
    if n >= 1_000_000_000:
        return f"{n / 1_000_000_000:g} GB"
    if n >= MB:
        return f"{n / MB:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"


def _rule(src: Source, rule_id: str, **kw: Any) -> Rule:
    # A source with no page per rule (omnipost's own rules) gives "{rule}" in its doc_url: the rule's anchor.
    doc_url = kw.pop("doc_url", src.doc_url.replace("{rule}", rule_id))
    return Rule(id=rule_id, doc_url=doc_url, source=kw.pop("source", src.source), checked=src.checked, **kw)


def _probed(target: ResolvedTarget) -> Iterator[MediaRef]:
    return (m for m in target.media if m.facts is not None)


def _kind(m: MediaRef) -> MediaKind | None:
    return m.facts.kind if m.facts is not None else None


# ---------------------------------------------------------------- text


def text_required(src: Source, rule_id: str, *, media_may_replace: bool, example_pass: dict[str, Any] | None = None) -> Rule:
    """Text must not be empty or whitespace-only (unless media is attached, where allowed)."""
    cond = " when no media is attached" if media_may_replace else ""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        if t.text.strip() or (media_may_replace and t.media):
            return
        yield Violation(
            rule_id,
            f"{t.path}.text",
            f"{src.name} needs non-empty text{cond}; the text is empty or whitespace only.",
            f"Write the post text for {src.name}" + (" or attach media." if media_may_replace else "."),
            actual=0,
            limit=1,
        )

    return _rule(
        src,
        rule_id,
        summary=f"{src.name} posts need non-empty text{cond}.",
        why=f"{src.name} refuses a post with no text{cond}; whitespace alone counts as empty.",
        remediation=f"Provide text for {src.name}" + (", or attach media." if media_may_replace else "."),
        limit=1,
        unit="non-whitespace characters",
        example_fail={"text": "   "},
        example_pass=example_pass or {"text": "Hello from omnipost"},
        check=check,
    )


def _too_long(name: str, what: str, n: int, limit: int, unit: Unit, tail: str) -> tuple[str, str]:
    over = n - limit
    message = f"{what} is {n} {unit.label}; {name} allows {limit}."
    remediation = f"{what} is {n} {unit.label}; {name} allows {limit}: cut {over}{tail}."
    return message, remediation


def text_max(
    src: Source,
    rule_id: str,
    *,
    limit: int,
    unit: Unit,
    byte_limit: int | None = None,
    thread_ok: bool = False,
    note: str = "",
) -> Rule:
    """The post text fits the platform's limit as the platform counts it."""
    tail = " or move the rest into `thread`" if thread_ok else ""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        n = unit.count(t.text)
        if n > limit:
            msg, rem = _too_long(src.name, "Text", n, limit, unit, tail)
            yield Violation(rule_id, f"{t.path}.text", msg, rem, actual=n, limit=limit)
        elif byte_limit is not None:
            b = len(t.text.encode("utf-8"))
            if b > byte_limit:
                yield Violation(
                    rule_id,
                    f"{t.path}.text",
                    f"Text is {b} UTF-8 bytes; {src.name} allows {byte_limit}.",
                    f"Text is {b} UTF-8 bytes; {src.name} allows {byte_limit}: cut {b - byte_limit} bytes{tail}.",
                    actual=b,
                    limit=byte_limit,
                )

    also = f" and at most {byte_limit} UTF-8 bytes" if byte_limit else ""
    return _rule(
        src,
        rule_id,
        summary=f"{src.name} text is at most {limit} {unit.label}{also}.",
        why=f"{src.name} rejects longer posts. It counts {unit.label}{note}.",
        remediation=f"Shorten the text to {limit} {unit.label}{tail}.",
        limit=limit,
        unit=unit.label,
        example_fail={"text": "a" * (limit + 1)},
        example_pass={"text": "a" * limit},
        check=check,
    )


def first_comment_non_empty(src: Source, rule_id: str) -> Rule:
    """A firstComment that is set must have text."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        if t.first_comment is not None and not t.first_comment.strip():
            yield Violation(
                rule_id,
                f"{t.path}.firstComment",
                "firstComment is set but empty.",
                "Give firstComment some text, or leave it out.",
                actual=0,
                limit=1,
            )

    return _rule(
        src,
        rule_id,
        summary="A firstComment, when set, must have non-empty text.",
        why=f"The first comment is posted as a reply; {src.name} refuses an empty reply.",
        remediation="Write the comment text, or remove firstComment.",
        limit=1,
        unit="non-whitespace characters",
        example_fail={"text": "Launch day", "firstComment": " "},
        example_pass={"text": "Launch day", "firstComment": "Details: https://example.com"},
        check=check,
    )


def _over_bytes(rule_id: str, path: str, what: str, name: str, text: str, byte_limit: int | None, tail: str) -> Violation | None:
    """The violation for `text` over a platform's UTF-8 byte cap (Bluesky records: 3000 bytes), if it is."""
    if byte_limit is None:
        return None
    b = len(text.encode("utf-8", "surrogatepass"))
    if b <= byte_limit:
        return None
    return Violation(rule_id, path, f"{what} is {b} UTF-8 bytes; {name} allows {byte_limit}.",
                     f"{what} is {b} UTF-8 bytes; {name} allows {byte_limit}: cut {b - byte_limit} bytes{tail}.",
                     actual=b, limit=byte_limit)


def first_comment_max(src: Source, rule_id: str, *, limit: int, unit: Unit, byte_limit: int | None = None) -> Rule:
    """The first comment fits the platform's reply limit (and its byte cap, where a reply record has one)."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        if t.first_comment is None:
            return
        n = unit.count(t.first_comment)
        if n > limit:
            msg, rem = _too_long(src.name, "firstComment", n, limit, unit, "")
            yield Violation(rule_id, f"{t.path}.firstComment", msg, rem, actual=n, limit=limit)
        elif (v := _over_bytes(rule_id, f"{t.path}.firstComment", "firstComment", src.name, t.first_comment, byte_limit, "")) is not None:
            yield v

    also = f" and at most {byte_limit} UTF-8 bytes" if byte_limit else ""
    return _rule(
        src,
        rule_id,
        summary=f"The first comment is at most {limit} {unit.label}{also}.",
        why=f"The first comment is an ordinary {src.name} reply, held to the same length limit.",
        remediation=f"Shorten firstComment to {limit} {unit.label}.",
        limit=limit,
        unit=unit.label,
        example_fail={"text": "Launch day", "firstComment": "a" * (limit + 1)},
        example_pass={"text": "Launch day", "firstComment": "More soon"},
        check=check,
    )


def thread_segments(src: Source, rule_id: str, *, limit: int, unit: Unit, byte_limit: int | None = None) -> Rule:
    """Every thread continuation segment is non-empty and fits the post limit (and its byte cap, if any)."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        for i, seg in enumerate(t.thread):
            n = unit.count(seg)
            if not seg.strip():
                yield Violation(
                    rule_id,
                    f"{t.path}.thread[{i}]",
                    f"Thread segment {i} is empty.",
                    f"Remove thread[{i}] or give it text.",
                    actual=0,
                    limit=limit,
                )
            elif n > limit:
                msg, rem = _too_long(src.name, f"Thread segment {i}", n, limit, unit, " or split it into two segments")
                yield Violation(rule_id, f"{t.path}.thread[{i}]", msg, rem, actual=n, limit=limit)
            elif (v := _over_bytes(rule_id, f"{t.path}.thread[{i}]", f"Thread segment {i}", src.name, seg, byte_limit,
                                   " or split it into two segments")) is not None:
                yield v

    also = f" and at most {byte_limit} UTF-8 bytes" if byte_limit else ""
    return _rule(
        src,
        rule_id,
        summary=f"Each thread segment is non-empty and at most {limit} {unit.label}{also}.",
        why=f"Each segment becomes its own {src.name} post in the reply chain.",
        remediation=f"Keep each thread segment between 1 and {limit} {unit.label}.",
        limit=limit,
        unit=unit.label,
        example_fail={"text": "Part 1", "thread": ["a" * (limit + 1)]},
        example_pass={"text": "Part 1", "thread": ["Part 2"]},
        check=check,
    )


# ---------------------------------------------------------------- media


def media_required(src: Source, rule_id: str, *, what: str = "at least one image or video") -> Rule:
    """The platform has no text-only posts."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        if not t.media:
            yield Violation(
                rule_id,
                f"{t.path}.media",
                f"{src.name} needs {what}; none is attached.",
                f"Attach {what} for {src.name} (media: [{{mediaId}}] or [{{url}}]).",
                actual=0,
                limit=1,
            )

    return _rule(
        src,
        rule_id,
        summary=f"{src.name} posts need {what}.",
        why=f"{src.name} has no text-only post type.",
        remediation=f"Attach {what}.",
        limit=1,
        unit="media items",
        example_fail={"text": "Caption only"},
        example_pass={"text": "Caption", "media": [{"url": "https://example.com/photo.jpg"}]},
        check=check,
    )


def media_count(
    src: Source,
    rule_id: str,
    *,
    max_images: int,
    max_videos: int = 1,
    solo_kinds: tuple[MediaKind, ...] = (),
    max_total: int | None = None,
    summary: str,
) -> Rule:
    """How many attachments (of each kind) one post may carry."""
    total_cap = max_total if max_total is not None else max_images

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        n = len(t.media)
        kinds = [_kind(m) for m in t.media]
        images, videos = kinds.count("image"), kinds.count("video")
        path = f"{t.path}.media"
        if n > total_cap:
            yield Violation(rule_id, path, f"{n} media items attached; {src.name} allows {total_cap}.",
                            f"{n} media items attached; {src.name} allows {total_cap}: remove {n - total_cap}.", n, total_cap)
        elif images > max_images:
            yield Violation(rule_id, path, f"{images} images attached; {src.name} allows {max_images}.",
                            f"{images} images attached; {src.name} allows {max_images}: remove {images - max_images}.", images, max_images)
        elif videos > max_videos:
            yield Violation(rule_id, path, f"{videos} videos attached; {src.name} allows {max_videos}.",
                            f"{videos} videos attached; {src.name} allows {max_videos}: keep one video per post.", videos, max_videos)
        elif n > 1 and any(k in solo_kinds for k in kinds):
            solo = "an animated GIF" if "gif" in kinds and "gif" in solo_kinds else "a video"
            yield Violation(rule_id, path, f"On {src.name}, {solo} must be the only attachment; {n} are attached.",
                            f"Post {solo} alone on {src.name}: remove the other {n - 1} item(s).", n, 1)

    return _rule(
        src,
        rule_id,
        summary=summary,
        why=f"{src.name} refuses posts with more attachments than it supports.",
        remediation="Remove attachments until the post fits, or spread them over several posts.",
        limit=total_cap,
        unit="media items",
        example_fail={"text": "Gallery", "media": [{"url": f"https://example.com/{i}.jpg"} for i in range(total_cap + 1)]},
        example_pass={"text": "Gallery", "media": [{"url": "https://example.com/1.jpg"}]},
        check=check,
    )


def media_exclusive(src: Source, rule_id: str) -> Rule:
    """Images (or GIFs) and video are not mixed in one post."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        kinds = {_kind(m) for m in t.media}
        if "video" in kinds and ({"image", "gif"} & kinds):
            yield Violation(rule_id, f"{t.path}.media", f"{src.name} posts carry images or a video, not both.",
                            "Remove the video or the images from this post (post the other separately).", sorted(k for k in kinds if k), None)

    return _rule(
        src,
        rule_id,
        summary=f"A {src.name} post carries images or a video, not both.",
        why=f"{src.name} has one media embed per post: images or video.",
        remediation="Keep either the images or the video.",
        example_fail={"text": "Mixed", "media": [{"mediaId": "med_image"}, {"mediaId": "med_video"}]},
        example_pass={"text": "Images", "media": [{"mediaId": "med_image"}]},
        check=check,
    )


def mime_allowed(src: Source, rule_id: str, *, mimes: tuple[str, ...], kinds: tuple[MediaKind, ...] = ("image", "gif", "video"), label: str | None = None) -> Rule:
    """Each attachment's sniffed MIME type is one the platform accepts."""
    allowed = ", ".join(mimes)

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        for m in _probed(t):
            assert m.facts is not None
            if m.facts.kind in kinds and m.facts.mime not in mimes:
                yield Violation(rule_id, f"{t.path}.media[{m.index}]",
                                f"media[{m.index}] is {m.facts.mime}; {src.name} accepts {allowed}.",
                                f"Convert media[{m.index}] from {m.facts.mime} to one of {allowed}.", m.facts.mime, list(mimes))

    return _rule(
        src,
        rule_id,
        summary=label or f"{src.name} accepts {allowed}.",
        why="The type is sniffed from the file's bytes, never taken from its name.",
        remediation=f"Convert the file to one of {allowed}.",
        limit=list(mimes),
        unit="MIME types",
        example_fail={"text": "Photo", "media": [{"bytesBase64": "<a TIFF image>"}]},
        example_pass={"text": "Photo", "media": [{"bytesBase64": f"<a {mimes[0]} file>"}]},
        check=check,
    )


def size_max(src: Source, rule_id: str, *, kinds: tuple[MediaKind, ...], max_bytes: int, what: str) -> Rule:
    """Each attachment of the given kinds is at most `max_bytes`."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        for m in _probed(t):
            assert m.facts is not None
            if m.facts.kind in kinds and m.facts.size > max_bytes:
                yield Violation(rule_id, f"{t.path}.media[{m.index}]",
                                f"media[{m.index}] is {human_bytes(m.facts.size)} ({m.facts.size} bytes); {src.name} allows {human_bytes(max_bytes)} per {what}.",
                                f"Compress or resize media[{m.index}] by at least {human_bytes(m.facts.size - max_bytes)} to fit {src.name}'s {human_bytes(max_bytes)} {what} limit.",
                                m.facts.size, max_bytes)

    return _rule(
        src,
        rule_id,
        summary=f"Each {what} on {src.name} is at most {human_bytes(max_bytes)} ({max_bytes} bytes).",
        why=f"{src.name} refuses larger uploads.",
        remediation=f"Compress or resize the {what} below {human_bytes(max_bytes)}.",
        limit=max_bytes,
        unit="bytes",
        example_fail={"text": "Photo", "media": [{"bytesBase64": f"<a {human_bytes(max_bytes + 1)} {what}>"}]},
        example_pass={"text": "Photo", "media": [{"bytesBase64": f"<a 200 kB {what}>"}]},
        check=check,
    )


def alt_text_max(src: Source, rule_id: str, *, limit: int, unit: Unit) -> Rule:
    """Alt text of each attachment fits the platform's limit."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        for m in t.media:
            if m.alt_text is None:
                continue
            n = unit.count(m.alt_text)
            if n > limit:
                msg, rem = _too_long(src.name, f"media[{m.index}].altText", n, limit, unit, "")
                yield Violation(rule_id, f"{t.path}.media[{m.index}].altText", msg, rem, n, limit)

    return _rule(
        src,
        rule_id,
        summary=f"Alt text on {src.name} is at most {limit} {unit.label}.",
        why=f"{src.name} truncates or refuses longer descriptions.",
        remediation=f"Shorten the alt text to {limit} {unit.label}.",
        limit=limit,
        unit=unit.label,
        example_fail={"text": "Photo", "media": [{"url": "https://example.com/a.jpg", "altText": "a" * (limit + 1)}]},
        example_pass={"text": "Photo", "media": [{"url": "https://example.com/a.jpg", "altText": "A red kite over a hill"}]},
        check=check,
    )


def aspect_ratio(src: Source, rule_id: str, *, min_ratio: tuple[int, int], max_ratio: tuple[int, int], applies: str = "feed images") -> Rule:
    """Image width:height lies inside the platform's accepted range (measured, not declared)."""
    lo = min_ratio[0] / min_ratio[1]
    hi = max_ratio[0] / max_ratio[1]
    lo_s, hi_s = f"{min_ratio[0]}:{min_ratio[1]}", f"{max_ratio[0]}:{max_ratio[1]}"

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        if t.options.get("contentType") not in (None, "feed"):
            return
        for m in _probed(t):
            f = m.facts
            assert f is not None
            if f.kind != "image" or not f.width or not f.height:
                continue
            r = f.width / f.height
            if r < lo - 1e-9 or r > hi + 1e-9:
                yield Violation(rule_id, f"{t.path}.media[{m.index}]",
                                f"media[{m.index}] is {f.width}×{f.height} (ratio {r:.3f}); {src.name} {applies} must be between {lo_s} ({lo:.3f}) and {hi_s} ({hi:.3f}).",
                                f"Crop media[{m.index}] to a ratio between {lo_s} and {hi_s} (e.g. {f.width}×{min(f.height, int(f.width / lo))} or {min(f.width, int(f.height * hi))}×{f.height}).",
                                round(r, 4), [round(lo, 4), round(hi, 4)])

    return _rule(
        src,
        rule_id,
        summary=f"{src.name} {applies} have an aspect ratio between {lo_s} and {hi_s}.",
        why=f"{src.name} refuses {applies} outside that range; the ratio is measured from the image's pixels.",
        remediation=f"Crop the image to a ratio between {lo_s} and {hi_s}.",
        limit=[lo_s, hi_s],
        unit="width:height",
        example_fail={"text": "Panorama", "media": [{"bytesBase64": "<a 3000×1000 JPEG>"}]},
        example_pass={"text": "Square", "media": [{"bytesBase64": "<a 1080×1080 JPEG>"}]},
        check=check,
    )


def inline_bytes_unsupported(src: Source, rule_id: str = "media.bytes_inline_unsupported") -> Rule:
    """Platforms that pull media from a public URL cannot take inline base64."""

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        for m in t.media:
            if m.source == "bytesBase64":
                yield Violation(rule_id, f"{t.path}.media[{m.index}].bytesBase64",
                                f"{src.name} fetches media from a public URL; inline bytes cannot be sent.",
                                f"Upload media[{m.index}] first (upload_media) and pass its mediaId, or give a public https url.", "bytesBase64", "url")

    return _rule(
        src,
        rule_id,
        summary=f"{src.name} ingests media only from a public URL, so inline base64 cannot be sent.",
        why=f"{src.name}'s publishing API has no byte-upload path for this media; it downloads the file itself.",
        remediation="Upload the file first and pass its mediaId, or give a public https URL.",
        example_fail={"text": "Photo", "media": [{"bytesBase64": "<base64 JPEG>"}]},
        example_pass={"text": "Photo", "media": [{"url": "https://example.com/photo.jpg"}]},
        check=check,
    )


def visibility_enum(src: Source, rule_id: str, *, mapping: dict[str, str], native: tuple[str, ...] = (), native_field: str | None = None) -> Rule:
    """The requested audience exists on the platform (generic value, or the platform's own option)."""
    generic = ", ".join(mapping)
    native_list = ", ".join(native or tuple(mapping.values()))

    def check(t: ResolvedTarget) -> Iterable[Violation]:
        if t.visibility is not None and t.visibility not in mapping:
            yield Violation(rule_id, f"{t.path}.visibility",
                            f"{src.name} has no '{t.visibility}' visibility.",
                            f"Use visibility {generic} for {src.name} (its own values: {native_list}), or leave visibility out.",
                            t.visibility, list(mapping))
        if native_field is not None:
            value = t.options.get(native_field)
            if value is not None and value not in native:
                yield Violation(rule_id, f"{t.path}.{native_field}",
                                f"{src.name} visibility '{value}' is not one of {native_list}.",
                                f"Set {native_field} to one of {native_list}.", value, list(native))

    return _rule(
        src,
        rule_id,
        summary=f"{src.name} visibility is one of {native_list} (generic: {generic}).",
        why=f"{src.name} offers only these audiences; a generic value it lacks cannot be mapped.",
        remediation=f"Use one of {generic} (generic) or {native_list}.",
        limit=list(native or mapping.values()),
        unit="values",
        example_fail={"text": "Hello", "visibility": "private" if "private" not in mapping else "logged_in"},
        example_pass={"text": "Hello", "visibility": "public"},
        check=check,
    )


def info_rule(src: Source, rule_id: str, *, summary: str, why: str, remediation: str, stage: Stage, limit: Any = None, unit: str | None = None,
              example_fail: dict[str, Any] | None = None, example_pass: dict[str, Any] | None = None, severity: Severity = "error", doc_url: str | None = None) -> Rule:
    """A rule decided outside shallow preflight (deep check, connect, API key, upstream state)."""
    kw: dict[str, Any] = {}
    if doc_url:
        kw["doc_url"] = doc_url
    return _rule(src, rule_id, summary=summary, why=why, remediation=remediation, stage=stage, limit=limit, unit=unit,
                 example_fail=example_fail, example_pass=example_pass, severity=severity, **kw)


def custom(src: Source, rule_id: str, *, summary: str, why: str, remediation: str, check: Any, limit: Any = None, unit: str | None = None,
           example_fail: dict[str, Any] | None = None, example_pass: dict[str, Any] | None = None, severity: Severity = "error") -> Rule:
    """A platform-specific shallow rule whose check is written beside its data."""
    return _rule(src, rule_id, summary=summary, why=why, remediation=remediation, limit=limit, unit=unit,
                 example_fail=example_fail, example_pass=example_pass, severity=severity, check=check)
