"""Bluesky facet detection against the cases from atproto's own rich-text tests (richtext-cases.json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import refdata
from omnipost.preflight.facets import (
    LINK,
    TAG,
    detect_facets,
    detect_mentions,
    utf16_index_to_utf8,
    utf16_ranges_to_utf8,
)
from omnipost.preflight.text import grapheme_len, utf8_len

_CASES = refdata.load_json("bluesky", "richtext-cases.json")


def _section(name: str) -> list[dict[str, Any]]:
    return [] if _CASES is None else list(_CASES[name])


def _ids(section: str) -> Callable[[dict[str, Any]], str]:
    position = {id(case): i for i, case in enumerate(_section(section))}

    def ident(case: dict[str, Any]) -> str:
        return f"{section}[{position[id(case)]}] {refdata.short_id(case['text'])}"

    return ident


def _detected(text: str) -> list[dict[str, Any]]:
    """All facets of `text` in the case file's flat shape, mentions resolved as the upstream test agent does."""
    out: list[dict[str, Any]] = []
    for facet in detect_facets(text):
        (feature,) = facet["features"]
        span = {"byteStart": facet["index"]["byteStart"], "byteEnd": facet["index"]["byteEnd"]}
        if feature["$type"] == LINK:
            out.append({**span, "type": "link", "uri": feature["uri"]})
        else:
            assert feature["$type"] == TAG
            kind = "cashtag" if feature["tag"].startswith("$") else "tag"
            out.append({**span, "type": kind, "tag": feature["tag"]})
    for m in detect_mentions(text):
        out.append({"byteStart": m["byteStart"], "byteEnd": m["byteEnd"], "type": "mention", "handle": m["handle"],
                    "did": f"did:fake:{m['handle']}"})
    return sorted(out, key=lambda f: f["byteStart"])


def _expected(case: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in case["facets"]:
        item = {k: f[k] for k in ("byteStart", "byteEnd", "type") if k in f}
        for key in ("uri", "tag", "handle"):
            if key in f:
                item[key] = f[key]
        if f["type"] == "mention":
            item["did"] = f["resolved_did_in_test"]
        out.append(item)
    return out


def _segments(text: str, facets: list[dict[str, Any]]) -> list[str]:
    """RichText.segments(): the text cut at facet edges, empty pieces dropped."""
    data = text.encode("utf-8")
    pieces, pos = [], 0
    for f in facets:
        pieces += [data[pos : f["byteStart"]], data[f["byteStart"] : f["byteEnd"]]]
        pos = f["byteEnd"]
    pieces.append(data[pos:])
    return [p.decode("utf-8") for p in pieces if p]


@pytest.mark.parametrize("case", refdata.params(_section("detect"), _ids("detect")))
def test_detection_finds_the_links_and_mentions_of_the_reference_cases(case: dict[str, Any]) -> None:
    found = _detected(case["text"])
    assert found == _expected(case)
    assert _segments(case["text"], found) == case["segments"]


@pytest.mark.parametrize("case", refdata.params(_section("tags"), _ids("tags")))
def test_hashtags_match_the_reference_cases(case: dict[str, Any]) -> None:
    assert _detected(case["text"]) == _expected(case)


@pytest.mark.parametrize("case", refdata.params(_section("cashtags"), _ids("cashtags")))
def test_cashtags_match_the_reference_cases(case: dict[str, Any]) -> None:
    # Upstream compares only the facets whose tag starts with "$".
    found = [f for f in _detected(case["text"]) if f.get("tag", "").startswith("$")]
    assert found == _expected(case)


@pytest.mark.parametrize("case", refdata.params(_section("lengths"), _ids("lengths")))
def test_post_lengths_match_the_reference_cases(case: dict[str, Any]) -> None:
    assert grapheme_len(case["text"]) == case["graphemeLength"]
    if "utf8Length" in case:
        assert utf8_len(case["text"]) == case["utf8Length"]


@pytest.mark.parametrize("case", refdata.params(_section("utf16_to_utf8"), _ids("utf16_to_utf8")))
def test_utf16_indices_convert_to_utf8_like_the_reference(case: dict[str, Any]) -> None:
    ranges = [tuple(r) for r in case["utf16"]]
    assert [list(r) for r in utf16_ranges_to_utf8(case["text"], ranges)] == case["utf8"]


@refdata.requires_reference_data
def test_reference_file_has_all_114_cases() -> None:
    assert {k: len(_section(k)) for k in ("detect", "tags", "cashtags", "lengths", "utf16_to_utf8")} == {
        "detect": 40, "tags": 39, "cashtags": 18, "lengths": 15, "utf16_to_utf8": 2,
    }


# ---------------------------------------------------------------------------------------------------------------
# Wire shape and behaviour beyond the reference cases
# ---------------------------------------------------------------------------------------------------------------


def test_facets_have_the_app_bsky_wire_shape_sorted_by_byte_start() -> None:
    text = "#tag then https://bsky.app and $AAPL"
    assert detect_facets(text) == [
        {"index": {"byteStart": 0, "byteEnd": 4}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "tag"}]},
        {"index": {"byteStart": 10, "byteEnd": 26},
         "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://bsky.app"}]},
        {"index": {"byteStart": 31, "byteEnd": 36}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "$AAPL"}]},
    ]


