"""Bulk: schedule_posts (issue 14), up to 100 independent scheduled posts in one call.

Every item is validated first, on its own and as schedule_post would validate it (schema, time, accounts, shallow
preflight, duplicates against stored posts and against the earlier items of the call); each error carries its path in
the call (`items[3].targets[0].text`). Then the valid items' media are stored (a deep-check failure fails that target
only, as for schedule_post) and every valid item is stored in ONE transaction, under the accounts' lock, where the
duplicates are decided again against what is committed. By default each item stands alone; `atomic` stores nothing
unless every item is valid (then the call is one error listing every item's); `dryRun` stores nothing.
"""

import dataclasses
from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from omnipost import caps
from omnipost.accounts import ProfileDirectory
from omnipost.auth import Reach
from omnipost.errors import AppError, ErrorObject, PreflightError, ValidationFailedError
from omnipost.idempotency import request_hash
from omnipost.outputs import BulkItemOut, BulkResult
from omnipost.preflight.engine import resolve
from omnipost.preflight.model import ResolvedTarget
from omnipost.publishing.common import _event_data, dump_target, text_hash
from omnipost.request import BulkItem, BulkRequest, PostRequest
from omnipost.store.db import new_id
from omnipost.store.models import Batch, Post
from omnipost.validation import Warning_, check_request, judge_target, parse_time


def at_item(item: int, error: ErrorObject) -> ErrorObject:
    """An item's error with every path (and a validation error's rule, which is its path) prefixed by items[i]."""
    prefix = f"items[{item}]"

    def under(path: str | None) -> str:
        if path in (None, "", "$"):
            return prefix
        assert path is not None
        return prefix + (path if path.startswith("[") else "." + path)

    path_like = error.code in ("validation_failed", "not_found")
    update: dict[str, Any] = {"path": under(error.path or (error.rule if path_like else None))}
    if path_like and error.rule:
        update["rule"] = under(error.rule)
    if error.details:
        update["details"] = [at_item(item, d) for d in error.details]
    return error.model_copy(update=update)


@dataclasses.dataclass
class _Item:
    """One item on its way through the call."""

    index: int
    req: PostRequest | None = None
    targets: list[ResolvedTarget] = dataclasses.field(default_factory=lambda: [])
    warnings: list[list[dict[str, Any]]] = dataclasses.field(default_factory=lambda: [])
    error: ErrorObject | None = None
    batch: Batch | None = None
    posts: list[Post] = dataclasses.field(default_factory=lambda: [])


