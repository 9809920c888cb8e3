"""Stateful fake upstreams (Starlette apps) that speak each platform's wire shapes; mounted on httpx2 clients by host."""

import httpx2
from starlette.types import ASGIApp


class _Refuse(httpx2.AsyncBaseTransport):
    """The default transport of a test client: any host that is not a mounted fake is a test bug."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError(f"unexpected request to {request.url.scheme}://{request.url.host}: only mounted fakes are reachable")


class _Offline(httpx2.AsyncBaseTransport):
    """A network with no route anywhere: every host that is not a mounted fake fails to connect, as a real one can."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"no route to {request.url.host} (test network: only mounted fakes answer)", request=request)


def mounted_client(mounts: dict[str, ASGIApp], *, offline: bool = False) -> httpx2.AsyncClient:
    """One client with each app mounted at its origin (e.g. "https://pds.test"); every other host fails loudly.

    `offline`: every other host fails with httpx2.ConnectError instead (an unreachable host, which the product must
    answer with a typed error), for tests that aim at arbitrary hosts on purpose (tests/test_fuzz_tools.py).
    """
    return httpx2.AsyncClient(mounts={origin: httpx2.ASGITransport(app) for origin, app in mounts.items()},
                              transport=_Offline() if offline else _Refuse())
