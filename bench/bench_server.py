"""Cold start to first tools/list, and per-call latency, for omnipost beside a bare MCPServer.

Run: .venv/bin/python bench/bench_server.py [--starts N] [--calls M]
Both servers are real stdio subprocesses measured in the same run, interleaved, through the
SDK's Client. Per-call: validate_post with one Bluesky target vs the bare server's echo tool, alternated.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent


def params(kind: str, data_dir: str) -> StdioServerParameters:
    env = {"OMNIPOST_DATA_DIR": data_dir, "OMNIPOST_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"}
    if kind == "omnipost":
        return StdioServerParameters(command=sys.executable, args=["-m", "omnipost", "serve"], env=env)
    return StdioServerParameters(command=sys.executable, args=[str(HERE / "bare_server.py")], env=env)


async def cold_start(kind: str, data_dir: str) -> float:
    t0 = time.perf_counter()
    async with Client(params(kind, data_dir)) as c:
        tools = await c.list_tools()
        elapsed = time.perf_counter() - t0
        assert tools.tools
    return elapsed * 1000


CALLS = {
    "omnipost": ("validate_post", {"text": "Hello from the benchmark 👋🏽 https://example.com", "targets": [{"platform": "bluesky"}]}),
    "bare": ("echo", {"text": "Hello from the benchmark"}),
}


async def per_call(data_dir: str, calls: int) -> dict[str, list[float]]:
    """Both servers open at once, calls alternated, so drift on the machine hits both alike."""
    out: dict[str, list[float]] = {"bare": [], "omnipost": []}
    async with Client(params("bare", data_dir)) as bare, Client(params("omnipost", data_dir)) as omni:
        clients = {"bare": bare, "omnipost": omni}
        for _ in range(20):  # warm-up
            for kind, c in clients.items():
                await c.call_tool(*CALLS[kind])
        for _ in range(calls):
            for kind, c in clients.items():
                t0 = time.perf_counter_ns()
                r = await c.call_tool(*CALLS[kind])
                out[kind].append((time.perf_counter_ns() - t0) / 1e6)
                assert not r.is_error
    return out


async def main(starts: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        cold: dict[str, list[float]] = {"bare": [], "omnipost": []}
        for _ in range(starts):
            for kind in ("bare", "omnipost"):
                cold[kind].append(await cold_start(kind, d))
        call = await per_call(d, calls)
    cb, co = statistics.median(cold["bare"]), statistics.median(cold["omnipost"])
    pb, po = statistics.median(call["bare"]), statistics.median(call["omnipost"])
    print(f"cold start to tools/list (median of {starts}): bare {cb:.0f} ms, omnipost {co:.0f} ms, ratio {co / cb:.2f}")
    print(f"per call (median of {calls}): bare echo {pb:.3f} ms, omnipost validate_post {po:.3f} ms, ratio {po / pb:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--calls", type=int, default=300)
    a = ap.parse_args()
    anyio.run(main, a.starts, a.calls)