class Bulk:
    """schedule_posts. Mixed into PublishService (service.py), whose fields and Intake helpers it uses."""

    async def schedule_many(self, reach: Reach, req: BulkRequest, claim_id: str | None = None) -> BulkResult:
        """Validate every item, then store the valid ones (all or none with `atomic`; none with `dryRun`).

        Raises:
            ValidationFailedError, PreflightError, NotFoundError: with `atomic`, when an item is invalid (details: every
            item's errors, at their paths).
        """
        from omnipost.app import validation_error

        directory = ProfileDirectory(self.accounts, self.db, reach.profile_id, test_mode=reach.test_mode,
                                     hosting=self.media.hosting if self.media is not None else None)
        items: list[_Item] = []
        parsed: list[tuple[_Item, BulkItem]] = []
        for i, raw in enumerate(req.items):
            item = _Item(i)
            items.append(item)
            if req.campaign is not None and isinstance(raw, dict) and "campaign" not in raw:
                raw = {**raw, "campaign": req.campaign}
            try:
                parsed.append((item, BulkItem.model_validate(raw)))
            except ValidationError as exc:
                item.error = at_item(i, validation_error(exc, ""))
        await directory.prime({t.accountId for _, b in parsed for t in b.targets if t.accountId})
        for item, body in parsed:
            try:
                item.req = body.as_schedule(reach.profile_id).as_post_request()
                check_request(item.req, self.clock)
                resolution = await resolve(item.req, directory, directory)
            except AppError as exc:
                item.error = at_item(item.index, exc.to_error_object())
                continue
            violations: list[ErrorObject] = []
            for t in resolution.targets:
                if t.account is None:
                    violations.append(ValidationFailedError("Scheduling needs an accountId on every target.",
                                                            path=f"{t.path}.accountId").to_error_object())
                    continue
                r = judge_target(t, resolution.early.get(t.index, []))
                violations += r.errors
                item.warnings.append([w.model_dump(exclude_none=True) for w in r.warnings])
            if violations:
                item.error = at_item(item.index, _aggregate(violations))
            else:
                item.targets = list(resolution.targets)
        await self._bulk_duplicates(items, None)
        invalid = [item for item in items if item.error is not None]
        if req.atomic and invalid:
            raise _BulkRefused(invalid, len(items))
        if req.dryRun:
            return _result(items, dry_run=True)
        for item in items:
            if item.error is None:
                await self._bulk_prepare(reach, item)
        async with self.db.session() as s:
            await caps.lock(s, sorted({t.account.id for item in items for t in item.targets if t.account is not None}))
            if await self._bulk_duplicates(items, s) and req.atomic:  # decided again against what is committed
                raise _BulkRefused([item for item in items if item.error is not None], len(items))
            stored = [item for item in items if item.error is None and item.batch is not None]
            s.add_all([item.batch for item in stored if item.batch is not None])
            await s.flush()  # batches before their posts (foreign key)
            s.add_all([p for item in stored for p in item.posts])
            await s.flush()
            events = [("post.queued", _event_data(p) | {"scheduledAt": p.next_attempt_at}) if p.status == "queued"
                      else ("post.rejected", _event_data(p) | {"error": p.error}) for item in stored for p in item.posts]
            if self.events is not None and events:
                await self.events.emit_many(reach.profile_id, events, session=s)
            result = _result(items, dry_run=False)
            if claim_id is not None:  # with the rows: a crash after this commit replays this answer (Intake._finish_claim)
                await self.idempotency.attach(claim_id, {"answer": result.model_dump(mode="json")}, session=s)
            await s.commit()
        from omnipost.scheduler import alive_workers, no_scheduler_warning

        if any(item.batch is not None for item in items) and not await alive_workers(self.db, self.clock.now(), self.scheduler_tick):
            result.warnings.append(no_scheduler_warning())
        return result

    async def _bulk_duplicates(self, items: list[_Item], s: Any) -> bool:
        """Mark items whose text went (or goes, in an earlier item of this call) to the same account within the window;
        with `s`, against what is committed, inside the storing transaction. Returns whether any item was marked."""
        live = [item for item in items if item.error is None and item.req is not None and not item.req.skipDuplicateCheck]
        if not live:
            return False
        flat: list[ResolvedTarget] = []
        paths: dict[int, str] = {}
        owner: dict[str, _Item] = {}
        for item in live:
            for t in item.targets:
                paths[len(flat)] = f"items[{item.index}].targets[{t.index}]"
                owner[paths[len(flat)]] = item
                flat.append(dataclasses.replace(t, index=len(flat)))
        if s is None:
            async with self.db.session() as own:
                found = await self._duplicates(own, flat, frozenset(), paths)
        else:
            found = await self._duplicates(s, flat, frozenset(), paths)
        marked = False
        errors: dict[int, list[ErrorObject]] = {}
        for error in found:
            item = owner[(error.path or "").removesuffix(".text")]
            errors.setdefault(item.index, []).append(error)
        seen: dict[tuple[str, str], int] = {}
        for item in live:  # within the call: a later item repeating an earlier one's text to the same account
            for t in item.targets:
                assert t.account is not None
                key = (t.account.id, text_hash(t.text))
                first = seen.setdefault(key, item.index)
                if first != item.index:
                    errors.setdefault(item.index, []).append(ErrorObject(
                        code="preflight_failed", rule="post.duplicate", path=f"items[{item.index}].targets[{t.index}].text",
                        message=f"items[{first}] already sends this text to account {t.account.id}.",
                        remediation="Change the text, or set skipDuplicateCheck: true on this item.", ruleUrl="omnipost://rules/post.duplicate"))
        for item in live:
            if item.index in errors:
                item.error, marked = _aggregate(errors[item.index]), True
                item.batch, item.posts = None, []
        return marked

    async def _bulk_prepare(self, reach: Reach, item: _Item) -> None:
        """The item's batch and posts, built (not stored): its media stored, links checked (deep checks: a failure
        fails that target only, as schedule_post's would)."""
        from omnipost.scheduler import local_time_warnings

        req = item.req
        assert req is not None and req.scheduledAt is not None
        now = self.clock.now()
        when = parse_time(req.scheduledAt, ZoneInfo(req.timezone) if req.timezone else timezone.utc)
        notes = [w.model_dump(exclude_none=True) for w in local_time_warnings(req.scheduledAt, req.timezone)]
        media_ids, errors = await self._materialise_media(reach, item.targets)
        for index, error in (await self._check_links(item.targets)).items():
            errors.setdefault(index, error)
        item.batch = Batch(id=new_id("bat"), profile_id=reach.profile_id, idempotency_key=None,
                           request_hash=request_hash("publish", req.model_dump(mode="json")), mode="scheduled",
                           status="queued", created_at=now, scheduled_at=when)
        for t, warnings in zip(item.targets, item.warnings):
            assert t.account is not None
            error = errors.get(t.index)
            item.posts.append(Post(
                id=new_id("post"), batch_id=item.batch.id, profile_id=reach.profile_id, account_id=t.account.id,
                position=t.index, platform=t.platform.value, status="rejected" if error else "queued", text=t.text,
                text_hash=text_hash(t.text), content=dump_target(t, media_ids.get(t.index, {})), warnings=warnings + notes,
                error=at_item(item.index, error).model_dump(exclude_none=True) if error else None, created_at=now,
                updated_at=now, next_attempt_at=None if error else when, campaign=req.campaign))


