"""The sandbox adapter: publishes to the local simulated platform (omnipost.sandbox.upstream).

Each piece (the post, each thread part, the first comment) goes through the job's ledger
(platforms/pieces.py): a piece done is never sent again, and one an earlier try sent is reconciled
first by the account's mode's strategy (`sandboxMode` in its defaults, sent to the sandbox at registration):
- `caller_id` (like Bluesky): each piece is PUT under a deterministic id derived from the job's upstream_key
  (`<key>`, `<key>-t1`, ..., `<key>-c`); reconcile reads that id, and a piece that already got through
  answers 409 already_exists with the stored post anyway.
- `own_id` (X, LinkedIn, Facebook, Pinterest): each piece is POSTed and the sandbox assigns its id; the
  same text again is refused as a duplicate. Reconcile searches the account's own posts since the piece's
  marker (less CLOCK_SKEW) for its text, media count, kind and parent; the sandbox's search is consistent,
  so finding nothing means the piece is certainly absent.
- `container` (Instagram, Threads): each piece is a container, polled until FINISHED (a bounded number of
  status reads, no sleeping: `_await_container`; still processing after them, the post is left `processing` and a
  worker checks the same container later); its id is committed as the piece's marker, then it is published.
  Reconcile reads that container's status, which says whether it was published.
"""

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import httpx2
from pydantic import BaseModel, SecretStr

from omnipost.clock import Clock
from omnipost.domain import PLATFORM_ALIASES
from omnipost.errors import PlatformRejectedError, PlatformUnavailableError, ValidationFailedError, echo
from omnipost.platforms.base import AccountContext, AdapterDeps, ConnectRequest, Connected, MediaFile, PublishJob, Published, assembled
from omnipost.platforms.pieces import COMMENT, MAIN, PENDING, Made, Mark, Processing, part
from omnipost.platforms.errormap import AUTH_REFUSED, DUPLICATE, FORBIDDEN, RATE_LIMITED, UNAVAILABLE, ErrorMap, Rule
from omnipost.platforms.calls import raise_for_status, send
from omnipost.preflight.rules import URL_ONLY_MEDIA

PLATFORM = "sandbox"
_CHUNK = 1 << 20
MODES = ("caller_id", "own_id", "container")


def mode_like(platform: str) -> str:
    """The sandbox mode that publishes the way `platform` does: by its exactly-once strategy (registry.py)."""
    from omnipost.platforms.registry import PLATFORMS

    spec = PLATFORMS.get(platform)
    strategy = spec.exactly_once if spec is not None else "caller_id"
    return {"container": "container", "search": "own_id", "idempotency_key": "own_id"}.get(strategy, "caller_id")
MAX_STATUS_POLLS = 5  # container status reads in a row per try before the piece is left `processing`
CHECK_AFTER = timedelta(seconds=30)  # when a worker checks a container still processing again
RECONCILE_WINDOW = timedelta(hours=24)  # how far back `find` searches when it does not know when the post was sent
CLOCK_SKEW = timedelta(minutes=1)  # searched before the send time too: the platform's clock may be behind ours
SEARCH_LIMIT = 100


def _suffix(piece: str) -> str:
    """The suffix of a piece's id in caller_id mode: `` for the post, `-t<i>` for thread part i, `-c` for the comment."""
    return "" if piece == MAIN else f"-{piece}"


def mode_of(account: AccountContext) -> str:
    """The account's sandbox mode; an account connected before the modes existed takes caller-chosen ids."""
    mode = account.defaults.get("sandboxMode")
    return mode if mode in MODES else "caller_id"


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

# The sandbox's own answers (sandbox/upstream.py): `{"error": <code>, "message"}`; 429 carries Retry-After
# in seconds. `duplicate_content` and `forbidden` are the codes its own-id mode and scope refusals answer with.
ERRORS = ErrorMap(rules=(
    Rule(AUTH_REFUSED, status=401, code="unauthorized"),
    Rule(FORBIDDEN, code="forbidden"),
    Rule(DUPLICATE, code="duplicate_content"),
    Rule(RATE_LIMITED, code="rate_limited"),
    Rule(UNAVAILABLE, code="unavailable"),
))


