"""Counting units: graphemes (UAX #29), encoded sizes, X weighted length, Threads length, thread splitting."""

from __future__ import annotations

import random

import pytest
import regex

import refdata
from omnipost.preflight.text import (
    CODEPOINTS,
    GRAPHEMES,
    THREADS_CHARS,
    TWITTER_V2,
    TWITTER_V3,
    TWITTER_WEIGHTED,
    UNITS,
    UTF8_BYTES,
    UTF16,
    TwitterCount,
    Unit,
    codepoint_len,
    grapheme_len,
    graphemes,
    split_thread,
    threads_length,
    twitter_weighted_length,
    twitter_weighted_length_with,
    utf8_len,
    utf16_len,
)

RAW_X = regex.compile(r"\X")

# ---------------------------------------------------------------------------------------------------------------
# Graphemes
# ---------------------------------------------------------------------------------------------------------------

GRAPHEME_TABLE = [
    ("", 0),
    ("Hello!", 6),
    ("a\r\nb", 3),  # CR LF is one cluster
    ("\r\r\n\n", 3),
    ("👨‍👩‍👧‍👦", 1),  # ZWJ family
    ("👨‍👩‍👧‍👧🔥 good!✅", 9),
    ("🫱🏼‍🫲🏽", 1),  # ZWJ + skin tones
    ("👍🏽", 1),  # emoji modifier
    ("👍🏽👍🏿", 2),
    ("🇯🇵", 1),  # regional indicator pair
    ("\n🇯🇵", 2),  # flag at the start of a line
    ("🇯🇵🇺🇸", 2),
    ("🇯🇵🇺", 2),  # a lone trailing regional indicator
    ("🏴󠁧󠁢󠁥󠁮󠁧󠁿", 1),  # tag-sequence flag (England)
    ("1️⃣", 1),  # keycap
    ("#️⃣*️⃣", 2),
    ("1⃣", 1),  # keycap without VS16
    ("नमस्ते", 3),  # Devanagari: GB9c conjunct
    ("क्षि", 1),
    ("日本語", 3),  # CJK
    ("故人西辞黄鹤楼", 7),
    ("한국어", 3),  # precomposed Hangul
    ("\u1100\u1161\u11a8", 1),  # conjoining jamo L V T
    ("e\u0301", 1),  # combining acute
    ("a\u0308\u0301b", 2),
    ("©", 1),
    ("a~öñ©⽘☎𓋓😀👨‍👩‍👧‍👧", 10),
    ("\u0600a", 1),  # Prepend glues to the next character
]


@pytest.mark.parametrize(("text", "expected"), GRAPHEME_TABLE, ids=[refdata.short_id(t) or "empty" for t, _ in GRAPHEME_TABLE])
def test_grapheme_len_counts_extended_grapheme_clusters(text: str, expected: int) -> None:
    assert grapheme_len(text) == expected


def test_grapheme_len_fast_path_agrees_with_regex_on_random_mixed_text() -> None:
    # grapheme_len runs \X only on the non-ASCII islands of a text; it must agree with \X over the whole text.
    pieces = [
        "a", " ", "\r", "\n", "\r\n", "\t", "\x7f", "1", "#", "\ufe0f", "\u20e3", "\u0301", "\u200d", "\u0915",
        "\u094d", "\u0937", "\u0600", "\u0903", "🇯", "🇵", "👨", "👩", "🏽", "🏴", "\U000e0067", "\U000e007f",
        "\u1100", "\u1161", "\u11a8", "\uac00", "é", "日", "😀", "\u2764", "©",
    ]
    rng = random.Random(20261124)
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert grapheme_len(text) == len(graphemes(text)), [hex(ord(c)) for c in text]


def _grapheme_break_cases() -> list[tuple[int, str, list[str]]]:
    lines = refdata.path("unicode", "GraphemeBreakTest.txt").read_text(encoding="utf-8").splitlines()
    cases = []
    for lineno, line in enumerate(lines, 1):
        body = line.split("#", 1)[0].split()
        if not body:
            continue
        clusters: list[str] = []
        current = ""
        for token in body:
            if token == "÷":
                if current:
                    clusters.append(current)
                current = ""
            elif token != "×":
                current += chr(int(token, 16))
        if current:
            clusters.append(current)
        cases.append((lineno, "".join(clusters), clusters))
    return cases


