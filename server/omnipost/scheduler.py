"""The scheduler (PRODUCT §6): publishes queued posts when due, retries transient failures.

One tick (`run_due`) is deterministic given `now`:

1. heartbeat: upsert this worker's row in `scheduler_heartbeats` (alive = seen within 2 ticks);
2. missed: queued posts (and due retries) more than `grace` late fail with `schedule.missed_grace`;
3. claim: due posts get a lease (`lease_owner`, `lease_until`) through a conditional UPDATE
   `... WHERE id = :id AND status = :status AND <still due, lease free>` (due_filter again: a post edited or
   rescheduled since the SELECT is not claimed for its old time); the worker whose UPDATE changed the row owns
   it, and reads the post's content only after that commits, so an edit (update_post, conditional on no live lease)
   either lands before the claim or is refused. (On PostgreSQL this becomes one `SELECT ... FOR UPDATE SKIP LOCKED`
   + UPDATE; the predicate is the same.)
4. publish: claimed `queued`/`failed` posts, and `processing` posts due for their next status check (the
   platform was still processing a container or a video: the adapter checks the same handle once, from the
   post's pieces ledger, and publishes it or leaves it `processing` again), through `PublishService._fan_out` (the exactly-once
   machinery: attempt row + `publishing` committed before the upstream call); a claimed post found in
   `publishing` belongs to a worker whose lease lapsed (it crashed), so it is reconciled through
   `publish_post_row(reconcile_first=True)`, never sent blind;
5. settle: transient failures (`platform_unavailable`) get `next_attempt_at = now + backoff`
   (exponential with jitter from the injected `random.Random`; the platform's retry-after wins) until
   `max_attempts` tries (status checks of a `processing` post are not tries); `platform_outcome_unknown` is never
   retried automatically. A `processing` post keeps the check time its platform set. The lease is released.
"""

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import anyio
from sqlalchemy import and_, or_
from sqlalchemy import delete as sa_delete
from sqlalchemy import func as sa_func
from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost.background import repeat
from omnipost import caps
from omnipost.clock import Clock
from omnipost.leases import new_owner_id
from omnipost.validation import Warning_
from omnipost.store.models import Attempt, Post, SchedulerHeartbeat

if TYPE_CHECKING:
    from omnipost.auth import Reach
    from omnipost.publishing import PublishService
    from omnipost.store.db import Database

logger = logging.getLogger("omnipost.scheduler")

CLAIM_BATCH = 100  # posts claimed per tick at most


new_worker_id = new_owner_id  # a worker's id is its process's owner id (leases.py)


# ------------------------------------------------------------------ wall-clock times in a zone


