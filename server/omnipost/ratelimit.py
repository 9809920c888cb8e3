"""Per-key rate limit for the network transports: a token bucket per API key id, on the injected clock."""

import math
from dataclasses import dataclass

from omnipost.clock import Clock
from omnipost.errors import RateLimitedError


@dataclass
class _Bucket:
    tokens: float
    at: float  # seconds (clock time) of the last refill


class RateLimiter:
    """A token bucket per key id: capacity `per_minute`, refilled at per_minute/60 tokens a second."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key_id: str) -> None:
        """Take one token for this key.

        Raises:
            RateLimitedError: the bucket is empty; retry_after = seconds until the next token.
        """
        now = self.clock.now().timestamp()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(tokens=self.capacity, at=now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / self.rate
        retry_after = math.ceil(wait * 1000) / 1000  # never rounds down to "now"
        per = int(self.capacity)
        raise RateLimitedError(
            f"This API key is limited to {per} tool calls a minute.",
            retry_after=retry_after,
            rule="rate_limit.per_key",
            remediation=f"Wait {math.ceil(retry_after)} seconds before the next call, or spread calls out.",
        )
