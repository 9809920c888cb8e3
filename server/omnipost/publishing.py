"""PublishService: schema -> shallow preflight (atomic) -> store -> deep checks -> fan-out publish.

Exactly once (PRODUCT §5): every try is preceded by a committed attempt row and the post's `publishing`
status, and every piece of the target (post, thread parts, first comment) by a committed marker in the
post's pieces ledger (platforms/pieces.py; the main post's marker is the attempt row itself). A retry,
recovery after a crash (`recover()`) or a scheduler taking over a lapsed lease resumes at the first piece
not done: a piece an earlier try sent is reconciled by the platform's strategy before anything is sent, and
a piece done is never sent again.

What happens to each adapter error:

| error | post status | retried automatically |
|---|---|---|
| PlatformUnavailableError / PlatformRateLimitError | failed (retryable) | scheduled posts: by the scheduler (scheduler.py) |
| UnknownOutcomeError (a write, then 5xx/reset/timeout) | reconciled at once: published, failed (certainly absent or partial), else unknown | never blind |
| PlatformAuthError (the token was refused) | rejected; account marked needs_reconnect, token.revoked | no |
| PlatformForbiddenError (permission/scope) | rejected; the account stays active | no |
| PlatformDuplicateError | rejected; after an earlier unknown outcome of the post: reconciled like one | no |
| PlatformRejectedError, input errors | rejected | no |
| pieces.Processing (a container, a video still processing) | processing, next_attempt_at = its check time | checked again by the scheduler, lease-free meanwhile |
| anything else | failed, logged as a bug | no |
"""

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from typing import Any

import anyio
from sqlalchemy import func as sa_func
from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost import caps
from omnipost.accounts import Accounts, ProfileDirectory, hides_batches, real_batches
from omnipost.auth import Reach, as_reach
from omnipost.clock import Clock
from omnipost.domain import OPTION_KEY, Platform
from omnipost.drafting import TargetResult, Warning_, check_request, judge_target, violation_error
from omnipost.outputs import AttemptOut, BatchResult, PostDetail, PostPage, TargetOutcome
from omnipost.errors import (
    AppError,
    ErrorObject,
    NotFoundError,
    PlatformAuthError,
    PlatformDuplicateError,
    PlatformError,
    PlatformUnavailableError,
    PreflightError,
    UnknownOutcomeError,
    ValidationFailedError,
    echo,
)
from omnipost.leases import new_owner_id, owner_is_gone
from omnipost.idempotency import Idempotency, request_hash
from omnipost.media.probe import MediaFacts
from omnipost.netguard import UpstreamForbiddenError
from omnipost.platforms.base import AccountContext, MediaFile, PlatformAdapter, Published, PublishJob, probe
from omnipost.platforms.registry import spec_of
from omnipost.platforms.pieces import DONE, MAIN, Ledger, Piece, Processing, load as load_pieces
from omnipost.platforms.http import MAX_BODY
from omnipost.preflight.engine import resolve
from omnipost.preflight.model import AccountInfo, MediaRef, ResolvedTarget, Violation
from omnipost.request import PostRequest
from omnipost.store.db import Database, new_id
from omnipost.store.models import Account, Attempt, Batch, Post

logger = logging.getLogger("omnipost.publishing")

DUPLICATE_WINDOW = timedelta(hours=24)
LIVE_STATUSES = ("validated", "publishing", "processing", "published", "queued", "unknown")
Progress = Callable[[int, int, str], Awaitable[None]]


def normalise(text: str) -> str:
    """Whitespace-insensitive form of a text, for duplicate detection."""
    return re.sub(r"\s+", " ", text).strip()


