"""The SSRF-safe fetcher: every hostile URL is refused before a connection is made.

No test sends a packet anywhere but loopback. Guard decisions for private/public addresses are
made with an injected resolver, and every client goes through a tripwire transport that fails
the test if a request is ever addressed to something that is not loopback. Live tests use a
loopback server; the ones that probe loopback spellings assert that server was never reached.
"""

import datetime
import hashlib
import io
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from omnipost.errors import MediaError
from omnipost.media.fetch import (
    TOO_LARGE,
    URL_FORBIDDEN,
    URL_UNREACHABLE,
    FetchResult,
    SystemResolver,
    check_address,
    fetch,
    parse_ipv4_host,
    parse_target,
)

pytestmark = pytest.mark.anyio

WAIT = 20  # seconds any single test may take before it is a failure, not a hang


# --- test doubles -------------------------------------------------------------------------


class FakeResolver:
    """Answers from a table; records every question. Unknown names fail like NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = table or {}
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return list(self.table[host])


class RebindingResolver(FakeResolver):
    """First answer loopback (the test server), then a private address: a DNS-rebinding attacker."""

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return ["127.0.0.1"] if len(self.calls) == 1 else ["10.0.0.7"]


class Tripwire(httpx2.AsyncBaseTransport):
    """A transport that refuses (and records) any request not addressed to a loopback IP."""

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self.inner = httpx2.AsyncHTTPTransport(verify=verify, trust_env=False)
        self.requests: list[httpx2.Request] = []
        self.violations: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        host = request.url.host
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            self.violations.append(str(request.url))
            raise AssertionError(f"tripwire: a request was addressed to {host!r}, not a loopback IP")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def tripwire_client(verify: ssl.SSLContext | bool = True) -> AsyncIterator[tuple[httpx2.AsyncClient, Tripwire]]:
    wire = Tripwire(verify)
    async with httpx2.AsyncClient(transport=wire) as client:
        yield client, wire
    assert wire.violations == []


# --- a loopback HTTP server ---------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[Seen, ByteStream], Awaitable[None]]


@dataclass
class Server:
    port: int
    hits: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)


async def respond(stream: ByteStream, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  *, length: bool = True) -> None:
    head = [f"HTTP/1.1 {status} X"]
    all_headers = {"Connection": "close", **(headers or {})}
    if length:
        all_headers["Content-Length"] = str(len(body))
    head += [f"{k}: {v}" for k, v in all_headers.items()]
    await stream.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)


async def _read_head(stream: ByteStream) -> Seen | None:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, anyio.ClosedResourceError):
            return None
        data += chunk
        if len(data) > 65536:
            return None
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return Seen(method, path, headers)


@asynccontextmanager
async def serve(routes: dict[str, Handler], *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """Serve `routes` on 127.0.0.1 (plain or TLS) for the duration of the block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server = Server(port=listener.extra(SocketAttribute.local_port))
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: server.sni.append(name)  # type: ignore[assignment]
        serving = TLSListener(listener, tls, standard_compatible=False)
    else:
        serving = listener  # type: ignore[assignment]

    async def handle(stream: ByteStream) -> None:
        async with stream:
            seen = await _read_head(stream)
            if seen is None:
                return
            server.hits.append(seen)
            handler = routes.get(seen.path.split("?", 1)[0])
            try:
                if handler is None:
                    await respond(stream, 404, b"not found")
                else:
                    await handler(seen, stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError):
                pass

    async def guarded(stream: ByteStream) -> None:
        try:
            await handle(stream)
        except Exception:  # a failed TLS handshake ends one connection, not the server
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(_serve_forever, serving, guarded)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


async def _serve_forever(listener: object, handler: Handler) -> None:
    try:
        await listener.serve(handler)  # type: ignore[attr-defined]
    except Exception:
        pass


def body(data: bytes, *, content_type: str = "application/octet-stream", length: bool = True) -> Handler:
    async def handler(_seen: Seen, stream: ByteStream) -> None:
        await respond(stream, 200, data, {"Content-Type": content_type}, length=length)
    return handler


def status(code: int) -> Handler:
    async def handler(_seen: Seen, stream: ByteStream) -> None:
        await respond(stream, code, b"nope")
    return handler


def redirect(location: str, code: int = 302) -> Handler:
    async def handler(_seen: Seen, stream: ByteStream) -> None:
        await respond(stream, code, b"", {"Location": location})
    return handler


