"""The SSRF guard on upstream API calls (netguard.py): caller-given and DID-document server URLs connect only to
public addresses, decided before any connection; refusals are typed errors that reflect nothing.

The decision is tested with an injected resolver that maps names to private addresses, and a network backend that
records every connection the guard lets through: for those addresses it must record none. Live tests use only
loopback spellings and loopback servers.
"""

import http.server
import json
import threading
from typing import Any

import httpcore2
import pytest
from mcp import Client

from omnipost.app import build_server
from omnipost.config import Settings
from omnipost.netguard import AddressRefused, GuardedBackend
from test_webhooks import MapResolver
from toolresult import err, ok

pytestmark = pytest.mark.anyio

PRIVATE_ANSWERS = ["10.0.0.5", "169.254.169.254", "0.0.0.0", "::", "::ffff:10.0.0.1", "fd00::1", "100.64.0.1",
                   "64:ff9b::a00:5", "2002:a00:5::1", "127.0.0.1", "::1", "192.168.1.1", "fe80::1"]


class Recording(httpcore2.AsyncNetworkBackend):
    """The real network backend, recording each address the guard lets it connect to; public ones fail loudly."""

    def __init__(self) -> None:
        self.inner = httpcore2.AnyIOBackend()
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        self.connected.append((host, port))
        if host not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a test tried to connect to {host}: only loopback is allowed")
        return await self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                            socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class LoopbackPds:
    """A real HTTP server on 127.0.0.1 that answers createSession (with `did_doc`) and getSession, and records
    every request; `status`/`body` make it answer an error instead."""

    def __init__(self, did_doc: dict[str, Any] | None = None, status: int = 200, body: str | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                if status != 200:
                    payload = (body or "").encode()
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                else:
                    payload = json.dumps({"did": "did:plc:alice", "handle": "alice.test", "accessJwt": "a.b.c",
                                          "refreshJwt": "d.e.f", "didDoc": did_doc}).encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:  # stderr stays quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "LoopbackPds":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def did_doc(endpoint: str) -> dict[str, Any]:
    return {"id": "did:plc:alice", "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                               "serviceEndpoint": endpoint}]}


def guarded_server(settings: Settings, clock: Any, resolver: MapResolver, *, allow_loopback: bool = False) -> tuple[Any, Recording]:
    server = build_server(settings.model_copy(update={"upstream_allow_loopback": allow_loopback, "confirm": "never"}),
                          clock=clock, resolver=resolver)
    recording = Recording()
    server.runtime.extra["network_backend"] = recording
    return server, recording


def connect_args(pds_url: str) -> dict[str, Any]:
    return {"platform": "bluesky", "handle": "alice.test", "appPassword": "abcd-efgh-ijkl-mnop", "pdsUrl": pds_url}


async def accounts_of(client: Client) -> list[Any]:
    return ok(await client.call_tool("list_accounts", {}))["accounts"]


@pytest.mark.parametrize("answer", PRIVATE_ANSWERS)
async def test_a_pds_name_resolving_to_a_non_public_address_is_refused_before_any_connection(
        settings: Settings, clock: Any, answer: str) -> None:
    resolver = MapResolver({"pds.evil.example": [answer]})
    server, recording = guarded_server(settings, clock, resolver)
    async with Client(server) as client:
        error = err(await client.call_tool("connect_account", connect_args("https://pds.evil.example")))
        assert (error["code"], error["rule"]) == ("validation_failed", "upstream.url_forbidden")
        assert error["retryable"] is False and "platformResponse" not in error
        assert resolver.asked == ["pds.evil.example"] and recording.connected == []
        assert await accounts_of(client) == []


async def test_one_private_answer_among_public_ones_is_enough_to_refuse(settings: Settings, clock: Any) -> None:
    server, recording = guarded_server(settings, clock, MapResolver({"pds.evil.example": ["93.184.216.34", "10.0.0.5"]}))
    async with Client(server) as client:
        error = err(await client.call_tool("connect_account", connect_args("https://pds.evil.example")))
        assert error["rule"] == "upstream.url_forbidden" and recording.connected == []


@pytest.mark.parametrize("spelling", ["http://127.1:{port}", "http://2130706433:{port}", "http://[::ffff:127.0.0.1]:{port}",
                                      "http://0x7f000001:{port}", "http://localhost:{port}", "http://127.0.0.1:{port}"])
async def test_a_live_loopback_service_is_never_reached_and_its_body_never_reflected(
        settings: Settings, clock: Any, spelling: str) -> None:
    with LoopbackPds(status=403, body="INTERNAL-ADMIN-PAGE token=s3cret") as service:
        port = service.url.rsplit(":", 1)[1]
        server, recording = guarded_server(settings, clock, MapResolver({}))
        async with Client(server) as client:
            result = await client.call_tool("connect_account", connect_args(spelling.format(port=port)))
            error = err(result)
            assert error["rule"] == "upstream.url_forbidden"
            assert "INTERNAL-ADMIN-PAGE" not in result.content[0].text and "s3cret" not in result.content[0].text
        assert service.requests == [] and recording.connected == []


async def test_the_development_setting_admits_a_loopback_pds_and_only_loopback(settings: Settings, clock: Any) -> None:
    with LoopbackPds(did_doc=did_doc("https://pds.internal.example")) as pds:
        resolver = MapResolver({"pds.internal.example": ["10.0.0.5"]})
        server, recording = guarded_server(settings, clock, resolver, allow_loopback=True)
        async with Client(server) as client:
            # The loopback PDS is reached (createSession) ...
            error = err(await client.call_tool("connect_account", connect_args(pds.url)))
            # ... but the DID document's private endpoint is refused before the token goes there, and nothing is stored.
            assert (error["code"], error["rule"]) == ("validation_failed", "upstream.url_forbidden")
            assert await accounts_of(client) == []
        assert pds.requests == [("POST", "/xrpc/com.atproto.server.createSession")]
        assert recording.connected == [("127.0.0.1", int(pds.url.rsplit(":", 1)[1]))]


@pytest.mark.parametrize("endpoint", ["http://10.0.0.5", "https://169.254.169.254/", "http://[fd00::1]:2583",
                                      "https://metadata.evil.example", "http://[::ffff:10.0.0.1]"])
async def test_a_did_document_pointing_at_a_private_address_does_not_store_the_account(
        settings: Settings, clock: Any, endpoint: str) -> None:
    with LoopbackPds(did_doc=did_doc(endpoint)) as pds:
        server, recording = guarded_server(settings, clock, MapResolver({"metadata.evil.example": ["169.254.169.254"]}),
                                           allow_loopback=True)
        async with Client(server) as client:
            error = err(await client.call_tool("connect_account", connect_args(pds.url)))
            assert error["rule"] == "upstream.url_forbidden" and error["path"] == "pdsUrl"
            assert await accounts_of(client) == []
        assert all(host == "127.0.0.1" for host, _ in recording.connected)


async def test_a_did_document_naming_a_loopback_pds_works_under_the_development_setting(settings: Settings, clock: Any) -> None:
    with LoopbackPds() as pds:
        pds_doc = did_doc(pds.url.replace("127.0.0.1", "localhost") + "/")
        with LoopbackPds(did_doc=pds_doc) as entry:
            server, _ = guarded_server(settings, clock, MapResolver({}), allow_loopback=True)
            async with Client(server) as client:
                account = ok(await client.call_tool("connect_account", connect_args(entry.url)))
                assert account["defaults"]["pdsUrl"] == pds.url.replace("127.0.0.1", "localhost")
        assert pds.requests == [("GET", "/xrpc/com.atproto.server.getSession")]  # the session is checked where it will be used


async def test_a_stored_account_whose_pds_now_resolves_privately_never_gets_the_token(settings: Settings, clock: Any) -> None:
    """DNS that answered loopback (admitted here by the development setting) at connect time answers the metadata
    address at publish time: the guard decides per connection, so the token is not sent and the account must be
    reconnected."""
    resolver = MapResolver({"pds.flaky.example": ["127.0.0.1"]})
    with LoopbackPds(did_doc=did_doc("http://pds.flaky.example")) as entry, LoopbackPds() as pds:
        server, recording = guarded_server(settings, clock, resolver, allow_loopback=True)
        server.runtime.extra["network_backend"] = _PortMap(recording, {80: int(pds.url.rsplit(":", 1)[1])})
        async with Client(server) as client:
            account = ok(await client.call_tool("connect_account", connect_args(entry.url)))
            assert account["defaults"]["pdsUrl"] == "http://pds.flaky.example"
            assert pds.requests == [("GET", "/xrpc/com.atproto.server.getSession")]
            resolver.table["pds.flaky.example"] = ["169.254.169.254"]
            before = len(recording.connected)
            batch = ok(await client.call_tool("publish_post", {"text": "hello", "targets": [{"accountId": account["id"]}]}))
            result = batch["results"][0]
            assert result["status"] == "rejected" and result["error"]["rule"] == "upstream.url_forbidden"
            assert recording.connected[before:] == [] and len(pds.requests) == 1
            assert ok(await client.call_tool("get_account", {"accountId": account["id"]}))["health"] == "needs_reconnect"


class _PortMap(httpcore2.AsyncNetworkBackend):
    """Behind the guard: sends a vetted loopback connection on a well-known port to a loopback test server's port."""

    def __init__(self, inner: Recording, ports: dict[int, int]) -> None:
        self.inner, self.ports = inner, ports
        self.connected = inner.connected

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        return await self.inner.connect_tcp(host, self.ports.get(port, port), timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@pytest.mark.parametrize("pds_url", ["http://[::1", "https://bsky.social\r\nX-Injected: 1", "https://bsky.social/\n",
                                     "ftp://bsky.social", "https://user:pw@bsky.social", "https://", "not a url",
                                     "https://bsky.social/?q=1", "https://" + "a" * 64 + ".example", "https://exa..mple"])
async def test_a_malformed_pds_url_is_a_validation_error_on_its_field(settings: Settings, clock: Any, pds_url: str) -> None:
    server, recording = guarded_server(settings, clock, MapResolver({}))
    async with Client(server) as client:
        error = err(await client.call_tool("connect_account", connect_args(pds_url)))
        assert error["code"] == "validation_failed" and error["rule"] in ("pdsUrl", "upstream.url_forbidden")
        assert recording.connected == []


async def test_the_operators_external_sandbox_on_loopback_is_trusted_as_configured() -> None:
    import socket

    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recording = Recording()
    backend = GuardedBackend(MapResolver({}), trusted=[("127.0.0.1", port)], inner=recording)
    with pytest.raises(AddressRefused):
        await backend.connect_tcp("127.0.0.1", port + 1)  # another loopback port: the guard refuses, nothing tried
    assert recording.connected == []
    with pytest.raises(httpcore2.ConnectError) as refused:
        await backend.connect_tcp("127.0.0.1", port)  # trusted: handed to the real backend (nothing listens there)
    assert not isinstance(refused.value, AddressRefused) and recording.connected == [("127.0.0.1", port)]
