"""The omnipost command line: `omnipost serve` (stdio by default), `worker`, `validate`, `schedule --csv`, `rules`,
`manifest --check`."""

import argparse
import json
import logging
import sys
from pathlib import Path

from dotenv import load_dotenv


def _settings():  # noqa: ANN202 - built lazily so `--help` stays instant
    from omnipost.config import Settings

    load_dotenv()
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the MCP server on stdio, SSE or streamable HTTP."""
    import gc

    # Start-up creates only long-lived objects (modules, models, schemas): cyclic collections
    # while importing and registering find nothing to free and cost ~20 % of start-up. Collect
    # nothing until the server is built, then freeze what start-up made out of later collections.
    gc.disable()
    from omnipost import logging as oplog
    from omnipost.app import build_server

    settings = _settings()
    oplog.configure(settings.log_level)
    server = build_server(settings)
    gc.freeze()
    gc.enable()
    if args.transport == "stdio":
        server.run()
        return 0
    from omnipost.transports import serve_http

    serve_http(server, settings, args.transport, args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the scheduler in the foreground (no MCP server) until SIGTERM or SIGINT."""
    import signal

    import anyio

    from omnipost import logging as oplog
    from omnipost.clock import SystemClock
    from omnipost.runtime import Runtime

    settings = _settings()
    oplog.configure(settings.log_level)
    log = logging.getLogger("omnipost.worker")

    async def run() -> int:
        rt = Runtime(settings=settings, clock=SystemClock())
        await rt.open()
        try:
            async with anyio.create_task_group() as tg:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    rt.start_background(tg)  # scheduler, webhook deliveries, version and token checks
                    log.info("worker ready")
                    async for signum in signals:
                        log.info("worker stopping (signal %d)", signum)
                        break
                await rt.stop_background()
        finally:
            await rt.close()
        log.info("worker stopped")
        return 0

    return anyio.run(run)


def _read_input(name: str) -> str:
    """A command's input file as text ("-": stdin); unreadable → UsageError naming it."""
    try:
        return sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a request file (or stdin) through the real server and print the result as JSON."""
    import anyio
    from mcp import Client

    from omnipost import logging as oplog
    from omnipost.app import build_server

    raw = _read_input(args.file)
    try:
        request = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{'stdin' if args.file == '-' else args.file} is not JSON ({exc.msg} at line {exc.lineno} "
                         f"column {exc.colno})" if raw.strip() else f"{'stdin' if args.file == '-' else args.file} is empty") from None
    if not isinstance(request, dict):
        raise UsageError(f"a post request is a JSON object, not a {type(request).__name__}")
    settings = _settings()
    if settings.database_url is None and not (settings.data_dir / "omnipost.db").exists():
        # Nothing is connected here: validate against an in-memory store and a throwaway key, creating nothing on disk.
        import secrets

        from pydantic import SecretStr

        settings = settings.model_copy(update={"database_url": "sqlite+aiosqlite://",
                                               "secret_key": SecretStr(secrets.token_urlsafe(32))})
    settings = settings.model_copy(update={"scheduler_enabled": False})  # validating never publishes a post that is due
    oplog.configure("WARNING")

    async def run() -> int:
        async with Client(build_server(settings)) as client:
            result = await client.call_tool("validate_post", request)
        payload = result.structured_content
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        if result.is_error:
            return 2
        return 0 if payload and payload.get("valid") else 1

    return anyio.run(run)


def cmd_schedule(args: argparse.Namespace) -> int:
    """Schedule one post per row of a CSV file (csvimport.py) through the real server's schedule_posts."""
    import anyio
    from mcp import Client

    from omnipost import csvimport
    from omnipost import logging as oplog
    from omnipost.app import build_server

    raw = _read_input(args.csv)
    try:
        parsed = csvimport.parse(raw)
    except csvimport.CsvError as exc:
        raise UsageError(f"{args.csv}: {exc}") from None
    # Storing never publishes here: a worker or a long-running server does, when the posts are due.
    settings = _settings().model_copy(update={"scheduler_enabled": False})
    oplog.configure("WARNING")
    rows: list[dict[str, object]] = [{"line": line, "status": "invalid", "error": {"code": "validation_failed", "message": why}}
                                     for line, why in parsed.bad]
    call: dict[str, object] = {"items": parsed.items, "atomic": bool(args.atomic),
                               "dryRun": bool(args.dry_run or (args.atomic and parsed.bad))}
    call |= {k: v for k, v in (("campaign", args.campaign), ("idempotencyKey", args.idempotency_key),
                               ("profileId", args.profile)) if v}

    async def run() -> dict[str, object] | None:
        if not parsed.items:
            return None
        async with Client(build_server(settings)) as client:
            result = await client.call_tool("schedule_posts", call)
        if result.is_error:
            error = (result.structured_content or {}).get("error", {})
            if not error.get("details") or not str(error.get("path", "")).startswith("items["):
                raise UsageError(f"{error.get('code')}: {error.get('message')}")
            return {"refused": error}
        return result.structured_content

    answer = anyio.run(run)
    if answer is not None and "refused" in answer:  # atomic: nothing stored; each item's error at its row
        for detail in answer["refused"]["details"]:  # type: ignore[index]
            index = int(str(detail["path"]).split("]")[0].removeprefix("items["))
            rows.append({"line": parsed.lines[index], "status": "invalid", "error": detail})
    elif answer is not None:
        for item in answer["items"]:  # type: ignore[union-attr]
            rows.append({"line": parsed.lines[item["index"]], **{k: v for k, v in item.items() if k != "index"}})
    rows.sort(key=lambda r: int(r["line"]))  # type: ignore[arg-type]
    for r in rows:  # where to fix it in the file: the error's path with items[i] read as the row's line
        if r.get("error"):
            r["at"] = csvimport.at_line(r["error"].get("path"), int(r["line"]))  # type: ignore[union-attr,arg-type]
    stored = not call["dryRun"] and not (answer is not None and "refused" in answer)
    good = sum(r["status"] in ("queued", "valid") for r in rows)
    if args.json:
        print(json.dumps({"stored": stored, "ok": good, "invalid": len(rows) - good, "rows": rows}, indent=2, ensure_ascii=False))
    else:
        for r in rows:
            error = r.get("error") or {}
            if r["status"] in ("queued", "valid"):
                what = f"queued {r['batchId']} ({len(r['postIds'])} posts) at {r['scheduledAt']}" if r["status"] == "queued" else "valid"  # type: ignore[arg-type]
                print(f"line {r['line']}: {what}")
            else:
                print(f"{r['at']}: {r['status']}: [{error.get('code')}] {error.get('message')}")  # type: ignore[union-attr]
        print(f"{good} of {len(rows)} rows {'stored' if stored else 'valid, nothing stored'}", file=sys.stderr)
    return 0 if good == len(rows) else 1