def hang() -> Handler:
    async def handler(_seen: Seen, _stream: ByteStream) -> None:
        await anyio.Event().wait()  # never answers; the server's task group cancels it at teardown
    return handler


def chunks_forever(chunk: bytes) -> Handler:
    """A body with no Content-Length that never ends (until the client hangs up)."""
    async def handler(_seen: Seen, stream: ByteStream) -> None:
        await stream.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: video/mp4\r\n\r\n")
        while True:
            await stream.send(chunk)
    return handler


async def get(url: str, *, http: httpx2.AsyncClient | None, resolver: FakeResolver | None = None,
              max_bytes: int = 10_000_000, timeout: float = 10, dest: io.BytesIO | None = None,
              allow_loopback: bool = False, **kw: object) -> FetchResult:
    return await fetch(url, http=http, resolver=resolver or FakeResolver(), max_bytes=max_bytes, timeout=timeout,
                       dest=dest, allow_loopback=allow_loopback, **kw)  # type: ignore[arg-type]


def rule_of(exc: pytest.ExceptionInfo[MediaError]) -> str | None:
    return exc.value.rule


# --- the address decision -----------------------------------------------------------------

NOT_PUBLIC = [
    "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.0.1",
    "127.0.0.1", "127.255.255.254", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254",
    "0.0.0.0", "0.1.2.3", "198.18.0.1", "198.19.255.254", "192.0.2.1", "198.51.100.1", "203.0.113.1",
    "192.0.0.8", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "fe80::1", "fe80::1234:5678", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
    "2001:db8::1", "100::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.1.1",
    "::127.0.0.1", "::10.0.0.1", "::8.8.8.8",
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::8.8.8.8",
    "2002:7f00:1::", "2002:a00:1::1", "2002:c0a8:101::",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:a00:1::",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2001:4860:4860::8888",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("ip", NOT_PUBLIC)
def test_check_address_refuses_every_non_public_address(ip: str) -> None:
    with pytest.raises(MediaError) as exc:
        check_address(ip)
    assert rule_of(exc) == URL_FORBIDDEN


@pytest.mark.parametrize("ip", PUBLIC)
def test_check_address_accepts_public_addresses(ip: str) -> None:
    check_address(ip)


@pytest.mark.parametrize("ip", ["not-an-ip", "", "1.2.3", "fe80::1%eth0"])
def test_check_address_refuses_non_addresses(ip: str) -> None:
    with pytest.raises(MediaError) as exc:
        check_address(ip)
    assert rule_of(exc) == URL_FORBIDDEN


def test_allow_loopback_relaxes_only_loopback() -> None:
    check_address("127.0.0.1", allow_loopback=True)
    check_address("::1", allow_loopback=True)
    for ip in ("10.0.0.1", "169.254.169.254", "192.168.0.1", "fd00::1"):
        with pytest.raises(MediaError):
            check_address(ip, allow_loopback=True)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("3232235777", "192.168.1.1"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_odd_ipv4_spellings_parse_like_browsers(host: str, expected: str) -> None:
    assert str(parse_ipv4_host(host)) == expected


@pytest.mark.parametrize("host", ["example.com", "files.example", "1.2.3.4.nip.io", "0x7f.example"])
def test_names_are_not_addresses(host: str) -> None:
    assert parse_ipv4_host(host) is None


@pytest.mark.parametrize("host", ["256.0.0.1", "1.2.3.4.5", "4294967296", "08.0.0.1", "foo.1", "1..1"])
def test_malformed_numeric_hosts_are_refused_not_resolved(host: str) -> None:
    with pytest.raises(MediaError) as exc:
        parse_ipv4_host(host)
    assert rule_of(exc) == URL_FORBIDDEN


# --- fetch refuses before connecting (injected resolver + tripwire) -----------------------

LITERAL_URLS = [
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/admin",
    "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://0.0.0.0/",
    "http://198.18.0.1/", "http://224.0.0.1/", "http://[fd00::1]/", "http://[fe80::1]/",
    "http://[::ffff:10.0.0.1]/", "http://[::ffff:a9fe:a9fe]/", "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b::169.254.169.254]/", "http://[2002:a00:1::]/", "http://[::]/",
    "http://3232235777/", "http://0xa9fea9fe/", "http://0251.0376.0251.0376/", "http://10.1/",
    "https://192.168.0.1:8443/x.mp4",
]


@pytest.mark.parametrize("url", LITERAL_URLS)
async def test_address_literals_are_refused_before_any_dns_or_connection(url: str) -> None:
    resolver = FakeResolver()
    async with tripwire_client() as (client, wire):
        with pytest.raises(MediaError) as exc:
            await get(url, http=client, resolver=resolver)
    assert rule_of(exc) == URL_FORBIDDEN
    assert resolver.calls == []
    assert wire.requests == []


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("internal.example", ["10.0.0.5"]),
        ("metadata.example", ["169.254.169.254"]),
        ("router.example", ["192.168.1.1"]),
        ("cgnat.example", ["100.64.0.9"]),
        ("ula.example", ["fd00::5"]),
        ("mapped.example", ["::ffff:127.0.0.1"]),
        ("nat64.example", ["64:ff9b::a00:5"]),
        ("loopback.example", ["127.0.0.1"]),
        # One public and one private address: refused as a whole, whichever the OS would pick.
        ("mixed.example", ["93.184.216.34", "10.0.0.5"]),
        ("mixed6.example", ["2606:4700::1111", "fe80::1"]),
        ("garbage.example", ["not an address"]),
    ],
)
async def test_names_resolving_to_non_public_addresses_are_refused(name: str, answer: list[str]) -> None:
    resolver = FakeResolver({name: answer})
    async with tripwire_client() as (client, wire):
        with pytest.raises(MediaError) as exc:
            await get(f"https://{name}/photo.jpg", http=client, resolver=resolver)
    assert rule_of(exc) == URL_FORBIDDEN
    assert resolver.calls == [(name, 443)]  # resolved exactly once
    assert wire.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example/a.jpg",
        "file:///etc/passwd",
        "gopher://files.example/",
        "javascript:alert(1)",
        "/relative/path.jpg",
        "http://user:secret@files.example/a.jpg",
        "http://user@files.example/a.jpg",
        "http:///a.jpg",
        "http://localhost/a.jpg",
        "http://LOCALHOST./a.jpg",
        "http://media.localhost/a.jpg",
        "http://[fe80::1%25eth0]/",
        "not a url at all",
    ],
)
async def test_bad_shapes_are_refused(url: str) -> None:
    resolver = FakeResolver({"files.example": ["93.184.216.34"]})
    async with tripwire_client() as (client, wire):
        with pytest.raises(MediaError) as exc:
            await get(url, http=client, resolver=resolver)
    assert rule_of(exc) == URL_FORBIDDEN
    assert resolver.calls == []
    assert wire.requests == []



