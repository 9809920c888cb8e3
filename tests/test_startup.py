"""What the server does not load before answering tools/list, the lazy pieces working once needed, and closing
after its background loops."""

import json
import subprocess
import sys
from typing import Any

import anyio
import pytest
from mcp import Client

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings
from omnipost.preflight import text

pytestmark = pytest.mark.anyio

# Loaded on first use, not at start-up: each costs milliseconds every MCP client pays on every launch.
LAZY = ["regex", "PIL", "yaml", "sqlalchemy", "aiosqlite"]


def test_building_the_server_and_listing_tools_imports_none_of_the_lazy_modules(tmp_path) -> None:
    script = (
        "import anyio, json, sys\n"
        "from omnipost.app import build_server\n"
        "from omnipost.config import Settings\n"
        "server = build_server(Settings())\n"
        "tools = anyio.run(server.list_tools)\n"
        f"print(json.dumps([len(tools), [m for m in {LAZY!r} if m in sys.modules]]))\n"
    )
    env = {"OMNIPOST_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "OMNIPOST_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True)
    n_tools, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert n_tools >= 28
    assert loaded == []


# Not loaded by an idle server, even once it has answered a call (its store, token sessions and adapters built): the
# OAuth library (an OAuth app configured or a connect started), the media host's S3 client (a bucket configured) and
# twitter-text with pkg_resources (X counting or X's reconcile): each costs megabytes of idle memory (issue 11).
IDLE_LAZY = ["oauthlib", "botocore", "twitter_text", "pkg_resources"]


def test_an_idle_server_that_answered_a_call_has_not_loaded_the_optional_heavy_libraries(tmp_path) -> None:
    script = (
        "import anyio, json, sys\n"
        "from mcp import Client\n"
        "from omnipost.app import build_server\n"
        "from omnipost.config import Settings\n"
        "async def main():\n"
        "    async with Client(build_server(Settings())) as client:\n"
        "        assert not (await client.call_tool('list_accounts', {})).is_error\n"
        "anyio.run(main)\n"
        f"print(json.dumps([m for m in {IDLE_LAZY!r} if m in sys.modules]))\n"
    )
    env = {"OMNIPOST_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "OMNIPOST_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_lazy_pattern_becomes_the_compiled_pattern_after_first_use() -> None:
    namespace: dict = {}
    namespace["P"] = text.LazyPattern(namespace, "P", r"\X")
    assert namespace["P"].findall("e\u0301a") == ["e\u0301", "a"]
    import regex

    assert isinstance(namespace["P"], regex.Pattern)
    assert namespace["P"].findall("🇫🇷🇩🇪") == ["🇫🇷", "🇩🇪"]


async def test_prompts_load_on_the_first_prompts_request_whichever_it_is(settings, clock) -> None:
    from omnipost.app import build_server

    async with Client(build_server(settings, clock=clock)) as client:  # get before any list
        got = await client.get_prompt("split_thread", {"text": "x" * 400, "platform": "bluesky"})
        assert got.messages and "bluesky" in got.messages[0].content.text
    async with Client(build_server(settings, clock=clock)) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        assert {"adapt_post", "fix_preflight", "split_thread"} <= names
        assert len((await client.list_prompts()).prompts) == len(names)  # registered once, not per request


async def test_stopping_the_background_waits_for_a_step_in_flight(settings: Settings, clock: FixedClock,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A background loop's step in flight when the server stops (here the token check) finishes before
    stop_background() returns, so close() never closes the database under it (it used to only signal the loops)."""
    from omnipost.tokens import TokenWatcher

    entered = anyio.Event()
    order: list[str] = []
    rt = build_server(settings, clock=clock).runtime

    async def slow_step(self: TokenWatcher, stop: anyio.Event, clock: Any, every: float = 3600.0) -> None:
        entered.set()
        await stop.wait()  # the step is still at work when the server is asked to stop ...
        await anyio.lowlevel.checkpoint()  # ... and needs a moment more
        order.append("step finished")

    monkeypatch.setattr(TokenWatcher, "run_forever", slow_step)
    with anyio.fail_after(30):
        await rt.open()
        try:
            async with anyio.create_task_group() as tg:
                rt.start_background(tg)
                await entered.wait()
                await rt.stop_background()
                order.append("stopped")
        finally:
            await rt.close()
    assert order == ["step finished", "stopped"]
