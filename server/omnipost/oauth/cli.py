"""`omnipost accounts connect <platform>`: the OAuth connect from a terminal.

Prints the authorization URL (opens a browser only with --open), listens on the loopback redirect URI, and waits
(at most --timeout seconds) until the browser comes back; prints the account(s) connected, as JSON with --json
(the URL then goes to stderr, so stdout is only the result). Exit codes: 0 connected, 1 refused / timed out,
2 bad input or configuration (one line on stderr).
"""

import json
import sys
import webbrowser
from typing import Any

import anyio

from omnipost.config import Settings
from omnipost.errors import AppError


class ConnectUsageError(Exception):
    """Bad input to `accounts connect` (exit 2)."""


async def connect(settings: Settings, platform: str, *, sandbox: bool, profile: str | None, handle: str | None,
                  open_browser: bool, timeout: float, as_json: bool, instance_url: str | None = None) -> int:
    """Run one connect to the end; the exit code. `instance_url`: the server, for a platform on any server (Mastodon)."""
    from omnipost.clock import SystemClock
    from omnipost.oauth.providers import INSTANCE_PROVIDERS, PROVIDERS
    from omnipost.outputs import account_out
    from omnipost.platforms.registry import PLATFORMS
    from omnipost.runtime import Runtime

    if platform not in PROVIDERS and platform not in INSTANCE_PROVIDERS:
        raise ConnectUsageError(f"{platform} does not connect through OAuth; one of: {', '.join([*PROVIDERS, *INSTANCE_PROVIDERS])}")
    if platform in INSTANCE_PROVIDERS and (sandbox or not instance_url):
        raise ConnectUsageError(f"{platform} connects with --instance-url <its server> (and no --sandbox)")
    if platform not in INSTANCE_PROVIDERS and instance_url:
        raise ConnectUsageError(f"--instance-url is only for {', '.join(INSTANCE_PROVIDERS)}")
    spec = PLATFORMS.get(platform)
    if not sandbox and (spec is None or not spec.publishes):
        raise ConnectUsageError(f"omnipost cannot publish to {platform} yet; --sandbox connects a sandbox account through "
                                f"{platform}'s sign-in instead")
    rt = Runtime(settings=settings.model_copy(update={"scheduler_enabled": False}), clock=SystemClock())
    await rt.open()
    try:
        service = rt.connect_
        done = anyio.Event()
        service.on_finished = lambda _state: done.set()
        profile_row = await rt.accounts.resolve_profile(profile)
        args: dict[str, Any] = ({"handle": handle} if handle else {}) | ({"instanceUrl": instance_url} if instance_url else {})
        started = await service.start(profile_row.id, platform, target="sandbox" if sandbox else "account", args=args)
        async with anyio.create_task_group() as tg:
            listening = await service.ensure_listening(tg)
            say = sys.stderr if as_json else sys.stdout
            print(f"Open this URL to connect {platform}:\n{started.authorization_url}", file=say, flush=True)
            if not listening:
                print(f"Nothing listens on {started.redirect_uri}: paste here the URL the browser lands on.", file=sys.stderr, flush=True)
            if open_browser:
                webbrowser.open(started.authorization_url)
            refused: AppError | None = None
            with anyio.move_on_after(timeout):
                if listening:
                    await done.wait()
                else:
                    pasted = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                    try:
                        await service.complete(started.state, redirect_url=pasted.strip())
                    except AppError as exc:
                        refused = exc
            with anyio.move_on_after(5):  # let the listener finish the browser's page before it goes
                await service.wait_closed()
            tg.cancel_scope.cancel()
        row = await service.get(started.state)
        if row.status != "connected":
            error = row.error or (refused.to_error_object().model_dump(exclude_none=True) if refused is not None else
                                  {"code": "validation_failed", "rule": "connect.timeout",
                                   "message": f"No answer from the browser within {timeout:g} seconds."})
            if as_json:
                print(json.dumps({"status": row.status, "error": error}, ensure_ascii=False))
            print(f"omnipost accounts: {error.get('code')}: {error.get('message')}", file=sys.stderr)
            return 1
        accounts = [account_out(await rt.accounts.get(profile_row.id, a)) for a in row.account_ids]
        if as_json:
            print(json.dumps({"status": "connected", "accounts": [a.model_dump(mode="json") for a in accounts]}, ensure_ascii=False))
        else:
            for a in accounts:
                print(f"connected {a.platform}{' (' + a.emulates + ')' if a.emulates else ''} {a.handle}: {a.id}")
        return 0
    finally:
        await rt.close()