NOT_DNS_NAMES = ["example..com", ".example.com", "a" * 64 + ".example", "files.example..", ("a" * 62 + ".") * 4 + "com",
                 "exa%20mple.com", "ex%00ample.com", "files.ex*ample"]


@pytest.mark.parametrize("host", NOT_DNS_NAMES)
async def test_hosts_that_are_not_dns_names_are_refused_before_dns(host: str) -> None:
    resolver = FakeResolver({host: ["93.184.216.34"]})
    async with tripwire_client() as (client, wire):
        with pytest.raises(MediaError) as exc:
            await get(f"http://{host}/a.jpg", http=client, resolver=resolver)
    assert rule_of(exc) == URL_FORBIDDEN and not exc.value.retryable
    assert resolver.calls == [] and wire.requests == []


@pytest.mark.parametrize("host", ["a" * 63 + ".example", "files.example.", "my_host.example", "xn--mnchen-3ya.de",
                                  ("a" * 62 + ".") * 3 + "a" * 61])
def test_dns_names_at_the_limits_are_accepted(host: str) -> None:
    assert parse_target(f"https://{host}/").host == host


async def test_a_resolver_that_cannot_encode_the_name_is_a_typed_refusal() -> None:
    class Idna(FakeResolver):
        async def resolve(self, host: str, port: int) -> list[str]:
            raise UnicodeError("encoding with 'idna' codec failed (UnicodeError: label empty or too long)")

    async with tripwire_client() as (client, wire):
        with pytest.raises(MediaError) as exc:
            await get("https://files.example/a.jpg", http=client, resolver=Idna())
    assert rule_of(exc) == URL_FORBIDDEN and wire.requests == []

