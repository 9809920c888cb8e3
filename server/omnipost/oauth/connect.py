"""The OAuth connect flow (issue 12 item 2): start → the user consents → complete, for a model and for a person.

`ConnectService.start` stores a connect session (state, the PKCE verifier sealed with the credentials key, profile,
platform, redirect URI, expiry from the injected clock) and answers the authorization URL. The user's browser then
comes back to the redirect URI: the loopback listener (oauth/listener.py) hands the query to `complete` at once (X's
codes live 30 s), or the user pastes the URL (or the code) into complete_connect. `complete` claims the pending
session (one exchange per session, whoever comes first), exchanges the code with the verifier, runs the provider's
post-exchange step, and stores the account(s) (a reconnect of the same upstream identity updates its account).

What the tokens become is the session's `target`: "account" (an account of the platform) or "sandbox" (a sandbox
account emulating the platform, connected through the platform's real OAuth flow: how the flow is tried end to end
before the platform's adapter exists, or against a test authorization server).

A platform whose users name their own server (INSTANCE_PROVIDERS: Mastodon) has no configured app: `configured`
places its provider on the `instanceUrl` argument (checked by netguard, stored with the session) and registers omnipost's
app there at the first connect to that server, keeping it per instance (oauth/apps.py) for every later connect; the
completion reuses the app the code was issued to.

`bring_token` is the other way in: a token the user generated in the platform's developer portal, verified by the
same post-exchange step (a whoami upstream) before anything is stored.
"""

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
from sqlalchemy import update
from sqlmodel import col

from omnipost.accounts import Accounts
from omnipost.clock import Clock
from omnipost.errors import (AppError, ConfigError, InputError, NotFoundError, PlatformAuthError, PlatformError,
                             ValidationFailedError, echo)
from omnipost.oauth.client import OAuthClient, credentials_from, new_verifier
from omnipost.oauth.generic import step_for
from omnipost.oauth.listener import open_listener, serve
from omnipost.oauth.model import ExchangeContext, TokenSet
from omnipost.oauth.providers import INSTANCE_PROVIDERS, PROVIDERS, Provider, credential_variables, on_instance, provider_for
from omnipost.platforms.base import AdapterDeps, Connected, ConnectRequest
from omnipost.store.crypto import Vault
from omnipost.store.db import Database
from omnipost.store.models import Account, ConnectSession

logger = logging.getLogger("omnipost.oauth")

PENDING, EXCHANGING, CONNECTED, FAILED, EXPIRED = "pending", "exchanging", "connected", "failed", "expired"
CALLBACK_PATH = "/callback"


class ConnectError(InputError):
    """A connect session cannot complete as asked (expired, state mismatch, already finished); `rule` says which."""

    code = "validation_failed"


@dataclass(frozen=True)
class Started:
    """A connect waiting for the user."""

    state: str
    platform: str
    authorization_url: str
    redirect_uri: str
    expires_at: datetime