def local_time_warnings(value: str, zone_name: str | None) -> list[Warning_]:
    """Warnings for a scheduledAt without offset that falls in a DST gap or overlap of its zone.

    The instant itself is what `drafting.parse_time` computes (fold=0): in a gap the wall time is
    moved forward by the gap's length (02:30 that does not exist becomes 03:30); in an overlap the
    first occurrence (the earlier instant, still on summer time) is used. This only says so.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return []
    if parsed.tzinfo is not None or not zone_name:
        return []
    zone = ZoneInfo(zone_name)
    first, second = parsed.replace(tzinfo=zone, fold=0), parsed.replace(tzinfo=zone, fold=1)
    instant = first.astimezone(timezone.utc)
    back = instant.astimezone(zone).replace(tzinfo=None)
    if back != parsed:
        return [Warning_(code="schedule.dst_gap", rule="schedule.dst_gap", path="scheduledAt",
                         message=f"{parsed.isoformat()} does not exist in {zone_name} (clocks jump forward); "
                                 f"it was moved forward to {back.isoformat()} local ({instant.isoformat()}).",
                         remediation="Give scheduledAt with an explicit UTC offset to choose another time.")]
    if first.utcoffset() != second.utcoffset():
        later = second.astimezone(timezone.utc)
        return [Warning_(code="schedule.dst_overlap", rule="schedule.dst_overlap", path="scheduledAt",
                         message=f"{parsed.isoformat()} happens twice in {zone_name} (clocks go back); the first "
                                 f"occurrence was used ({instant.isoformat()}, not {later.isoformat()}).",
                         remediation="Give scheduledAt with an explicit UTC offset to choose the second occurrence.")]
    return []


# ------------------------------------------------------------------ per-account daily caps


daily_cap = caps.daily_cap  # where callers and tests have always found it


# ------------------------------------------------------------------ liveness


async def alive_workers(db: "Database", now: datetime, tick: float) -> list[SchedulerHeartbeat]:
    """Workers whose heartbeat is within two ticks of `now`."""
    since = now - timedelta(seconds=2 * tick)
    async with db.session() as s:
        return list((await s.exec(select(SchedulerHeartbeat).where(SchedulerHeartbeat.seen_at >= since)
                                  .order_by(col(SchedulerHeartbeat.worker_id)))).all())


def no_scheduler_warning() -> Warning_:
    """The note added to a schedule answer when no worker is alive."""
    return Warning_(code="scheduler.not_running", rule="scheduler.not_running",
                    message="No scheduler is running right now: the post is stored and will publish when a server or "
                            "`omnipost worker` runs (within the grace period of its time).",
                    remediation="Keep a long-running omnipost server open, or run `omnipost worker`.")


def due_filter(now: datetime) -> Any:
    """Posts a worker may claim at `now`: due queued posts, due retries, due checks of posts the platform is still
    processing, and lapsed leases of crashed workers."""
    lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
    waiting = and_(col(Post.status).in_(("queued", "failed", "processing")), col(Post.next_attempt_at).is_not(None),
                   col(Post.next_attempt_at) <= now, lease_free)
    orphaned = and_(Post.status == "publishing", col(Post.lease_owner).is_not(None), col(Post.lease_until) < now)
    return or_(waiting, orphaned)


# ------------------------------------------------------------------ the scheduler


@dataclass
class Scheduler:
    """One worker's scheduler over a database and the publishing service."""

    db: "Database"
    publisher: "PublishService"
    clock: Clock
    worker_id: str = field(default_factory=new_worker_id)
    lease_seconds: float = 300.0
    grace: float = 3600.0
    tick: float = 1.0
    max_attempts: int = 5
    rng: random.Random = field(default_factory=random.Random)
    backoff_base: float = 30.0
    backoff_cap: float = 3600.0

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before the next try after `attempts` tries: the platform's retry-after if it gave one,
        else base * 2^(attempts-1) capped, with "equal jitter" (half fixed, half random)."""
        if retry_after is not None and retry_after > 0:
            return float(retry_after)
        delay = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    async def heartbeat(self, now: datetime) -> None:
        """Upsert this worker's heartbeat row."""
        async with self.db.session() as s:
            result = await s.exec(sa_update(SchedulerHeartbeat).where(col(SchedulerHeartbeat.worker_id) == self.worker_id)
                                  .values(seen_at=now))
            if result.rowcount == 0:
                s.add(SchedulerHeartbeat(worker_id=self.worker_id, seen_at=now))
            await s.commit()

    async def retire(self) -> None:
        """Remove this worker's heartbeat (clean shutdown)."""
        async with self.db.session() as s:
            await s.exec(sa_delete(SchedulerHeartbeat).where(col(SchedulerHeartbeat.worker_id) == self.worker_id))
            await s.commit()

    async def run_due(self, now: datetime | None = None) -> dict[str, int]:
        """One tick; returns counts: claimed, published, failed, retrying, missed, reconciled, deferred, processing."""
        now = now or self.clock.now()
        counts = {"claimed": 0, "published": 0, "failed": 0, "retrying": 0, "missed": 0, "reconciled": 0, "deferred": 0,
                  "processing": 0}
        await self.heartbeat(now)
        counts["missed"] = await self._fail_missed(now)
        claimed = await self._claim(now)
        counts["claimed"] = len(claimed)
        if not claimed:
            return counts
        orphaned = [pid for pid, status in claimed if status == "publishing"]
        fresh = [pid for pid, status in claimed if status != "publishing"]
        # per-account daily caps (PRODUCT §6); a post the platform is processing already has its slot
        deferred = await self._defer_capped([pid for pid, status in claimed if status in ("queued", "failed")], now)
        counts["deferred"] = len(deferred)
        fresh = [pid for pid in fresh if pid not in deferred]
        claimed = [(pid, status) for pid, status in claimed if pid not in deferred]
        try:
            for pid in orphaned:  # a crashed worker's post: ask the platform before anything is sent again
                await self.publisher.publish_post_row(pid, reconcile_first=True)
                counts["reconciled"] += 1
            await self.publisher._fan_out(fresh, None)
        finally:
            await self._settle([pid for pid, _ in claimed], now, counts)
        return counts

    async def _defer_capped(self, post_ids: list[str], now: datetime) -> set[str]:
        """Claimed posts that would exceed their account's daily cap (caps.py): moved, not published; returns their ids.

        Within this tick the claimed posts go in due order; the deferred ones get `next_attempt_at` = when a slot
        frees, keep their status, become lease-free and carry a `schedule.deferred_by_cap` warning.
        """
        if not post_ids:
            return set()
        async with self.db.session() as s:
            rows = list((await s.exec(select(Post.id, Post.account_id, Post.platform).where(col(Post.id).in_(post_ids)))).all())
            capped = await caps.caps_of(s, {r[1] for r in rows})
            if not capped:
                return set()
        deferred: set[str] = set()
        order = {pid: i for i, pid in enumerate(post_ids)}  # claim order is due order
        async with self.db.session() as s:
            await caps.lock(s, list(capped))
            counted = await caps.used(s, capped, now, self.worker_id)
            for account_id, cap in capped.items():
                mine = sorted((r for r in rows if r[1] == account_id), key=lambda r: order[r[0]])
                for (pid, _, platform), until in zip(mine, caps.waits(counted[account_id], cap, len(mine), now)):
                    if until is None:
                        continue
                    post = await s.get(Post, pid)
                    assert post is not None
                    warning = caps.deferred_warning(platform, cap, len(counted[account_id]), until)
                    warnings = [w for w in (post.warnings or []) if w.get("code") != caps.WARNING] + [warning]
                    result = await s.exec(sa_update(Post).where(col(Post.id) == pid, col(Post.lease_owner) == self.worker_id)
                                          .values(next_attempt_at=until, lease_owner=None, lease_until=None,
                                                  warnings=warnings, updated_at=now))
                    if result.rowcount == 1:
                        deferred.add(pid)
                        logger.info("post %s deferred to %s: account %s is at its %s cap of %d per 24 h", pid,
                                    until.isoformat(), account_id, platform, cap)
            await s.commit()
        return deferred

    async def _fail_missed(self, now: datetime) -> int:
        """Due posts more than `grace` late fail with schedule.missed_grace (conditional, so a claim wins)."""
        limit = now - timedelta(seconds=self.grace)
        lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
        async with self.db.session() as s:
            late = list((await s.exec(select(Post).where(
                col(Post.status).in_(("queued", "failed")), col(Post.next_attempt_at).is_not(None),
                col(Post.next_attempt_at) < limit, lease_free))).all())
            missed = 0
            for post in late:
                due = post.next_attempt_at
                assert due is not None
                error = {"code": "validation_failed", "rule": "schedule.missed_grace", "retryable": False,
                         "message": f"Post was due at {due.isoformat()} but no scheduler ran until {now.isoformat()}, "
                                    f"more than the {int(self.grace)} s grace period late; it was not published.",
                         "remediation": "Reschedule it with reschedule_post or retry_post, or raise OMNIPOST_SCHEDULE_GRACE."}
                result = await s.exec(sa_update(Post).where(
                    col(Post.id) == post.id, col(Post.status) == post.status, col(Post.next_attempt_at) == due, lease_free,
                ).values(status="failed", error=error, next_attempt_at=None, lease_owner=None, lease_until=None, updated_at=now))
                if result.rowcount == 1:
                    missed += 1
                    logger.warning("post %s missed its time %s by more than the grace period", post.id, due.isoformat())
            await s.commit()
        return missed

    async def _claim(self, now: datetime) -> list[tuple[str, str]]:
        """Lease the due posts; returns (post id, status when claimed) of those this worker won, in due order."""
        until = now + timedelta(seconds=self.lease_seconds)
        query = (select(Post.id, Post.status).where(due_filter(now))
                 .order_by(col(Post.next_attempt_at), col(Post.position)).limit(CLAIM_BATCH))
        if self.db.engine.dialect.name == "postgresql":
            # Row locks held until this transaction commits; rows another worker is claiming are skipped,
            # so concurrent workers take disjoint sets instead of queueing on each other's locks.
            query = query.with_for_update(skip_locked=True, of=Post)
        async with self.db.session() as s:
            candidates = list((await s.exec(query)).all())
            won: list[tuple[str, str]] = []
            for pid, status in candidates:
                # due_filter again, not only the lease: a post edited or rescheduled (update_post, reschedule_post) since
                # the SELECT above is claimed only if it is still due
                result = await s.exec(sa_update(Post).where(col(Post.id) == pid, col(Post.status) == status, due_filter(now))
                                      .values(lease_owner=self.worker_id, lease_until=until))
                if result.rowcount == 1:
                    won.append((pid, status))
            await s.commit()
        return won

    async def _settle(self, post_ids: list[str], now: datetime, counts: dict[str, int]) -> None:
        """After publishing: schedule retries of transient failures, release the leases, refresh batches."""
        async with self.db.session() as s:
            posts = list((await s.exec(select(Post).where(col(Post.id).in_(post_ids)))).all())
            tries = dict((await s.exec(select(Attempt.post_id, sa_func.count()).where(  # status checks are not tries
                col(Attempt.post_id).in_(post_ids), col(Attempt.outcome) != "processing").group_by(Attempt.post_id))).all())
            for post in posts:
                if post.status == "publishing":
                    continue  # interrupted mid-send: keep the lease, so its expiry hands the post to reconciliation
                values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "next_attempt_at": None}
                error = post.error or {}
                if post.status == "processing":  # checked again at the time the platform's answer set, by any worker
                    values["next_attempt_at"] = post.next_attempt_at
                    counts["processing"] += 1
                elif post.status == "published":
                    counts["published"] += 1
                    logger.info("published post %s (batch %s) to %s", post.id, post.batch_id, post.platform)
                elif post.status == "failed" and error.get("code") == "platform_unavailable" and error.get("retryable"):
                    n = int(tries.get(post.id, 0))
                    if n < self.max_attempts:
                        delay = self.backoff(n, error.get("retryAfter"))
                        values["next_attempt_at"] = now + timedelta(seconds=delay)
                        counts["retrying"] += 1
                        logger.info("post %s failed transiently (try %d of %d); retrying in %.1f s", post.id, n,
                                    self.max_attempts, delay)
                    else:
                        counts["failed"] += 1
                        values["error"] = error | {"retryable": False,
                                                   "message": f"{error.get('message', 'The platform was unavailable.')} "
                                                              f"Gave up after {n} tries."}
                        await s.exec(sa_update(Attempt).where(col(Attempt.post_id) == post.id).values(will_retry=False))
                        logger.warning("post %s failed after %d tries; giving up", post.id, n)
                else:
                    counts["failed"] += 1
                    logger.info("post %s ended %s", post.id, post.status)
                await s.exec(sa_update(Post).where(col(Post.id) == post.id, col(Post.lease_owner) == self.worker_id).values(**values))
            await s.commit()
        for batch_id in {p.batch_id for p in posts}:
            await self.publisher.batch_result(batch_id)

    async def run_forever(self, stop: anyio.Event) -> None:
        """Tick every `tick` seconds until `stop` is set; a failing tick is logged and the loop goes on."""
        logger.info("scheduler %s started (tick %.1f s, grace %d s)", self.worker_id, self.tick, int(self.grace))
        try:
            await repeat(lambda: self.run_due(self.clock.now()), self.tick, stop, "scheduler tick")
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self.retire()
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    logger.debug("could not remove heartbeat", exc_info=True)
            logger.info("scheduler %s stopped", self.worker_id)


