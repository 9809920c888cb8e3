"""Every tool, fuzzed from its own advertised input schema: no input may end in internal_error or an untyped error.

The tools and their schemas come from tools/list, so a new tool is fuzzed without being named here. Arguments are
generated from each JSON schema (a small generator for the keywords our schemas use; it fails on any other keyword,
so a schema that outgrows it is noticed), with ids, URLs, times and paths drawn from what the server really has so
calls go past "not found"; and, for tools the seeding called, from those realistic calls. Each then gets 0 to 2
hostile edits at any depth: a value of any type (huge / NUL / lone-surrogate / CR-LF strings, odd URLs, extreme
dates and numbers, null, lists, objects), a dropped property, an undeclared one. Destructive tools run last, each on
freshly seeded objects.

hypothesis-jsonschema was tried first: 0.23.1 (its latest) fails with hypothesis 6.170 ("'many' object has no
attribute 'more'", a private API it uses), hence the generator below.

Nothing leaves the machine: the server's HTTP client has the embedded sandbox and the fake Bluesky PDS mounted and
refuses every other host with a connect error (fakes.mounted_client(offline=True)); the resolver maps every name to
a public-looking address that nothing is mounted at; any httpx2 client the product might build itself is refused
at its transport. Deterministic: derandomized, no example database, a fixed clock.

The budget (examples per tool and kind) is OMNIPOST_FUZZ_EXAMPLES, 40 by default (1,800 calls, about 15 s); raise
it locally for a deeper run (OMNIPOST_FUZZ_LOG=ERROR shows the server log of what failed). `pytest -s` prints the
counts by error code, per tool.
"""

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx2
import pytest
from fakes import mounted_client
from fakes.bluesky import PDS_URL, VIDEO_URL, FakeBluesky
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from mcp import Client
from mediagen import b64, make_image
from toolresult import ok

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.runtime import SANDBOX_HOST
from omnipost.sandbox.upstream import create_sandbox_app

EXAMPLES = int(os.environ.get("OMNIPOST_FUZZ_EXAMPLES", "40"))
CALL_TIMEOUT = 30.0
KNOWN_CODES = frozenset({  # PRODUCT.md §3, less internal_error
    "validation_failed", "preflight_failed", "not_found", "idempotency_conflict", "unauthorized", "unauthenticated",
    "rate_limited", "platform_auth_failed", "platform_rejected", "platform_unavailable", "platform_outcome_unknown",
    "platform_forbidden", "platform_duplicate",
})
PUBLIC_IP = "93.184.216.34"  # every name resolves here, and nothing is mounted at it: connects fail
PDS_IP = "93.184.216.35"  # pds.test resolves here, and the fake PDS is mounted at both (for a guard that pins addresses)
PASSWORD = "abcd-efgh-ijkl-mnop"
EMULATED = ["bluesky", "x", "threads", "linkedin", "instagram", "facebook", "pinterest"]

# --- hostile values -------------------------------------------------------------------------------------------

