"""The real server process over stdio, streamable HTTP and SSE (loopback only)."""

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from halfopen import closed, stalled
from procs import Proc

pytestmark = pytest.mark.anyio

API_KEY = "op_test_transport_key_0123456789"
REQUEST = {"text": "Hello from a subprocess 👋🏽", "targets": [{"platform": "bluesky"}, {"platform": "x"}]}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env.update(OMNIPOST_DATA_DIR=str(tmp_path / "data"), OMNIPOST_LOG_LEVEL="INFO", **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keys_wired() -> bool:
    """Whether `python -m omnipost keys ...` exists yet (else the tests call omnipost.keys' CLI functions)."""
    spec = importlib.util.find_spec("omnipost.__main__")
    return spec is not None and spec.origin is not None and "cli_create" in Path(spec.origin).read_text(encoding="utf-8")


# The same commands through omnipost.keys' CLI functions, for a tree where __main__ does not route `keys` yet.
_KEYS_SHIM = """
import argparse, sys, anyio
from dotenv import load_dotenv
from omnipost.config import Settings
from omnipost import keys
p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="cmd", required=True)
c = sub.add_parser("create"); g = c.add_mutually_exclusive_group(); g.add_argument("--profile"); g.add_argument("--org", action="store_true")
c.add_argument("--mode", default="live"); c.add_argument("--name")
l = sub.add_parser("list"); l.add_argument("--json", action="store_true")
r = sub.add_parser("revoke"); r.add_argument("key_id")
a = p.parse_args(sys.argv[1:]); load_dotenv(); s = Settings()
if a.cmd == "create": sys.exit(anyio.run(keys.cli_create, s, None if a.org else a.profile, a.mode, a.name))
if a.cmd == "list": sys.exit(anyio.run(keys.cli_list, s, a.json))
sys.exit(anyio.run(keys.cli_revoke, s, a.key_id))
"""


def keys_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `omnipost keys ARGS` against the test data directory (bounded)."""
    cmd = [sys.executable, "-m", "omnipost", "keys"] if _keys_wired() else [sys.executable, "-c", _KEYS_SHIM]
    return subprocess.run([*cmd, *args], env=_env(tmp_path), capture_output=True, text=True, timeout=60)


def create_key(tmp_path: Path, *args: str) -> dict[str, str]:
    """`omnipost keys create ARGS`; its `field: value` stdout lines as a dict (id, profile, mode, key)."""
    proc = keys_cli(tmp_path, "create", *args)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines())


@contextmanager
def running(tmp_path: Path, transport: str, *, api_key: str | None = API_KEY, **env: str) -> Iterator[int]:
    """Start `omnipost serve` on a loopback port; wait (bounded) until uvicorn says it is listening.

    `api_key` is OMNIPOST_API_KEY (None: only the database's keys are accepted); `env` adds variables.
    """
    port = _free_port()
    if api_key is not None:
        env["OMNIPOST_API_KEY"] = api_key
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnipost", "serve", "--transport", transport, "--port", str(port)],
        env=_env(tmp_path, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        # Reading stderr blocks until the next line, so no polling sleep is needed; the
        # watchdog below bounds the wait if the server never comes up.
        timer = _Watchdog(proc, 30)
        for line in proc.stderr:
            seen.append(line)
            if "Uvicorn running on" in line:
                break
        timer.cancel()
        assert proc.poll() is None, "".join(seen)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class _Watchdog:
    """Kill the process if it has not started within `seconds` (turns a hang into a failure)."""

    def __init__(self, proc: subprocess.Popen[str], seconds: float) -> None:
        import threading

        self._timer = threading.Timer(seconds, proc.kill)
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


async def _exercise(client: Client) -> None:
    tools = {t.name for t in (await client.list_tools()).tools}
    assert {"validate_post", "list_preflight_rules", "explain_preflight_rule"} <= tools
    result = await client.call_tool("validate_post", REQUEST)
    assert not result.is_error
    body = result.structured_content
    assert body is not None and body["valid"] is True
    assert [r["measure"]["length"] for r in body["results"]] == [25, 26]  # graphemes; X weighs the emoji 2


async def test_stdio_subprocess_lists_and_calls_tools(tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "omnipost", "serve"], env=_env(tmp_path))
    with anyio.fail_after(60):
        async with Client(params) as client:
            await _exercise(client)


async def test_streamable_http_needs_the_key_and_refuses_a_foreign_origin(tmp_path: Path) -> None:
    with running(tmp_path, "streamable-http") as port:
        url = f"http://127.0.0.1:{port}/mcp"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(headers=headers) as http:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    await _exercise(client)
            body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
            json_headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
            async with httpx2.AsyncClient() as raw:
                no_key = await raw.post(url, content=body, headers=json_headers)
                assert no_key.status_code == 401
                assert no_key.json()["error"]["code"] == "unauthenticated"
                wrong_key = await raw.post(url, content=body, headers={**json_headers, "Authorization": "Bearer op_test_wrong"})
                assert wrong_key.status_code == 401
                foreign = await raw.post(url, content=body, headers={**json_headers, **headers, "Origin": "https://evil.example"})
                assert foreign.status_code == 403
                rebinding = await raw.post(url, content=body, headers={**json_headers, **headers, "Host": "evil.example"})
                assert rebinding.status_code == 421


async def test_sse_serves_the_same_tools_and_refuses_a_foreign_origin(tmp_path: Path) -> None:
    key = create_key(tmp_path, "--org", "--mode", "test", "--name", "sse")["key"]  # a database key, no OMNIPOST_API_KEY
    with running(tmp_path, "sse", api_key=None) as port:
        url = f"http://127.0.0.1:{port}/sse"
        headers = {"Authorization": f"Bearer {key}"}
        with anyio.fail_after(60):
            async with Client(sse_client(url, headers=headers)) as client:
                await _exercise(client)
            async with httpx2.AsyncClient() as raw:
                no_key = await raw.get(url)
                assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "unauthenticated"
                async with raw.stream("GET", url, headers={**headers, "Origin": "https://evil.example"}) as foreign:
                    assert foreign.status_code == 403


def test_http_transport_refuses_to_start_without_an_api_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "omnipost", "serve", "--transport", "streamable-http", "--port", str(_free_port())],
        env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "OMNIPOST_API_KEY" in proc.stderr and "omnipost keys create" in proc.stderr
    assert proc.stdout == ""


async def test_stalled_connections_neither_starve_a_real_client_nor_flood_the_log(tmp_path: Path) -> None:
    """300 connections send half their request headers and stall, past a 256-descriptor limit: a real client is
    still answered, the header timeout closes every stalled one, and stderr stays a few lines long."""
    port = _free_port()
    env = _env(tmp_path, OMNIPOST_API_KEY=API_KEY, OMNIPOST_HTTP_HEADER_TIMEOUT="2")  # the default cap, lowered to fit 256
    serve = ["sh", "-c", 'ulimit -n 256 && exec "$0" "$@"', sys.executable, "-m", "omnipost", "serve",
             "--transport", "streamable-http", "--port", str(port)]
    with Proc(serve, env).watchdog(120) as proc:
        proc.wait_for("Uvicorn running on", 60)
        held = [stalled(port) for _ in range(300)]
        try:
            with anyio.fail_after(60):
                async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}) as http:
                    async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
                        await _exercise(client)
            with anyio.fail_after(30):
                for s in held:
                    await closed(s)
        finally:
            for s in held:
                s.close()
        log = "".join(proc.lines)
    assert "Too many open files" not in log and "Traceback" not in log, log[-2000:]
    assert len(log) < 10_000, log[-2000:]
