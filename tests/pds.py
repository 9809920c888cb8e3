"""A real local Bluesky PDS for tests: the session-scoped ``local_pds`` fixture.

Use it from a test module::

    import pds

    local_pds = pds.local_pds  # registers the fixture in this module

    def test_something(local_pds):
        bot = local_pds.create_account("bot")          # handle bot.test
        app_password = local_pds.create_app_password(bot)
        ...  # point the code under test at local_pds.url
        rec = local_pds.get_record(bot["did"], "app.bsky.feed.post", rkey)

The PDS (tools/pds/launcher.py: @atproto/pds + an in-memory did:plc
directory, loopback only) is installed into .tools/pds (or
$OMNIPOST_PDS_HOME) on first use, which takes one to two minutes, and started
once per pytest session on free 127.0.0.1 ports with an empty data dir; every
module that imports the fixture shares that one instance, stopped at session end.
Accounts therefore persist across tests: use distinct handles (or none, for a
random one).

Without ``node``/``npm`` on PATH the tests using it are skipped, unless
OMNIPOST_REQUIRE_PDS=1 (CI), which turns that into a failure. A failed install
or start always fails.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = REPO_ROOT / "tools" / "pds" / "launcher.py"
HANDLE_DOMAIN = ".test"
INSTALL_TIMEOUT = 1200  # seconds; a cold install takes ~1.5 min
START_TIMEOUT = 90  # seconds for /xrpc/_health


class XrpcError(Exception):
    """A non-2xx XRPC answer: HTTP status plus the {"error", "message"} body."""

    def __init__(self, status: int, body: Any, nsid: str):
        self.status = status
        self.body = body
        self.nsid = nsid
        self.error = body.get("error") if isinstance(body, dict) else None
        self.message = body.get("message") if isinstance(body, dict) else None
        super().__init__(f"{nsid}: HTTP {status} {body!r}")


class LocalPds:
    """A running local PDS: its URL, secrets and small XRPC helpers."""

    def __init__(self, url: str, env: dict[str, str], run_dir: Path, home: Path):
        self.url = url.rstrip("/")
        self.env = env  # LOCAL_PDS_URL, LOCAL_PDS_ADMIN_PASSWORD, LOCAL_PDS_JWT_SECRET, LOCAL_PLC_URL ...
        self.admin_password = env.get("LOCAL_PDS_ADMIN_PASSWORD", "")
        self.jwt_secret = env.get("LOCAL_PDS_JWT_SECRET", "")
        self.plc_url = env.get("LOCAL_PLC_URL", "")
        self.handle_domain = env.get("LOCAL_PDS_HANDLE_DOMAIN", HANDLE_DOMAIN)
        self.run_dir = run_dir
        self.home = home
        self.log_file = run_dir / "pds.log"
        self.client = httpx2.Client(base_url=self.url, timeout=30, trust_env=False)

    # -- raw XRPC -----------------------------------------------------------

    def xrpc(self, method: str, nsid: str, token: str | None = None, **kwargs: Any) -> httpx2.Response:
        """One XRPC request; returns the response whatever its status."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["authorization"] = f"Bearer {token}"
        return self.client.request(method, f"/xrpc/{nsid}", headers=headers, **kwargs)

    def call(self, method: str, nsid: str, token: str | None = None, **kwargs: Any) -> Any:
        """XRPC call that returns the JSON body, or raises XrpcError."""
        r = self.xrpc(method, nsid, token, **kwargs)
        if not 200 <= r.status_code < 300:
            try:
                body: Any = r.json()
            except ValueError:
                body = r.text
            raise XrpcError(r.status_code, body, nsid)
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content

    # -- helpers ------------------------------------------------------------

    def full_handle(self, handle: str | None = None) -> str:
        """``alice`` -> ``alice.test``; None -> a random ``user-xxxxxxxx.test``."""
        if not handle:
            handle = f"user-{secrets.token_hex(4)}"
        return handle if "." in handle else handle + self.handle_domain

    def create_account(self, handle: str | None = None, password: str | None = None) -> dict[str, Any]:
        """com.atproto.server.createAccount (no invite needed).

        Returns {did, handle, password, accessJwt, refreshJwt, email}. ``handle``
        without a dot gets the ``.test`` suffix; None picks a random one."""
        handle = self.full_handle(handle)
        password = password or f"pw-{secrets.token_hex(8)}"
        email = f"{handle.replace('.', '-')}@example.com"
        out = self.call(
            "POST",
            "com.atproto.server.createAccount",
            json={"handle": handle, "email": email, "password": password},
        )
        return {
            "did": out["did"],
            "handle": out["handle"],
            "password": password,
            "accessJwt": out["accessJwt"],
            "refreshJwt": out["refreshJwt"],
            "email": email,
        }

    def create_session(self, identifier: str, password: str) -> dict[str, Any]:
        """com.atproto.server.createSession (handle or DID, main or app password)."""
        return self.call(
            "POST",
            "com.atproto.server.createSession",
            json={"identifier": identifier, "password": password},
        )

    def create_app_password(self, account: dict[str, Any], name: str | None = None) -> str:
        """com.atproto.server.createAppPassword with the account's main session; the password."""
        out = self.call(
            "POST",
            "com.atproto.server.createAppPassword",
            account["accessJwt"],
            json={"name": name or f"tests-{secrets.token_hex(4)}"},
        )
        return out["password"]

    def get_record(self, did: str, collection: str, rkey: str) -> dict[str, Any] | None:
        """com.atproto.repo.getRecord -> {uri, cid, value}; None if there is no such record."""
        try:
            return self.call(
                "GET",
                "com.atproto.repo.getRecord",
                params={"repo": did, "collection": collection, "rkey": rkey},
            )
        except XrpcError as e:
            if e.status == 400 and e.error == "RecordNotFound":
                return None
            raise

    def list_records(self, did: str, collection: str) -> list[dict[str, Any]]:
        """com.atproto.repo.listRecords, all pages: [{uri, cid, value}, ...], newest first."""
        records: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"repo": did, "collection": collection, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "com.atproto.repo.listRecords", params=params)
            records.extend(page.get("records", []))
            cursor = page.get("cursor")
            if not cursor or not page.get("records"):
                return records

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------- the fixture


