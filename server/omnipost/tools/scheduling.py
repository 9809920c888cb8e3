"""Scheduling tools: schedule_post, reschedule_post, retry_post, scheduler_status (cancel_post is in publishing)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, Field

from omnipost.outputs import BatchResult
from omnipost.request import ScheduleRequest
from omnipost.tools.common import LOCAL_WRITE, PUBLISH, READ, profile_of, reach_of
from omnipost.tools.publishing import KeyArg, ProfileArg, with_idempotency

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
            "Schedule one post to up to 25 connected accounts for a later time (same arguments as publish_post; scheduledAt is "
            "required, ISO-8601, at least 1 s ahead; without an offset it is read in timezone, default UTC). Every platform rule "
            "is checked now and media is stored now, so a post that is accepted will not fail preflight later. The answer is the "
            "batch with status queued, its scheduledAt in UTC, and warnings: a local time in a daylight-saving gap is moved "
            "forward, one in an overlap takes the first occurrence, and a warning says when no scheduler is running. Change the "
            "time with reschedule_post, stop it with cancel_post, watch it with get_post or scheduler_status."
        ),
        annotations=PUBLISH,
    )

    async def reschedule_post(
        id: Annotated[str, Field(description="A queued post id (post_…) or a batch id (bat_…) whose queued posts to move.")],
        scheduledAt: Annotated[str, Field(description="The new ISO-8601 time, at least 1 s ahead.")],
        timezone: Annotated[str | None, Field(description="IANA zone for a scheduledAt without offset (default UTC).")] = None,
        profileId: ProfileArg = None,
    ) -> BatchResult:
        from omnipost.scheduler import reschedule

        return await reschedule(rt.publisher, await reach_of(rt, profileId), id, scheduledAt, timezone)

    server.add_tool(reschedule_post, name="reschedule_post", title="Reschedule a queued post",
                    description=("Move a queued post (or every queued post of a batch) to a new time; the same time rules as "
                                 "schedule_post apply. A post a scheduler has already started publishing cannot be moved "
                                 "(validation_failed, rule post.already_publishing). Returns the batch."),
                    annotations=LOCAL_WRITE)

    async def retry_post(batchId: Annotated[str, Field(description="bat_… id of a batch with failed targets.")],
                         profileId: ProfileArg = None, idempotencyKey: KeyArg = None) -> BatchResult:
        from omnipost.scheduler import retry

        reach = await reach_of(rt, profileId)
        return await with_idempotency(rt, reach, "retry_post", idempotencyKey, {"batchId": batchId},
                                      lambda: retry(rt.publisher, reach, batchId), BatchResult)

    server.add_tool(retry_post, name="retry_post", title="Retry failed targets",
                    description=("Re-queue only the failed targets of a batch so the scheduler publishes them again at once; "
                                 "published targets are never sent again, and an unknown outcome is not retried: the answer says "
                                 "so on that target, and resolve_post settles it. Returns the batch (status queued until the "
                                 "scheduler has run)."),
                    annotations=PUBLISH)

    async def scheduler_status(profileId: ProfileArg = None) -> SchedulerStatus:
        from omnipost.scheduler import status

        reach = await reach_of(rt, profileId)
        assert rt.db is not None
        return SchedulerStatus.model_validate(await status(rt.db, rt.clock.now(), rt.settings.scheduler_tick, reach))

    server.add_tool(scheduler_status, name="scheduler_status", title="Scheduler status",
                    description=("Whether a scheduler is running (workers whose heartbeat is within two ticks), how many of the "
                                 "profile's posts wait (queued or due for an automatic retry), and when the next one is due."),
                    annotations=READ)
