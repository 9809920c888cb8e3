"""The context budget of tools/list (issue 11 item 1): both sizes under budget, each post tool advertising exactly
the arguments it accepts, and what the schemas no longer spell out still validated in full, with field paths."""

import json
from typing import Any

import jsonschema
import pytest
from mcp import Client

from omnipost.request import OPTION_OBJECTS, PostRequest, ScheduleRequest, ValidateRequest
from omnipost.toolschema import COMPACT_ERROR, CORE_BUDGET, LIST_BUDGET, PLATFORM_OPTIONS_URI, context_sizes

pytestmark = pytest.mark.anyio

POST_TOOLS = {"publish_post": PostRequest, "schedule_post": ScheduleRequest, "validate_post": ValidateRequest}


async def listing(client: Client) -> dict[str, Any]:
    return (await client.list_tools()).model_dump(mode="json", by_alias=True, exclude_none=True)


async def tools_of(client: Client) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in (await listing(client))["tools"]}


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    return result.structured_content["error"]


def keywords(schema: Any) -> list[tuple[str, Any]]:
    """Every (keyword, value) of every subschema (a `properties` map's keys are names, not keywords)."""
    out: list[tuple[str, Any]] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            out.append((key, value))
            if key in ("properties", "$defs") and isinstance(value, dict):
                for sub in value.values():
                    out += keywords(sub)
            elif key in ("items", "additionalProperties", "not"):
                out += keywords(value)
            elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
                for sub in value:
                    out += keywords(sub)
    return out


async def test_tools_list_is_within_the_context_budget(client: Client) -> None:
    sizes = context_sizes(await listing(client))
    assert sizes["core"] <= CORE_BUDGET, (sizes["core"], sorted(sizes["tools"].items(), key=lambda t: -t[1]["core"])[:5])
    assert sizes["list"] <= LIST_BUDGET, (sizes["list"], sorted(sizes["tools"].items(), key=lambda t: -t[1]["output"])[:5])
    assert CORE_BUDGET <= 32_000 and LIST_BUDGET <= 80_000  # the issue's budgets; lower them, never raise them here


async def test_each_post_tool_advertises_exactly_the_arguments_its_model_accepts(client: Client) -> None:
    tools = await tools_of(client)
    for name, model in POST_TOOLS.items():
        schema = tools[name]["inputSchema"]
        assert set(schema["properties"]) == set(model.model_fields), name
        assert set(schema["required"]) == {n for n, f in model.model_fields.items() if f.is_required()}, name
        assert schema["additionalProperties"] is False, name
    schedule, validate, publish = (tools[n]["inputSchema"] for n in ("schedule_post", "validate_post", "publish_post"))
    assert set(schedule["required"]) == {"targets", "scheduledAt"}
    assert not {"draft", "publishNow", "dryRun"} & set(schedule["properties"])
    assert not {"idempotencyKey", "draft", "publishNow", "dryRun", "skipDuplicateCheck"} & set(validate["properties"])
    assert validate["required"] == ["targets"]
    # publish_post takes every mode (scheduledAt queues, as PRODUCT.md §2.2 says): it advertises all of them
    assert {"scheduledAt", "timezone", "draft", "publishNow", "dryRun", "idempotencyKey"} <= set(publish["properties"])
    assert publish["required"] == ["targets"]


async def test_a_post_tool_field_is_advertised_as_its_own_model_generates_it(client: Client) -> None:
    """The post tools' schemas are cut from PostRequest's (generated once, for start-up time): a field a tool's model
    declares itself must have the type PostRequest gives it (the inherited ones are PostRequest's own)."""
    from omnipost.request import _PostBody
    from omnipost.toolschema import slim_input

    tools = await tools_of(client)
    for name, model in POST_TOOLS.items():
        own = slim_input(model.model_json_schema(), finish=False)["properties"]
        for field in set(model.model_fields) - set(_PostBody.model_fields):
            assert tools[name]["inputSchema"]["properties"][field] == own[field], (name, field)


def target_schema(schema: dict[str, Any]) -> dict[str, Any]:
    target = schema["properties"]["targets"]["items"]
    return schema["$defs"][target["$ref"].removeprefix("#/$defs/")] if "$ref" in target else target


async def test_targets_say_which_need_an_account_and_name_every_option_object(client: Client) -> None:
    tools = await tools_of(client)
    for name in POST_TOOLS:
        target = target_schema(tools[name]["inputSchema"])
        assert set(OPTION_OBJECTS) <= set(target["properties"]), name
        assert target["additionalProperties"] is False
        for key in OPTION_OBJECTS:  # each named in the one-line summary, e.g. "instagram {contentType: feed|story|reel}"
            assert f"{key} {{" in target["description"], (name, key)
        assert PLATFORM_OPTIONS_URI in target["description"]
        platforms = tools[name]["inputSchema"]["properties"]["platforms"]
        assert {"x", "twitter", "instagram", "pinterest"} <= set(platforms["properties"]) and platforms["additionalProperties"] is False
    assert "instagram {contentType: feed|story|reel}" in target_schema(tools["validate_post"]["inputSchema"])["description"]
    assert "required" not in target_schema(tools["validate_post"]["inputSchema"])  # a platform alone will do
    for name in ("publish_post", "schedule_post"):
        assert target_schema(tools[name]["inputSchema"])["required"] == ["accountId"]


async def test_input_schemas_carry_no_generated_titles_and_no_null_branches(client: Client) -> None:
    for name, tool in (await tools_of(client)).items():
        found = keywords(tool["inputSchema"])
        assert "title" not in {k for k, _ in found}, name
        assert not [v for k, v in found if k == "anyOf" and {"type": "null"} in v], name
        assert not [v for k, v in found if k == "default" and v is None], name