def _hash_file(path: Path) -> tuple[str, int]:
    """sha256 and size of a stored media file, read in chunks (videos can be large)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def _descriptor(m: MediaFile, *, by_url: bool = False) -> dict[str, Any]:
    """What the sandbox records about one attachment (it takes facts, not bytes). `by_url`: the account emulates a
    platform that fetches media from a public URL (Instagram, Threads in container mode), so the attachment carries the
    URL the media host gives, and the sandbox fetches it and checks its bytes against `sha256`."""
    sha256, size = None, m.size
    if m.path is not None:
        sha256, measured = await anyio.to_thread.run_sync(_hash_file, m.path)
        size = size if size is not None else measured
    out: dict[str, Any] = {"mime": m.mime, "size": size, "sha256": sha256}
    if m.alt_text:
        out["altText"] = m.alt_text
    url = await m.public_url() if by_url else m.url
    if url:
        out["url"] = url
    return out


def _headers(account: AccountContext) -> dict[str, str]:
    # No token → no header: the sandbox answers 401 unauthorized, which ERRORS makes PlatformAuthError.
    token = account.credentials.get("token")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _already_exists(response: httpx2.Response) -> dict[str, Any] | None:
    """The stored post when the answer is 409 already_exists (an earlier attempt got through)."""
    if response.status_code != 409:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("error") == "already_exists" and isinstance(body.get("post"), dict):
        return body["post"]
    return None


def _json(response: httpx2.Response) -> dict[str, Any]:
    body = response.json()
    return body if isinstance(body, dict) else {"body": body}


async def register_account(http: httpx2.AsyncClient, base_url: str, handle: str, emulates: str,
                           *, mode: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Create (or log in again to) a sandbox account: `{"account", "token", "handle", "emulates", "mode"}`."""
    body = {"handle": handle, "emulates": emulates} | ({"mode": mode} if mode is not None else {})
    response = await send(http, "POST", f"{base_url.rstrip('/')}/v1/accounts", platform=PLATFORM, write=True,
                          timeout=timeout, json=body)
    raise_for_status(response, PLATFORM, errors=ERRORS)
    return _json(response)


async def connect_account(req: ConnectRequest) -> Connected:
    """connect_account for the sandbox: registers (or logs in again to) the handle on the sandbox upstream, emulating
    `emulates` (whose rules apply) in `sandboxMode` (default caller_id).

    Raises:
        ValidationFailedError: `emulates` missing or not a platform."""
    emulates = req.args.get("emulates")
    if emulates is None or emulates.strip().lower() not in PLATFORM_ALIASES:
        raise ValidationFailedError(f"Unknown platform '{echo(emulates)}'.", path="emulates",
                                    remediation=f"Use one of {', '.join(sorted(PLATFORM_ALIASES))}.")
    real = PLATFORM_ALIASES[emulates.strip().lower()].value
    mode = req.args.get("sandboxMode") or "caller_id"
    issued = await register_account(req.deps.http, req.deps.sandbox_url, req.handle, real, mode=mode)
    defaults = dict(req.defaults) | {"sandboxMode": mode}  # the adapter publishes in the account's mode
    if real == "linkedin":
        # A real LinkedIn connect reads the member id from /v2/userinfo; the sandbox's account id plays it.
        defaults.setdefault("authorUrn", "urn:li:person:" + re.sub(r"[^A-Za-z0-9_-]", "", str(issued["account"])))
    return Connected(handle=req.handle, credentials={"token": issued["token"], "account": issued["account"]},
                     defaults=defaults, emulates=real, identity=str(issued["account"]))


