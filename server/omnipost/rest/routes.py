"""The /v1 operation table: one Op per route, each a thin translation to one services.Services call.

The same table drives the router (rest/app.py) and the OpenAPI document (rest/openapi.py), so a route cannot exist
without its documentation, and its documented request and answer shapes are the pydantic models that parse and
render it.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from omnipost.auth import Caller
from omnipost.accounts_service import CompleteConnectArgs, ConnectArgs, CreateProfileArgs
from omnipost.outputs import (AccountList, AccountOut, BatchResult, BulkResult, ConnectOut, ConnectStatus, DisconnectedOut,
                              MediaOut, MediaPage, PostDetail, PostPage, PostStatus, ProfileList, ProfileOut, TargetOutcome)
from omnipost.platforms.models import Strict
from omnipost.request import BulkRequest, PostRequest, ProfileId, ScheduledAt, Timezone, UpdateRequest, ValidateRequest
from omnipost.tools.common import Instant
from omnipost.tools.drafting import RuleExplanation, RuleList
from omnipost.tools.webhooks import DeliveryList, DeliveryOut, EventName, WebhookCreated, WebhookList, WebhookOut
from omnipost.tools.scheduling import SchedulerStatus
from omnipost.tools.versions import PlatformVersions
from omnipost.validation import ValidateResult

# ---- query and body models of the routes whose MCP arguments are not one request model ----------------------------


class ProfileQuery(Strict):
    """The profile a call acts on (an id or a name; the default profile when omitted)."""

    profileId: ProfileId | None = None


class PostListQuery(ProfileQuery):
    """list_posts' filters."""

    platform: Annotated[str | None, Field(max_length=64, description="Only this platform.")] = None
    status: Annotated[PostStatus | None, Field(description="Only posts with this status.")] = None
    errorCode: Annotated[str | None, Field(max_length=64, description="Only posts whose error has this code.")] = None
    after: Annotated[Instant | None, Field(description="Created at or after (ISO-8601; no offset = UTC).")] = None
    before: Annotated[Instant | None, Field(description="Created before (ISO-8601; no offset = UTC).")] = None
    cursor: Annotated[str | None, Field(max_length=512, description="nextCursor of the previous page.")] = None
    limit: Annotated[int, Field(ge=1, le=200, description="Posts per page.")] = 50
    campaign: Annotated[str | None, Field(min_length=1, max_length=64, description="Only this campaign's posts.")] = None


class RulesQuery(Strict):
    """Which rules to list."""

    platform: Annotated[str | None, Field(max_length=64, description="Only this platform's rules (plus the generic ones).")] = None


class AccountListQuery(ProfileQuery):
    """list_accounts' filter."""

    platform: Annotated[str | None, Field(max_length=64, description="Only accounts of (or emulating) this platform.")] = None


class MediaListQuery(ProfileQuery):
    """list_media's page."""

    cursor: Annotated[str | None, Field(max_length=512, description="nextCursor of the previous page.")] = None
    limit: Annotated[int, Field(ge=1, le=200, description="Media per page.")] = 50


class UploadQuery(ProfileQuery):
    """A streamed upload's details (a raw or multipart body carries only the bytes)."""

    altText: Annotated[str | None, Field(max_length=5000, description="Alternative text.")] = None
    filename: Annotated[str | None, Field(max_length=255, description="The file's name, kept for display.")] = None


class UploadArgs(Strict):
    """upload_media's arguments, as a JSON body: exactly one of path (under the server's allowed roots), url, bytesBase64."""

    path: Annotated[str | None, Field(max_length=4096)] = None
    url: Annotated[str | None, Field(max_length=4096)] = None
    bytesBase64: str | None = None
    altText: Annotated[str | None, Field(max_length=5000)] = None


class WebhookBody(Strict):
    """add_webhook's arguments."""

    url: Annotated[str, Field(min_length=1, max_length=2000, description="Public http(s) URL that will receive POSTed events.")]
    events: Annotated[list[EventName], Field(min_length=1, description="Events to send to this URL.")]


