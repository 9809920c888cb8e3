"""The MCP surface of issue 2, end to end through the in-memory Client."""

import json
from typing import Any

import pytest
from mcp import Client

from mediagen import b64, make_image
from omnipost.app import build_server
from omnipost.config import Settings
from omnipost.preflight.rules import CATALOGUE

pytestmark = pytest.mark.anyio

PLATFORMS = ["bluesky", "x", "threads", "linkedin", "instagram", "facebook", "pinterest"]


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    assert result.structured_content is not None
    return result.structured_content["error"]


async def test_tools_are_listed_with_annotations_and_output_schemas(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"validate_post", "list_preflight_rules", "explain_preflight_rule"} <= set(tools)
    for tool in tools.values():
        assert tool.annotations is not None and tool.annotations.read_only_hint is not None
        assert tool.output_schema is not None
        assert len(tool.description or "") > 80
    for name in ("validate_post", "list_preflight_rules", "explain_preflight_rule", "list_accounts", "get_post", "list_posts"):
        assert tools[name].annotations.read_only_hint is True  # type: ignore[union-attr]
    for name in ("publish_post", "publish_draft", "delete_post"):
        assert tools[name].annotations.open_world_hint is True and tools[name].annotations.read_only_hint is False  # type: ignore[union-attr]
    # validate_post advertises the request's own fields at top level
    schema = tools["validate_post"].input_schema
    assert "targets" in schema["properties"] and "targets" in schema["required"]


async def test_validate_post_reports_every_violation_of_25_targets_with_correct_lengths(client: Client) -> None:
    bluesky_text = "a" * 290 + "🇯🇵" * 27  # 317 graphemes
    x_text = "日本語" * 100  # 300 characters, each weighing 2 = 600
    targets: list[dict[str, Any]] = []
    for i in range(25):
        p = PLATFORMS[i % len(PLATFORMS)]
        targets.append({"platform": p})
    request = {
        "text": "Shared default text https://example.com/launch",
        "targets": targets,
        "platforms": {"bluesky": {"text": bluesky_text}, "x": {"text": x_text}},
    }
    result = await client.call_tool("validate_post", request)
    assert not result.is_error
    body = result.structured_content
    assert body is not None
    assert body["valid"] is False
    assert [r["index"] for r in body["results"]] == list(range(25))
    by_platform: dict[str, list[dict[str, Any]]] = {}
    for r in body["results"]:
        by_platform.setdefault(r["platform"], []).append(r)
    for r in by_platform["bluesky"]:
        assert r["measure"] == {"unit": "graphemes", "length": 317, "limit": 300}
        assert [e["rule"] for e in r["errors"]] == ["bluesky.text.max_graphemes"]
        assert r["errors"][0]["actual"] == 317 and r["errors"][0]["limit"] == 300
        assert r["errors"][0]["remediation"].startswith("Text is 317 graphemes; Bluesky allows 300: cut 17")
    for r in by_platform["x"]:
        assert r["measure"] == {"unit": "twitter_weighted", "length": 600, "limit": 280}
        assert [e["rule"] for e in r["errors"]] == ["twitter.text.max_graphemes"]
    for r in by_platform["instagram"]:
        assert "instagram.media.required" in [e["rule"] for e in r["errors"]]
    for r in by_platform["pinterest"]:
        assert {"pinterest.media.required", "pinterest.board.required"} <= {e["rule"] for e in r["errors"]}
    for name in ("threads", "linkedin", "facebook"):
        for r in by_platform[name]:
            assert r["valid"] is True and r["errors"] == []
            assert r["measure"]["length"] == len("Shared default text https://example.com/launch")
    # every error is the full public object
    err = by_platform["bluesky"][0]["errors"][0]
    assert set(err) >= {"code", "message", "rule", "remediation", "docUrl", "ruleUrl", "retryable"}
    assert err["code"] == "preflight_failed" and err["ruleUrl"] == "omnipost://rules/bluesky.text.max_graphemes"


