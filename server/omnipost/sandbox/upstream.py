"""A local simulated social platform ("the sandbox upstream"): a small stateful Starlette app.

It plays a real platform closely enough that omnipost's exactly-once machinery can be exercised
end to end, and keeps everything it receives in ITS OWN SQLite file (never omnipost's database),
so duplicates can be counted from outside with `list_posts(store_path)` and no server running.

Wire format (JSON bodies, JSON answers; errors are `{"error": <code>, "message": <text>}`)
-----------------------------------------------------------------------------------------
Auth: `Authorization: Bearer <token>` on every `/v1/posts` call; a missing or unknown token is
401 `{"error": "unauthorized"}` (with `WWW-Authenticate: Bearer`).

`POST /v1/accounts` `{"handle": "alice", "emulates": "x", "mode"?: "caller_id" | "own_id" | "container"}` → 201
    `{"account": "<sandbox account id>", "token": "<random>", "handle", "emulates", "mode"}`.
    `handle` is `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`; `emulates` is an omnipost platform id (or
    alias, stored canonical). Registering a handle again is a re-login: 200, same account, a
    fresh token (earlier tokens stay valid), `emulates` updated, and `mode` when given (a new account
    without one takes caller_id). Only a hash of each token is stored.

An account's mode says how it creates posts; a create of another mode answers 400 `{"error": "wrong_mode"}`:
- caller_id (like Bluesky): `PUT /v1/posts/{id}` below.
- own_id (like X, LinkedIn): `POST /v1/posts` with the PUT body → 201 the stored post under an id the
  sandbox assigns. The same non-empty text from the account within DUPLICATE_WINDOW (24 h) is refused with
  403 in X's shape: `{"error": "duplicate_content", "message", "detail": "You are not allowed to create a
  Tweet with duplicate content.", "type": "about:blank", "title": "Forbidden", "status": 403}`.
  Reconcile by search with `GET /v1/posts?text=&since=` (below), filtering media count client-side.
- container (like Instagram, Threads): `POST /v1/containers` with the PUT body → 201 `{"id": "ctr_…",
  "status": "IN_PROGRESS"}`; `GET /v1/containers/{id}` → `{"id", "status", "postId"?}`, status
  IN_PROGRESS | FINISHED | EXPIRED | PUBLISHED; each read is a poll. A container is FINISHED after
  `readyAfterPolls` reads answered IN_PROGRESS (default 1) or `readyAfterSeconds` after its creation by the
  app's clock, whichever comes first (`POST /v1/_control/processing` `{"readyAfterPolls": int|null,
  "readyAfterSeconds": int|null}` sets both); unpublished for CONTAINER_LIFETIME (24 h) it is EXPIRED.
  `POST /v1/containers/{id}/publish` → 201 the post (id assigned); again → 200 the same post. Refusals
  are Meta's Graph error object, HTTP 400: not finished → `{"error": {"message", "type": "OAuthException",
  "code": 9007, "error_subcode": 2207027, "is_transient": true, "fbtrace_id"}}`; expired → code 100,
  error_subcode 2207008. No such container → 404 `not_found`.
  An account emulating a platform that fetches media from a public URL (Instagram, Threads) must give each
  attachment a `url`; the sandbox fetches it when the container is created, as they do, and checks the bytes:
  no url → 400 `{"error": "media_url_required"}`; the URL does not answer 200 with the bytes → Meta's 400
  `{"error": {"code": 9004, "error_subcode": 2207052, ...}}`; bytes whose SHA-256 differs from the given `sha256`
  → 400 `{"error": "media_mismatch"}`. The stored attachment keeps the fetched digest and size, and the URL
  without its query (a presigned URL's signature is not kept).

`PUT /v1/posts/{id}` — the caller chooses the id (like Bluesky's rkey), `[A-Za-z0-9_-]{1,80}`:
    `{"text": str, "media": [{"mime", "size", "sha256", "altText"?, "url"?}],
      "replyTo": str | null, "kind": "post" | "reply" | "comment"}`
    → 201 the stored post (a superset of `{"id", "url", "createdAt"}`).
    `kind` defaults to "reply" when `replyTo` is set, else "post"; "post" must not reply and
    "reply"/"comment" must. A media item needs `sha256` (64 lowercase hex) or `url`; `mime` and
    `size` may be null. `replyTo` names a post id of the same account.
    The id already exists for the account → 409 `{"error": "already_exists", "message",
    "post": {...the stored post...}}` and nothing is stored. `replyTo` names no stored post
    → 400 `{"error": "invalid_request"}`. Any other malformed input → 400 `invalid_request`.
`GET /v1/posts/{id}` → 200 the post | 404 `{"error": "not_found"}`.
`GET /v1/posts?text=<exact text>&since=<ISO-8601>&limit=<1..100, default 20>` → 200 `{"count", "posts"}`:
    the account's most recent posts, newest first, optionally only those whose text is exactly `text`
    and created at or after `since` (what a reconciliation after a crash looks for).
`DELETE /v1/posts/{id}` → 204 | 404 `not_found`.

A post is `{"id", "account", "handle", "url": "https://sandbox.omnipost.local/<handle>/<id>",
"text", "media", "replyTo", "kind", "createdAt"}` (createdAt ISO-8601 UTC, from the app's clock).

Control (no auth: the sandbox is local and simulated; the CLI binds it to loopback only):
`POST /v1/_control/faults` `{"latencyMs": int, "failRate": 0..1, "kinds": [...], "seed": int|null,
    "maxFaults": int|null}` replaces the fault plan → 200 the plan (with `injected`, the number of
    faults injected so far). `failRate` defaults to 1.0 when `kinds` is non-empty; `maxFaults`
    (an extension) stops injecting after that many faults, e.g. "fail once, then recover".
`GET /v1/_control/faults` → 200 the plan. `DELETE /v1/_control/faults` → 204, no faults.
`GET /v1/_control/posts` → 200 `{"count", "posts"}`: every stored post of every account, oldest first.

Faults apply only to write calls (PUT and DELETE of `/v1/posts/{id}`, POST of `/v1/posts`, `/v1/containers`
and `/v1/containers/{id}/publish`), after authentication.
`latencyMs` delays every write. Then, with probability `failRate`, one of `kinds` is chosen; both
draws come from `random.Random(seed)`, so a seeded plan injects the same faults in the same order:
- "5xx": 503 `{"error": "unavailable"}`, nothing stored.
- "429": 429 `{"error": "rate_limited"}` with `Retry-After: 2`, nothing stored.
- "timeout_after_accept": the write is performed and committed, then the answer is withheld until
  the client goes away (at most HANG_SECONDS), so the client times out on a write that took effect.
- "5xx_after_accept": the write is performed and committed, then answered 503 `unavailable` (a
  platform that failed after acting: the outcome of a non-idempotent write is unknown).
- "reset": nothing is stored and the connection is dropped without an answer. ASGI has no way to
  close a socket, so the app starts a response (status line and headers promising a body) and then
  raises `SimulatedConnectionReset`: uvicorn logs "Exception in ASGI application" and closes the
  connection, and an HTTP client sees the connection end before the answer completed
  (httpx2.RemoteProtocolError). An in-process `httpx2.ASGITransport` client has no connection: the
  exception propagates out of `client.request` unchanged. `SimulatedConnectionReset` subclasses
  httpx2.RemoteProtocolError so both cases look the same to a caller (platforms/calls.py turns a
  write that ends this way into UnknownOutcomeError).

Storage: one SQLite connection per operation, run in a worker thread, WAL mode, a busy timeout,
`BEGIN IMMEDIATE` around every write and `synchronous=NORMAL` (in WAL mode a commit survives a killed process; only a power cut could lose the last ones), so several processes may share the
file and every post is committed before it is answered (a killed server loses no answered post).
The fault plan lives in the process (each server process has its own).
"""