class DeliveryQuery(ProfileQuery):
    """The delivery log's filters."""

    status: Annotated[Literal["pending", "delivered", "failed"] | None, Field(description="Only deliveries in this state.")] = None
    limit: Annotated[int, Field(ge=1, le=200, description="At most this many, newest first.")] = 50


class RescheduleBody(Strict):
    """The new time."""

    scheduledAt: ScheduledAt
    timezone: Timezone | None = None


class ResolveBody(Strict):
    """How an unknown outcome ended."""

    resolution: Literal["published", "resend"] = Field(
        description="published: the post is on the platform (give upstream); resend: it is not, publish it again now.")
    upstream: Annotated[str | None, Field(min_length=1, max_length=2048,
                                          description="With published: the post's URL or id on the platform.")] = None


class UpdateBody(BaseModel):
    """update_post's fields (the post is named by the path): only those to change; null removes one."""


@dataclass
class Call:
    """One parsed REST request, as a handler gets it."""

    caller: Caller
    path: dict[str, str]
    query: Any = None  # the Op's query model, validated
    body: Any = None  # the Op's body model, validated
    key: str | None = None  # the Idempotency-Key header
    stream: Any = None  # an upload's bytes as they arrive (AsyncIterator[bytes])
    stream_length: str | None = None  # its Content-Length, when given
    services: Any = None  # services.Services


