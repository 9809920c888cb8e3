"""The pieces ledger: what of one target exists upstream, durable, piece by piece (ARCHITECTURE §2).

A target is published as pieces: the main post (`post`), each thread part (`t1`, `t2`, ...) and the first
comment (`c`). Media uploads are not pieces: an upload nobody references is invisible and is simply redone.

    piece: (no record) -> [pending(handle, since)] -> sending(sent_at, handle) -> done(upstream_id, url, data)

`pending`: the platform is still processing what the piece needs (an Instagram/Threads container, a Bluesky video
job); nothing of it is public yet. The adapter raises `Processing(handle, check_at)` from `send` instead of waiting;
the publisher stores the post as `processing` with `next_attempt_at = check_at`, releases it, and a scheduler worker
tries it again then: `send` finds the pending record (`Ledger.get(name).handle`) and makes ONE status check of that
handle instead of starting over. No adapter sleeps while it holds a post.

Adapters drive it through `Ledger.step(name, send, reconcile)`:
- a `done` piece is never sent again: its recorded id is used;
- a `sending` piece (an earlier try sent it and no answer was recorded: a crash, a 5xx after the write) is
  reconciled first by the platform's strategy: `reconcile(piece)` answers the piece found upstream, None when it
  is certainly absent (only then is it sent again), or raises UnknownOutcomeError when it cannot tell;
- otherwise the `sending` marker (with its time) is committed before the irreversible call, and the piece is
  `done` as soon as the answer is in. `done` is committed with the next piece's marker (one write for both), or
  with the attempt's result for the last piece.

The publisher owns persistence (`save`: one UPDATE of the post row's `pieces`); adapters never touch the
database. The main post's marker costs no write: the attempt row committed just before the first upstream call
already says "maybe sent since started_at", and recovery reads it that way (`assume_main_sent`).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from omnipost.clock import Clock
from omnipost.errors import PlatformError, UnknownOutcomeError

MAIN, COMMENT = "post", "c"
SENDING, DONE, PENDING = "sending", "done", "pending"


def part(i: int) -> str:
    """The piece name of thread part i (1-based: the first reply is part 1)."""
    return f"t{i}"


@dataclass
class Piece:
    """One piece's record."""

    status: str  # SENDING | DONE | PENDING
    sent_at: datetime | None = None  # when its irreversible call was (first) sent
    pending_since: datetime | None = None  # when the platform started processing it (PENDING)
    upstream_id: str | None = None
    url: str | None = None
    handle: str | None = None  # what the platform gave before the piece is public (a container id)
    data: dict[str, Any] = field(default_factory=lambda: {})  # the platform's extras for it (Bluesky: uri, cid)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.sent_at is not None:
            out["sentAt"] = self.sent_at.isoformat()
        if self.pending_since is not None:
            out["pendingSince"] = self.pending_since.isoformat()
        out |= {k: v for k, v in (("id", self.upstream_id), ("url", self.url), ("handle", self.handle)) if v is not None}
        if self.data:
            out["data"] = dict(self.data)
        return out

    @classmethod
    def load(cls, raw: dict[str, Any]) -> "Piece":
        sent, since = raw.get("sentAt"), raw.get("pendingSince")
        return cls(status=raw.get("status", SENDING), sent_at=datetime.fromisoformat(sent) if sent else None,
                   pending_since=datetime.fromisoformat(since) if since else None, upstream_id=raw.get("id"), url=raw.get("url"), handle=raw.get("handle"), data=dict(raw.get("data") or {}))


@dataclass(frozen=True)
class Made:
    """A piece as the platform has it: just created, or found by reconcile."""

    upstream_id: str
    url: str | None = None
    data: dict[str, Any] = field(default_factory=lambda: {})
    body: dict[str, Any] | None = None  # the platform's answer (for the attempt record)
    status: int | None = None
    existed: bool = False  # it was already there (done before, or found by reconcile)


class Processing(Exception):
    """Raised by an adapter's `send`: the platform is still processing the piece's `handle` (a container, a video
    job); check again at `check_at`. Nothing of the piece is public yet."""

    def __init__(self, handle: str, check_at: datetime, detail: str = "") -> None:
        super().__init__(detail or f"still processing {handle}")
        self.handle, self.check_at, self.detail = handle, check_at, detail