async def test_allow_loopback_never_admits_literals_or_localhost() -> None:
    resolver = FakeResolver()
    async with tripwire_client() as (client, wire):
        for url in ("http://127.0.0.1/", "http://127.1/", "http://[::1]/", "http://localhost/", "http://10.0.0.1/"):
            with pytest.raises(MediaError) as exc:
                await get(url, http=client, resolver=resolver, allow_loopback=True)
            assert rule_of(exc) == URL_FORBIDDEN
    assert wire.requests == []


async def test_unresolvable_name_is_unreachable() -> None:
    async with tripwire_client() as (client, wire):
        with pytest.raises(MediaError) as exc:
            await get("https://nxdomain.example/a.jpg", http=client, resolver=FakeResolver())
        with pytest.raises(MediaError) as exc2:
            await get("https://empty.example/a.jpg", http=client, resolver=FakeResolver({"empty.example": []}))
    assert rule_of(exc) == URL_UNREACHABLE and exc.value.retryable
    assert rule_of(exc2) == URL_UNREACHABLE
    assert wire.requests == []


async def test_system_resolver_answers_for_localhost_without_network() -> None:
    with anyio.fail_after(WAIT):
        found = await SystemResolver().resolve("localhost", 80)
    assert found and all(ipaddress.ip_address(ip).is_loopback for ip in found)


# --- live: loopback spellings never reach the loopback server -----------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7F.0.0.1", "017700000001",
    "0177.0.0.1", "0177.1", "127.0.0.1.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]",
    "[64:ff9b::127.0.0.1]", "[::1]", "localhost", "LocalHost", "a.localhost",
]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
@pytest.mark.parametrize("allow_loopback", [False, True])
async def test_loopback_spellings_never_reach_a_live_loopback_server(spelling: str, allow_loopback: bool) -> None:
    with anyio.fail_after(WAIT):
        async with serve({"/": body(b"secret")}) as server:
            with pytest.raises(MediaError) as exc:
                # http=None: the fetcher's own client, no tripwire; the server's hit count is the proof.
                await get(f"http://{spelling}:{server.port}/", http=None, allow_loopback=allow_loopback)
            assert rule_of(exc) == URL_FORBIDDEN
            assert server.hits == []


# --- live: pinning, redirects, limits -----------------------------------------------------


async def test_fetch_pins_the_resolved_address_and_sends_the_original_host() -> None:
    payload = bytes(range(256)) * 100
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/clip.mp4": body(payload, content_type="video/mp4")}) as server, \
                tripwire_client() as (client, wire):
            dest = io.BytesIO()
            result = await get(f"http://files.example:{server.port}/clip.mp4?x=1", http=client, resolver=resolver,
                               dest=dest, allow_loopback=True)
    assert dest.getvalue() == payload
    assert result.status == 200
    assert result.size == len(payload)
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert result.content_type == "video/mp4"
    assert result.url == f"http://files.example:{server.port}/clip.mp4?x=1"
    assert result.address == "127.0.0.1"
    assert resolver.calls == [("files.example", server.port)]
    assert [r.url.host for r in wire.requests] == ["127.0.0.1"]  # connected to the address, not the name
    assert server.hits[0].headers["host"] == f"files.example:{server.port}"
    assert server.hits[0].path == "/clip.mp4?x=1"
    assert server.hits[0].headers["accept-encoding"] == "identity"


async def test_dns_is_asked_once_so_rebinding_cannot_swap_the_address() -> None:
    resolver = RebindingResolver()
    with anyio.fail_after(WAIT):
        async with serve({"/a": body(b"ok")}) as server, tripwire_client() as (client, wire):
            result = await get(f"http://rebind.example:{server.port}/a", http=client, resolver=resolver,
                               allow_loopback=True)
    assert result.address == "127.0.0.1"
    assert len(resolver.calls) == 1
    assert [r.url.host for r in wire.requests] == ["127.0.0.1"]


async def test_redirects_are_followed_and_rechecked() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"], "cdn.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/final": body(b"final")}) as cdn:
            routes = {"/start": redirect("/middle", 301), "/middle": redirect(f"http://cdn.example:{cdn.port}/final", 307)}
            async with serve(routes) as origin, tripwire_client() as (client, _wire):
                dest = io.BytesIO()
                result = await get(f"http://files.example:{origin.port}/start", http=client, resolver=resolver,
                                   dest=dest, allow_loopback=True)
    assert dest.getvalue() == b"final"
    assert result.url == f"http://cdn.example:{cdn.port}/final"
    assert [h.path for h in origin.hits] == ["/start", "/middle"]
    assert cdn.hits[0].headers["host"] == f"cdn.example:{cdn.port}"
    assert resolver.calls == [("files.example", origin.port), ("files.example", origin.port), ("cdn.example", cdn.port)]


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/secret", "http://2130706433:{port}/secret",
                                    "http://[::ffff:127.0.0.1]:{port}/secret", "http://localhost:{port}/secret"])
