"""Kill test: a process refreshing an account's token (tests/token_child.py, a real subprocess on a real SQLite file)
is SIGKILLed at a chosen point of the refresh, then a new process refreshes again. The authorization server is
tests/fakes/tokens.py on a loopback socket (uvicorn, in this process, so its state outlives the kills), issuing
single-use rotating refresh tokens: a refresh token sent once is refused afterwards.

What it proves, point by point:
- `before-request` (the lock is held, nothing sent): the stored refresh token is still the valid one; the next process
  refreshes. The killed process's lock died with it (SQLite's write lock; PostgreSQL's row lock, with its
  connection): the next one does not wait for it. These two run on SQLite and on PostgreSQL (tests/pg.py).
- `after-commit` (the rotated tokens committed, not yet used): the stored refresh token is the new, valid one; the
  next process refreshes with it.
- `after-response`, strict rotation: THE WINDOW THAT CANNOT BE CLOSED. The server rotated (the old token is spent) and
  the new tokens died with the process before the commit, so the database holds a refresh token the server refuses:
  the next refresh is refused and the account is marked needs_reconnect (nothing is lost silently; the user is told
  through token.revoked). The same holds when the answer is lost on the wire. Only the server can close it:
- `after-response`, with a rotation grace period on the server (the reference Bluesky PDS has one): the next process
  sends the old token again within the grace period, gets the same successor, and the account keeps working.
In every case exactly one refresh token is valid at the server at the end (or none, with the account marked), and no
token appears on the processes' stderr.
"""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from fakes.tokens import FakeTokenServer, credentials_from
from pg import pg_cluster, pg_url  # noqa: F401 - fixtures

from omnipost.clock import FixedClock
from omnipost.store.crypto import Vault, load_key
from omnipost.store.db import Database
from omnipost.store.models import Account, Profile
from sqlmodel import select

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
TESTS = Path(__file__).resolve().parent
ACCOUNT = "acc_crash1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(fake: FakeTokenServer) -> Iterator[str]:
    """The fake on 127.0.0.1 (uvicorn in a thread); yields its token URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, lifespan="off", log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the fake token server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/token"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def connect_account(data_dir: Path, fake: FakeTokenServer, url: str | None = None) -> None:
    """The account as a connect would leave it: the fake's first tokens, the access token ending in 60 s."""
    async def run() -> None:
        db = await Database.open(url, data_dir, NOW)
        vault = Vault(load_key(None, data_dir))
        async with db.session() as s:
            profile = (await s.exec(select(Profile))).one()
            s.add(Account(id=ACCOUNT, profile_id=profile.id, platform="x", handle="crash", health="active", defaults={},
                          credentials=vault.seal(credentials_from(fake.issue() | {"expires_in": 60}, NOW)), created_at=NOW))
            await s.commit()
        await db.close()

    data_dir.mkdir(parents=True, exist_ok=True)
    anyio.run(run)


def child(data_dir: Path, token_url: str, crash: str, mode: str = "current", url: str | None = None) -> tuple[int, dict[str, Any], str]:
    """Run token_child.py to its end (or its kill): (return code, its JSON line, its stderr)."""
    return child_run(data_dir, token_url, crash, mode=mode, url=url)