# ------------------------------------------------------------------ managing queued posts (the tools call these)


async def _targets(publisher: "PublishService", scope: "Reach | str", post_or_batch_id: str) -> tuple[str, list[Post]]:
    """The batch id and the posts named by a post id or a batch id, within the profile and the caller's reach.

    Raises:
        NotFoundError: unknown id, another profile's, or out of reach.
    """
    from omnipost.accounts import hides_batches
    from omnipost.auth import as_reach
    from omnipost.errors import NotFoundError, echo
    from omnipost.store.models import Batch

    reach = as_reach(scope)
    async with publisher.db.session() as s:
        if post_or_batch_id.startswith("bat_"):
            batch = await s.get(Batch, post_or_batch_id)
            if batch is None or batch.profile_id != reach.profile_id or await hides_batches(s, reach, [batch.id]):
                raise NotFoundError(f"Batch '{echo(post_or_batch_id)}' was not found.", rule="batchId",
                                    remediation="list_posts shows the profile's posts and their batches.")
            posts = list((await s.exec(select(Post).where(Post.batch_id == batch.id).order_by(col(Post.position)))).all())
            return batch.id, posts
    post = await publisher._own_post(reach, post_or_batch_id)
    return post.batch_id, [post]


async def reschedule(publisher: "PublishService", scope: "Reach | str", post_or_batch_id: str, scheduled_at: str,
                     zone: str | None) -> Any:
    """Move queued posts (one post, or every queued post of a batch) to a new time; returns the BatchResult.

    Raises:
        NotFoundError; ValidationFailedError: bad time or zone, nothing queued, or already claimed
        by a worker (rule post.already_publishing).
    """
    from omnipost.validation import check_request
    from omnipost.errors import ValidationFailedError
    from omnipost.request import PostRequest
    from omnipost.store.models import Batch

    probe = PostRequest.model_validate({"text": "-", "targets": [{"platform": "bluesky"}], "scheduledAt": scheduled_at,
                                        "timezone": zone})
    check_request(probe, publisher.clock)  # same rules as scheduling: parseable, known zone, at least 1 s ahead
    from omnipost.validation import parse_time

    when = parse_time(scheduled_at, ZoneInfo(zone) if zone else timezone.utc)
    notes = [w.model_dump(exclude_none=True) for w in local_time_warnings(scheduled_at, zone)]
    batch_id, posts = await _targets(publisher, scope, post_or_batch_id)
    queued = [p for p in posts if p.status == "queued"]
    if not queued:
        raise ValidationFailedError(f"'{post_or_batch_id}' has no queued post to reschedule "
                                    f"({', '.join(sorted({p.status for p in posts}))}).", path="postId",
                                    remediation="Only queued posts can be rescheduled; retry_post re-queues failed ones.")
    now = publisher.clock.now()
    lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
    async with publisher.db.session() as s:
        for p in queued:
            warnings = [w for w in (p.warnings or []) if not str(w.get("code", "")).startswith("schedule.dst_")] + notes
            result = await s.exec(sa_update(Post).where(col(Post.id) == p.id, col(Post.status) == "queued", lease_free)
                                  .values(next_attempt_at=when, warnings=warnings, updated_at=now))
            if result.rowcount != 1:
                await s.rollback()
                raise ValidationFailedError(f"Post {p.id} is already being published and can no longer be rescheduled.",
                                            path="post.already_publishing", remediation="Wait for its outcome with get_post.")
        await s.flush()
        batch = await s.get(Batch, batch_id)
        assert batch is not None
        remaining = (await s.exec(select(Post.next_attempt_at).where(Post.batch_id == batch_id, Post.status == "queued"))).all()
        batch.scheduled_at = min([t for t in remaining if t is not None], default=when)  # the batch's earliest queued time
        s.add(batch)
        await s.commit()
    return await publisher.batch_result(batch_id)


