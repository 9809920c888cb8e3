"""Command-line entry points for the sandbox: run the simulated upstream, show what it received.

`omnipost`'s own argparse wires `serve` and `print_posts` in; `python -m omnipost.sandbox.cli`
runs them standalone (`serve [--store PATH] [--host 127.0.0.1] [--port N]`,
`posts [--store PATH] [--json]`). `--port 0` picks a free port; uvicorn's "Uvicorn running on"
line on stderr names it.
"""

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8790
STORE_NAME = "sandbox.db"  # the name the embedded sandbox (runtime.py) uses in the data directory


def default_store_path() -> Path:
    """The sandbox's own file in omnipost's data directory (next to, never inside, its database)."""
    from dotenv import load_dotenv

    from omnipost.config import Settings

    load_dotenv()  # the same data directory `omnipost serve` would use
    return Settings().data_dir / STORE_NAME


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(store_path: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the sandbox upstream with uvicorn until interrupted (loopback only)."""
    import uvicorn

    from omnipost.clock import SystemClock
    from omnipost.sandbox.upstream import create_sandbox_app

    # The control endpoints have no auth (anyone who can reach them can inject faults): keep it local.
    if not _is_loopback(host):
        raise ValueError(f"The sandbox listens on loopback only; '{host}' is not a loopback address.")
    uvicorn.run(create_sandbox_app(Path(store_path), clock=SystemClock()), host=host, port=port, log_level="info")


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_posts(store_path: Path, as_json: bool) -> None:
    """Print every post the sandbox received: `{"count", "posts"}` as JSON, or a table."""
    from omnipost.sandbox.upstream import list_posts

    posts = list_posts(Path(store_path))
    if as_json:
        print(json.dumps({"count": len(posts), "posts": posts}, indent=2, ensure_ascii=False))
        return
    columns = (("createdAt", 24), ("handle", 16), ("id", 36), ("kind", 7), ("replyTo", 36), ("media", 5), ("text", 50))
    print("  ".join(name.ljust(width) for name, width in columns).rstrip())
    for post in posts:
        row = {**post, "media": len(post["media"])}
        print("  ".join(_cell(row.get(name), width).ljust(width) for name, width in columns).rstrip())
    print(f"{len(posts)} post{'s' if len(posts) != 1 else ''} in {store_path}")


def main(argv: list[str] | None = None) -> int:
    """`python -m omnipost.sandbox.cli serve|posts ...`."""
    parser = argparse.ArgumentParser(prog="python -m omnipost.sandbox.cli", description="The omnipost sandbox platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the simulated upstream on loopback")
    p_serve.add_argument("--store", type=Path, default=None, help=f"its SQLite file (default: <data dir>/{STORE_NAME})")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p_posts = sub.add_parser("posts", help="print what the sandbox received")
    p_posts.add_argument("--store", type=Path, default=None)
    p_posts.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    store = args.store or default_store_path()
    if args.command == "serve":
        try:
            serve(store, args.host, args.port)
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        return 0
    print_posts(store, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
