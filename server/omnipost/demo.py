"""`omnipost demo`: drive a real omnipost server over stdio, through the MCP client, on the sandbox.

It connects sandbox accounts emulating three platforms, validates one post for them, publishes
it (fan-out), prints the batch and each target's outcome, then lists what the sandbox received.
"""

import json
import os
import sys
from typing import Any

from mcp import Client, StdioServerParameters

TEXT = ("omnipost demo: one post, three platforms, every rule checked locally first. "
        "https://github.com/omnipost/omnipost #opensource")


def _data(result: Any) -> dict[str, Any]:
    if result.is_error:
        raise SystemExit("tool error: " + json.dumps((result.structured_content or {}).get("error"), indent=2))
    return result.structured_content or {}


async def run(as_json: bool = False) -> int:
    """Run the demo; print a readable report (or JSON) to stdout."""
    env = {k: v for k, v in os.environ.items() if k.startswith("OMNIPOST_") or k in ("PATH", "HOME", "LANG")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "omnipost", "serve"], env=env)
    report: dict[str, Any] = {}
    async with Client(params) as client:
        accounts = []
        for emulates, handle in (("bluesky", "demo.bsky"), ("x", "demo_x"), ("linkedin", "demo-linkedin")):
            acc = _data(await client.call_tool("connect_account", {"platform": "sandbox", "emulates": emulates, "handle": handle}))
            accounts.append(acc)
        request = {"text": TEXT, "firstComment": "Docs: https://github.com/omnipost/omnipost#readme",
                   "targets": [{"accountId": a["id"]} for a in accounts]}
        validation = _data(await client.call_tool("validate_post", request))
        # the demo may be run again on the same data directory: the same text is no duplicate to refuse here
        batch = _data(await client.call_tool("publish_post", request | {"skipDuplicateCheck": True}))
        report = {"accounts": accounts, "validation": validation, "batch": batch}
    from omnipost.config import Settings
    from omnipost.sandbox.upstream import list_posts

    settings = Settings()
    received = list_posts(settings.data_dir / "sandbox.db") if settings.sandbox_url is None else []
    report["sandboxReceived"] = len(received)
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
        return 0 if batch["status"] == "published" else 1
    print("Connected sandbox accounts:")
    for a in accounts:
        print(f"  {a['id']}  {a['handle']:<14} emulates {a['emulates']}")
    print("\nValidation (length as each platform counts it):")
    for r in validation["results"]:
        m = r["measure"]
        print(f"  {r['platform']:<9} {'valid' if r['valid'] else 'INVALID':<8} {m['length']}/{m['limit']} {m['unit']}")
    print(f"\nPublished batch {batch['id']}: {batch['status']}")
    for r in batch["results"]:
        print(f"  {r['postId']}  {r['status']:<10} {r.get('url') or (r.get('error') or {}).get('code')}"
              f"  (+{len(r.get('firstComment') or [])} first comment)")
    print(f"\nThe sandbox upstream now holds {len(received)} posts (omnipost sandbox posts --json lists them).")
    return 0 if batch["status"] == "published" else 1
