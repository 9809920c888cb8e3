"""Serve a platform fake in its own process on loopback, with its state in memory (tests/test_crash_platforms.py).

    python tests/fakes/serve.py x|mastodon --port 0 [--latency-ms 20] [--allow-duplicates]

uvicorn logs "Uvicorn running on http://127.0.0.1:<port>" to stderr when it listens. The fake answers with the wall
clock (a separate process cannot share the test's clock). A request the platform's spec refuses (the referee raises
SpecViolation inside the app) is answered 500 and kept in the fake's `violations`, which its state route reports, so
the test that drives the server from outside still sees it. `--latency-ms` delays each answer by that much, as a
network would, so that kills of the server land while its calls are in flight.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2] / "server")]

import anyio  # noqa: E402 - after the path set-up above
import uvicorn  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from fakes.specs import SpecViolation  # noqa: E402


def build(platform: str, *, allow_duplicates: bool, origin: str = "http://127.0.0.1") -> Any:
    """The fake for `platform`, on the wall clock; `origin` is where it is served (Mastodon's links and domain name it).

    X: `allow_duplicates` turns its duplicate-content guard off. Mastodon has no such guard (the same text twice is two
    statuses): what keeps a resend from copying is the Idempotency-Key alone, which stays on."""
    if platform == "x":
        from fakes.x import FakeX

        fake = FakeX(clock=time.time)
        fake.refuse_duplicates = not allow_duplicates
        return fake
    if platform == "mastodon":
        from fakes.mastodon import FakeMastodon

        return FakeMastodon(origin, clock=time.time)
    raise SystemExit(f"no fake to serve for {platform}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("platform")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--allow-duplicates", action="store_true")
    args = parser.parse_args()
    fake = build(args.platform, allow_duplicates=args.allow_duplicates, origin=f"http://127.0.0.1:{args.port}")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and args.latency_ms:
            await anyio.sleep(args.latency_ms / 1000)  # emulated network latency (not a wait for a condition)
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await fake.app(scope, receive, tracked)
        except SpecViolation as exc:  # Starlette may have answered 500 already, then re-raised
            fake.violations.append(str(exc)[:500])
            if not started:
                await JSONResponse({"error": "spec_violation"}, status_code=500)(scope, receive, send)

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
