"""Bulk scheduling (issue 14): one schedule_posts call of 100 items x 3 targets, validated and stored, beside the
same 100 posts sent as 100 single schedule_post calls, in the same run.

Run: PYTHONPATH=server .venv/bin/python bench/bulk_schedule.py [--rounds 7] [--items 100] [--targets 3]

Through the in-memory MCP client against a fresh SQLite data dir, 3 sandbox accounts (emulating bluesky, x and
threads), scheduler off (nothing is published). Every round uses new texts (no duplicate refusals). Prints the median
(and min/max) wall time of the bulk call and of the 100 single calls. Target: bulk median <= 300 ms.
"""

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from omnipost.app import build_server
from omnipost.clock import FixedClock
from omnipost.config import Settings


def items(accounts: list[str], n: int, round_: int, kind: str, start: datetime) -> list[dict[str, Any]]:
    return [{"text": f"{kind} round {round_} post {i}: planning next week's launch, one post a slot.",
             "scheduledAt": (start + timedelta(days=1, minutes=15 * i)).isoformat(),
             "targets": [{"accountId": a} for a in accounts]} for i in range(n)]


async def run(rounds: int, n: int, targets: int) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as d:
        settings = Settings(data_dir=Path(d), log_level="WARNING", confirm="never", scheduler_enabled=False,  # type: ignore[call-arg]
                            _env_file=None)
        async with Client(build_server(settings, clock=FixedClock(start))) as client:
            accounts = []
            for i, platform in enumerate(["bluesky", "x", "threads", "linkedin", "facebook"][:targets]):
                r = await client.call_tool("connect_account", {"platform": "sandbox", "emulates": platform, "handle": f"b{i}"})
                assert not r.is_error, r
                accounts.append(r.structured_content["id"])  # type: ignore[index]
            await client.call_tool("schedule_posts", {"items": items(accounts, 2, -1, "warm", start)})  # first-call costs
            bulk, single = [], []
            for round_ in range(rounds):
                batch = items(accounts, n, round_, "bulk", start)
                t0 = time.perf_counter()
                r = await client.call_tool("schedule_posts", {"items": batch})
                bulk.append(time.perf_counter() - t0)
                assert not r.is_error and r.structured_content["queued"] == n, r  # type: ignore[index]
                t0 = time.perf_counter()
                for item in items(accounts, n, round_, "single", start):
                    r = await client.call_tool("schedule_post", item)
                    assert not r.is_error, r
                single.append(time.perf_counter() - t0)

    def line(name: str, xs: list[float]) -> str:
        return (f"{name:34} median {statistics.median(xs) * 1000:7.1f} ms   min {min(xs) * 1000:7.1f}   "
                f"max {max(xs) * 1000:7.1f}   ({rounds} rounds)")

    print(f"{n} items x {len(accounts)} targets = {n * len(accounts)} posts per round")
    print(line("schedule_posts (1 call)", bulk))
    print(line(f"schedule_post ({n} calls)", single))
    verdict = "ok" if statistics.median(bulk) <= 0.3 else "OVER"
    print(f"bulk median <= 300 ms: {verdict}; {statistics.median(single) / statistics.median(bulk):.1f}x faster than single calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--targets", type=int, default=3)
    args = parser.parse_args()
    anyio.run(run, args.rounds, args.items, args.targets)


if __name__ == "__main__":
    main()