def text_hash(text: str) -> str:
    """Hash of the normalised text."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()


# ------------------------------------------------------------------ serialising resolved targets


def dump_target(t: ResolvedTarget, media_ids: dict[int, str]) -> dict[str, Any]:
    """A resolved target as JSON for the post row (media as uploaded ids), so recovery can rebuild it."""
    return {
        "platform": t.platform.value, "text": t.text, "firstComment": t.first_comment, "thread": list(t.thread),
        "title": t.title, "visibility": t.visibility, "options": t.options,
        "media": [{"index": m.index, "mediaId": media_ids.get(m.index, m.media_id), "url": m.url, "altText": m.alt_text}
                  for m in t.media],
    }


def load_target(position: int, content: dict[str, Any], account: AccountInfo | None, facts: dict[str, MediaFacts]) -> ResolvedTarget:
    """Rebuild the ResolvedTarget stored on a post row."""
    media = tuple(
        MediaRef(index=m["index"], source="mediaId" if m.get("mediaId") else "url", alt_text=m.get("altText"),
                 facts=facts.get(m.get("mediaId") or ""), media_id=m.get("mediaId"), url=m.get("url"))
        for m in content.get("media", [])
    )
    return ResolvedTarget(index=position, platform=Platform(content["platform"]), account=account, text=content["text"],
                          media=media, first_comment=content.get("firstComment"), thread=tuple(content.get("thread") or ()),
                          title=content.get("title"), visibility=content.get("visibility"), options=dict(content.get("options") or {}))


def outcome(post: Post) -> TargetOutcome:
    """The public view of a post row."""
    return TargetOutcome(
        postId=post.id, accountId=post.account_id, platform=post.platform, status=post.status, upstreamId=post.upstream_id,
        url=post.url, extras=dict(post.extras or {}), firstComment=list(post.first_comment_ids or []),
        thread=list(post.thread_ids or []),
        warnings=[Warning_(**w) for w in post.warnings or []],
        error=ErrorObject(**post.error) if post.error else None,
    )


def not_retried_warning(post: Post) -> Warning_:
    """What retry_post says about a target whose outcome is unknown: it was left alone, why, and the way out."""
    return Warning_(
        code="retry.outcome_unknown", rule="retry.outcome_unknown",
        message=f"Post {post.id} was not retried: its outcome is unknown (the request reached {post.platform} and no "
                f"definite answer came back), so sending it again blindly could publish it twice.",
        remediation=f"Check the account on the platform, then call resolve_post with postId {post.id}: resolution "
                    f"'published' with its URL or id if it is there, or 'resend' if it is not.")


def batch_status(statuses: Sequence[str], mode: str) -> str:
    """published (all), failed (none), partial_failed (some); drafts and in-flight batches say so."""
    if mode == "draft" and all(s == "draft" for s in statuses):
        return "draft"
    if any(s in ("validated", "publishing", "processing") for s in statuses):
        return "publishing"
    if any(s == "queued" for s in statuses):
        return "queued"
    if statuses and all(s == "cancelled" for s in statuses):
        return "cancelled"
    published = sum(s == "published" for s in statuses)
    if published == len(statuses):
        return "published"
    return "failed" if published == 0 else "partial_failed"


@dataclass
class MediaPort:
    """What publishing needs from the media service (materialise URLs/bytes, facts of an id)."""

    upload: Callable[..., Awaitable[Any]]
    facts_of: Callable[[str, str], Awaitable[MediaFacts | None]]
    file_of: Callable[[str, str], Awaitable[MediaFile | None]]
    check_url: Callable[[str], Awaitable[None]] | None = None  # raises MediaError when a URL is not reachable


@dataclass
class PublishService:
    """Publishing, drafts, post history and crash recovery."""

    db: Database
    accounts: Accounts
    idempotency: Idempotency
    adapters: dict[str, PlatformAdapter]
    clock: Clock
    media: MediaPort | None = None
    concurrency: int = 10
    scheduler_tick: float = 1.0  # for the schedule answer's liveness check (alive = heartbeat within 2 ticks)
    events: Any = None  # webhooks.WebhookService: emit(profile_id, type, data, session=...)
    lease_seconds: float = 300.0  # how long another process leaves this one's in-flight posts alone
    owner: str = field(default_factory=new_owner_id)  # this process (leases.py)
    _limiter: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self._limiter = anyio.CapacityLimiter(self.concurrency)

    # ------------------------------------------------------------------ publish

    async def publish(self, req: PostRequest, body: dict[str, Any], *, tool: str, profile_id: str, test_mode: bool = False,
                      progress: Progress | None = None) -> BatchResult:
        """Run the whole pipeline for one request; see the module docstring.

        Raises:
            ValidationFailedError, NotFoundError, PreflightError, ConflictError: the request as a whole is refused.
        """
        mode = check_request(req, self.clock)
        claim = None
        if req.idempotencyKey:
            key = Reach(profile_id, test_mode).idempotency_key(req.idempotencyKey)  # a test key's never replays a live answer
            claim = await self.idempotency.claim(profile_id, key, tool, request_hash(tool, body))
            if claim.replay is not None:
                if claim.replay_is_error:
                    raise _ReplayedError(claim.replay)
                return BatchResult.model_validate(claim.replay | {"replay": True})
        try:
            result = await self._publish_claimed(req, mode, profile_id, test_mode, progress, claim.record_id if claim else None)
            if claim is not None and claim.record_id is not None:
                await self.idempotency.complete(claim.record_id, result.model_dump(mode="json"))
        except BaseException:  # a refusal, a bug (internal_error) or a cancellation: never leave the key "still running"
            if claim is not None and claim.record_id is not None:
                with anyio.CancelScope(shield=True):
                    await self._finish_claim(claim.record_id, (await self.idempotency.progress(claim.record_id)).get("batchId"))
            raise
        if mode == "scheduled":
            result = await self._with_liveness(result)
        return result

    async def _finish_claim(self, record_id: str, batch_id: str | None) -> None:
        """Settle a claim whose request ended without its answer (an error, a crash): nothing stored frees the key for a
        retry; a stored batch becomes the answer to replay, so the retry cannot publish it twice."""
        if batch_id is None:
            await self.idempotency.release(record_id)
        else:
            await self.idempotency.complete(record_id, (await self.batch_result(batch_id)).model_dump(mode="json"))

    async def _with_liveness(self, result: BatchResult) -> BatchResult:
        """A schedule answer warns on every target when no scheduler worker is alive (heartbeat within 2 ticks)."""
        from omnipost.scheduler import alive_workers, no_scheduler_warning

        if await alive_workers(self.db, self.clock.now(), self.scheduler_tick):
            return result
        note = no_scheduler_warning()
        return result.model_copy(update={"results": [r.model_copy(update={"warnings": [*r.warnings, note]}) for r in result.results]})

    async def _publish_claimed(self, req: PostRequest, mode: str, profile_id: str, test_mode: bool,
                               progress: Progress | None, claim_id: str | None) -> BatchResult:
        directory = ProfileDirectory(self.accounts, self.db, profile_id, test_mode=test_mode)
        await directory.prime({t.accountId for t in req.targets if t.accountId})
        resolution = await resolve(req, directory, directory)
        judged: list[TargetResult] = []
        violations: list[ErrorObject] = []
        for t in resolution.targets:
            if t.account is None:
                raise ValidationFailedError("Publishing needs an accountId on every target (a platform alone is for validate_post).",
                                            path=f"targets[{t.index}].accountId", remediation="Call list_accounts and name an account.")
            r = judge_target(t, resolution.early.get(t.index, []))
            judged.append(r)
            violations += r.errors
        if not req.skipDuplicateCheck:
            async with self.db.session() as s:
                violations += await self._duplicates(s, resolution.targets)
        if violations:
            raise PreflightError(violations)
        now = self.clock.now()
        when, schedule_warnings = None, []
        if mode == "scheduled":
            from omnipost.drafting import parse_time
            from omnipost.scheduler import local_time_warnings

            assert req.scheduledAt is not None
            when = parse_time(req.scheduledAt, ZoneInfo(req.timezone) if req.timezone else timezone.utc)
            schedule_warnings = [w.model_dump(exclude_none=True) for w in local_time_warnings(req.scheduledAt, req.timezone)]
        first_status = {"draft": "draft", "scheduled": "queued"}.get(mode, "validated")
        batch = Batch(id=new_id("bat"), profile_id=profile_id, idempotency_key=req.idempotencyKey,
                      request_hash=request_hash("publish", req.model_dump(mode="json")), mode=mode,
                      status={"draft": "draft", "scheduled": "queued"}.get(mode, "publishing"), created_at=now, scheduled_at=when)
        media_ids, media_errors = await self._materialise_media(Reach(profile_id, test_mode), resolution.targets)
        for index, error in (await self._check_links(resolution.targets)).items():
            media_errors.setdefault(index, error)
        posts: list[Post] = []
        for t, r in zip(resolution.targets, judged):
            assert t.account is not None
            error = media_errors.get(t.index)
            posts.append(Post(
                id=new_id("post"), batch_id=batch.id, profile_id=profile_id, account_id=t.account.id, position=t.index,
                platform=t.platform.value, status="draft" if mode == "draft" else ("rejected" if error else first_status),
                text=t.text, text_hash=text_hash(t.text), content=dump_target(t, media_ids.get(t.index, {})),
                warnings=[w.model_dump(exclude_none=True) for w in r.warnings] + schedule_warnings,
                error=error.model_dump(exclude_none=True) if error else None, created_at=now, updated_at=now,
                next_attempt_at=when if mode == "scheduled" and not error else None,
            ))
        async with self.db.session() as s:
            # Decisions about these accounts' new posts are serialised across processes (caps.lock: an advisory lock
            # per account on PostgreSQL, the write lock on SQLite) and taken again against what is committed, so
            # concurrent identical publishes cannot all pass post.duplicate; a refusal here stores nothing.
            await caps.lock(s, list({p.account_id for p in posts}))
            if not req.skipDuplicateCheck and (found := await self._duplicates(s, resolution.targets)):
                raise PreflightError(found)
            if mode == "immediate":
                await self._defer_capped(s, posts, now)
            s.add(batch)
            await s.flush()  # the batch row must exist before its posts (foreign key)
            s.add_all(posts)
            events: list[tuple[str, dict[str, Any]]] = []
            for p in posts:  # the events commit with the rows they describe, so none is lost or invented
                if p.status == "queued":
                    events.append(("post.queued", _event_data(p) | {"scheduledAt": p.next_attempt_at}))
                elif p.status == "validated":
                    events.append(("post.validated", _event_data(p) | {"warnings": p.warnings}))
                elif p.status == "rejected":
                    events.append(("post.rejected", _event_data(p) | {"error": p.error}))
            if self.events is not None and events:
                await self.events.emit_many(profile_id, events, session=s)
            live = [p for p in posts if p.status == "validated"] if mode == "immediate" else []
            # An immediate publish opens its attempts in this same transaction: one commit before the
            # first upstream call, and no window in which a post is stored but not yet being published.
            attempt_of = self._begin_attempts(s, live, {})
            accounts = await self._accounts_of(s, live)
            if claim_id is not None:  # with the batch: a key is never freed for a request whose batch was stored
                await self.idempotency.attach(claim_id, {"batchId": batch.id}, session=s)
            await s.commit()
        if live:
            await self._run_fan_out(live, accounts, attempt_of, progress)
        return await self.batch_result(batch.id)

    async def _defer_capped(self, s: Any, posts: Sequence[Post], now: datetime) -> None:
        """Immediate targets past their account's daily cap (caps.py) are queued for when a slot frees, with a
        warning, instead of being sent to a platform that would refuse them. Runs in the storing transaction, under caps.lock."""
        live = [p for p in posts if p.status == "validated"]
        capped = {p.account_id: cap for p in live if (cap := caps.daily_cap(p.platform)) is not None}
        if not capped:
            return
        counted = await caps.used(s, capped, now, None)  # our own publishes in flight count too
        for account_id, cap in capped.items():
            mine = [p for p in live if p.account_id == account_id]
            for p, until in zip(mine, caps.waits(counted[account_id], cap, len(mine), now)):
                if until is not None:
                    p.status, p.next_attempt_at = "queued", until
                    p.warnings = [*(p.warnings or []), caps.deferred_warning(p.platform, cap, len(counted[account_id]), until)]

    async def _duplicates(self, s: Any, targets: Sequence[ResolvedTarget]) -> list[ErrorObject]:
        """post.duplicate violations: the targets whose text went to their account within the window (stored posts only)."""
        since = self.clock.now() - DUPLICATE_WINDOW
        found: list[ErrorObject] = []
        wanted = {(t.account.id, text_hash(t.text)) for t in targets if t.account is not None}
        rows = (await s.exec(select(Post).where(  # one query for the whole batch, matched in memory
            col(Post.account_id).in_({a for a, _ in wanted}), col(Post.text_hash).in_({h for _, h in wanted}),
            col(Post.status).in_(LIVE_STATUSES), Post.created_at >= since).order_by(col(Post.created_at).desc()))).all()
        latest: dict[tuple[str, str], Post] = {}
        for row in rows:
            latest.setdefault((row.account_id, row.text_hash), row)
        if latest:
            for t in targets:
                assert t.account is not None
                earlier = latest.get((t.account.id, text_hash(t.text)))
                if earlier is not None:
                    found.append(violation_error(Violation(
                        "post.duplicate", f"targets[{t.index}].text",
                        f"The same text went to account {t.account.id} at {earlier.created_at.isoformat()} (post {earlier.id}).",
                        f"Change the text, or set skipDuplicateCheck: true to post it again (earlier post: {earlier.id}).",
                        actual=earlier.id, limit=24)))
        return found

    async def _materialise_media(self, scope: Reach, targets: Sequence[ResolvedTarget]) -> tuple[dict[int, dict[int, str]], dict[int, ErrorObject]]:
        """Store inline bytes and fetch URL media once per distinct source (deep check); a failure fails that target only."""
        ids: dict[int, dict[int, str]] = {}
        errors: dict[int, ErrorObject] = {}
        if self.media is None:
            return ids, errors
        cache: dict[str, str | AppError] = {}
        for t in targets:
            for m in t.media:
                if m.source == "mediaId":
                    continue
                key = m.url or f"b64:{m.index}:{t.index}"
                if m.source == "bytesBase64":
                    key = "b64:" + (m.facts.sha256 if m.facts else key)
                if key not in cache:
                    cache[key] = await self._upload(scope, t, m)
                got = cache[key]
                if isinstance(got, AppError):
                    errors.setdefault(t.index, _deep_error(t, m, got))
                else:
                    ids.setdefault(t.index, {})[m.index] = got
        return ids, errors

    async def _check_links(self, targets: Sequence[ResolvedTarget]) -> dict[int, ErrorObject]:
        """Deep check of the links a platform fetches itself (its spec's `checked_links`, e.g. a pin's destinationUrl):
        once per distinct URL, concurrently; a link that does not answer 2xx fails that target only."""
        if self.media is None or self.media.check_url is None:
            return {}
        check = self.media.check_url
        wanted: dict[tuple[int, str, str], str] = {}  # (target, option, rule) -> url
        for t in targets:
            for option, rule in (spec.checked_links if (spec := spec_of(t.platform.value)) else ()):
                if url := t.options.get(option):
                    wanted[(t.index, option, rule)] = url
        if not wanted:
            return {}
        outcome: dict[str, AppError | None] = {}

        async def one(url: str) -> None:
            try:
                await check(url)
                outcome[url] = None
            except AppError as exc:
                outcome[url] = exc

        async with anyio.create_task_group() as tg:
            for url in set(wanted.values()):
                tg.start_soon(one, url)
        errors: dict[int, ErrorObject] = {}
        platform_of = {t.index: t.platform for t in targets}
        for (index, option, rule), url in wanted.items():
            if (exc := outcome[url]) is not None and index not in errors:
                obj = exc.to_error_object()
                errors[index] = obj.model_copy(update={
                    "code": "preflight_failed", "rule": rule, "path": f"targets[{index}].{OPTION_KEY[platform_of[index]]}.{option}",
                    "message": f"The {option} link cannot be used: {obj.message}",
                    "remediation": f"Fix {option} so it answers 200 to an anonymous request from the internet, or remove it."})
        return errors

    async def _upload(self, scope: Reach, t: ResolvedTarget, m: MediaRef) -> str | AppError:
        """Store one inline or URL medium, in the mode of the caller's key; its id, or why it could not be."""
        assert self.media is not None
        try:
            if m.source == "url":
                record = await self.media.upload(scope, url=m.url, alt_text=m.alt_text)
            else:
                record = await self.media.upload(scope, bytes_base64=m.inline, alt_text=m.alt_text)
            return record.id
        except AppError as exc:
            return exc

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
        """Add an open attempt for each post and mark it publishing (in the caller's transaction); post id -> attempt id.

        A post nobody leases yet (an immediate publish, a draft) is leased to this process, so another process
        starting up leaves it alone while this one publishes it (a scheduler's post keeps its worker's lease)."""
        now = self.clock.now()
        attempt_of: dict[str, str] = {}
        for p in posts:
            attempt = Attempt(id=new_id("att"), post_id=p.id, number=counts.get(p.id, 0) + 1, started_at=now)
            attempt_of[p.id] = attempt.id
            p.status, p.updated_at = "publishing", now
            if p.lease_owner is None:
                p.lease_owner, p.lease_until = self.owner, now + timedelta(seconds=self.lease_seconds)
            s.add(p)
            s.add(attempt)
        return attempt_of

    @staticmethod
    async def _accounts_of(s: Any, posts: Sequence[Post]) -> dict[str, Account]:
        if not posts:
            return {}
        return {a.id: a for a in (await s.exec(select(Account).where(col(Account.id).in_({p.account_id for p in posts})))).all()}

    async def _run_fan_out(self, posts: Sequence[Post], accounts: dict[str, Account], attempt_of: dict[str, str],
                           progress: Progress | None, *, assume_absent: bool = False) -> None:
        """The upstream calls of posts whose attempts are committed: concurrent across accounts, in order within one."""
        by_account: dict[str, list[Post]] = {}
        for p in posts:
            by_account.setdefault(p.account_id, []).append(p)
        writer = _ResultWriter(self)
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
                       interrupted_at: datetime | None = None) -> "_Result":
        """One upstream try for a post whose attempt row is already committed. The adapter goes piece by piece through
        the post's ledger (platforms/pieces.py), which commits its markers itself; everything else is the result.
        `interrupted_at`: the attempt was cut off (a crash) after it started then, so its main post may be upstream."""
        adapter = self.adapters.get(account.platform)
        if adapter is None or account.health != "active":  # disconnected or needing reconnection since the post was stored
            return _Result(post.id, attempt_id, None, PlatformAuthError(
                f"Account {account.id} cannot publish ({'no adapter for ' + account.platform if adapter is None else account.health}).",
                remediation="Reconnect the account."), "rejected", "rejected", pieces=dict(post.pieces or {}))
        job = await self._job(post, account)
        ledger = job.ledger
        ledger.assume_absent = assume_absent
        if interrupted_at is not None:
            ledger.assume_main_sent(interrupted_at)

        def refused(exc: AppError, outcome: str, status: str, *, will_retry: bool = False) -> _Result:
            ledger.not_sent()  # a definite answer: the piece being sent did not reach the platform
            return _Result(post.id, attempt_id, None, exc, outcome, status, will_retry=will_retry, pieces=ledger.dump())

        try:
            published = await adapter.publish(job)
        except Processing as exc:  # the platform is still at work: stored `processing`, checked again by a worker
            return _Result(post.id, attempt_id, None, None, "processing", "processing", pieces=ledger.dump(), check_at=exc.check_at)
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
                absent=lambda pieces: _Result(post.id, attempt_id, None, exc, "rejected", "rejected", pieces=pieces))
        except PlatformError as exc:  # Forbidden (scope), Rejected: the account stays as it is
            return refused(exc, "rejected", "rejected")
        except UpstreamForbiddenError as exc:  # the account's server now resolves to a non-public address: nothing sent
            await self.mark_account(account.id, "needs_reconnect")
            return refused(exc, "rejected", "rejected")
        except Exception as exc:  # noqa: BLE001 - the fan-out boundary: one target's bug must not sink the batch
            logger.exception("unexpected error publishing %s", post.id)  # what it was sending stays `sending`: reconciled
            return _Result(post.id, attempt_id, None, AppError(f"Internal error while publishing ({type(exc).__name__})."),
                           "failed", "failed", pieces=ledger.dump())
        # Nothing sent by this try: every piece was there already (found by reconcile after an interruption).
        return _Result(post.id, attempt_id, published, None, "published" if ledger.sent else "reconciled", "published",
                       pieces=ledger.dump())

    async def _settle_unknown(self, post_id: str, attempt_id: str, adapter: PlatformAdapter, job: PublishJob,
                              exc: UnknownOutcomeError, *, absent: "Callable[[dict[str, Any]], _Result] | None" = None) -> "_Result":
        """Reconcile at once after an unknown outcome, never retrying blind: look for every piece not done (probe).
        All there: published. Some: failed, retryable (the retry sends only what is missing). The main post certainly
        absent: `absent(pieces)` (default: failed, retryable). The platform cannot tell: unknown, its marker kept."""
        try:
            found, seen = await probe(adapter, job)
        except PlatformError:
            return _Result(post_id, attempt_id, None, exc, "unknown", "unknown", pieces=job.ledger.dump())
        pieces = seen.dump()
        if found is not None and not _whole(found, job):
            return _Result(post_id, attempt_id, None, PlatformUnavailableError(
                f"{exc.message} The post is there, but not all of its thread and first comment.",
                remediation="Retry the post: the parts already there are not sent again."), "failed", "failed", will_retry=True,
                pieces=pieces)
        if found is not None:
            return _Result(post_id, attempt_id, found, None, "reconciled", "published", pieces=pieces)
        if absent is not None:
            return absent(pieces)
        return _Result(post_id, attempt_id, None, PlatformUnavailableError(
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
                                           width=mf.width, height=mf.height, alt_text=m.get("altText")))
                    continue
            files.append(MediaFile(index=m["index"], mime=None, kind=None, size=None, url=m.get("url"), alt_text=m.get("altText")))
        target = load_target(post.position, post.content, info(account), facts)
        ctx = AccountContext(id=account.id, platform=account.platform, handle=account.handle,
                             credentials=self.accounts.credentials(account), defaults=dict(account.defaults or {}), emulates=account.emulates)
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

    async def _write(self, r: "_Result") -> str:
        """Record one result (see _write_many)."""
        await self._write_many([r])
        return r.status

    async def _write_many(self, results: Sequence["_Result"]) -> None:
        """Record results in one transaction: each post's outcome and its attempt, as two bulk UPDATEs."""
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
                await s.exec(sa_update(Attempt), params=attempt_rows)
            for keys in {tuple(row) for row in post_rows}:  # one statement per shape (with or without the ledger)
                await s.exec(sa_update(Post), params=[row for row in post_rows if tuple(row) == keys])
            settled = [r.post_id for r in results if r.status != "publishing"]
            if settled:  # this process's leases end with the outcome (a scheduler's are released by its worker)
                await s.exec(sa_update(Post).where(col(Post.id).in_(settled), col(Post.lease_owner) == self.owner)
                             .values(lease_owner=None, lease_until=None))
            await self._emit_outcomes(s, results, now)
            await s.commit()

    async def _emit(self, profile_id: str, event: str, data: dict[str, Any], session: Any) -> None:
        if self.events is not None:
            await self.events.emit(profile_id, event, data, session=session)

    async def _emit_outcomes(self, s: Any, results: Sequence["_Result"], now: datetime) -> None:
        """post.published / post.rejected / post.failed for settled results, in the caller's transaction."""
        if self.events is None:
            return
        settled = {r.post_id: r for r in results if r.status in ("published", "rejected", "failed", "unknown")}
        if not settled:
            return
        rows = (await s.exec(select(Post).where(col(Post.id).in_(list(settled))))).all()
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

    # ------------------------------------------------------------------ reading and managing posts

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
        return PostDetail(
            **outcome(post).model_dump(), batchId=post.batch_id, text=post.text, createdAt=post.created_at,
            updatedAt=post.updated_at, publishedAt=post.published_at,
            attempts=[AttemptOut(number=a.number, startedAt=a.started_at, finishedAt=a.finished_at, httpStatus=a.http_status,
                                 outcome=a.outcome, errorCode=a.error_code, willRetry=a.will_retry, response=a.response_body)
                      for a in attempts],
        )

    async def list_posts(self, scope: Reach | str, *, platform: str | None = None, status: str | None = None,
                         error_code: str | None = None, after: datetime | None = None, before: datetime | None = None,
                         cursor: str | None = None, limit: int = 50) -> PostPage:
        """Posts of the profile within reach, newest first, filtered, cursor-paginated (the cursor is the last post id seen)."""
        reach = as_reach(scope)
        q = select(Post).where(Post.profile_id == reach.profile_id)
        if reach.test_mode:
            q = q.where(col(Post.batch_id).not_in(real_batches()))
        if platform:
            q = q.where(Post.platform == platform)
        if status:
            q = q.where(Post.status == status)
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

    async def cancel(self, scope: Reach | str, post_id: str) -> TargetOutcome:
        """Cancel a draft or a queued post. The change is conditional (status unchanged, no live
        scheduler lease), so a post a worker has just claimed cannot be cancelled.

        Raises:
            NotFoundError: unknown post; ValidationFailedError: not cancellable in its state
            (rule post.already_publishing when a scheduler has claimed it).
        """
        post = await self._own_post(scope, post_id)
        if post.status not in ("draft", "queued"):
            raise ValidationFailedError(f"A {post.status} post cannot be cancelled.", path="postId",
                                        remediation="Only drafts and queued posts can be cancelled; delete_post removes a published one.")
        now = self.clock.now()
        async with self.db.session() as s:
            result = await s.exec(sa_update(Post).where(
                col(Post.id) == post_id, col(Post.status) == post.status,
                (col(Post.lease_until).is_(None)) | (col(Post.lease_until) < now),
            ).values(status="cancelled", updated_at=now, next_attempt_at=None))
            await s.commit()
        if result.rowcount != 1:
            raise ValidationFailedError(f"Post {post_id} is already being published and can no longer be cancelled.",
                                        path="post.already_publishing",
                                        remediation="Wait for its outcome with get_post; delete_post removes it once published.")
        row = await self._own_post(scope, post_id)
        await self.batch_result(row.batch_id)
        return outcome(row)

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

    # ------------------------------------------------------------------ a way out of `unknown`

    async def resolve(self, scope: Reach | str, post_id: str, resolution: str, upstream: str | None, *, by: str) -> TargetOutcome:
        """The user settles a target whose outcome is unknown: `published` (it is there, at `upstream`: a URL or an
        upstream id, checked upstream where the platform can tell) or `resend` (it is not: publish it again now,
        through the fan-out, under the same deterministic upstream key, so a caller-chosen-id platform still
        cannot get it twice). Each resolution is recorded as an attempt saying who resolved it and whether it
        was verified upstream; `published` emits post.published like a publish.

        Raises:
            NotFoundError: unknown post or out of reach. ValidationFailedError: the post is not `unknown` (path
            postId), `upstream` missing or superfluous, or the platform has no such post (path upstream).
            PlatformError: the upstream check itself failed (nothing changed).
        """
        post = await self._own_post(scope, post_id)
        if post.status != "unknown":
            raise ValidationFailedError(f"Post {post_id} is {post.status}: only a post whose outcome is unknown can be resolved.",
                                        path="postId", remediation="get_post shows its status; retry_post retries failed targets.")
        if resolution == "published" and not upstream:
            raise ValidationFailedError("Say where the post is: its URL or upstream id on the platform.", path="upstream",
                                        remediation="Pass upstream, or resolution 'resend' if the post is not on the platform.")
        if resolution == "resend" and upstream:
            raise ValidationFailedError("resolution 'resend' publishes the post again and takes no upstream.", path="upstream",
                                        remediation="Leave upstream out, or use resolution 'published' if the post is there.")
        async with self.db.session() as s:
            account = await s.get(Account, post.account_id)
        assert account is not None
        record = {"tool": "resolve_post", "resolvedBy": by, "resolution": resolution}
        if resolution == "resend":
            await self._resend(post, record)
            row = await self._own_post(scope, post_id)
            await self.batch_result(row.batch_id)
            return outcome(row)
        assert upstream is not None
        published, verified, pieces = await self._check_there(post, account, upstream)
        record |= {"upstream": upstream, "verifiedUpstream": verified}
        published = replace(published, response=record | ({"found": published.response} if published.response else {}))
        await self._claim_unknown(post_id)
        await self._write(_Result(post_id, None, published, None, "resolved_published" if verified else "resolved_unverified",
                                  "published", pieces=pieces))
        row = await self._own_post(scope, post_id)
        await self.batch_result(row.batch_id)
        result = outcome(row)
        if not verified:
            result.warnings.append(Warning_(
                code="resolve.unverified", rule="resolve.unverified", path="upstream",
                message=f"{account.platform} cannot be asked whether this post exists: it was marked published on your word.",
                remediation="Check the link yourself; get_post's attempts record that this was not verified."))
        return result

    async def _check_there(self, post: Post, account: Account, upstream: str) -> tuple[Published, bool, dict[str, Any]]:
        """What the platform says about the post the user says is at `upstream`: (what to record, verified?, the ledger).

        The platform is asked the way a reconcile asks it (base.probe: the id we chose, the container we recorded, a
        search of the account's posts since the send); the user's URL or id must name the post found there. Where
        the platform cannot tell, the user's word is taken, unverified."""
        adapter = self.adapters.get(account.platform)
        said = upstream.strip()
        unverified = Published(upstream_id=said, url=said if re.match(r"https?://", said, re.I) else None)
        pieces = load_pieces(post.pieces)
        pieces[MAIN] = Piece(DONE, upstream_id=unverified.upstream_id, url=unverified.url)
        on_word = (unverified, False, {name: p.dump() for name, p in pieces.items()})
        if adapter is None:
            return on_word
        job = await self._job(post, account)
        try:
            found, seen = await probe(adapter, job)
        except UnknownOutcomeError:  # the platform cannot tell (a failed read raises its own error: nothing changes)
            return on_word
        if found is None:
            raise ValidationFailedError(f"{account.platform} has no such post for this target: it was not published.",
                                        path="upstream", remediation="Check the link; if the post is missing, call resolve_post "
                                                                     "with resolution 'resend' to publish it.")
        if not _whole(found, job):
            raise ValidationFailedError(f"{account.platform} has this target's post, but not all of its thread and first "
                                        "comment: it is not fully published.", path="upstream",
                                        remediation="Call resolve_post with resolution 'resend': the parts already there "
                                                    "are not sent again.")
        names = {found.upstream_id, found.url} - {None}  # Bluesky's upstream id is its at-uri
        if said not in names and _last_segment(said) not in {_last_segment(n) for n in names if n}:
            raise ValidationFailedError(f"{account.platform} has this target's post at {found.url or found.upstream_id}, "
                                        f"not at '{echo(said)}'.", path="upstream",
                                        remediation=f"Pass {found.url or found.upstream_id} (the post omnipost sent), or check the link.")
        return found, True, seen.dump()

    async def _claim_unknown(self, post_id: str, then: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """Take an `unknown` post for resolving (a conditional UPDATE: one resolver wins; a live lease is respected),
        run `then(session)` in the same transaction and commit.

        Raises:
            ValidationFailedError: the post is no longer unknown, or someone is resolving it right now."""
        now = self.clock.now()
        async with self.db.session() as s:
            taken = await s.exec(sa_update(Post).where(
                col(Post.id) == post_id, col(Post.status) == "unknown",
                (col(Post.lease_until).is_(None)) | (col(Post.lease_until) < now),
            ).values(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.lease_seconds), updated_at=now))
            if taken.rowcount != 1:
                await s.rollback()
                raise ValidationFailedError(f"Post {post_id} is being resolved or published right now.", path="postId",
                                            remediation="get_post shows its outcome.")
            if then is not None:
                await then(s)
            await s.commit()

    async def _resend(self, post: Post, record: dict[str, Any]) -> None:
        """`resend`: record the resolution and open the new attempt in one transaction, then publish through the fan-out."""
        opened: dict[str, Any] = {}

        async def begin(s: Any) -> None:
            count = len((await s.exec(select(Attempt.id).where(Attempt.post_id == post.id))).all())
            now = self.clock.now()
            s.add(Attempt(id=new_id("att"), post_id=post.id, number=count + 1, started_at=now, finished_at=now,
                          outcome="resolved_resend", will_retry=True, response_body=_clip(record)))
            row = (await s.exec(select(Post).where(col(Post.id) == post.id).execution_options(populate_existing=True))).one()
            row.error = None
            opened["post"] = row
            opened["attempts"] = self._begin_attempts(s, [row], {post.id: count + 1})
            opened["accounts"] = await self._accounts_of(s, [row])

        await self._claim_unknown(post.id, begin)
        # The user says it is not there: a piece an earlier try sent is sent again unless the platform shows it.
        await self._run_fan_out([opened["post"]], opened["accounts"], opened["attempts"], None, assume_absent=True)

    async def _own_post(self, scope: Reach | str, post_id: str) -> Post:
        """A post of the profile within reach (raises NotFoundError, the same for an unknown id and one out of reach)."""
        reach = as_reach(scope)
        async with self.db.session() as s:
            post = await s.get(Post, post_id)
            hidden = post is not None and await hides_batches(s, reach, [post.batch_id])
        if post is None or post.profile_id != reach.profile_id or hidden:
            raise NotFoundError(f"Post '{echo(post_id)}' was not found.", rule="postId", remediation="list_posts shows the profile's posts.")
        return post

    # ------------------------------------------------------------------ recovery

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
class _Result:
    """The outcome of one upstream try, before it is written."""

    post_id: str
    attempt_id: str | None
    published: Published | None
    error: AppError | None
    outcome: str  # the attempt's outcome
    status: str  # the post's new status
    will_retry: bool = False
    pieces: dict[str, Any] | None = None  # the ledger after the try, written with the result (None: left as it is)
    check_at: datetime | None = None  # processing: when a worker checks it again (the post's next_attempt_at)


