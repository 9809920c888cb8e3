"""Edits: update_post (issue 14), changing a draft or queued post that no worker has claimed.

An edit is all or nothing, and race-safe against the scheduler:
- the new content is resolved and checked exactly as publish/validate check a request (shallow preflight, media and
  link deep checks, duplicates of a changed text); any violation refuses the whole edit and nothing changes;
- it is written by conditional UPDATEs (`status` and `updated_at` as read, no live lease) in one transaction taken
  under the accounts' lock; a worker's claim sets the lease, so a post claimed before the write commits is not changed
  (post.already_publishing) and a claim after it reads the new content (the worker reads the post after its claim
  commits). Either the edit happens, or the post is published as it was: never a mix.
- each edited post gets a revision row (the fields changed, their values before) and a post.updated event, in the
  same transaction as the change.
"""

from datetime import timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func as sa_func
from sqlalchemy import or_
from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost import caps
from omnipost.accounts import ProfileDirectory
from omnipost.auth import Reach, as_reach
from omnipost.domain import OPTION_KEY, Platform
from omnipost.errors import ConflictError, ErrorObject, PreflightError, ValidationFailedError, echo
from omnipost.outputs import BatchResult
from omnipost.preflight.engine import resolve
from omnipost.publishing.common import _event_data, dump_target, text_hash
from omnipost.request import OPTION_OBJECTS, PostRequest, Target
from omnipost.store.db import new_id
from omnipost.store.models import Batch, Post, PostRevision
from omnipost.validation import judge_target

EDITABLE = ("draft", "queued")
CONTENT = ("text", "media", "firstComment", "thread", "title", "visibility")
_CLEARED: dict[str, Any] = {"media": [], "thread": [], "firstComment": None, "title": None, "visibility": None}


class _Changed(Exception):
    """The post changed between reading it and writing the edit (another edit, a reschedule): read it again."""


def already_publishing(post_id: str) -> ValidationFailedError:
    """The refusal for a post a worker has claimed (the same rule cancel_post and reschedule_post answer)."""
    return ValidationFailedError(f"{post_id} is already being published and can no longer be edited.",
                                 path="post.already_publishing",
                                 remediation="Wait for its outcome with get_post; it was not changed.")


def _rebase(error: ErrorObject, paths: dict[int, str]) -> ErrorObject:
    """A violation of the rebuilt request's target k, at the path the post has (its place in its batch)."""
    path = error.path or ""
    for k, real in paths.items():
        prefix = f"targets[{k}]"
        if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
            return error.model_copy(update={"path": real + path[len(prefix):]})
    return error


