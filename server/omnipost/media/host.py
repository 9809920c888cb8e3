"""Public URLs for stored media, for platforms that fetch media themselves (Instagram, Threads, Pinterest and
Facebook by URL): the `MediaHost` port and its three implementations, chosen by configuration.

- `S3MediaHost`: an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, ...). A file is copied there when it is
  uploaded (so workers on other machines find it too) and again, if missing, when a URL is asked for; the platform
  gets a presigned GET URL that lapses after `media_url_expires`. Requests are signed with botocore's SigV4 signer
  and sent by the runtime's one httpx2 client (no second HTTP stack, async, the file streamed from disk);
  botocore is imported only when a bucket is configured, so a server without one never loads it.
- `SignedUrlHost`: omnipost's own HTTP transport, when a public base URL is configured: `<base>/media/<id>?expires=
  <unix>&signature=<hmac>`, an HMAC-SHA256 over the media id and the expiry with a key derived from the server's
  secret key (store/crypto.py), checked by `MediaRoute` (media/serve.py) on the HTTP transports.
- `OriginalUrlHost`: the caller's own public URL, when the media was fetched from one.

`MediaHosting` tries them in that order (a configured host first: it serves exactly the bytes preflight checked,
while the original URL may have changed since). With none that can serve a file, `url_for` raises
`PublicUrlUnavailableError` (rule `media.public_url_unavailable`), which preflight reports at validate time.

Adapters never see this module: a `MediaFile` (platforms/base.py) carries `public_url()`, bound to the hosting.
"""

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import anyio
import httpx2

from omnipost.clock import Clock
from omnipost.errors import InputError, PlatformUnavailableError

if TYPE_CHECKING:
    from omnipost.config import Settings

logger = logging.getLogger("omnipost.media.host")

RULE = "media.public_url_unavailable"
SETTINGS_HINT = ("Configure a media host: an S3-compatible bucket (OMNIPOST_MEDIA_S3_BUCKET, OMNIPOST_MEDIA_S3_ENDPOINT_URL, "
                 "OMNIPOST_MEDIA_S3_REGION, OMNIPOST_MEDIA_S3_ACCESS_KEY_ID, OMNIPOST_MEDIA_S3_SECRET_ACCESS_KEY), or "
                 "OMNIPOST_PUBLIC_BASE_URL for a server whose HTTP transport the platform can reach; or give the media as a "
                 "public https url instead of a local file.")
_CHUNK = 1 << 20
_SIGNING_CONTEXT = b"omnipost media url v1"


class PublicUrlUnavailableError(InputError):
    """A platform that fetches media by URL was to get a file that no configured host can serve."""

    code = "preflight_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message, rule=RULE, remediation=SETTINGS_HINT)


class MediaHostRefusedError(PublicUrlUnavailableError):
    """The configured bucket refused us (credentials, bucket, region): no URL until the settings are fixed."""


@dataclass(frozen=True)
class StoredMedium:
    """What a host needs to know about one stored file."""

    media_id: str
    sha256: str
    mime: str
    size: int
    path: Path
    source_url: str | None = None  # the public URL it was fetched from, if it was


class MediaHost(Protocol):
    """Something that can hand a platform a URL for a stored file."""

    kind: str

    async def store(self, medium: StoredMedium) -> None:
        """Make the file available to the host ahead of time (at upload); nothing for hosts that serve from disk."""
        ...

    async def url_for(self, medium: StoredMedium) -> str | None:
        """A URL the platform can fetch the file from, or None when this host cannot serve it."""
        ...

    async def remove(self, sha256: str) -> None:
        """Forget a file no media record refers to any more (nothing for hosts that serve from disk)."""
        ...


# ----------------------------------------------------------------------------- the caller's own URL


class OriginalUrlHost:
    """The public URL the media was fetched from (the platform fetches the same address we did)."""

    kind = "original"

    async def store(self, medium: StoredMedium) -> None:
        return None

    async def url_for(self, medium: StoredMedium) -> str | None:
        return medium.source_url

    async def remove(self, sha256: str) -> None:
        return None


# ----------------------------------------------------------------------------- omnipost's own transport


