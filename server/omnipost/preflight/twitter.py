"""X (Twitter): twitter-text v3 weighted length, matching the official JS implementation.

Kept apart from text.py because twitter-text-parser takes ~170 ms to import: text.py loads this
module on the first X count, so the server starts (and lists its tools) without paying for it.
"""

from __future__ import annotations

import math
import re
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():
    # twitter-text-parser imports pkg_resources, which warns about its own deprecation on every import.
    warnings.simplefilter("ignore")
    from twitter_text.extract_urls import extract_urls_with_indices
    from twitter_text.regexp.emoji import emoji_list as _TWITTER_EMOJI_LIST
    from twitter_text.regexp.spaces_group import spaces_group as _TT_SPACES
    from twitter_text.regexp.valid_cctld import valid_cctld as _TT_CCTLD
    from twitter_text.regexp.valid_gtld import valid_gtld as _TT_GTLD
    from twitter_text.regexp.valid_domain_chars import valid_domain_chars as _TT_DOMAIN_CHAR

# ---------------------------------------------------------------------------------------------------------------
# X (Twitter): twitter-text v3 weighted length
# ---------------------------------------------------------------------------------------------------------------

# The ranges weighing 100 (one "character") in twitter-text configs v2 and v3; everything else weighs 200.
_TWITTER_RANGES: tuple[tuple[int, int, int], ...] = (
    (0x0000, 0x10FF, 100),
    (0x2000, 0x200D, 100),
    (0x2010, 0x201F, 100),
    (0x2032, 0x2037, 100),
)


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """The body of a regex character class covering the inclusive code point `ranges`."""
    parts = []
    for lo, hi in ranges:
        parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
    return "".join(parts)


