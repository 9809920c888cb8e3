"""Fetch a URL on a caller's behalf without letting the caller aim us at the local network (SSRF).

Used for URL uploads, link cards and reachability checks (`check_reachable`). The decision is made
on addresses, never on names:

1. The URL is parsed once (`httpx2.URL`: scheme, IDNA, userinfo). Only http/https, no credentials,
   a non-empty host. A host that *is* an address — including the odd IPv4 spellings browsers and
   `inet_aton` accept (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) and bracketed IPv6 — is
   parsed here, so it is judged before any DNS. `localhost` and `*.localhost` are loopback by
   definition (RFC 6761) and are judged as such without asking DNS.
2. A name is resolved ONCE through the injected `Resolver`; if ANY returned address is not public
   the URL is refused (a name with one public and one private address is refused).
3. The request is sent to that exact address: the URL handed to httpx2 is `http(s)://<ip>:<port>`,
   with the `Host` header set to the original host and, for https, the `sni_hostname` request
   extension set to the original host. httpcore2 passes `sni_hostname` to
   `ssl.SSLContext.wrap_*` as `server_hostname`, which is used both for SNI and for certificate
   hostname verification, so the certificate is checked against the name the caller gave while the
   TCP connection goes to the address we judged. DNS is never consulted again, so a rebinding
   answer cannot swap the address between check and connect.
4. Redirects are followed by hand; every Location goes through steps 1-3 again.
5. The body is streamed to `dest` chunk by chunk (raw bytes: `Accept-Encoding: identity` is sent
   and no content-decoding is applied, so a compression bomb cannot inflate in memory), counted,
   hashed, and refused once it passes `max_bytes`.

Pooled connections are keyed by origin, which here is the address; every pinned request sends
`Connection: close` so a TLS connection verified for one name is never reused for another name
served from the same address. Pass a client dedicated to fetching (or None for a fresh one).

Errors are `MediaError`s (public code `validation_failed`) whose `rule` is the rule id:
`media.url_forbidden`, `media.url_unreachable` (retryable) or `media.too_large`.
"""

import hashlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import anyio
import httpx2

from omnipost import __version__
from omnipost.errors import MediaError

URL_FORBIDDEN = "media.url_forbidden"
URL_UNREACHABLE = "media.url_unreachable"
TOO_LARGE = "media.too_large"

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
# Progress callbacks fire at most once per this many bytes (plus once at the end).
PROGRESS_EVERY = 4 * 1024 * 1024

Progress = Callable[[int, int | None], Awaitable[None]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- errors -------------------------------------------------------------------------------


class UrlForbiddenError(MediaError):
    """The URL is not something we fetch: bad scheme, credentials, or a non-public address."""

    def __init__(self, message: str, *, remediation: str | None = None) -> None:
        super().__init__(
            message,
            rule=URL_FORBIDDEN,
            remediation=remediation
            or "Give a public http(s) URL (no credentials) whose host resolves only to public addresses, "
            "or upload the file by path or base64 instead.",
        )


class UrlUnreachableError(MediaError):
    """The URL could not be fetched: resolution or connect failure, timeout, or a non-2xx answer."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, remediation: str | None = None) -> None:
        super().__init__(
            message,
            rule=URL_UNREACHABLE,
            remediation=remediation
            or "Check that the URL opens in a browser without logging in, then retry; or upload the file by path or base64.",
        )
        self.status = status


class MediaTooLargeError(MediaError):
    """The body (or file) is larger than the configured limit."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(
            message,
            rule=TOO_LARGE,
            remediation=f"Send a file of at most {limit:,} bytes (compress or shorten it).",
        )
        self.limit = limit


# --- resolution ---------------------------------------------------------------------------