LONE = "\ud83d"
HUGE = "x" * 100_001
HOSTILE_STRINGS = [
    "", " ", "\x00", "a\x00b", LONE, f"a{LONE}b", "\udfff", "\r\n", "a\r\nX-Injected: 1", "\t", "\u202e\u0301",
    "🇯🇵👩🏽‍💻", "क्षि", "%", "%00", "%2e%2e/", "../../etc/passwd", "\\", "'", '"', "<script>", "{}", "[]", "null", "[1",
    '{"a": "\\ud83d"}', "0", "-1", "1e999", "true", HUGE, "é" * 5000, "\n" * 1000,
]
HOSTILE_URLS = [
    "http://example..com/", "http://" + "a" * 64 + ".com/", "https://.example.com/", "http://" + "a." * 130 + "com/",
    "http://[::1", "http://[::1]/", "http://[fe80::1%25eth0]/", "http://127.0.0.1/", "http://2130706433/",
    "http://0x7f000001/", "http://localhost/", "http://10.0.0.1/", "http://169.254.169.254/latest/", "ftp://files.example/",
    "javascript:alert(1)", "file:///etc/passwd", "http://exa mple.com/", "https://münchen.de/x", "http://a\r\nb.com/",
    "https://news.example/a\r\nX: y", "http://user:pw@files.example/", "https://files.example:0/", "https://files.example:99999/",
    "https://files.example/" + "x" * 10_000, "https://ex%00ample.com/", "//files.example/a", "http:", "https://",
    f"https://files.example/{LONE}", "https://files.example/a.png", "https://news.example/article", "http://[::ffff:10.0.0.1]/",
]
HOSTILE_TIMES = [
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00", "2026-11-24T12:00:00Z", "2026-11-24T12:00:01Z", "2026-12-01T09:00:00Z", "2026-12-01T09:00:00",
    "2027-03-14T02:30:00", "2026-11-01T01:30:00", "2026-02-30T00:00:00", "2026-11-24T25:00:00", "2026-11-24T12:00:00+25:00",
    "99999-01-01T00:00:00", "2026-11-24T12:00:00.123456789Z", "2026-11-24", "now", "1e10", "-0001-01-01T00:00:00",
]
HOSTILE_ZONES = ["America/New_York", "UTC", "Europe/Paris", "Etc/GMT+12", "Etc/GMT-14", "Nope/Zone", "../../../etc/passwd",
                 "UTC\x00", "", "localtime", "/etc/localtime", "posixrules", "America/New_York" + "/x" * 100]
HOSTILE_NUMBERS = [0, -1, 1, 201, 2**31, 2**63, 2**64, -(2**63) - 1, 10**100, 1.5, -0.0, 1e308]
HOSTILE_OTHER: list[Any] = [None, True, False, [], {}, [None], {"a": 1}, [[[[]]]], ["x"] * 500]
TEXTS = ["Hello", "See https://news.example/article and #omnipost @alice.test $TSLA", "Link http://example..com/ here",
         "https://" + "a" * 64 + ".example/ card?", "x" * 301, "🇯🇵" * 200, "bare news.example link", "@nobody.invalid hi"]
KEYS = ["k1", "k2", "k" * 128]  # a few idempotency keys, so replays and conflicts happen


def pick(values: list[Any]) -> st.SearchStrategy[Any]:
    """sampled_from(values), without hypothesis rendering the (huge) values into the strategy's repr."""
    return st.sampled_from(range(len(values))).map(values.__getitem__)


def hostile_any() -> st.SearchStrategy[Any]:
    return pick(HOSTILE_STRINGS + HOSTILE_URLS + HOSTILE_TIMES + HOSTILE_NUMBERS + HOSTILE_OTHER)


def hostile_for(name: Any) -> st.SearchStrategy[Any]:
    """Hostile values for the argument `name`: half of the time ones aimed at what it means (a URL, a time ...)."""
    aimed = (HOSTILE_URLS if isinstance(name, str) and name.lower().endswith("url")
             else HOSTILE_TIMES if name in ("scheduledAt", "after", "before")
             else HOSTILE_ZONES if name == "timezone"
             else HOSTILE_NUMBERS if name == "limit"
             else HOSTILE_STRINGS)
    return st.one_of(pick(aimed), hostile_any())


# --- arguments from a JSON schema -----------------------------------------------------------------------------

# Keywords the generator understands; any other one in a tool's schema fails the test (extend the generator).
HANDLED = frozenset({"type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "$ref", "$defs",
                     "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "format",
                     "title", "description", "default", "examples"})


@dataclass
class Pool:
    """What the server has (ids, files), by argument name: drawn instead of random text most of the time."""

    by_name: dict[str, list[Any]] = field(default_factory=lambda: {})
    corpus: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {})  # tool -> realistic arguments

    def add(self, value: Any, *names: str) -> None:
        for name in names:
            self.by_name.setdefault(name, []).append(value)


