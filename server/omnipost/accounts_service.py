"""The account and profile operations of the service boundary (services.Services mixes them in): the connect flow
(each platform's spec's connect_with, or OAuth start / bring-your-own-token), complete_connect, list/get/disconnect,
list/create profiles. connect_account and POST /v1/accounts both end here; what stays at the MCP surface is asking
the client to open the authorization URL (URL-mode elicitation), handed in as `ask_to_open`."""

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from omnipost.auth import Caller, Reach
from omnipost.errors import PlatformAuthError, PlatformError, UnauthorizedError, ValidationFailedError
from omnipost.outputs import (AccountList, AccountOut, ConnectOut, ConnectStatus, DisconnectedOut, ProfileList, ProfileOut,
                              account_out, profile_out)
from omnipost.platforms.base import Verifying
from omnipost.platforms.models import Strict
from omnipost.platforms.registry import CONNECT_ARGS, CONNECTABLE, PLATFORMS
from omnipost.tools.common import Instant

if TYPE_CHECKING:
    from omnipost.runtime import Runtime
    from omnipost.store.models import Profile

logger = logging.getLogger("omnipost.accounts")

AskToOpen = Callable[[str, str, str], Awaitable[bool]]  # (url, state, platform) -> whether the client opened it


class ConnectArgs(Strict):
    """connect_account's arguments (POST /v1/accounts' body): see the tool's description for each."""

    platform: Literal[CONNECTABLE]  # type: ignore[valid-type]  # the registry's tuple, fixed at import
    handle: Annotated[str | None, Field(min_length=1, max_length=253)] = None
    emulates: Annotated[str | None, Field(max_length=32, description="sandbox only: the platform whose rules apply.")] = None
    appPassword: Annotated[str | None, Field(max_length=256, description="bluesky only: an app password.")] = None
    pdsUrl: Annotated[str | None, Field(max_length=2048, description="bluesky only: the PDS to log in to.")] = None
    instanceUrl: Annotated[str | None, Field(max_length=2048, description="mastodon only: its server.")] = None
    profileId: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    defaults: dict[str, str] | None = None
    sandboxMode: Literal["caller_id", "own_id", "container"] | None = None
    oauth: bool | None = None
    accessToken: Annotated[str | None, Field(max_length=4096)] = None
    refreshToken: Annotated[str | None, Field(max_length=4096)] = None
    expiresAt: Instant | None = None


class CompleteConnectArgs(Strict):
    """complete_connect's arguments (POST /v1/accounts/connect/complete)."""

    state: Annotated[str, Field(max_length=200, description="From the connect's answer.")]
    redirectUrl: Annotated[str | None, Field(max_length=8192, description="The URL the browser landed on.")] = None
    code: Annotated[str | None, Field(max_length=4096, description="Or only its code.")] = None


