"""Resolving targets whose outcome is unknown (see Unknowns)."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import update as sa_update
from sqlmodel import col, select

from omnipost.auth import Reach
from omnipost.validation import Warning_
from omnipost.outputs import TargetOutcome
from omnipost.errors import (
    NotFoundError,
    PlatformError,
    UnknownOutcomeError,
    ValidationFailedError,
    echo,
)
from omnipost.platforms.base import Published, probe
from omnipost.platforms.pieces import DONE, MAIN, Piece, load as load_pieces
from omnipost.preflight.engine import resolve
from omnipost.store.db import new_id
from omnipost.store.models import Account, Attempt, Post
from omnipost.publishing.common import outcome, Result, _whole, _clip

def not_retried_warning(post: Post) -> Warning_:
    """What retry_post says about a target whose outcome is unknown: it was left alone, why, and the way out."""
    return Warning_(
        code="retry.outcome_unknown", rule="retry.outcome_unknown",
        message=f"Post {post.id} was not retried: its outcome is unknown (the request reached {post.platform} and no "
                f"definite answer came back), so sending it again blindly could publish it twice.",
        remediation=f"Check the account on the platform, then call resolve_post with postId {post.id}: resolution "
                    f"'published' with its URL or id if it is there, or 'resend' if it is not.")


class Unknowns:
    """A way out of `unknown` (resolve_post): the user says the post is there (checked upstream where the
    platform can tell) or asks to send it again. Mixed into PublishService (service.py)."""

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
        await self._write(Result(post_id, None, published, None, "resolved_published" if verified else "resolved_unverified",
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


def _last_segment(name: str) -> str:
    """The last path segment of a URL, at-uri or id (a record key, a post id), for matching one name against another."""
    return name.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
