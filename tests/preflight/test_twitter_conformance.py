"""twitter-text conformance: weighted length (validate.yml) and URL extraction (extract.yml, tlds.yml).

The YAML is loaded at test time from the shared reference data, as twitter-text's conformance README asks.
"""

from __future__ import annotations

import random
import unicodedata
import warnings
from typing import Any

import pytest

import refdata
from omnipost.preflight.twitter import (
    TWITTER_V2,
    TWITTER_V3,
    TwitterConfig,
    twitter_urls,
    twitter_weighted_length,
    twitter_weighted_length_with,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources deprecation, raised by twitter-text-parser's import
    from twitter_text import parse_tweet
    from twitter_text.config import config as LIBRARY_CONFIG
    from twitter_text.extract_emojis import extract_emojis_with_indices
    from twitter_text.extract_urls import extract_urls_with_indices

_VALIDATE = refdata.load_yaml("twitter-text", "validate.yml")
_EXTRACT = refdata.load_yaml("twitter-text", "extract.yml")
_TLDS = refdata.load_yaml("twitter-text", "tlds.yml")


def _section(doc: Any, name: str) -> list[dict[str, Any]]:
    return [] if doc is None else list(doc["tests"][name])


def _weighted_cases() -> list[tuple[str, TwitterConfig, dict[str, Any]]]:
    # Config per section, as the official runners use them.
    out = []
    for section, cfg in [
        ("WeightedTweetsCounterTest", TWITTER_V2),
        ("WeightedTweetsWithDiscountedEmojiCounterTest", TWITTER_V3),
        ("UnicodeDirectionalMarkerCounterTest", TWITTER_V3),
    ]:
        out.extend((section, cfg, case) for case in _section(_VALIDATE, section))
    return out


def _case_id(item: tuple[str, TwitterConfig, dict[str, Any]]) -> str:
    section, _cfg, case = item
    return f"{section}: {refdata.short_id(case['description'], 70)}"


@pytest.mark.parametrize("item", refdata.params(_weighted_cases(), _case_id))
def test_weighted_length_matches_validate_yml(item: tuple[str, TwitterConfig, dict[str, Any]]) -> None:
    _section_name, cfg, case = item
    got = twitter_weighted_length_with(case["text"], cfg)
    expected = case["expected"]
    assert (got.weighted_length, got.valid, got.permillage) == (
        expected["weightedLength"],
        expected["valid"],
        expected["permillage"],
    )


@refdata.requires_reference_data
def test_validate_yml_has_all_weighted_sections() -> None:
    sizes = {name: len(_section(_VALIDATE, name)) for name in (
        "WeightedTweetsCounterTest", "WeightedTweetsWithDiscountedEmojiCounterTest", "UnicodeDirectionalMarkerCounterTest")}
    assert sizes == {
        "WeightedTweetsCounterTest": 20,
        "WeightedTweetsWithDiscountedEmojiCounterTest": 22,
        "UnicodeDirectionalMarkerCounterTest": 2,
    }


def test_bundled_configs_equal_the_library_config_data() -> None:
    assert TwitterConfig.from_mapping(LIBRARY_CONFIG["version3"]) == TWITTER_V3
    assert TwitterConfig.from_mapping(LIBRARY_CONFIG["version2"]) == TWITTER_V2
    assert TwitterConfig.from_mapping(LIBRARY_CONFIG["defaults"]) == TWITTER_V3


# ---------------------------------------------------------------------------------------------------------------
# URL extraction: the URLs twitter_weighted_length counts as 23
# ---------------------------------------------------------------------------------------------------------------


def _url_cases() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for section in ("urls", "urls_with_indices", "urls_with_directional_markers", "tco_urls_with_params"):
        out.extend(("extract.yml " + section, case) for case in _section(_EXTRACT, section))
    for section in ("country", "generic"):
        out.extend(("tlds.yml " + section, case) for case in _section(_TLDS, section))
    return out


def _url_id(item: tuple[str, dict[str, Any]]) -> str:
    where, case = item
    return f"{where}: {refdata.short_id(case['description'], 70)}"


@pytest.mark.parametrize("item", refdata.params(_url_cases(), _url_id))
def test_url_extraction_matches_extract_yml_and_tlds_yml(item: tuple[str, dict[str, Any]]) -> None:
    _where, case = item
    found = twitter_urls(case["text"])
    expected = case["expected"]
    if expected and isinstance(expected[0], dict):
        assert [{"url": u, "indices": [s, e]} for u, s, e in found] == expected
    else:
        assert [u for u, _s, _e in found] == expected


@refdata.requires_reference_data
def test_url_conformance_covers_all_1682_cases() -> None:
    assert len(_url_cases()) == 1682


# ---------------------------------------------------------------------------------------------------------------
# The fast path against the library it short-cuts
# ---------------------------------------------------------------------------------------------------------------


def _library_count(text: str) -> tuple[int, bool, int]:
    r = parse_tweet(text)
    return r.weightedLength, r.valid, r.permillage


def _random_texts(n: int, seed: int) -> list[str]:
    from twitter_text.regexp.emoji import emoji_list

    emoji = [e.emoji for e in emoji_list]
    pieces = [
        "a", "Z", " ", ".", "..", "example.com", "EXAMPLE.COM", "https://foo.bar/x?y=1", "http://t.co/abc",
        "foo.co.uk", "e.g.", "3.14", "v2.0", "日本語", "한국", "€", "…", "™", "\u202a", "\u2066", "\u200d",
        "\ufe0f", "#", "1", "*", "\u20e3", "\n", "\t", "(", ")", "@", "$", "-", "_", "/", ".com", "www.",
        "عربي", "עברית", "\u0301", "\u3000", "\u00a0", "twitter.com/jack", "mañana.es", "ああ.jp", ".рф", ".みんな",
        "xn--p1ai", ".co-", ".com@", ":8080", "/path_(x)", "\u212a", "\ufeff",
    ]
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces + [rng.choice(emoji)]) for _ in range(rng.randint(1, 25))) for _ in range(n)]