def _required() -> bool:
    return os.environ.get("OMNIPOST_REQUIRE_PDS", "").strip().lower() not in ("", "0", "false", "no")


def _home() -> Path:
    return Path(os.environ.get("OMNIPOST_PDS_HOME") or REPO_ROOT / ".tools" / "pds")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _launcher(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(LAUNCHER), *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{shlex.join(cmd)} did not finish in {timeout:.0f} s:\n{e.stderr or ''}", pytrace=False)


def _start() -> LocalPds:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = (
            f"local PDS needs {' and '.join(missing)} on PATH (Node.js + npm; the launcher fetches node 22 itself)"
        )
        if _required():
            pytest.fail(f"OMNIPOST_REQUIRE_PDS is set but {reason}", pytrace=False)
        pytest.skip(reason)

    home = _home()
    r = _launcher("install", "--home", str(home), timeout=INSTALL_TIMEOUT)
    if r.returncode != 0:
        pytest.fail(f"local PDS install failed (exit {r.returncode}):\n{r.stderr[-4000:]}", pytrace=False)

    run_dir = Path(tempfile.mkdtemp(prefix="omnipost-local-pds-"))
    for _attempt in range(3):  # a free port can be taken between probe and bind
        port, plc_port = _free_ports(2)
        r = _launcher(
            "start", "--fresh", "--home", str(home), "--run-dir", str(run_dir),
            "--port", str(port), "--plc-port", str(plc_port),
            "--timeout", str(START_TIMEOUT), "--exit-with-pid", str(os.getpid()),
            timeout=START_TIMEOUT + 60,
        )
        if r.returncode == 0 or ("in use" not in r.stderr and "EADDRINUSE" not in r.stderr):
            break
    if r.returncode != 0:
        pytest.fail(f"local PDS failed to start (exit {r.returncode}):\n{r.stderr[-6000:]}", pytrace=False)
    url = r.stdout.strip().splitlines()[-1]

    e = _launcher("env", "--home", str(home), "--run-dir", str(run_dir), timeout=60)
    if e.returncode != 0:
        _launcher("stop", "--home", str(home), "--run-dir", str(run_dir), timeout=60)
        pytest.fail(f"launcher env failed:\n{e.stderr}", pytrace=False)
    env: dict[str, str] = {}
    for line in e.stdout.splitlines():
        parts = shlex.split(line)
        if len(parts) == 2 and parts[0] == "export" and "=" in parts[1]:
            k, v = parts[1].split("=", 1)
            env[k] = v
    return LocalPds(url, env, run_dir, home)


def _stop(pds: LocalPds) -> None:
    pds.close()
    _launcher("stop", "--home", str(pds.home), "--run-dir", str(pds.run_dir), timeout=60)
    shutil.rmtree(pds.run_dir, ignore_errors=True)


# One PDS per pytest process, whichever modules import the fixture: pytest
# would otherwise make one per importing module (each import is its own
# fixture definition). Reference-counted, stopped when the last user ends.
_lock = threading.Lock()
_instance: LocalPds | None = None
_users = 0
_outcome: BaseException | None = None  # a skip/fail from the first try, replayed


@pytest.fixture(scope="session")
def local_pds() -> Iterator[LocalPds]:
    """A running local PDS (see the module docstring)."""
    global _instance, _users, _outcome
    with _lock:
        if _outcome is not None:
            raise _outcome
        if _instance is None:
            try:
                _instance = _start()
            except (pytest.skip.Exception, pytest.fail.Exception) as e:
                _outcome = e
                raise
        _users += 1
        pds = _instance
    try:
        yield pds
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _instance is not None:
                _instance = None
                _stop(pds)
