"""Per-call overhead of the two HTTP surfaces on one server: POST /v1/posts/validate against the same validate_post
over MCP streamable HTTP, in one run of `omnipost serve --transport streamable-http` on loopback.

Run: .venv/bin/python bench/rest_vs_mcp.py [--calls N] [--targets K]
Both clients keep their connection (and the MCP client its session) open; calls alternate (REST, MCP, REST, ...)
after a few warm-up calls of each, so both see the same server state and load. The request is the same on both:
one text to K platform-only targets (no account: nothing is stored), so the difference is the transport's own cost.
The server logs at INFO (its start-up line is what the script waits for): one access-log line per call on both.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
KEY = "op_live_" + "b" * 43
WARMUP = 5
PLATFORMS = ["bluesky", "x", "threads", "linkedin", "mastodon", "facebook", "instagram", "pinterest"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: str, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env.update(OMNIPOST_DATA_DIR=data_dir, OMNIPOST_API_KEY=KEY, OMNIPOST_RATE_LIMIT_PER_MINUTE="10000000",
               OMNIPOST_LOG_LEVEL="INFO", PYTHONPATH=str(ROOT / "server"))
    proc = subprocess.Popen([sys.executable, "-m", "omnipost", "serve", "--transport", "streamable-http", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    up = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Uvicorn running on" in line:
                up.set()
        up.set()

    threading.Thread(target=drain, daemon=True).start()
    if not up.wait(60) or proc.poll() is not None:
        raise SystemExit("the server did not start")
    return proc


def _stats(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"{name:<28} n={len(ms):<5} median {statistics.median(ms):7.2f} ms  mean {statistics.fmean(ms):7.2f} ms  p95 {p95:7.2f} ms"


async def run(calls: int, targets: int) -> None:
    request = {"text": "Release notes: https://example.com/notes #launch", "targets": [{"platform": p} for p in PLATFORMS[:targets]]}
    with tempfile.TemporaryDirectory() as data_dir:
        port = _free_port()
        proc = _serve(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {KEY}"}
        try:
            async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=30) as rest, \
                    httpx2.AsyncClient(headers=headers, timeout=30) as mcp_http, \
                    Client(streamable_http_client(f"{base}/mcp", http_client=mcp_http)) as mcp:
                async def rest_call() -> float:
                    t0 = time.perf_counter()
                    r = await rest.post("/v1/posts/validate", json=request)
                    elapsed = time.perf_counter() - t0
                    assert r.status_code == 200 and r.json()["valid"] is True, r.text
                    return elapsed * 1000

                async def mcp_call() -> float:
                    t0 = time.perf_counter()
                    result = await mcp.call_tool("validate_post", request)
                    elapsed = time.perf_counter() - t0
                    assert not result.is_error and result.structured_content["valid"] is True  # type: ignore[index]
                    return elapsed * 1000

                for _ in range(WARMUP):
                    await rest_call()
                    await mcp_call()
                rest_ms, mcp_ms = [], []
                for _ in range(calls):
                    rest_ms.append(await rest_call())
                    mcp_ms.append(await mcp_call())
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"validate, {targets} platform-only targets, {calls} calls each, alternating, one server on loopback")
    print(_stats("POST /v1/posts/validate", rest_ms))
    print(_stats("validate_post over MCP HTTP", mcp_ms))
    print(f"median ratio MCP/REST: {statistics.median(mcp_ms) / statistics.median(rest_ms):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--targets", type=int, default=3, choices=range(1, len(PLATFORMS) + 1))
    args = parser.parse_args()
    anyio.run(run, args.calls, args.targets)


if __name__ == "__main__":
    main()