class Arguments:
    """Hypothesis strategies for one tool's arguments, from its input schema."""

    def __init__(self, schema: dict[str, Any], pool: Pool) -> None:
        self.root = schema
        self.pool = pool

    def strategies(self, corpus: list[dict[str, Any]]) -> list[st.SearchStrategy[dict[str, Any]]]:
        """Schema-valid arguments, and realistic calls from `corpus` (when there are some), each then with 0 to 2
        hostile edits anywhere below the top (which stays an object). Two runs, not one_of: hypothesis would favour
        the generated branch, and the realistic one is what reaches deep code with a single hostile value."""
        return [_mutated(self.node(self.root, "")), *([_mutated(pick(corpus))] if corpus else [])]

    def node(self, schema: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
        unknown = set(schema) - HANDLED
        assert not unknown, f"the fuzz generator does not handle {sorted(unknown)} (at {name or 'the top'}); extend it"
        if "$ref" in schema:
            return self.node(self.root["$defs"][schema["$ref"].removeprefix("#/$defs/")], name)
        if "anyOf" in schema:
            return st.one_of(*(self.node(option, name) for option in schema["anyOf"]))
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        kind = schema.get("type")
        if kind == "object":
            return self.object(schema)
        if kind == "array":
            items = self.node(schema.get("items", {}), name)
            low = schema.get("minItems", 0)
            return st.lists(items, min_size=low, max_size=max(low, min(schema.get("maxItems", 3), 3)))
        if kind == "string":
            return self.string(schema, name)
        if kind == "integer":
            return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
        if kind == "number":
            return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        assert kind is None, f"the fuzz generator does not handle type {kind!r}"
        return hostile_any()  # {}: anything goes

    def object(self, schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: self.node(v, k) for k, v in properties.items() if k in required}
        optional = {k: self.node(v, k) for k, v in properties.items() if k not in required}
        # A few optional properties at a time (a request rarely sets most of them), not each one at even odds.
        chosen = st.sets(st.sampled_from(sorted(optional)), max_size=3) if optional else st.just(set[str]())
        base = chosen.flatmap(lambda picked: st.fixed_dictionaries({**fixed, **{k: optional[k] for k in sorted(picked)}}))
        extra = schema.get("additionalProperties", True)
        if isinstance(extra, dict):
            more = st.dictionaries(st.sampled_from(["boardId", "a", "x" * 300, "with space", ""]), self.node(extra, ""), max_size=2)
            base = st.builds(lambda declared, free: {**free, **declared}, base, more)
        return base

    def string(self, schema: dict[str, Any], name: str) -> st.SearchStrategy[str]:
        low, high = schema.get("minLength", 0), schema.get("maxLength", 60)
        plain = st.text(st.characters(codec="utf-8"), min_size=low, max_size=max(low, min(high, 60)))
        choices = [plain]
        known = self.pool.by_name.get(name)
        if known:
            choices += [pick(known)] * 3
        if schema.get("format") == "date-time" or name in ("scheduledAt", "after", "before"):
            choices += [pick(HOSTILE_TIMES)] * 3
        if re.search(r"url$", name, re.IGNORECASE):
            choices += [pick(HOSTILE_URLS)] * 3
        if name in ("text", "firstComment", "thread", "altText", "title"):
            choices += [pick(TEXTS)] * 2
        if name == "timezone":
            choices += [pick(HOSTILE_ZONES)] * 3
        if name == "idempotencyKey":
            choices += [pick(KEYS)] * 3
        return st.one_of(*choices)


DROP = object()  # an edit that removes the property (or list item) instead of replacing it


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every position below the top of a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    for key, child in items:  # pyright: ignore[reportUnknownVariableType]
        yield (*path, key)
        yield from _paths(child, (*path, key))


def _edit(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with the position at `path` replaced by `new` (or removed, for DROP)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        out = dict(value)  # pyright: ignore[reportUnknownArgumentType]
    else:
        out = list(value)
    replaced = _edit(out[head], rest, new)
    if replaced is DROP:
        del out[head]
    else:
        out[head] = replaced
    return out


@st.composite
def _mutated(draw: st.DrawFn, clean: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """`clean`'s value with 0-2 hostile edits: a hostile value of any type, a dropped property, an undeclared one."""
    value = draw(clean)
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
        paths = list(_paths(value))
        if action == "add" or not paths:
            where = draw(st.sampled_from([p for p in [(), *paths] if isinstance(_at(value, p), dict)]))
            value = _edit(value, where, {**_at(value, where), "unknownField": draw(hostile_any())})
        else:
            path = draw(st.sampled_from(paths))
            name = next((k for k in reversed(path) if isinstance(k, str)), None)  # thread[1] is aimed at like thread
            value = _edit(value, path, DROP if action == "drop" else draw(hostile_for(name)))
    return value


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


# --- the server under test ------------------------------------------------------------------------------------


class Resolver:
    """Every name is public: pds.test where the fake PDS is mounted by address, every other name where nothing is."""

    async def resolve(self, host: str, port: int) -> list[str]:
        host.encode("idna")  # as getaddrinfo does: an empty or 64-character label raises UnicodeError
        return [PDS_IP] if host in ("pds.test", "video.test") else [PUBLIC_IP]


@dataclass
class Tally:
    calls: int = 0
    by_code: Counter[str] = field(default_factory=lambda: Counter[str]())
    by_tool: dict[str, Counter[str]] = field(default_factory=lambda: {})
    bad: Counter[str] = field(default_factory=lambda: Counter[str]())  # kind of failure -> how many calls
    first: dict[str, str] = field(default_factory=lambda: {})  # kind of failure -> the first call that showed it

    def flag(self, kind: str, example: str) -> None:
        self.bad[kind] += 1
        self.first.setdefault(kind, example)

    def report(self) -> str:
        return "\n".join(f"{n} x {kind}\n    first: {self.first[kind]}" for kind, n in self.bad.most_common())


def internal_errors(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every object inside a result whose code is internal_error (a target's error, an attempt's ...), with its path."""
    if isinstance(value, dict):
        if value.get("code") == "internal_error" or value.get("errorCode") == "internal_error":  # pyright: ignore[reportUnknownMemberType]
            yield path, value
        for k, v in value.items():  # pyright: ignore[reportUnknownVariableType]
            yield from internal_errors(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            yield from internal_errors(v, f"{path}[{i}]")


def judge(tally: Tally, tool: str, arguments: Any, result: Any) -> None:
    tally.calls += 1
    shown = json.dumps(arguments, ensure_ascii=True)[:400]
    if result.is_error:
        error = (result.structured_content or {}).get("error")
        code = error.get("code") if isinstance(error, dict) else None  # pyright: ignore[reportUnknownMemberType]
        tally.by_code[str(code)] += 1
        tally.by_tool.setdefault(tool, Counter[str]())[str(code)] += 1
        if code not in KNOWN_CODES:
            tally.flag(f"{tool}: {code or 'untyped error'}", f"{shown} -> {result.content[0].text[:300]!r}")
    else:
        tally.by_code["ok"] += 1
        tally.by_tool.setdefault(tool, Counter[str]())["ok"] += 1
        for where, found in internal_errors(result.structured_content):
            tally.flag(f"{tool}: internal_error inside the result at {re.sub(r'[0-9]+', '*', where)}",
                       f"{shown} -> {json.dumps(found)[:300]}")


@contextmanager
def refused_outside_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any httpx2 client the product builds itself (not the injected one) is refused at its transport, and noted."""
    escaped: list[str] = []

    async def refuse(self: Any, request: httpx2.Request) -> httpx2.Response:
        escaped.append(str(request.url.host))
        raise httpx2.ConnectError("test: the network is off", request=request)

    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", refuse)
    yield escaped


async def seed(client: Client, media_root: Path, round_: int) -> Pool:
    """Fresh objects of every kind, so generated ids point at live ones; every call made is kept as a realistic one
    to mutate. `round_` keeps names (profiles) distinct from an earlier round's."""
    pool = Pool()

    async def call(tool: str, arguments: dict[str, Any], *, must: bool = True) -> dict[str, Any]:
        pool.corpus.setdefault(tool, []).append(arguments)
        result = await client.call_tool(tool, arguments)
        return ok(result) if must else {}

    profile = await call("create_profile", {"name": f"second{round_}"})
    pool.add(profile["id"], "profileId")
    pool.add(f"second{round_}", "profileId")
    accounts = {p: (await call("connect_account", {"platform": "sandbox", "emulates": p, "handle": f"{p}.sandbox"}))["id"]
                for p in EMULATED}
    bluesky = (await call("connect_account", {"platform": "bluesky", "handle": "alice.test", "appPassword": PASSWORD,
                                              "pdsUrl": PDS_URL}))["id"]
    for account in [*accounts.values(), bluesky]:
        pool.add(account, "accountId", "id")
    image = make_image("png", 1200, 800)
    (media_root / "photo.png").write_bytes(image)
    pool.add(str(media_root / "photo.png"), "path")
    media = (await call("upload_media", {"bytesBase64": b64(image), "altText": "chart"}))["id"]
    await call("upload_media", {"path": str(media_root / "photo.png")})
    await call("upload_media", {"url": "https://files.example/a.png", "altText": "remote"}, must=False)
    pool.add(media, "mediaId", "id")
    link = "Read https://news.example/article #omnipost @alice.test"
    everyone = [{"accountId": a} for a in [*accounts.values(), bluesky]]
    await call("validate_post", {"text": link, "targets": [{"platform": p} for p in EMULATED]})
    await call("validate_post", {"text": link, "media": [{"mediaId": media}], "targets": everyone})
    batches: dict[str, dict[str, Any]] = {}
    for mode, arguments in {
        "published": {"text": link, "media": [{"mediaId": media, "altText": "chart"}], "thread": ["two", "three"],
                      "firstComment": "first!", "skipDuplicateCheck": True,
                      "targets": [{"accountId": accounts["bluesky"]}, {"accountId": bluesky}]},
        "pins": {"text": "Pin it", "media": [{"url": "https://files.example/b.png"}], "skipDuplicateCheck": True,
                 "targets": [{"accountId": accounts["pinterest"], "pinterest": {"boardId": "1", "destinationUrl": "https://shop.example/p"}}]},
        "queued": {"text": "Later " + link, "scheduledAt": "2026-12-01T09:00:00", "timezone": "America/New_York", "skipDuplicateCheck": True,
                   "targets": [{"accountId": accounts["x"]}, {"accountId": bluesky}]},
        # Each round reconnects the same accounts (a reconnect updates the account), so its draft text is its own.
        "draft": {"text": f"Draft {round_} " + link, "draft": True, "idempotencyKey": f"seed{round_}",
                  "targets": [{"accountId": accounts["threads"]}, {"accountId": bluesky, "text": "own text"}]},
        "dry": {"text": "Dry", "dryRun": True, "targets": everyone},
    }.items():
        batch = await call("schedule_post" if mode == "queued" else "publish_post", arguments)
        batches[mode] = batch
        pool.add(batch["id"], "batchId", "id", "postId")
        for target in batch["results"]:
            pool.add(target["postId"], "postId", "id", "cursor")
    await call("add_webhook", {"url": "https://hooks.example/in", "events": ["post.published", "post.failed"]}, must=False)
    hooks = [h["id"] for h in (await call("list_webhooks", {}))["webhooks"]]  # the add fails once the profile has 20
    for hook in hooks:
        pool.add(hook, "webhookId", "id")
    await call("test_webhook", {"webhookId": hooks[-1]}, must=False)
    await call("list_webhook_deliveries", {"webhookId": hooks[-1], "status": "failed", "limit": 5})
    await call("list_posts", {"after": "2026-11-24T00:00:00", "before": "2026-11-25T00:00:00Z", "limit": 5})
    await call("list_posts", {"status": "published", "platform": "bluesky", "cursor": batches["published"]["results"][0]["postId"]})
    await call("reschedule_post", {"id": batches["queued"]["id"], "scheduledAt": "2026-12-02T09:00:00Z"})
    await call("get_post", {"postId": batches["published"]["results"][1]["postId"]})
    await call("retry_post", {"batchId": batches["pins"]["id"]}, must=False)
    await call("publish_draft", {"id": batches["draft"]["results"][0]["postId"]})
    await call("cancel_post", {"id": batches["draft"]["results"][1]["postId"]})
    await call("delete_post", {"postId": batches["published"]["results"][0]["postId"]})
    pool.add("bluesky.text.max_graphemes", "rule_id")
    pool.add("sandbox", "platform")
    pool.add("bluesky", "platform", "emulates")
    pool.add("alice.test", "handle")
    pool.add(PASSWORD, "appPassword")
    pool.add(PDS_URL, "pdsUrl")
    return pool


def fuzz(strategy: st.SearchStrategy[Any], check: Callable[[Any], None]) -> None:
    """Run `check` on EXAMPLES arguments drawn from `strategy`; no shrinking (judge collects every bad call instead)."""

    @fuzz_settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(arguments=strategy)
    def run(arguments: Any) -> None:
        check(arguments)

    run()


def test_no_tool_input_ends_in_an_internal_error(tmp_path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    media_root = tmp_path / "media"
    media_root.mkdir()
    settings = Settings(data_dir=tmp_path / "data", log_level=os.environ.get("OMNIPOST_FUZZ_LOG", "CRITICAL"), confirm="never", scheduler_enabled=False,  # type: ignore[call-arg]  # pydantic-settings kwarg
                        media_roots=[media_root], _env_file=None)
    fake = FakeBluesky(clock=lambda: clock.now().timestamp())
    fake.add_account("alice.test", PASSWORD)
    sandbox = create_sandbox_app(settings.data_dir / "sandbox.db", clock=clock)
    http = mounted_client({SANDBOX_HOST: sandbox, PDS_URL: fake.pds_app, VIDEO_URL: fake.video_app,
                           f"https://{PDS_IP}": fake.pds_app}, offline=True)
    server = build_server(settings, clock=clock, http=http, resolver=Resolver())
    server.runtime.extra["webhook_http"] = http  # webhook deliveries too: nowhere but the mounted fakes
    tally = Tally()

    async def call(c: Client, tool: str, arguments: Any) -> Any:
        with anyio.fail_after(CALL_TIMEOUT):
            return await c.call_tool(tool, arguments)

    with refused_outside_calls(monkeypatch) as escaped, anyio.from_thread.start_blocking_portal("asyncio") as portal:
        with portal.wrap_async_context_manager(Client(server)) as client:
            tools = portal.call(client.list_tools).tools
            # Tools that destroy (disconnect, delete, cancel) go last, each on freshly seeded objects, so the others
            # run against live accounts and posts rather than what a destructive tool left.
            tools.sort(key=lambda t: bool(t.annotations and t.annotations.destructive_hint))
            pool = portal.call(seed, client, media_root, 0)
            for tool in tools:
                if tool.annotations and tool.annotations.destructive_hint:
                    pool = portal.call(seed, client, media_root, tally.calls)
                for strategy in Arguments(tool.input_schema, pool).strategies(pool.corpus.get(tool.name, [])):
                    fuzz(strategy, lambda arguments, name=tool.name: judge(tally, name, arguments,
                                                                          portal.call(call, client, name, arguments)))
        portal.call(http.aclose)

    summary = f"{tally.calls} calls over {len(tools)} tools; results by code: {dict(tally.by_code.most_common())}"
    print(summary, f"; refused outside the injected client: {len(escaped)}")
    for name, codes in tally.by_tool.items():
        print(f"  {name}: {dict(codes.most_common())}")
    assert {t.name for t in tools} >= {"publish_post", "upload_media", "add_webhook", "list_posts"}
    assert tally.calls >= len(tools) * EXAMPLES // 2, summary  # every tool really ran
    assert not tally.bad, f"{tally.bad.total()} calls ended in internal_error or an untyped error ({summary}):\n{tally.report()}"
