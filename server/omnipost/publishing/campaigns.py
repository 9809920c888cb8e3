"""Campaigns (issue 14): a label on posts; cancelling or moving all of a campaign's queued posts; the calendar.

A campaign is only the `campaign` column of its posts (set by publish_post, schedule_post, schedule_posts or
update_post), so it needs no table and is never "created". Acting on a campaign acts on each of its posts with the same
conditional UPDATE as acting on one post: a post a worker has claimed meanwhile is left to publish (it is reported with
its status), never both published and cancelled.
"""

from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_
from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost.accounts import real_batches
from omnipost.auth import Reach, as_reach
from omnipost.errors import NotFoundError, ValidationFailedError, echo
from omnipost.outputs import BatchResult
from omnipost.publishing.common import batch_status, outcome
from omnipost.store.models import Batch, Post

CALENDAR_DAYS = 31  # the longest period one calendar read covers


class Campaigns:
    """Campaign-wide cancel and reschedule, and the calendar. Mixed into PublishService (service.py)."""

    async def _campaign_posts(self, reach: Reach, name: str, statuses: tuple[str, ...] | None = None) -> list[Post]:
        q = select(Post).where(Post.profile_id == reach.profile_id, Post.campaign == name)
        if statuses is not None:
            q = q.where(col(Post.status).in_(statuses))
        if reach.test_mode:
            q = q.where(col(Post.batch_id).not_in(real_batches()))
        async with self.db.session() as s:
            return list((await s.exec(q.order_by(col(Post.next_attempt_at), col(Post.id)))).all())

    def _campaign_result(self, name: str, posts: list[Post]) -> BatchResult:
        """The answer about a campaign: shaped as a batch (id = the campaign, mode campaign), one result per post acted on."""
        return BatchResult(id=name, status=batch_status([p.status for p in posts], "campaign"), mode="campaign",
                           createdAt=self.clock.now(), results=[outcome(p) for p in posts],
                           scheduledAt=min((p.next_attempt_at for p in posts if p.status == "queued" and p.next_attempt_at),
                                           default=None))

    async def cancel_campaign(self, scope: Reach | str, name: str) -> BatchResult:
        """Cancel every draft and queued post of a campaign; one a worker has claimed is left as it is. The answer lists
        every post of the campaign with its status.

        Raises:
            NotFoundError: the campaign has no post in the profile.
        """
        reach = as_reach(scope)
        posts = await self._campaign_posts(reach, name)
        if not posts:
            raise NotFoundError(f"Campaign '{echo(name)}' has no posts.", rule="campaign",
                                remediation="list_posts shows the profile's posts and their campaigns.")
        todo = [p for p in posts if p.status in ("draft", "queued")]
        now = self.clock.now()
        lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
        async with self.db.session() as s:
            for p in todo:
                await s.exec(sa_update(Post).where(col(Post.id) == p.id, col(Post.status) == p.status, lease_free)
                             .values(status="cancelled", updated_at=now, next_attempt_at=None))
            await s.commit()
        return await self._settle_campaign(name, [p.id for p in posts])  # all of them: what was left, and why, too

    async def reschedule_campaign(self, scope: Reach | str, name: str, when: datetime, notes: list[dict[str, Any]]) -> BatchResult:
        """Move a campaign's queued posts: its earliest one to `when`, every other by the same amount (their spacing is
        kept). A post a worker has claimed meanwhile is left to publish (and reported).

        Raises:
            NotFoundError: no queued post in the campaign.
        """
        reach = as_reach(scope)
        posts = [p for p in await self._campaign_posts(reach, name, ("queued",)) if p.next_attempt_at is not None]
        if not posts:
            raise NotFoundError(f"Campaign '{echo(name)}' has no queued post to reschedule.", rule="campaign",
                                remediation="list_posts with campaign and status queued shows them.")
        shift = when - min(p.next_attempt_at for p in posts if p.next_attempt_at is not None)
        now = self.clock.now()
        lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
        async with self.db.session() as s:
            for p in posts:
                assert p.next_attempt_at is not None
                warnings = [w for w in (p.warnings or []) if not str(w.get("code", "")).startswith("schedule.dst_")] + notes
                await s.exec(sa_update(Post).where(col(Post.id) == p.id, col(Post.status) == "queued", lease_free)
                             .values(next_attempt_at=p.next_attempt_at + shift, warnings=warnings, updated_at=now))
            await s.flush()
            for batch_id in {p.batch_id for p in posts}:
                batch = await s.get(Batch, batch_id)
                assert batch is not None
                times = (await s.exec(select(Post.next_attempt_at).where(Post.batch_id == batch_id, Post.status == "queued"))).all()
                batch.scheduled_at = min([t for t in times if t is not None], default=batch.scheduled_at)
                s.add(batch)
            await s.commit()
        return await self._settle_campaign(name, [p.id for p in posts])

    async def _settle_campaign(self, name: str, post_ids: list[str]) -> BatchResult:
        async with self.db.session() as s:
            rows = list((await s.exec(select(Post).where(col(Post.id).in_(post_ids)))).all()) if post_ids else []
        for batch_id in {p.batch_id for p in rows}:
            await self.batch_result(batch_id)  # refreshes each batch's status
        order = {pid: i for i, pid in enumerate(post_ids)}
        return self._campaign_result(name, sorted(rows, key=lambda p: order[p.id]))

    async def calendar(self, scope: Reach | str, start: str, days: int, zone: str | None, campaign: str | None) -> dict[str, Any]:
        """The queued posts of `days` days from `start` (a date in `zone`, default UTC), by day, in time order.

        Raises:
            ValidationFailedError: a bad date, zone or number of days.
        """
        reach = as_reach(scope)
        try:
            tz = ZoneInfo(zone) if zone else timezone.utc
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationFailedError(f"'{echo(zone)}' is not an IANA time zone.", path="timezone") from None
        try:
            first = date.fromisoformat(start)
        except ValueError:
            raise ValidationFailedError(f"'{echo(start)}' is not a date like 2026-12-07.", path="start") from None
        if not 1 <= days <= CALENDAR_DAYS:
            raise ValidationFailedError(f"days must be 1 to {CALENDAR_DAYS}.", path="days")
        since = datetime.combine(first, time(), tz).astimezone(timezone.utc)
        until = datetime.combine(first + timedelta(days=days), time(), tz).astimezone(timezone.utc)
        q = select(Post).where(Post.profile_id == reach.profile_id, Post.status == "queued",
                               col(Post.next_attempt_at) >= since, col(Post.next_attempt_at) < until)
        if campaign is not None:
            q = q.where(Post.campaign == campaign)
        if reach.test_mode:
            q = q.where(col(Post.batch_id).not_in(real_batches()))
        async with self.db.session() as s:
            posts = list((await s.exec(q.order_by(col(Post.next_attempt_at), col(Post.position)))).all())
        by_day: dict[str, list[dict[str, Any]]] = {(first + timedelta(days=d)).isoformat(): [] for d in range(days)}
        for p in posts:
            assert p.next_attempt_at is not None
            local = p.next_attempt_at.astimezone(tz)
            by_day[local.date().isoformat()].append({
                "postId": p.id, "batchId": p.batch_id, "accountId": p.account_id, "platform": p.platform,
                "at": local.isoformat(), "campaign": p.campaign, "text": p.text if len(p.text) <= 120 else p.text[:119] + "…"})
        return {"start": first.isoformat(), "days": days, "timezone": zone or "UTC", "campaign": campaign, "count": len(posts),
                "byDay": [{"date": d, "posts": v} for d, v in by_day.items()]}
