"""Fan-out: publish_post to 25 sandbox accounts vs 1, with 200 ms upstream latency, in the same run.

Run: .venv/bin/python bench/fanout.py [--rounds N]
The server runs in-process, driven through the in-memory MCP Client; the sandbox upstream runs
as its own process on loopback (as a real platform is remote, its CPU is not omnipost's), with
latencyMs=200 on every write. Each round publishes a fresh text (no duplicates).
Target: median(25 targets) / median(1 target) <= 1.15.
"""

import argparse
import socket
import subprocess
import sys
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client

from omnipost.app import build_server
from omnipost.config import Settings


LATENCY = 200


def start_sandbox(store: Path) -> tuple[subprocess.Popen[str], str]:
    """`omnipost sandbox serve` on a free loopback port; returns once uvicorn listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "omnipost", "sandbox", "serve", "--store", str(store), "--port", str(port)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "Uvicorn running" in line:
            break
    return proc, f"http://127.0.0.1:{port}"


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        sandbox, url = start_sandbox(Path(d) / "sandbox.db")
        try:
            await measure(rounds, Path(d), url)
        finally:
            sandbox.terminate()


async def measure(rounds: int, d: Path, url: str) -> None:
    if True:
        server = build_server(Settings(data_dir=d, log_level="WARNING", confirm="never", sandbox_url=url, _env_file=None))  # type: ignore[call-arg]
        async with Client(server) as client:
            accounts = []
            for i in range(25):
                r = await client.call_tool("connect_account", {"platform": "sandbox", "emulates": ["bluesky", "x", "threads", "linkedin", "facebook"][i % 5], "handle": f"bench{i}"})
                accounts.append(r.structured_content["id"])
            (await server.runtime.http.post(f"{url}/v1/_control/faults", json={"latencyMs": LATENCY})).raise_for_status()
            times: dict[int, list[float]] = {1: [], 25: []}
            for r in range(rounds):
                for n in (1, 25):
                    t0 = time.perf_counter()
                    result = await client.call_tool("publish_post", {"text": f"Bench round {r} n{n}", "targets": [{"accountId": a} for a in accounts[:n]]})
                    times[n].append(time.perf_counter() - t0)
                    assert not result.is_error and result.structured_content["status"] == "published", result
    one, many = statistics.median(times[1]) * 1000, statistics.median(times[25]) * 1000
    print(f"fan-out at 200 ms upstream latency (median of {rounds}): 1 target {one:.0f} ms, 25 targets {many:.0f} ms, ratio {many / one:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    anyio.run(main, ap.parse_args().rounds)
