"""Mastodon in preflight: counting as Mastodon counts, an instance's limits read from GET /api/v2/instance and stored on
its accounts, and one validate_post batch judging each Mastodon target by its own instance (issue 13).

The rules at their boundaries are the YAML cases (cases/mastodon.yaml); this file covers what they cannot: the parser,
the unit itself, and the whole path through the MCP tools with accounts in the store."""

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from mcp import Client
from sqlmodel import select

import refdata
from omnipost.app import OmnipostServer
from omnipost.domain import Platform
from omnipost.platforms.mastodon import build_post
from omnipost.platforms.mastodon.limits import (
    DEFAULTS_KEY,
    STOCK,
    STOCK_MIME_TYPES,
    InstanceLimits,
    defaults_entry,
    from_instance,
    limits_of,
)
from omnipost.preflight.model import AccountInfo, MediaRef, ResolvedTarget
from omnipost.preflight.rules import RULES
from omnipost.preflight.text import MASTODON_CHARS, UNITS, mastodon_countable, mastodon_length, mastodon_unit
from omnipost.store.db import new_id
from omnipost.store.models import Account, Profile
from toolresult import ok

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
LONG_URL = "https://example.com/a/long/path/that/is/much/longer/than/twenty-three"
FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"


# --- counting ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, length", [
    ("", 0),
    ("   \n", 0),  # blank text counts nothing (Ruby's blank?)
    ("Hello", 5),
    (LONG_URL, 23),
    ("http://x.co", 23),  # a URL shorter than 23 still counts 23
    (f"see {LONG_URL} and {LONG_URL}", 4 + 23 + 5 + 23),
    ("example.com/abcdefghij", 22),  # no scheme: not a URL to Mastodon, counted in full
    ("@alice@mastodon.example", 6),  # a remote mention counts as @alice
    ("hi @alice@mastodon.example!", 10),
    ("@alice", 6),
    ("mail a@b.example", 16),  # an address is not a mention (a word character precedes the @)
    (f"{LONG_URL}/@alice@host.example", 23),  # the mention inside the URL is part of the URL
    (FAMILY, 1),  # a ZWJ sequence is one grapheme cluster
    ("\U0001F1EF\U0001F1F5\U0001F44D\U0001F3FD", 2),  # a flag and a toned thumb
    ("e\u0301", 1),
])
def test_mastodon_length_counts_as_mastodon_does(text: str, length: int) -> None:
    assert mastodon_length(text) == length
    assert MASTODON_CHARS.count(text) == length


def test_an_instance_may_reserve_another_url_length() -> None:
    assert mastodon_length(f"a {LONG_URL}", url_length=50) == 52
    assert mastodon_unit(50).count(LONG_URL) == 50 and mastodon_unit(23) is MASTODON_CHARS
    assert mastodon_countable(f"x {LONG_URL} @bob@b.example", url_length=3) == "x xxx @bob"


def test_the_content_warning_counts_into_the_length() -> None:
    assert mastodon_length("a" * 498, spoiler="CW") == 500
    assert mastodon_length("", spoiler="CW") == 2
    assert mastodon_length(LONG_URL, spoiler=LONG_URL) == len(LONG_URL) + 23  # a URL in the warning counts in full


def test_the_unit_is_registered() -> None:
    assert UNITS["mastodon_chars"] is MASTODON_CHARS


# --- instance limits ----------------------------------------------------------------------------------------------


def _instance_examples() -> list[dict[str, Any]]:
    """The /api/v2/instance example bodies of the Mastodon API 4.7.0 OpenAPI document."""
    doc = json.loads(refdata.path("platform-specs", "mastodon.openapi.json").read_text(encoding="utf-8"))
    content = doc["paths"]["/api/v2/instance"]["get"]["responses"]["200"]["content"]["application/json"]
    out: list[dict[str, Any]] = []
    for example in (content.get("examples") or {}).values():
        if "$ref" in example:  # "#/components/examples/<name>"
            example = doc["components"]["examples"][example["$ref"].rsplit("/", 1)[-1]]
        out.append(example["value"])
    return out


@refdata.requires_reference_data
def test_the_openapi_example_parses_to_the_stock_limits() -> None:
    examples = _instance_examples()
    assert examples, "no example body for GET /api/v2/instance"
    limits = from_instance("https://mastodon.social/", examples[0], NOW)
    assert (limits.url, limits.checkedAt, limits.host) == ("https://mastodon.social", NOW.isoformat(), "mastodon.social")
    assert limits.model_dump(exclude={"url", "checkedAt"}) == STOCK.model_dump(exclude={"url", "checkedAt"})


def test_stock_limits_are_platforms_md_section_10() -> None:
    assert (STOCK.maxCharacters, STOCK.charactersReservedPerUrl, STOCK.maxMediaAttachments) == (500, 23, 4)
    assert (STOCK.imageSizeLimit, STOCK.videoSizeLimit, STOCK.descriptionLimit) == (16 * 2**20, 99 * 2**20, 1500)
    assert "image/jpeg" in STOCK.supportedMimeTypes and "video/mp4" in STOCK.supportedMimeTypes
    assert STOCK.url is None and STOCK.checkedAt is None


