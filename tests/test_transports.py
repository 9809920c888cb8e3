"""The real server process over stdio, streamable HTTP and SSE (loopback only)."""

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


@contextmanager
def running(tmp_path: Path, transport: str) -> Iterator[int]:
    """Start `omnipost serve` on a loopback port; wait (bounded) until uvicorn says it is listening."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnipost", "serve", "--transport", transport, "--port", str(port)],
        env=_env(tmp_path, OMNIPOST_API_KEY=API_KEY),
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
    with running(tmp_path, "sse") as port:
        url = f"http://127.0.0.1:{port}/sse"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with anyio.fail_after(60):
            async with Client(sse_client(url, headers=headers)) as client:
                await _exercise(client)
            async with httpx2.AsyncClient() as raw:
                assert (await raw.get(url)).status_code == 401
                async with raw.stream("GET", url, headers={**headers, "Origin": "https://evil.example"}) as foreign:
                    assert foreign.status_code == 403


def test_http_transport_refuses_to_start_without_an_api_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "omnipost", "serve", "--transport", "streamable-http", "--port", str(_free_port())],
        env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "OMNIPOST_API_KEY" in proc.stderr
    assert proc.stdout == ""
