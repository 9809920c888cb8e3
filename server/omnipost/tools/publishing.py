"""Publishing tools: publish_post, publish_draft, resolve_post, and the post history (get, list, cancel, delete)."""

from typing import TYPE_CHECKING, Annotated, Literal

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, Resolve
from pydantic import BaseModel, Field

from omnipost.auth import current_caller
from omnipost.errors import InputError
from omnipost.outputs import BatchResult, PostDetail, PostPage, PostStatus, TargetOutcome
from omnipost.request import PostRequest
from omnipost.tools.common import LOCAL_DESTRUCTIVE, PUBLISH, READ, UPSTREAM_DESTRUCTIVE, Instant, KeyArg, ProfileArg

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime



class Confirm(BaseModel):
    """The user's answer to 'publish now?'."""

    publish: bool = Field(description="Publish this post to every listed account now?")


class DeclinedError(InputError):
    """The user declined the confirmation; nothing was published."""


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
        if not (request.dryRun or isinstance(confirm, AcceptedElicitation) and confirm.data.publish):
            raise DeclinedError("The user declined to publish; nothing was published.", rule="confirmation.declined",
                                remediation="Ask the user what to change, or publish to fewer accounts.")

        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await rt.services.publish(current_caller(), request, progress=progress)

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
        async def progress(done: int, total: int, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await rt.services.publish_draft(current_caller(), id, profile_id=profileId, key=idempotencyKey, progress=progress)

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
        return await rt.services.resolve(current_caller(), postId, resolution, upstream, profile_id=profileId, key=idempotencyKey)

    server.add_tool(resolve_post, name="resolve_post", title="Resolve an unknown outcome",
                    description=(
                        "Settle a target whose outcome is unknown (sent; no definite answer came back). published + "
                        "upstream (its URL or id): checked on the platform where it can tell (refused if absent), else "
                        "recorded as unverified. resend: published again now, under the same upstream id where the "
                        "platform allows. Returns the target's outcome."),
                    annotations=PUBLISH)

    async def get_post(postId: Annotated[str, Field(description="post_… id.")], profileId: ProfileArg = None) -> PostDetail:
        return await rt.services.get_post(current_caller(), postId, profile_id=profileId)

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
        return await rt.services.list_posts(current_caller(), profile_id=profileId, platform=platform, status=status,
                                            error_code=errorCode, after=after, before=before, cursor=cursor, limit=limit,
                                            campaign=campaign)

    server.add_tool(list_posts, name="list_posts", title="List posts",
                    description="List the profile's posts, newest first, filtered by platform, status, error code and creation time; pass nextCursor to page.",
                    annotations=READ)

    async def cancel_post(id: Annotated[str | None, Field(description="A draft or queued post (post_…), or a batch (bat_…).")] = None,
                          profileId: ProfileArg = None, idempotencyKey: KeyArg = None,
                          campaign: Annotated[str | None, Field(description="Or: all its posts.")] = None) -> BatchResult:
        return await rt.services.cancel(current_caller(), id, campaign=campaign, profile_id=profileId, key=idempotencyKey)

    server.add_tool(cancel_post, name="cancel_post", title="Cancel a draft or queued post",
                    description=("Cancel a draft or queued post (or all of a batch's or a campaign's) so it is never published; returns the "
                                 "batch. Cancelling twice is no error; one already publishing cannot be cancelled, and "
                                 "delete_post removes a published one."),
                    annotations=LOCAL_DESTRUCTIVE)

    async def delete_post(postId: Annotated[str, Field(description="post_… id of a published post.")], profileId: ProfileArg = None,
                          idempotencyKey: KeyArg = None) -> TargetOutcome:
        return await rt.services.delete(current_caller(), postId, profile_id=profileId, key=idempotencyKey)

    server.add_tool(delete_post, name="delete_post", title="Delete a published post",
                    description="Delete a published post on its platform (where the platform allows it) and mark it deleted here.",
                    annotations=UPSTREAM_DESTRUCTIVE)
