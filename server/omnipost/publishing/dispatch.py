"""Dispatch: the upstream calls, the ledger, reconcile and recovery (see Dispatch)."""

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import bindparam, case
from sqlalchemy import func as sa_func
from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost.errors import (
    AppError,
    PlatformAuthError,
    PlatformDuplicateError,
    PlatformError,
    PlatformUnavailableError,
    UnknownOutcomeError,
)
from omnipost.leases import owner_is_gone
from omnipost.media.host import PublicUrlUnavailableError
from omnipost.media.probe import MediaFacts
from omnipost.netguard import UpstreamForbiddenError
from omnipost.platforms.base import MediaFile, PlatformAdapter, PublishJob, probe
from omnipost.platforms.pieces import Ledger, Processing, load as load_pieces
from omnipost.store.db import new_id
from omnipost.store.models import Account, Attempt, Batch, Post
from omnipost.outputs import BatchResult
from omnipost.publishing.common import Progress, batch_status, load_target, outcome, Result, _event_data, _whole, _clip

logger = logging.getLogger("omnipost.publishing")


# The UPDATEs that record a publish's results, built once per shape (building a statement costs more than running it
# on SQLite); every value is a bound parameter named b_<column>.
@functools.cache
def _post_update(columns: tuple[str, ...], ends_lease: bool) -> Any:
    """A post's outcome. A settled post's lease ends with it when it is this process's (b_owner; a scheduler's is
    released by its worker): the same UPDATE clears it, conditionally, as every SET expression reads the row as it was."""
    table = Post.__table__  # type: ignore[attr-defined]
    values: dict[str, Any] = {c: bindparam(f"b_{c}") for c in columns if c != "id"}
    if ends_lease:
        ours = table.c.lease_owner == bindparam("b_owner")
        values |= {"lease_owner": case((ours, None), else_=table.c.lease_owner),
                   "lease_until": case((ours, None), else_=table.c.lease_until)}
    return sa_update(table).where(table.c.id == bindparam("b_id")).values(values)


@functools.cache
def _attempt_update(columns: tuple[str, ...]) -> Any:
    table = Attempt.__table__  # type: ignore[attr-defined]
    return sa_update(table).where(table.c.id == bindparam("b_id")).values({c: bindparam(f"b_{c}") for c in columns if c != "id"})


_BATCH_STATUS = sa_update(Batch.__table__).where(Batch.__table__.c.id == bindparam("b_id")).values(status=bindparam("b_status"))  # type: ignore[attr-defined]