Handler = Callable[[Call], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Op:
    """One route: what it takes, what it answers, and which services call it makes."""

    method: str
    path: str
    id: str  # the OpenAPI operationId
    summary: str
    tag: str
    handler: Handler
    answer: type[BaseModel]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = ProfileQuery
    status: int = 200
    idempotent_key: bool = False  # takes an Idempotency-Key header
    errors: tuple[int, ...] = (400, 401, 403, 404, 429)
    links: dict[str, dict[str, Any]] = field(default_factory=lambda: {})
    description: str = ""
    example: dict[str, Any] | None = None
    answer_example: dict[str, Any] | None = None
    upload: bool = False  # the body is a file: JSON (UploadArgs), multipart/form-data (file) or the raw bytes


WRITE = (400, 401, 403, 404, 409, 422, 429)
UPSTREAM = (*WRITE, 502, 503, 504)
POST_ID = "A post id (post_…); a batch id (bat_…) acts on each of its posts."


def _profile(call: Call) -> str | None:
    return call.query.profileId if call.query is not None else None


async def _publish(call: Call) -> BaseModel:
    request: PostRequest = call.body
    if call.key is not None:
        request = request.model_copy(update={"idempotencyKey": call.key})
    return await call.services.publish(call.caller, request)


async def _validate(call: Call) -> BaseModel:
    return await call.services.validate(call.caller, call.body)


async def _list(call: Call) -> BaseModel:
    q: PostListQuery = call.query
    return await call.services.list_posts(call.caller, profile_id=q.profileId, platform=q.platform, status=q.status,
                                          error_code=q.errorCode, after=q.after, before=q.before, cursor=q.cursor,
                                          limit=q.limit, campaign=q.campaign)


async def _get(call: Call) -> BaseModel:
    return await call.services.get_post(call.caller, call.path["id"], profile_id=_profile(call))


async def _update(call: Call) -> BaseModel:
    request = call.body
    if call.key is not None:
        request = request.model_copy(update={"idempotencyKey": call.key})
    return await call.services.update(call.caller, request)


async def _delete(call: Call) -> BaseModel:
    return await call.services.delete(call.caller, call.path["id"], profile_id=_profile(call), key=call.key)


async def _cancel(call: Call) -> BaseModel:
    return await call.services.cancel(call.caller, call.path["id"], profile_id=_profile(call), key=call.key)


async def _reschedule(call: Call) -> BaseModel:
    body: RescheduleBody = call.body
    return await call.services.reschedule(call.caller, body.scheduledAt, call.path["id"], timezone=body.timezone,
                                          profile_id=_profile(call))


async def _retry(call: Call) -> BaseModel:
    return await call.services.retry(call.caller, call.path["id"], profile_id=_profile(call), key=call.key)


async def _resolve(call: Call) -> BaseModel:
    body: ResolveBody = call.body
    return await call.services.resolve(call.caller, call.path["id"], body.resolution, body.upstream,
                                       profile_id=_profile(call), key=call.key)


async def _bulk(call: Call) -> BaseModel:
    request: BulkRequest = call.body
    if call.key is not None:
        request = request.model_copy(update={"idempotencyKey": call.key})
    return await call.services.schedule_many(call.caller, request)


async def _publish_draft(call: Call) -> BaseModel:
    return await call.services.publish_draft(call.caller, call.path["id"], profile_id=_profile(call), key=call.key)


async def _cancel_campaign(call: Call) -> BaseModel:
    return await call.services.cancel(call.caller, campaign=call.path["campaign"], profile_id=_profile(call), key=call.key)


async def _reschedule_campaign(call: Call) -> BaseModel:
    body: RescheduleBody = call.body
    return await call.services.reschedule(call.caller, body.scheduledAt, campaign=call.path["campaign"],
                                          timezone=body.timezone, profile_id=_profile(call))


async def _connect(call: Call) -> BaseModel:
    return await call.services.connect(call.caller, call.body)


async def _complete(call: Call) -> BaseModel:
    body: CompleteConnectArgs = call.body
    return await call.services.complete_connect(call.caller, body.state, redirect_url=body.redirectUrl, code=body.code,
                                                profile_id=_profile(call))


async def _accounts(call: Call) -> BaseModel:
    return await call.services.list_accounts(call.caller, profile_id=call.query.profileId, platform=call.query.platform)


async def _account(call: Call) -> BaseModel:
    return await call.services.get_account(call.caller, call.path["id"], profile_id=_profile(call))


async def _disconnect(call: Call) -> BaseModel:
    return await call.services.disconnect(call.caller, call.path["id"], profile_id=_profile(call))


async def _profiles(call: Call) -> BaseModel:
    return await call.services.list_profiles(call.caller)


async def _create_profile(call: Call) -> BaseModel:
    return await call.services.create_profile(call.caller, call.body.name)


async def _upload(call: Call) -> BaseModel:
    q: UploadQuery = call.query
    if call.stream is not None:
        return await call.services.upload_media(call.caller, stream=call.stream, stream_length=call.stream_length,
                                                alt_text=q.altText, filename=q.filename, profile_id=q.profileId, key=call.key)
    a: UploadArgs = call.body
    return await call.services.upload_media(call.caller, path=a.path, url=a.url, bytes_base64=a.bytesBase64,
                                            alt_text=a.altText if a.altText is not None else q.altText, filename=q.filename,
                                            profile_id=q.profileId, key=call.key)


async def _media(call: Call) -> BaseModel:
    q: MediaListQuery = call.query
    return await call.services.list_media(call.caller, profile_id=q.profileId, cursor=q.cursor, limit=q.limit)


async def _delete_media(call: Call) -> BaseModel:
    return await call.services.delete_media(call.caller, call.path["id"], profile_id=_profile(call))


async def _add_webhook(call: Call) -> BaseModel:
    return await call.services.add_webhook(call.caller, call.body.url, list(call.body.events), profile_id=_profile(call))


async def _webhooks(call: Call) -> BaseModel:
    return await call.services.list_webhooks(call.caller, profile_id=_profile(call))


async def _delete_webhook(call: Call) -> BaseModel:
    return await call.services.delete_webhook(call.caller, call.path["id"], profile_id=_profile(call))


async def _test_webhook(call: Call) -> BaseModel:
    return await call.services.test_webhook(call.caller, call.path["id"], profile_id=_profile(call))


async def _deliveries(call: Call) -> BaseModel:
    q: DeliveryQuery = call.query
    return await call.services.webhook_deliveries(call.caller, webhook_id=call.path.get("id"), status=q.status, limit=q.limit,
                                                  profile_id=q.profileId)


async def _rules(call: Call) -> BaseModel:
    from omnipost.tools.drafting import rules_for, summarize

    rules = [summarize(r) for r in rules_for(call.query.platform)]
    return RuleList(count=len(rules), rules=rules)


async def _rule(call: Call) -> BaseModel:
    from omnipost.errors import NotFoundError, echo
    from omnipost.preflight.rules import closest_rules, find_rule
    from omnipost.tools.drafting import explain

    rule_id = call.path["ruleId"]
    rule = find_rule(rule_id)
    if rule is None:
        near = closest_rules(rule_id)
        raise NotFoundError(f"There is no preflight rule '{echo(rule_id)}'.", rule="ruleId",
                            remediation=(f"Did you mean {' or '.join(near)}? " if near else "") + "GET /v1/rules lists the rule ids.")
    return explain(rule)


async def _versions(call: Call) -> BaseModel:
    from omnipost.tools.versions import PlatformVersionOut
    from omnipost.versions import listing

    return PlatformVersions(versions=[PlatformVersionOut.model_validate(r) for r in listing(call.services.rt.clock.now())])


async def _scheduler(call: Call) -> BaseModel:
    return SchedulerStatus.model_validate(await call.services.scheduler_status(call.caller, profile_id=_profile(call)))


_READ_POST = {"operationId": "getPost", "parameters": {"id": "$response.body#/results/0/postId"}}
_CANCEL_POST = {"operationId": "cancelPost", "parameters": {"id": "$response.body#/results/0/postId"}}
_EDIT_POST = {"operationId": "updatePost", "parameters": {"id": "$response.body#/results/0/postId"}}
_MOVE_POST = {"operationId": "reschedulePost", "parameters": {"id": "$response.body#/results/0/postId"}}
_PUBLISH_DRAFT = {"operationId": "publishDraft", "parameters": {"id": "$response.body#/results/0/postId"}}
_EXAMPLE_POST = {"text": "omnipost 1.0 is out: one post, every network.", "targets": [{"accountId": "acc_01JDEXAMPLE0000000000000"}],
                 "scheduledAt": "2030-01-06T09:00:00Z"}

OPS: tuple[Op, ...] = (
    Op("POST", "/v1/posts/validate", "validatePost", "Validate a post for every target", "posts", _validate, ValidateResult,
       body=ValidateRequest, query=None, errors=(400, 401, 403, 404, 429),
       description="Every rule of every target; nothing is stored. Broken rules are a normal answer (valid: false).",
       example={"text": "Hello", "targets": [{"platform": "bluesky"}, {"platform": "x"}]}),
    Op("POST", "/v1/posts/bulk", "schedulePosts", "Schedule many posts", "posts", _bulk, BulkResult, body=BulkRequest,
       query=None, idempotent_key=True, errors=WRITE,
       description="Up to 100 items, each a scheduled post; each is queued or refused alone (atomic: all or none).",
       example={"campaign": "launch-week", "items": [
           {"text": "Day 1", "targets": [{"accountId": "acc_01JDEXAMPLE0000000000000"}], "scheduledAt": "2030-01-06T09:00:00Z"},
           {"text": "Day 2", "targets": [{"accountId": "acc_01JDEXAMPLE0000000000000"}], "scheduledAt": "2030-01-07T09:00:00Z"}]}),
    Op("POST", "/v1/posts", "publishPost", "Publish, schedule or draft a post", "posts", _publish, BatchResult, body=PostRequest,
       query=None, status=201, idempotent_key=True, errors=UPSTREAM,
       links={"GetPost": _READ_POST, "CancelPost": _CANCEL_POST, "UpdatePost": _EDIT_POST, "ReschedulePost": _MOVE_POST,
              "PublishDraft": _PUBLISH_DRAFT},
       description=("Publish now (default), at scheduledAt, or store a draft (draft: true); dryRun: true only checks. A broken "
                    "platform rule refuses the whole request (422, every violation listed); each target's own outcome is in "
                    "results. 201 for a new batch; 200 for a replay (same Idempotency-Key and body) or a dry run."),
       example=_EXAMPLE_POST,
       answer_example={"id": "bat_01JDEXAMPLE0000000000000", "status": "queued", "mode": "scheduled",
                       "createdAt": "2029-12-30T12:00:00Z", "scheduledAt": "2030-01-06T09:00:00Z", "replay": False,
                       "results": [{"postId": "post_01JDEXAMPLE0000000000000", "accountId": "acc_01JDEXAMPLE0000000000000",
                                    "platform": "bluesky", "status": "queued", "upstreamId": None, "url": None, "extras": {},
                                    "firstComment": [], "thread": [], "warnings": [], "error": None}],
                       "validation": None}),
    Op("GET", "/v1/posts", "listPosts", "List posts", "posts", _list, PostPage, query=PostListQuery,
       description="Newest first, filtered; pass nextCursor as cursor for the next page."),
    Op("GET", "/v1/posts/{id}", "getPost", "Get a post with its attempts", "posts", _get, PostDetail,
       description="One post (one target of a batch): status, upstream id and URL, error, every attempt and edit."),
    Op("PATCH", "/v1/posts/{id}", "updatePost", "Edit a draft or queued post", "posts", _update, BatchResult, body=UpdateBody,
       idempotent_key=True, errors=WRITE, query=None,
       description="The fields given (null removes one), checked like validatePost: a broken rule changes nothing.",
       example={"text": "omnipost 1.0 is out today.", "scheduledAt": "2030-01-06T10:00:00Z"}),
    Op("DELETE", "/v1/posts/{id}", "deletePost", "Delete a published post", "posts", _delete, TargetOutcome,
       idempotent_key=True, errors=UPSTREAM, description="Deleted on its platform where it allows, and marked deleted here."),
    Op("POST", "/v1/posts/{id}/cancel", "cancelPost", "Cancel a draft or queued post", "posts", _cancel, BatchResult,
       idempotent_key=True, errors=WRITE, description=f"{POST_ID} Cancelling twice is no error."),
    Op("POST", "/v1/posts/{id}/reschedule", "reschedulePost", "Reschedule a queued post", "posts", _reschedule, BatchResult,
       body=RescheduleBody, errors=WRITE, description=POST_ID,
       example={"scheduledAt": "2030-01-06 09:00", "timezone": "Europe/Paris"}),
    Op("POST", "/v1/posts/{id}/retry", "retryPost", "Retry a batch's failed targets", "posts", _retry, BatchResult,
       idempotent_key=True, errors=UPSTREAM, description="id: a batch id (bat_…). Re-queues its failed targets."),
    Op("POST", "/v1/posts/{id}/resolve", "resolvePost", "Resolve an unknown outcome", "posts", _resolve, TargetOutcome,
       body=ResolveBody, idempotent_key=True, errors=UPSTREAM, description="Settle a post whose status is unknown.",
       example={"resolution": "published", "upstream": "https://bsky.app/profile/alice.bsky.social/post/3kxyz"}),
    Op("POST", "/v1/drafts/{id}/publish", "publishDraft", "Publish a draft", "posts", _publish_draft, BatchResult,
       idempotent_key=True, errors=UPSTREAM, description="A draft post (post_…) or every draft of a batch (bat_…), now."),
    Op("POST", "/v1/campaigns/{campaign}/cancel", "cancelCampaign", "Cancel a campaign's posts", "campaigns", _cancel_campaign,
       BatchResult, idempotent_key=True, errors=WRITE),
    Op("POST", "/v1/campaigns/{campaign}/reschedule", "rescheduleCampaign", "Move a campaign", "campaigns",
       _reschedule_campaign, BatchResult, body=RescheduleBody, errors=WRITE,
       description="Its first post moves to scheduledAt; the rest keep their spacing."),
    Op("GET", "/v1/accounts", "listAccounts", "List connected accounts", "accounts", _accounts, AccountList,
       query=AccountListQuery),
    Op("POST", "/v1/accounts", "connectAccount", "Connect an account (or start an OAuth connect)", "accounts", _connect,
       ConnectOut, body=ConnectArgs, query=None, errors=UPSTREAM,
       description=("Connects now (Bluesky app password, sandbox, a developer-portal token) or, for OAuth, answers status "
                    "pending with authorizationUrl and state for POST /v1/accounts/connect/complete."),
       example={"platform": "sandbox", "emulates": "bluesky", "handle": "demo.sandbox"}),
    Op("POST", "/v1/accounts/connect/complete", "completeConnect", "Complete or check an OAuth connect", "accounts",
       _complete, ConnectStatus, body=CompleteConnectArgs, errors=UPSTREAM,
       description="redirectUrl (or code) stores the account; with only state, says where the connect stands."),
    Op("GET", "/v1/accounts/{id}", "getAccount", "Get an account", "accounts", _account, AccountOut),
    Op("DELETE", "/v1/accounts/{id}", "disconnectAccount", "Disconnect an account", "accounts", _disconnect, DisconnectedOut,
       errors=UPSTREAM, description="Revoked at the platform where it allows; removed here even if revoking fails."),
    Op("GET", "/v1/profiles", "listProfiles", "List profiles", "profiles", _profiles, ProfileList, query=None,
       errors=(401, 403, 429)),
    Op("POST", "/v1/profiles", "createProfile", "Create a profile", "profiles", _create_profile, ProfileOut,
       body=CreateProfileArgs, query=None, status=201, errors=(400, 401, 403, 429), example={"name": "brand-b"}),
    Op("POST", "/v1/media", "uploadMedia", "Upload media", "media", _upload, MediaOut, query=UploadQuery, status=201,
       idempotent_key=True, errors=(400, 401, 403, 404, 409, 429), upload=True,
       description=("The file as the raw body (any image/video Content-Type, or application/octet-stream) or as the `file` part "
                    "of multipart/form-data, streamed to disk as it arrives; or a JSON body with path, url or bytesBase64. "
                    "The type is sniffed from the bytes. The same file gives the same id.")),
    Op("GET", "/v1/media", "listMedia", "List media", "media", _media, MediaPage, query=MediaListQuery),
    Op("DELETE", "/v1/media/{id}", "deleteMedia", "Delete media", "media", _delete_media, MediaOut),
    Op("POST", "/v1/webhooks", "addWebhook", "Add a webhook", "webhooks", _add_webhook, WebhookCreated, body=WebhookBody,
       status=201, errors=(400, 401, 403, 404, 429),
       description="Signed JSON POSTs of the chosen events; the signing secret is in this answer only. Private addresses are refused.",
       example={"url": "https://hooks.example.com/omnipost", "events": ["post.published", "post.failed"]}),
    Op("GET", "/v1/webhooks", "listWebhooks", "List webhooks", "webhooks", _webhooks, WebhookList),
    Op("GET", "/v1/webhooks/deliveries", "listWebhookDeliveries", "The delivery log", "webhooks", _deliveries, DeliveryList,
       query=DeliveryQuery),
    Op("DELETE", "/v1/webhooks/{id}", "deleteWebhook", "Delete a webhook", "webhooks", _delete_webhook, WebhookOut),
    Op("POST", "/v1/webhooks/{id}/test", "testWebhook", "Send a test event", "webhooks", _test_webhook, DeliveryOut,
       description="Sends webhook.test now; the delivery: delivered, or the endpoint's status and error."),
    Op("GET", "/v1/webhooks/{id}/deliveries", "listEndpointDeliveries", "One endpoint's delivery log", "webhooks",
       _deliveries, DeliveryList, query=DeliveryQuery),
    Op("GET", "/v1/rules", "listRules", "List preflight rules", "rules", _rules, RuleList, query=RulesQuery),
    Op("GET", "/v1/rules/{ruleId}", "getRule", "Explain a preflight rule", "rules", _rule, RuleExplanation, query=None),
    Op("GET", "/v1/platform-versions", "listPlatformVersions", "Platform API versions", "platforms", _versions,
       PlatformVersions, query=None, errors=(401, 403, 429)),
    Op("GET", "/v1/scheduler", "getSchedulerStatus", "Scheduler status", "scheduler", _scheduler, SchedulerStatus),
)

UPDATE_MODEL = UpdateRequest  # what an UpdateBody is validated as, with the path's id added
