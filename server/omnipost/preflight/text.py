"""Text-length units for the preflight engine: graphemes, UTF-8/UTF-16 sizes, X weighted length, Threads chars.

Everything here is a pure function of its arguments. The only import-time work is compiling `re` patterns (and
the character classes they are built from); `regex` patterns compile on first use (LazyPattern). The functions
are on the hot path of a 25-target preflight, so the common cases (ASCII text, text without emoji or URLs) take
short cuts that give the same answer as the general code.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from typing import Any as _Any


class LazyPattern:
    """A module-level `regex` pattern that compiles on first use and then puts the compiled pattern in its place.

    Importing `regex` and compiling its Unicode classes is ~5 ms of server start-up that tools/list does not
    need. Code must use the pattern through the module global (`_GRAPHEME.findall(...)`), never keep a bound
    method from before the first use; after it, the global is the plain compiled pattern (no indirection).
    """

    __slots__ = ("_namespace", "_name", "_source")

    def __init__(self, namespace: dict[str, _Any], name: str, source: str) -> None:
        self._namespace, self._name, self._source = namespace, name, source

    def __getattr__(self, attr: str) -> _Any:
        import regex

        compiled = regex.compile(self._source)
        self._namespace[self._name] = compiled
        return getattr(compiled, attr)

__all__ = [
    "CODEPOINTS",
    "GRAPHEMES",
    "MASTODON_CHARS",
    "THREADS_CHARS",
    "TWITTER_WEIGHTED",
    "UNITS",
    "UTF8_BYTES",
    "UTF16",
    "Unit",
    "codepoint_len",
    "grapheme_len",
    "graphemes",
    "mastodon_length",
    "mastodon_unit",
    "split_thread",
    "threads_length",
    "utf8_len",
    "utf16_len",
]

# ---------------------------------------------------------------------------------------------------------------
# Graphemes and encoded sizes
# ---------------------------------------------------------------------------------------------------------------

# `regex`'s \X implements UAX #29 extended grapheme clusters (including GB9c conjuncts and GB12/13 flag pairing),
# which is what Intl.Segmenter, and therefore Bluesky, counts, with one bug: it applies GB9c (a conjunct: Linker ×
# Consonant) even when no Consonant precedes the Linker (GraphemeBreakTest 17.0 lines 171, 172, 781, 782, e.g. a
# virama at the start of a text, or after a Latin letter, then a Devanagari consonant). `_clusters` undoes exactly
# those joins: inside a cluster, a Consonant preceded by a run of InCB Extend/Linker characters that holds a Linker
# but does not follow a Consonant starts a new cluster (nothing else can join a Consonant to an Extend/Linker run).
_GRAPHEME = LazyPattern(globals(), "_GRAPHEME", r"\X")
_LINKER = LazyPattern(globals(), "_LINKER", r"\p{InCB=Linker}")
_FALSE_CONJUNCT = LazyPattern(
    globals(), "_FALSE_CONJUNCT",
    r"(?<=[\p{InCB=Extend}\p{InCB=Linker}]*\p{InCB=Linker}[\p{InCB=Extend}\p{InCB=Linker}]*)"
    r"(?<!\p{InCB=Consonant}[\p{InCB=Extend}\p{InCB=Linker}]*)(?=\p{InCB=Consonant})")


def _clusters(text: str) -> list[str]:
    r"""\X's clusters, with its false GB9c joins split (see above)."""
    found = _GRAPHEME.findall(text)
    if not _LINKER.search(text):
        return found
    out: list[str] = []
    for cluster in found:
        start = 0
        for m in _FALSE_CONJUNCT.finditer(cluster, 1):
            out.append(cluster[start:m.start()])
            start = m.start()
        out.append(cluster[start:])
    return out


