"""The sandbox adapter: publishes to the local simulated platform (omnipost.sandbox.upstream).

Every piece of a post is written with PUT under a deterministic id derived from the job's
upstream_key (`<key>`, `<key>-t1`, `<key>-t2`, ..., `<key>-c`), so repeating a publish after a
crash or an unknown outcome cannot duplicate anything: a piece that already got through answers
409 already_exists with the stored post, and is taken as done.

That is the account's `caller_id` mode (like Bluesky). An account connected in another mode
(`sandboxMode` in its defaults, sent to the sandbox at registration) publishes as the next platforms do:
- `own_id` (X, LinkedIn, Facebook, Pinterest): each piece is POSTed and the sandbox assigns its id; the
  same text again is refused as a duplicate. No id of ours reaches the platform, so exactly-once rests
  on reconcile by search: `find` looks for the account's own posts since the send with the same text and
  media count; an absent post stays `unknown` (caller_chosen_ids_for is False), never re-sent blind.
- `container` (Instagram, Threads): each piece is a container, polled until FINISHED (a bounded number
  of status reads, no sleeping: `_await_container`), then published; publishing a container again
  answers the same post. `find` reads the status of the container this adapter created for the job.
"""

import hashlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import httpx2

from omnipost.clock import Clock
from omnipost.errors import PlatformRejectedError, PlatformUnavailableError
from omnipost.platforms.base import AccountContext, MediaFile, PublishJob, Published
from omnipost.platforms.errormap import AUTH_REFUSED, DUPLICATE, FORBIDDEN, RATE_LIMITED, UNAVAILABLE, ErrorMap, Rule
from omnipost.platforms.http import raise_for_status, send

PLATFORM = "sandbox"
_CHUNK = 1 << 20
MODES = ("caller_id", "own_id", "container")
MAX_STATUS_POLLS = 5  # container status reads per piece before giving up for now (nothing is published then)
RECONCILE_WINDOW = timedelta(hours=24)  # how far back `find` searches when it does not know when the post was sent
CLOCK_SKEW = timedelta(minutes=1)  # searched before the send time too: the platform's clock may be behind ours
SEARCH_LIMIT = 100
_REMEMBERED = 1000  # send times / container ids kept per adapter for find (the ledger will hold them durably)

Write = Callable[[str, dict[str, Any]], Awaitable[tuple[dict[str, Any], int, bool]]]  # (piece suffix, body) -> put's answer


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


async def _descriptor(m: MediaFile) -> dict[str, Any]:
    """What the sandbox records about one attachment (it takes facts, not bytes)."""
    sha256, size = None, m.size
    if m.path is not None:
        sha256, measured = await anyio.to_thread.run_sync(_hash_file, m.path)
        size = size if size is not None else measured
    out: dict[str, Any] = {"mime": m.mime, "size": size, "sha256": sha256}
    if m.alt_text:
        out["altText"] = m.alt_text
    if m.url:
        out["url"] = m.url
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