def test_byte_offsets_count_utf8_bytes_before_the_facet() -> None:
    text = "日本 🦋 #タグ example.com"
    facets = detect_facets(text)
    data = text.encode("utf-8")
    spans = [data[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode("utf-8") for f in facets]
    assert spans == ["#タグ", "example.com"]
    assert facets[1]["features"][0]["uri"] == "https://example.com"


def _spans(text: str) -> list[tuple[int, int, str, str]]:
    """(byteStart, byteEnd, kind, value) of every facet and mention candidate, by byteStart."""
    out = []
    for f in detect_facets(text):
        (feature,) = f["features"]
        kind, value = ("link", feature["uri"]) if feature["$type"] == LINK else ("tag", feature["tag"])
        out.append((f["index"]["byteStart"], f["index"]["byteEnd"], kind, value))
    out += [(m["byteStart"], m["byteEnd"], "mention", m["handle"]) for m in detect_mentions(text)]
    return sorted(out, key=lambda span: span[0])


# The expected values below are what @atproto/api 0.21.0 (RichText.detectFacetsWithoutResolution) returns for
# these texts, written out by hand so that the suite does not depend on it.

# A grapheme of 11 code points (e + 10 combining marks) and 21 UTF-8 bytes, and the flag of England (7 code points,
# 28 bytes): 64 of them are a tag of 64 graphemes but over 640 bytes.
_HEAVY_E = "e" + "".join(chr(c) for c in range(0x301, 0x30B))
_ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"


def test_hashtags_are_limited_to_64_graphemes_not_code_points() -> None:
    assert _spans("#" + "🦋" * 64) == [(0, 257, "tag", "🦋" * 64)]
    assert _spans("#" + "🦋" * 65) == []
    assert _spans("#" + "a" * 64 + " #" + "a" * 65) == [(0, 65, "tag", "a" * 64)]
    assert _spans("#" + "e\u0301" * 64) == [(0, 193, "tag", "e\u0301" * 64)]


def test_hashtags_have_no_byte_limit() -> None:
    assert _spans("#" + _HEAVY_E * 64) == [(0, 1345, "tag", _HEAVY_E * 64)]
    assert _spans("#" + _HEAVY_E * 65) == []
    assert _spans("#" + _ENGLAND * 64) == [(0, 1793, "tag", _ENGLAND * 64)]
    assert _spans("#" + _ENGLAND * 65) == []


def test_a_hash_before_a_bare_keycap_mark_is_a_tag_but_not_before_vs16() -> None:
    assert _spans("#\u20e3 #\u20e3abc #\ufe0f\u20e3 #\ufe0f") == [(0, 4, "tag", "\u20e3"), (5, 12, "tag", "\u20e3abc")]


def test_a_zero_width_joiner_ends_a_hashtag() -> None:
    assert _spans("#" + "👨\u200d👩\u200d👧" * 30) == [(0, 5, "tag", "👨")]


def test_links_lose_one_trailing_punctuation_mark_then_one_unbalanced_parenthesis() -> None:
    text = "(see https://a.com/x). or b.org!! (c.net/d_(e))) https://a.com).. https://a.com.)"
    assert _spans(text) == [
        (5, 20, "link", "https://a.com/x"),
        (26, 32, "link", "https://b.org!"),
        (35, 48, "link", "https://c.net/d_(e)))"),
        (49, 64, "link", "https://a.com)."),
        (66, 80, "link", "https://a.com."),
    ]


def test_bare_domains_start_with_a_letter_have_no_hyphens_and_need_a_lower_case_known_tld() -> None:
    text = "my-site.com 9gag.com Example.COM Example.com foo.test e.g. 3.5 v2.0 file.jpg"
    assert _spans(text) == [(33, 44, "link", "https://Example.com")]


def test_punycode_tlds_are_not_known_tlds() -> None:
    assert _spans("example.xn--p1ai @alice.xn--p1ai") == []


def test_a_scheme_is_matched_in_any_case_but_kept_only_when_the_uri_starts_with_lower_case_http() -> None:
    # The upper-case ones are skipped together with the rest of their run, "(b.com" included.
    text = "HTTPS://example.com Http://a.com/(b.com httpS://a.com hTTp://b.com"
    assert _spans(text) == [(40, 53, "link", "httpS://a.com")]


def test_bare_domains_starting_with_http_are_kept_as_written_without_the_tld_check() -> None:
    assert _spans("httpbin.org/get http.notatld https.com") == [
        (0, 15, "link", "httpbin.org/get"),
        (16, 28, "link", "http.notatld"),
        (29, 38, "link", "https.com"),
    ]


def test_a_scheme_followed_only_by_punctuation_is_still_a_link() -> None:
    assert _spans("https://,,, https://. http:// http://x") == [
        (0, 10, "link", "https://,,"),
        (12, 20, "link", "https://"),
        (30, 38, "link", "http://x"),
    ]


def test_cashtags_and_mentions_inside_links_are_kept_as_overlapping_facets() -> None:
    assert _spans("https://example.com/($AAPL) https://example.com/(@alice.bsky.social)") == [
        (0, 27, "link", "https://example.com/($AAPL)"),
        (21, 26, "tag", "$AAPL"),
        (28, 68, "link", "https://example.com/(@alice.bsky.social)"),
        (49, 67, "mention", "alice.bsky.social"),
    ]
    assert _spans("#a($AAPL) (#tag)") == [(0, 8, "tag", "a($AAPL"), (3, 8, "tag", "$AAPL")]
    assert _spans("日本 🦋 https://example.com/($TSLA) ＃タグ") == [
        (12, 39, "link", "https://example.com/($TSLA)"),
        (33, 38, "tag", "$TSLA"),
        (40, 49, "tag", "タグ"),
    ]


def test_mention_candidates_need_a_lower_case_known_tld_or_test_but_no_handle_syntax() -> None:
    text = (
        "@alice.bsky.social @Bob.Example.COM @bob.example.com @carol.TEST @carol.test @dave.notatld (@erin.dev) "
        "mail@frank.com"
    )
    handles = ["alice.bsky.social", "bob.example.com", "carol.test", "erin.dev"]
    assert [m["handle"] for m in detect_mentions(text)] == handles
    long_label = "x" * 70 + ".com"
    text = f"@.com @-x.com @a..com @x-.com @_a.com @a_b.com @{long_label}"
    assert _spans(text) == [
        (0, 5, "mention", ".com"),
        (6, 13, "mention", "-x.com"),
        (14, 21, "mention", "a..com"),
        (22, 29, "mention", "x-.com"),
        (47, 122, "mention", long_label),
    ]


def test_mention_offsets_cover_the_at_sign_in_utf8_bytes() -> None:
    text = "héllo @alice.bsky.social!"
    (m,) = detect_mentions(text)
    assert text.encode("utf-8")[m["byteStart"] : m["byteEnd"]] == b"@alice.bsky.social"


def test_utf16_index_conversion_handles_astral_characters() -> None:
    text = "a😀b"
    assert [utf16_index_to_utf8(text, i) for i in (0, 1, 3, 4)] == [0, 1, 5, 6]


def test_random_texts_give_sorted_facets_on_character_boundaries() -> None:
    import random

    pieces = ["a", " ", "\n", "#", "＃", "$", "@", "(", ")", ".", ",", "!", "tag", "AAPL", "bsky.app", "a.com",
              "https://", "x.test", "日本", "🦋", "👨‍👩‍👧‍👦", "\u200b", "\ufe0f", "\u20e3", "1", "-", "_", "/", "\u3000"]
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        data = text.encode("utf-8")
        facets = detect_facets(text)
        spans = [(f["index"]["byteStart"], f["index"]["byteEnd"]) for f in facets]
        assert spans == sorted(spans)
        assert all(s < e for s, e in spans)
        assert all(s < ps for (s, _e), (ps, _pe) in zip(spans, spans[1:]))  # no two facets start together
        for s, e in spans + [(m["byteStart"], m["byteEnd"]) for m in detect_mentions(text)]:
            data[s:e].decode("utf-8")  # raises if an offset splits a character