# Most posts are mostly ASCII, and \X costs ~0.1 µs per character. Two ASCII characters are always separate
# clusters except CR LF (GB3, GB999), so only the non-ASCII "islands" need \X, each with the one non-control ASCII
# character on either side that a combining mark (GB9), a Prepend (GB9b) or a keycap can glue to it. Islands one
# ASCII character apart are merged so that windows never share a character. Every window edge is then a cluster
# boundary of the whole text (before/after a control, or between two ASCII characters neither of which is CR),
# and no rule looks across an ASCII character (RI pairing, GB9c and GB11 only look back over non-ASCII), so \X on
# a window segments it exactly as on the whole text.
_ISLAND = re.compile(r"[\x20-\x7e]?[^\x00-\x7f](?:[^\x00-\x7f]|[\x00-\x7f](?=[^\x00-\x7f]))*[\x20-\x7e]?")


def grapheme_len(text: str) -> int:
    """Number of extended grapheme clusters (UAX #29), as Intl.Segmenter counts them."""
    # Outside the islands, each character is a cluster except that CR LF is one (no CR LF pair lies in an island).
    total = len(text) - text.count("\r\n")
    if text.isascii():
        return total
    for m in _ISLAND.finditer(text):
        window = m.group()
        total += len(_clusters(window)) - len(window)
    return total


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of `text`, in order."""
    return _clusters(text)


def utf8_len(text: str) -> int:
    """Size of `text` in UTF-8 bytes."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def utf16_len(text: str) -> int:
    """Size of `text` in UTF-16 code units (what JavaScript's String.length reports)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def codepoint_len(text: str) -> int:
    """Number of Unicode code points."""
    return len(text)


_TWITTER_NAMES = frozenset({"TWITTER_V2", "TWITTER_V3", "TwitterConfig", "TwitterCount", "twitter_urls",
                            "twitter_weighted_length", "twitter_weighted_length_with"})


def __getattr__(name: str) -> Any:
    # X counting lives in omnipost.preflight.twitter, imported on first use (see its docstring).
    if name in _TWITTER_NAMES:
        from omnipost.preflight import twitter

        return getattr(twitter, name)
    raise AttributeError(name)


# ---------------------------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------------------------

# A grapheme cluster is "an emoji" if it holds a pictograph, a regional indicator (flags) or a keycap mark.
_EMOJI_SIGNAL = LazyPattern(globals(), "_EMOJI_SIGNAL", r"[\p{Extended_Pictographic}\U0001F1E6-\U0001F1FF\u20E3]")


def threads_length(text: str) -> int:
    """Threads length: 1 per code point, but an emoji grapheme cluster counts its UTF-8 bytes.

    Meta documents the 500 limit in "characters" and says emoji count as their UTF-8 byte length; how other
    characters count is unconfirmed. This is the conservative reading: every code point counts 1, and each
    grapheme cluster containing an Extended_Pictographic code point, a regional indicator or U+20E3 counts its
    UTF-8 byte length instead (😀 = 4, 👍🏽 = 8, 🇯🇵 = 8, 1️⃣ = 7, bare © = 2).
    """
    n = len(text)
    if text.isascii() or _EMOJI_SIGNAL.search(text) is None:
        return n
    # Emoji clusters all hold a non-ASCII code point, so they all lie within the islands (see grapheme_len).
    for m in _ISLAND.finditer(text):
        for cluster in _clusters(m.group()):
            if _EMOJI_SIGNAL.search(cluster) is not None:
                n += len(cluster.encode("utf-8", "surrogatepass")) - len(cluster)
    return n


# ---------------------------------------------------------------------------------------------------------------
# Mastodon
# ---------------------------------------------------------------------------------------------------------------

MASTODON_URL_LENGTH = 23  # a stock instance's characters_reserved_per_url (StatusLengthValidator::URL_PLACEHOLDER)

# Mastodon's Account::MENTION_RE (4.x): `@user` or `@user@domain`, not after `=`, `/` or a word character.
# [[:word:]] in Ruby is Unicode letters, marks, numbers and connector punctuation: regex's \w.
_MASTODON_MENTION = LazyPattern(
    globals(), "_MASTODON_MENTION",
    r"(?<![=/\w])@((?i:([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?))(?:@[\w.-]+\w+)?)")
# twitter-text's end_mention_match: a match followed by another at sign, a Latin accent or "://" is not a mention.
_MASTODON_MENTION_END = LazyPattern(
    globals(), "_MASTODON_MENTION_END",
    r"[@\uff20\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259\u025b\u0263\u0268"
    r"\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff]|://")


def _mastodon_entities(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, mention local part or None for a URL) of the entities Mastodon rewrites before counting, with
    overlapping ones dropped the way twitter-text's remove_overlapping_entities does (sorted by start; an entity
    that starts inside an earlier kept one is dropped)."""
    found: list[tuple[int, int, str | None]] = []
    if "://" in text:
        from omnipost.preflight.twitter import scheme_url_spans

        found += [(a, b, None) for a, b in scheme_url_spans(text)]
    if "@" in text:
        for m in _MASTODON_MENTION.finditer(text):
            if _MASTODON_MENTION_END.match(text, m.end()) is None:
                found.append((m.start(), m.end(), m.group(2)))
    found.sort(key=lambda e: e[0])
    kept: list[tuple[int, int, str | None]] = []
    for entity in found:
        if not kept or entity[0] >= kept[-1][1]:
            kept.append(entity)
    return kept