# Raw regex \X joins a virama and a following consonant even with no consonant before the virama (GB9c needs one).
RAW_X_GB9C_BUG = {171, 172, 781, 782}


@refdata.requires_reference_data
def test_graphemes_agree_with_every_line_of_grapheme_break_test_17() -> None:
    """What Intl.Segmenter (and so Bluesky) counts: all 766 lines, both as clusters and as grapheme_len."""
    cases = _grapheme_break_cases()
    assert len(cases) == 766
    assert [lineno for lineno, text, clusters in cases if graphemes(text) != clusters] == []
    assert [lineno for lineno, text, clusters in cases if grapheme_len(text) != len(clusters)] == []
    # The fix is needed: raw \X still gets exactly these wrong (if a regex release fixes them, this says so).
    assert {lineno for lineno, text, clusters in cases if RAW_X.findall(text) != clusters} == RAW_X_GB9C_BUG


@refdata.requires_reference_data
def test_grapheme_len_matches_grapheme_break_test_wherever_regex_does() -> None:
    wrong = [
        lineno
        for lineno, text, clusters in _grapheme_break_cases()
        if grapheme_len(text) != len(clusters) and lineno not in KNOWN_GB9C_FAILURES
    ]
    assert wrong == []


# ---------------------------------------------------------------------------------------------------------------
# Encoded sizes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utf8", "utf16", "codepoints"),
    [
        ("", 0, 0, 0),
        ("abc", 3, 3, 3),
        ("é", 2, 1, 1),
        ("€", 3, 1, 1),
        ("日本", 6, 2, 2),
        ("😀", 4, 2, 1),
        ("👨‍👩‍👧‍👧", 25, 11, 7),
        ("🇯🇵", 8, 4, 2),
    ],
)
def test_encoded_sizes_count_bytes_code_units_and_code_points(text: str, utf8: int, utf16: int, codepoints: int) -> None:
    assert utf8_len(text) == utf8
    assert utf16_len(text) == utf16
    assert codepoint_len(text) == codepoints


# ---------------------------------------------------------------------------------------------------------------
# X weighted length
# ---------------------------------------------------------------------------------------------------------------

X_TABLE = [
    ("", 0),
    ("a", 1),
    ("hello world", 11),
    ("example.com", 23),  # URL without scheme
    ("https://example.com/path?q=1", 23),
    ("see example.com and https://example.org/x.", 4 + 23 + 5 + 23 + 1),
    ("e.g. 3.5 file.txt", 17),  # not URLs
    ("日本語", 6),  # CJK weighs 2
    ("한국", 4),
    ("こんにちは", 10),
    ("😀", 2),
    ("👨‍👩‍👧‍👦", 2),  # one emoji sequence = 2
    ("👍🏼", 2),
    ("🫱🏼", 4),  # Emoji 14: newer than twitter-text's Emoji 12 data, so counted per part (JS does the same)
    ("🇯🇵", 2),
    ("🏴󠁧󠁢󠁥󠁮󠁧󠁿", 2),
    ("1⃣", 2),
    ("1️⃣", 2),
    ("€", 2),
    ("…", 2),
    ("™", 2),
    ("\u2013\u201c\u201d", 3),  # dash and quotes are in the 100-weight ranges
    ("a\u200db", 3),  # ZWJ outside an emoji weighs 1
    ("\u200e", 2),  # directional marks weigh 2
    ("\r\n", 2),  # official JS counts CR LF as two characters
    ("a\r\nb", 4),
    ("©", 1),  # bare © / ® are not emoji in official JS
    ("®", 1),
    ("© 2026", 6),
    ("©️", 2),  # with VS16 they are
    ("Á", 1),  # NFC
    ("A\u0301", 1),
    ("Привет", 6),
    ("مرحبا", 5),
]


@pytest.mark.parametrize(("text", "expected"), X_TABLE, ids=[refdata.short_id(t) or "empty" for t, _ in X_TABLE])
def test_twitter_weighted_length_matches_official_twitter_text(text: str, expected: int) -> None:
    assert twitter_weighted_length(text).weighted_length == expected


