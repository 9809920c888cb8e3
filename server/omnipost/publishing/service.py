"""PublishService: the state publishing runs on, and its parts put together."""

from dataclasses import dataclass, field
from typing import Any

import anyio

from omnipost.accounts import Accounts
from omnipost.clock import Clock
from omnipost.leases import new_owner_id
from omnipost.idempotency import Idempotency
from omnipost.platforms.base import PlatformAdapter
from omnipost.store.db import Database
from omnipost.publishing.common import MediaPort
from omnipost.publishing.bulk import Bulk
from omnipost.publishing.campaigns import Campaigns
from omnipost.publishing.dispatch import Dispatch
from omnipost.publishing.edits import Edits
from omnipost.publishing.intake import Intake
from omnipost.publishing.queries import Queries
from omnipost.publishing.unknown import Unknowns

@dataclass
class PublishService(Intake, Dispatch, Unknowns, Queries, Edits, Bulk, Campaigns):
    """Publishing, drafts, post history and crash recovery."""

    db: Database
    accounts: Accounts
    idempotency: Idempotency
    adapters: dict[str, PlatformAdapter]
    clock: Clock
    media: MediaPort | None = None
    concurrency: int = 10
    scheduler_tick: float = 1.0  # for the schedule answer's liveness check (alive = heartbeat within 2 ticks)
    events: Any = None  # webhooks.WebhookService: emit(profile_id, type, data, session=...)
    lease_seconds: float = 300.0  # how long another process leaves this one's in-flight posts alone
    owner: str = field(default_factory=new_owner_id)  # this process (leases.py)
    _limiter: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self._limiter = anyio.CapacityLimiter(self.concurrency)