class NotSent(Exception):
    """Probing (`find`) reached a piece the platform does not have: everything from here on was not published."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


Save = Callable[[dict[str, Any]], Awaitable[None]]
Reconcile = Callable[[Piece], Awaitable[Made | None]]
Mark = Callable[[str | None], Awaitable[None]]


def load(raw: dict[str, Any] | None) -> dict[str, Piece]:
    return {name: Piece.load(p) for name, p in (raw or {}).items() if isinstance(p, dict)}


class Ledger:
    """The pieces of one target during one try; see the module docstring.

    `probe`: only look (reconcile every piece not done, in order, stopping with NotSent at the first absent
    one; nothing is sent). `assume_absent`: the user said the post is not there (resolve_post resend), so a piece
    whose reconcile cannot tell is sent again; one found is still taken as found."""

    def __init__(self, pieces: dict[str, Piece] | None = None, *, clock: Clock | None = None, save: Save | None = None,
                 main_marker_free: bool = False) -> None:
        self.pieces = dict(pieces or {})
        self.clock = clock
        self._save = save
        self._main_free = main_marker_free  # the attempt row committed just before stands for MAIN's marker
        self._fresh: set[str] = set()  # markers set in this try
        self._unsaved = False
        self.sent = 0  # pieces this try sent (0: everything was there already, or found by reconcile)
        self.probe = False
        self.assume_absent = False

    def get(self, name: str) -> Piece | None:
        return self.pieces.get(name)

    def dump(self) -> dict[str, Any]:
        return {name: p.dump() for name, p in self.pieces.items()}

    def prober(self) -> "Ledger":
        """A copy that only looks (for `find`); a main post with no record is looked for as if it was sent."""
        copy = Ledger(self.pieces, clock=self.clock)
        copy.pieces.setdefault(MAIN, Piece(SENDING))
        copy.probe = True
        return copy

    def assume_main_sent(self, sent_at: datetime | None) -> None:
        """An interrupted try's main post may have gone out (its attempt was committed): reconcile it first."""
        self.pieces.setdefault(MAIN, Piece(SENDING, sent_at=sent_at))

    async def mark(self, name: str, handle: str | None = None) -> None:
        """Record that `name` is about to be sent (with the handle the platform gave for it); committed before returning."""
        now = self.clock.now() if self.clock is not None else None
        earlier = self.pieces.get(name)
        self.pieces[name] = Piece(SENDING, sent_at=earlier.sent_at if earlier and earlier.sent_at else now,
                                  handle=handle if handle is not None or earlier is None else earlier.handle,
                                  pending_since=earlier.pending_since if earlier else None)
        self._fresh.add(name)
        if self._save is None:
            return
        if name == MAIN and handle is None and self._main_free and not self._unsaved:
            self._unsaved = True  # the committed attempt row already says this
            return
        self._unsaved = False
        await self._save(self.dump())

    def done(self, name: str, made: Made) -> None:
        """The piece is upstream (committed with the next marker or with the try's result)."""
        old = self.pieces.get(name)
        self.pieces[name] = Piece(DONE, sent_at=old.sent_at if old else None, upstream_id=made.upstream_id, url=made.url,
                                  handle=old.handle if old else None, data=dict(made.data))
        self._unsaved = True

    def not_sent(self) -> None:
        """The try ended with a definite refusal: the piece it was sending did not reach the platform."""
        for name in self._fresh:
            if (p := self.pieces.get(name)) is not None and p.status == SENDING:
                del self.pieces[name]
        self._fresh.clear()

    async def step(self, name: str, send: Callable[..., Awaitable[Made]], reconcile: Reconcile | None = None,
                   *, marks: bool = False) -> Made:
        """One piece, exactly once: its record if done; else reconcile an earlier send; else mark and send.

        `send()` makes the piece public; with `marks`, it is `send(mark)` and calls `await mark(handle)` itself right
        before its irreversible call (after creating a container, say). `reconcile(piece)`: see the module
        docstring; None means the platform cannot be asked (every earlier send stays unknown)."""
        rec = self.pieces.get(name)
        if rec is not None and rec.status == DONE and rec.upstream_id is not None:
            return Made(rec.upstream_id, rec.url, dict(rec.data), existed=True)
        if rec is not None and rec.status == PENDING:
            if self.probe:
                raise NotSent(name)  # still processing: nothing of it is public
        elif self.probe and rec is None:
            rec = Piece(SENDING)
        if rec is not None and rec.status == SENDING:
            found = await self._reconcile(name, rec, reconcile)
            if found is not None:
                self.done(name, found)
                return found
            self.pieces.pop(name, None)  # certainly absent (or the user says so): send it
        if self.probe:
            raise NotSent(name)
        try:
            if marks:
                made = await send(lambda handle=None: self.mark(name, handle))
            else:
                await self.mark(name)
                made = await send()
        except Processing as exc:
            now = self.clock.now() if self.clock is not None else None
            self.pieces[name] = Piece(PENDING, handle=exc.handle, pending_since=rec.pending_since if rec and rec.pending_since
                                      else now)
            self._fresh.discard(name)
            self._unsaved = True
            raise
        self.sent += 1
        self.done(name, made)
        return made

    async def _reconcile(self, name: str, rec: Piece, reconcile: Reconcile | None) -> Made | None:
        try:
            if reconcile is None:
                raise UnknownOutcomeError(f"The platform cannot be asked whether piece {name} arrived.",
                                          remediation="Check the account on the platform, then resolve_post.")
            found = await reconcile(rec)
        except PlatformError as exc:  # a read that failed says nothing about the piece
            if self.assume_absent and not self.probe:
                return None
            if isinstance(exc, UnknownOutcomeError):
                raise
            raise UnknownOutcomeError(f"An earlier try sent piece {name} and checking whether it arrived failed: {exc.message}",
                                      status=exc.status, platform_response=exc.platform_response,
                                      remediation="omnipost checks again on the next try; resolve_post settles it by hand.") from exc
        return None if found is None else Made(found.upstream_id, found.url, dict(found.data), found.body, found.status, existed=True)
