"""Post queries and management (see Queries)."""

from datetime import datetime

from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost.accounts import hides_batches, real_batches
from omnipost.auth import Reach, as_reach
from omnipost.outputs import AttemptOut, BatchResult, PostDetail, PostPage, RevisionOut, TargetOutcome
from omnipost.errors import (
    NotFoundError,
    PlatformError,
    ValidationFailedError,
    echo,
)
from omnipost.store.models import Account, Attempt, Batch, Post, PostRevision
from omnipost.publishing.common import Progress, outcome, batch_status

class Queries:
    """Reading and managing stored posts: batch results, get/list, publishing drafts, cancel, delete.
    Mixed into PublishService (service.py)."""

    async def batch_result(self, batch_id: str) -> BatchResult:
        """The envelope of a stored batch, its status recomputed from its posts."""
        async with self.db.session() as s:
            batch = await s.get(Batch, batch_id)
            assert batch is not None
            posts = list((await s.exec(select(Post).where(Post.batch_id == batch_id).order_by(col(Post.position)))).all())
            status = batch_status([p.status for p in posts], batch.mode)
            if status != batch.status:
                batch.status = status
                s.add(batch)
                await s.commit()
        return BatchResult(id=batch.id, status=status, mode=batch.mode, createdAt=batch.created_at,
                           scheduledAt=batch.scheduled_at, results=[outcome(p) for p in posts])

    async def get_post(self, scope: Reach | str, post_id: str) -> PostDetail:
        """A post of the profile with every attempt.

        Raises:
            NotFoundError: unknown, another profile's, or out of reach.
        """
        post = await self._own_post(scope, post_id)
        async with self.db.session() as s:
            attempts = list((await s.exec(select(Attempt).where(Attempt.post_id == post_id).order_by(col(Attempt.number)))).all())
            revisions = list((await s.exec(select(PostRevision).where(PostRevision.post_id == post_id)
                                           .order_by(col(PostRevision.number)))).all())
        return PostDetail(
            **outcome(post).model_dump(), batchId=post.batch_id, text=post.text, createdAt=post.created_at,
            updatedAt=post.updated_at, publishedAt=post.published_at, campaign=post.campaign,
            scheduledAt=post.next_attempt_at if post.status == "queued" else None,
            revisions=[RevisionOut(number=r.number, at=r.created_at, fields=list(r.fields), before=dict(r.before)) for r in revisions],
            attempts=[AttemptOut(number=a.number, startedAt=a.started_at, finishedAt=a.finished_at, httpStatus=a.http_status,
                                 outcome=a.outcome, errorCode=a.error_code, willRetry=a.will_retry, response=a.response_body)
                      for a in attempts],
        )

    async def list_posts(self, scope: Reach | str, *, platform: str | None = None, status: str | None = None,
                         error_code: str | None = None, after: datetime | None = None, before: datetime | None = None,
                         cursor: str | None = None, limit: int = 50, campaign: str | None = None) -> PostPage:
        """Posts of the profile within reach, newest first, filtered, cursor-paginated (the cursor is the last post id seen)."""
        reach = as_reach(scope)
        q = select(Post).where(Post.profile_id == reach.profile_id)
        if reach.test_mode:
            q = q.where(col(Post.batch_id).not_in(real_batches()))
        if platform:
            q = q.where(Post.platform == platform)
        if status:
            q = q.where(Post.status == status)
        if campaign:
            q = q.where(Post.campaign == campaign)
        if after:
            q = q.where(Post.created_at >= after)
        if before:
            q = q.where(Post.created_at < before)
        if cursor:
            q = q.where(Post.id < cursor)  # ids are time-sortable ULIDs
        async with self.db.session() as s:
            rows = list((await s.exec(q.order_by(col(Post.id).desc()).limit(limit + 1 if not error_code else 10_000))).all())
        if error_code:
            rows = [p for p in rows if (p.error or {}).get("code") == error_code][: limit + 1]
        page = rows[:limit]
        return PostPage(posts=[outcome(p) for p in page], nextCursor=page[-1].id if len(rows) > limit else None)

    async def publish_draft(self, scope: Reach | str, post_or_batch_id: str, progress: Progress | None = None) -> BatchResult:
        """Publish a stored draft (one post, or every draft post of a batch).

        Raises:
            NotFoundError: no such draft in the profile (or within reach).
        """
        reach = as_reach(scope)
        async with self.db.session() as s:
            if post_or_batch_id.startswith("bat_"):
                batch = await s.get(Batch, post_or_batch_id)
                if batch is None or batch.profile_id != reach.profile_id or await hides_batches(s, reach, [batch.id]):
                    raise NotFoundError(f"Batch '{echo(post_or_batch_id)}' was not found.", rule="id")
                posts = list((await s.exec(select(Post).where(Post.batch_id == batch.id, Post.status == "draft"))).all())
            else:
                post = await s.get(Post, post_or_batch_id)
                posts = [post] if (post is not None and post.profile_id == reach.profile_id and post.status == "draft"
                                   and not await hides_batches(s, reach, [post.batch_id])) else []
            if not posts:
                raise NotFoundError(f"No draft '{echo(post_or_batch_id)}' to publish.", rule="id",
                                    remediation="list_posts with status draft shows the drafts.")
            for p in posts:
                p.status = "validated"
                s.add(p)
            batch_id = posts[0].batch_id
            batch = await s.get(Batch, batch_id)
            assert batch is not None
            batch.mode = "immediate"
            s.add(batch)
            await s.commit()
        await self._fan_out([p.id for p in posts], progress)
        return await self.batch_result(batch_id)

    async def cancel(self, scope: Reach | str, post_or_batch_id: str) -> BatchResult:
        """Cancel a draft or queued post, or every draft and queued post of a batch; returns the batch. Idempotent: a
        post already cancelled is no error. Each change is conditional (status unchanged, no live scheduler lease), so
        a post a worker has just claimed is not cancelled (named alone, that is an error; in a batch it is left).

        Raises:
            NotFoundError: unknown id; ValidationFailedError: nothing of it can be cancelled (path id; rule
            post.already_publishing when a scheduler has claimed the post).
        """
        from omnipost.scheduler import _targets

        batch_id, posts = await _targets(self, scope, post_or_batch_id)  # type: ignore[arg-type]
        todo = [p for p in posts if p.status in ("draft", "queued")]
        if not todo:
            if any(p.status == "cancelled" for p in posts):
                return await self.batch_result(batch_id)  # already done: the same answer again
            status = posts[0].status if len(posts) == 1 else "/".join(sorted({p.status for p in posts}))
            raise ValidationFailedError(f"A {status} post cannot be cancelled.", path="id",
                                        remediation="Only drafts and queued posts can be cancelled; delete_post removes a published one.")
        now = self.clock.now()
        taken = 0
        async with self.db.session() as s:
            for p in todo:
                result = await s.exec(sa_update(Post).where(
                    col(Post.id) == p.id, col(Post.status) == p.status,
                    (col(Post.lease_until).is_(None)) | (col(Post.lease_until) < now),
                ).values(status="cancelled", updated_at=now, next_attempt_at=None))
                taken += result.rowcount
            await s.commit()
        if taken == 0:
            raise ValidationFailedError(f"{post_or_batch_id} is already being published and can no longer be cancelled.",
                                        path="post.already_publishing",
                                        remediation="Wait for its outcome with get_post; delete_post removes it once published.")
        return await self.batch_result(batch_id)

    async def delete(self, scope: Reach | str, post_id: str) -> TargetOutcome:
        """Delete a published post upstream (where the platform allows) and mark it deleted.

        Raises:
            NotFoundError, ValidationFailedError, PlatformError.
        """
        post = await self._own_post(scope, post_id)
        if post.status != "published" or post.upstream_id is None:
            raise ValidationFailedError(f"A {post.status} post has nothing to delete upstream.", path="postId",
                                        remediation="cancel_post cancels drafts; only published posts can be deleted.")
        async with self.db.session() as s:
            account = await s.get(Account, post.account_id)
        assert account is not None
        adapter = self.adapters.get(account.platform)
        if adapter is None:
            raise ValidationFailedError(f"Deleting is not available for {account.platform}.", path="postId")
        job = await self._job(post, account)
        await adapter.delete(job.account, post.upstream_id)
        async with self.db.session() as s:
            row = await s.get(Post, post_id)
            assert row is not None
            row.status, row.updated_at = "deleted", self.clock.now()
            s.add(row)
            await s.commit()
            return outcome(row)

    async def _own_post(self, scope: Reach | str, post_id: str) -> Post:
        """A post of the profile within reach (raises NotFoundError, the same for an unknown id and one out of reach)."""
        reach = as_reach(scope)
        async with self.db.session() as s:
            post = await s.get(Post, post_id)
            hidden = post is not None and await hides_batches(s, reach, [post.batch_id])
        if post is None or post.profile_id != reach.profile_id or hidden:
            raise NotFoundError(f"Post '{echo(post_id)}' was not found.", rule="postId", remediation="list_posts shows the profile's posts.")
        return post