async def reschedule_campaign(publisher: "PublishService", scope: "Reach | str", name: str, scheduled_at: str,
                              zone: str | None) -> Any:
    """Move a campaign's queued posts (its earliest to `scheduled_at`, the rest by as much); returns the campaign answer.

    Raises:
        NotFoundError; ValidationFailedError: bad time or zone.
    """
    from omnipost.request import PostRequest
    from omnipost.validation import check_request, parse_time

    probe = PostRequest.model_validate({"text": "-", "targets": [{"platform": "bluesky"}], "scheduledAt": scheduled_at,
                                        "timezone": zone})
    check_request(probe, publisher.clock)  # same rules as scheduling: parseable, known zone, at least 1 s ahead
    when = parse_time(scheduled_at, ZoneInfo(zone) if zone else timezone.utc)
    notes = [w.model_dump(exclude_none=True) for w in local_time_warnings(scheduled_at, zone)]
    return await publisher.reschedule_campaign(scope, name, when, notes)


async def retry(publisher: "PublishService", scope: "Reach | str", batch_id: str) -> Any:
    """Re-queue the failed targets of a batch, due now; published, rejected and unknown ones stay as they are
    (each unknown one gets a warning in the answer: not retried, why, and resolve_post as the way out).

    Raises:
        NotFoundError; ValidationFailedError: nothing failed.
    """
    from omnipost.errors import ValidationFailedError
    from omnipost.publishing import not_retried_warning

    batch_id, posts = await _targets(publisher, scope, batch_id)
    failed = [p for p in posts if p.status == "failed"]
    unknown = {p.id: not_retried_warning(p) for p in posts if p.status == "unknown"}
    if not failed:
        if unknown:
            raise ValidationFailedError(f"Batch {batch_id} has no failed target to retry; the outcome of "
                                        f"{', '.join(unknown)} is unknown, so it was not sent again.", path="batchId",
                                        remediation="Check the account on the platform, then call resolve_post for each: "
                                                    "resolution 'published' with its URL or id if it is there, or 'resend' if not.")
        raise ValidationFailedError(f"Batch {batch_id} has no failed target to retry.", path="batchId",
                                    remediation="Only failed targets are retried; resolve_post settles an unknown outcome.")
    now = publisher.clock.now()
    lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
    async with publisher.db.session() as s:
        for p in failed:
            await s.exec(sa_update(Post).where(col(Post.id) == p.id, col(Post.status) == "failed", lease_free)
                         .values(status="queued", next_attempt_at=now, error=None, updated_at=now))
        await s.commit()
    result = await publisher.batch_result(batch_id)
    return result.model_copy(update={"results": [r.model_copy(update={"warnings": [*r.warnings, unknown[r.postId]]})
                                                 if r.postId in unknown else r for r in result.results]})


