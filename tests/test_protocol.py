"""Protocol surface of issue 11 items 2 and 3, through the in-memory Client against the real server: resource templates
and reading them within the caller's reach, completion/complete, logging/setLevel and log notifications, prompts/get
and resources/read errors, and the publish confirmation's question."""

import json
import logging
from typing import Any

import anyio
import pytest
import regex
from mcp import Client, MCPError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import INVALID_PARAMS, ElicitResult, PromptReference, ResourceTemplateReference
from test_reach import as_key
from toolresult import err, ok

from omnipost.app import OmnipostServer, build_server
from omnipost.completions import time_zones
from omnipost.config import Settings
from omnipost.keys import access_token
from omnipost.preflight.rules import CATALOGUE

pytestmark = pytest.mark.anyio

RULE = "omnipost://rules/{ruleId}"
POST = "omnipost://posts/{postId}{?profileId}"
ACCOUNT = "omnipost://accounts/{accountId}{?profileId}"
MODES = ["auto", "legacy"]  # auto negotiates 2026-07-28; legacy the 2025-11-25 handshake




async def connect(client: Client, emulates: str, handle: str, profile: str | None = None) -> str:
    args = {"platform": "sandbox", "emulates": emulates, "handle": handle} | ({"profileId": profile} if profile else {})
    return ok(await client.call_tool("connect_account", args))["id"]


async def publish(client: Client, account: str, text: str, profile: str | None = None) -> str:
    args = {"text": text, "targets": [{"accountId": account}]} | ({"profileId": profile} if profile else {})
    return ok(await client.call_tool("publish_post", args))["results"][0]["postId"]


async def read_text(client: Client, uri: str) -> str:
    return (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]


async def not_found(client: Client, uri: str) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    assert caught.value.error.code == INVALID_PARAMS  # SEP-2164: resource not found is -32602 (-32002 is retired)
    assert caught.value.error.data == {"uri": uri}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info]


async def complete(client: Client, ref: str, argument: str, value: str, **given: str) -> Any:
    reference: Any = (ResourceTemplateReference(type="ref/resource", uri=ref) if "://" in ref
                      else PromptReference(type="ref/prompt", name=ref))
    return (await client.complete(reference, {"name": argument, "value": value}, given or None)).completion


# --- resources ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_rules_posts_and_accounts_are_templates_and_only_the_indexes_are_fixed_resources(
        server: OmnipostServer, mode: str) -> None:
    async with Client(server, mode=mode) as client:
        templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}
        assert set(templates) == {RULE, POST, ACCOUNT}
        assert all(t.description and t.mime_type for t in templates.values())
        fixed = sorted(str(r.uri) for r in (await client.list_resources()).resources)
        assert fixed == ["omnipost://rules", "omnipost://schemas/platform-options"]  # no resource per rule
        for rule_id in CATALOGUE:  # every rule the index (and every error's ruleUrl) names is readable
            assert (await read_text(client, f"omnipost://rules/{rule_id}")).startswith(f"# {rule_id}")