def signing_key(vault_key: bytes) -> bytes:
    """The media URL key, derived from the server's secret key (so every worker sharing it agrees, and it is never
    the credentials key itself)."""
    return hmac.new(vault_key, _SIGNING_CONTEXT, hashlib.sha256).digest()


class SignatureInvalidError(Exception):
    """A media URL whose signature does not match (tampered, or signed with another key)."""

    code = "signature_invalid"


class SignatureExpiredError(Exception):
    """A media URL past its expiry."""

    code = "url_expired"


class SignedUrlHost:
    """Signed, expiring URLs under `<base_url>/media/`, served by this server's HTTP transport (media/serve.py)."""

    kind = "signed"

    def __init__(self, base_url: str, key: bytes, clock: Clock, *, expires: int) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.clock = clock
        self.expires = expires

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"SignedUrlHost({self.base_url!r})"

    def _signature(self, media_id: str, expires_at: int) -> str:
        return hmac.new(self._key, f"{media_id}\n{expires_at}".encode(), hashlib.sha256).hexdigest()

    def sign(self, media_id: str) -> str:
        """The URL for `media_id`, valid until now + expires."""
        expires_at = int(self.clock.now().timestamp()) + self.expires
        query = urlencode({"expires": expires_at, "signature": self._signature(media_id, expires_at)})
        return f"{self.base_url}/media/{quote(media_id, safe='')}?{query}"

    def verify(self, media_id: str, expires: str | None, signature: str | None) -> None:
        """Check a presented URL's signature, then its expiry.

        Raises:
            SignatureInvalidError: missing, malformed or wrong signature.
            SignatureExpiredError: a good signature past its expiry.
        """
        if not expires or not signature or not expires.isdigit() or len(expires) > 12:
            raise SignatureInvalidError("missing or malformed signature")
        if not hmac.compare_digest(self._signature(media_id, int(expires)), signature):
            raise SignatureInvalidError("signature does not match")
        if self.clock.now().timestamp() > int(expires):
            raise SignatureExpiredError("the URL has expired")

    async def store(self, medium: StoredMedium) -> None:
        return None

    async def url_for(self, medium: StoredMedium) -> str | None:
        return self.sign(medium.media_id)

    async def remove(self, sha256: str) -> None:
        return None


# ----------------------------------------------------------------------------- S3-compatible bucket


def _aws_datetime(at: datetime) -> datetime:
    # botocore formats naive UTC datetimes
    return at.astimezone(timezone.utc).replace(tzinfo=None)