async def status(db: "Database", now: datetime, tick: float, scope: "Reach | str | None") -> dict[str, Any]:
    """Alive workers, queue depth (queued posts and pending retries within reach; all with no scope) and the next due time."""
    from omnipost.accounts import real_batches
    from omnipost.auth import as_reach

    workers = await alive_workers(db, now, tick)
    waiting = and_(col(Post.status).in_(("queued", "failed")), col(Post.next_attempt_at).is_not(None))
    q = select(sa_func.count(), sa_func.min(Post.next_attempt_at)).where(waiting)
    if scope is not None:
        reach = as_reach(scope)
        q = q.where(Post.profile_id == reach.profile_id)
        if reach.test_mode:
            q = q.where(col(Post.batch_id).not_in(real_batches()))
    async with db.session() as s:
        depth, next_due = (await s.exec(q)).one()
    if isinstance(next_due, str):  # an aggregate loses the column type on SQLite
        next_due = datetime.fromisoformat(next_due)
    if next_due is not None and next_due.tzinfo is None:
        next_due = next_due.replace(tzinfo=timezone.utc)
    return {"alive": bool(workers), "workers": [{"workerId": w.worker_id, "seenAt": w.seen_at} for w in workers],
            "queueDepth": int(depth), "nextDueAt": next_due}