def test_an_instance_answer_sets_every_limit() -> None:
    body = {"domain": "big.example", "configuration": {
        "statuses": {"max_characters": 5000, "characters_reserved_per_url": 30, "max_media_attachments": 8},
        "media_attachments": {"supported_mime_types": ["image/jpeg", "Video/MP4"], "image_size_limit": 1000,
                              "image_matrix_limit": 2000, "video_size_limit": 3000, "video_matrix_limit": 4000,
                              "video_frame_rate_limit": 60, "description_limit": 420},
        "polls": {"max_options": 10, "max_characters_per_option": 100, "min_expiration": 60, "max_expiration": 600}}}
    limits = from_instance("https://big.example", body, NOW)
    assert limits == InstanceLimits(
        url="https://big.example", checkedAt=NOW.isoformat(), maxCharacters=5000, charactersReservedPerUrl=30,
        maxMediaAttachments=8, supportedMimeTypes=("image/jpeg", "video/mp4"), imageSizeLimit=1000, imageMatrixLimit=2000,
        videoSizeLimit=3000, videoMatrixLimit=4000, videoFrameRateLimit=60, descriptionLimit=420, pollMaxOptions=10,
        pollMaxCharactersPerOption=100, pollMinExpiration=60, pollMaxExpiration=600)


@pytest.mark.parametrize("body", [
    {},
    {"configuration": None},
    {"configuration": []},
    {"configuration": {"statuses": "500"}},
    {"configuration": {"statuses": {"max_characters": "5000", "max_media_attachments": True,
                                    "characters_reserved_per_url": -1},
                       "media_attachments": {"supported_mime_types": "image/jpeg", "image_size_limit": None,
                                             "description_limit": 12.5, "video_size_limit": 0},
                       "polls": {"max_options": [4]}}},
    {"configuration": {"media_attachments": {"supported_mime_types": [1, None, "nonsense"]}}},
])
def test_missing_or_ill_typed_values_fall_back_to_stock(body: dict[str, Any]) -> None:
    limits = from_instance("https://odd.example", body, NOW)
    assert limits.model_dump(exclude={"url", "checkedAt"}) == STOCK.model_dump(exclude={"url", "checkedAt"})
    assert limits.url == "https://odd.example"


def test_a_json_float_that_is_an_integer_is_taken() -> None:
    body = {"configuration": {"statuses": {"max_characters": 1000.0}}}
    assert from_instance("https://f.example", body, NOW).maxCharacters == 1000


def test_limits_of_an_account_round_trip_through_its_defaults() -> None:
    big = InstanceLimits(url="https://big.example", checkedAt=NOW.isoformat(), maxCharacters=5000)
    entry = defaults_entry(big)
    assert json.loads(json.dumps(entry)) == entry and entry["supportedMimeTypes"] == list(STOCK_MIME_TYPES)
    account = AccountInfo(id="acc_1", platform=Platform.MASTODON, defaults={DEFAULTS_KEY: entry})
    assert limits_of(account) == big
    assert limits_of(None) is STOCK
    assert limits_of(AccountInfo(id="acc_2", platform=Platform.MASTODON)) is STOCK
    assert limits_of(AccountInfo(id="acc_3", platform=Platform.MASTODON, defaults={DEFAULTS_KEY: "garbage"})) is STOCK
    partial = limits_of(AccountInfo(id="acc_4", platform=Platform.MASTODON,
                                    defaults={DEFAULTS_KEY: {"maxCharacters": 800, "descriptionLimit": "lots"}}))
    assert (partial.maxCharacters, partial.descriptionLimit) == (800, 1500)


# --- measure and preview ------------------------------------------------------------------------------------------


def _target(text: str, *, account: AccountInfo | None = None, title: str | None = None, media: int = 0,
            visibility: str | None = None, options: dict[str, Any] | None = None) -> ResolvedTarget:
    refs = tuple(MediaRef(i, "mediaId", None, None, media_id=f"med_{i}") for i in range(media))
    return ResolvedTarget(index=0, platform=Platform.MASTODON, account=account, text=text, media=refs, first_comment=None,
                          thread=(), title=title, visibility=visibility, options=options or {})


def test_measure_is_the_targets_own_instance() -> None:
    rules = RULES[Platform.MASTODON]
    wide = AccountInfo(id="acc_w", platform=Platform.MASTODON, defaults={DEFAULTS_KEY: defaults_entry(
        InstanceLimits(url="https://wide.example", maxCharacters=5000, charactersReservedPerUrl=50))})
    unit, length, limit = rules.measure_of(_target(f"a {LONG_URL}", title="CW", account=wide))
    assert (unit.name, length, limit) == ("mastodon_chars", 2 + 2 + 50, 5000)
    unit, length, limit = rules.measure_of(_target(f"a {LONG_URL}", title="CW"))
    assert (unit.name, length, limit) == ("mastodon_chars", 2 + 2 + 23, 500)


