"""The SSRF guard for upstream API calls: every connection the runtime's HTTP client opens goes to a vetted address.

Upstream base URLs do not all come from us: a caller gives `connect_account` a `pdsUrl`, a PDS answers with a DID
document naming another endpoint, and later platforms discover instance and OAuth endpoints at run time. Checking
such a URL once and then handing it to the HTTP client would leave a window (DNS can answer differently at connect
time), so the check lives where the socket is opened: `GuardedBackend` is the client's network backend. For each
new connection it resolves the host ONCE through the injected `Resolver`, refuses it if ANY address is not public
(private, loopback, link-local and cloud metadata, CGNAT, NAT64/6to4/Teredo embeddings of those, ...: the same
decision as media and webhook URLs, `media.fetch`), and connects to the vetted address itself. TLS still verifies
the certificate for the host name (httpcore passes the origin's name as `server_hostname`).

Hosts the operator configured (the external sandbox, `OMNIPOST_SANDBOX_URL`) are trusted as given. For local
development against a PDS on this machine, `OMNIPOST_UPSTREAM_ALLOW_LOOPBACK=1` admits loopback, and only loopback.

A refusal is `AddressRefused` (an httpcore ConnectError, so the client maps it to httpx2.ConnectError);
`platforms.calls.send` turns it into `UpstreamForbiddenError`: nothing was sent, no upstream body is reflected.
"""

from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

from omnipost.errors import ErrorObject, InputError, ValidationFailedError
from omnipost.media.fetch import Resolver, UrlForbiddenError, UrlUnreachableError, parse_target, vetted_addresses

UPSTREAM_FORBIDDEN = "upstream.url_forbidden"


class UpstreamForbiddenError(InputError):
    """An upstream URL points somewhere omnipost does not connect to (a non-public address)."""

    code = "validation_failed"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, rule=UPSTREAM_FORBIDDEN,
                         remediation="Use the platform's public https address (a host that resolves only to public "
                                     "addresses). For a server on this machine during development, set "
                                     "OMNIPOST_UPSTREAM_ALLOW_LOOPBACK=1.")
        self.path = path

    def to_error_object(self, request_id: str | None = None) -> ErrorObject:
        obj = super().to_error_object(request_id)
        obj.path = self.path
        return obj


class AddressRefused(httpcore2.ConnectError):
    """The guard refused to open a connection (carries the reason; nothing was sent)."""


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """A network backend that connects only to public addresses (see the module docstring)."""

    def __init__(self, resolver: Resolver, *, allow_loopback: bool = False, trusted: Iterable[tuple[str, int]] = (),
                 inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self.resolver = resolver
        self.allow_loopback = allow_loopback
        self.trusted = frozenset((host.lower(), port) for host, port in trusted)
        self.inner = inner or httpcore2.AnyIOBackend()

    async def vet(self, host: str, port: int) -> list[str]:
        """The addresses a connection to host:port may use; raises AddressRefused."""
        try:
            target = parse_target(httpx2.URL(scheme="http", host=host, port=port))
            return await vetted_addresses(target, self.resolver, local_receiver=self.allow_loopback)
        except (UrlForbiddenError, UrlUnreachableError) as exc:
            raise AddressRefused(exc.message) from None

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        if (host.lower(), port) in self.trusted:
            return await self.inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options)
        last: Exception | None = None
        for ip in await self.vet(host, port):
            try:
                return await self.inner.connect_tcp(ip, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore2.ConnectError as exc:  # refused / unreachable: the next vetted address
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        raise AddressRefused("unix sockets are never upstreams")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class LazyTLSTransport(httpx2.AsyncHTTPTransport):
    """httpx2's own transport (pooling, HTTP/1.1, TLS) whose TLS context (the loaded CA store, about 3 MB) is made at
    its first request rather than when it is built: a server that only answers local tools never pays for it."""

    def __init__(self, *, limits: httpx2.Limits = httpx2.Limits(max_connections=100, max_keepalive_connections=20),
                 network_backend: Any = None, trust_env: bool = True) -> None:
        # Not super().__init__, which makes the TLS context now; the pool is the one it would build.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=None, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=network_backend)
        self._trust_env = trust_env
        self._tls_ready = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if not self._tls_ready:  # before the pool opens its first connection (it would make a context per connection)
            self._pool._ssl_context = httpx2.create_ssl_context(trust_env=self._trust_env)  # type: ignore[attr-defined]
            self._tls_ready = True
        return await super().handle_async_request(request)


class GuardedTransport(LazyTLSTransport):
    """The runtime's transport: every connection opened through a GuardedBackend."""

    def __init__(self, backend: GuardedBackend, *, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits, network_backend=backend)


def refused_reason(exc: BaseException) -> str | None:
    """The guard's reason when `exc` (an httpx2 error) is its refusal, else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, AddressRefused):
            return str(cause)
        cause = cause.__cause__
    return None


def check_base_url(url: str, *, path: str) -> str:
    """A caller-given upstream base URL, normalised (no trailing slash); ValidationFailed-style errors name `path`.

    Only the shape is judged here (http/https, a host, no credentials, query or fragment); where it may connect is
    the guard's decision at connect time.
    """
    def bad(why: str) -> ValidationFailedError:
        return ValidationFailedError(f"{path} is not a usable server URL: {why}.", path=path,
                                     remediation="Give the server's base URL, e.g. https://bsky.social.")

    if any(c in url for c in "\r\n\t\x00") or url != url.strip():
        raise bad("it contains whitespace or control characters")
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError, TypeError, UnicodeError):
        raise bad("it does not parse as a URL") from None
    if parsed.scheme not in ("http", "https"):
        raise bad("only http and https are used")
    if not parsed.host:
        raise bad("it has no host")
    if parsed.userinfo:
        raise bad("it carries credentials")
    if parsed.query or parsed.fragment:
        raise bad("it has a query or fragment")
    try:
        parse_target(parsed)
    except UrlForbiddenError as exc:
        raise UpstreamForbiddenError(f"{path}: {exc.message}", path=path) from None
    return str(parsed).rstrip("/")
