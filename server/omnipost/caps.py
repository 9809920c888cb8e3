"""Per-account daily publishing caps (PRODUCT §6): Instagram 50 and Threads 250 posts per rolling 24 h.

A post past its account's cap is deferred, not failed: it waits until enough of the counted posts leave the
24 h window. Both the scheduler (claimed posts) and publish_post (immediate targets) decide through `Caps`:

- `used`: the account's posts published in the last 24 h, plus its posts another process holds a live lease
  on (claimed by a worker, or being published right now), which will publish unless deferred;
- `waits`: for the new posts of one account, in order, None (may go now) or the instant it may go.

Deciders take `lock` first, inside their transaction (PostgreSQL: an advisory lock per capped account;
SQLite: the database write lock), so two processes deciding for one account in the same instant cannot both
spend the same free slots. One deciding first may count the other's not-yet-decided posts and defer more
than needed; the account never exceeds its cap.
"""

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select

from omnipost.validation import Warning_
from omnipost.store.models import Account, Post

WINDOW = timedelta(hours=24)
WARNING = "schedule.deferred_by_cap"


def daily_cap(platform: str | None) -> int | None:
    """The platform's posts-per-24-h cap per account (its spec's daily_cap, from the rule data), or None."""
    from omnipost.platforms.registry import spec_of

    spec = spec_of(platform)
    return spec.daily_cap if spec is not None else None


def _lock_key(account_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for an account (PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.blake2b(f"omnipost.cap:{account_id}".encode(), digest_size=8).digest(), "big", signed=True)


async def caps_of(s: Any, account_ids: set[str]) -> dict[str, int]:
    """The capped accounts among `account_ids` and their caps (a sandbox account has its emulated platform's)."""
    if not account_ids:
        return {}
    rows = (await s.exec(select(Account.id, Account.platform, Account.emulates).where(col(Account.id).in_(account_ids)))).all()
    caps = {a: daily_cap(emulates if platform == "sandbox" else platform) for a, platform, emulates in rows}
    return {a: c for a, c in caps.items() if c is not None}


async def lock(s: Any, account_ids: list[str]) -> None:
    """Serialise decisions about these accounts' posts (caps; publish_post's post.duplicate) until the session's
    transaction ends, across every process sharing the database.

    SQLite: must be the transaction's first statement (it takes the database write lock).
    """
    if s.bind.dialect.name == "postgresql":
        for account_id in sorted(account_ids):  # sorted: two deciders never wait on each other in a cycle
            await s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_lock_key(account_id)))
    else:
        await s.exec(text("BEGIN IMMEDIATE"))


async def used(s: Any, caps: dict[str, int], now: datetime, owner: str | None) -> dict[str, list[datetime]]:
    """Per capped account, the instants that count against its cap (see the module docstring).

    `owner`: the decider whose own leased posts are the ones being decided (a worker's claims), so not
    counted; None counts every lease (publish_post decides for posts not stored yet)."""
    out: dict[str, list[datetime]] = {a: [] for a in caps}
    if not caps:
        return out
    for account_id, at in (await s.exec(select(Post.account_id, Post.published_at).where(
            col(Post.account_id).in_(list(caps)), Post.status == "published", col(Post.published_at) >= now - WINDOW))).all():
        out[account_id].append(at)  # UTCDateTime: aware UTC
    leased = col(Post.lease_owner).is_not(None) if owner is None else col(Post.lease_owner) != owner  # != excludes NULL
    for account_id in (await s.exec(select(Post.account_id).where(
            col(Post.account_id).in_(list(caps)), col(Post.status).in_(("queued", "failed", "publishing")),
            leased, col(Post.lease_until) >= now))).all():
        out[account_id].append(now)
    return out


def waits(counted: list[datetime], cap: int, n: int, now: datetime) -> list[datetime | None]:
    """For `n` new posts of one account, in order: None (may publish now) or the instant it may go."""
    times = sorted(counted)
    free = max(0, cap - len(times))
    go = min(free, n)
    times += [now] * go  # the ones going now count too
    out: list[datetime | None] = [None] * go
    for k in range(n - go):
        # the k-th waiting post can go once (len(times) - cap + 1 + k) counted posts have aged out;
        # counted = published_at >= now - 24 h, so a post leaves the window just after 24 h: +1 s
        j = min(len(times) - cap + k, len(times) - 1)
        out.append(max(times[j] + WINDOW + timedelta(seconds=1), now + timedelta(seconds=1)))
    return out


def deferred_warning(platform: str, cap: int, counted: int, until: datetime) -> dict[str, Any]:
    """The warning a deferred post carries."""
    return Warning_(
        code=WARNING, rule=WARNING, path="scheduledAt",
        message=f"This account already published (or is publishing) {counted} posts in the last 24 h, the {platform} "
                f"limit of {cap} per rolling 24 h; the post waits until {until.isoformat()} instead of being refused "
                f"by the platform.",
        remediation="Nothing to do: it publishes when the window frees; reschedule_post or cancel_post to change that.",
    ).model_dump(exclude_none=True)
