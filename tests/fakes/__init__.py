"""Stateful fake upstreams (Starlette apps) that speak each platform's wire shapes; mounted on httpx2 clients by host."""

import httpx2
from starlette.types import ASGIApp


class _Refuse(httpx2.AsyncBaseTransport):
    """The default transport of a test client: any host that is not a mounted fake is a test bug."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError(f"unexpected request to {request.url.scheme}://{request.url.host}: only mounted fakes are reachable")


def mounted_client(mounts: dict[str, ASGIApp]) -> httpx2.AsyncClient:
    """One client with each app mounted at its origin (e.g. "https://pds.test"); every other host fails loudly."""
    return httpx2.AsyncClient(mounts={origin: httpx2.ASGITransport(app) for origin, app in mounts.items()}, transport=_Refuse())
