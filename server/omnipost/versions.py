"""Platform API versions (PRODUCT §10): what each adapter speaks upstream, and when that stops working.

The pins are data on each platform's spec (platforms/registry.py, `api_version`), with where each value came
from and when it was checked; `pinned()` (also `VERSIONS`) lists them. `status_of` turns
one entry into ok | deprecated_soon | past_sunset for a given instant; `check_versions` emits
`version.deprecated` once per (platform, version) when a sunset is within WARN_DAYS.

"Once" without a table of our own:

- in-process, `VersionWatcher.sent` remembers the (platform, version) pairs already announced, so a
  periodic check costs nothing after the first announcement;
- across restarts, the webhook delivery log is the memory: `webhook_emitter` looks for an existing
  `version.deprecated` delivery of the profile whose `data.eventKey` is the same before enqueueing;
- and the event carries a deterministic `eventKey` = `version.deprecated:<platform>:<version>`, so
  even if two processes race past both checks (the log is read, then written, without a lock), a
  receiver that dedupes on eventKey sees one event. A duplicate is therefore harmless, never lost.
  (The webhook-id header stays a fresh msg_ id per delivery: webhooks.py owns it.)
"""

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

import anyio

from omnipost.background import repeat

if TYPE_CHECKING:
    from omnipost.store.db import Database
    from omnipost.webhooks import WebhookService

logger = logging.getLogger("omnipost.versions")

WARN_DAYS = 30  # version.deprecated fires when the sunset is this close (or past)
EVENT = "version.deprecated"

Status = Literal["ok", "deprecated_soon", "past_sunset"]


@dataclass(frozen=True)
class ApiVersion:
    """The upstream API version one platform's adapter speaks, and its known end of life."""

    platform: str  # the adapter/platform id (bluesky, x, linkedin, facebook, instagram, threads, pinterest, sandbox)
    api: str  # what is versioned, in the platform's words
    version: str
    sunset: date | None  # the day it stops working; None = no published sunset
    source: str  # where version and sunset come from
    checked: str  # ISO date the values were last checked against the source
    confirmed: bool = True  # False: the sunset (or version) is an estimate, see `note`
    note: str | None = None

    @property
    def sunset_at(self) -> datetime | None:
        """The sunset as a UTC instant (start of that day), or None."""
        return datetime.combine(self.sunset, time(0), tzinfo=timezone.utc) if self.sunset else None

    @property
    def event_key(self) -> str:
        """A deterministic id for this version's deprecation event (receivers may dedupe on it)."""
        return f"{EVENT}:{self.platform}:{self.version}"


def pinned() -> tuple[ApiVersion, ...]:
    """Every platform's pinned version, from the platform registry (each spec's `api_version`), in its order."""
    from omnipost.platforms.registry import PLATFORMS  # not at import: the registry imports ApiVersion from here

    return tuple(spec.api_version for spec in PLATFORMS.values() if spec.api_version is not None)


def __getattr__(name: str) -> Any:
    if name == "VERSIONS":  # the pins as a module constant, as callers have always read them
        return pinned()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def status_of(v: ApiVersion, now: datetime, warn_days: int = WARN_DAYS) -> tuple[Status, int | None]:
    """(status, whole days left until the sunset) at `now`; days left is None without a sunset."""
    at = v.sunset_at
    if at is None:
        return "ok", None
    left = at - now
    days = left.days  # floor: 0.5 days left is 0, an hour past is -1
    if left.total_seconds() <= 0:
        return "past_sunset", days
    if left.total_seconds() <= warn_days * 86400:
        return "deprecated_soon", days
    return "ok", days


def listing(now: datetime, versions: Iterable[ApiVersion] | None = None) -> list[dict[str, Any]]:
    """Every pinned version with its status at `now` (the platform_versions tool's rows)."""
    out = []
    for v in pinned() if versions is None else versions:
        status, days = status_of(v, now)
        out.append({"platform": v.platform, "api": v.api, "version": v.version, "sunsetAt": v.sunset_at,
                    "daysLeft": days, "status": status, "confirmed": v.confirmed, "source": v.source,
                    "checked": v.checked, "note": v.note})
    return out


def event_data(v: ApiVersion, now: datetime) -> dict[str, Any]:
    """The `data` of a version.deprecated event."""
    status, days = status_of(v, now)
    at = v.sunset_at
    return {"eventKey": v.event_key, "platform": v.platform, "api": v.api, "version": v.version,
            "sunsetAt": at.isoformat() if at else None, "daysLeft": days, "status": status, "confirmed": v.confirmed,
            "source": v.source,
            "remediation": f"Upgrade omnipost (or its pinned {v.api} version) before {at.date().isoformat() if at else '?'}; "
                           "after the sunset the platform rejects calls made with this version."}