class SandboxAdapter:
    """PlatformAdapter for the sandbox upstream."""

    platform = PLATFORM
    caller_chosen_ids = True  # of caller_id accounts; publishing asks caller_chosen_ids_for(account)

    def __init__(self, http: httpx2.AsyncClient, base_url: str, timeout: float = 30.0, *, clock: Clock | None = None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.clock = clock  # without one, an own_id piece sent at an unknown time is searched with no time bound

    @classmethod
    def from_deps(cls, deps: AdapterDeps) -> "SandboxAdapter":
        return cls(deps.http, deps.sandbox_url, timeout=deps.timeout, clock=deps.clock)

    def caller_chosen_ids_for(self, account: AccountContext) -> bool:
        """Whether the account's platform takes our deterministic ids (only in caller_id mode)."""
        return self.caller_chosen_ids and mode_of(account) == "caller_id"

    def _url(self, post_id: str) -> str:
        return f"{self.base_url}/v1/posts/{quote(post_id, safe='')}"

    async def _put(self, account: AccountContext, post_id: str, body: dict[str, Any]) -> Made:
        """Write one piece under our id (a piece that already got through answers 409 with the stored post)."""
        response = await send(self.http, "PUT", self._url(post_id), platform=PLATFORM, write=True,
                              timeout=self.timeout, json=body, headers=_headers(account))
        if (stored := _already_exists(response)) is not None:
            return self._made(stored, response.status_code, True)
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return self._made(_json(response), response.status_code, False)

    async def _get(self, account: AccountContext, post_id: str) -> Made | None:
        """One stored post, or None when the sandbox has no such id."""
        post = await self._read(account, f"/v1/posts/{quote(post_id, safe='')}")
        return None if post is None else self._made(post, 200, True)

    async def _read(self, account: AccountContext, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """A GET of the sandbox's API: the JSON object, or None on 404."""
        response = await send(self.http, "GET", f"{self.base_url}{path}", platform=PLATFORM, write=False,
                              timeout=self.timeout, headers=_headers(account), **kwargs)
        if response.status_code == 404:
            return None
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return _json(response)

    async def publish(self, job: PublishJob) -> Published:
        """Publish the post, then its thread as a reply chain, then the first comment on the post: each piece through
        the job's ledger, so a piece done is never sent again and one an earlier try sent is reconciled first."""
        account, key, mode, ledger = job.account, job.upstream_key, mode_of(job.account), job.ledger
        target = job.target

        # Instagram and Threads take media only by URL: a container-mode account emulating them is handed URLs.
        by_url = mode == "container" and target.platform in URL_ONLY_MEDIA

        async def piece(name: str, body: dict[str, Any]) -> Made:
            async def sent(make: Callable[[dict[str, Any]], Awaitable[Made]]) -> Made:  # the attachments hashed only to send
                return await make(body | {"media": [await _descriptor(m, by_url=by_url) for m in body["media"]]})

            if mode == "caller_id":
                upstream_id = key + _suffix(name)
                return await ledger.step(name, lambda: sent(lambda b: self._put(account, upstream_id, b)),
                                         lambda _: self._get(account, upstream_id))
            if mode == "own_id":
                return await ledger.step(name, lambda: sent(lambda b: self._create(account, "/v1/posts", b)),
                                         lambda rec: self._search(account, body, rec.sent_at))
            rec = ledger.get(name)
            pending = rec.handle if rec is not None and rec.status == PENDING else None
            return await ledger.step(name, lambda mark: sent(lambda b: self._via_container(account, b, mark, pending)),
                                     lambda rec: self._published_container(account, rec.handle), marks=True)

        main = await piece(MAIN, {"text": target.text, "media": job.media, "replyTo": None, "kind": "post"})
        parent = main.upstream_id
        for i, segment in enumerate(target.thread, start=1):
            parent = (await piece(part(i), {"text": segment, "media": [], "replyTo": parent, "kind": "reply"})).upstream_id
        if target.first_comment:
            await piece(COMMENT, {"text": target.first_comment, "media": [], "replyTo": main.upstream_id, "kind": "comment"})
        published = assembled(ledger, target, main)
        assert published is not None
        return published

    @staticmethod
    def _made(post: dict[str, Any], status: int, existed: bool) -> Made:
        return Made(str(post["id"]), post.get("url"), body=post, status=status, existed=existed)

    async def _create(self, account: AccountContext, path: str, body: dict[str, Any] | None = None) -> Made:
        """One non-idempotent write that makes something new (own_id post, container, container publish)."""
        response = await send(self.http, "POST", f"{self.base_url}{path}", platform=PLATFORM, write=True,
                              timeout=self.timeout, json=body or {}, headers=_headers(account))
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return self._made(_json(response), response.status_code, False)

    async def _via_container(self, account: AccountContext, body: dict[str, Any], mark: Mark, pending: str | None) -> Made:
        """container mode: create the piece's container (or take the one still processing from an earlier try,
        `pending`), check it is FINISHED, record its id (the ledger's marker, committed), publish it. A container
        never published is invisible, so creating one is not the irreversible step."""
        container_id = pending or (await self._create(account, "/v1/containers", body)).upstream_id
        await self._await_container(account, container_id)
        await mark(container_id)
        return await self._create(account, f"/v1/containers/{quote(container_id, safe='')}/publish")

    async def _await_container(self, account: AccountContext, container_id: str) -> None:
        """Read the container's status until it is FINISHED: at most MAX_STATUS_POLLS reads in a row, never sleeping.
        Still IN_PROGRESS after them: raise Processing, so the post is stored `processing` and a worker checks the same
        container again after CHECK_AFTER (the sandbox counts status reads as processing time, so reading a few in a
        row is what finishes a default container at once)."""
        for _ in range(MAX_STATUS_POLLS):
            status = (await self._container(account, container_id) or {}).get("status")
            if status == "FINISHED":
                return
            if status != "IN_PROGRESS":
                raise PlatformRejectedError(f"The sandbox container {container_id} is {status or 'gone'}; nothing was published.",
                                            remediation="Publish the post again (a new container is created).")
        if self.clock is None:
            raise PlatformUnavailableError(f"The sandbox container {container_id} was still processing after {MAX_STATUS_POLLS} "
                                           "status reads; nothing was published.", remediation="Retry later.")
        raise Processing(container_id, self.clock.now() + CHECK_AFTER, f"container {container_id} is still processing")

    async def _container(self, account: AccountContext, container_id: str) -> dict[str, Any] | None:
        """One status read of a container: {"id", "status", "postId"?}, or None when there is no such container."""
        return await self._read(account, f"/v1/containers/{quote(container_id, safe='')}")

    async def _published_container(self, account: AccountContext, container_id: str | None) -> Made | None:
        """container reconcile: the container recorded before its publish says whether it was published (None: it
        was not, or no container was recorded, so nothing of this piece is public)."""
        if container_id is None:
            return None
        status = await self._container(account, container_id) or {}
        if not status.get("postId"):
            return None
        return await self._get(account, str(status["postId"]))

    async def _search(self, account: AccountContext, piece: dict[str, Any], sent_at: datetime | None) -> Made | None:
        """own_id reconcile: the account's first post since the piece was sent (less the clock skew; without a send
        time, the last RECONCILE_WINDOW) with its text, media count, kind and parent."""
        since = sent_at - CLOCK_SKEW if sent_at is not None else (self.clock.now() - RECONCILE_WINDOW if self.clock else None)
        params: dict[str, Any] = {"text": piece["text"], "limit": SEARCH_LIMIT}
        if since is not None:
            params["since"] = _iso(since)
        found = await self._read(account, "/v1/posts", params=params)
        matches = [p for p in (found or {}).get("posts", []) if isinstance(p, dict) and len(p.get("media") or []) == len(piece["media"])
                   and p.get("kind") == piece["kind"] and p.get("replyTo") == piece["replyTo"]]
        return self._made(matches[-1], 200, True) if matches else None  # newest first: the earliest since the send is ours

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """Delete one post (only that post: replies stay, as on most platforms)."""
        response = await send(self.http, "DELETE", self._url(upstream_id), platform=PLATFORM, write=True,
                              timeout=self.timeout, headers=_headers(account))
        raise_for_status(response, PLATFORM, errors=ERRORS)


class SandboxCredentials(BaseModel):
    """A sandbox account: the bearer token the local sandbox issued, and its account id there."""

    token: SecretStr
    account: str