def test_the_preview_is_the_statuses_body() -> None:
    assert build_post(_target("Hello")) == {"status": "Hello"}
    body = build_post(_target("Hello", title="Spoilers", media=2, visibility="connections_only",
                              options={"language": "en", "sensitive": True}))
    assert body == {"status": "Hello", "media_ids": ["<media id of media[0] from POST /api/v2/media>",
                                                      "<media id of media[1] from POST /api/v2/media>"],
                    "visibility": "private", "spoiler_text": "Spoilers", "sensitive": True, "language": "en"}
    assert build_post(_target("Hi", visibility="public", options={"visibility": "unlisted"}))["visibility"] == "unlisted"


# --- through the MCP tools ----------------------------------------------------------------------------------------


async def _mastodon_account(server: OmnipostServer, handle: str, limits: InstanceLimits) -> str:
    """A Mastodon account row as the connect flow leaves it (its instance's limits in its defaults)."""
    async with server.runtime.db.session() as s:
        profile = (await s.exec(select(Profile).where(Profile.name == "default"))).one()
        account = Account(id=new_id("acc"), profile_id=profile.id, platform="mastodon", handle=handle,
                          defaults={DEFAULTS_KEY: defaults_entry(limits)}, health="active", created_at=NOW)
        s.add(account)
        await s.commit()
        return account.id


@pytest.mark.anyio
async def test_one_batch_judges_each_mastodon_target_by_its_own_instance(server: OmnipostServer, client: Client) -> None:
    await client.call_tool("list_accounts", {})  # opens the runtime
    small = await _mastodon_account(server, "ann@small.example", InstanceLimits(
        url="https://small.example", checkedAt=NOW.isoformat(), maxCharacters=500))
    big = await _mastodon_account(server, "bo@big.example", InstanceLimits(
        url="https://big.example", checkedAt=NOW.isoformat(), maxCharacters=5000))
    text = "a" * 1000
    result = ok(await client.call_tool("validate_post", {"text": text, "targets": [
        {"accountId": big}, {"accountId": small}, {"platform": "mastodon"}]}))
    on_big, on_small, stock = result["results"]
    assert result["valid"] is False
    assert (on_big["valid"], on_big["errors"]) == (True, [])
    assert on_big["measure"] == {"unit": "mastodon_chars", "length": 1000, "limit": 5000}
    assert on_small["valid"] is False and on_small["measure"] == {"unit": "mastodon_chars", "length": 1000, "limit": 500}
    (error,) = on_small["errors"]
    assert (error["code"], error["rule"], error["actual"], error["limit"]) == (
        "preflight_failed", "mastodon.text.max_characters", 1000, 500)
    assert error["path"] == "targets[1].text" and "500" in error["remediation"] and "500" in error["message"]
    assert stock["measure"]["limit"] == 500 and [e["rule"] for e in stock["errors"]] == ["mastodon.text.max_characters"]
    assert on_big["preview"] == {"status": text} and on_big["platform"] == "mastodon" and on_big["accountId"] == big


@pytest.mark.anyio
async def test_the_content_warning_and_options_reach_the_preview_and_the_count(server: OmnipostServer, client: Client) -> None:
    await client.call_tool("list_accounts", {})
    small = await _mastodon_account(server, "ann@small.example", InstanceLimits(url="https://small.example", maxCharacters=20))
    result = ok(await client.call_tool("validate_post", {"targets": [{
        "accountId": small, "text": "ten chars!", "title": "ten chars?!",
        "mastodon": {"language": "de", "sensitive": True, "visibility": "unlisted"}}]}))
    (target,) = result["results"]
    assert target["measure"] == {"unit": "mastodon_chars", "length": 21, "limit": 20}
    assert [(e["rule"], e["actual"], e["limit"]) for e in target["errors"]] == [("mastodon.text.max_characters", 21, 20)]
    assert target["preview"] == {"status": "ten chars!", "visibility": "unlisted", "spoiler_text": "ten chars?!",
                                 "sensitive": True, "language": "de"}
    assert not [w for w in target["warnings"] if w["code"] == "title.unsupported"]


@pytest.mark.anyio
async def test_explain_shows_the_stock_limit(client: Client) -> None:
    body = ok(await client.call_tool("explain_preflight_rule", {"rule_id": "mastodon.text.max_characters"}))
    assert (body["id"], body["limit"], body["platform"]) == ("mastodon.text.max_characters", 500, "mastodon")
    assert "23" in body["unit"]
    alt = ok(await client.call_tool("explain_preflight_rule", {"rule_id": "mastodon.media.alt_text_max_characters"}))
    assert alt["limit"] == 1500
    listed = ok(await client.call_tool("list_preflight_rules", {"platform": "mastodon"}))
    ids = {r["id"] for r in listed["rules"]}
    assert {"mastodon.text.max_characters", "mastodon.media.count_max", "media.unknown"} <= ids
    assert not any(i.startswith("twitter.") for i in ids)