async def test_every_output_schema_admits_the_error_object_and_says_it_once(client: Client) -> None:
    for name, tool in (await tools_of(client)).items():
        schema = tool["outputSchema"]
        success, envelope = schema["anyOf"]
        assert envelope["properties"]["error"] == {"$ref": "#/$defs/ErrorObject"}, name
        assert schema["$defs"]["ErrorObject"] == COMPACT_ERROR, name  # code and message; every other field allowed
        assert '"retryable"' not in json.dumps(schema), name  # no full ErrorObject written out anywhere
        assert "title" not in {k for k, _ in keywords(schema)}, name


async def test_a_tool_error_validates_against_the_tool_output_schema(client: Client) -> None:
    """The Python client checks only successful results; the TypeScript one checks errors too."""
    tools = await tools_of(client)
    calls = {
        "validate_post": {"text": "hi", "targets": [{"platform": "x"}] * 26},  # a validation error with details
        "publish_post": {"text": "hi", "targets": [{"accountId": "acc_nope"}]},
        "get_post": {"postId": "post_nope"},
        "explain_preflight_rule": {"rule_id": "no.such.rule"},
    }
    for name, arguments in calls.items():
        result = await client.call_tool(name, arguments)
        assert result.is_error
        jsonschema.validate(result.structured_content, tools[name]["outputSchema"], cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(("tool", "arguments", "path"), [
    ("validate_post", {"idempotencyKey": "k1"}, "idempotencyKey"),
    ("validate_post", {"draft": True}, "draft"),
    ("validate_post", {"publishNow": True}, "publishNow"),
    ("validate_post", {"dryRun": True}, "dryRun"),
    ("validate_post", {"skipDuplicateCheck": True}, "skipDuplicateCheck"),
    ("schedule_post", {"scheduledAt": "2026-12-01T09:00:00Z", "draft": True}, "draft"),
    ("schedule_post", {"scheduledAt": "2026-12-01T09:00:00Z", "publishNow": True}, "publishNow"),
    ("schedule_post", {"scheduledAt": "2026-12-01T09:00:00Z", "dryRun": True}, "dryRun"),
    ("schedule_post", {}, "scheduledAt"),
])
async def test_an_argument_a_post_tool_does_not_advertise_is_refused_at_its_path(client: Client, tool: str,
                                                                                 arguments: dict[str, Any], path: str) -> None:
    error = error_of(await client.call_tool(tool, {"text": "hi", "targets": [{"accountId": "acc_nope"}], **arguments}))
    assert (error["code"], error["path"], error["rule"]) == ("validation_failed", path, path)


async def test_a_refused_argument_names_the_tools_that_take_it(client: Client) -> None:
    """A publish_post body sent to validate_post: the error says which tool takes idempotencyKey (a model can act on it)."""
    error = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": [{"platform": "x"}], "idempotencyKey": "k"}))
    assert error["path"] == "idempotencyKey" and "publish_post" in error["message"] and "schedule_post" in error["message"]
    assert "publish_post" in error["remediation"]
    error = error_of(await client.call_tool("schedule_post", {"text": "hi", "targets": [{"accountId": "a"}],
                                                              "scheduledAt": "2026-12-01T09:00:00Z", "draft": True}))
    assert error["path"] == "draft" and "publish_post" in error["message"] and "validate_post" not in error["message"]
    error = error_of(await client.call_tool("validate_post", {"text": "hi", "targets": [{"platform": "x"}], "colour": "red"}))
    assert error["path"] == "colour" and "_post" not in error["message"]  # taken by no tool: the plain refusal


@pytest.mark.parametrize(("request_", "path"), [
    ({"targets": [{"platform": "instagram", "instagram": {"contentType": "carousel"}}]}, "targets[0].instagram.contentType"),
    ({"targets": [{"platform": "pinterest", "pinterest": {"boardId": "1", "colour": "red"}}]}, "targets[0].pinterest.colour"),
    ({"targets": [{"platform": "x", "youtube": {"privacyStatus": "secret"}}]}, "targets[0].youtube.privacyStatus"),
    ({"targets": [{"platform": "x"}], "platforms": {"x": {"replySettings": "nobody"}}}, "platforms.x.replySettings"),
    ({"targets": [{"platform": "x"}], "platforms": {"instagram": {"contentType": "feed", "boardId": "1"}}}, "platforms.instagram.boardId"),
    ({"targets": [{"platform": "x"}], "platforms": {"myspace": {"text": "hi"}}}, "platforms.myspace"),
])
async def test_options_the_schema_only_sums_up_are_validated_in_full(client: Client, request_: dict[str, Any], path: str) -> None:
    error = error_of(await client.call_tool("validate_post", {"text": "hi", **request_}))
    assert (error["code"], error["path"]) == ("validation_failed", path)


async def test_the_platform_options_resource_spells_out_every_option_object(client: Client) -> None:
    resources = {str(r.uri) for r in (await client.list_resources()).resources}
    assert PLATFORM_OPTIONS_URI in resources
    contents = (await client.read_resource(PLATFORM_OPTIONS_URI)).contents
    doc = json.loads(contents[0].text)  # type: ignore[union-attr]
    options = doc["targetOptions"]["properties"]
    assert set(options) == set(OPTION_OBJECTS)
    assert options["instagram"]["properties"]["contentType"]["enum"] == ["feed", "story", "reel"]
    assert options["pinterest"]["properties"]["boardId"]["description"]
    assert {"x", "twitter", "instagram"} <= set(doc["platforms"]["keys"])
    assert {"text", "media", "firstComment", "thread"} <= set(doc["platforms"]["contentFields"]["properties"])