class UsageError(Exception):
    """Bad input to a command: one line on stderr, exit code 2 (1 stays "the post is invalid")."""


def cmd_rules(args: argparse.Namespace) -> int:
    """Print the rule catalogue (or one platform's rules)."""
    from omnipost.tools.drafting import rules_for, summarize

    summaries = [summarize(rule) for rule in rules_for(args.platform)]
    if args.json:
        print(json.dumps([s.model_dump(mode="json", exclude_none=True) for s in summaries], indent=2, ensure_ascii=False))
        return 0
    for s in summaries:
        print(f"{s.id:45} {s.stage:8} {s.summary}")
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    """Compare manifest.json with what the server registers; print the difference."""
    from omnipost.manifest import manifest_drift

    drift = manifest_drift(Path(args.path))
    if args.json:
        print(json.dumps({"matches": not drift, "drift": drift}, indent=2, ensure_ascii=False))
        return 1 if drift else 0
    for line in drift:
        print(line)
    if not drift:
        print("manifest.json matches the server's tools and prompts")
    return 1 if drift else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Publish one post to sandbox accounts through a real MCP client over stdio."""
    import anyio

    from omnipost import demo

    load_dotenv()
    return anyio.run(demo.run, args.json)


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run the sandbox upstream on loopback, or list what it received."""
    from omnipost.sandbox import cli

    settings = _settings()
    store = Path(args.store) if args.store else settings.data_dir / "sandbox.db"
    if args.action == "serve":
        cli.serve(store, host=args.host, port=args.port)
        return 0
    cli.print_posts(store, as_json=args.json)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Create, list or revoke API keys for the HTTP transports."""
    import anyio

    from omnipost import keys

    settings = _settings()
    if args.action == "create":
        return anyio.run(keys.cli_create, settings, None if args.org else (args.profile or "default"), args.mode, args.name,
                         args.json)
    if args.action == "list":
        return anyio.run(keys.cli_list, settings, args.json)
    if not args.key_id:
        raise UsageError("keys revoke needs the key id (omnipost keys list shows them)")
    return anyio.run(keys.cli_revoke, settings, args.key_id, args.json)


def cmd_accounts(args: argparse.Namespace) -> int:
    """Connect an account through its platform's OAuth sign-in, from the terminal."""
    import anyio

    from omnipost import logging as oplog
    from omnipost.oauth.cli import ConnectUsageError, connect

    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    settings = _settings()
    oplog.configure(settings.log_level)
    try:
        return anyio.run(lambda: connect(settings, args.platform, sandbox=args.sandbox, profile=args.profile, handle=args.handle,
                                         open_browser=args.open, timeout=args.timeout, as_json=args.json,
                                         instance_url=args.instance_url))
    except ConnectUsageError as exc:
        raise UsageError(str(exc)) from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `omnipost` console script."""
    from omnipost import __version__

    parser = argparse.ArgumentParser(prog="omnipost", description="Publish one post to many social accounts, from any MCP client.")
    parser.add_argument("--version", action="version", version=f"omnipost {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "sse", "streamable-http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="bind address for HTTP transports (default loopback)")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run the scheduler alone (publishes queued posts when due) until SIGTERM/SIGINT")
    worker.set_defaults(func=cmd_worker)
    validate = sub.add_parser("validate", help="validate a post request (JSON file or - for stdin)")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_validate)
    schedule = sub.add_parser("schedule", help="schedule one post per row of a CSV file (columns: docs/week-planning.md)")
    schedule.add_argument("--csv", required=True, help="the CSV file, or - for stdin")
    schedule.add_argument("--atomic", action="store_true", help="store nothing unless every row is valid")
    schedule.add_argument("--dry-run", action="store_true", help="check every row, store nothing")
    schedule.add_argument("--campaign", help="campaign of the rows that name none")
    schedule.add_argument("--idempotency-key", help="the same key and file again: the first answer, nothing new stored")
    schedule.add_argument("--profile", help="profile id or name (default profile if omitted)")
    schedule.add_argument("--json", action="store_true")
    schedule.set_defaults(func=cmd_schedule)
    rules = sub.add_parser("rules", help="list the preflight rules")
    rules.add_argument("--platform")
    rules.add_argument("--json", action="store_true", help="one JSON array of the rules")
    rules.set_defaults(func=cmd_rules)
    manifest = sub.add_parser("manifest", help="check manifest.json against the server")
    manifest.add_argument("--check", action="store_true", required=True)
    manifest.add_argument("--path", default="manifest.json")
    manifest.add_argument("--json", action="store_true")
    manifest.set_defaults(func=cmd_manifest)
    demo = sub.add_parser("demo", help="connect sandbox accounts and publish one post through the MCP client")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)
    sandbox = sub.add_parser("sandbox", help="the local simulated platform: serve it, or list what it received")
    sandbox.add_argument("action", choices=["serve", "posts"])
    sandbox.add_argument("--json", action="store_true")
    sandbox.add_argument("--store", help="sandbox store file (default <data dir>/sandbox.db)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8790)
    sandbox.set_defaults(func=cmd_sandbox)
    keys = sub.add_parser("keys", help="API keys for the HTTP transports")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?")
    keys.add_argument("--profile", help="bind the key to this profile (id or name; default profile if omitted)")
    keys.add_argument("--org", action="store_true", help="an org-wide key (all profiles)")
    keys.add_argument("--mode", choices=["live", "test"], default="live")
    keys.add_argument("--name")
    keys.add_argument("--json", action="store_true")
    keys.set_defaults(func=cmd_keys)
    accounts = sub.add_parser("accounts", help="connect an account through its platform's OAuth sign-in")
    accounts.add_argument("action", choices=["connect"])
    accounts.add_argument("platform", help="x, linkedin, facebook, instagram, threads, pinterest or mastodon")
    accounts.add_argument("--instance-url", help="mastodon: the server the account is on, e.g. https://mastodon.social")
    accounts.add_argument("--sandbox", action="store_true", help="store a sandbox account emulating the platform")
    accounts.add_argument("--profile", help="profile id or name (default profile if omitted)")
    accounts.add_argument("--handle", help="the account's display handle (default: the platform's)")
    accounts.add_argument("--open", action="store_true", help="open the URL in a browser")
    accounts.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the browser (default 600)")
    accounts.add_argument("--json", action="store_true", help="print the result as JSON (the URL goes to stderr)")
    accounts.set_defaults(func=cmd_accounts)
    args = parser.parse_args(argv)
    if args.command is None:  # `omnipost` alone, as MCP clients launch it: serve on stdio
        args = parser.parse_args(["serve", *(argv or [])])
    sys.exit(_run(args))


def _run(args: argparse.Namespace) -> int:
    """A command, with no traceback for what the user can fix: bad input or a refused request is one line on stderr
    and exit code 2; a reader that closed the pipe (`omnipost rules | head`) ends the command quietly."""
    from omnipost.errors import AppError

    try:
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except UsageError as exc:
        print(f"omnipost {args.command}: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"omnipost {args.command}: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's final flush must not fail
        return 0


if __name__ == "__main__":
    main()