Emit = Callable[[str, dict[str, Any]], Awaitable[Any]]
# remind(key, now) -> whether to give the notice `key` now (and remember that it was given)
Remind = Callable[[str, datetime], Awaitable[bool]]
NOTICE_EVERY = timedelta(days=1)


async def check_versions(now: datetime, emit: Emit, *, sent: set[tuple[str, str]] | None = None,
                         versions: Iterable[ApiVersion] | None = None, warn_days: int = WARN_DAYS,
                         remind: Remind | None = None) -> list[ApiVersion]:
    """Emit version.deprecated for each version whose sunset is within `warn_days` of `now` (or past),
    unless (platform, version) is already in `sent`; the pairs emitted are added to `sent`. Returns them.

    `emit(event_type, data)` is awaited once per such version; if it raises, the pair is not remembered
    (the next check tries again). The log warning is given when `remind` says so (daily_notice: once a day per
    installation), else when the event is emitted.
    """
    sent = sent if sent is not None else set()
    fired: list[ApiVersion] = []
    for v in pinned() if versions is None else versions:
        status, _ = status_of(v, now, warn_days)
        if status == "ok":
            continue
        if (v.platform, v.version) not in sent:
            await emit(EVENT, event_data(v, now))
            sent.add((v.platform, v.version))
            fired.append(v)
            if remind is None:
                logger.warning("%s %s reaches its sunset on %s: version.deprecated emitted", v.platform, v.version, v.sunset)
        if remind is not None and await remind(f"{EVENT}:{v.platform}:{v.version}", now):
            logger.warning("%s %s %s on %s: upgrade omnipost (version.deprecated sent to webhooks)", v.platform, v.version,
                           "reached its sunset" if status == "past_sunset" else "reaches its sunset", v.sunset)
    return fired


def daily_notice(db: "Database", every: timedelta = NOTICE_EVERY) -> Remind:
    """A `remind` backed by the notices table: True for at most one caller per `every`, across every process and
    restart of an installation (one conditional upsert: the row is written only if absent or older than `every`)."""
    import importlib

    from omnipost.store.models import Notice

    table = Notice.__table__  # type: ignore[attr-defined]
    # Only the dialect in use: loading PostgreSQL's (2 MB) on SQLite would be idle memory for nothing.
    dialect = importlib.import_module(f"sqlalchemy.dialects.{'postgresql' if db.engine.dialect.name == 'postgresql' else 'sqlite'}")

    async def remind(key: str, now: datetime) -> bool:
        stmt = dialect.insert(table).values(key=key, last_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.key], set_={"last_at": now},
                                          where=table.c.last_at <= now - every)
        async with db.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    return remind


def webhook_emitter(db: "Database", webhooks: "WebhookService") -> Emit:
    """An `emit` for check_versions: enqueue the event for every profile whose delivery log does not already
    hold a version.deprecated delivery with the same eventKey (the durable "already sent" memory)."""
    from sqlmodel import select

    from omnipost.store.models import Profile, WebhookDelivery

    async def emit(event_type: str, data: dict[str, Any]) -> int:
        n = 0
        async with db.session() as s:
            profiles = list((await s.exec(select(Profile.id))).all())
            logged = (await s.exec(select(WebhookDelivery.profile_id, WebhookDelivery.payload)
                                   .where(WebhookDelivery.event_type == event_type))).all()
            done = {pid for pid, payload in logged if ((payload or {}).get("data") or {}).get("eventKey") == data["eventKey"]}
            for pid in profiles:
                if pid not in done:
                    n += await webhooks.emit(pid, event_type, data, session=s)
            await s.commit()
        return n

    return emit


@dataclass
class VersionWatcher:
    """Runs check_versions now and then (a long-running process starts `run_forever`)."""

    db: "Database"
    webhooks: "WebhookService"
    sent: set[tuple[str, str]]

    @classmethod
    def of(cls, db: "Database", webhooks: "WebhookService") -> "VersionWatcher":
        return cls(db, webhooks, set())

    async def check(self, now: datetime) -> list[ApiVersion]:
        return await check_versions(now, webhook_emitter(self.db, self.webhooks), sent=self.sent,
                                    remind=daily_notice(self.db))

    async def run_forever(self, stop: anyio.Event, clock: Any, every: float = 6 * 3600.0) -> None:
        """Check at start and every `every` seconds until `stop`; a failing check is logged, not fatal."""
        await repeat(lambda: self.check(clock.now()), every, stop, "version check")