class S3MediaHost:
    """Media in an S3-compatible bucket, content-addressed (`<prefix><sha256>`), handed out as presigned GET URLs.

    Signing is botocore's (`S3SigV4Auth` for our own PUT/HEAD, `S3SigV4QueryAuth` for presigned URLs), with the
    signing time taken from the injected clock, so a URL's validity is decided by the same clock as everything else.
    """

    kind = "s3"

    def __init__(self, http: httpx2.AsyncClient, clock: Clock, *, bucket: str, region: str, access_key_id: str,
                 secret_access_key: str, endpoint_url: str | None = None, path_style: bool | None = None,
                 prefix: str = "omnipost/media/", expires: int = 900, timeout: float = 120.0) -> None:
        self.http = http
        self.clock = clock
        self.bucket = bucket
        self.region = region
        self.prefix = prefix
        self.expires = expires
        self.timeout = timeout
        endpoint = (endpoint_url or f"https://s3.{region}.amazonaws.com").rstrip("/")
        path_style = endpoint_url is not None if path_style is None else path_style
        parts = urlsplit(endpoint)
        if path_style:
            self._base = f"{endpoint}/{quote(bucket, safe='')}"
        else:
            self._base = f"{parts.scheme}://{bucket}.{parts.netloc}{parts.path}"
        self._credentials = (access_key_id, secret_access_key)

    def __repr__(self) -> str:  # credentials stay out of logs and tracebacks
        return f"S3MediaHost(bucket={self.bucket!r}, base={self._base!r})"

    def key_for(self, sha256: str) -> str:
        return f"{self.prefix}{sha256}"

    def object_url(self, sha256: str) -> str:
        return f"{self._base}/{quote(self.key_for(sha256), safe='/')}"

    def _sign(self, method: str, url: str, headers: dict[str, str], *, query: bool, payload_sha256: str | None = None) -> Any:
        """A botocore AWSRequest for (method, url, headers), signed at the clock's time (query: presigned)."""
        from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth  # lazy: only servers with a bucket load botocore
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        credentials = Credentials(*self._credentials)
        signer = (S3SigV4QueryAuth(credentials, "s3", self.region, expires=self.expires) if query
                  else S3SigV4Auth(credentials, "s3", self.region))
        request = AWSRequest(method=method, url=url, headers=headers)
        if payload_sha256 is not None:
            request.context["payload_sha256"] = payload_sha256
        _add_auth_at(signer, request, _aws_datetime(self.clock.now()))
        return request

    def presign(self, sha256: str) -> str:
        """A presigned GET URL for the object, valid for `expires` seconds from the clock's now."""
        return str(self._sign("GET", self.object_url(sha256), {}, query=True).url)

    async def exists(self, medium: StoredMedium) -> bool:
        """Whether the bucket already holds the object with the file's size (content-addressed: same key, same bytes)."""
        signed = self._sign("HEAD", self.object_url(medium.sha256), {}, query=False)
        response = await self._send("HEAD", signed)
        if response.status_code == 404:
            return False
        self._raise_for(response, "check")
        return response.headers.get("content-length") == str(medium.size)

    async def store(self, medium: StoredMedium) -> None:
        """Copy the file into the bucket unless it is there already (streamed from disk, signed with its digest)."""
        if await self.exists(medium):
            return
        headers = {"Content-Type": medium.mime, "Content-Length": str(medium.size)}
        signed = self._sign("PUT", self.object_url(medium.sha256), headers, query=False, payload_sha256=medium.sha256)
        response = await self._send("PUT", signed, content=_file_chunks(medium.path))
        self._raise_for(response, "upload")

    async def url_for(self, medium: StoredMedium) -> str | None:
        await self.store(medium)  # uploaded before this host was configured, or the copy at upload failed
        return self.presign(medium.sha256)

    async def remove(self, sha256: str) -> None:
        """Delete the object (S3 answers 204 whether or not it existed). A presigned URL already handed out then
        answers 404; a later publish of the same content copies it again (url_for)."""
        signed = self._sign("DELETE", self.object_url(sha256), {}, query=False)
        self._raise_for(await self._send("DELETE", signed), "delete")

    async def _send(self, method: str, signed: Any, content: Any = None) -> httpx2.Response:
        try:
            return await self.http.request(method, str(signed.url), headers=dict(signed.headers.items()), content=content,
                                           timeout=self.timeout)
        except httpx2.HTTPError as exc:
            raise PlatformUnavailableError(f"The media bucket could not be reached ({type(exc).__name__}).",
                                           remediation="Check OMNIPOST_MEDIA_S3_ENDPOINT_URL and that the bucket answers; "
                                           "publishing is retried.") from None

    def _raise_for(self, response: httpx2.Response, what: str) -> None:
        """A 5xx or 429 is the bucket's passing trouble (retryable); any other refusal is its configuration."""
        if response.status_code < 300:
            return
        code = _s3_error_code(response)
        message = f"The media bucket refused the {what} ({response.status_code} {code or 'no error code'})."
        if response.status_code >= 500 or response.status_code == 429:
            raise PlatformUnavailableError(message, status=response.status_code, remediation="Publishing is retried.")
        raise MediaHostRefusedError(message + " Check the bucket name, region, endpoint and that the access key may "
                                    "read and write objects in it (OMNIPOST_MEDIA_S3_*).")


def _add_auth_at(signer: Any, request: Any, at: datetime) -> None:
    """botocore's SigV4 `add_auth`, with the signing time given rather than read from the system clock (botocore
    reads it inside add_auth; the steps below are the same ones it takes after that). A known payload digest
    (request.context["payload_sha256"]) is used instead of reading the body: the store names files by it."""
    from botocore.auth import SIGV4_TIMESTAMP

    request.context["timestamp"] = at.strftime(SIGV4_TIMESTAMP)
    known = request.context.get("payload_sha256")
    if known is not None:
        signer.payload = lambda _request: known  # type: ignore[method-assign]
    signer._modify_request_before_signing(request)  # noqa: SLF001 - botocore's own step
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    signer._inject_signature_to_request(request, signer.signature(string_to_sign, request))  # noqa: SLF001


