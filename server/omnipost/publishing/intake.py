"""Intake: a publish request from the tool call to stored posts (see Intake)."""

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from typing import Any

import anyio
from sqlalchemy import bindparam
from sqlmodel import col, select

from omnipost import caps
from omnipost.accounts import ProfileDirectory
from omnipost.auth import Reach
from omnipost.domain import OPTION_KEY
from omnipost.validation import TargetResult, Warning_, check_request, judge_target, rule_uri, violation_error
from omnipost.outputs import BatchResult
from omnipost.errors import (
    AppError,
    ErrorObject,
    NotFoundError,
    PreflightError,
    ValidationFailedError,
)
from omnipost.idempotency import request_hash
from omnipost.platforms.registry import spec_of
from omnipost.preflight.engine import resolve
from omnipost.preflight.model import MediaRef, ResolvedTarget, Violation
from omnipost.request import PostRequest
from omnipost.store.db import new_id
from omnipost.store.models import Account, Batch, Post
from omnipost.publishing.common import Progress, text_hash, dump_target, outcome, _event_data
from omnipost.publishing.dispatch import WholeBatch

DUPLICATE_WINDOW = timedelta(hours=24)
LIVE_STATUSES = ("validated", "publishing", "processing", "published", "queued", "unknown")
# Built once (run by every publish; building it costs more than running it). Newest first.
_EARLIER = select(Post).where(col(Post.account_id).in_(bindparam("accounts", expanding=True)),
                              col(Post.text_hash).in_(bindparam("hashes", expanding=True)), col(Post.status).in_(LIVE_STATUSES),
                              Post.created_at >= bindparam("since")).order_by(col(Post.created_at).desc())