class Dispatch:
    """Sending stored posts upstream exactly once: attempts committed first, the fan-out (concurrent across
    accounts, in order within one), each try through the adapter and the post's pieces ledger, results written in
    one transaction, recovery after a crash. Mixed into PublishService (service.py)."""

    async def _fan_out(self, post_ids: list[str], progress: Progress | None) -> None:
        """Publish posts concurrently, one account's posts in order.

        All attempt rows (and the `publishing` status) are committed in one transaction before
        any upstream call; results are written as they arrive, coalesced into few transactions
        (a crash between an upstream success and its write is settled by recovery's reconcile).
        """
        if not post_ids:
            return
        async with self.db.session() as s:
            stored = {p.id: p for p in (await s.exec(select(Post).where(col(Post.id).in_(post_ids)))).all()}
            posts = [stored[pid] for pid in post_ids if pid in stored]
            counts = dict((await s.exec(select(Attempt.post_id, sa_func.count()).where(col(Attempt.post_id).in_(post_ids))
                                        .group_by(Attempt.post_id))).all())
            attempt_of = self._begin_attempts(s, posts, counts)
            accounts = await self._accounts_of(s, posts)
            await s.commit()
        await self._run_fan_out(posts, accounts, attempt_of, progress)

    def _begin_attempts(self, s: Any, posts: Sequence[Post], counts: dict[str, int]) -> dict[str, str]:
        """Add an open attempt for each post and mark it publishing (in the caller's transaction); post id -> attempt id."""
        return self._open_attempts(s, self._mark_publishing(posts), counts)

    def _mark_publishing(self, posts: Sequence[Post]) -> Sequence[Post]:
        """Mark posts publishing. A post nobody leases yet (an immediate publish, a draft) is leased to this process, so
        another process starting up leaves it alone while this one publishes it (a scheduler's post keeps its lease)."""
        now = self.clock.now()
        for p in posts:
            p.status, p.updated_at = "publishing", now
            if p.lease_owner is None:
                p.lease_owner, p.lease_until = self.owner, now + timedelta(seconds=self.lease_seconds)
        return posts

    def _open_attempts(self, s: Any, posts: Sequence[Post], counts: dict[str, int]) -> dict[str, str]:
        """Add an open attempt for each post (whose row must be flushed first: the attempt refers to it)."""
        now = self.clock.now()
        attempt_of: dict[str, str] = {}
        for p in posts:
            attempt = Attempt(id=new_id("att"), post_id=p.id, number=counts.get(p.id, 0) + 1, started_at=now)
            attempt_of[p.id] = attempt.id
            s.add(p)
            s.add(attempt)
        return attempt_of

    @staticmethod
    async def _accounts_of(s: Any, posts: Sequence[Post]) -> dict[str, Account]:
        if not posts:
            return {}
        return {a.id: a for a in (await s.exec(select(Account).where(col(Account.id).in_({p.account_id for p in posts})))).all()}

    async def _run_fan_out(self, posts: Sequence[Post], accounts: dict[str, Account], attempt_of: dict[str, str],
                           progress: Progress | None, *, assume_absent: bool = False, batch: "WholeBatch | None" = None) -> None:
        """The upstream calls of posts whose attempts are committed: concurrent across accounts, in order within one."""
        by_account: dict[str, list[Post]] = {}
        for p in posts:
            by_account.setdefault(p.account_id, []).append(p)
        writer = _ResultWriter(self, {p.id: p for p in posts}, batch)
        done = 0
        total = len(posts)

        async def run(chain: list[Post]) -> None:
            nonlocal done
            for post in chain:
                async with self._limiter:
                    result = await self._attempt(post, accounts[post.account_id], attempt_of[post.id], assume_absent=assume_absent)
                await writer.put(result)
                done += 1
                if progress is not None:
                    await progress(done, total, f"{post.id}: {result.status}")

        async with anyio.create_task_group() as tg:
            for chain in by_account.values():
                tg.start_soon(run, chain)
        await writer.drain()

    async def _attempt(self, post: Post, account: Account, attempt_id: str, *, assume_absent: bool = False,
                       interrupted_at: datetime | None = None) -> "Result":
        """One upstream try for a post whose attempt row is already committed. The adapter goes piece by piece through
        the post's ledger (platforms/pieces.py), which commits its markers itself; everything else is the result.
        `interrupted_at`: the attempt was cut off (a crash) after it started then, so its main post may be upstream."""
        adapter = self.adapters.get(account.platform)
        if adapter is None or account.health != "active":  # disconnected or needing reconnection since the post was stored
            return Result(post.id, attempt_id, None, PlatformAuthError(
                f"Account {account.id} cannot publish ({'no adapter for ' + account.platform if adapter is None else account.health}).",
                remediation="Reconnect the account."), "rejected", "rejected", pieces=dict(post.pieces or {}))
        job = await self._job(post, account)
        ledger = job.ledger
        ledger.assume_absent = assume_absent
        if interrupted_at is not None:
            ledger.assume_main_sent(interrupted_at)

        def refused(exc: AppError, outcome: str, status: str, *, will_retry: bool = False) -> Result:
            ledger.not_sent()  # a definite answer: the piece being sent did not reach the platform
            return Result(post.id, attempt_id, None, exc, outcome, status, will_retry=will_retry, pieces=ledger.dump())

        try:
            published = await adapter.publish(job)
        except Processing as exc:  # the platform is still at work: stored `processing`, checked again by a worker
            return Result(post.id, attempt_id, None, None, "processing", "processing", pieces=ledger.dump(), check_at=exc.check_at)
        except UnknownOutcomeError as exc:
            return await self._settle_unknown(post.id, attempt_id, adapter, job, exc)
        except PlatformAuthError as exc:
            await self.mark_account(account.id, "needs_reconnect")
            return refused(exc, "rejected", "rejected")
        except PlatformUnavailableError as exc:
            return refused(exc, "failed", "failed", will_retry=True)
        except PlatformDuplicateError as exc:
            if not await self._had_unknown(post.id):
                return refused(exc, "rejected", "rejected")
            # An earlier try of this target ended unknown: the duplicate may be that very post, so look for it.
            return await self._settle_unknown(post.id, attempt_id, adapter, job, UnknownOutcomeError(
                f"{exc.message} An earlier try of this post had an unknown outcome, so that duplicate may be this post.",
                status=exc.status, platform_response=exc.platform_response,
                remediation="Check the account on the platform, then resolve_post: 'published' with its URL if it is there."),
                absent=lambda pieces: Result(post.id, attempt_id, None, exc, "rejected", "rejected", pieces=pieces))
        except PlatformError as exc:  # Forbidden (scope), Rejected: the account stays as it is
            return refused(exc, "rejected", "rejected")
        except PublicUrlUnavailableError as exc:  # a local file for a platform that fetches by URL, no media host: nothing sent
            return refused(exc, "rejected", "rejected")
        except UpstreamForbiddenError as exc:  # the account's server now resolves to a non-public address: nothing sent
            await self.mark_account(account.id, "needs_reconnect")
            return refused(exc, "rejected", "rejected")
        except Exception as exc:  # noqa: BLE001 - the fan-out boundary: one target's bug must not sink the batch
            logger.exception("unexpected error publishing %s", post.id)  # what it was sending stays `sending`: reconciled
            return Result(post.id, attempt_id, None, AppError(f"Internal error while publishing ({type(exc).__name__})."),
                           "failed", "failed", pieces=ledger.dump())
        # Nothing sent by this try: every piece was there already (found by reconcile after an interruption).
        return Result(post.id, attempt_id, published, None, "published" if ledger.sent else "reconciled", "published",
                       pieces=ledger.dump())

    async def _settle_unknown(self, post_id: str, attempt_id: str, adapter: PlatformAdapter, job: PublishJob,
                              exc: UnknownOutcomeError, *, absent: "Callable[[dict[str, Any]], Result] | None" = None) -> "Result":
        """Reconcile at once after an unknown outcome, never retrying blind: look for every piece not done (probe).
        All there: published. Some: failed, retryable (the retry sends only what is missing). The main post certainly
        absent: `absent(pieces)` (default: failed, retryable). The platform cannot tell: unknown, its marker kept."""
        try:
            found, seen = await probe(adapter, job)
        except PlatformError:
            return Result(post_id, attempt_id, None, exc, "unknown", "unknown", pieces=job.ledger.dump())
        pieces = seen.dump()
        if found is not None and not _whole(found, job):
            return Result(post_id, attempt_id, None, PlatformUnavailableError(
                f"{exc.message} The post is there, but not all of its thread and first comment.",
                remediation="Retry the post: the parts already there are not sent again."), "failed", "failed", will_retry=True,
                pieces=pieces)
        if found is not None:
            return Result(post_id, attempt_id, found, None, "reconciled", "published", pieces=pieces)
        if absent is not None:
            return absent(pieces)
        return Result(post_id, attempt_id, None, PlatformUnavailableError(
            f"{exc.message} The platform has no such post, so it was not published.", remediation="Retry the post."),
            "failed", "failed", will_retry=True, pieces=pieces)

    async def _had_unknown(self, post_id: str) -> bool:
        """Whether an earlier try of this post ended with an unknown outcome (sent, no definite answer)."""
        async with self.db.session() as s:
            return (await s.exec(select(Attempt.id).where(
                Attempt.post_id == post_id,
                (col(Attempt.outcome) == "unknown") | (col(Attempt.error_code) == UnknownOutcomeError.code)).limit(1))).first() is not None

    async def publish_post_row(self, post_id: str, *, reconcile_first: bool = False) -> str:
        """Publish one stored post exactly once; returns its final status. `reconcile_first` (recovery, a scheduler
        taking over a lapsed lease): an attempt left open was interrupted, so its main post may have gone out. The
        ledger says so (a `sending` marker at the attempt's start) before the attempt is closed, and the new try
        reconciles every piece not done before sending anything: it resumes, it never re-sends."""
        async with self.db.session() as s:
            post = await s.get(Post, post_id)
            assert post is not None
            account = await s.get(Account, post.account_id)
            assert account is not None
        pending = await self._pending_attempt(post_id) if reconcile_first else None
        if pending is None:
            return await self._write(await self._attempt(post, account, await self._begin_attempt(post_id)))
        # The interrupted attempt is this try's: it stays open (still the main post's marker) until its outcome is in.
        return await self._write(await self._attempt(post, account, pending.id, interrupted_at=pending.started_at))

    async def _job(self, post: Post, account: Account) -> PublishJob:
        """What the adapter needs for one try at a stored post, with its ledger (saving through this service)."""
        from omnipost.accounts import info

        facts: dict[str, MediaFacts] = {}
        files: list[MediaFile] = []
        for m in (post.content or {}).get("media", []):
            mid = m.get("mediaId")
            if mid and self.media is not None:
                f = await self.media.facts_of(post.profile_id, mid)
                if f is not None:
                    facts[mid] = f
                mf = await self.media.file_of(post.profile_id, mid)
                if mf is not None:
                    files.append(MediaFile(index=m["index"], mime=mf.mime, kind=mf.kind, size=mf.size, path=mf.path, url=m.get("url"),
                                           width=mf.width, height=mf.height, alt_text=m.get("altText"), locate=mf.locate))
                    continue
            files.append(MediaFile(index=m["index"], mime=None, kind=None, size=None, url=m.get("url"), alt_text=m.get("altText")))
        target = load_target(post.position, post.content, info(account), facts)
        ctx = self.accounts.context(account)
        # The attempt row committed before this try stands for the main post's marker (pieces.py).
        ledger = Ledger(load_pieces(post.pieces), clock=self.clock, save=self._saver(post.id), main_marker_free=True)
        return PublishJob(post_id=post.id, upstream_key=post.id, account=ctx, target=target, media=tuple(files), ledger=ledger)

    def _saver(self, post_id: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """How a post's ledger is committed: one UPDATE of its `pieces`, in a transaction of its own."""
        async def save(pieces: dict[str, Any]) -> None:
            async with self.db.session() as s:
                await s.exec(sa_update(Post).where(col(Post.id) == post_id).values(pieces=pieces, updated_at=self.clock.now()))
                await s.commit()
        return save

    async def _pending_attempt(self, post_id: str) -> Attempt | None:
        async with self.db.session() as s:
            return (await s.exec(select(Attempt).where(Attempt.post_id == post_id, Attempt.outcome == "pending")
                                 .order_by(col(Attempt.number).desc()))).first()

    async def _begin_attempt(self, post_id: str) -> str:
        """Commit the attempt row and the `publishing` status before the upstream call."""
        async with self.db.session() as s:
            post = await s.get(Post, post_id)
            assert post is not None
            count = len((await s.exec(select(Attempt.id).where(Attempt.post_id == post_id))).all())
            attempt_id = self._begin_attempts(s, [post], {post_id: count})[post_id]
            await s.commit()
            return attempt_id

    async def _write(self, r: "Result") -> str:
        """Record one result (see _write_many)."""
        await self._write_many([r])
        return r.status

    async def _write_many(self, results: Sequence["Result"], known: dict[str, Post] | None = None,
                          batch: "WholeBatch | None" = None) -> None:
        """Record results in one transaction: each post's outcome and its attempt, as two bulk UPDATEs. `known`: the
        rows of these posts as the fan-out read them (their identity names the webhook events; no need to read them);
        each is brought up to date with what is written. `batch`: every post of the batch is in memory and these are
        its last results, so its status is settled in the same transaction (and its answer built without a read)."""
        now = self.clock.now()
        post_rows: list[dict[str, Any]] = []
        attempt_rows: list[dict[str, Any]] = []
        new_attempts: list[tuple[str, dict[str, Any]]] = []
        for r in results:
            p = r.published
            obj = r.error.to_error_object() if r.error is not None else None
            platform_error = r.error if isinstance(r.error, PlatformError) else None
            # Every row carries every key: one statement, executed for all rows at once.
            post_rows.append({
                "id": r.post_id, "status": r.status, "updated_at": now,
                "upstream_id": p.upstream_id if p else None, "url": p.url if p else None,
                "extras": dict(p.extras) if p else {}, "published_at": now if p else None,
                "first_comment_ids": list(p.first_comment_ids) if p else [], "thread_ids": list(p.thread_ids) if p else [],
                "error": obj.model_dump(exclude_none=True) if obj else None,
            } | ({"pieces": r.pieces} if r.pieces is not None else {})
              | ({"next_attempt_at": r.check_at} if r.status == "processing" else {}))
            values = {
                "finished_at": now, "outcome": r.outcome, "will_retry": r.will_retry,
                "http_status": p.http_status if p else (platform_error.status if platform_error else None),
                "response_body": _clip(p.response) if p else (_clip(platform_error.platform_response) if platform_error else None),
                "error_code": obj.code if obj else None,
            }
            if r.attempt_id is None:
                new_attempts.append((r.post_id, values))
            else:
                attempt_rows.append({"id": r.attempt_id, **values})
        async with self.db.session() as s:
            for post_id, values in new_attempts:
                count = len((await s.exec(select(Attempt.id).where(Attempt.post_id == post_id))).all())
                s.add(Attempt(id=new_id("att"), post_id=post_id, number=count + 1, started_at=now, **values))
            if attempt_rows:
                await s.exec(_attempt_update(tuple(attempt_rows[0])), params=[{f"b_{k}": v for k, v in row.items()} for row in attempt_rows])  # type: ignore[call-overload]
            settled = {r.post_id for r in results if r.status != "publishing"}
            # One statement per shape (with or without the ledger, settled or not: _post_update), executed for all its rows.
            for keys in {(*row, row["id"] in settled) for row in post_rows}:
                *columns, ends_lease = keys
                rows = [{f"b_{k}": v for k, v in row.items()} | {"b_owner": self.owner} for row in post_rows
                        if (*row, row["id"] in settled) == keys]
                await s.exec(_post_update(tuple(columns), ends_lease), params=rows)  # type: ignore[call-overload]
            if batch is None or batch.notify:
                await self._emit_outcomes(s, results, now, known or {})
            for row in post_rows:  # the rows in memory now say what the database says
                if (post := (known or {}).get(row["id"])) is not None:
                    for key, value in row.items():
                        setattr(post, key, value)
                    if row["id"] in settled and post.lease_owner == self.owner:
                        post.lease_owner, post.lease_until = None, None
            if batch is not None and (status := batch_status([p.status for p in batch.posts], batch.row.mode)) != batch.row.status:
                await s.exec(_BATCH_STATUS, params={"b_id": batch.row.id, "b_status": status})  # type: ignore[call-overload]
                batch.row.status = status
            await s.commit()

    async def _emit(self, profile_id: str, event: str, data: dict[str, Any], session: Any) -> None:
        if self.events is not None:
            await self.events.emit(profile_id, event, data, session=session)

    async def _emit_outcomes(self, s: Any, results: Sequence["Result"], now: datetime, known: dict[str, Post]) -> None:
        """post.published / post.rejected / post.failed for settled results, in the caller's transaction. The events
        name each post by its identity (id, batch, account, platform, profile), which never changes: a row in `known`
        serves as well as a fresh read."""
        if self.events is None:
            return
        settled = {r.post_id: r for r in results if r.status in ("published", "rejected", "failed", "unknown")}
        if not settled:
            return
        rows = [known[pid] for pid in settled if pid in known]
        if missing := [pid for pid in settled if pid not in known]:
            rows += (await s.exec(select(Post).where(col(Post.id).in_(missing)))).all()
        by_profile: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for post in rows:
            r = settled[post.id]
            if r.status == "published" and r.published is not None:
                p = r.published
                data = {"upstreamId": p.upstream_id, "url": p.url, "extras": dict(p.extras), "publishedAt": now}
                event = ("post.published", _event_data(post) | data)
            else:
                error = r.error.to_error_object().model_dump(exclude_none=True) if r.error is not None else None
                event = ("post.rejected" if r.status == "rejected" else "post.failed", _event_data(post) | {"status": r.status, "error": error})
            by_profile.setdefault(post.profile_id, []).append(event)
        for profile_id, events in by_profile.items():
            await self.events.emit_many(profile_id, events, session=s)

    async def mark_account(self, account_id: str, health: str) -> None:
        """Change an account's health; losing its token emits token.revoked (once, with the change)."""
        async with self.db.session() as s:
            account = await s.get(Account, account_id)
            if account is not None and account.health != health:
                account.health = health
                s.add(account)
                if health == "needs_reconnect" and self.events is not None:
                    await self.events.emit_many(account.profile_id, [("token.revoked", {
                        "accountId": account.id, "platform": account.platform, "handle": account.handle,
                        "expiresAt": account.token_expires_at})], session=s)
                await s.commit()

    async def recover(self) -> dict[str, int]:
        """After a restart: reconcile posts left `publishing`, send those never attempted, finish idempotency claims.

        Only what a dead process left: a post leased by a process that may still run (another server or worker
        on this database) is left to it, or to the scheduler once its lease expires (leases.py)."""
        now = self.clock.now()
        async with self.db.session() as s:
            candidates = list((await s.exec(select(Post).join(Batch).where(
                col(Post.status).in_(("publishing", "validated")), col(Batch.mode).in_(("immediate", "draft"))))).all())
            stuck: list[Post] = []
            for post in candidates:
                expired = post.lease_until is not None and post.lease_until < now  # UTCDateTime: aware UTC
                if post.lease_owner is not None and not expired and not owner_is_gone(post.lease_owner):
                    continue
                taken = await s.exec(sa_update(Post).where(  # take it over only if nobody else just did
                    col(Post.id) == post.id, col(Post.status) == post.status,
                    col(Post.lease_owner).is_(None) if post.lease_owner is None else col(Post.lease_owner) == post.lease_owner)
                    .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.lease_seconds)))
                if taken.rowcount == 1:
                    stuck.append(post)
            await s.commit()
        counts = {"reconciled": 0, "resumed": 0}
        for post in stuck:
            await self.publish_post_row(post.id, reconcile_first=post.status == "publishing")
            counts["reconciled" if post.status == "publishing" else "resumed"] += 1
        for record in await self.idempotency.unfinished():
            await self._finish_claim(record.id, (record.response or {}).get("batchId"))
        async with self.db.session() as s:
            batch_ids = {p.batch_id for p in stuck}
        for bid in batch_ids:
            await self.batch_result(bid)
        return counts


@dataclass
class WholeBatch:
    """A batch with every one of its posts in memory (an immediate publish as intake stored it)."""

    row: Batch
    posts: Sequence[Post]
    notify: bool = True  # False: the profile had no webhook endpoint when the batch was stored

    def result(self) -> BatchResult:
        return BatchResult(id=self.row.id, status=self.row.status, mode=self.row.mode, createdAt=self.row.created_at,
                           scheduledAt=self.row.scheduled_at, results=[outcome(p) for p in sorted(self.posts, key=lambda p: p.position)])


class _ResultWriter:
    """Collects results and writes them in one transaction when the batch ends.

    Deferring is safe: the attempt rows were committed before any upstream call, so a crash
    before the write leaves posts in `publishing`, which recovery reconciles upstream.
    """

    def __init__(self, service: "Dispatch", posts: dict[str, Post], batch: "WholeBatch | None") -> None:
        self._service, self._posts, self._batch = service, posts, batch
        self._queue: list[Result] = []
        self._lock = anyio.Lock()

    async def put(self, r: Result) -> None:
        self._queue.append(r)

    async def drain(self) -> None:
        async with self._lock:
            batch, self._queue = self._queue, []
            if batch:
                await self._service._write_many(batch, self._posts, self._batch)