class Resolver(Protocol):
    """Turns a host name into the IP addresses (strings) it would connect to."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The operating system's resolver, via anyio.getaddrinfo (run in a worker thread)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found: list[str] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            ip = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 scope id never names a public host
            if ip not in found:
                found.append(ip)
        return found


# --- the address guard --------------------------------------------------------------------

# Explicit lists, so the decision does not hinge on one Python version's `is_global` (3.11 calls
# 192.0.0.8 and ::127.0.0.1 global, and multicast is "global" in every version).
_V4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified/'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT (shared)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (includes cloud metadata 169.254.169.254)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments (includes Teredo)"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")


def _embedded_v4(addr: ipaddress.IPv6Address) -> list[tuple[ipaddress.IPv4Address, str]]:
    """IPv4 addresses an IPv6 address carries (and will reach through a translator or tunnel)."""
    if addr in _V4_MAPPED:
        return [(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), "IPv4-mapped")]
    if addr in _NAT64:
        return [(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), "NAT64")]
    if addr in _SIX_TO_FOUR:
        return [(ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF), "6to4")]
    if addr in _TEREDO:
        server, client = addr.teredo or (None, None)
        return [(v4, "Teredo") for v4 in (server, client) if v4 is not None]
    if addr in _V4_COMPATIBLE and int(addr) > 1:
        return [(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), "IPv4-compatible")]
    return []


def non_public_reason(addr: IPAddress) -> str | None:
    """Why `addr` is not a public unicast address, or None when it is."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return "scoped (zone id) IPv6"
        for v4, how in _embedded_v4(addr):
            inner = non_public_reason(v4)
            if inner is not None:
                return f"{how} IPv6 embedding a {inner} IPv4 address ({v4})"
        if addr in _V4_COMPATIBLE:
            return "deprecated IPv4-compatible IPv6"
        if addr in _V4_MAPPED:
            return None  # the embedded address was public; a dual-stack socket connects to it
        for v6net, why in _V6_BLOCKED:
            if addr in v6net:
                return why
        if addr in _NAT64:
            return None  # the embedded address was public: that is where the translator connects
    else:
        for v4net, why in _V4_BLOCKED:
            if addr in v4net:
                return why
        if addr == ipaddress.IPv4Address("255.255.255.255"):
            return "broadcast"
    if addr.is_multicast:
        return "multicast"
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_private:
        return "private"
    if addr.is_reserved:
        return "reserved"
    if not addr.is_global:
        return "not globally routable"
    return None