import hashlib
import json
import random
import re
import secrets
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from omnipost.clock import Clock
from omnipost.domain import PLATFORM_ALIASES

PUBLIC_BASE = "https://sandbox.omnipost.local"
POST_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
HANDLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
POST_KINDS = ("post", "reply", "comment")
FAULT_KINDS = ("5xx", "429", "timeout_after_accept", "reset", "5xx_after_accept")
MODES = ("caller_id", "own_id", "container")
DUPLICATE_WINDOW = timedelta(hours=24)  # own_id: the same text again from the same account within it is refused
CONTAINER_LIFETIME = timedelta(hours=24)  # as Meta's: an unpublished container then answers EXPIRED
READY_AFTER_POLLS_DEFAULT = 1
RETRY_AFTER_SECONDS = 2
HANG_SECONDS = 300.0  # bounded so a server with a hung request can still shut down
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100
MAX_LATENCY_MS = 60_000
# Container mode fetches the media URLs of accounts emulating these (they take media only by URL).
URL_FETCHING = ("instagram", "threads")
MEDIA_FETCH_TIMEOUT = 60.0
MEDIA_FETCH_MAX_BYTES = 5 * 1024**3

T = TypeVar("T")


class SimulatedConnectionReset(httpx2.RemoteProtocolError):
    """Raised by the app to drop the connection without an answer (the "reset" fault)."""


class _ApiError(Exception):
    """An error answer: status, code, message, optional extra fields and headers."""

    def __init__(self, status: int, error: str, message: str, *, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.extra, self.headers = extra or {}, headers


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "invalid_request", message)


def _iso(at: datetime) -> str:
    """ISO-8601 UTC with a Z, the way platforms print timestamps."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS accounts (
        id TEXT PRIMARY KEY, handle TEXT NOT NULL UNIQUE, emulates TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        token_sha256 TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(id), created_at TEXT NOT NULL)""",
    # seq orders posts by arrival; (account, id) is the caller-chosen id's uniqueness, the heart of exactly-once
    """CREATE TABLE IF NOT EXISTS posts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL REFERENCES accounts(id), id TEXT NOT NULL,
        kind TEXT NOT NULL, text TEXT NOT NULL, media TEXT NOT NULL, reply_to TEXT, created_at TEXT NOT NULL,
        UNIQUE (account, id))""",
    # container mode: what a publish will post; post_id is set once, when it is published
    """CREATE TABLE IF NOT EXISTS containers (
        id TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(id), kind TEXT NOT NULL, text TEXT NOT NULL,
        media TEXT NOT NULL, reply_to TEXT, created_at TEXT NOT NULL, polls INTEGER NOT NULL DEFAULT 0, post_id TEXT)""",
)

_POST_SELECT = ("SELECT p.id, p.account, a.handle, p.kind, p.text, p.media, p.reply_to, p.created_at "
                "FROM posts p JOIN accounts a ON a.id = p.account")


