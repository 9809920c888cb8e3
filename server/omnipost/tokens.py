"""Account tokens before they lapse: refresh what can be refreshed, warn about what cannot (PRODUCT §7, §9).

Every account whose token ends within REFRESH_AHEAD (its `token_expires_at`, recorded by the adapter at
connect and at every rotation) is looked at by `TokenWatcher.check`:

- its platform has a Refresher: its TokenSession (oauth/session.py) renews it now, under the account's refresh lock
  (skipped when another process already renewed it past the window). A refusal (PlatformAuthError) marks the
  account `needs_reconnect` and emits `token.revoked` (the session does it, as a refused publish would); any other
  failure leaves it for the next check and emits `token.expiring`, since it may lapse before that works.
- it has none: emit `token.expiring`, so someone reconnects it in time.

`token.expiring` is sent once per account and expiry instant: the delivery log is the durable memory
(the event's `eventKey` is `<account id>@<expiry>`), so a restart or a second server does not repeat it,
and a renewed token that later nears its own end is announced again.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlmodel import col, select

from omnipost.background import repeat
from omnipost.errors import PlatformAuthError, PlatformError

if TYPE_CHECKING:
    from omnipost.accounts import Accounts
    from omnipost.oauth.session import TokenSessions
    from omnipost.store.db import Database
    from omnipost.webhooks import WebhookService

logger = logging.getLogger("omnipost.tokens")

REFRESH_AHEAD = timedelta(days=7)  # renew (or warn) this long before a token ends
EVENT = "token.expiring"


@dataclass
class TokenWatcher:
    """Checks the accounts' token expiries now and then (a long-running process runs `run_forever`)."""

    db: "Database"
    accounts: "Accounts"
    sessions: "TokenSessions"
    webhooks: "WebhookService | None"
    ahead: timedelta = REFRESH_AHEAD

    async def check(self, now: datetime) -> dict[str, int]:
        """One pass; returns how many tokens were refreshed, announced as expiring, or found revoked."""
        from omnipost.store.models import Account

        async with self.db.session() as s:
            due = list((await s.exec(select(Account).where(
                Account.health == "active", col(Account.token_expires_at).is_not(None),
                col(Account.token_expires_at) <= now + self.ahead).order_by(col(Account.token_expires_at)))).all())
        counts = {"refreshed": 0, "expiring": 0, "revoked": 0}
        for account in due:
            if self.sessions.refresher(account.platform) is not None:
                session = self.sessions.get(self.accounts.context(account))
                try:
                    renewed = await session.renew(unless_lapses_after=now + self.ahead)
                except PlatformAuthError:  # the session marked the account needs_reconnect (token.revoked)
                    counts["revoked"] += 1
                    continue
                except PlatformError as exc:
                    logger.warning("could not refresh the token of %s yet (%s)", account.id, exc.code)
                else:
                    counts["refreshed"] += 1 if renewed else 0  # not renewed: another process just did
                    continue
            counts["expiring"] += await self._announce(account, now)
        return counts

    async def _announce(self, account: Any, now: datetime) -> int:
        """token.expiring for this account and expiry, unless its delivery log already holds it."""
        from omnipost.store.models import WebhookDelivery

        if self.webhooks is None:
            return 0
        expires = account.token_expires_at
        key = f"{account.id}@{expires.isoformat()}"
        async with self.db.session() as s:
            logged = (await s.exec(select(WebhookDelivery.payload).where(
                WebhookDelivery.profile_id == account.profile_id, WebhookDelivery.event_type == EVENT))).all()
            if any(((payload or {}).get("data") or {}).get("eventKey") == key for payload in logged):
                return 0
            n = await self.webhooks.emit(account.profile_id, EVENT, {
                "accountId": account.id, "platform": account.platform, "handle": account.handle, "expiresAt": expires,
                "secondsLeft": max(0, int((expires - now).total_seconds())), "eventKey": key,
                "remediation": "Reconnect the account (connect_account) before it expires, or its posts will fail."}, session=s)
            await s.commit()
        return 1 if n else 0

    async def run_forever(self, stop: anyio.Event, clock: Any, every: float = 3600.0) -> None:
        """Check at start and every `every` seconds until `stop`; a failing check is logged, not fatal."""
        await repeat(lambda: self.check(clock.now()), every, stop, "token check")