def _s3_error_code(response: httpx2.Response) -> str | None:
    """The <Code> of an S3 error document (never the message, which may echo request details)."""
    text = response.text[:2000] if response.request.method != "HEAD" else ""
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6:end] if 0 <= start < end else None


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A stored file, a chunk at a time, read in a worker thread (memory stays flat for large videos)."""
    f = await anyio.open_file(path, "rb")
    try:
        while chunk := await f.read(_CHUNK):
            yield chunk
    finally:
        await f.aclose()


# ----------------------------------------------------------------------------- the choice


class MediaHosting:
    """The hosts this server has, in order of preference: the configured one (bucket or own transport), then the
    caller's original URL."""

    def __init__(self, host: MediaHost | None) -> None:
        self.host = host
        self.hosts: tuple[MediaHost, ...] = (*((host,) if host is not None else ()), OriginalUrlHost())

    @property
    def configured(self) -> bool:
        """Whether any stored file can get a public URL (not only those that came from one)."""
        return self.host is not None

    def can_serve(self, source_url: str | None) -> bool:
        """Whether a file with this origin can be handed to a platform that fetches by URL."""
        return self.configured or bool(source_url)

    async def store(self, medium: StoredMedium) -> None:
        """Copy a newly uploaded file to the configured host; a failure is logged, not raised (publishing tries
        again, and platforms that take bytes never need it)."""
        if self.host is None:
            return
        try:
            await self.host.store(medium)
        except (PlatformUnavailableError, MediaHostRefusedError) as exc:
            logger.warning("media %s not copied to the %s host at upload: %s", medium.media_id, self.host.kind, exc.message)

    async def remove(self, sha256: str) -> None:
        """Delete a file no record refers to from the configured host; a failure is logged (the object stays)."""
        if self.host is None:
            return
        try:
            await self.host.remove(sha256)
        except (PlatformUnavailableError, MediaHostRefusedError) as exc:
            logger.warning("media object %s… not deleted from the %s host: %s", sha256[:12], self.host.kind, exc.message)

    async def url_for(self, medium: StoredMedium) -> str:
        """A public URL for the file.

        Raises:
            PublicUrlUnavailableError: no host can serve it (no bucket, no public base URL, not from a URL).
            MediaHostRefusedError: the bucket refused our credentials or request (a PublicUrlUnavailableError).
            PlatformUnavailableError: the bucket could not be reached or failed (retryable).
        """
        for host in self.hosts:
            url = await host.url_for(medium)
            if url is not None:
                return url
        raise PublicUrlUnavailableError(
            f"Media {medium.media_id} is a local file, and this platform fetches media from a public URL; no media host "
            "is configured.")


def build_hosting(settings: "Settings", http: httpx2.AsyncClient, clock: Clock, vault_key: bytes) -> MediaHosting:
    """The hosting the settings describe: a bucket if one is configured, else signed URLs if a public base URL is."""
    s = settings
    if s.media_s3_bucket:
        if s.media_s3_access_key_id is None or s.media_s3_secret_access_key is None:
            from omnipost.errors import ConfigError

            raise ConfigError("OMNIPOST_MEDIA_S3_BUCKET is set without OMNIPOST_MEDIA_S3_ACCESS_KEY_ID and "
                              "OMNIPOST_MEDIA_S3_SECRET_ACCESS_KEY.", remediation=SETTINGS_HINT)
        return MediaHosting(S3MediaHost(
            http, clock, bucket=s.media_s3_bucket, region=s.media_s3_region,
            access_key_id=s.media_s3_access_key_id.get_secret_value(),
            secret_access_key=s.media_s3_secret_access_key.get_secret_value(),
            endpoint_url=s.media_s3_endpoint_url, path_style=s.media_s3_path_style, prefix=s.media_s3_prefix,
            expires=s.media_url_expires, timeout=max(s.upstream_timeout, 120.0)))
    if s.public_base_url:
        return MediaHosting(SignedUrlHost(s.public_base_url, signing_key(vault_key), clock, expires=s.media_url_expires))
    return MediaHosting(None)
