"""Publishing tools: publish_post, publish_draft, resolve_post, and the post history (get, list, cancel, delete)."""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, Resolve
from pydantic import BaseModel, Field

from omnipost.auth import Reach, as_reach, current_caller
from omnipost.validation import validate_request
from omnipost.errors import InputError, ValidationFailedError
from omnipost.outputs import BatchResult, PostDetail, PostPage, PostStatus, TargetOutcome
from omnipost.request import PostRequest
from omnipost.tools.common import (LOCAL_DESTRUCTIVE, PUBLISH, READ, UPSTREAM_DESTRUCTIVE, Instant, KeyArg, ProfileArg,
                                   profile_of, reach_of)

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime



class Confirm(BaseModel):
    """The user's answer to 'publish now?'."""

    publish: bool = Field(description="Publish this post to every listed account now?")


class DeclinedError(InputError):
    """The user declined the confirmation; nothing was published."""


async def with_idempotency(rt: "Runtime", scope: Reach | str, tool: str, key: str | None, body: dict[str, Any],
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
    claim = await idem.claim(reach.profile_id, reach.idempotency_key(key), tool, request_hash(tool, body))
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


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register publish_post, publish_draft, resolve_post, get_post, list_posts, cancel_post and delete_post."""

    async def confirm_publish(request: PostRequest, ctx: Context) -> Confirm | Elicit[Confirm]:
        accounts = {t.accountId for t in request.targets if t.accountId}
        setting = rt.settings.confirm
        if request.dryRun or request.draft or setting == "never" or (setting == "multi" and len(accounts) <= 1):
            return Confirm(publish=True)
        caps = ctx.client_capabilities
        if caps is None or caps.elicitation is None:
            return Confirm(publish=True)  # the client cannot ask; the tool call itself is the consent
        from omnipost.confirmation import confirmation_message

        return Elicit(await confirmation_message(rt, request), Confirm)  # each target and the start of its text

    async def publish_post(request: PostRequest, ctx: Context,
                           confirm: Annotated[ElicitationResult[Confirm], Resolve(confirm_publish)]) -> BatchResult:
        profile, caller = await profile_of(rt, request.profileId)
        if request.dryRun:
            from omnipost.accounts import ProfileDirectory

            assert rt.db is not None
            directory = ProfileDirectory(rt.accounts, rt.db, profile.id, test_mode=caller.test_mode, hosting=rt.hosting)
            validation = await validate_request(request, clock=rt.clock, accounts=directory, media=directory)
            return BatchResult(id="", status="dry_run", mode="dry_run", createdAt=rt.clock.now(), results=[], validation=validation)
        if not (isinstance(confirm, AcceptedElicitation) and confirm.data.publish):
            raise DeclinedError("The user declined to publish; nothing was published.", rule="confirmation.declined",
                                remediation="Ask the user what to change, or publish to fewer accounts.")

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await rt.publisher.publish(request, request.model_dump(mode="json", exclude_none=True), tool="publish_post",
                                          profile_id=profile.id, test_mode=caller.test_mode, progress=progress)

    server.add_request_tool(
        publish_post, param="request", model=PostRequest, name="publish_post", title="Publish a post now",
        description=(
            "Publish one post to up to 25 connected accounts now (draft: true stores it; dryRun: true only checks; "
            "scheduledAt queues it). Every platform rule is checked first: if a target breaks one, nothing is published and "
            "the error lists each violation with its remediation. Returns the batch with each target's post id, URL or "
            "error. Set idempotencyKey so a retry cannot post twice. The same text to the same account within 24 h is "
            "refused unless skipDuplicateCheck. The user may be asked to confirm."
        ),
        annotations=PUBLISH,
    )

    async def publish_draft(id: Annotated[str, Field(description="A draft post id (post_…) or a batch id (bat_…) whose drafts to publish.")],
                            ctx: Context, profileId: ProfileArg = None, idempotencyKey: KeyArg = None) -> BatchResult:
        reach = await reach_of(rt, profileId)

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await with_idempotency(rt, reach, "publish_draft", idempotencyKey, {"id": id},
                                      lambda: rt.publisher.publish_draft(reach, id, progress), BatchResult)

    server.add_tool(publish_draft, name="publish_draft", title="Publish a draft",
                    description="Publish a post stored with draft: true (or every draft of a batch) now. Returns the batch with each target's outcome.",
                    annotations=PUBLISH)

    async def resolve_post(
        postId: Annotated[str, Field(description="post_… id of a target whose status is unknown.")],
        resolution: Annotated[Literal["published", "resend"], Field(description=(
            "published: the post is on the platform (give upstream); resend: it is not, publish it again now."))],
        upstream: Annotated[str | None, Field(min_length=1, max_length=2048,
                                              description="With published: the post's URL or id on the platform.")] = None,
        profileId: ProfileArg = None, idempotencyKey: KeyArg = None,
    ) -> TargetOutcome:
        reach = await reach_of(rt, profileId)
        caller = current_caller()
        by = f"key {caller.key_id}" if caller.key_id else "the local user"
        body = {"postId": postId, "resolution": resolution, "upstream": upstream}
        return await with_idempotency(rt, reach, "resolve_post", idempotencyKey, body,
                                      lambda: rt.publisher.resolve(reach, postId, resolution, upstream, by=by), TargetOutcome)

    server.add_tool(resolve_post, name="resolve_post", title="Resolve an unknown outcome",
                    description=(
                        "Settle a target whose outcome is unknown (sent; no definite answer came back). published + "
                        "upstream (its URL or id): checked on the platform where it can tell (refused if absent), else "
                        "recorded as unverified. resend: published again now, under the same upstream id where the "
                        "platform allows. Returns the target's outcome."),
                    annotations=PUBLISH)

    async def get_post(postId: Annotated[str, Field(description="post_… id.")], profileId: ProfileArg = None) -> PostDetail:
        reach = await reach_of(rt, profileId)  # first: it waits until the server is open
        return await rt.publisher.get_post(reach, postId)

    server.add_tool(get_post, name="get_post", title="Get a post",
                    description="One post (one target of a batch): status, upstream id and URL, error, and every attempt (time, HTTP status, redacted upstream answer, error code).",
                    annotations=READ)

    async def list_posts(
        profileId: ProfileArg = None,
        platform: Annotated[str | None, Field(description="Only this platform (sandbox accounts: sandbox's emulated platform id).")] = None,
        status: Annotated[PostStatus | None, Field(description="Only posts with this status.")] = None,
        errorCode: Annotated[str | None, Field(description="Only posts whose error has this code.")] = None,
        after: Annotated[Instant | None, Field(description="Created at or after (ISO-8601; without an offset it is UTC).")] = None,
        before: Annotated[Instant | None, Field(description="Created before (ISO-8601; without an offset it is UTC).")] = None,
        cursor: Annotated[str | None, Field(description="nextCursor of the previous page.")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
        campaign: str | None = None,
    ) -> PostPage:
        reach = await reach_of(rt, profileId)
        return await rt.publisher.list_posts(reach, platform=platform, status=status, error_code=errorCode, after=after,
                                             before=before, cursor=cursor, limit=limit, campaign=campaign)

    server.add_tool(list_posts, name="list_posts", title="List posts",
                    description="List the profile's posts, newest first, filtered by platform, status, error code and creation time; pass nextCursor to page.",
                    annotations=READ)

    async def cancel_post(id: Annotated[str | None, Field(description="A draft or queued post (post_…), or a batch (bat_…).")] = None,
                          profileId: ProfileArg = None, idempotencyKey: KeyArg = None,
                          campaign: Annotated[str | None, Field(description="Or: all its posts.")] = None) -> BatchResult:
        reach = await reach_of(rt, profileId)
        if (id is None) == (campaign is None):
            raise ValidationFailedError("Give id or campaign, not both.", path="id",
                                        remediation="Name a post or batch in id, or a campaign in campaign.")
        if campaign is not None:
            return await with_idempotency(rt, reach, "cancel_post", idempotencyKey, {"campaign": campaign},
                                          lambda: rt.publisher.cancel_campaign(reach, campaign), BatchResult)
        post_id = id
        assert post_id is not None
        return await with_idempotency(rt, reach, "cancel_post", idempotencyKey, {"id": post_id},
                                      lambda: rt.publisher.cancel(reach, post_id), BatchResult)

    server.add_tool(cancel_post, name="cancel_post", title="Cancel a draft or queued post",
                    description=("Cancel a draft or queued post (or all of a batch's or a campaign's) so it is never published; returns the "
                                 "batch. Cancelling twice is no error; one already publishing cannot be cancelled, and "
                                 "delete_post removes a published one."),
                    annotations=LOCAL_DESTRUCTIVE)

    async def delete_post(postId: Annotated[str, Field(description="post_… id of a published post.")], profileId: ProfileArg = None,
                          idempotencyKey: KeyArg = None) -> TargetOutcome:
        reach = await reach_of(rt, profileId)
        return await with_idempotency(rt, reach, "delete_post", idempotencyKey, {"postId": postId},
                                      lambda: rt.publisher.delete(reach, postId), TargetOutcome)

    server.add_tool(delete_post, name="delete_post", title="Delete a published post",
                    description="Delete a published post on its platform (where the platform allows it) and mark it deleted here.",
                    annotations=UPSTREAM_DESTRUCTIVE)