def mastodon_countable(text: str, url_length: int = MASTODON_URL_LENGTH) -> str:
    """The text as Mastodon's StatusLengthValidator counts it: each http(s) URL (twitter-text extraction) replaced by
    `url_length` placeholder characters, each mention `@user@domain` by `@user`; blank text counts as empty."""
    if not text or text.isspace():
        return ""
    if "://" not in text and "@" not in text:
        return text
    out: list[str] = []
    pos = 0
    for start, end, local in _mastodon_entities(text):
        out.append(text[pos:start])
        out.append("x" * url_length if local is None else f"@{local}")
        pos = end
    out.append(text[pos:])
    return "".join(out)


@functools.lru_cache(maxsize=256)
def mastodon_length(text: str, spoiler: str = "", url_length: int = MASTODON_URL_LENGTH) -> int:
    """Mastodon length: grapheme clusters of spoiler_text (the content warning) joined to the countable text.
    Cached: one request measures the same text for the rule and for validate_post's measure."""
    return grapheme_len(spoiler + mastodon_countable(text, url_length))


# ---------------------------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A way of measuring text length that rule data can refer to."""

    name: str
    label: str
    count: Callable[[str], int]


@functools.lru_cache(maxsize=256)
def _twitter_count(text: str) -> int:
    # Cached: one request measures the same text for the rule, the measure and the first comment.
    from omnipost.preflight.twitter import twitter_weighted_length

    return twitter_weighted_length(text).weighted_length


GRAPHEMES = Unit("graphemes", "graphemes", grapheme_len)
UTF16 = Unit("utf16", "UTF-16 code units", utf16_len)
UTF8_BYTES = Unit("utf8_bytes", "UTF-8 bytes", utf8_len)
CODEPOINTS = Unit("codepoints", "characters (Unicode code points)", codepoint_len)
TWITTER_WEIGHTED = Unit("twitter_weighted", "weighted characters (twitter-text v3)", _twitter_count)
THREADS_CHARS = Unit("threads_chars", "characters (emoji count as their UTF-8 bytes)", threads_length)


def mastodon_unit(url_length: int = MASTODON_URL_LENGTH) -> Unit:
    """Mastodon's characters on an instance that reserves `url_length` characters per URL (stock: 23); one Unit
    object per length."""
    return _mastodon_unit(url_length)


@functools.lru_cache(maxsize=32)
def _mastodon_unit(url_length: int) -> Unit:
    return Unit("mastodon_chars", f"characters (grapheme clusters; a URL counts {url_length}, @user@domain counts @user)",
                functools.partial(_mastodon_count, url_length=url_length))


def _mastodon_count(text: str, *, url_length: int) -> int:
    return mastodon_length(text, "", url_length)


MASTODON_CHARS = mastodon_unit()

UNITS: Mapping[str, Unit] = {
    u.name: u for u in (GRAPHEMES, UTF16, UTF8_BYTES, CODEPOINTS, TWITTER_WEIGHTED, THREADS_CHARS, MASTODON_CHARS)
}


# ---------------------------------------------------------------------------------------------------------------
# Thread splitting
# ---------------------------------------------------------------------------------------------------------------

