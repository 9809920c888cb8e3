"""Webhooks (PRODUCT §9): signed event deliveries to a profile's endpoints, retried for a day, logged.

Wire format (Standard Webhooks, https://www.standardwebhooks.com):

    POST <endpoint url>
    content-type: application/json
    webhook-id: msg_…                  the delivery id; the same on every retry (receivers dedupe on it)
    webhook-timestamp: 1795953600      unix seconds of this attempt
    webhook-signature: v1,<base64>     HMAC-SHA256(secret bytes, f"{id}.{timestamp}.{body}")

    {"id": "msg_…", "type": "post.published", "createdAt": "2026-11-24T12:00:00Z", "data": {…}}

The secret is `whsec_` + base64 of 24 random bytes; the HMAC key is the decoded bytes. It is shown
once, at creation, and kept encrypted with the runtime's Vault.

Durability: `emit` writes one `webhook_deliveries` row per subscribed endpoint (optionally inside
the caller's own session/transaction) and returns; nothing is held in memory. `deliver_due` is one
deterministic tick: it claims due rows with a conditional UPDATE (a lease: `next_attempt_at` moves
LEASE into the future and `attempts` is counted *before* the request), sends them, and settles each
one. A process that dies mid-send leaves the row pending; it is sent again once the lease runs out
(at-least-once; receivers dedupe on webhook-id).

Outcomes: 2xx → delivered. 4xx other than 408/429 → failed (permanent). A URL that now resolves to
a non-public address → failed (permanent). Anything else (5xx, 3xx, 408, 429, timeout, connect or
DNS failure) → retried after `backoff(attempts)` seconds, for up to RETRY_WINDOW after the
delivery was created; a retry that would fall after that is not scheduled: the delivery fails.

Modes (auth.Reach): an endpoint records the mode of the key that added it. An op_test_ key sees,
tests and deletes only test-mode endpoints and their deliveries; a live key or the local user sees
all. An event about a real (non-sandbox) account is never queued for a test-mode endpoint; events
about sandbox accounts, and events about no account (version.deprecated), go to every subscriber.

SSRF: the URL is vetted by media/fetch.py's guard at registration and again at every attempt; the
request is sent to the vetted address itself (Host header and SNI carry the name), with no
redirects followed, so neither DNS rebinding nor a 30x can aim a delivery at the local network.
"""

from __future__ import annotations  # the `list` method below shadows the builtin in annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from sqlalchemy import bindparam
from sqlalchemy import update as sa_update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from omnipost.background import repeat
from omnipost import __version__
from omnipost.auth import SANDBOX, Reach, as_reach
from omnipost.clock import Clock
from omnipost.errors import NotFoundError, ValidationFailedError, echo
from omnipost.media.fetch import (
    DEFAULT_PORTS,
    Resolver,
    UrlForbiddenError,
    UrlUnreachableError,
    _Target,
    parse_target,
    vetted_addresses,
)
from omnipost.store.crypto import Vault
from omnipost.store.db import Database, new_id
from omnipost.store.models import Account, WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from omnipost.runtime import Runtime

logger = logging.getLogger("omnipost.webhooks")

EVENTS: frozenset[str] = frozenset({
    "post.queued", "post.validated", "post.published", "post.rejected", "post.failed", "post.updated",
    "token.expiring", "token.revoked", "version.deprecated", "webhook.test",
})
SECRET_PREFIX = "whsec_"
RETRY_WINDOW = timedelta(hours=24)
BASE_DELAY = 30.0  # seconds before the first retry; doubles every attempt
MAX_DELAY = 6 * 3600.0  # the doubling stops here
JITTER = 0.2  # each delay is stretched by a random 0-20 %
LEASE = timedelta(minutes=2)  # a claimed delivery is invisible to other ticks this long (> timeout)
DEFAULT_TIMEOUT = 10.0
BATCH = 100  # deliveries claimed per tick
MAX_ENDPOINTS = 20  # per profile
MAX_URL = 2000
PERMANENT_4XX_EXCEPT = frozenset({408, 429})

