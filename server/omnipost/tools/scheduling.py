"""Scheduling tools: schedule_post, reschedule_post, retry_post, scheduler_status (cancel_post is in publishing)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from omnipost.errors import ValidationFailedError
from omnipost.outputs import BatchResult, BulkResult
from omnipost.request import BulkRequest, ScheduleRequest, UpdateRequest
from omnipost.toolschema import bulk_schema, update_schema
from omnipost.tools.common import LOCAL_WRITE, PUBLISH, READ, KeyArg, ProfileArg, profile_of, reach_of
from omnipost.tools.publishing import with_idempotency

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime


class WorkerOut(BaseModel):
    """A scheduler worker that has ticked recently."""

    workerId: str = Field(description="host:pid:suffix of the process running the scheduler.")
    seenAt: datetime = Field(description="Its last heartbeat.")


class SchedulerStatus(BaseModel):
    """Whether queued posts will be published, and what is waiting."""

    alive: bool = Field(description="True when at least one worker's heartbeat is within two ticks.")
    workers: list[WorkerOut]
    queueDepth: int = Field(description="The profile's queued posts plus failed posts waiting for an automatic retry.")
    nextDueAt: datetime | None = Field(description="When the next of them is due (UTC); null when nothing waits.")


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register schedule_post, reschedule_post, retry_post and scheduler_status."""

    async def schedule_post(request: ScheduleRequest) -> BatchResult:
        # scheduledAt is required, and publishNow/draft/dryRun refused, by ScheduleRequest itself (validation_failed)
        profile, caller = await profile_of(rt, request.profileId)
        return await rt.publisher.publish(request.as_post_request(), request.model_dump(mode="json", exclude_none=True), tool="schedule_post",
                                          profile_id=profile.id, test_mode=caller.test_mode)

    server.add_request_tool(
        schedule_post, param="request", model=ScheduleRequest, name="schedule_post", title="Schedule a post",
        description=(
            "Schedule one post to up to 25 connected accounts for scheduledAt (ISO-8601, at least 1 s ahead; without an "
            "offset it is read in timezone, default UTC). Rules are checked and media stored now, so an accepted post will not "
            "fail preflight later. Returns the batch, status queued, with scheduledAt in UTC and warnings (a daylight-saving "
            "gap or overlap, no scheduler running)."
        ),
        annotations=PUBLISH,
    )

    async def update_post(request: Any) -> BatchResult:
        reach = await reach_of(rt, request.profileId)
        body = request.model_dump(mode="json", exclude_unset=True)
        return await with_idempotency(rt, reach, "update_post", request.idempotencyKey, body,
                                      lambda: rt.publisher.update(reach, request), BatchResult, mark_replay=True)

    server.add_request_tool(
        update_post, param="request", model=UpdateRequest, schema=update_schema(), name="update_post", title="Edit a queued post",
        description=(
            "Edit a draft or queued post (id: post_…, or bat_… for each of its) before a worker takes it: the fields given "
            "(null removes one; its platform's options object too). Checked like validate_post: a broken rule changes "
            "nothing. Time kept unless scheduledAt. Returns the batch; get_post shows revisions."
        ),
        annotations=LOCAL_WRITE,
    )

    async def schedule_posts(request: BulkRequest) -> BulkResult:
        reach = await reach_of(rt, request.profileId)
        body = request.model_dump(mode="json", exclude_none=True)
        return await with_idempotency(rt, reach, "schedule_posts", request.idempotencyKey, body,
                                      lambda claim: rt.publisher.schedule_many(reach, request, claim_id=claim), BulkResult,
                                      mark_replay=True, pass_claim=True)

    server.add_request_tool(
        schedule_posts, param="request", model=BulkRequest, schema=bulk_schema(), name="schedule_posts",
        title="Schedule many posts",
        description=(
            "Schedule up to 100 posts in one call, each item a schedule_post request (own scheduledAt, targets). All are "
            "checked first; each is queued or refused alone (errors at items[i]...); atomic: true stores none unless all "
            "are valid; dryRun: true only checks. A result per item."
        ),
        annotations=PUBLISH,
    )

    async def reschedule_post(
        scheduledAt: Annotated[str, Field(description="The new ISO-8601 time, at least 1 s ahead.")],
        id: Annotated[str | None, Field(description="A queued post (post_…) or a batch (bat_…).")] = None,
        timezone: Annotated[str | None, Field(description="IANA zone for a scheduledAt without offset (default UTC).")] = None,
        profileId: ProfileArg = None,
        campaign: Annotated[str | None, Field(description="Or: its first post moves to scheduledAt, the rest keep their spacing.")] = None,
    ) -> BatchResult:
        from omnipost.scheduler import reschedule, reschedule_campaign

        reach = await reach_of(rt, profileId)
        if (id is None) == (campaign is None):
            raise ValidationFailedError("Give id or campaign, not both.", path="id",
                                        remediation="Name a post or batch in id, or a campaign in campaign.")
        if campaign is not None:
            return await reschedule_campaign(rt.publisher, reach, campaign, scheduledAt, timezone)
        assert id is not None
        return await reschedule(rt.publisher, reach, id, scheduledAt, timezone)

    server.add_tool(reschedule_post, name="reschedule_post", title="Reschedule a queued post",
                    description=("Move a queued post (or all of a batch's) to a new time, with schedule_post's time rules; one "
                                 "already publishing cannot be moved. Returns the batch."),
                    annotations=LOCAL_WRITE)

    async def retry_post(batchId: Annotated[str, Field(description="bat_… id of a batch with failed targets.")],
                         profileId: ProfileArg = None, idempotencyKey: KeyArg = None) -> BatchResult:
        from omnipost.scheduler import retry

        reach = await reach_of(rt, profileId)
        return await with_idempotency(rt, reach, "retry_post", idempotencyKey, {"batchId": batchId},
                                      lambda: retry(rt.publisher, reach, batchId), BatchResult)

    server.add_tool(retry_post, name="retry_post", title="Retry failed targets",
                    description=("Re-queue the failed targets of a batch for the scheduler to publish again at once; "
                                 "published targets are never resent and an unknown outcome is left for resolve_post (its "
                                 "warning says so). Returns the batch (queued until the scheduler has run)."),
                    annotations=PUBLISH)

    async def scheduler_status(profileId: ProfileArg = None) -> SchedulerStatus:
        from omnipost.scheduler import status

        reach = await reach_of(rt, profileId)
        assert rt.db is not None
        return SchedulerStatus.model_validate(await status(rt.db, rt.clock.now(), rt.settings.scheduler_tick, reach))

    server.add_tool(scheduler_status, name="scheduler_status", title="Scheduler status",
                    description=("Whether a scheduler is running (heartbeat within two ticks), how many of the profile's posts "
                                 "wait (queued or due for a retry), and when the next is due."),
                    annotations=READ)