def _aggregate(errors: list[ErrorObject]) -> ErrorObject:
    """One item's errors as one: the error itself when alone, else preflight_failed with each in details."""
    if len(errors) == 1 and not errors[0].details:
        return errors[0]
    first = errors[0]
    return PreflightError(errors).to_error_object().model_copy(update={"path": first.path})


def _result(items: list[_Item], *, dry_run: bool) -> BulkResult:
    out = []
    for item in items:
        if item.error is not None:
            out.append(BulkItemOut(index=item.index, status="invalid", error=item.error))
        elif dry_run or item.batch is None:
            out.append(BulkItemOut(index=item.index, status="valid"))
        else:
            statuses = {p.status for p in item.posts}
            rejected = [ErrorObject.model_validate(p.error) for p in item.posts if p.error]  # a deep check failed
            out.append(BulkItemOut(index=item.index, status="queued" if statuses == {"queued"} else "partial_failed"
                                   if "queued" in statuses else "failed", batchId=item.batch.id,
                                   scheduledAt=item.batch.scheduled_at, postIds=[p.id for p in item.posts],
                                   error=_aggregate(rejected) if rejected else None,
                                   warnings=[Warning_.model_validate(w) for p in item.posts for w in p.warnings][:10]))
    ok = sum(o.status in ("queued", "valid") for o in out)
    status = ("valid" if ok == len(out) else "invalid") if dry_run else (
        "queued" if ok == len(out) else "failed" if ok == 0 else "partial_failed")
    return BulkResult(status=status, queued=0 if dry_run else ok, invalid=len(out) - ok, items=out)


class _BulkRefused(AppError):
    """atomic: some item is invalid, so nothing was stored; every item's error, at its path, in details."""

    def __init__(self, invalid: list[_Item], total: int) -> None:
        self.errors = [item.error for item in invalid if item.error is not None]
        first = self.errors[0]
        super().__init__(f"{len(invalid)} of {total} items are invalid; with atomic nothing was stored.",
                         rule=first.rule, remediation=f"Fix {first.path} ({first.message}) and the others in details, then "
                                                      "send the call again.")
        self.code = first.code

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        obj = super().to_error_object(request_id)
        return obj.model_copy(update={"path": self.errors[0].path, "details": self.errors})
