"""The loop every background job of a long-running process shares (scheduler, webhook deliveries, checks)."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

logger = logging.getLogger("omnipost")


async def repeat(step: Callable[[], Awaitable[Any]], every: float, stop: anyio.Event, what: str) -> None:
    """Run `step` now and then every `every` seconds until `stop` is set. A failing step is logged
    ("<what> failed") and the loop goes on: the next round retries."""
    while not stop.is_set():
        try:
            await step()
        except Exception:  # noqa: BLE001 - a background loop: log and keep going
            logger.exception("%s failed", what)
        with anyio.move_on_after(every):
            await stop.wait()