def child_run(data_dir: Path, token_url: str, crash: str, *, mode: str = "current", url: str | None = None,
              env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """child(), with extra environment (`env`: e.g. a provider's OMNIPOST_X_* for the real OAuthRefresher)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")} | (env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent / "server"), str(TESTS)])
    done = subprocess.run([sys.executable, str(TESTS / "token_child.py"), str(data_dir), token_url, ACCOUNT, crash, NOW.isoformat(), mode,
                           *([url] if url else [])], env=env, capture_output=True, text=True, timeout=90)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


def stored(data_dir: Path, url: str | None = None) -> tuple[dict[str, Any], str]:
    """The account's credentials and health as committed (SQLite: read with plain sqlite3, outside the program)."""
    if url is None:
        with closing(sqlite3.connect(data_dir / "omnipost.db")) as conn:
            sealed, health = conn.execute("SELECT credentials, health FROM accounts WHERE id = ?", (ACCOUNT,)).fetchone()
    else:
        async def read() -> tuple[bytes, str]:
            db = await Database.open(url, data_dir, NOW)
            async with db.session() as s:
                row = await s.get(Account, ACCOUNT)
            await db.close()
            assert row is not None and row.credentials is not None
            return row.credentials, row.health

        sealed, health = anyio.run(read)
    return Vault(load_key(None, data_dir)).open(sealed), health


def no_token_in(fake: FakeTokenServer, *texts: str) -> None:
    tokens = [*fake.refresh_tokens, *fake.access_tokens]
    for shown in texts:
        assert not any(f"{t}\"" in shown or f"{t} " in shown or f"{t}'" in shown or shown.rstrip().endswith(t) for t in tokens), shown[-2000:]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None: the SQLite file in the data dir; else a fresh PostgreSQL database (tests/pg.py)."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.mark.parametrize("crash", ["before-request", "after-commit"])
def test_a_kill_on_either_side_of_the_request_and_commit_leaves_a_refreshable_account(tmp_path: Path, crash: str,
                                                                                       database: str | None) -> None:
    clock = FixedClock(NOW)
    fake = FakeTokenServer(lambda: clock.now().timestamp())
    data_dir = tmp_path / "data"
    connect_account(data_dir, fake, database)
    with serving(fake) as url:
        code, said, err1 = child(data_dir, url, crash, url=database)
        assert code == -9 and said == {"killed": crash}, err1
        creds, health = stored(data_dir, database)
        expected = "rt-1" if crash == "before-request" else "rt-2"
        assert (creds["refresh_token"], health) == (expected, "active")
        assert fake.valid_refresh_tokens() == [expected]  # what is stored is what the server accepts
        started = time.monotonic()
        code, said, err2 = child(data_dir, url, "none", mode="force", url=database)  # restart: refresh again, use the token
        assert (code, said) == (0, {"me": 200}), err2
        assert time.monotonic() - started < 20  # the dead process's lock did not hold it up (SQLite's busy_timeout is 30 s)
        creds, health = stored(data_dir, database)
        assert health == "active" and fake.valid_refresh_tokens() == [creds["refresh_token"]]
        assert fake.token_requests() == (1 if crash == "before-request" else 2)
    no_token_in(fake, err1, err2)


def test_a_kill_after_the_server_rotated_and_before_the_commit_is_the_window_that_remains(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    fake = FakeTokenServer(lambda: clock.now().timestamp())
    data_dir = tmp_path / "data"
    connect_account(data_dir, fake)
    with serving(fake) as url:
        code, said, err1 = child(data_dir, url, "after-response")
        assert code == -9 and said == {"killed": "after-response"}, err1
        creds, health = stored(data_dir)
        assert creds["refresh_token"] == "rt-1" and fake.valid_refresh_tokens() == ["rt-2"]  # rotated; rt-2 died with it
        code, said, err2 = child(data_dir, url, "none")
        assert (code, said) == (3, {"error": "platform_auth_failed"}), err2  # refused: told, not hidden
        assert stored(data_dir)[1] == "needs_reconnect"
    no_token_in(fake, err1, err2)


def test_with_a_rotation_grace_period_the_window_closes(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    fake = FakeTokenServer(lambda: clock.now().timestamp(), grace=60.0)
    data_dir = tmp_path / "data"
    connect_account(data_dir, fake)
    with serving(fake) as url:
        code, said, _ = child(data_dir, url, "after-response")
        assert code == -9 and said == {"killed": "after-response"}
        code, said, err = child(data_dir, url, "none")
        assert (code, said) == (0, {"me": 200}), err
        creds, health = stored(data_dir)
        assert (creds["refresh_token"], health) == ("rt-2", "active") and fake.valid_refresh_tokens() == ["rt-2"]


def test_two_processes_on_one_sqlite_file_make_one_token_request(tmp_path: Path) -> None:
    """A's token request is held at the server until B logged that it is taking the lock (B then waits in SQLite's
    busy handler for A's write lock); released, A commits, B reads A's tokens under the lock and sends nothing.
    (B opens the database first: while a refresh holds SQLite's write lock, a process starting up waits for it too,
    as every writer does, for as long as the token request takes.)"""
    from procs import Proc

    clock = FixedClock(NOW)
    fake = FakeTokenServer(lambda: clock.now().timestamp())
    data_dir = tmp_path / "data"
    connect_account(data_dir, fake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPOST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent / "server"), str(TESTS)])
    with serving(fake) as url:
        gate = fake.hold_across_threads()
        args = [sys.executable, str(TESTS / "token_child.py"), str(data_dir), url, ACCOUNT, "none", NOW.isoformat()]
        b = Proc([*args, "wait-current"], env, stdin=subprocess.PIPE)  # B opens the database before A locks it
        a: Proc | None = None
        try:
            with b.watchdog(120):
                b.wait_for("ready", 60)
                a = Proc([*args, "current"], env)
                with a.watchdog(90):
                    assert fake.arrived_sync.wait(60), "".join(a.lines)  # A holds the lock; its request is at the server
                    assert b.proc.stdin is not None
                    b.proc.stdin.write("go\n")
                    b.proc.stdin.flush()
                    b.wait_for("taking the refresh lock", 60)
                    gate.set()
                    assert a.proc.wait(timeout=60) == 0, "".join(a.lines)
                    assert b.proc.wait(timeout=60) == 0, "".join(b.lines)
        finally:
            gate.set()
        assert fake.token_requests() == 1
        creds, health = stored(data_dir)
        assert (creds["refresh_token"], health) == ("rt-2", "active") and fake.valid_refresh_tokens() == ["rt-2"]
        assert [p for p, _ in fake.requests].count("/me") == 2  # both used the token
    no_token_in(fake, "".join(a.lines if a else []), "".join(b.lines))