def _is_loopback(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr == ipaddress.IPv6Address("::1"):
            return True
        mapped = addr.ipv4_mapped
        return mapped is not None and mapped in _LOOPBACK_V4
    return addr in _LOOPBACK_V4


def check_address(ip: str, *, allow_loopback: bool = False) -> None:
    """Raise UrlForbiddenError unless `ip` is a public unicast address.

    `allow_loopback` (keyword-only, tests only; see `fetch`) lets 127.0.0.0/8 and ::1 through.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise UrlForbiddenError(f"{ip!r} is not an IP address") from None
    if allow_loopback and _is_loopback(addr):
        return
    reason = non_public_reason(addr)
    if reason is not None:
        raise UrlForbiddenError(f"the URL points to {addr}, a {reason} address, which is not fetched")


# --- URL parsing --------------------------------------------------------------------------

_NUMBER_LABEL = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")


def _parse_ipv4_number(label: str) -> int | None:
    """One WHATWG IPv4 part: decimal, 0x-hex, or 0-prefixed octal; None if it is not a number."""
    if label[:2] in ("0x", "0X"):
        digits = label[2:]
        return int(digits, 16) if digits else 0
    if len(label) > 1 and label.startswith("0"):
        return int(label[1:], 8) if all(c in "01234567" for c in label[1:]) else None
    return int(label) if label.isdigit() else None


def parse_ipv4_host(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a host spells, the way browsers (WHATWG URL) and inet_aton read it.

    Returns None for a host that is a name. A host whose last label is numeric is an address by
    that definition; if it does not parse as one, it is refused rather than handed to DNS.
    """
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels = labels[:-1]  # one trailing dot is allowed, as in a fully-qualified name
    if not labels or not _NUMBER_LABEL.match(labels[-1]):
        return None
    parts = [_parse_ipv4_number(label) if label else None for label in labels]
    if len(parts) > 4 or any(p is None for p in parts):
        raise UrlForbiddenError(f"the URL host {host!r} looks like an IPv4 address but is not a valid one")
    numbers = [p for p in parts if p is not None]
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise UrlForbiddenError(f"the URL host {host!r} looks like an IPv4 address but is out of range")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


@dataclass(frozen=True)
class _Target:
    """A parsed, validated URL: where to connect and what to say once connected."""

    url: httpx2.URL  # the logical URL (original host), reported back and used to resolve redirects
    scheme: str
    host: str  # ASCII (IDNA) host as written, lower-cased, no brackets
    port: int
    literal: IPAddress | None  # set when the host is an address rather than a name


def parse_target(url: str | httpx2.URL) -> _Target:
    """Parse and vet a URL's shape (not yet its addresses); raise UrlForbiddenError."""
    try:
        parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    except (httpx2.InvalidURL, ValueError, TypeError) as exc:
        raise UrlForbiddenError(f"the URL is not valid: {exc}") from None
    scheme = parsed.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlForbiddenError(f"only http and https URLs are fetched, not {scheme or 'a relative URL'!r}")
    if parsed.userinfo:
        raise UrlForbiddenError("the URL carries credentials (user:password@), which are never sent")
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise UrlForbiddenError("the URL has no host")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise UrlForbiddenError(f"the URL port {port} is not valid")
    literal: IPAddress | None
    if ":" in host:  # httpx2 only lets a colon into the host from a bracketed IPv6 literal
        if "%" in host:
            raise UrlForbiddenError("the URL names a scoped (zone id) IPv6 address, which is never public")
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlForbiddenError(f"the URL host [{host}] is not a valid IPv6 address") from None
    else:
        literal = parse_ipv4_host(host)
        if literal is None:
            _check_dns_name(host)
    return _Target(parsed, scheme, host, port, literal)


_DNS_LABEL = re.compile(r"^[a-z0-9_-]{1,63}$")


def _check_dns_name(host: str) -> None:
    """Refuse a host name no resolver can look up (RFC 1035: labels of 1-63 characters, 253 in all).

    getaddrinfo raises UnicodeError (its IDNA codec) rather than a lookup error for an empty or
    64-character label, and a name with `%`, spaces or `*` in it is no DNS name: such URLs are
    refused here, before any DNS, like any other malformed URL. Underscores are admitted (in use in
    real host names, and harmless to look up).
    """
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise UrlForbiddenError(
            f"the URL host {host[:100]!r} is not a valid DNS name (each dot-separated label must be 1-63 letters, "
            "digits, hyphens or underscores, and the name at most 253 characters)"
        )


def _is_localhost_name(host: str) -> bool:
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


async def vetted_addresses(target: _Target, resolver: Resolver, *, allow_loopback: bool = False,
                           local_receiver: bool = False) -> list[str]:
    """The vetted addresses to connect to: the literal, or every address the name resolves to.

    `local_receiver` is a user's explicit development setting (OMNIPOST_WEBHOOK_ALLOW_LOOPBACK): loopback is
    then allowed in every form (literal, `localhost`, a name resolving to it), and only loopback: private,
    link-local and metadata addresses stay refused.
    """
    if target.literal is not None:
        check_address(str(target.literal), allow_loopback=local_receiver)  # not relaxed by allow_loopback (tests)
        return [str(target.literal)]
    if _is_localhost_name(target.host):
        if local_receiver:
            return ["127.0.0.1", "::1"]  # RFC 6761: never asked of DNS
        raise UrlForbiddenError(f"the URL host {target.host!r} is loopback by definition, which is not fetched")
    try:
        found = await resolver.resolve(target.host.rstrip("."), target.port)
    except OSError as exc:  # socket.gaierror and friends
        raise UrlUnreachableError(f"the URL host {target.host!r} could not be resolved ({exc.strerror or exc})") from None
    except ValueError:  # UnicodeError from getaddrinfo's IDNA codec: the name cannot be looked up, now or later
        raise UrlForbiddenError(f"the URL host {target.host!r} is not a name that can be resolved") from None
    if not found:
        raise UrlUnreachableError(f"the URL host {target.host!r} resolves to no address")
    for ip in found:  # every one: the resolver's order is not ours to trust
        check_address(ip, allow_loopback=allow_loopback or local_receiver)
    return [str(ipaddress.ip_address(ip)) for ip in found]


# --- fetching -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    """What a fetch produced."""

    status: int
    url: str  # the final URL after redirects, with its original host (not the address)
    content_type: str | None
    size: int  # bytes written to dest (or counted, when dest is None)
    sha256: str  # hex digest of those bytes
    address: str  # the IP address the final request was sent to


def _pinned_request(target: _Target, ip: str, timeout: float) -> httpx2.Request:
    """The request for `target`, addressed to `ip`.

    Built directly rather than with client.build_request, so none of the client's default
    headers, cookies or auth (it may be shared) ride along to an arbitrary URL.
    """
    url_host = f"[{ip}]" if ":" in ip else ip
    default_port = DEFAULT_PORTS[target.scheme]
    path = target.url.raw_path.decode("ascii") or "/"
    pinned = httpx2.URL(f"{target.scheme}://{url_host}:{target.port}{path}")
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != default_port:
        host_header += f":{target.port}"
    extensions: dict[str, object] = {"timeout": httpx2.Timeout(timeout).as_dict()}
    if target.scheme == "https" and target.literal is None:
        # SNI and certificate verification for the name, while the socket goes to `ip`.
        extensions["sni_hostname"] = target.host.rstrip(".")
    return httpx2.Request(
        "GET",
        pinned,
        headers={
            "Host": host_header,
            "Accept": "*/*",
            "Accept-Encoding": "identity",
            "Connection": "close",
            "User-Agent": f"omnipost/{__version__} (media fetch)",
        },
        extensions=extensions,
    )


async def _send(
    client: httpx2.AsyncClient, target: _Target, addresses: list[str], timeout: float
) -> tuple[httpx2.Response, str]:
    """Send to the first vetted address that accepts a connection."""
    last: Exception | None = None
    for ip in addresses:
        request = _pinned_request(target, ip, timeout)
        try:
            return await client.send(request, stream=True, follow_redirects=False, auth=None), ip
        except httpx2.ConnectError as exc:  # refused / unreachable / TLS failure: try the next address
            last = exc
    raise UrlUnreachableError(f"could not connect to {target.host!r}: {last}")


async def fetch(
    url: str,
    *,
    http: httpx2.AsyncClient | None,
    resolver: Resolver,
    max_bytes: int,
    timeout: float,
    dest: BinaryIO | None = None,
    max_redirects: int = 5,
    progress: Progress | None = None,
    allow_loopback: bool = False,
) -> FetchResult:
    """GET `url` from a public address only, streaming the body into `dest`.

    `http`: a client to send through (None: a fresh one, closed afterwards). Its redirect setting
    is ignored. `timeout` bounds the whole fetch, DNS and body included. `progress(done, total)`
    is awaited every few MB; `total` is the Content-Length when the server sent one.

    `allow_loopback` is for TESTS ONLY; production code never sets it. It lets a host NAME whose
    resolved addresses are loopback (127.0.0.0/8, ::1) through, so a test can map a fake public
    name to a loopback test server with an injected resolver. Address literals in any spelling
    (`127.0.0.1`, `127.1`, `2130706433`, `[::ffff:127.0.0.1]`, ...) and `localhost` stay refused,
    on every hop, so a test can still prove that a redirect to 127.0.0.1 is refused.
    """
    return await _guarded(url, http, timeout, lambda client: _fetch(
        url, client, resolver, max_bytes, timeout, dest, max_redirects, progress, allow_loopback, read_body=True))


async def check_reachable(
    url: str,
    *,
    http: httpx2.AsyncClient | None,
    resolver: Resolver,
    timeout: float,
    max_redirects: int = 5,
    allow_loopback: bool = False,
) -> FetchResult:
    """Whether `url` answers 2xx to an anonymous GET from a public address (redirects followed, each vetted).

    Same guard and errors as `fetch`; the body is not read (the connection is closed after the
    headers), so a page of any size is reachable. `size` and `sha256` of the result are empty.
    """
    return await _guarded(url, http, timeout, lambda client: _fetch(
        url, client, resolver, 0, timeout, None, max_redirects, None, allow_loopback, read_body=False))


async def _guarded(url: str, http: httpx2.AsyncClient | None, timeout: float,
                   run: Callable[[httpx2.AsyncClient], Awaitable[FetchResult]]) -> FetchResult:
    owned = http is None
    client = httpx2.AsyncClient(trust_env=False, follow_redirects=False) if http is None else http
    try:
        with anyio.fail_after(timeout):
            return await run(client)
    except TimeoutError:
        raise UrlUnreachableError(f"fetching the URL took longer than {timeout:g} s") from None
    finally:
        if owned:
            await client.aclose()


async def _fetch(
    url: str,
    client: httpx2.AsyncClient,
    resolver: Resolver,
    max_bytes: int,
    timeout: float,
    dest: BinaryIO | None,
    max_redirects: int,
    progress: Progress | None,
    allow_loopback: bool,
    *,
    read_body: bool,
) -> FetchResult:
    target = parse_target(url)
    hops = 0
    while True:
        addresses = await vetted_addresses(target, resolver, allow_loopback=allow_loopback)
        try:
            response, ip = await _send(client, target, addresses, timeout)
        except httpx2.TimeoutException:
            raise UrlUnreachableError(f"fetching the URL took longer than {timeout:g} s") from None
        except httpx2.TransportError as exc:
            raise UrlUnreachableError(f"fetching the URL failed: {type(exc).__name__}") from None
        try:
            if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                hops += 1
                if hops > max_redirects:
                    raise UrlUnreachableError(f"the URL redirected more than {max_redirects} times", status=response.status_code)
                try:
                    next_url = target.url.join(response.headers["location"])
                except (httpx2.InvalidURL, ValueError):
                    raise UrlUnreachableError("the URL redirected to an invalid location", status=response.status_code) from None
                target = parse_target(next_url)
                continue
            if not 200 <= response.status_code < 300:
                raise UrlUnreachableError(
                    f"the server answered HTTP {response.status_code}, not a file", status=response.status_code
                )
            size, digest = await _stream_body(response, max_bytes, dest, progress) if read_body else (0, "")
            return FetchResult(
                status=response.status_code,
                url=str(target.url),
                content_type=response.headers.get("content-type"),
                size=size,
                sha256=digest,
                address=ip,
            )
        except httpx2.TimeoutException:
            raise UrlUnreachableError(f"fetching the URL took longer than {timeout:g} s") from None
        except httpx2.TransportError as exc:
            raise UrlUnreachableError(f"reading the response failed: {type(exc).__name__}") from None
        finally:
            await response.aclose()


def _declared_length(response: httpx2.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


async def _stream_body(
    response: httpx2.Response, max_bytes: int, dest: BinaryIO | None, progress: Progress | None
) -> tuple[int, str]:
    total = _declared_length(response)
    if total is not None and total > max_bytes:
        raise MediaTooLargeError(f"the file is {total:,} bytes, over the {max_bytes:,}-byte limit", limit=max_bytes)
    digest = hashlib.sha256()
    done = 0
    next_report = PROGRESS_EVERY
    async for chunk in response.aiter_raw():
        done += len(chunk)
        if done > max_bytes:
            raise MediaTooLargeError(f"the file is over the {max_bytes:,}-byte limit", limit=max_bytes)
        digest.update(chunk)
        if dest is not None:
            dest.write(chunk)
        if progress is not None and done >= next_report:
            next_report = done + PROGRESS_EVERY
            await progress(done, total)
    if progress is not None:
        await progress(done, total)
    return done, digest.hexdigest()