async def test_bluesky_preview_is_the_post_record_with_byte_offset_facets(client: Client) -> None:
    text = "Ünïcödé launch → https://example.com/a #omnipost"
    result = await client.call_tool("validate_post", {"text": text, "targets": [{"platform": "bluesky"}]})
    record = result.structured_content["results"][0]["preview"]["record"]  # type: ignore[index]
    assert record["$type"] == "app.bsky.feed.post" and record["text"] == text
    raw = text.encode("utf-8")
    spans = {f["features"][0]["$type"]: raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode() for f in record["facets"]}
    assert spans == {"app.bsky.richtext.facet#link": "https://example.com/a", "app.bsky.richtext.facet#tag": "#omnipost"}


async def test_inline_image_is_probed_and_its_size_checked(client: Client) -> None:
    big = b64(make_image("png", 400, 300, size=2_100_000))
    result = await client.call_tool(
        "validate_post",
        {"text": "Photo", "media": [{"bytesBase64": big, "altText": "A chart"}], "targets": [{"platform": "bluesky"}, {"platform": "x"}]},
    )
    body = result.structured_content
    assert body is not None
    bsky, x = body["results"]
    assert [e["rule"] for e in bsky["errors"]] == ["bluesky.media.image_size_max"]
    assert bsky["errors"][0]["actual"] == 2_100_000
    assert x["valid"] is True  # X allows 5 MB static images
    assert bsky["preview"]["record"]["embed"]["images"][0]["aspectRatio"] == {"width": 400, "height": 300}


async def test_schema_problem_is_validation_failed_with_the_json_path(client: Client) -> None:
    request = {
        "text": "hi",
        "targets": [{"platform": "bluesky"}] * 3 + [{"platform": "x", "media": [{"url": "ftp://example.com/a.png"}]}],
    }
    err = error_of(await client.call_tool("validate_post", request))
    assert err["code"] == "validation_failed"
    assert err["rule"] == "targets[3].media[0]"
    assert err["requestId"].startswith("req_")


async def test_unknown_field_and_too_many_targets_are_validation_failed(client: Client) -> None:
    err = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": [{"platform": "x", "txet": "typo"}]}))
    assert err["code"] == "validation_failed" and err["rule"] == "targets[0].txet"
    err = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": [{"platform": "x"}] * 26}))
    assert err["code"] == "validation_failed" and err["rule"] == "targets"
    err = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": [{"platform": "myspace"}]}))
    assert err["rule"] == "targets[0].platform"


