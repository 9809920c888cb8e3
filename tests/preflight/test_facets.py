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


def test_hashtags_longer_than_64_graphemes_are_not_tags() -> None:
    assert [f["features"][0]["tag"] for f in detect_facets("#" + "🦋" * 64)] == ["🦋" * 64]
    assert detect_facets("#" + "🦋" * 65) == []


def test_links_strip_repeated_trailing_punctuation_and_unbalanced_parentheses() -> None:
    uris = [f["features"][0]["uri"] for f in detect_facets("(see https://a.com/x). or b.org!! (c.net/d_(e)))")]
    assert uris == ["https://a.com/x", "https://b.org", "https://c.net/d_(e)"]


def test_bare_domains_need_a_known_tld_in_any_case() -> None:
    uris = [f["features"][0]["uri"] for f in detect_facets("my-site.com Example.COM file.jpg e.g. 3.5 v2.0 foo.test")]
    assert uris == ["https://my-site.com", "https://Example.COM"]


def test_a_scheme_alone_is_not_a_link() -> None:
    assert detect_facets("https://,,, http://") == []


def test_cashtags_inside_links_are_dropped_as_overlaps() -> None:
    facets = detect_facets("https://example.com/($AAPL)")
    assert [f["features"][0]["$type"] for f in facets] == [LINK]


def test_mention_candidates_need_a_valid_handle_ending_in_a_known_tld_or_test() -> None:
    text = "@alice.bsky.social @Bob.Example.COM @carol.test @dave.notatld @.com @-x.com (@erin.dev) mail@frank.com"
    assert [m["handle"] for m in detect_mentions(text)] == ["alice.bsky.social", "Bob.Example.COM", "carol.test", "erin.dev"]


def test_mentions_inside_links_are_not_candidates() -> None:
    assert detect_mentions("https://example.com/(@alice.bsky.social)") == []


def test_mention_offsets_cover_the_at_sign_in_utf8_bytes() -> None:
    text = "héllo @alice.bsky.social!"
    (m,) = detect_mentions(text)
    assert text.encode("utf-8")[m["byteStart"] : m["byteEnd"]] == b"@alice.bsky.social"


def test_utf16_index_conversion_handles_astral_characters() -> None:
    text = "a😀b"
    assert [utf16_index_to_utf8(text, i) for i in (0, 1, 3, 4)] == [0, 1, 5, 6]


def test_random_texts_give_non_overlapping_facets_on_character_boundaries() -> None:
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
        assert all(s < e <= ps for (s, e), (ps, _pe) in zip(spans, spans[1:]))
        for s, e in spans + [(m["byteStart"], m["byteEnd"]) for m in detect_mentions(text)]:
            data[s:e].decode("utf-8")  # raises if an offset splits a character
