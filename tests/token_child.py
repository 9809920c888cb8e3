"""A process that refreshes one account's token through TokenSession, for tests/test_token_crash.py.

    python token_child.py <data dir> <token url> <account id> <crash point> <now ISO> <current|force|wait-current> [database URL]

<token url> "oauth": the real OAuthRefresher of platform x, configured by OMNIPOST_X_* (tests/test_oauth.py points it at
the test authorization server), the token used at TOKEN_CHILD_USE_URL; else the fake's token URL (tests/fakes/tokens.py).

It opens the database (the SQLite file in <data dir>, or the PostgreSQL database URL given), takes the account's TokenSession (DatabaseCredentialStore, the fake's
Refresher), gets usable credentials (`current()`, or `expired()` to force a refresh) and uses the access token
once (GET <server>/me). Exit 0 when that answered 200, 3 on a refused refresh (the account is then marked
needs_reconnect), 4 on another error. `wait-current` first opens the database and reads the account, logs "ready"
and waits for a line on stdin (so a test can start it before another process takes the lock). One JSON line on stdout says what happened (never a token).

<crash point> SIGKILLs this very process at that moment (a real kill: no cleanup, no rollback but the database's
own): `before-request` (the lock is held, nothing sent), `after-response` (the server answered and rotated, the
answer is in memory, nothing committed), `after-commit` (the new tokens are committed, not yet used), `none`.
"""

import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakes.tokens import FakeOAuthRefresher  # noqa: E402

from omnipost.clock import FixedClock  # noqa: E402
from omnipost.errors import PlatformAuthError, PlatformError  # noqa: E402
from omnipost.oauth.model import TokenSet  # noqa: E402
from omnipost.oauth.session import DatabaseCredentialStore, LockedCredentials, TokenSessions  # noqa: E402
from omnipost.platforms.base import AccountContext  # noqa: E402
from omnipost.store.crypto import Vault, load_key  # noqa: E402
from omnipost.store.db import Database  # noqa: E402
from omnipost.store.models import Account  # noqa: E402


def die(point: str) -> None:
    print(json.dumps({"killed": point}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingRefresher:
    def __init__(self, inner: Any, crash: str) -> None:
        self.inner, self.crash = inner, crash

    async def refresh(self, credentials: dict[str, Any]) -> TokenSet:
        if self.crash == "before-request":
            die(self.crash)
        tokens = await self.inner.refresh(credentials)
        if self.crash == "after-response":
            die(self.crash)
        return tokens

    async def revoke(self, credentials: dict[str, Any]) -> bool:
        return await self.inner.revoke(credentials)


class CrashingStore(DatabaseCredentialStore):
    crash: str = "none"

    @asynccontextmanager
    async def locked(self, account_id: str) -> AsyncIterator[LockedCredentials]:
        async with super().locked(account_id) as row:
            save = row.save

            async def save_then_maybe_die(credentials: dict[str, Any], lapses_at: datetime | None) -> None:
                await save(credentials, lapses_at)
                if self.crash == "after-commit":
                    die(self.crash)

            row.save = save_then_maybe_die  # type: ignore[method-assign]
            yield row


async def main(data_dir: Path, token_url: str, account_id: str, crash: str, now: datetime, mode: str, url: str | None) -> int:
    clock = FixedClock(now)
    db = await Database.open(url, data_dir, now)
    vault = Vault(load_key(None, data_dir))
    store = CrashingStore(db, vault)
    store.crash = crash

    async def needs_reconnect(account: str) -> None:
        async with db.session() as s:
            row = await s.get(Account, account)
            assert row is not None
            row.health = "needs_reconnect"
            s.add(row)
            await s.commit()

    async with httpx2.AsyncClient(timeout=60) as http:
        if token_url == "oauth":  # the real OAuthRefresher of platform x, its provider configured by OMNIPOST_X_* (a test AS)
            from omnipost.oauth.client import refresher_for

            inner: Any = refresher_for("x", http, clock, os.environ)
            assert inner is not None, "OMNIPOST_X_CLIENT_ID is not set"
        else:
            inner = FakeOAuthRefresher(http, clock=clock, token_url=token_url)
        refresher = CrashingRefresher(inner, crash)
        sessions = TokenSessions(store, clock, {"x": refresher}, on_refused=needs_reconnect)
        async with db.session() as s:
            row = await s.get(Account, account_id)
            assert row is not None and row.credentials is not None
        session = sessions.get(AccountContext(id=row.id, platform=row.platform, handle=row.handle, credentials=vault.open(row.credentials)))
        if mode == "wait-current":  # opened and read: wait for a line on stdin before refreshing
            logging.getLogger("omnipost.tokens").info("ready")
            await anyio.to_thread.run_sync(sys.stdin.readline)
        try:
            with anyio.fail_after(40):
                creds = await (session.expired(session.access_token) if mode == "force" else session.current())
        except PlatformAuthError as exc:
            print(json.dumps({"error": exc.code}), flush=True)
            return 3
        except PlatformError as exc:
            print(json.dumps({"error": exc.code}), flush=True)
            return 4
        finally:
            await db.close()
        use = os.environ.get("TOKEN_CHILD_USE_URL") or token_url.rsplit("/", 1)[0] + "/me"  # where the access token is used
        me = await http.get(use, headers={"Authorization": f"Bearer {creds['access_token']}"})
        print(json.dumps({"me": me.status_code}), flush=True)
        return 0 if me.status_code == 200 else 4


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("omnipost.tokens").setLevel(logging.DEBUG)
    folder, token_url, account, point, at, how = sys.argv[1:7]
    database_url = sys.argv[7] if len(sys.argv) > 7 else None
    sys.exit(anyio.run(main, Path(folder), token_url, account, point, datetime.fromisoformat(at), how, database_url))