def test_twitter_count_reports_validity_permillage_and_invalid_characters() -> None:
    assert twitter_weighted_length("") == TwitterCount(0, False, 0, False)
    assert twitter_weighted_length("x" * 280) == TwitterCount(280, True, 1000, False)
    assert twitter_weighted_length("x" * 281) == TwitterCount(281, False, 1003, False)
    assert twitter_weighted_length("日" * 140) == TwitterCount(280, True, 1000, False)
    assert twitter_weighted_length("日" * 141) == TwitterCount(282, False, 1007, False)
    assert twitter_weighted_length("ok\ufffe") == TwitterCount(4, False, 14, True)
    assert twitter_weighted_length("1⃣") == TwitterCount(2, True, 7, False)


def test_twitter_v2_config_counts_emoji_per_code_point() -> None:
    assert twitter_weighted_length_with("👨‍👩‍👧‍👦", TWITTER_V2).weighted_length == 4 * 2 + 3
    assert twitter_weighted_length_with("👨‍👩‍👧‍👦", TWITTER_V3).weighted_length == 2
    assert twitter_weighted_length_with("example.com", TWITTER_V2).weighted_length == 23


def test_twitter_config_mapping_accepts_json_and_library_spellings() -> None:
    from twitter_text.config import config

    assert twitter_weighted_length_with("日本 🙂", config["version3"]).weighted_length == 7
    assert twitter_weighted_length_with("🙂", {"maxWeightedTweetLength": 280, "scale": 100, "defaultWeight": 200,
                                               "emojiParsingEnabled": True, "transformedURLLength": 23,
                                               "ranges": [{"start": 0, "end": 4351, "weight": 100}]}).weighted_length == 2


def test_twitter_weighted_length_does_not_count_urls_twice_inside_emoji_or_overlaps() -> None:
    # A URL immediately followed by an emoji: 23 + 2.
    assert twitter_weighted_length("example.com😀").weighted_length == 25
    # Two URLs and text: each URL 23 regardless of length.
    assert twitter_weighted_length("https://a.co/" + "x" * 200 + " b.io").weighted_length == 23 + 1 + 23


# ---------------------------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 5),
        ("héllo wörld", 11),  # non-emoji characters count 1 per code point
        ("日本語", 3),
        ("😀", 4),  # emoji count their UTF-8 bytes
        ("a😀b", 6),
        ("👍🏽", 8),
        ("👨‍👩‍👧‍👦", 25),
        ("🇯🇵", 8),
        ("1️⃣", 7),
        ("❤️", 6),
        ("©", 2),  # Extended_Pictographic, so counted conservatively as an emoji
        ("e\u0301", 2),
    ],
)
def test_threads_length_counts_code_points_but_emoji_as_utf8_bytes(text: str, expected: int) -> None:
    assert threads_length(text) == expected


# ---------------------------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------------------------


def test_units_are_registered_by_name_with_labels_and_counters() -> None:
    assert UNITS["graphemes"] is GRAPHEMES
    assert UNITS["utf16"] is UTF16
    assert UNITS["utf8_bytes"] is UTF8_BYTES
    assert UNITS["codepoints"] is CODEPOINTS
    assert UNITS["twitter_weighted"] is TWITTER_WEIGHTED
    assert UNITS["threads_chars"] is THREADS_CHARS
    assert TWITTER_WEIGHTED.label == "weighted characters (twitter-text v3)"
    assert UTF16.label == "UTF-16 code units"
    text = "日本 😀 example.com"
    assert [u.count(text) for u in (GRAPHEMES, UTF16, UTF8_BYTES, CODEPOINTS, TWITTER_WEIGHTED, THREADS_CHARS)] == [
        16, 17, 23, 16, 4 + 1 + 2 + 1 + 23, 19,
    ]


# ---------------------------------------------------------------------------------------------------------------
# split_thread
# ---------------------------------------------------------------------------------------------------------------


def _check_split(text: str, segments: list[str], limit: int, unit: Unit) -> list[tuple[int, int]]:
    """Assert the split invariants; return each segment's (start, end) in `text`."""
    bounds = {0}
    for m in RAW_X.finditer(text):
        bounds.add(m.end())
    spans = []
    pos = 0
    for seg in segments:
        assert seg.strip(), "empty or whitespace-only segment"
        assert unit.count(seg) <= limit or grapheme_len(seg) == 1
        # The segment starts right here, or after whitespace (the gap dropped at a split point).
        start = pos
        while not text.startswith(seg, start):
            assert start < len(text) and text[start].isspace(), f"non-whitespace dropped at {start}"
            start += 1
        end = start + len(seg)
        assert start in bounds and end in bounds, "split inside a grapheme cluster"
        spans.append((start, end))
        pos = end
    assert not text[pos:].strip(), "text lost at the end"
    return spans