async def test_redirect_to_loopback_literal_is_refused(target: str) -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/secret": body(b"secret")}) as internal:
            async with serve({"/start": redirect(target.format(port=internal.port))}) as origin, \
                    tripwire_client() as (client, _wire):
                with pytest.raises(MediaError) as exc:
                    await get(f"http://files.example:{origin.port}/start", http=client, resolver=resolver,
                              allow_loopback=True)
            assert rule_of(exc) == URL_FORBIDDEN
            assert internal.hits == []  # the guard refused before connecting
            assert len(origin.hits) == 1


@pytest.mark.parametrize(
    ("location", "table"),
    [
        ("http://internal.example/", {"internal.example": ["10.0.0.5"]}),
        ("http://metadata.example/latest/meta-data/", {"metadata.example": ["169.254.169.254"]}),
        ("http://169.254.169.254/latest/meta-data/", {}),
        ("http://[fd00::1]/", {}),
        ("ftp://files.example/x", {}),
        ("http://user:pw@files.example/x", {}),
    ],
)
async def test_redirect_to_private_targets_is_refused_before_connecting(location: str, table: dict[str, list[str]]) -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"], **table})
    with anyio.fail_after(WAIT):
        async with serve({"/start": redirect(location)}) as origin, tripwire_client() as (client, wire):
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{origin.port}/start", http=client, resolver=resolver,
                          allow_loopback=True)
    assert rule_of(exc) == URL_FORBIDDEN
    assert len(wire.requests) == 1  # only the first hop was ever sent


async def test_too_many_redirects_is_unreachable() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/loop": redirect("/loop")}) as origin, tripwire_client() as (client, _wire):
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{origin.port}/loop", http=client, resolver=resolver,
                          allow_loopback=True, max_redirects=3)
    assert rule_of(exc) == URL_UNREACHABLE
    assert len(origin.hits) == 4


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 500, 503, 304])
async def test_non_2xx_is_unreachable(code: int) -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/x": status(code)}) as origin, tripwire_client() as (client, _wire):
            dest = io.BytesIO()
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{origin.port}/x", http=client, resolver=resolver, dest=dest,
                          allow_loopback=True)
    assert rule_of(exc) == URL_UNREACHABLE
    assert getattr(exc.value, "status", None) == code
    assert dest.getvalue() == b""


async def test_declared_length_over_the_cap_is_refused_without_reading() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/big": body(b"x" * 100_000)}) as origin, tripwire_client() as (client, _wire):
            dest = io.BytesIO()
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{origin.port}/big", http=client, resolver=resolver, dest=dest,
                          max_bytes=10_000, allow_loopback=True)
    assert rule_of(exc) == TOO_LARGE
    assert dest.getvalue() == b""


async def test_undeclared_endless_body_is_cut_at_the_cap() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    cap = 1_000_000
    with anyio.fail_after(WAIT):
        async with serve({"/stream": chunks_forever(b"y" * 65536)}) as origin, tripwire_client() as (client, _wire):
            dest = io.BytesIO()
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{origin.port}/stream", http=client, resolver=resolver, dest=dest,
                          max_bytes=cap, allow_loopback=True)
    assert rule_of(exc) == TOO_LARGE
    assert len(dest.getvalue()) <= cap


async def test_exactly_the_cap_is_accepted() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/f": body(b"z" * 5000, length=False)}) as origin, tripwire_client() as (client, _wire):
            result = await get(f"http://files.example:{origin.port}/f", http=client, resolver=resolver,
                               max_bytes=5000, allow_loopback=True)
    assert result.size == 5000


async def test_a_server_that_never_answers_times_out_as_unreachable() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/hang": hang()}) as origin, tripwire_client() as (client, _wire):
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{origin.port}/hang", http=client, resolver=resolver,
                          timeout=0.5, allow_loopback=True)
    assert rule_of(exc) == URL_UNREACHABLE
    assert exc.value.retryable