class Intake:
    """Taking a request in: schema, shallow preflight, idempotency, duplicates, deep checks (media, links), daily
    caps, storing the batch with its attempts opened, then handing the immediate targets to the fan-out
    (Dispatch). Mixed into PublishService (service.py), whose fields it uses."""

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
            answer = (await self.idempotency.progress(record_id)).get("answer")  # schedule_posts': attached with its rows
            if answer is not None:
                await self.idempotency.complete(record_id, answer)
            else:
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
        directory = ProfileDirectory(self.accounts, self.db, profile_id, test_mode=test_mode,
                                     hosting=self.media.hosting if self.media is not None else None)
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
        # post.duplicate is decided under the lock below. Checked here too when it is reported with other violations,
        # or when uploads and link checks come first (a duplicate is spared them); a plain post is checked once.
        if not req.skipDuplicateCheck and (violations or _fetches_first(resolution.targets)):
            async with self.db.session() as s:
                violations += await self._duplicates(s, resolution.targets)
        if violations:
            raise PreflightError(violations)
        now = self.clock.now()
        when, schedule_warnings = None, []
        if mode == "scheduled":
            from omnipost.validation import parse_time
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
        deep_warnings: dict[int, list[dict[str, Any]]] = {}
        if mode == "immediate":  # a daily allowance is today's: a scheduled or draft post is judged when it is sent
            checked, deep_warnings = await self._check_with_accounts(directory, 
                profile_id, [t for t in resolution.targets if t.index not in media_errors], media_ids)
            for index, error in checked.items():
                media_errors.setdefault(index, error)
        posts: list[Post] = []
        for t, r in zip(resolution.targets, judged):
            assert t.account is not None
            error = media_errors.get(t.index)
            posts.append(Post(
                id=new_id("post"), batch_id=batch.id, profile_id=profile_id, account_id=t.account.id, position=t.index,
                platform=t.platform.value, status="draft" if mode == "draft" else ("rejected" if error else first_status),
                text=t.text, text_hash=text_hash(t.text), content=dump_target(t, media_ids.get(t.index, {})),
                warnings=[w.model_dump(exclude_none=True) for w in r.warnings] + deep_warnings.get(t.index, []) + schedule_warnings,
                error=error.model_dump(exclude_none=True) if error else None, created_at=now, updated_at=now,
                next_attempt_at=when if mode == "scheduled" and not error else None, campaign=req.campaign,
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
            live = [p for p in posts if p.status == "validated"] if mode == "immediate" else []
            events: list[tuple[str, dict[str, Any]]] = []
            for p in posts:  # the events commit with the rows they describe, so none is lost or invented
                if p.status == "queued":
                    events.append(("post.queued", _event_data(p) | {"scheduledAt": p.next_attempt_at}))
                elif p.status == "validated":
                    events.append(("post.validated", _event_data(p) | {"warnings": p.warnings}))
                elif p.status == "rejected":
                    events.append(("post.rejected", _event_data(p) | {"error": p.error}))
            # An immediate publish opens its attempts in this same transaction: one commit before the
            # first upstream call, and no window in which a post is stored but not yet being published.
            # Each post is inserted as publishing (not inserted, then updated to it), before its attempt (foreign key).
            s.add_all(self._mark_publishing(live))
            s.add_all(posts)
            await s.flush()
            attempt_of = self._open_attempts(s, live, {})
            endpoints = await self.events.endpoints_of(s, profile_id) if self.events is not None else ()
            if self.events is not None and events:
                await self.events.emit_many(profile_id, events, session=s, endpoints=endpoints)
            accounts = {p.account_id: row for p in live if (row := directory.row(p.account_id)) is not None}
            if len(accounts) < len({p.account_id for p in live}):
                accounts = await self._accounts_of(s, live)
            if claim_id is not None:  # with the batch: a key is never freed for a request whose batch was stored
                await self.idempotency.attach(claim_id, {"batchId": batch.id}, session=s)
            await s.commit()
        if not live:
            return await self.batch_result(batch.id)
        # The answer comes from the rows written, not from reading them back. The outcome events go to the endpoints
        # there were when the batch was stored: with none, the result is written without looking for them again.
        whole = WholeBatch(batch, posts, notify=bool(endpoints))
        await self._run_fan_out(live, accounts, attempt_of, progress, batch=whole)
        return whole.result()

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

    async def _duplicates(self, s: Any, targets: Sequence[ResolvedTarget], exclude: frozenset[str] = frozenset(),
                          paths: dict[int, str] | None = None) -> list[ErrorObject]:
        """post.duplicate violations: the targets whose text went to their account within the window (stored posts only;
        `exclude`: posts that are not earlier ones, the ones being edited). `paths`: a target's path when it is not
        targets[index] (a bulk item's, an edited batch's)."""
        since = self.clock.now() - DUPLICATE_WINDOW
        found: list[ErrorObject] = []
        wanted = {(t.account.id, text_hash(t.text)) for t in targets if t.account is not None}
        rows = (await s.exec(_EARLIER, params={  # one query for the whole batch, matched in memory
            "accounts": sorted({a for a, _ in wanted}), "hashes": sorted({h for _, h in wanted}), "since": since})).all()
        latest: dict[tuple[str, str], Post] = {}
        for row in rows:
            if row.id not in exclude:
                latest.setdefault((row.account_id, row.text_hash), row)
        if latest:
            for t in targets:
                assert t.account is not None
                earlier = latest.get((t.account.id, text_hash(t.text)))
                if earlier is not None:
                    found.append(violation_error(Violation(
                        "post.duplicate", f"{(paths or {}).get(t.index, f'targets[{t.index}]')}.text",
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
        wanted = {(t.index, option, rule): url for t in targets for option, rule, url in _checked_links(t)}  # -> url
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

    async def _check_with_accounts(self, directory: ProfileDirectory, profile_id: str, targets: Sequence[ResolvedTarget],
                                   media_ids: dict[int, dict[int, str]]
                                   ) -> tuple[dict[int, ErrorObject], dict[int, list[dict[str, Any]]]]:
        """Deep checks an adapter makes with the account itself (platforms.base.DeepChecking: Bluesky's daily video
        quota), concurrently, once the media are stored: an error fails that target only, a warning (the check could
        not be made) is kept on the post. Targets of adapters without such checks cost nothing; the account rows are
        the ones `directory` loaded for preflight (no read per target)."""
        from omnipost.platforms.base import DeepChecking, DeepFinding

        wanted = [(t, adapter) for t in targets if t.account is not None and t.account.health == "active"
                  and isinstance(adapter := self.adapters.get(t.account.adapter or t.account.platform.value), DeepChecking)
                  and adapter.deep_checks(t)]
        if not wanted:
            return {}, {}
        found: dict[int, list[DeepFinding]] = {}

        async def one(t: ResolvedTarget, adapter: DeepChecking) -> None:
            assert t.account is not None
            facts = {m.index: m.facts for m in t.media if m.facts is not None}
            for m in t.media:
                if m.facts is None and self.media is not None and (mid := media_ids.get(t.index, {}).get(m.index)):
                    if (got := await self.media.facts_of(profile_id, mid)) is not None:
                        facts[m.index] = got
            row = directory.row(t.account.id)
            if row is None:
                async with self.db.session() as s:
                    row = await s.get(Account, t.account.id)
            if row is None:
                return
            found[t.index] = await adapter.deep_check(self.accounts.context(row), t, facts)

        async with anyio.create_task_group() as tg:
            for t, adapter in wanted:
                tg.start_soon(one, t, adapter)
        errors: dict[int, ErrorObject] = {}
        warnings: dict[int, list[dict[str, Any]]] = {}
        for index, findings in found.items():
            for f in findings:
                if f.severity == "warning":
                    warnings.setdefault(index, []).append(Warning_(code=f.rule, message=f.message, rule=f.rule, path=f.path,
                                                                   remediation=f.remediation).model_dump(exclude_none=True))
                elif index not in errors:
                    errors[index] = violation_error(Violation(f.rule, f.path, f.message, f.remediation, f.actual, f.limit)).model_copy(
                        update={"platformResponse": f.platform_response, "retryable": f.retryable, "ruleUrl": rule_uri(f.rule)})
        return errors, warnings

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


def _checked_links(t: ResolvedTarget) -> list[tuple[str, str, str]]:
    """(option, rule, url) of each link the target's platform fetches itself (its spec's checked_links) that it sets."""
    spec = spec_of(t.platform.value)
    return [(option, rule, url) for option, rule in (spec.checked_links if spec else ()) if (url := t.options.get(option))]


def _fetches_first(targets: Sequence[ResolvedTarget]) -> bool:
    """Whether storing these targets first uploads or fetches something: media, or a link the platform fetches."""
    return any(t.media or _checked_links(t) for t in targets)


class _ReplayedError(AppError):
    """A stored error answer replayed for a repeated idempotency key."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__(stored.get("message", "replayed error"))
        self.stored = stored

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        return ErrorObject.model_validate(self.stored)


def _deep_error(t: ResolvedTarget, m: MediaRef, exc: AppError) -> ErrorObject:
    """A deep-check failure for one target, under the platform's own rule id where it has one."""
    rule = exc.rule or "media.url_unreachable"
    if rule == "media.url_unreachable" and (spec := spec_of(t.platform.value)) is not None and spec.media_reachable_rule:
        rule = spec.media_reachable_rule
    obj = exc.to_error_object()
    return obj.model_copy(update={"code": "preflight_failed" if rule.endswith("reachable") or rule.startswith("media.") else obj.code,
                                  "rule": rule, "path": f"{t.path}.media[{m.index}]"})