class Edits:
    """update_post. Mixed into PublishService (service.py), whose fields and Intake helpers it uses."""

    async def update(self, scope: Reach | str, req: Any) -> BatchResult:
        """Apply an UpdateRequest to a post, or to every draft and queued post of a batch; returns the batch.

        Raises:
            NotFoundError; ValidationFailedError (nothing to change, not editable, post.already_publishing, a bad
            scheduledAt); PreflightError (the new content breaks a rule: nothing changed); ConflictError.
        """
        reach = as_reach(scope)
        for _ in range(3):
            try:
                return await self._update_once(reach, req)
            except _Changed:
                continue
        raise ConflictError("The post kept changing while it was being edited; nothing was changed.", rule="post.changed",
                            remediation="Send the edit again.")

    async def _update_once(self, reach: Reach, req: Any) -> BatchResult:
        from omnipost.scheduler import _targets, local_time_warnings
        from omnipost.validation import check_request, parse_time

        given = set(req.model_fields_set) - {"id", "idempotencyKey", "profileId", "skipDuplicateCheck", "timezone"}
        if not given:
            raise ValidationFailedError("update_post needs at least one field to change.", path="id",
                                        remediation="Give the fields to change: text, media, scheduledAt, campaign, ...")
        if "text" in given and req.text is None:
            raise ValidationFailedError("A post's text cannot be removed.", path="text", remediation="Give the new text.")
        when, notes = None, []
        if req.scheduledAt is not None:
            probe = PostRequest.model_validate({"text": "-", "targets": [{"platform": "bluesky"}],
                                                "scheduledAt": req.scheduledAt, "timezone": req.timezone})
            check_request(probe, self.clock)  # schedule_post's time rules: parseable, known zone, 1 s ahead
            when = parse_time(req.scheduledAt, ZoneInfo(req.timezone) if req.timezone else timezone.utc)
            notes = [w.model_dump(exclude_none=True) for w in local_time_warnings(req.scheduledAt, req.timezone)]
        elif "scheduledAt" in given:
            raise ValidationFailedError("scheduledAt cannot be removed.", path="scheduledAt",
                                        remediation="cancel_post stops a queued post; give a time to move it.")

        batch_id, found = await _targets(self, reach, req.id)  # type: ignore[arg-type]
        now = self.clock.now()
        posts = [p for p in found if p.status in EDITABLE]
        if any(p.lease_until is not None and p.lease_until >= now for p in posts) or (
                not posts and any(p.status in ("validated", "publishing", "processing") for p in found)):
            raise already_publishing(req.id)
        if not posts:
            status = "/".join(sorted({p.status for p in found}))
            raise ValidationFailedError(f"A {status} post cannot be edited.", path="id",
                                        remediation="Only drafts and queued posts can be edited; publish a new post instead.")
        options_given = [k for k in OPTION_OBJECTS if k in given]
        platforms = {OPTION_KEY[Platform(p.content["platform"])] for p in posts}
        for key in options_given:
            if key not in platforms:
                raise ValidationFailedError(f"{echo(req.id)} has no {key} post to apply {key} options to.", path=key,
                                            remediation="Give the options object of the post's own platform.")

        content_changed = bool(given & set(CONTENT)) or bool(options_given)
        new_content: dict[str, dict[str, Any]] = {p.id: dict(p.content) for p in posts}
        warnings: dict[str, list[dict[str, Any]]] = {p.id: list(p.warnings or []) for p in posts}
        changed_text: list[Any] = []
        paths: dict[int, str] = {}
        if content_changed:
            targets = [self._edited_target(p, req, given) for p in posts]
            edited = PostRequest.model_construct(targets=targets)
            directory = ProfileDirectory(self.accounts, self.db, reach.profile_id, test_mode=reach.test_mode,
                                         hosting=self.media.hosting if self.media is not None else None)
            await directory.prime({p.account_id for p in posts})
            resolution = await resolve(edited, directory, directory)
            paths = {k: f"targets[{p.position}]" for k, p in enumerate(posts)}
            violations: list[ErrorObject] = []
            judged = []
            for t in resolution.targets:
                r = judge_target(t, resolution.early.get(t.index, []))
                judged.append(r)
                violations += [_rebase(e, paths) for e in r.errors]
            changed_text = [t for t, p in zip(resolution.targets, posts) if text_hash(t.text) != p.text_hash]
            if not req.skipDuplicateCheck and changed_text:
                async with self.db.session() as s:
                    violations += await self._duplicates(s, changed_text, frozenset(p.id for p in posts), paths)
            if violations:
                raise PreflightError(violations)
            media_ids, media_errors = await self._materialise_media(reach, resolution.targets)
            for index, error in (await self._check_links(resolution.targets)).items():
                media_errors.setdefault(index, error)
            if media_errors:
                raise PreflightError([_rebase(e, paths) for _, e in sorted(media_errors.items())])
            for t, r, p in zip(resolution.targets, judged, posts):
                new_content[p.id] = dump_target(t, media_ids.get(t.index, {}))
                kept = [w for w in warnings[p.id] if str(w.get("code", "")).startswith(("schedule.", "scheduler.", caps.WARNING))]
                warnings[p.id] = [w.model_dump(exclude_none=True) for w in r.warnings] + kept
        if notes or when is not None:
            for p in posts:
                warnings[p.id] = [w for w in warnings[p.id] if not str(w.get("code", "")).startswith("schedule.dst_")] + notes

        lease_free = or_(col(Post.lease_until).is_(None), col(Post.lease_until) < now)
        events: list[tuple[str, dict[str, Any]]] = []
        async with self.db.session() as s:
            await caps.lock(s, sorted({p.account_id for p in posts}))  # SQLite: the write lock, first
            if not req.skipDuplicateCheck and changed_text:  # again, against what is committed now
                if found_now := await self._duplicates(s, changed_text, frozenset(p.id for p in posts), paths):
                    raise PreflightError(found_now)
            numbers = dict((await s.exec(select(PostRevision.post_id, sa_func.count()).where(
                col(PostRevision.post_id).in_([p.id for p in posts])).group_by(PostRevision.post_id))).all())
            for p in posts:
                content = new_content[p.id]
                values: dict[str, Any] = {"content": content, "text": content["text"], "text_hash": text_hash(content["text"]),
                                          "warnings": warnings[p.id], "updated_at": now}
                fields = sorted(f for f in given if f in CONTENT or f in options_given)
                before: dict[str, Any] = {}
                for f in fields:
                    before[f] = p.content.get("options") if f in OPTION_OBJECTS else p.content.get(f)
                if when is not None:
                    values["next_attempt_at"] = when
                    values["status"] = "queued"
                    fields.append("scheduledAt")
                    before["scheduledAt"] = p.next_attempt_at.isoformat() if p.next_attempt_at else None
                if "campaign" in given:
                    values["campaign"] = req.campaign
                    fields.append("campaign")
                    before["campaign"] = p.campaign
                result = await s.exec(sa_update(Post).where(
                    col(Post.id) == p.id, col(Post.status) == p.status, col(Post.updated_at) == p.updated_at, lease_free,
                ).values(**values))
                if result.rowcount != 1:
                    await s.rollback()
                    current = await s.get(Post, p.id)
                    if current is None or current.status not in EDITABLE or (
                            current.lease_until is not None and current.lease_until >= now):
                        raise already_publishing(p.id)
                    raise _Changed()
                number = int(numbers.get(p.id, 0)) + 1
                s.add(PostRevision(id=new_id("rev"), post_id=p.id, number=number, fields=fields, before=before, created_at=now))
                events.append(("post.updated", _event_data(p) | {"revision": number, "fields": fields}))
                if p.status == "draft" and when is not None:
                    events.append(("post.queued", _event_data(p) | {"scheduledAt": when}))
            if when is not None:
                batch = await s.get(Batch, batch_id)
                assert batch is not None
                await s.flush()
                remaining = (await s.exec(select(Post.next_attempt_at).where(Post.batch_id == batch_id,
                                                                            Post.status == "queued"))).all()
                batch.scheduled_at = min([t for t in remaining if t is not None], default=when)
                if batch.mode == "draft":  # a draft given a time is queued: its batch is a scheduled one now
                    batch.mode = "scheduled"
                s.add(batch)
            if self.events is not None:
                await self.events.emit_many(reach.profile_id, events, session=s)
            await s.commit()
        return await self.batch_result(batch_id)

    @staticmethod
    def _edited_target(post: Post, req: Any, given: set[str]) -> Any:
        """The post as a request target (its stored, resolved content) with the edit's fields applied."""
        content = post.content
        platform = Platform(content["platform"])
        key = OPTION_KEY[platform]
        media = [{k: v for k, v in (("mediaId", m.get("mediaId")), ("url", None if m.get("mediaId") else m.get("url")),
                                    ("altText", m.get("altText"))) if v is not None} for m in content.get("media", [])]
        target: dict[str, Any] = {"accountId": post.account_id, "text": content.get("text", ""), "media": media,
                                  "firstComment": content.get("firstComment"), "thread": list(content.get("thread") or []),
                                  "title": content.get("title"), "visibility": content.get("visibility")}
        options = dict(content.get("options") or {})
        for name in CONTENT:
            if name in given:
                value = getattr(req, name)
                if value is None:
                    target[name] = _CLEARED[name]
                elif name == "media":
                    target[name] = [m.model_dump(exclude_none=True) for m in value]
                else:
                    target[name] = value
        if key in given:
            patch = getattr(req, key)
            if patch is None:
                options = {}
            else:
                for k, v in patch.model_dump(exclude_unset=True).items():
                    if v is None:
                        options.pop(k, None)
                    else:
                        options[k] = v
        if options:
            target[key] = options
        return Target.model_validate({k: v for k, v in target.items() if v is not None})
