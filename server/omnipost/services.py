"""The service boundary: every operation both surfaces offer, as (caller, typed request) -> output model.

The MCP tools (tools/) and the REST routes (rest/) only translate their transport: they find the caller (the MCP
SDK's access token, or the REST request's bearer key), parse the arguments into the request models of request.py,
call one method here and render its answer or its AppError. Everything else lives here, once:

- admission: the caller's per-key rate limit (`admit`), taken once per tool call or REST request;
- reach: the profile a call acts on within the caller's scope (`reach`, `profile`);
- idempotency for the writes that are not publishes (`idempotent`): claimed under the *operation* name (posts.cancel,
  drafts.publish, ...), never a tool or route name, so one key is shared by publish_post and POST /v1/posts;
- publish_post's dry run, and the publish/schedule pipeline (PublishService, whose own claim uses the same names).

What stays at a surface is what only that transport can do: the MCP elicitation that asks the user to confirm a
publish (REST has no back channel: the HTTP request itself is the consent) and MCP progress notifications.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel

from omnipost.accounts_service import AccountServices
from omnipost.auth import Caller, Reach, as_reach
from omnipost.errors import ValidationFailedError
from omnipost.outputs import BatchResult, BulkResult, MediaOut, MediaPage, PostDetail, PostPage, TargetOutcome
from omnipost.request import BulkRequest, PostRequest, ScheduleRequest, ValidateRequest

if TYPE_CHECKING:
    from omnipost.ratelimit import RateLimiter
    from omnipost.runtime import Runtime
    from omnipost.store.models import Profile
    from omnipost.validation import ValidateResult

Progress = Callable[[int, int, str], Awaitable[None]]

# The idempotency operation of each write: the request hash and the stored claim name the operation, so the same key
# and body through MCP or REST meet the same claim. publish_post and schedule_post are one operation (posts.create):
# the same scheduled post sent through either replays.
CREATE, UPDATE, BULK, CANCEL, DELETE, RESOLVE, RETRY, PUBLISH_DRAFT = (
    "posts.create", "posts.update", "posts.bulk", "posts.cancel", "posts.delete", "posts.resolve", "posts.retry",
    "drafts.publish")
UPLOAD = "media.upload"


async def idempotent(rt: "Runtime", scope: Reach | str, operation: str, key: str | None, body: dict[str, Any],
                     run: Callable[..., Awaitable[BaseModel]], model: type[BaseModel], *, mark_replay: bool = False,
                     pass_claim: bool = False) -> Any:
    """Run a write once per (profile, key): replay the stored answer for a repeat with the same body (with
    `mark_replay`, its `replay` field set). A test key's idempotency keys are its own (Reach.idempotency_key): it
    never gets a live key's answer. `pass_claim`: `run` gets the claim's id (None without a key), to attach its answer
    to the claim in the transaction that stores what it wrote (Idempotency.attach {"answer": ...}): a request that
    then fails, or a crash (recovery), completes the claim with that answer instead of freeing the key."""
    from omnipost.idempotency import Idempotency, request_hash

    if key is None:
        return await (run(None) if pass_claim else run())
    assert rt.db is not None
    reach = as_reach(scope)
    idem = Idempotency(rt.db, rt.clock)
    claim = await idem.claim(reach.profile_id, reach.idempotency_key(key), operation, request_hash(operation, body))
    if claim.replay is not None:
        return model.model_validate(claim.replay | ({"replay": True} if mark_replay else {}))
    assert claim.record_id is not None
    try:
        result = await (run(claim.record_id) if pass_claim else run())
        await idem.complete(claim.record_id, result.model_dump(mode="json"))
    except BaseException:  # a refusal, a bug (internal_error) or a cancellation: never leave the key "still running"
        with anyio.CancelScope(shield=True):
            answer = (await idem.progress(claim.record_id)).get("answer") if pass_claim else None
            if answer is not None:  # what it wrote is stored: a retry replays it, never writes it again
                await idem.complete(claim.record_id, answer)
            else:
                await idem.release(claim.record_id)
        raise
    return result


def _one_of(id: str | None, campaign: str | None) -> None:
    if (id is None) == (campaign is None):
        raise ValidationFailedError("Give id or campaign, not both.", path="id",
                                    remediation="Name a post or batch in id, or a campaign in campaign.")


@dataclass
class Services(AccountServices):
    """The operations of omnipost's posts, drafts, scheduling, accounts and profiles, for any surface. Built once by
    build_server()."""

    rt: "Runtime"
    limiter: "RateLimiter | None" = None

    # ---- admission and reach -------------------------------------------------------------------------------

    def admit(self, caller: Caller) -> None:
        """Take one unit of the caller's per-key rate limit (API-key callers only; stdio is the local user).

        Raises:
            RateLimitedError: the key's bucket is empty (retry_after says when to come back).
        """
        if caller.key_id is not None and self.limiter is not None:
            self.limiter.check(caller.key_id)

    async def profile(self, caller: Caller, requested: str | None) -> "Profile":
        """The profile a call acts on, within the caller's reach (waits until the server is open).

        Raises:
            NotFoundError, UnauthorizedError: see Accounts.resolve_profile.
        """
        await self.rt.wait_ready()
        return await self.rt.accounts.resolve_profile(requested, bound=caller.profile_id)

    async def reach(self, caller: Caller, requested: str | None) -> Reach:
        """What a call may touch: the profile it acts on and, for an op_test_ key, only its test side (auth.Reach)."""
        profile = await self.profile(caller, requested)
        return Reach(profile.id, test_mode=caller.test_mode)

    # ---- posts ----------------------------------------------------------------------------------------------

    async def validate(self, caller: Caller, request: ValidateRequest) -> "ValidateResult":
        """validate_post / POST /v1/posts/validate: every rule of every target; nothing is stored."""
        from omnipost.validation import validate_request

        reach = await self.reach(caller, request.profileId)
        directory = self._directory(reach)
        return await validate_request(request.as_post_request(), clock=self.rt.clock,
                                      accounts=self.rt.extra.get("accounts", directory), media=self.rt.extra.get("media", directory))

    async def publish(self, caller: Caller, request: PostRequest, *, progress: Progress | None = None) -> BatchResult:
        """publish_post / POST /v1/posts: publish now, schedule, store a draft, or (dryRun) only check.

        Raises:
            ValidationFailedError, NotFoundError, PreflightError, ConflictError: the request as a whole is refused.
        """
        reach = await self.reach(caller, request.profileId)
        if request.dryRun:
            from omnipost.validation import validate_request

            directory = self._directory(reach)
            validation = await validate_request(request, clock=self.rt.clock, accounts=directory, media=directory)
            return BatchResult(id="", status="dry_run", mode="dry_run", createdAt=self.rt.clock.now(), results=[],
                               validation=validation)
        return await self.rt.publisher.publish(request, request.model_dump(mode="json", exclude_none=True), tool=CREATE,
                                               profile_id=reach.profile_id, test_mode=reach.test_mode, progress=progress)

    async def schedule(self, caller: Caller, request: ScheduleRequest) -> BatchResult:
        """schedule_post: publish() with scheduledAt required (the same operation, so the same key replays)."""
        reach = await self.reach(caller, request.profileId)
        return await self.rt.publisher.publish(request.as_post_request(), request.model_dump(mode="json", exclude_none=True),
                                               tool=CREATE, profile_id=reach.profile_id, test_mode=reach.test_mode)

    async def update(self, caller: Caller, request: Any) -> BatchResult:
        """update_post / PATCH /v1/posts/{id}: edit a draft or queued post (request: request.UpdateRequest)."""
        reach = await self.reach(caller, request.profileId)
        body = request.model_dump(mode="json", exclude_unset=True)
        return await idempotent(self.rt, reach, UPDATE, request.idempotencyKey, body,
                                lambda: self.rt.publisher.update(reach, request), BatchResult, mark_replay=True)

    async def schedule_many(self, caller: Caller, request: BulkRequest) -> BulkResult:
        """schedule_posts / POST /v1/posts/bulk."""
        reach = await self.reach(caller, request.profileId)
        body = request.model_dump(mode="json", exclude_none=True)
        return await idempotent(self.rt, reach, BULK, request.idempotencyKey, body,
                                lambda claim: self.rt.publisher.schedule_many(reach, request, claim_id=claim), BulkResult,
                                mark_replay=True, pass_claim=True)

    async def publish_draft(self, caller: Caller, id: str, *, profile_id: str | None = None, key: str | None = None,
                            progress: Progress | None = None) -> BatchResult:
        """publish_draft / POST /v1/drafts/{id}/publish."""
        reach = await self.reach(caller, profile_id)
        return await idempotent(self.rt, reach, PUBLISH_DRAFT, key, {"id": id},
                                lambda: self.rt.publisher.publish_draft(reach, id, progress), BatchResult)

    async def resolve(self, caller: Caller, post_id: str, resolution: Literal["published", "resend"], upstream: str | None, *,
                      profile_id: str | None = None, key: str | None = None) -> TargetOutcome:
        """resolve_post / POST /v1/posts/{id}/resolve: settle an unknown outcome."""
        reach = await self.reach(caller, profile_id)
        by = f"key {caller.key_id}" if caller.key_id else "the local user"
        body = {"postId": post_id, "resolution": resolution, "upstream": upstream}
        return await idempotent(self.rt, reach, RESOLVE, key, body,
                                lambda: self.rt.publisher.resolve(reach, post_id, resolution, upstream, by=by), TargetOutcome)

    async def get_post(self, caller: Caller, post_id: str, *, profile_id: str | None = None) -> PostDetail:
        """get_post / GET /v1/posts/{id}: one post with its attempts; another profile's is not_found."""
        reach = await self.reach(caller, profile_id)
        return await self.rt.publisher.get_post(reach, post_id)

    async def list_posts(self, caller: Caller, *, profile_id: str | None = None, platform: str | None = None,
                         status: str | None = None, error_code: str | None = None, after: datetime | None = None,
                         before: datetime | None = None, cursor: str | None = None, limit: int = 50,
                         campaign: str | None = None) -> PostPage:
        """list_posts / GET /v1/posts: newest first, filtered, cursor-paginated."""
        reach = await self.reach(caller, profile_id)
        return await self.rt.publisher.list_posts(reach, platform=platform, status=status, error_code=error_code, after=after,
                                                  before=before, cursor=cursor, limit=limit, campaign=campaign)

    async def cancel(self, caller: Caller, id: str | None = None, *, campaign: str | None = None,
                     profile_id: str | None = None, key: str | None = None) -> BatchResult:
        """cancel_post / POST /v1/posts/{id}/cancel, POST /v1/campaigns/{name}/cancel."""
        reach = await self.reach(caller, profile_id)
        _one_of(id, campaign)
        if campaign is not None:
            return await idempotent(self.rt, reach, CANCEL, key, {"campaign": campaign},
                                    lambda: self.rt.publisher.cancel_campaign(reach, campaign), BatchResult)
        post_id = id
        assert post_id is not None
        return await idempotent(self.rt, reach, CANCEL, key, {"id": post_id},
                                lambda: self.rt.publisher.cancel(reach, post_id), BatchResult)

    async def delete(self, caller: Caller, post_id: str, *, profile_id: str | None = None, key: str | None = None) -> TargetOutcome:
        """delete_post / DELETE /v1/posts/{id}: delete a published post upstream."""
        reach = await self.reach(caller, profile_id)
        return await idempotent(self.rt, reach, DELETE, key, {"postId": post_id},
                                lambda: self.rt.publisher.delete(reach, post_id), TargetOutcome)

    async def reschedule(self, caller: Caller, scheduled_at: str, id: str | None = None, *, timezone: str | None = None,
                         campaign: str | None = None, profile_id: str | None = None) -> BatchResult:
        """reschedule_post / POST /v1/posts/{id}/reschedule, POST /v1/campaigns/{name}/reschedule."""
        from omnipost.scheduler import reschedule, reschedule_campaign

        reach = await self.reach(caller, profile_id)
        _one_of(id, campaign)
        if campaign is not None:
            return await reschedule_campaign(self.rt.publisher, reach, campaign, scheduled_at, timezone)
        assert id is not None
        return await reschedule(self.rt.publisher, reach, id, scheduled_at, timezone)

    async def retry(self, caller: Caller, batch_id: str, *, profile_id: str | None = None, key: str | None = None) -> BatchResult:
        """retry_post / POST /v1/posts/{id}/retry: re-queue a batch's failed targets."""
        from omnipost.scheduler import retry

        reach = await self.reach(caller, profile_id)
        return await idempotent(self.rt, reach, RETRY, key, {"batchId": batch_id},
                                lambda: retry(self.rt.publisher, reach, batch_id), BatchResult)

    async def scheduler_status(self, caller: Caller, *, profile_id: str | None = None) -> dict[str, Any]:
        """scheduler_status / GET /v1/scheduler: the raw status (each surface renders its model)."""
        from omnipost.scheduler import status

        reach = await self.reach(caller, profile_id)
        assert self.rt.db is not None
        return await status(self.rt.db, self.rt.clock.now(), self.rt.settings.scheduler_tick, reach)

    # ---- media ----------------------------------------------------------------------------------------------

    async def upload_media(self, caller: Caller, *, path: str | None = None, url: str | None = None,
                           bytes_base64: str | None = None, stream: AsyncIterator[bytes] | None = None,
                           stream_length: str | None = None, alt_text: str | None = None, filename: str | None = None,
                           profile_id: str | None = None, key: str | None = None,
                           progress: Callable[[int, int | None], Awaitable[None]] | None = None) -> MediaOut:
        """upload_media / POST /v1/media: one file from a local path, a URL, base64, or a streamed request body.

        Raises:
            ValidationFailedError, MediaError: no or several sources, unreadable or unsupported bytes, over the limit.
        """
        from omnipost.outputs import media_out

        if sum(x is not None for x in (path, url, bytes_base64, stream)) != 1:
            raise ValidationFailedError("Give exactly one of path, url or bytesBase64.", path="path")
        reach = await self.reach(caller, profile_id)

        async def run() -> MediaOut:
            record = await self.rt.media_.upload(reach, path=path, url=url, bytes_base64=bytes_base64, stream=stream,
                                                 alt_text=alt_text, filename=filename, progress=progress)
            return media_out(record)

        # A streamed body is claimed before it is read: its length stands for it (the content decides the id anyway).
        body = {"path": path, "url": url, "sha": bytes_base64[:64] if bytes_base64 else None, "len": len(bytes_base64 or ""),
                "altText": alt_text} | ({"body": stream_length or "", "filename": filename} if stream is not None else {})
        return await idempotent(self.rt, reach, UPLOAD, key, body, run, MediaOut)

    async def list_media(self, caller: Caller, *, profile_id: str | None = None, cursor: str | None = None,
                         limit: int = 50) -> MediaPage:
        """list_media / GET /v1/media."""
        from omnipost.outputs import media_out

        reach = await self.reach(caller, profile_id)
        items, next_cursor = await self.rt.media_.list(reach, cursor=cursor, limit=limit)
        return MediaPage(media=[media_out(m) for m in items], nextCursor=next_cursor)

    async def delete_media(self, caller: Caller, media_id: str, *, profile_id: str | None = None) -> MediaOut:
        """delete_media / DELETE /v1/media/{id}."""
        from omnipost.errors import NotFoundError, echo
        from omnipost.outputs import media_out

        reach = await self.reach(caller, profile_id)
        record = await self.rt.media_.get(reach, media_id)
        if record is None:
            raise NotFoundError(f"Media '{echo(media_id)}' was not found.", rule="mediaId", remediation="list_media shows the uploaded media.")
        await self.rt.media_.delete(reach, media_id)
        return media_out(record)

    # ---- webhooks -------------------------------------------------------------------------------------------

    async def add_webhook(self, caller: Caller, url: str, events: list[str], *, profile_id: str | None = None) -> Any:
        """add_webhook / POST /v1/webhooks: the endpoint and its signing secret (shown once)."""
        from omnipost.tools.webhooks import WebhookCreated, webhook_out, webhook_service

        reach = await self.reach(caller, profile_id)  # first: it waits until the server is open
        endpoint, secret = await webhook_service(self.rt).create(reach, url, events)
        return WebhookCreated(webhook=webhook_out(endpoint), secret=secret)

    async def list_webhooks(self, caller: Caller, *, profile_id: str | None = None) -> Any:
        """list_webhooks / GET /v1/webhooks."""
        from omnipost.tools.webhooks import WebhookList, webhook_out, webhook_service

        reach = await self.reach(caller, profile_id)
        return WebhookList(webhooks=[webhook_out(e) for e in await webhook_service(self.rt).list(reach)])

    async def delete_webhook(self, caller: Caller, webhook_id: str, *, profile_id: str | None = None) -> Any:
        """delete_webhook / DELETE /v1/webhooks/{id}."""
        from omnipost.tools.webhooks import webhook_out, webhook_service

        reach = await self.reach(caller, profile_id)
        return webhook_out(await webhook_service(self.rt).delete(reach, webhook_id))

    async def test_webhook(self, caller: Caller, webhook_id: str, *, profile_id: str | None = None) -> Any:
        """test_webhook / POST /v1/webhooks/{id}/test: send webhook.test now; the delivery."""
        from omnipost.tools.webhooks import delivery_out, webhook_service

        reach = await self.reach(caller, profile_id)
        return delivery_out(await webhook_service(self.rt).send_test(reach, webhook_id))

    async def webhook_deliveries(self, caller: Caller, *, webhook_id: str | None = None, status: str | None = None,
                                 limit: int = 50, profile_id: str | None = None) -> Any:
        """list_webhook_deliveries / GET /v1/webhooks/deliveries, GET /v1/webhooks/{id}/deliveries."""
        from omnipost.tools.webhooks import DeliveryList, delivery_out, webhook_service

        reach = await self.reach(caller, profile_id)
        rows = await webhook_service(self.rt).deliveries(reach, webhook_id, limit, status=status)
        return DeliveryList(deliveries=[delivery_out(d) for d in rows])

    def _directory(self, reach: Reach) -> Any:
        from omnipost.accounts import ProfileDirectory  # only now: it imports the database layer

        assert self.rt.db is not None
        return ProfileDirectory(self.rt.accounts, self.rt.db, reach.profile_id, test_mode=reach.test_mode, hosting=self.rt.hosting)