_WS_RUN = LazyPattern(globals(), "_WS_RUN", r"\s+")
# Sentence-final punctuation, and the closing quotes/brackets that may follow it before the whitespace.
_TERMINALS = frozenset(".!?…‼⁇⁈⁉。！？")
_CLOSERS = frozenset("\"'”’»)]」』）")
# CJK full stops end a sentence even without a following space.
_CJK_STOP = LazyPattern(globals(), "_CJK_STOP", r"[。！？]++[」』）”’]*+(?!\s)")

# A cut: the current segment ends at the first offset, the next starts at the second (the gap is whitespace).
_Cut = tuple[int, int]


def _furthest_fit(text: str, start: int, cuts: Sequence[_Cut], ends: Sequence[int], limit: int, unit: Unit) -> _Cut | None:
    """The furthest cut after `start` whose segment text[start:cut] fits `limit` (binary search over `cuts`)."""
    lo = bisect_right(ends, start)
    if lo >= len(cuts):
        return None

    def fits(i: int) -> bool:
        return unit.count(text[start : cuts[i][0]]) <= limit

    if not fits(lo):
        return None
    hi = len(cuts) - 1
    # Invariant: cuts[lo] fits. Length is monotone in the cut position for every unit except at URL edges under
    # twitter weighting, where the search still returns a cut that was checked to fit.
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return cuts[lo]


def _ends_sentence(text: str, end: int) -> bool:
    """Whether text[:end] ends with sentence-final punctuation (closing quotes/brackets allowed after it)."""
    i = end - 1
    while i >= 0 and text[i] in _CLOSERS:
        i -= 1
    return i >= 0 and text[i] in _TERMINALS


def split_thread(text: str, limit: int, unit: Unit) -> list[str]:
    """Split `text` into thread segments that each fit `limit` in `unit`, preferring sentence, then word breaks.

    Segments are consecutive slices of `text`; only the whitespace at each split point (and a segment that would
    be whitespace only) is dropped. A cut never falls inside a grapheme cluster. A single grapheme cluster that
    alone exceeds `limit` becomes its own (over-long) segment, since it cannot be split.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not text:
        return []
    if unit.count(text) <= limit:
        return [text]

    n = len(text)
    bounds = [0]
    for cluster in _clusters(text):
        bounds.append(bounds[-1] + len(cluster))
    bound_set = set(bounds)

    word_cuts: list[_Cut] = []
    sentence_cuts: list[_Cut] = []
    for m in _WS_RUN.finditer(text):
        a, b = m.start(), m.end()
        # Whitespace can be glued into a cluster (a Prepend before it, a combining mark after it): move the cut
        # points inward to cluster boundaries rather than split the cluster.
        if a not in bound_set:
            a = bounds[bisect_left(bounds, a)]
        if b not in bound_set:
            b = bounds[bisect_right(bounds, b) - 1]
        if a > b or a == 0:
            continue
        word_cuts.append((a, b))
        if "\n" in text[a:b] or _ends_sentence(text, a):
            sentence_cuts.append((a, b))
    for m in _CJK_STOP.finditer(text):
        p = m.end()
        if 0 < p < n and p in bound_set:
            sentence_cuts.append((p, p))
    sentence_cuts.sort()
    hard_cuts: list[_Cut] = [(g, g) for g in bounds[1:]]

    levels = [(cuts, [c[0] for c in cuts]) for cuts in (sentence_cuts, word_cuts, hard_cuts)]
    segments: list[str] = []
    start = 0
    while start < n:
        rest = text[start:]
        if unit.count(rest) <= limit:
            if rest.strip():
                segments.append(rest)
            break
        cut: _Cut | None = None
        for cuts, ends in levels:
            cut = _furthest_fit(text, start, cuts, ends, limit, unit)
            if cut is not None:
                break
        if cut is None:
            # Not even one grapheme cluster fits: emit it alone rather than split it.
            nxt = bounds[bisect_right(bounds, start)]
            cut = (nxt, nxt)
        seg_end, next_start = cut
        segment = text[start:seg_end]
        if segment.strip():
            segments.append(segment)
        start = next_start
    return segments
