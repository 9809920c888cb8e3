"""Webhook tools: add, list, delete and test endpoints; read the delivery log (PRODUCT §9)."""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from omnipost.errors import InternalError
from omnipost.auth import current_caller
from omnipost.tools.common import LOCAL_DESTRUCTIVE, LOCAL_WRITE, PUBLISH, READ, ProfileArg

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime
    from omnipost.store.models import WebhookDelivery, WebhookEndpoint
    from omnipost.webhooks import WebhookService

EventName = Literal["post.queued", "post.validated", "post.published", "post.rejected", "post.failed", "post.updated",
                    "token.expiring", "token.revoked", "version.deprecated", "webhook.test"]


class WebhookOut(BaseModel):
    """A webhook endpoint (never its secret)."""

    id: str
    url: str
    events: list[str]
    createdAt: datetime


class WebhookCreated(BaseModel):
    """A new endpoint and its signing secret, shown this once."""

    webhook: WebhookOut
    secret: str = Field(description="whsec_… signing secret. Shown only now: store it. Verify each delivery's "
                                    "webhook-signature (v1,base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` "
                                    "keyed with the base64-decoded part after whsec_).")


class WebhookList(BaseModel):
    """The profile's endpoints."""

    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    """One event sent (or being sent) to one endpoint."""

    id: str = Field(description="msg_…, also the webhook-id header; the same on every retry.")
    webhookId: str
    eventType: str
    status: str = Field(description="pending (will be tried at nextAttemptAt), delivered or failed.")
    attempts: int
    nextAttemptAt: datetime | None
    lastStatus: int | None = Field(description="The endpoint's HTTP status on the last try.")
    lastError: str | None
    createdAt: datetime
    deliveredAt: datetime | None
    payload: dict[str, Any] = Field(description="The JSON body sent: {id, type, createdAt, data}.")


class DeliveryList(BaseModel):
    """The delivery log, newest first."""

    deliveries: list[DeliveryOut]


def webhook_out(e: "WebhookEndpoint") -> WebhookOut:
    """The public view of an endpoint."""
    return WebhookOut(id=e.id, url=e.url, events=list(e.events or []), createdAt=e.created_at)


def delivery_out(d: "WebhookDelivery") -> DeliveryOut:
    """The public view of a delivery."""
    return DeliveryOut(id=d.id, webhookId=d.endpoint_id, eventType=d.event_type, status=d.status, attempts=d.attempts,
                       nextAttemptAt=d.next_attempt_at, lastStatus=d.last_status, lastError=d.last_error,
                       createdAt=d.created_at, deliveredAt=d.delivered_at, payload=dict(d.payload or {}))


def webhook_service(rt: "Runtime") -> "WebhookService":
    """The runtime's webhook service.

    Raises:
        InternalError: the server has none (not started).
    """
    service = getattr(rt, "webhooks", None)
    if service is None:
        raise InternalError("webhooks are not available in this server")
    return service


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register the webhook tools."""

    async def add_webhook(
        url: Annotated[str, Field(min_length=1, max_length=2000, description="Public http(s) URL that will receive POSTed events.")],
        events: Annotated[list[EventName], Field(min_length=1, description="Events to send to this URL.")],
        profileId: ProfileArg = None,
    ) -> WebhookCreated:
        return await rt.services.add_webhook(current_caller(), url, list(events), profile_id=profileId)

    server.add_tool(
        add_webhook, name="add_webhook", title="Add a webhook",
        description=("Register a URL to receive the chosen events as signed JSON POSTs (Standard Webhooks headers; retried "
                     "with backoff for up to 24 h). Returns the endpoint (whk_…) and its signing secret, shown only this once. "
                     "URLs that resolve to private, loopback or link-local addresses are refused."),
        annotations=LOCAL_WRITE,
    )

    async def list_webhooks(profileId: ProfileArg = None) -> WebhookList:
        return await rt.services.list_webhooks(current_caller(), profile_id=profileId)

    server.add_tool(list_webhooks, name="list_webhooks", title="List webhooks",
                    description="List the profile's webhook endpoints: id, URL, subscribed events (never the secret).",
                    annotations=READ)

    async def delete_webhook(webhookId: Annotated[str, Field(description="whk_… id.")], profileId: ProfileArg = None) -> WebhookOut:
        return await rt.services.delete_webhook(current_caller(), webhookId, profile_id=profileId)

    server.add_tool(delete_webhook, name="delete_webhook", title="Delete a webhook",
                    description="Delete a webhook endpoint: nothing more is sent to it and its pending deliveries are dropped; the delivery log is kept.",
                    annotations=LOCAL_DESTRUCTIVE)

    async def test_webhook(webhookId: Annotated[str, Field(description="whk_… id.")], profileId: ProfileArg = None) -> DeliveryOut:
        return await rt.services.test_webhook(current_caller(), webhookId, profile_id=profileId)

    server.add_tool(test_webhook, name="test_webhook", title="Send a test event",
                    description=("Send a webhook.test event to an endpoint now; returns the delivery: delivered, or the "
                                 "endpoint's HTTP status and error (retried like any delivery)."),
                    annotations=PUBLISH)

    async def list_webhook_deliveries(
        webhookId: Annotated[str | None, Field(description="Only deliveries to this whk_… endpoint.")] = None,
        status: Annotated[Literal["pending", "delivered", "failed"] | None, Field(description="Only deliveries in this state.")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="At most this many, newest first.")] = 50,
        profileId: ProfileArg = None,
    ) -> DeliveryList:
        return await rt.services.webhook_deliveries(current_caller(), webhook_id=webhookId, status=status, limit=limit,
                                                    profile_id=profileId)

    server.add_tool(list_webhook_deliveries, name="list_webhook_deliveries", title="List webhook deliveries",
                    description=("The webhook delivery log, newest first: event, status, attempts, next retry, the endpoint's "
                                 "last HTTP status and error, and the payload sent."),
                    annotations=READ)