def _connect(path: Path) -> sqlite3.Connection:
    """A fresh connection in autocommit mode (transactions are explicit), waiting out other writers."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    # FULL: a committed post survives even a power cut, not only a killed process
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front, so check-then-insert cannot race."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _post_out(row: sqlite3.Row) -> dict[str, Any]:
    """The public JSON of a stored post."""
    return {
        "id": row["id"],
        "account": row["account"],
        "handle": row["handle"],
        "url": f"{PUBLIC_BASE}/{row['handle']}/{row['id']}",
        "text": row["text"],
        "media": json.loads(row["media"]),
        "replyTo": row["reply_to"],
        "kind": row["kind"],
        "createdAt": row["created_at"],
    }


def _mode(conn: sqlite3.Connection, account: str) -> str:
    row = conn.execute("SELECT mode FROM accounts WHERE id = ?", (account,)).fetchone()
    return "caller_id" if row is None else str(row["mode"])


def _reply_exists(conn: sqlite3.Connection, account: str, reply_to: str | None) -> bool:
    """Whether `reply_to` (if any) names a stored post of the account."""
    return reply_to is None or conn.execute(
        "SELECT 1 FROM posts WHERE account = ? AND id = ?", (account, reply_to)).fetchone() is not None


def _emulates(conn: sqlite3.Connection, account: str) -> str | None:
    row = conn.execute("SELECT emulates FROM accounts WHERE id = ?", (account,)).fetchone()
    return None if row is None else str(row["emulates"])


def _new_post_id() -> str:
    return "sbp" + secrets.token_hex(9)  # an id the platform chose (own_id and container modes)


def _insert_post(conn: sqlite3.Connection, account: str, post_id: str, post: dict[str, Any], now: str) -> dict[str, Any]:
    conn.execute(
        "INSERT INTO posts (account, id, kind, text, media, reply_to, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (account, post_id, post["kind"], post["text"], json.dumps(post["media"]), post["replyTo"], now))
    stored = conn.execute(f"{_POST_SELECT} WHERE p.account = ? AND p.id = ?", (account, post_id)).fetchone()
    return _post_out(stored)


class SandboxStore:
    """The sandbox's own SQLite file, through one connection per thread that uses it.

    sqlite3 connections must not be shared between threads; opening one per operation (file, WAL
    index, pragmas) cost ~1.2 ms against ~0.03 ms for the write itself, and the writes of a
    25-target fan-out queue behind one another for the write lock. A thread's connection is closed
    when the thread ends (worker threads end after idling).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._writing = threading.Lock()
        self._initialising = threading.Lock()
        self._ready = False

    def _conn(self) -> "nullcontext[sqlite3.Connection]":
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.init()
            conn = self._local.conn = _connect(self.path)
        return nullcontext(conn)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection. This process's writers queue on a lock, which
        hands over at once; contending inside SQLite would put them in its busy handler, which sleeps
        1-100 ms between tries. Other processes sharing the file still wait in the busy handler."""
        with self._writing, self._conn() as conn, _write(conn):
            yield conn

    def init(self) -> None:
        """Create the file and tables (idempotent, safe against a concurrent initialiser). Done at first use, so an
        embedded sandbox nobody calls (`omnipost validate`) creates nothing on disk."""
        if self._ready:
            return
        with self._initialising:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(_connect(self.path)) as conn:
                    self._create(conn)
                self._ready = True

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: readers never block the writer
        with _write(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
            # a store made before the modes existed: its accounts all take caller-chosen ids
            if "mode" not in {r["name"] for r in conn.execute("PRAGMA table_info(accounts)")}:
                conn.execute("ALTER TABLE accounts ADD COLUMN mode TEXT NOT NULL DEFAULT 'caller_id'")

    def register(self, handle: str, emulates: str, mode: str | None, now: str) -> tuple[dict[str, Any], bool]:
        """Create the account (or log in again to an existing handle) and issue a new token. `mode` None keeps
        an existing account's mode (a new one takes caller_id)."""
        token = "sbx_" + secrets.token_urlsafe(32)
        with self._tx() as conn:
            row = conn.execute("SELECT id, mode FROM accounts WHERE handle = ?", (handle,)).fetchone()
            created = row is None
            if created:
                account, mode = "sbxacc_" + secrets.token_hex(8), mode or "caller_id"
                conn.execute("INSERT INTO accounts (id, handle, emulates, mode, created_at) VALUES (?, ?, ?, ?, ?)",
                             (account, handle, emulates, mode, now))
            else:
                account, mode = row["id"], mode or row["mode"]
                conn.execute("UPDATE accounts SET emulates = ?, mode = ? WHERE id = ?", (emulates, mode, account))
            conn.execute("INSERT INTO tokens (token_sha256, account, created_at) VALUES (?, ?, ?)",
                         (_token_hash(token), account, now))
        return {"account": account, "token": token, "handle": handle, "emulates": emulates, "mode": mode}, created

    def emulates(self, account: str) -> str | None:
        """The platform the account emulates."""
        with self._conn() as conn:
            return _emulates(conn, account)

    def account_for(self, token: str) -> str | None:
        """The account a bearer token belongs to."""
        with self._conn() as conn:
            row = conn.execute("SELECT account FROM tokens WHERE token_sha256 = ?", (_token_hash(token),)).fetchone()
        return None if row is None else str(row["account"])

    def put(self, account: str, post_id: str, post: dict[str, Any], now: str) -> tuple[str, dict[str, Any] | None]:
        """Store a post under its caller-chosen id: ("created" | "exists" | "bad_reply" | "wrong_mode", post)."""
        with self._tx() as conn:
            if _mode(conn, account) != "caller_id":
                return "wrong_mode", None
            existing = conn.execute(f"{_POST_SELECT} WHERE p.account = ? AND p.id = ?", (account, post_id)).fetchone()
            if existing is not None:
                return "exists", _post_out(existing)
            if not _reply_exists(conn, account, post["replyTo"]):
                return "bad_reply", None
            return "created", _insert_post(conn, account, post_id, post, now)

    def create(self, account: str, post: dict[str, Any], now: datetime) -> tuple[str, dict[str, Any] | None]:
        """own_id mode: store a post under an id the sandbox assigns: ("created" | "duplicate" | "bad_reply" |
        "wrong_mode", post). The same non-empty text from the account within DUPLICATE_WINDOW is a duplicate."""
        with self._tx() as conn:
            if _mode(conn, account) != "own_id":
                return "wrong_mode", None
            if post["text"] and conn.execute(
                    "SELECT 1 FROM posts WHERE account = ? AND text = ? AND created_at > ?",
                    (account, post["text"], _iso(now - DUPLICATE_WINDOW))).fetchone() is not None:
                return "duplicate", None
            if not _reply_exists(conn, account, post["replyTo"]):
                return "bad_reply", None
            return "created", _insert_post(conn, account, _new_post_id(), post, _iso(now))

    def create_container(self, account: str, post: dict[str, Any], now: str) -> tuple[str, dict[str, Any] | None]:
        """container mode: a container for one post: ("created" | "bad_reply" | "wrong_mode", {"id", "status"})."""
        with self._tx() as conn:
            if _mode(conn, account) != "container":
                return "wrong_mode", None
            if not _reply_exists(conn, account, post["replyTo"]):
                return "bad_reply", None
            container_id = "ctr_" + secrets.token_hex(10)
            conn.execute("INSERT INTO containers (id, account, kind, text, media, reply_to, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (container_id, account, post["kind"], post["text"], json.dumps(post["media"]), post["replyTo"], now))
        return "created", {"id": container_id, "status": "IN_PROGRESS"}

    def container_status(self, account: str, container_id: str, now: datetime,
                         plan: "ProcessingPlan") -> dict[str, Any] | None:
        """One status read of a container (it counts as a poll): {"id", "status", "postId"?} or None."""
        with self._tx() as conn:
            conn.execute("UPDATE containers SET polls = polls + 1 WHERE account = ? AND id = ?", (account, container_id))
            row = conn.execute("SELECT * FROM containers WHERE account = ? AND id = ?", (account, container_id)).fetchone()
        if row is None:
            return None
        # this read answers FINISHED once readyAfterPolls reads before it answered IN_PROGRESS
        status = plan.status(row, now, polls_before=row["polls"] - 1)
        return {"id": container_id, "status": status, **({"postId": row["post_id"]} if row["post_id"] else {})}

    def publish_container(self, account: str, container_id: str, now: datetime,
                          plan: "ProcessingPlan") -> tuple[str, dict[str, Any] | None]:
        """Publish a container once: ("created" | "published" (before: the same post) | "not_found" | "not_ready" |
        "expired", post)."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM containers WHERE account = ? AND id = ?", (account, container_id)).fetchone()
            if row is None:
                return "not_found", None
            status = plan.status(row, now, polls_before=row["polls"])
            if status == "PUBLISHED":
                stored = conn.execute(f"{_POST_SELECT} WHERE p.account = ? AND p.id = ?", (account, row["post_id"])).fetchone()
                return "published", None if stored is None else _post_out(stored)
            if status != "FINISHED":
                return status.lower().replace("in_progress", "not_ready"), None
            post = {"kind": row["kind"], "text": row["text"], "media": json.loads(row["media"]), "replyTo": row["reply_to"]}
            post_id = _new_post_id()
            stored_post = _insert_post(conn, account, post_id, post, _iso(now))
            conn.execute("UPDATE containers SET post_id = ? WHERE id = ?", (post_id, container_id))
        return "created", stored_post

    def get(self, account: str, post_id: str) -> dict[str, Any] | None:
        """One post of the account."""
        with self._conn() as conn:
            row = conn.execute(f"{_POST_SELECT} WHERE p.account = ? AND p.id = ?", (account, post_id)).fetchone()
        return None if row is None else _post_out(row)

    def recent(self, account: str, text: str | None, limit: int, since: str | None = None) -> list[dict[str, Any]]:
        """The account's newest posts, optionally only those with exactly this text, or created at or after `since`."""
        query, args = f"{_POST_SELECT} WHERE p.account = ?", [account]
        if text is not None:
            query += " AND p.text = ?"
            args.append(text)
        if since is not None:
            query += " AND p.created_at >= ?"
            args.append(since)
        with self._conn() as conn:
            rows = conn.execute(query + " ORDER BY p.seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [_post_out(r) for r in rows]

    def delete(self, account: str, post_id: str) -> bool:
        """Delete one post; False when there was none."""
        with self._tx() as conn:
            cursor = conn.execute("DELETE FROM posts WHERE account = ? AND id = ?", (account, post_id))
        return cursor.rowcount > 0

    def all_posts(self) -> list[dict[str, Any]]:
        """Every stored post of every account, oldest first."""
        with self._conn() as conn:
            rows = conn.execute(f"{_POST_SELECT} ORDER BY p.seq").fetchall()
        return [_post_out(r) for r in rows]


def list_posts(store_path: Path) -> list[dict[str, Any]]:
    """Every post the sandbox has stored, read straight from its file (no server needed)."""
    path = Path(store_path)
    if not path.exists():
        return []  # never create a store just by looking at it
    with closing(_connect(path)) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'posts'").fetchone() is None:
            return []
    return SandboxStore(path).all_posts()


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------

@dataclass
class FaultPlan:
    """Which faults write calls suffer, drawn from a seeded generator."""

    latency_ms: int = 0
    fail_rate: float = 0.0
    kinds: tuple[str, ...] = ()
    seed: int | None = None
    max_faults: int | None = None
    injected: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def draw(self) -> str | None:
        """The fault for this write call, or None."""
        if not self.kinds or self.fail_rate <= 0:
            return None
        if self.max_faults is not None and self.injected >= self.max_faults:
            return None
        if self.rng.random() >= self.fail_rate:
            return None
        self.injected += 1
        return self.rng.choice(self.kinds)

    def as_json(self) -> dict[str, Any]:
        """The plan as the control API shows it."""
        return {"latencyMs": self.latency_ms, "failRate": self.fail_rate, "kinds": list(self.kinds),
                "seed": self.seed, "maxFaults": self.max_faults, "injected": self.injected}


@dataclass
class ProcessingPlan:
    """When a container finishes processing: after `ready_after_polls` status reads answered IN_PROGRESS, or once
    `ready_after_seconds` passed since it was created (by the app's clock), whichever comes first (None: never)."""

    ready_after_polls: int | None = READY_AFTER_POLLS_DEFAULT
    ready_after_seconds: int | None = None

    def status(self, row: sqlite3.Row, now: datetime, *, polls_before: int) -> str:
        """IN_PROGRESS | FINISHED | EXPIRED | PUBLISHED for a stored container."""
        if row["post_id"] is not None:
            return "PUBLISHED"
        created = datetime.fromisoformat(str(row["created_at"]).replace("Z", "+00:00"))
        now = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
        if now >= created + CONTAINER_LIFETIME:
            return "EXPIRED"
        if self.ready_after_polls is not None and polls_before >= self.ready_after_polls:
            return "FINISHED"
        if self.ready_after_seconds is not None and now >= created + timedelta(seconds=self.ready_after_seconds):
            return "FINISHED"
        return "IN_PROGRESS"

    def as_json(self) -> dict[str, Any]:
        return {"readyAfterPolls": self.ready_after_polls, "readyAfterSeconds": self.ready_after_seconds}


def _int_field(body: dict[str, Any], name: str, default: int | None, *, minimum: int, maximum: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    # bool is an int in Python; true/false is not a number here
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise _invalid(f"{name} must be an integer {bound}.")
    return value


def _parse_plan(body: dict[str, Any]) -> FaultPlan:
    """A fault plan from the control API body."""
    kinds = body.get("kinds", [])
    if not isinstance(kinds, list) or any(k not in FAULT_KINDS for k in kinds):
        raise _invalid(f"kinds must be a list of {', '.join(FAULT_KINDS)}.")
    rate = body.get("failRate", 1.0 if kinds else 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise _invalid("failRate must be a number from 0 to 1.")
    latency = _int_field(body, "latencyMs", 0, minimum=0, maximum=MAX_LATENCY_MS) or 0
    seed = _int_field(body, "seed", None, minimum=-(2**63))
    max_faults = _int_field(body, "maxFaults", None, minimum=0)
    return FaultPlan(latency_ms=latency, fail_rate=float(rate), kinds=tuple(kinds), seed=seed, max_faults=max_faults,
                     rng=random.Random(seed))


# ---------------------------------------------------------------------------------------------
# Request parsing
# ---------------------------------------------------------------------------------------------

async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _invalid("The body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object.")
    return body


def _post_id(request: Request) -> str:
    post_id = str(request.path_params["post_id"])
    if not POST_ID.match(post_id):
        raise _invalid("A post id is 1-80 characters of A-Z, a-z, 0-9, '_' and '-'.")
    return post_id


def _opt_str(item: dict[str, Any], key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"{where}.{key} must be a string or null.")
    return value


def _parse_media(media: Any) -> list[dict[str, Any]]:
    if media is None:
        return []
    if not isinstance(media, list):
        raise _invalid("media must be a list.")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(media):
        where = f"media[{i}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object.")
        size = item.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise _invalid(f"{where}.size must be a non-negative integer or null.")
        sha = _opt_str(item, "sha256", where)
        if sha is not None and not SHA256.match(sha):
            raise _invalid(f"{where}.sha256 must be 64 lowercase hex digits.")
        url = _opt_str(item, "url", where)
        if sha is None and url is None:
            raise _invalid(f"{where} needs sha256 or url: the sandbox records what was attached.")
        entry: dict[str, Any] = {"mime": _opt_str(item, "mime", where), "size": size, "sha256": sha}
        if (alt := _opt_str(item, "altText", where)) is not None:
            entry["altText"] = alt
        if url is not None:
            entry["url"] = url
        out.append(entry)
    return out


def _parse_post(body: dict[str, Any]) -> dict[str, Any]:
    """The PUT body, checked and normalised."""
    text = body.get("text")
    if not isinstance(text, str):
        raise _invalid("text must be a string.")
    reply_to = _opt_str(body, "replyTo", "body")
    if reply_to is not None and not POST_ID.match(reply_to):
        raise _invalid("replyTo must be a post id.")
    kind = body.get("kind") or ("reply" if reply_to is not None else "post")
    if kind not in POST_KINDS:
        raise _invalid(f"kind must be one of {', '.join(POST_KINDS)}.")
    if kind == "post" and reply_to is not None:
        raise _invalid("A post of kind 'post' does not reply; use kind 'reply' or 'comment'.")
    if kind != "post" and reply_to is None:
        raise _invalid(f"A {kind} needs replyTo.")
    return {"text": text, "media": _parse_media(body.get("media")), "replyTo": reply_to, "kind": kind}


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------

class _DropConnection(Response):
    """Start an answer, then raise, so the server drops the connection mid-response (the "reset" fault)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Headers promise a body that never comes: a client cannot read this as an answer.
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
        raise SimulatedConnectionReset("sandbox fault 'reset': connection dropped without an answer")


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _duplicate() -> JSONResponse:
    """own_id mode's duplicate refusal: X's 403 problem body, plus the sandbox's own `error` code."""
    detail = "You are not allowed to create a Tweet with duplicate content."
    return JSONResponse({"error": "duplicate_content", "message": detail, "detail": detail, "type": "about:blank",
                         "title": "Forbidden", "status": 403}, status_code=403)


def _graph_error(message: str, code: int, subcode: int, *, transient: bool) -> JSONResponse:
    """container mode's refusals: Meta's Graph API error object (HTTP 400)."""
    return JSONResponse({"error": {"message": message, "type": "OAuthException", "code": code, "error_subcode": subcode,
                                   "is_transient": transient, "fbtrace_id": "sandbox" + secrets.token_hex(6)}},
                        status_code=400)


def _container_id(request: Request) -> str:
    container_id = str(request.path_params["container_id"])
    if not POST_ID.match(container_id):
        raise _invalid("A container id is 1-80 characters of A-Z, a-z, 0-9, '_' and '-'.")
    return container_id


async def _wait_for_disconnect(request: Request) -> None:
    """Withhold the answer until the client goes away (bounded, so the server can still stop)."""
    with anyio.move_on_after(HANG_SECONDS):
        while (await request.receive())["type"] != "http.disconnect":
            pass


class _MediaUnfetchable(Exception):
    """An attachment URL that did not answer 200 with its bytes."""


class _Sandbox:
    """The app's state and endpoints."""

    def __init__(self, store: SandboxStore, clock: Callable[[], datetime],
                 fetch: Callable[[], httpx2.AsyncClient | None] | None = None) -> None:
        self.store, self.clock = store, clock
        self.fetch = fetch  # the HTTP client media URLs are fetched with (None: a client of its own per fetch)
        self.faults = FaultPlan()
        self.processing = ProcessingPlan()
        self._tokens: dict[str, str] = {}  # bearer token -> account, for tokens seen valid (saves a read per call)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # sqlite3 blocks; the worker thread is not abandoned on cancel, so a started commit finishes
        return await anyio.to_thread.run_sync(partial(fn, *args))

    def _now(self) -> str:
        return _iso(self.clock())

    async def _account(self, request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        account = self._tokens.get(token) if token else None
        if account is None and token:
            account = await self._run(self.store.account_for, token)
            if account is not None:
                self._tokens[token] = account  # a token never changes account and is never revoked here
        if account is None:
            raise _ApiError(401, "unauthorized", "A valid bearer token is required (POST /v1/accounts issues one).",
                            headers={"WWW-Authenticate": "Bearer"})
        return account

    async def _write_fault(self) -> str | None:
        if self.faults.latency_ms:
            await anyio.sleep(self.faults.latency_ms / 1000)
        return self.faults.draw()

    async def _faulted(self, request: Request, write: Callable[[], Awaitable[Response]]) -> Response:
        """A write call under the fault plan: refused before `write`, or `write` done and its answer spoiled after."""
        fault = await self._write_fault()
        if (refusal := self._refusal(fault)) is not None:
            return refusal
        response = await write()
        if fault == "5xx_after_accept":  # the write is committed; the platform still answers 503
            return _error(503, "unavailable", "The sandbox is simulating an outage after the write (fault '5xx_after_accept').")
        if fault == "timeout_after_accept":
            await _wait_for_disconnect(request)  # the write is committed; the answer never arrives in time
        return response

    @staticmethod
    def _refusal(fault: str | None) -> Response | None:
        """The answer for a fault that stops the write before anything is stored."""
        if fault == "5xx":
            return _error(503, "unavailable", "The sandbox is simulating an outage (fault '5xx').")
        if fault == "429":
            return _error(429, "rate_limited", "The sandbox is simulating throttling (fault '429').",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if fault == "reset":
            return _DropConnection()
        return None

    async def register(self, request: Request) -> Response:
        """POST /v1/accounts."""
        body = await _json_object(request)
        handle, emulates = body.get("handle"), body.get("emulates")
        if not isinstance(handle, str) or not HANDLE.match(handle):
            raise _invalid("handle must be 1-64 characters of letters, digits, '_', '.' or '-', starting alphanumeric.")
        if not isinstance(emulates, str) or emulates.lower() not in PLATFORM_ALIASES:
            raise _invalid(f"emulates must be one of {', '.join(sorted(PLATFORM_ALIASES))}.")
        canonical = PLATFORM_ALIASES[emulates.lower()].value
        mode = body.get("mode")
        if mode is not None and mode not in MODES:
            raise _invalid(f"mode must be one of {', '.join(MODES)}.")
        out, created = await self._run(self.store.register, handle, canonical, mode, self._now())
        return JSONResponse(out, status_code=201 if created else 200)

    async def put_post(self, request: Request) -> Response:
        """PUT /v1/posts/{post_id}."""
        account = await self._account(request)
        post_id = _post_id(request)

        async def write() -> Response:
            post = _parse_post(await _json_object(request))
            outcome, stored = await self._run(self.store.put, account, post_id, post, self._now())
            if outcome == "exists":
                return JSONResponse({"error": "already_exists", "message": f"Post '{post_id}' already exists.",
                                     "post": stored}, status_code=409)
            return self._created(outcome, post, stored)

        return await self._faulted(request, write)

    def _created(self, outcome: str, post: dict[str, Any], stored: dict[str, Any] | None) -> Response:
        """The answer to a create of any mode, for the outcomes they share."""
        if outcome == "bad_reply":
            return _error(400, "invalid_request", f"replyTo '{post['replyTo']}' names no post of this account.")
        if outcome == "wrong_mode":
            return _error(400, "wrong_mode", "This account's platform does not create posts this way "
                                             "(caller_id: PUT /v1/posts/{id}; own_id: POST /v1/posts; container: POST /v1/containers).")
        return JSONResponse(stored, status_code=201)

    async def create_post(self, request: Request) -> Response:
        """POST /v1/posts (own_id mode)."""
        account = await self._account(request)

        async def write() -> Response:
            post = _parse_post(await _json_object(request))
            outcome, stored = await self._run(self.store.create, account, post, self.clock())
            return _duplicate() if outcome == "duplicate" else self._created(outcome, post, stored)

        return await self._faulted(request, write)

    async def _fetch_hash(self, url: str) -> tuple[str, int]:
        """SHA-256 and size of what `url` serves (streamed, capped at MEDIA_FETCH_MAX_BYTES).

        Raises:
            _MediaUnfetchable: not http(s), not 200, too large, or the connection failed.
        """
        if not url.lower().startswith(("http://", "https://")):
            raise _MediaUnfetchable("not an http(s) URL")
        client = self.fetch() if self.fetch is not None else None
        own = client is None
        if client is None:
            client = httpx2.AsyncClient()
        digest, size = hashlib.sha256(), 0
        try:
            async with client.stream("GET", url, timeout=MEDIA_FETCH_TIMEOUT) as response:
                if response.status_code != 200:
                    raise _MediaUnfetchable(f"answered {response.status_code}")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MEDIA_FETCH_MAX_BYTES:
                        raise _MediaUnfetchable("too large")
                    digest.update(chunk)
        except httpx2.HTTPError as exc:
            raise _MediaUnfetchable(type(exc).__name__) from None
        finally:
            if own:
                await client.aclose()
        return digest.hexdigest(), size

    async def _fetched_media(self, account: str, post: dict[str, Any]) -> Response | None:
        """For an account emulating a platform that fetches media by URL: fetch each attachment's URL and check its
        bytes, recording what was fetched (a refusal answer, or None when every attachment checked out)."""
        emulates = await self._run(self.store.emulates, account)
        if emulates not in URL_FETCHING:
            return None
        for i, item in enumerate(post["media"]):
            url = item.get("url")
            if not url:
                return _error(400, "media_url_required", f"media[{i}] needs a url: {emulates} fetches media from a public URL.")
            try:
                sha256, size = await self._fetch_hash(url)
            except _MediaUnfetchable:
                return _graph_error("Media download has failed. The media URI doesn't meet our requirements.", 9004, 2207052,
                                    transient=False)
            if item.get("sha256") is not None and item["sha256"] != sha256:
                return _error(400, "media_mismatch", f"media[{i}]: the URL serves other bytes than the attachment's sha256.")
            item.update(sha256=sha256, size=size, url=url.split("?", 1)[0])
        return None

    async def create_container(self, request: Request) -> Response:
        """POST /v1/containers (container mode): media URLs are fetched and checked here, as Instagram and Threads do."""
        account = await self._account(request)

        async def write() -> Response:
            post = _parse_post(await _json_object(request))
            if (refused := await self._fetched_media(account, post)) is not None:
                return refused
            outcome, container = await self._run(self.store.create_container, account, post, self._now())
            return self._created(outcome, post, container)

        return await self._faulted(request, write)

    async def get_container(self, request: Request) -> Response:
        """GET /v1/containers/{container_id}: one status read (a poll)."""
        account = await self._account(request)
        status = await self._run(self.store.container_status, account, _container_id(request), self.clock(), self.processing)
        if status is None:
            return _error(404, "not_found", "No such container.")
        return JSONResponse(status)

    async def publish_container(self, request: Request) -> Response:
        """POST /v1/containers/{container_id}/publish: publish once; again answers the same post."""
        account = await self._account(request)
        container_id = _container_id(request)

        async def write() -> Response:
            outcome, post = await self._run(self.store.publish_container, account, container_id, self.clock(), self.processing)
            if outcome == "not_found":
                return _error(404, "not_found", "No such container.")
            if outcome == "not_ready":
                return _graph_error("The media is not ready for publishing, please wait for a moment", 9007, 2207027,
                                    transient=True)
            if outcome == "expired":
                return _graph_error("The media container has expired (containers live 24 hours); create a new one.",
                                    100, 2207008, transient=False)
            return JSONResponse(post, status_code=201 if outcome == "created" else 200)

        return await self._faulted(request, write)

    async def get_post(self, request: Request) -> Response:
        """GET /v1/posts/{post_id}."""
        account = await self._account(request)
        post = await self._run(self.store.get, account, _post_id(request))
        if post is None:
            return _error(404, "not_found", "No such post.")
        return JSONResponse(post)

    async def list_account_posts(self, request: Request) -> Response:
        """GET /v1/posts?text=&since=&limit=."""
        account = await self._account(request)
        raw_limit = request.query_params.get("limit", str(LIST_LIMIT_DEFAULT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= LIST_LIMIT_MAX:
            raise _invalid(f"limit must be an integer from 1 to {LIST_LIMIT_MAX}.")
        since = request.query_params.get("since")
        if since is not None:
            try:
                since = _iso(datetime.fromisoformat(since.replace("Z", "+00:00")))
            except ValueError as exc:
                raise _invalid("since must be an ISO-8601 time.") from exc
        posts = await self._run(self.store.recent, account, request.query_params.get("text"), int(raw_limit), since)
        return JSONResponse({"count": len(posts), "posts": posts})

    async def delete_post(self, request: Request) -> Response:
        """DELETE /v1/posts/{post_id}."""
        account = await self._account(request)
        post_id = _post_id(request)

        async def write() -> Response:
            deleted = await self._run(self.store.delete, account, post_id)
            return Response(status_code=204) if deleted else _error(404, "not_found", "No such post.")

        return await self._faulted(request, write)

    async def set_faults(self, request: Request) -> Response:
        """POST /v1/_control/faults."""
        self.faults = _parse_plan(await _json_object(request))
        return JSONResponse(self.faults.as_json())

    async def get_faults(self, request: Request) -> Response:
        """GET /v1/_control/faults."""
        return JSONResponse(self.faults.as_json())

    async def set_processing(self, request: Request) -> Response:
        """POST /v1/_control/processing: when containers finish."""
        body = await _json_object(request)
        self.processing = ProcessingPlan(
            ready_after_polls=_int_field(body, "readyAfterPolls", READY_AFTER_POLLS_DEFAULT, minimum=0),
            ready_after_seconds=_int_field(body, "readyAfterSeconds", None, minimum=0))
        return JSONResponse(self.processing.as_json())

    async def clear_faults(self, request: Request) -> Response:
        """DELETE /v1/_control/faults."""
        self.faults = FaultPlan()
        return Response(status_code=204)

    async def all_posts(self, request: Request) -> Response:
        """GET /v1/_control/posts."""
        posts = await self._run(self.store.all_posts)
        return JSONResponse({"count": len(posts), "posts": posts})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _ApiError)
    return JSONResponse({"error": exc.error, "message": exc.message, **exc.extra}, status_code=exc.status,
                        headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 come as plain text; the sandbox answers JSON everywhere
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    return JSONResponse({"error": code, "message": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_sandbox_app(store_path: Path, *, clock: Clock, fetch: Callable[[], httpx2.AsyncClient | None] | None = None) -> Starlette:
    """The sandbox upstream as an ASGI app, storing into `store_path` (created if missing). `clock`: the embedding
    program's clock (the sandbox's token expiries and timestamps agree with the program that judges them). `fetch`:
    the HTTP client container mode fetches media URLs with (the embedding program's, SSRF-guarded); default a plain
    client per fetch (the standalone sandbox)."""
    store = SandboxStore(Path(store_path))
    sb = _Sandbox(store, clock.now, fetch)
    routes = [
        Route("/v1/accounts", sb.register, methods=["POST"]),
        Route("/v1/posts", sb.list_account_posts, methods=["GET"]),
        Route("/v1/posts", sb.create_post, methods=["POST"]),
        Route("/v1/containers", sb.create_container, methods=["POST"]),
        Route("/v1/containers/{container_id}", sb.get_container, methods=["GET"]),
        Route("/v1/containers/{container_id}/publish", sb.publish_container, methods=["POST"]),
        Route("/v1/posts/{post_id}", sb.put_post, methods=["PUT"]),
        Route("/v1/posts/{post_id}", sb.get_post, methods=["GET"]),
        Route("/v1/posts/{post_id}", sb.delete_post, methods=["DELETE"]),
        Route("/v1/_control/faults", sb.set_faults, methods=["POST"]),
        Route("/v1/_control/faults", sb.get_faults, methods=["GET"]),
        Route("/v1/_control/faults", sb.clear_faults, methods=["DELETE"]),
        Route("/v1/_control/processing", sb.set_processing, methods=["POST"]),
        Route("/v1/_control/posts", sb.all_posts, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={_ApiError: _api_error, HTTPException: _http_error})
    app.state.sandbox = sb  # reachable for tests and the CLI
    return app
