"""Inputs that used to end in internal_error (issue 9 item 5): each is a typed error naming its field, or works."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures
from test_store import Backend, backend  # noqa: F401 - the sqlite/postgresql fixture
from toolresult import err, ok
from mcp import Client

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.surrogates import lone_surrogate_path

pytestmark = pytest.mark.anyio

WAIT = 20
BAD_HOSTS = ["example..com", "a" * 64 + ".example"]
OUT_OF_RANGE = [  # representable as written, not once converted to UTC
    ("9999-12-31T23:59:59-01:00", None),
    ("0001-01-01T00:00:00+01:00", None),
    ("9999-12-31T23:30:00", "America/New_York"),
]


class PublicResolver:
    """Every name is a public address; nothing answers there (the client has no route to it)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        host.encode("idna")  # as getaddrinfo does: an empty or 64-character label raises UnicodeError
        return ["93.184.216.34"]


@pytest.fixture
async def hostile(settings: Settings, clock: FixedClock, tmp_path: Path) -> AsyncIterator[Client]:
    (tmp_path / "media").mkdir()
    tuned = settings.model_copy(update={"confirm": "never", "media_roots": [tmp_path / "media"]})
    async with Client(build_server(tuned, clock=clock, resolver=PublicResolver())) as c:
        yield c


@pytest.fixture
async def hostile_on(backend: Backend, settings: Settings, clock: FixedClock) -> AsyncIterator[Client]:
    """The server on SQLite and on PostgreSQL, where a bound goes to the database."""
    async with Client(build_server(settings.model_copy(update={"database_url": backend.url}), clock=clock)) as c:
        yield c


