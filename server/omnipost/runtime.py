"""Runtime: the services a running server uses, opened in the server's lifespan and closed after.

build_server() creates one Runtime; tools hold it and wait for it to be ready. Opening (loading
the database layer, migrating, reconciling what a crash left behind) starts once the client has
listed the tools, at the first tool call, or one second after start-up, whichever comes first;
so initialize and tools/list are answered without waiting for the store. Every tool call awaits
`wait_ready()`.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import httpx2

from omnipost.clock import Clock
from omnipost.config import Settings
from omnipost.errors import InternalError
from omnipost.platforms.base import PlatformAdapter

if TYPE_CHECKING:
    from omnipost.accounts import Accounts
    from omnipost.platforms.base import AdapterDeps
    from omnipost.publishing import PublishService
    from omnipost.scheduler import Scheduler
    from omnipost.store.db import Database

logger = logging.getLogger("omnipost.runtime")

SANDBOX_HOST = "https://sandbox.omnipost.local"


@dataclass
class Runtime:
    """Everything opened at start-up: database, HTTP client, adapters, services."""

    settings: Settings
    clock: Clock
    http: httpx2.AsyncClient | None = None  # injected by tests (fakes mounted by host)
    extra: dict[str, Any] = field(default_factory=lambda: {})
    db: "Database | None" = None
    accounts_: "Accounts | None" = None
    publisher_: "PublishService | None" = None
    media_: Any = None
    adapters: dict[str, PlatformAdapter] = field(default_factory=lambda: {})
    _owns_http: bool = False
    _users: int = 0  # the SSE transport enters the lifespan once per connection: open once, close after the last
    _gate: anyio.Lock = field(default_factory=anyio.Lock)
    _ready: anyio.Event | None = None
    _failed: bool = False
    _started: bool = False
    _tg: anyio.abc.TaskGroup | None = None
    scheduler_: "Scheduler | None" = None
    webhooks: Any = None  # webhooks.WebhookService
    _background_stop: anyio.Event | None = None
    _background_running: list[tuple[anyio.CancelScope, anyio.Event]] = field(default_factory=lambda: [])
    tokens: Any = None  # tokens.TokenWatcher, after open()
    sessions: Any = None  # oauth.session.TokenSessions: one TokenSession per account, after open()
    _connect: Any = None  # oauth.connect.ConnectService, built at the first connect (see connect_)
    _vault: Any = None
    hosting: Any = None  # media.host.MediaHosting, after open(): public URLs for platforms that fetch media by URL
    _scheduler_stop: anyio.Event | None = None
    _scheduler_done: anyio.Event | None = None
    _scheduler_scope: anyio.CancelScope | None = None
    services: Any = None  # services.Services: the operations both surfaces (MCP tools, REST routes) call

    @property
    def accounts(self) -> "Accounts":
        """The account service (raises if the server is not started)."""
        if self.accounts_ is None:
            raise InternalError("server not started")
        return self.accounts_

    @property
    def publisher(self) -> "PublishService":
        """The publishing service."""
        if self.publisher_ is None:
            raise InternalError("server not started")
        return self.publisher_

    @property
    def sandbox_url(self) -> str:
        """Where the sandbox upstream answers: an external one (OMNIPOST_SANDBOX_URL) or the embedded one."""
        return self.settings.sandbox_url or SANDBOX_HOST

    async def open(self) -> None:
        """Open the database, the HTTP client and the services; reconcile what a crash left behind."""
        # The database layer (SQLAlchemy, SQLModel) is the bulk of start-up; import it off the loop.
        await anyio.to_thread.run_sync(_import_store)
        from omnipost.accounts import Accounts
        from omnipost.idempotency import Idempotency
        from omnipost.publishing import PublishService
        from omnipost.store.crypto import Vault, load_key
        from omnipost.store.db import Database

        s = self.settings
        if s.database_url is None or s.secret_key is None:  # the database file or the key file lives there
            s.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = await Database.open(s.database_url, s.data_dir, self.clock.now())
        key = load_key(s.secret_key.get_secret_value() if s.secret_key else None, s.data_dir)
        vault = Vault(key)
        if self.http is None:
            mounts: dict[str, httpx2.AsyncBaseTransport] = {}
            if s.sandbox_url is None:
                # The embedded sandbox: a simulated platform in this process, with its own store.
                # It fetches the media URLs its container mode is given through this runtime's client (guarded).
                mounts[SANDBOX_HOST] = httpx2.ASGITransport(app=_embedded_sandbox(s.data_dir / "sandbox.db", self.clock,
                                                                                  fetch=lambda: self.http))
            # Keep-alive for a whole 25-target fan-out, so a batch does not open new connections.
            limits = httpx2.Limits(max_connections=100, max_keepalive_connections=50)
            self.http = httpx2.AsyncClient(mounts=mounts, timeout=httpx2.Timeout(30.0, connect=10.0), limits=limits,
                                           transport=self._guarded_transport(limits))
            self._owns_http = True
        from omnipost.media.host import build_hosting

        self.hosting = build_hosting(s, self.http, self.clock, key)
        self.accounts_ = Accounts(self.db, vault, self.clock)
        self.accounts_.deps = self.adapter_deps  # account defaults kept fresh from upstream (Mastodon's server limits)
        self.sessions = self._token_sessions(vault)
        self._vault = vault
        # Every adapter is registered before recovery, which may need any of them.
        self.adapters = self._adapters()
        self.media_ = self._media_service()
        from omnipost.webhooks import build_webhook_service

        self.webhooks = build_webhook_service(self)
        self.publisher_ = PublishService(self.db, self.accounts_, Idempotency(self.db, self.clock), self.adapters, self.clock,
                                         media=self.media_port(), concurrency=s.publish_concurrency,
                                         scheduler_tick=s.scheduler_tick, events=self.webhooks, lease_seconds=s.scheduler_lease)
        from omnipost.scheduler import Scheduler

        self.scheduler_ = Scheduler(self.db, self.publisher_, self.clock, lease_seconds=s.scheduler_lease, grace=s.schedule_grace,
                                    tick=s.scheduler_tick, max_attempts=s.scheduler_max_attempts)
        from omnipost.tokens import TokenWatcher

        self.tokens = TokenWatcher(self.db, self.accounts_, self.sessions, self.webhooks)
        counts = await self.publisher_.recover()
        if any(counts.values()):
            logger.info("recovered after restart: %s", counts)

    @property
    def resolver(self) -> Any:
        """DNS for every SSRF decision (upstream calls, media, webhooks): the system's, or a test's (extra["resolver"])."""
        from omnipost.media.fetch import SystemResolver

        return self.extra.get("resolver") or SystemResolver()

    def adapter_deps(self) -> "AdapterDeps":
        """What adapters and connect flows are built from (platforms/base.py): the guarded client, the clock, ..."""
        from omnipost.platforms.base import AdapterDeps

        async def save_credentials(account_id: str, credentials: dict[str, Any], expires_at: Any) -> None:
            await self.accounts.update_credentials(account_id, credentials, expires_at=expires_at)

        assert self.http is not None
        return AdapterDeps(http=self.http, clock=self.clock, timeout=self.settings.upstream_timeout, sandbox_url=self.sandbox_url,
                           save_credentials=save_credentials, resolver=self.resolver, sessions=self.sessions,
                           environ=self.extra.get("environ"))

    def _token_sessions(self, vault: Any) -> Any:
        """The accounts' TokenSessions: each platform's Refresher (its spec's `refresher`, built from the adapter
        deps), the database as the store and lock, and a refused refresh marking the account needs_reconnect
        (publishing's mark_account, which emits token.revoked)."""
        import os
        from dataclasses import replace

        from omnipost.oauth.providers import oauth_configured
        from omnipost.oauth.session import REFRESH_TIMEOUT, DatabaseCredentialStore, TokenSessions
        from omnipost.platforms.registry import PLATFORMS

        assert self.db is not None
        deps = self.adapter_deps()
        deps = replace(deps, timeout=min(deps.timeout, REFRESH_TIMEOUT))  # a refresh holds the account's lock
        built = {p: spec.refresher(deps) for p, spec in PLATFORMS.items() if spec.refresher is not None}
        refreshers = {p: r for p, r in built.items() if r is not None}  # None: an OAuth app not configured
        # The OAuth platforms renew through their provider data (oauth/providers.py) when their app is configured.
        environ = self.extra.get("environ") or os.environ
        for p in PLATFORMS:
            if p not in refreshers and oauth_configured(p, environ):
                from omnipost.oauth.client import refresher_for  # the OAuth library only when an app is configured

                if (found := refresher_for(p, deps.http, deps.clock, environ, timeout=deps.timeout)) is not None:
                    refreshers[p] = found

        async def refused(account_id: str) -> None:
            await self.publisher.mark_account(account_id, "needs_reconnect")

        return TokenSessions(DatabaseCredentialStore(self.db, vault), self.clock, refreshers, on_refused=refused)

    @property
    def connect_(self) -> Any:
        """The OAuth connect service (oauth/connect.py), built at its first use: a server that connects nothing never
        loads the OAuth library (idle memory, bench/idle_memory.py)."""
        if self._connect is None:
            if self._vault is None:
                raise InternalError("server not started")
            self._connect = self._connect_service(self._vault)
        return self._connect

    def _connect_service(self, vault: Any) -> Any:
        """OAuth connects (oauth/connect.py): app credentials and endpoint overrides from the environment (a test's
        extra["environ"]), the loopback listener unless a redirect URI is configured."""
        import os
        from datetime import timedelta

        from omnipost.oauth.connect import ConnectService, redirect_uri_for

        s = self.settings
        assert self.db is not None and self.accounts_ is not None
        return ConnectService(self.db, vault, self.accounts_, self.adapter_deps(), self.clock,
                              environ=self.extra.get("environ") or os.environ,
                              redirect_uri=redirect_uri_for(s.oauth_redirect_port, s.oauth_redirect_uri),
                              ttl=timedelta(seconds=s.oauth_connect_timeout),
                              listen_port=None if s.oauth_redirect_uri else s.oauth_redirect_port)

    def _adapters(self) -> dict[str, PlatformAdapter]:
        """One adapter per platform that has one, each built the same way: `spec.adapter.from_deps(deps)` (platforms/registry.py)."""
        from omnipost.platforms.registry import PLATFORMS

        deps = self.adapter_deps()
        return {p: spec.adapter.from_deps(deps) for p, spec in PLATFORMS.items() if spec.adapter is not None}

    def _guarded_transport(self, limits: httpx2.Limits) -> httpx2.AsyncBaseTransport:
        """The network transport of the runtime's client: every connection goes to an address the SSRF guard vetted
        (netguard.py); the operator's external sandbox is trusted as configured."""
        from omnipost.media.fetch import DEFAULT_PORTS
        from omnipost.netguard import GuardedBackend, GuardedTransport

        trusted = []
        # The operator's own endpoints are trusted as configured: an external sandbox, and an S3-compatible bucket
        # (often MinIO on a private address or loopback).
        for configured in (self.settings.sandbox_url, self.settings.media_s3_bucket and self.settings.media_s3_endpoint_url):
            if configured:
                url = httpx2.URL(configured)
                trusted.append((url.host, url.port or DEFAULT_PORTS.get(url.scheme, 80)))
        backend = GuardedBackend(self.resolver, trusted=trusted,
                                 allow_loopback=self.settings.upstream_allow_loopback, inner=self.extra.get("network_backend"))
        return GuardedTransport(backend, limits=limits)

    def _media_service(self) -> Any:
        from omnipost.media.service import MediaService
        from omnipost.media.storage import MediaStore

        assert self.db is not None and self.http is not None
        store = MediaStore(self.settings.data_dir, self.settings.media_roots, max_bytes=self.settings.media_max_bytes)
        return MediaService(self.db, store, self.resolver, self.http, self.clock, hosting=self.hosting)

    def media_port(self) -> Any:
        """The media operations publishing needs (and the reachability check of other URLs a post carries)."""
        from omnipost.platforms.base import MediaFile
        from omnipost.publishing import MediaPort

        service = self.media_

        async def facts_of(profile_id: str, media_id: str) -> Any:
            record = await service.get(profile_id, media_id)
            return service.facts(record) if record is not None else None

        async def file_of(profile_id: str, media_id: str) -> MediaFile | None:
            record = await service.get(profile_id, media_id)
            if record is None:
                return None
            stored = service.stored(record)

            async def locate() -> str:  # asked only by adapters whose platform fetches media by URL
                return await self.hosting.url_for(stored)

            return MediaFile(index=0, mime=record.mime, kind=record.kind, size=record.size, path=stored.path,
                             width=record.width, height=record.height, alt_text=record.alt_text, locate=locate)

        async def check_url(url: str) -> None:
            from omnipost.media.fetch import check_reachable

            await check_reachable(url, http=service.http, resolver=service.resolver, timeout=service.url_timeout)

        return MediaPort(upload=service.upload, facts_of=facts_of, file_of=file_of, check_url=check_url, hosting=self.hosting)

    def start_background(self, tg: anyio.abc.TaskGroup) -> None:
        """Everything a long-running process does besides answering tools (after open(), until close()): the
        scheduler, webhook deliveries, version.deprecated checks and token refresh / token.expiring checks."""
        from omnipost.versions import VersionWatcher

        assert self.db is not None and self.webhooks is not None and self.tokens is not None
        self.start_scheduler(tg)
        stop = self._background_stop = anyio.Event()
        for loop in (lambda: self.webhooks.run_forever(stop, self.settings.webhook_tick),  # type: ignore[union-attr]
                     lambda: VersionWatcher.of(self.db, self.webhooks).run_forever(stop, self.clock),  # type: ignore[arg-type]
                     lambda: self.tokens.run_forever(stop, self.clock, self.settings.token_check_interval)):  # type: ignore[union-attr]
            scope, done = anyio.CancelScope(), anyio.Event()
            self._background_running.append((scope, done))
            tg.start_soon(self._run_loop, loop, scope, done)

    @staticmethod
    async def _run_loop(loop: Any, scope: anyio.CancelScope, done: anyio.Event) -> None:
        try:
            with scope:
                await loop()
        finally:
            done.set()

    def start_scheduler(self, tg: anyio.abc.TaskGroup) -> None:
        """Run the scheduler loop in `tg` until stop_scheduler() (after open())."""
        assert self.scheduler_ is not None
        self._scheduler_stop, self._scheduler_done = anyio.Event(), anyio.Event()
        tg.start_soon(self._run_scheduler)

    async def _run_scheduler(self) -> None:
        assert self.scheduler_ is not None and self._scheduler_stop is not None and self._scheduler_done is not None
        try:
            with anyio.CancelScope() as scope:
                self._scheduler_scope = scope
                await self.scheduler_.run_forever(self._scheduler_stop)
        finally:
            self._scheduler_done.set()

    async def stop_scheduler(self, patience: float = 10.0) -> None:
        """Ask the scheduler loop to finish its tick and stop; cancel it after `patience` seconds
        (an interrupted publish keeps its lease, and the lease's expiry hands it to reconciliation)."""
        if self._scheduler_stop is None or self._scheduler_done is None:
            return
        self._scheduler_stop.set()
        with anyio.move_on_after(patience):
            await self._scheduler_done.wait()
        if not self._scheduler_done.is_set() and self._scheduler_scope is not None:
            self._scheduler_scope.cancel()
            await self._scheduler_done.wait()
        self._scheduler_stop = self._scheduler_done = self._scheduler_scope = None

    async def stop_background(self, patience: float = 10.0) -> None:
        """Stop what start_background() started and wait until it has: the scheduler finishes its tick, each other
        loop its current step (cancelled after `patience` seconds). Nothing of it still runs when this returns, so
        close() never closes the database under a step that is using it."""
        await self.stop_scheduler()
        if self._background_stop is not None:
            self._background_stop.set()
            self._background_stop = None
        running, self._background_running = self._background_running, []
        with anyio.move_on_after(patience):
            for _, done in running:
                await done.wait()
        for scope, done in running:
            scope.cancel()
            await done.wait()

    async def close(self) -> None:
        """Close what open() opened."""
        await self.stop_background()
        if self.webhooks is not None:
            await self.webhooks.aclose()
            self.webhooks = None
        if self._owns_http and self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.db is not None:
            await self.db.close()
            self.db = None

    def start(self) -> None:
        """Begin opening in the background (idempotent)."""
        if self._tg is not None and not self._started:
            self._started = True
            self._tg.start_soon(self._open_in_background)

    async def _start_soon(self) -> None:
        # Without any client request (a restarted server recovering on its own), open anyway.
        await anyio.sleep(1.0)
        self.start()

    async def wait_ready(self) -> None:
        """Wait until open() has finished (tools call this first).

        Raises:
            InternalError: opening failed (the log has the cause).
        """
        if self._ready is None:
            raise InternalError("server not started")
        self.start()
        await self._ready.wait()
        if self._failed:
            raise InternalError("the server could not open its database; see its log")

    async def _open_in_background(self) -> None:
        assert self._ready is not None
        try:
            await self.open()
        except Exception:  # noqa: BLE001 - start-up boundary: logged once, reported to every tool call
            logger.exception("opening the server failed")
            self._failed = True
        else:
            if self.settings.scheduler_enabled and self._tg is not None:
                self.start_background(self._tg)  # every long-running server publishes what falls due
        finally:
            self._ready.set()

    @asynccontextmanager
    async def lifespan(self, _server: Any) -> AsyncIterator["Runtime"]:
        """The MCP server lifespan: start opening at the first entry, close after the last exit."""
        async with anyio.create_task_group() as tg:
            async with self._gate:
                if self._users == 0:
                    self._ready, self._failed, self._started, self._tg = anyio.Event(), False, False, tg
                    tg.start_soon(self._start_soon)
                self._users += 1
            try:
                yield self
            finally:
                async with self._gate:
                    self._users -= 1
                    if self._users == 0:
                        assert self._ready is not None
                        self.start()
                        await self._ready.wait()
                        await self.close()
                        self._tg = None
                        tg.cancel_scope.cancel()


def _import_store() -> None:
    """Import the database layer (run in a worker thread at start-up)."""
    import omnipost.publishing  # noqa: F401 - pulls in sqlmodel, sqlalchemy, aiosqlite, cryptography
    import omnipost.store.db  # noqa: F401  # the engine and aiosqlite


def _embedded_sandbox(path: Path, clock: Clock, *, fetch: Any) -> Any:
    """The embedded sandbox upstream as an ASGI app that builds itself at its first request: a server that never
    publishes to a sandbox account neither imports it nor opens its store."""
    app: Any = None

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        nonlocal app
        if app is None:
            from omnipost.sandbox.upstream import create_sandbox_app

            app = create_sandbox_app(path, clock=clock, fetch=fetch)
        await app(scope, receive, send)

    return asgi