async def test_connect_account_says_and_enforces_which_platform_takes_which_argument(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    properties = tools["connect_account"].input_schema["properties"]
    for argument, platform in [("appPassword", "bluesky"), ("pdsUrl", "bluesky"), ("emulates", "sandbox"), ("sandboxMode", "sandbox")]:
        assert properties[argument]["description"].startswith(f"{platform} only: "), argument
    for args, path in [({"platform": "sandbox", "emulates": "x", "appPassword": "abcd-efgh-ijkl-mnop"}, "appPassword"),
                       ({"platform": "sandbox", "emulates": "x", "pdsUrl": "https://pds.example.com"}, "pdsUrl"),
                       ({"platform": "bluesky", "appPassword": "abcd-efgh-ijkl-mnop", "emulates": "x"}, "emulates"),
                       ({"platform": "bluesky", "appPassword": "abcd-efgh-ijkl-mnop", "sandboxMode": "own_id"}, "sandboxMode")]:
        err = error_of(await client.call_tool("connect_account", {"handle": "someone.test", **args}))
        assert (err["code"], err["rule"]) == ("validation_failed", path), args
    assert (await client.call_tool("list_accounts", {})).structured_content == {"accounts": []}  # nothing was connected


async def test_publish_now_with_scheduled_at_is_mode_conflict(client: Client) -> None:
    request = {"text": "hi", "targets": [{"platform": "x"}], "publishNow": True, "scheduledAt": "2030-01-01T00:00:00Z"}
    err = error_of(await client.call_tool("publish_post", request))
    assert (err["code"], err["rule"]) == ("validation_failed", "mode_conflict")
    # validate_post takes no mode: publishNow is not one of its arguments, and is refused as such
    err = error_of(await client.call_tool("validate_post", request))
    assert (err["code"], err["rule"], err["path"]) == ("validation_failed", "publishNow", "publishNow")


async def test_scheduled_time_in_the_past_or_unparseable_is_refused(client: Client) -> None:
    past = {"text": "hi", "targets": [{"platform": "x"}], "scheduledAt": "2026-11-24T11:00:00Z"}
    assert error_of(await client.call_tool("validate_post", past))["rule"] == "scheduledAt"
    bad = {"text": "hi", "targets": [{"platform": "x"}], "scheduledAt": "tomorrow"}
    assert error_of(await client.call_tool("validate_post", bad))["rule"] == "scheduledAt"
    zone = {"text": "hi", "targets": [{"platform": "x"}], "scheduledAt": "2026-12-01T09:00:00", "timezone": "Mars/Olympus"}
    assert error_of(await client.call_tool("validate_post", zone))["rule"] == "timezone"
    ok = {"text": "hi", "targets": [{"platform": "x"}], "scheduledAt": "2026-12-01T09:00:00", "timezone": "Europe/Paris"}
    assert (await client.call_tool("validate_post", ok)).is_error is False


async def test_unknown_account_is_not_found(client: Client) -> None:
    err = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": [{"accountId": "acc_nope"}]}))
    assert (err["code"], err["rule"]) == ("not_found", "targets[0].accountId")


async def test_unknown_media_id_is_a_media_unknown_violation(client: Client) -> None:
    result = await client.call_tool("validate_post", {"text": "hi", "media": [{"mediaId": "med_missing"}], "targets": [{"platform": "x"}]})
    errors = result.structured_content["results"][0]["errors"]  # type: ignore[index]
    assert [e["rule"] for e in errors] == ["media.unknown"]
    assert errors[0]["path"] == "targets[0].media[0].mediaId"


async def test_platform_overrides_fold_in_and_the_target_wins(client: Client) -> None:
    request = {
        "text": "default",
        "platforms": {"x": {"text": "from platforms.x", "replySettings": "following"}},
        "targets": [{"platform": "x"}, {"platform": "twitter", "text": "own text"}, {"platform": "bluesky"}],
    }
    results = (await client.call_tool("validate_post", request)).structured_content["results"]  # type: ignore[index]
    assert results[0]["preview"] == {"text": "from platforms.x", "reply_settings": "following"}
    assert results[1]["preview"]["text"] == "own text"
    assert results[2]["preview"]["record"]["text"] == "default"


async def test_generic_visibility_a_platform_lacks_names_the_values_it_has(client: Client) -> None:
    result = await client.call_tool(
        "validate_post", {"text": "hi", "visibility": "connections_only", "targets": [{"platform": "linkedin"}, {"platform": "x"}]}
    )
    li, x = result.structured_content["results"]  # type: ignore[index]
    assert li["valid"] is True and li["preview"]["visibility"] == "CONNECTIONS"
    assert [e["rule"] for e in x["errors"]] == ["twitter.visibility.enum"]
    assert "public" in x["errors"][0]["remediation"]


async def test_list_preflight_rules_lists_every_rule_and_filters_by_platform(client: Client) -> None:
    everything = (await client.call_tool("list_preflight_rules", {})).structured_content
    assert everything is not None
    assert {r["id"] for r in everything["rules"]} == set(CATALOGUE)
    x_rules = (await client.call_tool("list_preflight_rules", {"platform": "x"})).structured_content
    ids = {r["id"] for r in x_rules["rules"]}  # type: ignore[index]
    assert "twitter.text.max_graphemes" in ids and "media.unknown" in ids and "bluesky.text.max_graphemes" not in ids
    err = error_of(await client.call_tool("list_preflight_rules", {"platform": "friendster"}))
    assert (err["code"], err["rule"]) == ("validation_failed", "platform")


async def test_every_rule_can_be_explained_and_unknown_ids_are_not_found(client: Client) -> None:
    for rule_id in CATALOGUE:
        result = await client.call_tool("explain_preflight_rule", {"rule_id": rule_id})
        assert not result.is_error, rule_id
        body = result.structured_content
        assert body is not None and body["id"] == rule_id
        assert body["summary"] and body["why"] and body["remediation"] and body["checked"]
    err = error_of(await client.call_tool("explain_preflight_rule", {"rule_id": "bluesky.text.max_words"}))
    assert err["code"] == "not_found"


async def test_unexpected_exception_is_internal_error_with_request_id_and_no_traceback(settings: Settings) -> None:
    class BrokenMedia:
        async def get_media(self, media_id: str, profile_id: str | None) -> None:
            raise RuntimeError("disk on fire at /secret/path/db.sqlite")

    async with Client(build_server(settings, media=BrokenMedia())) as c:
        result = await c.call_tool("validate_post", {"text": "hi", "media": [{"mediaId": "med_1"}], "targets": [{"platform": "x"}]})
    err = error_of(result)
    assert err["code"] == "internal_error" and err["requestId"].startswith("req_")
    text = json.dumps(err) + result.content[0].text  # type: ignore[union-attr]
    assert "/secret/path" not in text and "Traceback" not in text and "RuntimeError" not in text


async def test_rule_catalogue_is_a_resource_and_each_rule_a_template_instance(client: Client) -> None:
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert "omnipost://rules" in resources
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert "omnipost://rules/{ruleId}" in templates
    catalogue = json.loads((await client.read_resource("omnipost://rules")).contents[0].text)  # type: ignore[union-attr]
    assert catalogue["count"] == len(CATALOGUE)
    page = (await client.read_resource("omnipost://rules/bluesky.text.max_graphemes")).contents[0].text  # type: ignore[union-attr]
    assert page.startswith("# bluesky.text.max_graphemes") and "300" in page


async def test_prompts_come_from_files_and_render_their_arguments(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert {"adapt_post", "fix_preflight", "split_thread"} <= set(prompts)
    got = await client.get_prompt("split_thread", {"text": "A long story.", "platform": "bluesky"})
    text = got.messages[0].content.text  # type: ignore[union-attr]
    assert "A long story." in text and "${arguments" not in text


async def test_arguments_sent_as_json_text_are_decoded_but_text_fields_stay_text(client: Client) -> None:
    # Some clients send nested arguments as JSON strings; `text` that looks like JSON is still the post's text.
    request = {"text": '["not", "a", "list"]', "targets": json.dumps([{"platform": "bluesky"}, {"platform": "x"}])}
    body = (await client.call_tool("validate_post", request)).structured_content
    assert body is not None and [r["platform"] for r in body["results"]] == ["bluesky", "x"]
    assert body["results"][0]["preview"]["record"]["text"] == '["not", "a", "list"]'
    err = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": "[{\"platform\": \"myspace\"}]"}))
    assert (err["code"], err["rule"]) == ("validation_failed", "targets[0].platform")
    err = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": "not json"}))
    assert (err["code"], err["rule"]) == ("validation_failed", "targets")


async def test_text_block_is_the_structured_result_as_compact_json(client: Client) -> None:
    result = await client.call_tool("validate_post", {"text": "hi 👋🏽", "targets": [{"platform": "bluesky"}]})
    assert len(result.content) == 1 and result.content[0].type == "text"
    text = result.content[0].text
    assert json.loads(text) == result.structured_content
    assert "\n" not in text and "👋🏽" in text  # compact, and not \u-escaped (fewer tokens for the model)
