"""Per-publish overhead on a real upstream: one publish_post to the reference Bluesky PDS through `omnipost serve`
over stdio, against the PDS's own com.atproto.repo.createRecord called directly with a session of the same account.
Target (issue 11 item 12): median ratio <= 2.

Run: .venv/bin/python bench/publish_overhead.py [--calls N] [--profile FILE]
The PDS is the one the tests use (tools/pds/launcher.py, loopback only; installed on first use). Calls alternate
(publish, direct, publish, ...) after a few warm-up calls of each, so both see the same PDS state and load.
--profile FILE: also run the same publishes in-process under cProfile (the server's side only) and write the stats.
--sandbox: no PDS; publish_post (and validate_post) to a sandbox account, in process and over stdio.
BENCH_ENV="K=V ...": extra environment for the stdio server (e.g. OMNIPOST_SCHEDULER_ENABLED=false).
"""

import argparse
import cProfile
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
WARMUP = 3


def text(i: int, kind: str) -> str:
    return f"bench {kind} {i} {time.time_ns()}"  # unique: post.duplicate must not refuse a repeat


async def direct_call(http: httpx2.AsyncClient, url: str, session: dict[str, Any], i: int) -> float:
    record = {"$type": "app.bsky.feed.post", "text": text(i, "direct"),
              "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    t0 = time.perf_counter()
    r = await http.post(f"{url}/xrpc/com.atproto.repo.createRecord",
                        headers={"Authorization": f"Bearer {session['accessJwt']}"},
                        json={"repo": session["did"], "collection": "app.bsky.feed.post", "record": record})
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed * 1000


async def publish_call(client: Client, account_id: str, i: int) -> float:
    t0 = time.perf_counter()
    result = await client.call_tool("publish_post", {"text": text(i, "omnipost"), "targets": [{"accountId": account_id}]})
    elapsed = time.perf_counter() - t0
    assert not result.is_error and result.structured_content["status"] == "published", result.structured_content
    return elapsed * 1000


async def connect(client: Client, pds: Any) -> str:
    account = pds.create_account()
    password = pds.create_app_password(account)
    result = await client.call_tool("connect_account", {"platform": "bluesky", "handle": account["handle"],
                                                        "appPassword": password, "pdsUrl": pds.url})
    assert not result.is_error, result.structured_content
    return str(result.structured_content["id"]), account, password


async def run(calls: int, pds: Any) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"OMNIPOST_DATA_DIR": data_dir, "OMNIPOST_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin",
               "OMNIPOST_UPSTREAM_ALLOW_LOOPBACK": "true", "OMNIPOST_CONFIRM": "never",
               "PYTHONPATH": str(ROOT / "server"), **dict(kv.split("=", 1) for kv in os.environ.get("BENCH_ENV", "").split() if kv)}
        server = StdioServerParameters(command=sys.executable, args=["/tmp/wraptime.py"], env=env)
        async with Client(server) as client, httpx2.AsyncClient(timeout=30) as http:
            account_id, account, password = await connect(client, pds)
            session = (await http.post(f"{pds.url}/xrpc/com.atproto.server.createSession",
                                       json={"identifier": account["handle"], "password": password})).json()
            ours: list[float] = []
            theirs: list[float] = []
            for i in range(calls + WARMUP):
                a = await publish_call(client, account_id, i)
                b = await direct_call(http, pds.url, session, i)
                if i >= WARMUP:
                    ours.append(a)
                    theirs.append(b)
            return ours, theirs


async def profile(calls: int, pds: Any, out: str) -> None:
    """The same publishes through the in-memory client, the server in this process under cProfile."""
    from omnipost.app import build_server
    from omnipost.config import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), log_level="WARNING", confirm="never", upstream_allow_loopback=True)
        async with Client(build_server(settings)) as client:
            account_id, _, _ = await connect(client, pds)
            for i in range(WARMUP):
                await publish_call(client, account_id, i)
            prof = cProfile.Profile()
            prof.enable()
            for i in range(calls):
                await publish_call(client, account_id, WARMUP + i)
            prof.disable()
            prof.dump_stats(out)


async def sandbox(calls: int) -> None:
    """publish_post to a sandbox account (no PDS): in process, then over stdio; validate_post beside it."""
    from omnipost.app import build_server
    from omnipost.config import Settings

    async def measure(client: Client, where: str) -> None:
        account = await client.call_tool("connect_account", {"platform": "sandbox", "handle": "bench", "emulates": "bluesky"})
        target = [{"accountId": account.structured_content["id"]}]
        for tool in ("validate_post", "publish_post"):
            times = []
            for i in range(calls + WARMUP):
                t0 = time.perf_counter()
                result = await client.call_tool(tool, {"text": text(i, "sandbox"), "targets": target})
                times.append((time.perf_counter() - t0) * 1000)
                assert not result.is_error, result.structured_content
            print(f"{tool:14} {where:11} median {statistics.median(times[WARMUP:]):6.2f} ms")

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir), log_level="WARNING", confirm="never", scheduler_enabled=False)
        async with Client(build_server(settings)) as client:
            await measure(client, "in process")
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"OMNIPOST_DATA_DIR": data_dir, "OMNIPOST_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin",
               "OMNIPOST_CONFIRM": "never", "PYTHONPATH": str(ROOT / "server")}
        async with Client(StdioServerParameters(command=sys.executable, args=["/tmp/wraptime.py"], env=env)) as client:
            await measure(client, "over stdio")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--profile")
    parser.add_argument("--sandbox", action="store_true", help="only the sandbox publish, in process and over stdio (no PDS)")
    args = parser.parse_args()
    if args.sandbox:
        anyio.run(sandbox, args.calls)
        return 0
    import pds as pds_module

    os.environ.setdefault("OMNIPOST_REQUIRE_PDS", "1")
    pds = pds_module._start()
    try:
        ours, theirs = anyio.run(run, args.calls, pds)
        if args.profile:
            anyio.run(profile, args.calls, pds, args.profile)
    finally:
        pds_module._stop(pds)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"publish_post over stdio   median {a:6.1f} ms  p90 {statistics.quantiles(ours, n=10)[-1]:6.1f} ms")
    print(f"createRecord direct       median {b:6.1f} ms  p90 {statistics.quantiles(theirs, n=10)[-1]:6.1f} ms")
    print(f"ratio {a / b:.2f} (target <= 2.0); our own work about {a - b:.1f} ms per publish ({args.calls} calls each)")
    return 0 if a / b <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