async def sandbox_account(client: Client, emulates: str = "bluesky") -> str:
    return ok(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": emulates, "handle": emulates}))["id"]


def assert_field(error: dict[str, Any], code: str, field: str) -> None:
    assert (error["code"], error.get("rule")) == (code, field), error
    assert error.get("path", field) == field, error


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_a_url_whose_host_is_no_dns_name_is_refused_by_upload_media_and_add_webhook(hostile: Client, host: str) -> None:
    with anyio.fail_after(WAIT):
        uploaded = err(await hostile.call_tool("upload_media", {"url": f"https://{host}/a.png"}))
        hook = err(await hostile.call_tool("add_webhook", {"url": f"https://{host}/hook", "events": ["post.published"]}))
    assert (uploaded["code"], uploaded["rule"]) == ("validation_failed", "media.url_forbidden")
    assert (hook["code"], hook["rule"]) == ("validation_failed", "media.url_forbidden")


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_media_urls_and_pin_links_whose_host_is_no_dns_name_fail_only_their_target(hostile: Client, host: str) -> None:
    account = await sandbox_account(hostile, "bluesky")
    pins = await sandbox_account(hostile, "pinterest")
    request = {"text": "Look", "skipDuplicateCheck": True,
               "targets": [{"accountId": account, "media": [{"url": f"https://{host}/a.png"}]},
                           {"accountId": pins, "pinterest": {"boardId": "1", "destinationUrl": f"https://{host}/shop"},
                            "media": [{"url": f"https://{host}/b.png"}]}]}
    with anyio.fail_after(WAIT):
        batch = ok(await hostile.call_tool("publish_post", request))
    assert [r["status"] for r in batch["results"]] == ["rejected", "rejected"]
    assert all(r["error"]["code"] in {"validation_failed", "preflight_failed"} for r in batch["results"])


@pytest.mark.parametrize(("when", "zone"), OUT_OF_RANGE)
@pytest.mark.parametrize("tool", ["validate_post", "publish_post", "schedule_post"])
async def test_a_time_out_of_range_in_utc_is_a_validation_error_on_scheduledAt(hostile: Client, tool: str, when: str,
                                                                               zone: str | None) -> None:
    account = await sandbox_account(hostile)
    request = {"text": "Later", "targets": [{"accountId": account}], "scheduledAt": when, "timezone": zone}
    with anyio.fail_after(WAIT):
        error = err(await hostile.call_tool(tool, request))
    assert_field(error, "validation_failed", "scheduledAt")


@pytest.mark.parametrize(("when", "zone"), OUT_OF_RANGE)
async def test_reschedule_to_a_time_out_of_range_in_utc_is_a_validation_error(hostile: Client, when: str, zone: str | None) -> None:
    account = await sandbox_account(hostile)
    queued = ok(await hostile.call_tool("schedule_post", {"text": "Later", "targets": [{"accountId": account}],
                                                          "scheduledAt": "2026-12-01T09:00:00Z"}))
    arguments = {"id": queued["id"], "scheduledAt": when, **({"timezone": zone} if zone else {})}
    with anyio.fail_after(WAIT):
        error = err(await hostile.call_tool("reschedule_post", arguments))
    assert_field(error, "validation_failed", "scheduledAt")


@pytest.mark.parametrize("bound", ["after", "before"])
async def test_list_posts_reads_a_time_without_offset_as_utc_and_takes_any_instant(hostile_on: Client, bound: str) -> None:
    account = await sandbox_account(hostile_on)
    ok(await hostile_on.call_tool("publish_post", {"text": "Now", "targets": [{"accountId": account}]}))  # created 12:00 UTC
    values = ["2026-11-24T11:59:59", "2026-11-24T12:00:01", "2026-11-24T13:00:00+01:00",
              "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
    with anyio.fail_after(WAIT):
        results = {v: await hostile_on.call_tool("list_posts", {bound: v}) for v in values}
    found = {v: len(ok(r)["posts"]) for v, r in results.items()}
    if bound == "after":
        assert found == {values[0]: 1, values[1]: 0, values[2]: 1, values[3]: 1, values[4]: 0}
    else:
        assert found == {values[0]: 0, values[1]: 1, values[2]: 0, values[3]: 0, values[4]: 1}


@pytest.mark.parametrize("path", ["/tmp/a\x00b.png", "\x00"])
async def test_a_nul_in_an_upload_path_is_a_validation_error_on_path(hostile: Client, path: str) -> None:
    with anyio.fail_after(WAIT):
        error = err(await hostile.call_tool("upload_media", {"path": path}))
    assert error["code"] == "validation_failed" and error["rule"] == "media.path_forbidden"


LONE = "\ud83d"  # half of a surrogate pair: no UTF-8 encoding, no platform accepts it


@pytest.mark.parametrize(("tool", "arguments", "field"), [
    ("validate_post", {"text": f"hi {LONE}", "targets": [{"platform": "bluesky"}]}, "text"),
    ("publish_post", {"text": "hi", "targets": [{"accountId": "acc_x", "text": LONE}]}, "targets[0].text"),
    ("schedule_post", {"text": "hi", "thread": ["ok", f"x{LONE}"], "targets": [{"accountId": "acc_x"}],
                       "scheduledAt": "2026-12-01T09:00:00Z"}, "thread[1]"),
    ("connect_account", {"platform": "sandbox", "handle": f"me{LONE}"}, "handle"),
    ("create_profile", {"name": LONE}, "name"),
    ("upload_media", {"bytesBase64": "aGk=", "altText": LONE}, "altText"),
    ("add_webhook", {"url": f"https://hooks.example/{LONE}", "events": ["post.published"]}, "url"),
    ("list_posts", {"status": LONE}, "status"),
    ("publish_post", {"text": "hi", "targets": f'[{{"accountId": "acc_x", "text": "\\ud83d"}}]'}, "targets[0].text"),
])
async def test_a_lone_surrogate_in_any_text_is_a_validation_error_naming_the_field(hostile: Client, tool: str,
                                                                                  arguments: dict[str, Any], field: str) -> None:
    with anyio.fail_after(WAIT):
        error = err(await hostile.call_tool(tool, arguments))
    assert_field(error, "validation_failed", field)


def test_a_lone_surrogate_in_a_key_names_its_object_and_json_text_is_looked_into() -> None:
    # The in-memory Client cannot even send a dict key holding one (it fails to serialize the request).
    assert lone_surrogate_path({"defaults": {"ok": "v", f"k{LONE}": "v"}}) == "defaults"
    assert lone_surrogate_path({"a": [{"b": "fine"}, {"b": ["x", f"y{LONE}"]}]}) == "a[1].b[1]"
    assert lone_surrogate_path({"targets": '[{"text": "\\ud83d"}]'}) == "targets[0].text"
    assert lone_surrogate_path({"text": "😀 \\ud83d is only written out", "n": 3, "x": None}) is None


async def test_a_draft_whose_account_was_disconnected_is_rejected_with_a_typed_error(hostile: Client) -> None:
    account = await sandbox_account(hostile)
    draft = ok(await hostile.call_tool("publish_post", {"text": "Later", "targets": [{"accountId": account}], "draft": True}))
    ok(await hostile.call_tool("disconnect_account", {"accountId": account}))
    with anyio.fail_after(WAIT):
        batch = ok(await hostile.call_tool("publish_draft", {"id": draft["id"]}))
    [result] = batch["results"]
    assert result["status"] == "rejected" and result["error"]["code"] == "platform_auth_failed"
    post = ok(await hostile.call_tool("get_post", {"postId": result["postId"]}))
    assert [a["errorCode"] for a in post["attempts"]] == ["platform_auth_failed"]
