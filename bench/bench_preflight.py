"""Preflight of 25 max-length mixed targets: p50/p90 of validate_request (resolve + every rule + preview).

Run: .venv/bin/python bench/bench_preflight.py [--iterations N]
Each iteration uses fresh texts (a rotating character is changed) so no result can be reused.
"""

import argparse
import statistics
import time
from datetime import datetime, timezone

import anyio

from omnipost.clock import FixedClock
from omnipost.validation import validate_request
from omnipost.preflight.engine import NoAccounts, NoMedia
from omnipost.request import PostRequest

URL = "https://example.com/launch?utm_source=omnipost"


def texts(i: int) -> dict[str, str]:
    """Texts at (or just under) each platform's limit, mixing scripts, emoji, URLs and hashtags."""
    salt = chr(ord("a") + i % 26)
    bsky = (f"Launch {salt} 🇯🇵 नमस्ते 👨‍👩‍👧‍👦 {URL} #omnipost " * 10)[:280]
    x = (f"Launch {salt} 日本語 😷 example.com " * 12)[:200]
    threads = (f"Threads {salt} 👋🏽 update {URL} " * 20)[:480]
    long = (f"Long form {salt} — Ünïcödé 日本 {URL} #tag " * 80)
    return {"bluesky": bsky, "x": x, "threads": threads, "linkedin": long[:2990], "instagram": long[:2190],
            "facebook": long[:3000], "pinterest": long[:790]}


def request(i: int) -> PostRequest:
    t = texts(i)
    order = ["bluesky", "x", "threads", "linkedin", "instagram", "facebook", "pinterest"]
    targets = []
    for n in range(25):
        p = order[n % len(order)]
        target: dict[str, object] = {"platform": p, "text": t[p] + str(n)}
        if p in ("instagram", "pinterest"):
            target["media"] = [{"url": f"https://example.com/{n}.jpg", "altText": "A photo"}]
        if p == "pinterest":
            target["pinterest"] = {"boardId": "1234567890", "title": "Launch"}
        targets.append(target)
    return PostRequest.model_validate({"targets": targets, "firstComment": f"More at {URL}"})


async def main(iterations: int) -> None:
    clock = FixedClock(datetime(2026, 11, 24, tzinfo=timezone.utc))
    reqs = [request(i) for i in range(iterations + 20)]
    for r in reqs[:20]:  # warm-up: imports, regex compilation
        await validate_request(r, clock=clock, accounts=NoAccounts(), media=NoMedia())
    samples: list[float] = []
    for r in reqs[20:]:
        t0 = time.perf_counter_ns()
        result = await validate_request(r, clock=clock, accounts=NoAccounts(), media=NoMedia())
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        assert len(result.results) == 25
    samples.sort()
    print(f"preflight 25 targets: n={len(samples)} p50={statistics.median(samples):.3f} ms "
          f"p90={samples[int(len(samples) * 0.9)]:.3f} ms min={samples[0]:.3f} ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=500)
    anyio.run(main, ap.parse_args().iterations)