async def test_a_rule_asked_by_another_name_of_its_platform_is_found_and_an_unknown_one_gets_the_closest_ids(
        client: Client) -> None:
    """X's rules keep their twitter.* ids (a public contract); x.* (any case of the platform name) finds them, as tool and
    resource. An unknown id is not_found with the closest ids in the remediation."""
    for asked in ("x.text.max_graphemes", "X.text.max_graphemes", "twitter.text.max_graphemes"):
        assert ok(await client.call_tool("explain_preflight_rule", {"rule_id": asked}))["id"] == "twitter.text.max_graphemes"
        assert (await read_text(client, f"omnipost://rules/{asked}")).startswith("# twitter.text.max_graphemes")
    error = err(await client.call_tool("explain_preflight_rule", {"rule_id": "x.text.max_grapheme"}))
    assert (error["code"], error["rule"]) == ("not_found", "rule_id")
    assert "twitter.text.max_graphemes" in error["remediation"]
    error = err(await client.call_tool("explain_preflight_rule", {"rule_id": "nothing.like.it"}))
    assert error["code"] == "not_found" and "Did you mean" not in error["remediation"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_post_and_an_account_read_as_get_post_and_get_account_answer(server: OmnipostServer, mode: str) -> None:
    async with Client(server, mode=mode) as client:
        account = await connect(client, "bluesky", "alice_example")
        post = await publish(client, account, "Hello resources")
        assert json.loads(await read_text(client, f"omnipost://accounts/{account}")) == ok(
            await client.call_tool("get_account", {"accountId": account}))
        assert json.loads(await read_text(client, f"omnipost://posts/{post}")) == ok(
            await client.call_tool("get_post", {"postId": post}))
        assert "credentials" not in await read_text(client, f"omnipost://accounts/{account}")


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_rules_posts_accounts_and_uris_are_resource_not_found_without_a_traceback(
        server: OmnipostServer, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    async with Client(server, mode=mode) as client:
        for uri in ("omnipost://rules/bluesky.no_such_rule", "omnipost://posts/post_00000000000000000000000000",
                    "omnipost://accounts/acc_00000000000000000000000000", "omnipost://accounts/acc_1?profileId=nobody",
                    "omnipost://nothing", "omnipost://rules/..%2F..%2Fetc"):
            await not_found(client, uri)
    assert tracebacks(caplog) == []


async def test_another_profiles_post_and_account_are_not_found_unless_within_reach(client: Client) -> None:
    mine = await connect(client, "x", "me")
    other = ok(await client.call_tool("create_profile", {"name": "client-b"}))["id"]
    theirs = await connect(client, "bluesky", "them", profile=other)
    their_post = await publish(client, theirs, "Their news", profile=other)
    # The local user acts on the default profile unless it names another, exactly as get_post does.
    await not_found(client, f"omnipost://posts/{their_post}")
    await not_found(client, f"omnipost://accounts/{theirs}")
    assert their_post in await read_text(client, f"omnipost://posts/{their_post}?profileId={other}")
    assert theirs in await read_text(client, f"omnipost://accounts/{theirs}?profileId=client-b")
    # A key bound to the default profile never reads the other profile's, even naming it.
    default = ok(await client.call_tool("list_profiles", {}))["profiles"][0]["id"]
    with as_key(access_token("key_mine", default, "live")):
        await not_found(client, f"omnipost://posts/{their_post}?profileId={other}")
        await not_found(client, f"omnipost://accounts/{theirs}?profileId={other}")
        assert mine in await read_text(client, f"omnipost://accounts/{mine}")
    # A key bound to the other profile reads its own with no profileId.
    with as_key(access_token("key_theirs", other, "live")):
        assert their_post in await read_text(client, f"omnipost://posts/{their_post}")
        await not_found(client, f"omnipost://accounts/{mine}")


async def test_a_test_key_reads_and_completes_only_sandbox_accounts_and_their_posts(settings: Settings) -> None:
    from fakes.bluesky import PDS_URL
    from test_tokens import PASSWORD, Setup

    setup = Setup(settings)
    test_key, live_key = access_token("key_test", None, "test"), access_token("key_live", None, "live")
    async with Client(setup.server) as client:
        real = ok(await client.call_tool("connect_account", {"platform": "bluesky", "handle": "alice.test",
                                                             "appPassword": PASSWORD, "pdsUrl": PDS_URL}))["id"]
        sandbox = await connect(client, "bluesky", "sandbox_alice")
        real_post, sandbox_post = await publish(client, real, "Real news"), await publish(client, sandbox, "Test news")
        with as_key(test_key):
            await not_found(client, f"omnipost://accounts/{real}")
            await not_found(client, f"omnipost://posts/{real_post}")
            assert sandbox_post in await read_text(client, f"omnipost://posts/{sandbox_post}")
            assert (await complete(client, ACCOUNT, "accountId", "")).values == [sandbox]
            assert (await complete(client, POST, "postId", "")).values == [sandbox_post]
        with as_key(live_key):
            assert real in await read_text(client, f"omnipost://accounts/{real}")
            assert real_post in await read_text(client, f"omnipost://posts/{real_post}")


# --- completions --------------------------------------------------------------------------------------------------


async def test_rule_ids_complete_by_prefix_then_anywhere(client: Client) -> None:
    got = await complete(client, RULE, "ruleId", "bluesky.text")
    assert got.values and all(v.startswith("bluesky.text") for v in got.values)
    assert got.values == sorted(r for r in CATALOGUE if r.startswith("bluesky.text"))
    anywhere = await complete(client, RULE, "ruleId", "MAX_GRAPHEMES")
    assert "bluesky.text.max_graphemes" in anywhere.values and "twitter.text.max_graphemes" in anywhere.values
    everything = await complete(client, RULE, "ruleId", "")
    assert len(everything.values) == min(len(CATALOGUE), 100) and everything.total == len(CATALOGUE)
    assert (await complete(client, RULE, "ruleId", "no-such-rule")).values == []


async def test_account_post_and_profile_ids_complete_within_the_callers_reach(client: Client) -> None:
    alice = await connect(client, "bluesky", "alice_example")
    bob = await connect(client, "x", "bob")
    post = await publish(client, alice, "Complete me")
    other = ok(await client.call_tool("create_profile", {"name": "client-b"}))["id"]
    theirs = await connect(client, "x", "alicia", profile=other)

    assert set((await complete(client, ACCOUNT, "accountId", "acc_")).values) == {alice, bob}
    assert (await complete(client, ACCOUNT, "accountId", "alice")).values == [alice]  # by handle
    assert (await complete(client, ACCOUNT, "accountId", "ali", profileId="client-b")).values == [theirs]
    assert (await complete(client, POST, "postId", post[:8])).values == [post]
    assert (await complete(client, POST, "postId", "post_", profileId="client-b")).values == []
    assert set((await complete(client, POST, "profileId", "")).values) >= {other, "client-b", "default"}

    default = ok(await client.call_tool("list_profiles", {}))["profiles"][0]["id"]
    with as_key(access_token("key_default", default, "live")):
        assert (await complete(client, ACCOUNT, "accountId", "ali", profileId="client-b")).values == []
        assert "client-b" not in (await complete(client, ACCOUNT, "profileId", "")).values
        assert set((await complete(client, ACCOUNT, "accountId", "")).values) == {alice, bob}


async def test_prompt_arguments_complete_platforms_platform_lists_and_time_zones(client: Client) -> None:
    assert set((await complete(client, "split_thread", "platform", "")).values) == {"bluesky", "x", "threads", "mastodon"}
    assert (await complete(client, "split_thread", "platform", "Blu")).values == ["bluesky"]
    assert (await complete(client, "adapt_post", "platforms", "bluesky, x, li")).values == ["bluesky, x, linkedin"]
    listed = (await complete(client, "plan_week", "platforms", "bluesky,")).values
    assert "bluesky, x" in listed and not any(v.endswith(" bluesky") for v in listed)
    assert (await complete(client, "plan_week", "timezone", "europe/ber")).values == ["Europe/Berlin"]
    assert (await complete(client, "plan_week", "timezone", "berl")).values == ["Europe/Berlin"]  # the city alone
    assert (await complete(client, "plan_week", "timezone", "new_y")).values == ["America/New_York"]
    every = await complete(client, "plan_week", "timezone", "")
    assert len(every.values) == 100 and every.total == len(time_zones()) > 100 and every.has_more is True
    assert (await complete(client, "plan_week", "theme", "any")).values == []  # free text: nothing to offer
    assert (await complete(client, "no_such_prompt", "x", "")).values == []


# --- logging ------------------------------------------------------------------------------------------------------


def with_log_probe(server: OmnipostServer) -> OmnipostServer:
    """The server plus one tool that logs at debug and warning under the omnipost logger, one with a credential."""
    log = logging.getLogger("omnipost.probe")

    async def log_probe() -> str:
        """Logs at debug and warning."""
        log.debug("probe detail")
        log.warning("probe warning authorization: Bearer sekrit-token-123")
        return "logged"

    server.add_tool(log_probe, name="log_probe", description="Test tool: logs at debug and warning.")
    return server


async def test_set_level_sends_omnipost_records_at_or_above_it_to_the_client(server: OmnipostServer) -> None:
    got: list[Any] = []

    async def on_log(params: Any) -> None:
        got.append(params)

    async with Client(with_log_probe(server), mode="legacy", logging_callback=on_log) as client:
        await client.call_tool("log_probe", {})
        assert got == []  # nothing until the client asks
        with pytest.warns(MCPDeprecationWarning):  # the SDK marks protocol logging deprecated (SEP-2577); still served
            await client.set_logging_level("warning")
        await client.call_tool("log_probe", {})
        assert [(p.level, p.logger) for p in got] == [("warning", "omnipost.probe")]
        assert "sekrit" not in str(got[0].data) and "[redacted]" in str(got[0].data)
        got.clear()
        with pytest.warns(MCPDeprecationWarning):
            await client.set_logging_level("debug")  # below the server's own level (WARNING in tests): still sent
        await client.call_tool("log_probe", {})
        assert [(p.level, p.data) for p in got][0] == ("debug", "probe detail")
        assert [p.level for p in got] == ["debug", "warning"]
    assert logging.getLogger("omnipost").level == logging.NOTSET  # lowered only while the request ran


@pytest.mark.parametrize("level,expected", [(None, []), ("warning", ["warning"]), ("debug", ["debug", "warning"])])
async def test_on_2026_07_28_each_request_opts_in_with_its_level(server: OmnipostServer, level: str | None,
                                                                  expected: list[str]) -> None:
    got: list[Any] = []

    async def on_log(params: Any) -> None:
        got.append(params)

    async with Client(with_log_probe(server), logging_callback=on_log, log_level=level) as client:  # type: ignore[arg-type]
        assert client.protocol_version == "2026-07-28"
        await client.call_tool("log_probe", {})
    assert [p.level for p in got] == expected


@pytest.mark.parametrize("mode", MODES)
async def test_protocol_errors_keep_their_codes_while_logs_are_forwarded(server: OmnipostServer, mode: str,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    async with Client(server, mode=mode, log_level="debug") as client:
        if mode == "legacy":
            with pytest.warns(MCPDeprecationWarning):
                await client.set_logging_level("debug")
        for attempt in (lambda: client.get_prompt("no_such_prompt", {}), lambda: client.read_resource("omnipost://posts/post_x")):
            with pytest.raises(MCPError) as caught:
                await attempt()
            assert caught.value.error.code == INVALID_PARAMS
        assert err(await client.call_tool("get_post", {"postId": "post_x"}))["code"] == "not_found"
    assert tracebacks(caplog) == []


async def test_an_internal_error_reaches_the_client_as_an_error_record_without_its_traceback(settings: Settings) -> None:
    class BrokenMedia:
        async def get_media(self, media_id: str, profile_id: str | None) -> None:
            raise RuntimeError("disk on fire at /secret/path/db.sqlite")

    got: list[Any] = []

    async def on_log(params: Any) -> None:
        got.append(params)

    async with Client(build_server(settings, media=BrokenMedia()), logging_callback=on_log, log_level="error") as client:
        result = await client.call_tool("validate_post", {"text": "hi", "media": [{"mediaId": "med_1"}], "targets": [{"platform": "x"}]})
    request_id = err(result)["requestId"]
    assert [(p.level, p.logger, p.data) for p in got] == [
        ("error", "omnipost", f"internal error {request_id} in tool validate_post")]


# --- prompts/get errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_prompt_or_a_missing_argument_is_invalid_params_without_a_traceback(
        server: OmnipostServer, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    async with Client(server, mode=mode) as client:
        for name, arguments in (("no_such_prompt", {}), ("split_thread", {"text": "only the text"}), ("adapt_post", None)):
            with pytest.raises(MCPError) as caught:
                await client.get_prompt(name, arguments)
            assert caught.value.error.code == INVALID_PARAMS
        assert caught.value.error.data == {"name": "adapt_post", "missing": ["announcement", "platforms"]}
        # an optional argument may be left out
        got = await client.get_prompt("fix_preflight", {"result": "{}"})
        assert "Original request:" in got.messages[0].content.text  # type: ignore[union-attr]
    assert tracebacks(caplog) == []


# --- publish confirmation -----------------------------------------------------------------------------------------


async def test_the_publish_question_names_each_target_and_the_start_of_the_text(server: OmnipostServer) -> None:
    asked: list[str] = []

    async def decline(ctx: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="decline")

    text = "Launch day 🚀🇯🇵 " + "word " * 40  # longer than 80 graphemes; flags and emoji are one grapheme each
    async with Client(server, elicitation_callback=decline) as client:
        a = await connect(client, "x", "one_account")
        b = await connect(client, "bluesky", "two_bsky")
        with anyio.fail_after(30):
            err(await client.call_tool("publish_post", {"text": text, "targets": [{"accountId": a}, {"accountId": b}]}))
            assert asked[-1].splitlines() == [
                "Publish this post to 2 accounts now? It cannot be unsent automatically.",
                "- X (sandbox) one_account",
                "- Bluesky (sandbox) two_bsky",
                'Text: "' + "".join(regex.findall(r"\X", text)[:80]) + '…"',  # 🇯🇵 is two code points, one grapheme
            ]
            # Texts that differ per target are shown per target; a short one whole, without an ellipsis.
            err(await client.call_tool("publish_post", {"text": "Short and sweet", "platforms": {"bluesky": {"text": "Bluesky's own"}},
                                                         "targets": [{"accountId": a}, {"accountId": b}]}))
        assert asked[-1].splitlines()[1:] == ['- X (sandbox) one_account: "Short and sweet"',
                                              "- Bluesky (sandbox) two_bsky: \"Bluesky's own\""]