class CreateProfileArgs(Strict):
    """create_profile's argument (POST /v1/profiles)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]


def refuse_foreign_arguments(platform: str, given: dict[str, object]) -> None:
    """validation_failed naming the first argument given that `platform` does not take."""
    for argument, value in given.items():
        owner = CONNECT_ARGS[argument]
        if value is not None and owner != platform:
            raise ValidationFailedError(f"{argument} is only for {owner} accounts, not {platform}.", path=argument,
                                        remediation=f"Leave {argument} out when connecting a {platform} account.")


def oauth_target(platform: str, emulates: str | None, oauth: bool | None, access_token: str | None) -> tuple[str | None, str]:
    """(the OAuth provider's platform, what the tokens become), or (None, "") for a connect without OAuth."""
    from omnipost.domain import PLATFORM_ALIASES
    from omnipost.oauth.providers import INSTANCE_PROVIDERS, PROVIDERS

    if platform == "sandbox":
        if not oauth and access_token is None:
            return None, ""
        known = PLATFORM_ALIASES.get((emulates or "").strip().lower())
        name = known.value if known is not None else ""
        if name not in PROVIDERS:
            raise ValidationFailedError(f"A sandbox connected through OAuth emulates one of {', '.join(PROVIDERS)}.",
                                        path="emulates", remediation="Set emulates to a platform that connects through OAuth.")
        return name, "sandbox"
    if platform in PROVIDERS or platform in INSTANCE_PROVIDERS:
        return platform, "account"
    return None, ""


class AccountServices:
    """Accounts and profiles, for any surface (mixed into services.Services, whose rt, profile and reach it uses)."""

    rt: "Runtime"

    if TYPE_CHECKING:  # provided by services.Services
        async def profile(self, caller: Caller, requested: str | None) -> "Profile": ...
        async def reach(self, caller: Caller, requested: str | None) -> Reach: ...

    async def connect(self, caller: Caller, a: ConnectArgs, *, ask_to_open: AskToOpen | None = None) -> ConnectOut:
        """connect_account / POST /v1/accounts: connect now, or start an OAuth connect (status pending).

        Raises:
            ValidationFailedError, UnauthorizedError, ConnectError, PlatformError: see connect_account.
        """
        from omnipost.platforms.base import ConnectRequest

        rt = self.rt
        profile = await self.profile(caller, a.profileId)
        given = {"emulates": a.emulates, "sandboxMode": a.sandboxMode, "appPassword": a.appPassword, "pdsUrl": a.pdsUrl,
                 "instanceUrl": a.instanceUrl}
        refuse_foreign_arguments(a.platform, given)
        spec = PLATFORMS[a.platform]
        if caller.test_mode and spec.real:
            raise UnauthorizedError("An op_test_ key can only connect sandbox accounts.", rule="platform",
                                    remediation="Use an op_live_ key, or connect a sandbox account.")
        oauth_platform, target = oauth_target(a.platform, a.emulates, a.oauth, a.accessToken)
        if oauth_platform is None:
            for name, value in (("oauth", a.oauth), ("accessToken", a.accessToken), ("refreshToken", a.refreshToken),
                                ("expiresAt", a.expiresAt)):
                if value is not None and value is not False:
                    raise ValidationFailedError(f"{name} is for accounts connected through OAuth, not {a.platform}.", path=name,
                                                remediation=f"Leave {name} out, or connect a platform that uses OAuth.")
            if a.handle is None:
                raise ValidationFailedError("handle is required for this platform.", path="handle")
            assert spec.connect_with is not None  # CONNECTABLE: the platforms with a connect flow
            connected = await spec.connect_with(ConnectRequest(
                handle=a.handle, args={k: v for k, v in given.items() if v is not None}, defaults=dict(a.defaults or {}),
                deps=rt.adapter_deps()))
            account = await rt.accounts.add(profile.id, platform=a.platform, emulates=connected.emulates, handle=connected.handle,
                                            credentials=connected.credentials, defaults=connected.defaults,
                                            token_expires_at=connected.token_expires_at, identity=connected.identity)
            return ConnectOut(**account_out(account).model_dump(), accountIds=[account.id])
        args: dict[str, Any] = {k: v for k, v in {"handle": a.handle, "defaults": a.defaults, "sandboxMode": a.sandboxMode,
                                                  "instanceUrl": a.instanceUrl}.items() if v}
        service = rt.connect_
        if a.accessToken is not None:
            ids = await service.bring_token(profile.id, oauth_platform, access_token=a.accessToken, refresh_token=a.refreshToken,
                                            expires_at=a.expiresAt, target=target, args=args)
            return ConnectOut(**account_out(await rt.accounts.get(profile.id, ids[0])).model_dump(), accountIds=ids)
        if a.refreshToken is not None or a.expiresAt is not None:
            raise ValidationFailedError("refreshToken and expiresAt go with accessToken.",
                                        path="refreshToken" if a.refreshToken else "expiresAt")
        started = await service.start(profile.id, oauth_platform, target=target, args=args)
        if rt._tg is not None:  # noqa: SLF001 - the runtime's task group runs the loopback redirect listener
            await service.ensure_listening(rt._tg)  # noqa: SLF001
        opened = await ask_to_open(started.authorization_url, started.state, oauth_platform) if ask_to_open else False
        return ConnectOut(status="pending", platform=a.platform, emulates=oauth_platform if target == "sandbox" else None,
                          state=started.state, authorizationUrl=started.authorization_url, redirectUri=started.redirect_uri,
                          expiresAt=started.expires_at, opened=opened)

    async def complete_connect(self, caller: Caller, state: str, *, redirect_url: str | None = None, code: str | None = None,
                               profile_id: str | None = None) -> ConnectStatus:
        """complete_connect / POST /v1/accounts/connect/complete: finish an OAuth connect, or say where it stands."""
        profile = await self.profile(caller, profile_id)
        service = self.rt.connect_
        if redirect_url is not None or code is not None:
            row = await service.complete(state, code=code, redirect_url=redirect_url, profile_id=profile.id, test_mode=caller.test_mode)
        else:
            row = await service.get(state, profile_id=profile.id, test_mode=caller.test_mode)
        accounts = [account_out(await self.rt.accounts.get(profile.id, a)) for a in row.account_ids]
        return ConnectStatus(state=row.state, platform=row.platform, status=row.status, expiresAt=row.expires_at,  # type: ignore[arg-type]
                             accounts=accounts, error=row.error)

    async def list_accounts(self, caller: Caller, *, profile_id: str | None = None, platform: str | None = None) -> AccountList:
        """list_accounts / GET /v1/accounts."""
        reach = await self.reach(caller, profile_id)
        return AccountList(accounts=[account_out(a) for a in await self.rt.accounts.list(reach, platform)])

    async def get_account(self, caller: Caller, account_id: str, *, profile_id: str | None = None) -> AccountOut:
        """get_account / GET /v1/accounts/{id}: the account, its health checked with the platform where the adapter can
        ask (`Verifying`, a whoami): refused → needs_reconnect (token.revoked); a platform that cannot be asked now
        leaves the health as stored."""
        reach = await self.reach(caller, profile_id)
        account = await self.rt.accounts.get(reach, account_id)
        adapter = self.rt.adapters.get(account.platform)
        if account.health != "active" or not isinstance(adapter, Verifying):
            return account_out(account)
        try:
            who = await adapter.verify(self.rt.accounts.context(account))
        except PlatformAuthError:
            await self.rt.publisher.mark_account(account.id, "needs_reconnect")
            return account_out(await self.rt.accounts.get(reach, account_id))
        except PlatformError as exc:
            logger.info("could not verify account %s (%s)", account.id, exc.code)
            return account_out(account)
        return account_out(account).model_copy(update={"displayName": who.name or account.display_name})

    async def disconnect(self, caller: Caller, account_id: str, *, profile_id: str | None = None) -> DisconnectedOut:
        """disconnect_account / DELETE /v1/accounts/{id}: revoke upstream where possible, remove here anyway."""
        reach = await self.reach(caller, profile_id)
        account = await self.rt.accounts.get(reach, account_id)
        # Revoke upstream first (it needs the credentials); a failure is reported, and the account is removed anyway.
        revoked, warning = await self.rt.sessions.revoke(self.rt.accounts.context(account))
        out = account_out(await self.rt.accounts.disconnect(reach, account_id))
        return DisconnectedOut(**out.model_dump(), revoked=revoked, warnings=[warning] if warning else [])

    async def list_profiles(self, caller: Caller) -> ProfileList:
        """list_profiles / GET /v1/profiles: the profiles the caller can reach."""
        await self.rt.wait_ready()
        return ProfileList(profiles=[profile_out(p) for p in await self.rt.accounts.list_profiles(bound=caller.profile_id)])

    async def create_profile(self, caller: Caller, name: str) -> ProfileOut:
        """create_profile / POST /v1/profiles (org-wide keys only)."""
        await self.rt.wait_ready()
        if caller.profile_id is not None:
            raise UnauthorizedError("A profile-bound API key cannot create profiles.", rule="profile.scope_mismatch",
                                    remediation="Use an org-wide key.")
        return profile_out(await self.rt.accounts.create_profile(name))