def _to_ranges(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse a set of code points into sorted inclusive ranges."""
    out: list[tuple[int, int]] = []
    for cp in sorted(set(codepoints)):
        if out and cp == out[-1][1] + 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


@dataclass(frozen=True)
class TwitterConfig:
    """A twitter-text counting configuration (the fields of config/v2.json and config/v3.json)."""

    max_weighted_length: int = 280
    scale: int = 100
    default_weight: int = 200
    transformed_url_length: int = 23
    emoji_parsing_enabled: bool = True
    # (start, end, weight), inclusive code points. Ranges are expected not to overlap, as in every official config.
    ranges: tuple[tuple[int, int, int], ...] = _TWITTER_RANGES
    # Derived at construction: per non-default weight, (weight - default, regex matching runs of such characters).
    _classes: tuple[tuple[int, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)
    # The weight of every ASCII character when they all fall in one class, so ASCII text needs no regex at all.
    _ascii_weight: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_weight: dict[int, list[tuple[int, int]]] = {}
        for start, end, weight in self.ranges:
            if weight != self.default_weight:
                by_weight.setdefault(weight, []).append((start, end))
        classes = tuple(
            (weight - self.default_weight, re.compile(f"[{_char_class(spans)}]+"))
            for weight, spans in by_weight.items()
        )
        ascii_weight: int | None = self.default_weight
        for start, end, weight in self.ranges:
            if start <= 0 and end >= 0x7F:
                ascii_weight = weight
                break
            if start <= 0x7F and end >= 0:
                ascii_weight = None  # ASCII is split across ranges: take the general path
                break
        object.__setattr__(self, "_classes", classes)
        object.__setattr__(self, "_ascii_weight", ascii_weight)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> TwitterConfig:
        """Build from a twitter-text config dict (camelCase JSON or twitter-text-parser's snake_case)."""

        def get(snake: str, camel: str, default: Any) -> Any:
            return config.get(snake, config.get(camel, default))

        ranges = tuple((int(r["start"]), int(r["end"]), int(r["weight"])) for r in get("ranges", "ranges", []))
        return cls(
            max_weighted_length=int(get("max_weighted_tweet_length", "maxWeightedTweetLength", 280)),
            scale=int(get("scale", "scale", 1)),
            default_weight=int(get("default_weight", "defaultWeight", 1)),
            transformed_url_length=int(get("transformed_url_length", "transformedURLLength", 23)),
            # config v2 predates the key; absent means "no emoji grouping", as in the official runners.
            emoji_parsing_enabled=bool(get("emoji_parsing_enabled", "emojiParsingEnabled", False)),
            ranges=ranges,
        )

    def plain_weight(self, text: str) -> int:
        """Scaled weight of `text` counted code point by code point (no URL or emoji grouping)."""
        n = len(text)
        if self._ascii_weight is not None and text.isascii():
            return n * self._ascii_weight
        total = n * self.default_weight
        for delta, runs in self._classes:
            # Characters of this class = what removing its runs takes away; one C-level pass per class.
            total += delta * (n - len(runs.sub("", text)))
        return total


TWITTER_V3 = TwitterConfig()
TWITTER_V2 = TwitterConfig(emoji_parsing_enabled=False)


@dataclass(frozen=True)
class TwitterCount:
    """The result of twitter-text's parseTweet that a length check needs."""

    weighted_length: int
    valid: bool
    permillage: int
    has_invalid_chars: bool


# U+FFFE, U+FEFF and U+FFFF make a tweet invalid (twitter-text invalidChars).
_TWITTER_INVALID = re.compile("[\ufffe\ufeff\uffff]")

# Emoji. The library's emoji matcher is one regex alternation of ~3,800 sequences from its emoji list (Emoji 12),
# longest first, which Python's `re` tries one by one: ~3 µs at every position, ~0.4 ms for an emoji-heavy post.
# The same matching (at each position, the longest sequence of that list that starts there) is done here with a
# set lookup per candidate length, on the same list. A differential test against extract_emojis_with_indices
# guards the equivalence.
#
# Every sequence consists of code points from the list and holds a non-ASCII one, so matches lie inside runs of
# such code points that contain a non-ASCII one; one character-class scan finds those runs. The class is exact in
# the BMP (a bitmap for `re`) and coarsened to two blocks outside it, because `re` tests astral ranges one by one;
# a superset still gives runs that contain every match whole.
def _lengths_by_first_char(sequences: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """For each first character, the lengths of the sequences starting with it, longest first."""
    lengths: dict[str, set[int]] = {}
    for seq in sequences:
        lengths.setdefault(seq[0], set()).add(len(seq))
    return {first: tuple(sorted(ls, reverse=True)) for first, ls in lengths.items()}


_EMOJI_SEQUENCES = frozenset(e.emoji for e in _TWITTER_EMOJI_LIST)
_EMOJI_LENGTHS = _lengths_by_first_char(_EMOJI_SEQUENCES)
_EMOJI_CPS = {ord(ch) for seq in _EMOJI_SEQUENCES for ch in seq}
_EMOJI_ASCII = _char_class(_to_ranges(cp for cp in _EMOJI_CPS if cp < 0x80))
_EMOJI_BMP = _char_class(_to_ranges(cp for cp in _EMOJI_CPS if 0x80 <= cp < 0x10000))
_EMOJI_ASTRAL_BLOCKS = ((0x1F000, 0x1FAFF), (0xE0000, 0xE007F))
if not all(any(lo <= cp <= hi for lo, hi in _EMOJI_ASTRAL_BLOCKS) for cp in _EMOJI_CPS if cp >= 0x10000):
    # A newer emoji list reaching outside these blocks: fall back to the exact (slower) class.
    _EMOJI_ASTRAL_BLOCKS = tuple(_to_ranges(cp for cp in _EMOJI_CPS if cp >= 0x10000))
_EMOJI_NON_ASCII = _EMOJI_BMP + _char_class(_EMOJI_ASTRAL_BLOCKS)
_EMOJI_RUN = re.compile(f"[{_EMOJI_ASCII}]*[{_EMOJI_NON_ASCII}][{_EMOJI_ASCII}{_EMOJI_NON_ASCII}]*")
# Official twitter-text (JS, twemoji-parser) does not treat a bare © or ® as an emoji: they weigh 1 there, while
# the Python port's emoji list (emoji-test.txt, with unqualified forms) counts them as a 2-weight emoji.
_NOT_EMOJI_IN_JS = frozenset({"\u00a9", "\u00ae"})

# URLs. The library's URL regex costs ~0.3 µs per character wherever it is tried, and several µs at every "."
# (it tries ~1,500 TLD alternatives there). A URL never contains one of twitter-text's space characters (its
# domain, path and query classes all exclude them), and its domain has a "." followed by a domain character. So
# only the space-delimited tokens holding such a dot can contain one; the library runs on each such token with one
# character of context either side, which is all its regex looks at (the preceding-character group and the TLD's
# lookahead). The conformance tests check that this finds exactly what a whole-text call finds.
_URL_CANDIDATE = re.compile(
    f"(?<![^{_TT_SPACES}])[^{_TT_SPACES}]*?\\.{_TT_DOMAIN_CHAR.pattern}[^{_TT_SPACES}]*"
)


def _tld_literals(pattern: str) -> frozenset[str] | None:
    """The TLDs of one of the library's `(?:(?:tld|tld|...)(?=...))` patterns, or None if it has another shape."""
    head, sep = "(?:(?:", ")(?="
    if not pattern.startswith(head) or sep not in pattern:
        return None
    items = pattern[len(head) : pattern.index(sep)].split("|")
    if any(re.escape(t) != t for t in items if t.isascii()):
        return None
    return frozenset(t.lower() for t in items if t.isascii())


_GTLDS, _CCTLDS = _tld_literals(_TT_GTLD.pattern), _tld_literals(_TT_CCTLD.pattern)
# Every ASCII TLD twitter-text accepts. The TLD must be followed by a character outside [0-9a-zA-Z@+-], so an
# ASCII TLD is exactly the whole alphanumeric run after its dot: a token whose dot-labels are all outside this set
# (e.g., "e.g.", "3.5", "file.txt") cannot hold a URL and is never handed to the library.
_TT_ASCII_TLDS: frozenset[str] | None = None if _GTLDS is None or _CCTLDS is None else _GTLDS | _CCTLDS
# After a ".": punycode, or a label holding non-ASCII (an IDN TLD such as "vermögensberater": let the library
# decide), or else a plain ASCII label (group 1) that must itself be a TLD.
_DOT_LABEL = re.compile(r"\.(?:(?:[xX][nN]--|[0-9A-Za-z]*+[^\x00-\x7f])|([0-9A-Za-z]++)(?![@+\-]))")


def _may_hold_url(token: str) -> bool:
    """Cheap necessary condition for twitter-text finding a URL in `token`."""
    if _TT_ASCII_TLDS is None:
        return True
    for m in _DOT_LABEL.finditer(token):
        label = m.group(1)
        if label is None or label.lower() in _TT_ASCII_TLDS:
            return True
    return False


def _twitter_url_entities(text: str) -> list[tuple[str, int, int]]:
    """(url, start, end) of the URLs twitter-text extracts from NFC `text`, offsets in code points."""
    if "." not in text:
        return []
    out: list[tuple[str, int, int]] = []
    n = len(text)
    for m in _URL_CANDIDATE.finditer(text):
        if not _may_hold_url(m.group()):
            continue
        lo = m.start() - 1 if m.start() > 0 else 0
        for url in extract_urls_with_indices(text[lo : min(n, m.end() + 1)]):
            start, end = url["indices"]
            out.append((url["url"], lo + start, lo + end))
    return out


def _twitter_url_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) code point spans that parseTweet counts as one URL in NFC `text`."""
    # parseTweet skips len(url) characters from the URL's start (JS: url.length), not up to indices[1].
    return [(start, start + len(url)) for url, start, _end in _twitter_url_entities(text)]


def _twitter_emoji_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) code point spans of the emoji sequences twitter-text v3 counts as one 2-weight character."""
    spans: list[tuple[int, int]] = []
    for run in _EMOJI_RUN.finditer(text):
        s = run.group()
        base = run.start()
        n = len(s)
        i = 0
        while i < n:
            step = 1
            for length in _EMOJI_LENGTHS.get(s[i], ()):
                if length <= n - i and s[i : i + length] in _EMOJI_SEQUENCES:
                    if length > 1 or s[i] not in _NOT_EMOJI_IN_JS:
                        spans.append((base + i, base + i + length))
                    step = length
                    break
            i += step
    return spans


def twitter_urls(text: str) -> list[tuple[str, int, int]]:
    """(url, start, end) of the URLs X counts as 23: twitter-text extraction, code point offsets into NFC `text`."""
    return _twitter_url_entities(unicodedata.normalize("NFC", text))


_SCHEME = re.compile(r"https?://", re.I)


def scheme_url_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) code point spans of the http(s) URLs twitter-text extracts from `text` as given (no NFC step):
    what Mastodon's extractor finds with `extract_url_without_protocol: false` (a bare domain is not a URL there)."""
    if "://" not in text:
        return []
    return [(start, end) for url, start, end in _twitter_url_entities(text) if _SCHEME.match(url)]


def twitter_weighted_length_with(text: str, config: TwitterConfig | Mapping[str, Any]) -> TwitterCount:
    """twitter-text parseTweet (weightedLength, valid, permillage) under an explicit config."""
    cfg = config if isinstance(config, TwitterConfig) else TwitterConfig.from_mapping(config)
    # NFC first, as parseTweet does. Line endings are NOT normalised: official JS/Java count "\r\n" as 2.
    # (normalize() returns its argument unchanged after a C-level quick check when it is already NFC.)
    norm = unicodedata.normalize("NFC", text)
    total = cfg.plain_weight(norm)

    # (start, priority, end, weight): at the same start a URL wins over an emoji, as in parseTweet's loop.
    entities: list[tuple[int, int, int, int]] = []
    url_weight = cfg.transformed_url_length * cfg.scale
    for start, end in _twitter_url_spans(norm):
        entities.append((start, 0, end, url_weight))
    if cfg.emoji_parsing_enabled and not norm.isascii():
        for start, end in _twitter_emoji_spans(norm):
            entities.append((start, 1, end, cfg.default_weight))
    if entities:
        entities.sort()
        cursor = 0
        covered: list[str] = []
        for start, _prio, end, weight in entities:
            if start < cursor:
                continue  # parseTweet's loop has already skipped past this position
            total += weight
            covered.append(norm[start:end])
            cursor = end
        # The covered characters no longer count one by one (weighed in one pass rather than per entity).
        total -= cfg.plain_weight("".join(covered))

    # Weights are multiples of `scale` in every official config; JS would divide exactly.
    weighted = total // cfg.scale
    has_invalid = _TWITTER_INVALID.search(norm) is not None
    return TwitterCount(
        weighted_length=weighted,
        valid=not has_invalid and 0 < weighted <= cfg.max_weighted_length,
        # Same float expression as JS: Math.floor((weightedLength / max) * 1000).
        permillage=math.floor(weighted / cfg.max_weighted_length * 1000),
        has_invalid_chars=has_invalid,
    )


def twitter_weighted_length(text: str) -> TwitterCount:
    """twitter-text v3 weighted length of `text`, matching the official JS implementation."""
    return twitter_weighted_length_with(text, TWITTER_V3)