@dataclass
class ConnectService:
    """Connect sessions and their completion (one per runtime or CLI run)."""

    db: Database
    vault: Vault
    accounts: Accounts
    deps: AdapterDeps
    clock: Clock
    environ: Mapping[str, str]
    redirect_uri: str
    ttl: timedelta = timedelta(minutes=10)
    listen_port: int | None = None  # the loopback listener's port; None: no listener (a configured redirect URI)
    on_finished: Any = None  # callable(state) after a session ends (the CLI waits on it)
    _listening: bool = field(default=False, init=False)
    _closed: anyio.Event | None = field(default=None, init=False)

    # -- the loopback listener ---------------------------------------------------------------------------------

    async def ensure_listening(self, tg: anyio.abc.TaskGroup) -> bool:
        """Start the loopback listener in `tg` unless it runs; False when there is none (a configured redirect URI,
        or the port is taken: the user then pastes the URL into complete_connect)."""
        if self.listen_port is None:
            return False
        if self._listening:
            return True
        try:
            listener = await open_listener(self.listen_port)
        except OSError as exc:
            logger.warning("cannot listen for the OAuth redirect on 127.0.0.1:%d (%s); complete_connect takes the URL instead",
                           self.listen_port, exc.strerror or exc)
            return False
        self._listening, self._closed = True, anyio.Event()
        tg.start_soon(self._serve, listener)
        return True

    async def wait_closed(self) -> None:
        """Until the listener has answered its last request and closed (it closes once no connect is pending)."""
        if self._closed is not None:
            await self._closed.wait()

    async def _serve(self, listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> None:
        """Serve redirects until no connect is pending (checked after each request, and once per session lifetime)."""
        async def none_pending() -> bool:
            return await self.pending() == 0

        try:
            async with listener:
                while True:
                    with anyio.move_on_after(self.ttl.total_seconds()):
                        await serve(listener, self._from_redirect, path=CALLBACK_PATH, served=none_pending)
                        return
                    if await none_pending():
                        return
        finally:
            self._listening = False
            if self._closed is not None:
                self._closed.set()

    async def _from_redirect(self, state: str, code: str | None, error: str | None) -> str:
        row = await self.complete(state, code=code, error=error)
        return f"Your {row.platform} account" if len(row.account_ids) == 1 else f"{len(row.account_ids)} {row.platform} accounts"

    # -- configuration ---------------------------------------------------------------------------------------

    def provider(self, platform: str) -> Provider:
        """The platform's configured provider.

        Raises:
            ConfigError: the app credentials are not set (names the variables and the portal page).
        """
        provider = provider_for(platform, self.environ)
        if provider.app is None:
            id_var, secret_var = credential_variables(platform)
            raise ConfigError(
                f"{platform} is not configured: set {id_var} and {secret_var} (your app's OAuth client id and secret).",
                rule="oauth.app_credentials_missing",
                remediation=(f"Create an app at {provider.portal}; register the redirect URI {self.redirect_uri}; put "
                             f"{id_var}=... and {secret_var}=... in the environment or .env, restart omnipost, and connect again."),
                doc_url=provider.portal.split(" ")[0] or None)
        return provider

    async def configured(self, platform: str, args: dict[str, Any], *, app: str = "register",
                         redirect_uri: str | None = None) -> Provider:
        """The provider to connect with: a configured platform's (see provider), or, for a platform whose users name
        their server (INSTANCE_PROVIDERS: Mastodon), the provider placed on `args["instanceUrl"]` with omnipost's app
        there. `app`: "register" (reuse the app registered on that server, else register one and keep it: oauth/apps.py),
        "stored" (only reuse: completing a connect needs the app its code was issued to), or "none" (a brought token).

        Raises:
            ValidationFailedError: no usable instanceUrl. UpstreamForbiddenError: it is at a non-public address.
            ConfigError: see provider. ConnectError: "stored" and no app is registered there any more.
            PlatformError: the server refused or failed the registration."""
        base = INSTANCE_PROVIDERS.get(platform)
        if base is None:
            return self.provider(platform)
        from omnipost.netguard import check_base_url
        from omnipost.oauth.apps import InstanceApps
        from omnipost.oauth.generic import load_ref

        url = args.get("instanceUrl")
        if not isinstance(url, str) or not url:
            raise ValidationFailedError(f"Connecting {platform} needs instanceUrl, the server the account is on.", path="instanceUrl",
                                        remediation="Give the server's address, e.g. https://mastodon.social.")
        instance = check_base_url(url, path="instanceUrl")
        if app == "none":
            return on_instance(base, instance, None)
        apps, redirect = InstanceApps(self.db, self.vault, self.clock), redirect_uri or self.redirect_uri
        found = await apps.get(platform, instance, redirect, base.scope_string)
        if found is None and app == "stored":
            raise ConnectError(f"omnipost's app on {instance} is gone; this connect cannot complete.", rule="connect.app_missing",
                               remediation="Start again with connect_account.")
        if found is None:
            found = await load_ref(base.register)(self.deps.http, on_instance(base, instance, None), redirect, self.clock,
                                                  self.deps.timeout)
            await apps.put(platform, instance, redirect, base.scope_string, found)
            logger.info("registered omnipost's app on a %s server", platform)
        return on_instance(base, instance, found)

    def client(self, provider: Provider) -> OAuthClient:
        return OAuthClient(provider, self.deps.http, self.clock, timeout=self.deps.timeout)

    # -- start -------------------------------------------------------------------------------------------------

    async def start(self, profile_id: str, platform: str, *, target: str = "account", args: dict[str, Any] | None = None) -> Started:
        """A new connect session; its authorization URL.

        Raises:
            ConfigError: no app credentials for the platform.
        """
        provider = await self.configured(platform, dict(args or {}))
        state, verifier = secrets.token_urlsafe(32), new_verifier()
        now = self.clock.now()
        row = ConnectSession(state=state, profile_id=profile_id, platform=platform, target=target, redirect_uri=self.redirect_uri,
                             verifier=self.vault.seal({"verifier": verifier}), args=dict(args or {}), status=PENDING,
                             created_at=now, expires_at=now + self.ttl)
        async with self.db.session() as s:
            s.add(row)
            await s.commit()
        url = self.client(provider).authorization_url(redirect_uri=self.redirect_uri, state=state, verifier=verifier)
        logger.info("connect started: %s (%s)", platform, target)
        return Started(state=state, platform=platform, authorization_url=url, redirect_uri=self.redirect_uri, expires_at=now + self.ttl)

    # -- status ------------------------------------------------------------------------------------------------

    async def get(self, state: str, *, profile_id: str | None = None, test_mode: bool = False) -> ConnectSession:
        """The session of a state (in the profile, when given); an expired pending one is marked so.

        Raises:
            NotFoundError: unknown state, another profile's, or (test_mode: an op_test_ key) one for a real account.
        """
        async with self.db.session() as s:
            row = await s.get(ConnectSession, state)
        if row is None or (profile_id is not None and row.profile_id != profile_id) or (test_mode and row.target != "sandbox"):
            raise NotFoundError("No connect was started with this state.", rule="state",
                                remediation="Start again with connect_account; use the state it answers.")
        if row.status in (PENDING, EXCHANGING) and self.clock.now() >= row.expires_at:
            # (an exchange still running past the expiry was cut short, e.g. by a crash: its code is spent)
            await self._finish(state, EXPIRED, error=ConnectError("The connect expired before the user finished.",
                                                                  rule="connect.expired").to_error_object().model_dump(exclude_none=True),
                               only_from=row.status)
            row.status = EXPIRED
        return row

    async def pending(self) -> int:
        """How many sessions still wait for the user (the listener stays up while any does)."""
        from sqlmodel import func, select

        async with self.db.session() as s:
            return int((await s.exec(select(func.count()).select_from(ConnectSession).where(
                ConnectSession.status == PENDING, col(ConnectSession.expires_at) > self.clock.now()))).one())

    # -- complete ----------------------------------------------------------------------------------------------

    async def complete(self, state: str, *, code: str | None = None, redirect_url: str | None = None,
                       profile_id: str | None = None, error: str | None = None, test_mode: bool = False) -> ConnectSession:
        """Finish a session: the code (given, or read from the URL the browser came back to) for tokens, the
        post-exchange step, the account(s) stored. Returns the session, now connected.

        Raises:
            ConnectError: expired, already finished, or the URL's state is not this session's.
            NotFoundError: unknown state.
            PlatformAuthError: the user refused, or the platform refused the code (used, expired, wrong verifier).
            PlatformError: the platform could not be reached (the session stays pending: try again).
        """
        if redirect_url is not None:
            query = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url.strip()).query).items()}
            if query.get("state") != state:
                raise ConnectError("The URL's state is not this connect's: it belongs to another (or a forged) attempt.",
                                   rule="connect.state_mismatch", remediation="Paste the URL of the browser tab this connect opened.")
            code, error = query.get("code"), query.get("error")
        row = await self.get(state, profile_id=profile_id, test_mode=test_mode)
        if row.status == EXPIRED:
            raise ConnectError("This connect expired before the user finished.", rule="connect.expired",
                               remediation="Start again with connect_account.")
        if row.status != PENDING:
            raise ConnectError(f"This connect is already {row.status}.", rule=f"connect.{row.status}",
                               remediation="Call complete_connect with only the state to see its outcome.")
        if error is not None or not code:
            refused = PlatformAuthError(f"The user (or {row.platform}) did not authorize: {echo(error or 'no code', 100)}.",
                                        rule="connect.denied", remediation="Start again with connect_account and approve the access.")
            await self._finish(state, FAILED, error=refused.to_error_object().model_dump(exclude_none=True), only_from=PENDING)
            raise refused
        if not await self._claim(state):
            raise ConnectError("This connect is already being completed.", rule="connect.exchanging")
        try:
            verifier = self.vault.open(row.verifier)["verifier"]
            provider = await self.configured(row.platform, row.args, app="stored", redirect_uri=row.redirect_uri)
            tokens = await self.client(provider).exchange(code=code, redirect_uri=row.redirect_uri, verifier=verifier)
            ids = await self._store(row.profile_id, provider, tokens, target=row.target, args=row.args)
        except PlatformError as exc:
            if isinstance(exc, PlatformAuthError):
                await self._finish(state, FAILED, error=exc.to_error_object().model_dump(exclude_none=True))
            else:  # nothing was exchanged for good: the code may still work once the platform answers
                await self._finish(state, PENDING)
            raise
        except AppError as exc:
            await self._finish(state, FAILED, error=exc.to_error_object().model_dump(exclude_none=True))
            raise
        await self._finish(state, CONNECTED, account_ids=ids)
        logger.info("connect finished: %s (%d account%s)", row.platform, len(ids), "" if len(ids) == 1 else "s")
        return await self.get(state)

    async def _claim(self, state: str) -> bool:
        """pending → exchanging, for one caller only (the listener and a paste may race)."""
        async with self.db.session() as s:
            result = await s.exec(update(ConnectSession).where(  # type: ignore[call-overload]
                col(ConnectSession.state) == state, col(ConnectSession.status) == PENDING).values(status=EXCHANGING))
            await s.commit()
            return bool(result.rowcount)

    async def _finish(self, state: str, status: str, *, error: dict[str, Any] | None = None, account_ids: list[str] | None = None,
                      only_from: str = EXCHANGING) -> None:
        async with self.db.session() as s:
            values: dict[str, Any] = {"status": status}
            if status != PENDING:
                values |= {"finished_at": self.clock.now(), "error": error, "account_ids": account_ids or []}
            await s.exec(update(ConnectSession).where(  # type: ignore[call-overload]
                col(ConnectSession.state) == state, col(ConnectSession.status) == only_from).values(**values))
            await s.commit()
        if status != PENDING and self.on_finished is not None:
            self.on_finished(state)

    # -- storing -----------------------------------------------------------------------------------------------

    async def _store(self, profile_id: str, provider: Provider, tokens: TokenSet, *, target: str, args: dict[str, Any]) -> list[str]:
        """Run the post-exchange step and store what it found; the ids of the accounts stored."""
        ctx = ExchangeContext(http=self.deps.http, tokens=tokens, app=provider.app,  # type: ignore[arg-type]  # configured
                              api_base=provider.api_base, clock=self.clock, args=dict(args))
        found = await step_for(provider, self.environ)(ctx)
        if not found:
            raise PlatformAuthError(f"Nothing to post as was found for this {provider.platform} login.",
                                    rule=f"{provider.platform}.accounts.none",
                                    remediation="Check the login has an account (a Page, a business account) and the permissions asked.")
        stored: list[Account] = []
        for connected in found:
            stored.append(await self._add(profile_id, provider.platform, connected, target=target, args=args))
        return [a.id for a in stored]

    async def _add(self, profile_id: str, platform: str, connected: Connected, *, target: str, args: dict[str, Any]) -> Account:
        defaults = dict(args.get("defaults") or {}) | dict(connected.defaults)
        if target == "sandbox":
            from omnipost.platforms import sandbox

            # One sandbox account per emulated platform and identity: alice connected through X is alice.x there.
            handle = args.get("handle") or f"{connected.handle}.{platform}"
            # It publishes as that platform does unless told otherwise: its own ids (search), containers (Instagram, Threads).
            mode = args.get("sandboxMode") or sandbox.mode_like(platform)
            emulated = await sandbox.connect_account(ConnectRequest(
                handle=handle, args={"emulates": platform, "sandboxMode": mode}, defaults=defaults, deps=self.deps))
            # The sandbox publishes with its own token; the OAuth tokens are kept beside it, as the platform's would be.
            return await self.accounts.add(profile_id, platform="sandbox", emulates=emulated.emulates, handle=emulated.handle,
                                           credentials=emulated.credentials | {"oauth": connected.credentials},
                                           defaults=emulated.defaults, token_expires_at=connected.token_expires_at,
                                           identity=emulated.identity)
        return await self.accounts.add(profile_id, platform=platform, handle=args.get("handle") or connected.handle,
                                       credentials=connected.credentials, defaults=defaults,
                                       token_expires_at=connected.token_expires_at, identity=connected.identity)

    # -- a brought token ---------------------------------------------------------------------------------------

    async def bring_token(self, profile_id: str, platform: str, *, access_token: str, refresh_token: str | None = None,
                          expires_at: datetime | None = None, target: str = "account", args: dict[str, Any] | None = None) -> list[str]:
        """Store a token the user generated, after the post-exchange step verified it upstream (whoami).

        Raises:
            ConfigError: no app credentials (refresh and Meta's exchange need them).
            PlatformAuthError: the platform refused the token.
        """
        if platform not in PROVIDERS and platform not in INSTANCE_PROVIDERS:
            raise ValidationFailedError(f"{platform} does not connect with an OAuth token.", path="accessToken")
        provider = await self.configured(platform, dict(args or {}), app="none")
        tokens = TokenSet(access_token=access_token, refresh_token=refresh_token, expires_at=expires_at)
        return await self._store(profile_id, provider, tokens, target=target, args=dict(args or {}))


def redirect_uri_for(port: int, configured: str | None) -> str:
    """The redirect URI users register in their app: the configured one, else the loopback listener's."""
    return configured or f"http://127.0.0.1:{port}{CALLBACK_PATH}"


__all__ = ["ConnectError", "ConnectService", "Started", "credentials_from", "redirect_uri_for"]