WEBHOOK_REMEDIATION = ("Give a public http(s) URL (no credentials) whose host resolves only to public addresses; "
                       "webhooks are never sent to private or link-local networks, nor to loopback unless the server "
                       "runs with OMNIPOST_WEBHOOK_ALLOW_LOOPBACK=true (development: a receiver on this machine).")


def backoff(attempts: int, rng: random.Random) -> float:
    """Seconds to wait after `attempts` failed tries: 30 s doubling (60, 120, …) capped at 6 h, plus 0-20 % jitter."""
    base = min(BASE_DELAY * 2 ** max(attempts - 1, 0), MAX_DELAY)
    return base * (1 + JITTER * rng.random())


def new_secret() -> str:
    """A signing secret: whsec_ + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _pinned_post(target: _Target, ip: str, body: bytes, headers: dict[str, str], timeout: float) -> httpx2.Request:
    """A POST for `target` addressed to the vetted `ip` (Host and SNI carry the name), as media/fetch.py pins GETs."""
    url_host = f"[{ip}]" if ":" in ip else ip
    path = target.url.raw_path.decode("ascii") or "/"
    pinned = httpx2.URL(f"{target.scheme}://{url_host}:{target.port}{path}")
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != DEFAULT_PORTS[target.scheme]:
        host_header += f":{target.port}"
    extensions: dict[str, object] = {"timeout": httpx2.Timeout(timeout).as_dict()}
    if target.scheme == "https" and target.literal is None:
        extensions["sni_hostname"] = target.host.rstrip(".")
    return httpx2.Request("POST", pinned, content=body, extensions=extensions, headers={
        "Host": host_header,
        "Content-Type": "application/json",
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "Connection": "close",
        "User-Agent": f"omnipost/{__version__} (webhooks)",
        **headers,
    })


class _Outcome:
    """What one attempt produced."""

    def __init__(self, kind: str, status: int | None = None, error: str | None = None) -> None:
        self.kind = kind  # delivered | failed | retry
        self.status = status
        self.error = error


# Built once (every publish looks for the profile's endpoints; building the statement costs more than running it).
_LIVE_ENDPOINTS = select(WebhookEndpoint).where(WebhookEndpoint.profile_id == bindparam("profile"),
                                                col(WebhookEndpoint.disabled_at).is_(None))


class WebhookService:
    """Endpoints, the durable delivery queue, and the sender."""

    def __init__(self, db: Database, vault: Vault, clock: Clock, http: httpx2.AsyncClient, resolver: Resolver, *,
                 allow_loopback: bool = False, local_receivers: bool = False, rng: random.Random | None = None,
                 timeout: float = DEFAULT_TIMEOUT, concurrency: int = 8, owns_http: bool = False) -> None:
        self.db = db
        self.vault = vault
        self.clock = clock
        self.http = http
        self.resolver = resolver
        self.allow_loopback = allow_loopback  # TESTS ONLY (see media/fetch.py)
        self.local_receivers = local_receivers  # the user's development setting OMNIPOST_WEBHOOK_ALLOW_LOOPBACK
        self.rng = rng if rng is not None else random.Random()
        self.timeout = timeout
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._owns_http = owns_http

    async def aclose(self) -> None:
        """Close the HTTP client if this service created it."""
        if self._owns_http:
            await self.http.aclose()

    # --- endpoints -------------------------------------------------------------------------

    async def _vet(self, url: str) -> _Target:
        """Parse and vet a URL's addresses (raises UrlForbiddenError / UrlUnreachableError)."""
        target = parse_target(url)
        await vetted_addresses(target, self.resolver, allow_loopback=self.allow_loopback, local_receiver=self.local_receivers)
        return target

    async def create(self, scope: Reach | str, url: str, events: Iterable[str]) -> tuple[WebhookEndpoint, str]:
        """Register an endpoint in the reach's mode; returns it and its signing secret (shown once).

        Raises:
            ValidationFailedError: unknown events, too many endpoints, URL too long.
            UrlForbiddenError: the URL is not public (checked now, and again at every delivery).
            UrlUnreachableError: the URL's host does not resolve.
        """
        wanted = list(dict.fromkeys(events))
        unknown = [e for e in wanted if e not in EVENTS]
        if not wanted or unknown:
            raise ValidationFailedError(
                f"Unknown webhook event(s): {', '.join(unknown)}." if unknown else "Subscribe to at least one event.",
                path="events", remediation=f"Use events from: {', '.join(sorted(EVENTS))}.")
        url = url.strip()
        if len(url) > MAX_URL:
            raise ValidationFailedError(f"The URL is longer than {MAX_URL} characters.", path="url")
        try:
            target = await self._vet(url)
        except UrlForbiddenError as exc:
            raise UrlForbiddenError(exc.message, remediation=WEBHOOK_REMEDIATION) from None
        now = self.clock.now()
        reach = as_reach(scope)
        async with self.db.session() as s:
            count = len((await s.exec(select(WebhookEndpoint.id).where(
                WebhookEndpoint.profile_id == reach.profile_id, WebhookEndpoint.mode == reach.mode,
                col(WebhookEndpoint.disabled_at).is_(None)))).all())
            if count >= MAX_ENDPOINTS:
                raise ValidationFailedError(f"A profile can have at most {MAX_ENDPOINTS} {reach.mode}-mode webhook endpoints.",
                                            path="url", remediation="Delete an endpoint you no longer use (delete_webhook).")
            secret = new_secret()
            endpoint = WebhookEndpoint(id=new_id("whk"), profile_id=reach.profile_id, url=str(target.url), events=wanted,
                                       secret=self.vault.seal({"secret": secret}), mode=reach.mode, created_at=now)
            s.add(endpoint)
            await s.commit()
        return endpoint, secret

    async def list(self, scope: Reach | str) -> list[WebhookEndpoint]:
        """The profile's active endpoints within reach, oldest first."""
        reach = as_reach(scope)
        q = select(WebhookEndpoint).where(WebhookEndpoint.profile_id == reach.profile_id, col(WebhookEndpoint.disabled_at).is_(None))
        if reach.test_mode:
            q = q.where(WebhookEndpoint.mode == "test")
        async with self.db.session() as s:
            return list((await s.exec(q.order_by(col(WebhookEndpoint.id)))).all())

    async def get(self, scope: Reach | str, endpoint_id: str) -> WebhookEndpoint:
        """One active endpoint of the profile, within reach.

        Raises:
            NotFoundError: unknown, deleted, another profile's, or a live one to a test key.
        """
        reach = as_reach(scope)
        async with self.db.session() as s:
            row = await s.get(WebhookEndpoint, endpoint_id)
        if row is None or row.profile_id != reach.profile_id or row.disabled_at is not None or not reach.sees_mode(row.mode):
            raise NotFoundError(f"No webhook endpoint {echo(endpoint_id)!r} in this profile.", rule="webhookId",
                                remediation="Call list_webhooks for the profile's endpoints.")
        return row

    async def delete(self, scope: Reach | str, endpoint_id: str) -> WebhookEndpoint:
        """Disable an endpoint: nothing more is sent to it; its pending deliveries fail; the log stays."""
        await self.get(scope, endpoint_id)
        now = self.clock.now()
        async with self.db.session() as s:
            row = await s.get(WebhookEndpoint, endpoint_id)
            assert row is not None
            row.disabled_at = now
            s.add(row)
            await s.exec(sa_update(WebhookDelivery).where(  # type: ignore[call-overload]
                col(WebhookDelivery.endpoint_id) == endpoint_id, col(WebhookDelivery.status) == "pending")
                .values(status="failed", next_attempt_at=None, last_error="endpoint deleted"))
            await s.commit()
            await s.refresh(row)
        return row

    # --- enqueueing ------------------------------------------------------------------------

    @staticmethod
    async def endpoints_of(session: AsyncSession, profile_id: str) -> Sequence[WebhookEndpoint]:
        """The profile's live endpoints."""
        return (await session.exec(_LIVE_ENDPOINTS, params={"profile": profile_id})).all()

    async def emit_many(self, profile_id: str, events: list[tuple[str, dict[str, Any]]], *, session: AsyncSession,
                        endpoints: Sequence[WebhookEndpoint] | None = None) -> int:
        """Like emit() for several events of one profile, with one endpoint lookup (a 25-target batch); `endpoints`: the
        profile's live endpoints, looked up by the caller in this transaction."""
        for event_type, _ in events:
            if event_type not in EVENTS:
                raise ValueError(f"unknown webhook event {event_type!r}")
        if endpoints is None:
            endpoints = await self.endpoints_of(session, profile_id)
        if not endpoints:
            return 0
        now = self.clock.now()
        real = await _real_accounts(session, endpoints, [data for _, data in events])
        n = 0
        for event_type, data in events:
            clean = json.loads(json.dumps(data, default=_json_default))
            for endpoint in endpoints:
                if event_type in (endpoint.events or []) and not (endpoint.mode == "test" and data.get("accountId") in real):
                    session.add(self._delivery(endpoint, event_type, clean, now))
                    n += 1
        return n

    async def emit(self, profile_id: str, event_type: str, data: dict[str, Any], *, session: AsyncSession | None = None) -> int:
        """Enqueue one delivery of `event_type` per endpoint of the profile subscribed to it; returns how many.

        With `session`, the rows are added to the caller's session and commit with it (so the event
        exists if and only if the caller's change does); otherwise they are committed here. `data`
        must be JSON-serializable (datetimes and pydantic models are converted).

        Raises:
            ValueError: `event_type` is not one of EVENTS (a programming error).
        """
        if event_type not in EVENTS:
            raise ValueError(f"unknown webhook event {event_type!r}")
        clean = json.loads(json.dumps(data, default=_json_default))
        now = self.clock.now()

        async def add(s: AsyncSession) -> int:
            endpoints = (await s.exec(select(WebhookEndpoint).where(
                WebhookEndpoint.profile_id == profile_id, col(WebhookEndpoint.disabled_at).is_(None)))).all()
            real = await _real_accounts(s, endpoints, [data])
            n = 0
            for endpoint in endpoints:
                if event_type in (endpoint.events or []) and not (endpoint.mode == "test" and data.get("accountId") in real):
                    s.add(self._delivery(endpoint, event_type, clean, now))
                    n += 1
            return n

        if session is not None:
            return await add(session)
        async with self.db.session() as s:
            n = await add(s)
            await s.commit()
        return n

    @staticmethod
    def _delivery(endpoint: WebhookEndpoint, event_type: str, data: dict[str, Any], now: datetime) -> WebhookDelivery:
        msg_id = new_id("msg")
        payload = {"id": msg_id, "type": event_type, "createdAt": _iso(now), "data": data}
        return WebhookDelivery(id=msg_id, endpoint_id=endpoint.id, profile_id=endpoint.profile_id, event_type=event_type,
                               payload=payload, status="pending", attempts=0, next_attempt_at=now, created_at=now)

    # --- delivering ------------------------------------------------------------------------

    async def deliver_due(self, now: datetime | None = None) -> dict[str, int]:
        """One tick: send every delivery due at `now` (at most BATCH); returns counts by outcome."""
        now = now or self.clock.now()
        async with self.db.session() as s:
            ids = list((await s.exec(select(WebhookDelivery.id).where(
                WebhookDelivery.status == "pending", col(WebhookDelivery.next_attempt_at) <= now)
                .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id)).limit(BATCH))).all())
        return await self._deliver(ids, now)

    async def _claim(self, delivery_id: str, now: datetime) -> WebhookDelivery | None:
        """Take a due delivery for this attempt (count it, lease it); None if another tick has it."""
        async with self.db.session() as s:
            result = await s.exec(sa_update(WebhookDelivery).where(  # type: ignore[call-overload]
                col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.status) == "pending",
                col(WebhookDelivery.next_attempt_at) <= now)
                .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + LEASE))
            await s.commit()
            if result.rowcount != 1:
                return None
            return await s.get(WebhookDelivery, delivery_id, populate_existing=True)

    async def _deliver(self, ids: list[str], now: datetime) -> dict[str, int]:
        counts = {"delivered": 0, "retrying": 0, "failed": 0}
        claimed: dict[str, list[WebhookDelivery]] = {}
        for delivery_id in ids:
            row = await self._claim(delivery_id, now)
            if row is not None:
                claimed.setdefault(row.endpoint_id, []).append(row)
        if not claimed:
            return counts
        async with self.db.session() as s:
            endpoints = {e.id: e for e in (await s.exec(select(WebhookEndpoint).where(
                col(WebhookEndpoint.id).in_(list(claimed))))).all()}
        # Jitter is drawn here, in claim order, so a seeded rng gives the same schedule whatever the network does.
        jitter = {d.id: backoff(d.attempts, self.rng) for rows in claimed.values() for d in rows}

        async def run(endpoint_id: str, rows: list[WebhookDelivery]) -> None:
            async with self._limiter:
                for d in rows:  # one endpoint's deliveries in order
                    outcome = await self._attempt(d, endpoints.get(endpoint_id), now)
                    counts[await self._settle(d, outcome, now, jitter[d.id])] += 1

        async with anyio.create_task_group() as tg:
            for endpoint_id, rows in claimed.items():
                tg.start_soon(run, endpoint_id, rows)
        return counts

    async def _attempt(self, d: WebhookDelivery, endpoint: WebhookEndpoint | None, now: datetime) -> _Outcome:
        if endpoint is None or endpoint.disabled_at is not None:
            return _Outcome("failed", error="endpoint deleted")
        secret = str(self.vault.open(endpoint.secret)["secret"])
        body = _body(d.payload)
        timestamp = int(now.timestamp())
        headers = {"webhook-id": d.id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(secret, d.id, timestamp, body)}
        try:
            with anyio.fail_after(self.timeout):
                target = parse_target(endpoint.url)
                addresses = await vetted_addresses(target, self.resolver, allow_loopback=self.allow_loopback, local_receiver=self.local_receivers)
                status = await self._post(target, addresses, body, headers)
        except UrlForbiddenError as exc:
            return _Outcome("failed", error=f"url_forbidden: {exc.message}")
        except UrlUnreachableError as exc:
            return _Outcome("retry", error=f"unreachable: {exc.message}")
        except TimeoutError:
            return _Outcome("retry", error=f"timeout: no answer within {self.timeout:g} s")
        except httpx2.TimeoutException:
            return _Outcome("retry", error=f"timeout: no answer within {self.timeout:g} s")
        except httpx2.TransportError as exc:
            return _Outcome("retry", error=f"transport: {type(exc).__name__}")
        if 200 <= status < 300:
            return _Outcome("delivered", status)
        if 400 <= status < 500 and status not in PERMANENT_4XX_EXCEPT:
            return _Outcome("failed", status, f"the endpoint answered HTTP {status}")
        return _Outcome("retry", status, f"the endpoint answered HTTP {status}")

    async def _post(self, target: _Target, addresses: list[str], body: bytes, headers: dict[str, str]) -> int:
        """Send to the first vetted address that accepts a connection; the status (the body is not read)."""
        last: Exception | None = None
        for ip in addresses:
            request = _pinned_post(target, ip, body, headers, self.timeout)
            try:
                response = await self.http.send(request, stream=True, follow_redirects=False, auth=None)
            except httpx2.ConnectError as exc:
                last = exc
                continue
            await response.aclose()
            return response.status_code
        raise UrlUnreachableError(f"could not connect to {target.host!r}: {type(last).__name__ if last else 'no address'}")

    async def _settle(self, d: WebhookDelivery, outcome: _Outcome, now: datetime, delay: float) -> str:
        values: dict[str, Any] = {"last_status": outcome.status, "last_error": outcome.error}
        if outcome.kind == "delivered":
            values |= {"status": "delivered", "delivered_at": now, "next_attempt_at": None}
            result = "delivered"
        elif outcome.kind == "failed":
            values |= {"status": "failed", "next_attempt_at": None}
            result = "failed"
        else:
            at = now + timedelta(seconds=delay)
            if at > d.created_at + RETRY_WINDOW:
                values |= {"status": "failed", "next_attempt_at": None,
                           "last_error": f"{outcome.error}; gave up after {RETRY_WINDOW.total_seconds() / 3600:g} h of retries"}
                result = "failed"
            else:
                values |= {"next_attempt_at": at}
                result = "retrying"
        async with self.db.session() as s:
            await s.exec(sa_update(WebhookDelivery).where(  # type: ignore[call-overload]
                col(WebhookDelivery.id) == d.id).values(**values))
            await s.commit()
        if result == "failed":
            logger.info("webhook delivery %s to %s failed: %s", d.id, d.endpoint_id, values["last_error"])
        return result

    # --- the log and the test ping ---------------------------------------------------------

    async def deliveries(self, scope: Reach | str, endpoint_id: str | None = None, limit: int = 50,
                         status: str | None = None) -> list[WebhookDelivery]:
        """The delivery log within reach (a test key: deliveries to test-mode endpoints), newest first."""
        reach = as_reach(scope)
        async with self.db.session() as s:
            q = select(WebhookDelivery).where(WebhookDelivery.profile_id == reach.profile_id)
            if reach.test_mode:
                q = q.where(col(WebhookDelivery.endpoint_id).in_(select(WebhookEndpoint.id).where(WebhookEndpoint.mode == "test")))
            if endpoint_id is not None:
                q = q.where(WebhookDelivery.endpoint_id == endpoint_id)
            if status is not None:
                q = q.where(WebhookDelivery.status == status)
            return list((await s.exec(q.order_by(col(WebhookDelivery.id).desc()).limit(max(1, min(limit, 500))))).all())

    async def get_delivery(self, scope: Reach | str, delivery_id: str) -> WebhookDelivery:
        """One delivery of the profile within reach (raises NotFoundError)."""
        reach = as_reach(scope)
        async with self.db.session() as s:
            row = await s.get(WebhookDelivery, delivery_id)
            endpoint = await s.get(WebhookEndpoint, row.endpoint_id) if row is not None else None
        if row is None or endpoint is None or row.profile_id != reach.profile_id or not reach.sees_mode(endpoint.mode):
            raise NotFoundError(f"No webhook delivery {echo(delivery_id)!r} in this profile.", rule="deliveryId")
        return row

    async def send_test(self, scope: Reach | str, endpoint_id: str) -> WebhookDelivery:
        """Enqueue a webhook.test event for one endpoint (subscribed or not) and try it now; the delivery after the try.

        A failed try is retried like any delivery.
        """
        endpoint = await self.get(scope, endpoint_id)
        now = self.clock.now()
        delivery = self._delivery(endpoint, "webhook.test", {"endpointId": endpoint.id,
                                                             "message": "A test event from omnipost."}, now)
        async with self.db.session() as s:
            s.add(delivery)
            await s.commit()
        await self._deliver([delivery.id], now)
        return await self.get_delivery(scope, delivery.id)

    async def run_forever(self, stop: anyio.Event, tick: float = 5.0) -> None:
        """Deliver what is due every `tick` seconds until `stop` is set (the runtime starts this in its task group)."""
        await repeat(lambda: self.deliver_due(self.clock.now()), tick, stop, "webhook delivery tick")