class _ResultWriter:
    """Collects results and writes them in one transaction when the batch ends.

    Deferring is safe: the attempt rows were committed before any upstream call, so a crash
    before the write leaves posts in `publishing`, which recovery reconciles upstream.
    """

    def __init__(self, service: PublishService) -> None:
        self._service = service
        self._queue: list[_Result] = []
        self._lock = anyio.Lock()

    async def put(self, r: _Result) -> None:
        self._queue.append(r)

    async def drain(self) -> None:
        async with self._lock:
            batch, self._queue = self._queue, []
            if batch:
                await self._service._write_many(batch)


class _ReplayedError(AppError):
    """A stored error answer replayed for a repeated idempotency key."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__(stored.get("message", "replayed error"))
        self.stored = stored

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        return ErrorObject.model_validate(self.stored)


def _event_data(post: Post) -> dict[str, Any]:
    """The identifying part of every post.* webhook payload."""
    return {"postId": post.id, "batchId": post.batch_id, "accountId": post.account_id, "platform": post.platform}


def _whole(found: Published, job: PublishJob) -> bool:
    """Whether what `find` found holds every piece of the target: each thread part and the first comment."""
    return len(found.thread_ids) >= len(job.target.thread) and (not job.target.first_comment or bool(found.first_comment_ids))


def _last_segment(name: str) -> str:
    """The last path segment of a URL, at-uri or id (a record key, a post id), for matching one name against another."""
    return name.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _clip(body: Any) -> str | None:
    if body is None:
        return None
    import json

    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text[:MAX_BODY]


def _deep_error(t: ResolvedTarget, m: MediaRef, exc: AppError) -> ErrorObject:
    """A deep-check failure for one target, under the platform's own rule id where it has one."""
    rule = exc.rule or "media.url_unreachable"
    if rule == "media.url_unreachable" and (spec := spec_of(t.platform.value)) is not None and spec.media_reachable_rule:
        rule = spec.media_reachable_rule
    obj = exc.to_error_object()
    return obj.model_copy(update={"code": "preflight_failed" if rule.endswith("reachable") or rule.startswith("media.") else obj.code,
                                  "rule": rule, "path": f"{t.path}.media[{m.index}]"})