ENGLISH = (
    "Omnipost checks a post against every platform before it publishes anything. "
    "It counts text the way each platform does: graphemes for Bluesky, weighted characters for X! "
    "Does it also split long posts into threads? Yes, at sentence boundaries first. "
    "When a sentence is too long it falls back to word boundaries, and only then to grapheme clusters. "
    "Whitespace at the split points is dropped; nothing else is."
)


def test_split_thread_returns_short_text_unchanged() -> None:
    assert split_thread("hello world", 300, GRAPHEMES) == ["hello world"]
    assert split_thread("", 300, GRAPHEMES) == []


def test_split_thread_prefers_sentence_boundaries() -> None:
    segments = split_thread(ENGLISH, 120, GRAPHEMES)
    _check_split(ENGLISH, segments, 120, GRAPHEMES)
    assert len(segments) > 1
    assert all(seg.endswith((".", "!", "?")) for seg in segments)


def test_split_thread_falls_back_to_word_boundaries_inside_a_long_sentence() -> None:
    text = " ".join(["word"] * 200)
    segments = split_thread(text, 50, GRAPHEMES)
    spans = _check_split(text, segments, 50, GRAPHEMES)
    assert all(seg.startswith("word") and seg.endswith("word") for seg in segments)
    assert all(grapheme_len(seg) >= 45 for seg in segments[:-1])  # greedy: segments are filled
    assert all(text[end] == " " for _, end in spans[:-1])


def test_split_thread_hard_splits_a_long_word_at_grapheme_boundaries() -> None:
    text = "👨‍👩‍👧‍👦" * 30 + "नमस्ते" * 10
    segments = split_thread(text, 7, GRAPHEMES)
    _check_split(text, segments, 7, GRAPHEMES)
    assert "".join(segments) == text
    assert [grapheme_len(s) for s in segments[:-1]] == [7] * (len(segments) - 1)


def test_split_thread_fits_every_unit() -> None:
    text = ENGLISH + " 日本語の文章です。これは二つ目の文です。" * 6 + " 🎉🚀 https://example.com/a/long/path " * 5
    for unit, limit in [(GRAPHEMES, 100), (TWITTER_WEIGHTED, 80), (UTF16, 90), (THREADS_CHARS, 60), (UTF8_BYTES, 70)]:
        _check_split(text, split_thread(text, limit, unit), limit, unit)


def test_split_thread_never_cuts_a_url_when_words_fit() -> None:
    text = "Read this: https://example.com/some/long/path?q=1 and also example.org. " * 8
    segments = split_thread(text, 60, TWITTER_WEIGHTED)
    _check_split(text, segments, 60, TWITTER_WEIGHTED)
    for seg in segments:
        for word in seg.split():
            assert word.rstrip(".") in {"Read", "this:", "https://example.com/some/long/path?q=1", "and", "also", "example.org"}


def test_split_thread_keeps_a_combining_mark_after_whitespace_with_its_space() -> None:
    text = "abc \u0301def " * 20
    segments = split_thread(text, 10, GRAPHEMES)
    _check_split(text, segments, 10, GRAPHEMES)


def test_split_thread_splits_cjk_at_full_stops_without_spaces() -> None:
    text = "これは一つ目の文です。これは二つ目の文です。これは三つ目の文です。"
    segments = split_thread(text, 12, GRAPHEMES)
    assert segments == ["これは一つ目の文です。", "これは二つ目の文です。", "これは三つ目の文です。"]


def test_split_thread_emits_an_oversize_grapheme_alone() -> None:
    text = "ab👨‍👩‍👧‍👦cd"
    assert split_thread(text, 4, UTF8_BYTES) == ["ab", "👨‍👩‍👧‍👦", "cd"]


def test_split_thread_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        split_thread("abc", 0, GRAPHEMES)


def test_split_thread_random_texts_keep_the_invariants() -> None:
    words = ["a", "word", "longerword", "日本語", "😀", "👨‍👩‍👧‍👦", "e\u0301", "example.com", "end.", "why?", "\n", "  ", "。"]
    rng = random.Random(7)
    for _ in range(300):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))
        unit = rng.choice([GRAPHEMES, TWITTER_WEIGHTED, UTF16, THREADS_CHARS])
        limit = rng.randint(5, 60)
        _check_split(text, split_thread(text, limit, unit), limit, unit)