class SandboxAdapter:
    """PlatformAdapter for the sandbox upstream."""

    platform = PLATFORM
    caller_chosen_ids = True  # of caller_id accounts; publishing asks caller_chosen_ids_for(account)

    def __init__(self, http: httpx2.AsyncClient, base_url: str, timeout: float = 30.0, *, clock: Clock | None = None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.clock = clock  # without one, find searches an own_id account's posts with no time bound
        self._sent_at: dict[str, datetime] = {}  # upstream key -> when its first piece was sent (own_id, container)
        self._containers: dict[str, str] = {}  # upstream key + piece suffix -> the container created for it

    def caller_chosen_ids_for(self, account: AccountContext) -> bool:
        """Whether the account's platform takes our deterministic ids (only in caller_id mode)."""
        return self.caller_chosen_ids and mode_of(account) == "caller_id"

    def _remember(self, memory: dict[str, Any], key: str, value: Any) -> None:
        if len(memory) >= _REMEMBERED:
            memory.pop(next(iter(memory)))
        memory[key] = value

    def _url(self, post_id: str) -> str:
        return f"{self.base_url}/v1/posts/{quote(post_id, safe='')}"

    async def _put(self, account: AccountContext, post_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
        """Write one piece: (the stored post, HTTP status, whether it already existed)."""
        response = await send(self.http, "PUT", self._url(post_id), platform=PLATFORM, write=True,
                              timeout=self.timeout, json=body, headers=_headers(account))
        if (stored := _already_exists(response)) is not None:
            return stored, response.status_code, True
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return _json(response), response.status_code, False

    async def _get(self, account: AccountContext, post_id: str) -> dict[str, Any] | None:
        """One stored post, or None when the sandbox has no such id."""
        return await self._read(account, f"/v1/posts/{quote(post_id, safe='')}")

    async def _read(self, account: AccountContext, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """A GET of the sandbox's API: the JSON object, or None on 404."""
        response = await send(self.http, "GET", f"{self.base_url}{path}", platform=PLATFORM, write=False,
                              timeout=self.timeout, headers=_headers(account), **kwargs)
        if response.status_code == 404:
            return None
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return _json(response)

    async def publish(self, job: PublishJob) -> Published:
        """Publish the post, then its thread as a reply chain, then the first comment on the post."""
        account, key, mode = job.account, job.upstream_key, mode_of(job.account)
        write: Write
        if mode == "caller_id":
            async def write(suffix: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
                return await self._put(account, f"{key}{suffix}", body)
        else:
            if self.clock is not None and key not in self._sent_at:
                self._remember(self._sent_at, key, self.clock.now())  # before the first irreversible call

            async def write(suffix: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
                if mode == "own_id":
                    return await self._create(account, "/v1/posts", body)
                return await self._via_container(account, f"{key}{suffix}", body)
        target = job.target
        media = [await _descriptor(m) for m in job.media]
        post, status, existed = await write("", {"text": target.text, "media": media, "replyTo": None, "kind": "post"})
        main_id = str(post.get("id", key))
        thread_ids: list[str] = []
        parent = main_id
        for i, segment in enumerate(target.thread, start=1):
            reply, _, _ = await write(f"-t{i}", {"text": segment, "media": [], "replyTo": parent, "kind": "reply"})
            parent = str(reply.get("id", f"{key}-t{i}"))
            thread_ids.append(parent)
        comment_ids: tuple[str, ...] = ()
        if target.first_comment:
            comment, _, _ = await write("-c", {"text": target.first_comment, "media": [], "replyTo": main_id, "kind": "comment"})
            comment_ids = (str(comment.get("id", f"{key}-c")),)
        return Published(upstream_id=main_id, url=post.get("url"), thread_ids=tuple(thread_ids),
                         first_comment_ids=comment_ids, http_status=status, response=post, already_existed=existed)

    async def _create(self, account: AccountContext, path: str, body: dict[str, Any] | None = None) -> tuple[dict[str, Any], int, bool]:
        """One non-idempotent write that makes something new (own_id post, container, container publish)."""
        response = await send(self.http, "POST", f"{self.base_url}{path}", platform=PLATFORM, write=True,
                              timeout=self.timeout, json=body or {}, headers=_headers(account))
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return _json(response), response.status_code, False

    async def _via_container(self, account: AccountContext, piece: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
        """container mode: create the piece's container, wait until it is FINISHED, publish it."""
        container, _, _ = await self._create(account, "/v1/containers", body)
        container_id = str(container["id"])
        self._remember(self._containers, piece, container_id)  # before publishing: find reads its status
        await self._await_container(account, container_id)
        return await self._create(account, f"/v1/containers/{quote(container_id, safe='')}/publish")

    async def _await_container(self, account: AccountContext, container_id: str) -> None:
        """Read the container's status until it is FINISHED: at most MAX_STATUS_POLLS reads, never sleeping (a
        container still processing fails the attempt as retryable: nothing was published, a retry starts afresh).
        One small function so the poll can move into a persisted `processing` state."""
        for _ in range(MAX_STATUS_POLLS):
            status = (await self._container(account, container_id) or {}).get("status")
            if status == "FINISHED":
                return
            if status != "IN_PROGRESS":
                raise PlatformRejectedError(f"The sandbox container {container_id} is {status or 'gone'}; nothing was published.",
                                            remediation="Publish the post again (a new container is created).")
        raise PlatformUnavailableError(f"The sandbox container {container_id} was still processing after {MAX_STATUS_POLLS} "
                                       "status reads; nothing was published.", remediation="Retry later.")

    async def _container(self, account: AccountContext, container_id: str) -> dict[str, Any] | None:
        """One status read of a container: {"id", "status", "postId"?}, or None when there is no such container."""
        return await self._read(account, f"/v1/containers/{quote(container_id, safe='')}")

    async def _search(self, account: AccountContext, piece: dict[str, Any], since: datetime | None) -> dict[str, Any] | None:
        """The account's first post since `since` with the piece's text, media count, kind and parent (search reconcile)."""
        params: dict[str, Any] = {"text": piece["text"], "limit": SEARCH_LIMIT}
        if since is not None:
            params["since"] = _iso(since)
        found = await self._read(account, "/v1/posts", params=params)
        matches = [p for p in (found or {}).get("posts", []) if isinstance(p, dict) and len(p.get("media") or []) == len(piece["media"])
                   and p.get("kind") == piece["kind"] and p.get("replyTo") == piece["replyTo"]]
        return matches[-1] if matches else None  # newest first: the earliest since the send is ours

    def _since(self, key: str) -> datetime | None:
        if key in self._sent_at:
            return self._sent_at[key] - CLOCK_SKEW
        return None if self.clock is None else self.clock.now() - RECONCILE_WINDOW

    async def find(self, job: PublishJob) -> Published | None:
        """The post and the thread and comment pieces found so far: under its deterministic ids (caller_id), through
        the containers this adapter created for it (container), or by searching the account's posts (own_id, or a
        container this process did not create)."""
        # Fewer thread_ids than the target's thread (or no first comment id) means an earlier attempt
        # stopped part-way; publishing again completes it without duplicating what exists (caller_id).
        account, key, mode = job.account, job.upstream_key, mode_of(job.account)
        since = self._since(key)

        async def read(suffix: str, piece: dict[str, Any]) -> dict[str, Any] | None:
            if mode == "caller_id":
                return await self._get(account, f"{key}{suffix}")
            if mode == "container" and (container_id := self._containers.get(f"{key}{suffix}")) is not None:
                status = await self._container(account, container_id) or {}
                # the container tells the truth: published or not
                return await self._get(account, str(status["postId"])) if status.get("postId") else None
            return await self._search(account, piece, since)

        target = job.target
        post = await read("", {"text": target.text, "media": job.media, "replyTo": None, "kind": "post"})
        if post is None:
            return None
        main_id = str(post.get("id", key))
        thread_ids: list[str] = []
        parent = main_id
        for i, segment in enumerate(target.thread, start=1):
            if (reply := await read(f"-t{i}", {"text": segment, "media": (), "replyTo": parent, "kind": "reply"})) is None:
                break  # a chain is written in order: nothing after a gap
            parent = str(reply.get("id", f"{key}-t{i}"))
            thread_ids.append(parent)
        comment_ids: tuple[str, ...] = ()
        if target.first_comment and (comment := await read("-c", {"text": target.first_comment, "media": (), "replyTo": main_id,
                                                                   "kind": "comment"})) is not None:
            comment_ids = (str(comment.get("id", f"{key}-c")),)
        return Published(upstream_id=main_id, url=post.get("url"), thread_ids=tuple(thread_ids),
                         first_comment_ids=comment_ids, http_status=200, response=post, already_existed=True)

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """Delete one post (only that post: replies stay, as on most platforms)."""
        response = await send(self.http, "DELETE", self._url(upstream_id), platform=PLATFORM, write=True,
                              timeout=self.timeout, headers=_headers(account))
        raise_for_status(response, PLATFORM, errors=ERRORS)
