"""Idempotency (PRODUCT §4): claim the key under a unique constraint before the write runs.

Same key + same body within 24 h -> the original answer, marked as a replay. Same key + other
body -> idempotency_conflict. A key whose first request is still running -> idempotency_conflict
with rule idempotency.in_flight (the caller retries and then gets the replay). A request that fails in any way
(refused, a bug, cancelled) does not stay "running": its claim is released, or, when its write was already stored,
completed with what was stored (publishing.PublishService._finish_claim), so a retry runs or replays, never repeats.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from omnipost.clock import Clock
from omnipost.errors import ConflictError
from omnipost.leases import new_owner_id, owner_is_gone
from omnipost.store.db import Database, new_id
from omnipost.store.models import IdempotencyRecord

TTL = timedelta(hours=24)


def request_hash(tool: str, body: dict[str, Any]) -> str:
    """A stable hash of what was asked (the key itself excluded)."""
    canonical = json.dumps({"tool": tool, "body": {k: v for k, v in body.items() if k != "idempotencyKey"}},
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """Either a fresh claim (replay is None) or the stored answer to replay."""

    record_id: str | None
    replay: dict[str, Any] | None = None
    replay_is_error: bool = False


@dataclass
class Idempotency:
    """Claims, completes and releases idempotency keys."""

    db: Database
    clock: Clock
    owner: str = field(default_factory=new_owner_id)  # this process (leases.py): recovery skips live owners' claims

    async def claim(self, profile_id: str, key: str, tool: str, body_hash: str) -> Claim:
        """Claim `key` for this request, or find the answer to replay.

        Raises:
            ConflictError: the key was used with another body, or its request is still running.
        """
        now = self.clock.now()
        record = IdempotencyRecord(id=new_id("idem"), profile_id=profile_id, key=key, tool=tool, request_hash=body_hash,
                                   created_at=now, expires_at=now + TTL, response={"owner": self.owner})
        for _ in range(2):
            async with self.db.session() as s:
                s.add(record)
                try:
                    await s.commit()
                    return Claim(record_id=record.id)
                except IntegrityError:
                    await s.rollback()
                existing = (await s.exec(select(IdempotencyRecord).where(
                    IdempotencyRecord.profile_id == profile_id, IdempotencyRecord.key == key))).first()
                if existing is None:
                    continue  # released between our insert and our read: try once more
                if existing.expires_at <= now:
                    await s.delete(existing)  # a day old: the key is free again
                    await s.commit()
                    record = IdempotencyRecord(id=new_id("idem"), profile_id=profile_id, key=key, tool=tool,
                                               request_hash=body_hash, created_at=now, expires_at=now + TTL,
                                               response={"owner": self.owner})
                    continue
                if existing.request_hash != body_hash:
                    raise ConflictError("This idempotencyKey was already used with a different request.", rule="idempotency.mismatch",
                                        remediation="Use a new idempotencyKey for a different request, or resend the original body.")
                if existing.state != "done":
                    raise ConflictError("A request with this idempotencyKey is still running.", rule="idempotency.in_flight",
                                        remediation="Wait a moment and send the same request again to get its result.")
                return Claim(record_id=None, replay=existing.response, replay_is_error=existing.is_error)
        raise ConflictError("This idempotencyKey is contended; retry.", rule="idempotency.in_flight")

    async def attach(self, record_id: str, partial: dict[str, Any], *, session: Any) -> None:
        """Record progress (e.g. the batch id) in the caller's transaction, so it commits with what it describes and a
        failed request or recovery can finish the claim."""
        row = await session.get(IdempotencyRecord, record_id)
        if row is not None:
            row.response = {**(row.response or {}), **partial}
            session.add(row)

    async def progress(self, record_id: str) -> dict[str, Any]:
        """What `attach` recorded for a claim (empty when nothing was, or the claim is gone)."""
        async with self.db.session() as s:
            row = await s.get(IdempotencyRecord, record_id)
        return dict(row.response or {}) if row is not None else {}

    async def complete(self, record_id: str, response: dict[str, Any], *, is_error: bool = False) -> None:
        """Store the answer; later requests with the key replay it."""
        async with self.db.session() as s:
            row = await s.get(IdempotencyRecord, record_id)
            if row is not None:
                row.state, row.response, row.is_error = "done", response, is_error
                s.add(row)
                await s.commit()

    async def release(self, record_id: str) -> None:
        """Forget a claim whose request changed nothing (it failed validation), so a corrected retry may reuse the key."""
        async with self.db.session() as s:
            row = await s.get(IdempotencyRecord, record_id)
            if row is not None:
                await s.delete(row)
                await s.commit()

    async def unfinished(self) -> list[IdempotencyRecord]:
        """Claims left in flight by a crash: not done, and their owner's process is certainly gone (a claim of
        another running process sharing the database is its own business)."""
        async with self.db.session() as s:
            rows = (await s.exec(select(IdempotencyRecord).where(IdempotencyRecord.state != "done"))).all()
        return [r for r in rows if owner_is_gone((r.response or {}).get("owner"))]