async def test_connection_refused_is_unreachable() -> None:
    # Bind a port, close it, and aim at it: nothing listens there any more.
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    await listener.aclose()
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with tripwire_client() as (client, _wire):
            with pytest.raises(MediaError) as exc:
                await get(f"http://files.example:{port}/x", http=client, resolver=resolver, allow_loopback=True)
    assert rule_of(exc) == URL_UNREACHABLE


async def test_progress_is_reported() -> None:
    payload = b"p" * (9 * 1024 * 1024)
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    reports: list[tuple[int, int | None]] = []

    async def progress(done: int, total: int | None) -> None:
        reports.append((done, total))

    with anyio.fail_after(WAIT):
        async with serve({"/p": body(payload)}) as origin, tripwire_client() as (client, _wire):
            await get(f"http://files.example:{origin.port}/p", http=client, resolver=resolver, allow_loopback=True,
                      progress=progress, dest=None)
    assert len(reports) >= 3
    assert reports[-1] == (len(payload), len(payload))
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)


# --- https: connect to the pinned address, verify the certificate for the name ------------


def _tls_contexts(cert_names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a leaf for `cert_names`, client context trusting only its test CA)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "omnipost test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cert_names[0])]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in cert_names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return server, client


async def test_https_connects_to_the_address_with_sni_and_verification_for_the_name() -> None:
    server_ctx, client_ctx = _tls_contexts(["media.example"])
    resolver = FakeResolver({"media.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/photo.jpg": body(b"jpeg bytes", content_type="image/jpeg")}, tls=server_ctx) as origin, \
                tripwire_client(client_ctx) as (client, wire):
            dest = io.BytesIO()
            result = await get(f"https://media.example:{origin.port}/photo.jpg", http=client, resolver=resolver,
                               dest=dest, allow_loopback=True)
    assert dest.getvalue() == b"jpeg bytes"
    assert result.url == f"https://media.example:{origin.port}/photo.jpg"
    assert [r.url.host for r in wire.requests] == ["127.0.0.1"]  # TCP went to the pinned address
    assert wire.requests[0].extensions["sni_hostname"] == "media.example"
    assert origin.sni == ["media.example"]  # the server saw the name in the TLS handshake
    assert origin.hits[0].headers["host"] == f"media.example:{origin.port}"


async def test_https_certificate_for_another_name_is_rejected() -> None:
    server_ctx, client_ctx = _tls_contexts(["other.example"])
    resolver = FakeResolver({"media.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/photo.jpg": body(b"jpeg bytes")}, tls=server_ctx) as origin, \
                tripwire_client(client_ctx) as (client, _wire):
            with pytest.raises(MediaError) as exc:
                await get(f"https://media.example:{origin.port}/photo.jpg", http=client, resolver=resolver,
                          allow_loopback=True)
    assert rule_of(exc) == URL_UNREACHABLE
    assert origin.hits == []  # no request was sent over an unverified connection


async def test_a_shared_clients_headers_cookies_and_auth_are_not_sent() -> None:
    resolver = FakeResolver({"files.example": ["127.0.0.1"]})
    wire = Tripwire()
    with anyio.fail_after(WAIT):
        async with serve({"/a": body(b"ok")}) as origin, httpx2.AsyncClient(
            transport=wire, headers={"Authorization": "Bearer platform-token"}, cookies={"session": "s3cret"},
            auth=httpx2.BasicAuth("user", "pw"), follow_redirects=True,
        ) as client:
            await get(f"http://files.example:{origin.port}/a", http=client, resolver=resolver, allow_loopback=True)
    headers = origin.hits[0].headers
    assert "authorization" not in headers and "cookie" not in headers
    assert wire.violations == []


async def test_next_vetted_address_is_tried_when_one_refuses() -> None:
    # The server listens on 127.0.0.1 only, so [::1] refuses (or is unavailable) and 127.0.0.1 answers.
    resolver = FakeResolver({"files.example": ["::1", "127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/a": body(b"ok")}) as origin, tripwire_client() as (client, wire):
            result = await get(f"http://files.example:{origin.port}/a", http=client, resolver=resolver,
                               allow_loopback=True)
    assert result.address == "127.0.0.1"
    assert [r.url.host for r in wire.requests] == ["::1", "127.0.0.1"]
    assert origin.hits[0].headers["host"] == f"files.example:{origin.port}"
