"""The sandbox adapter: publishes to the local simulated platform (omnipost.sandbox.upstream).

Every piece of a post is written with PUT under a deterministic id derived from the job's
upstream_key (`<key>`, `<key>-t1`, `<key>-t2`, ..., `<key>-c`), so repeating a publish after a
crash or an unknown outcome cannot duplicate anything: a piece that already got through answers
409 already_exists with the stored post, and is taken as done.
"""

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import httpx2

from omnipost.platforms.base import AccountContext, MediaFile, PublishJob, Published
from omnipost.platforms.errormap import AUTH_REFUSED, DUPLICATE, FORBIDDEN, RATE_LIMITED, UNAVAILABLE, ErrorMap, Rule
from omnipost.platforms.http import raise_for_status, send

PLATFORM = "sandbox"
_CHUNK = 1 << 20

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
                           *, timeout: float = 30.0) -> dict[str, Any]:
    """Create (or log in again to) a sandbox account: `{"account", "token", "handle", "emulates"}`."""
    response = await send(http, "POST", f"{base_url.rstrip('/')}/v1/accounts", platform=PLATFORM, write=True,
                          timeout=timeout, json={"handle": handle, "emulates": emulates})
    raise_for_status(response, PLATFORM, errors=ERRORS)
    return _json(response)


class SandboxAdapter:
    """PlatformAdapter for the sandbox upstream."""

    platform = PLATFORM
    caller_chosen_ids = True

    def __init__(self, http: httpx2.AsyncClient, base_url: str, timeout: float = 30.0) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

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
        response = await send(self.http, "GET", self._url(post_id), platform=PLATFORM, write=False,
                              timeout=self.timeout, headers=_headers(account))
        if response.status_code == 404:
            return None
        raise_for_status(response, PLATFORM, errors=ERRORS)
        return _json(response)

    async def publish(self, job: PublishJob) -> Published:
        """Publish the post, then its thread as a reply chain, then the first comment on the post."""
        target, key = job.target, job.upstream_key
        media = [await _descriptor(m) for m in job.media]
        post, status, existed = await self._put(job.account, key, {"text": target.text, "media": media,
                                                                   "replyTo": None, "kind": "post"})
        main_id = str(post.get("id", key))
        thread_ids: list[str] = []
        parent = main_id
        for i, segment in enumerate(target.thread, start=1):
            reply, _, _ = await self._put(job.account, f"{key}-t{i}",
                                          {"text": segment, "media": [], "replyTo": parent, "kind": "reply"})
            parent = str(reply.get("id", f"{key}-t{i}"))
            thread_ids.append(parent)
        comment_ids: tuple[str, ...] = ()
        if target.first_comment:
            comment, _, _ = await self._put(job.account, f"{key}-c", {"text": target.first_comment, "media": [],
                                                                        "replyTo": main_id, "kind": "comment"})
            comment_ids = (str(comment.get("id", f"{key}-c")),)
        return Published(upstream_id=main_id, url=post.get("url"), thread_ids=tuple(thread_ids),
                         first_comment_ids=comment_ids, http_status=status, response=post, already_existed=existed)

    async def find(self, job: PublishJob) -> Published | None:
        """The post under its deterministic id, with the thread and comment pieces found so far."""
        # Fewer thread_ids than the target's thread (or no first comment id) means an earlier attempt
        # stopped part-way; publishing again completes it without duplicating what exists.
        key = job.upstream_key
        post = await self._get(job.account, key)
        if post is None:
            return None
        thread_ids: list[str] = []
        for i in range(1, len(job.target.thread) + 1):
            if (reply := await self._get(job.account, f"{key}-t{i}")) is None:
                break  # a chain is written in order: nothing after a gap
            thread_ids.append(str(reply.get("id", f"{key}-t{i}")))
        comment_ids: tuple[str, ...] = ()
        if job.target.first_comment and (comment := await self._get(job.account, f"{key}-c")) is not None:
            comment_ids = (str(comment.get("id", f"{key}-c")),)
        return Published(upstream_id=str(post.get("id", key)), url=post.get("url"), thread_ids=tuple(thread_ids),
                         first_comment_ids=comment_ids, http_status=200, response=post, already_existed=True)

    async def delete(self, account: AccountContext, upstream_id: str) -> None:
        """Delete one post (only that post: replies stay, as on most platforms)."""
        response = await send(self.http, "DELETE", self._url(upstream_id), platform=PLATFORM, write=True,
                              timeout=self.timeout, headers=_headers(account))
        raise_for_status(response, PLATFORM, errors=ERRORS)