def _conformance_texts() -> list[str]:
    texts: list[str] = []
    for doc in (_VALIDATE, _EXTRACT, _TLDS):
        if doc is not None:
            for cases in doc["tests"].values():
                texts.extend(case["text"] for case in cases)
    return texts


def test_windowed_url_and_emoji_extraction_equal_whole_text_library_calls() -> None:
    # twitter_weighted_length runs the library's URL and emoji regexes only on candidate windows; on every
    # conformance text and on random mixes they must find exactly what a whole-text call finds.
    from omnipost.preflight.twitter import _twitter_emoji_spans, _twitter_url_entities

    for text in _conformance_texts() + _random_texts(3000, seed=11):
        norm = unicodedata.normalize("NFC", text)
        whole = [(u["url"], u["indices"][0], u["indices"][1]) for u in extract_urls_with_indices(norm)]
        assert _twitter_url_entities(norm) == whole, text
        emoji = [tuple(e["indices"]) for e in extract_emojis_with_indices(norm) if e["emoji"] not in ("\u00a9", "\u00ae")]
        assert _twitter_emoji_spans(norm) == emoji, text


def test_weighted_length_equals_the_python_port_except_its_two_known_divergences() -> None:
    for text in _conformance_texts() + _random_texts(3000, seed=12):
        if "\r" in text or "\u00a9" in text or "\u00ae" in text:
            continue  # the divergences below
        got = twitter_weighted_length(text)
        assert (got.weighted_length, got.valid, got.permillage) == _library_count(text), text


def test_crlf_and_bare_copyright_follow_official_js_not_the_python_port() -> None:
    # twitter-text-parser normalises line endings and counts a bare ©/® as an emoji; JS and Java do neither.
    assert _library_count("a\r\nb")[0] == 3
    assert twitter_weighted_length("a\r\nb").weighted_length == 4
    assert _library_count("© ®")[0] == 5
    assert twitter_weighted_length("© ®").weighted_length == 3
