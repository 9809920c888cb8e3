"""Scheduling tools: schedule_post, reschedule_post, retry_post, scheduler_status (cancel_post is in publishing)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from omnipost.auth import current_caller
from omnipost.outputs import BatchResult, BulkResult
from omnipost.request import BulkRequest, ScheduleRequest, UpdateRequest
from omnipost.toolschema import bulk_schema, update_schema
from omnipost.tools.common import LOCAL_WRITE, PUBLISH, READ, KeyArg, ProfileArg

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
        return await rt.services.schedule(current_caller(), request)

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
        return await rt.services.update(current_caller(), request)

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
        return await rt.services.schedule_many(current_caller(), request)

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
        return await rt.services.reschedule(current_caller(), scheduledAt, id, timezone=timezone, campaign=campaign,
                                            profile_id=profileId)

    server.add_tool(reschedule_post, name="reschedule_post", title="Reschedule a queued post",
                    description=("Move a queued post (or all of a batch's) to a new time, with schedule_post's time rules; one "
                                 "already publishing cannot be moved. Returns the batch."),
                    annotations=LOCAL_WRITE)

    async def retry_post(batchId: Annotated[str, Field(description="bat_… id of a batch with failed targets.")],
                         profileId: ProfileArg = None, idempotencyKey: KeyArg = None) -> BatchResult:
        return await rt.services.retry(current_caller(), batchId, profile_id=profileId, key=idempotencyKey)

    server.add_tool(retry_post, name="retry_post", title="Retry failed targets",
                    description=("Re-queue the failed targets of a batch for the scheduler to publish again at once; "
                                 "published targets are never resent and an unknown outcome is left for resolve_post (its "
                                 "warning says so). Returns the batch (queued until the scheduler has run)."),
                    annotations=PUBLISH)

    async def scheduler_status(profileId: ProfileArg = None) -> SchedulerStatus:
        return SchedulerStatus.model_validate(await rt.services.scheduler_status(current_caller(), profile_id=profileId))

    server.add_tool(scheduler_status, name="scheduler_status", title="Scheduler status",
                    description=("Whether a scheduler is running (heartbeat within two ticks), how many of the profile's posts "
                                 "wait (queued or due for a retry), and when the next is due."),
                    annotations=READ)