async def _real_accounts(s: AsyncSession, endpoints: Iterable[WebhookEndpoint], events: Iterable[dict[str, Any]]) -> set[str]:
    """The non-sandbox accounts these events are about: never sent to a test-mode endpoint (no query without one)."""
    wanted = {str(a) for data in events if (a := data.get("accountId"))}
    if not wanted or all(e.mode != "test" for e in endpoints):
        return set()
    return set((await s.exec(select(Account.id).where(col(Account.id).in_(wanted), Account.platform != SANDBOX))).all())


def build_webhook_service(rt: "Runtime") -> WebhookService:
    """The service for an opened Runtime (call at the end of Runtime.open(); `aclose()` it in Runtime.close()).

    Uses a dedicated HTTP client (never the shared one, so no cookie or default header of another
    integration rides along), unless a test put one in `rt.extra["webhook_http"]`. The resolver is
    the runtime's (`Runtime.resolver`); `rt.extra["webhook_allow_loopback"]` is for tests only.
    """
    assert rt.db is not None
    http = rt.extra.get("webhook_http")
    owned = http is None
    if http is None:
        from omnipost.netguard import LazyTLSTransport

        http = httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=DEFAULT_TIMEOUT,
                                  transport=LazyTLSTransport(trust_env=False))
    return WebhookService(rt.db, rt.accounts.vault, rt.clock, http, rt.resolver,
                          allow_loopback=bool(rt.extra.get("webhook_allow_loopback")),
                          local_receivers=rt.settings.webhook_allow_loopback, owns_http=owned)
