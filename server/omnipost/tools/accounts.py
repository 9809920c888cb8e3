"""Profiles and accounts: connect (each platform's flow is its spec's connect_with), list, get, disconnect."""

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

from omnipost.outputs import AccountOut, DisconnectedOut, ProfileOut, account_out, profile_out
from omnipost.auth import current_caller
from omnipost.domain import PLATFORM_ALIASES, Platform
from omnipost.errors import PlatformAuthError, PlatformError, ValidationFailedError
from omnipost.platforms.base import ConnectRequest, Verifying
from omnipost.platforms.registry import CONNECT_ARGS, CONNECT_HELP, CONNECTABLE, PLATFORMS
from omnipost.oauth.providers import INSTANCE_PROVIDERS, PROVIDERS
from omnipost.tools.common import LOCAL_DESTRUCTIVE, LOCAL_WRITE, PUBLISH, READ, Instant, ProfileArg, profile_of, reach_of

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime

PLATFORM_ARGS = CONNECT_ARGS
"""connect_account's platform-specific arguments and the one platform that takes each (from the registry; its
description says so); given for another platform, the call is refused naming the argument. handle, profileId and
defaults are for all."""


def only_for(argument: str, description: str) -> str:
    """An argument's description, saying which platform takes it."""
    return f"{PLATFORM_ARGS[argument]} only: {description}"


def refuse_foreign_arguments(platform: str, given: dict[str, object]) -> None:
    """validation_failed naming the first argument given that `platform` does not take."""
    for argument, value in given.items():
        owner = PLATFORM_ARGS[argument]
        if value is not None and owner != platform:
            raise ValidationFailedError(f"{argument} is only for {owner} accounts, not {platform}.", path=argument,
                                        remediation=f"Leave {argument} out when connecting a {platform} account.")


logger = logging.getLogger("omnipost.tools.accounts")

OAUTH_ARGS = ("oauth", "accessToken", "refreshToken", "expiresAt")
"""connect_account's OAuth arguments: for a platform that connects through OAuth, or a sandbox account emulating one."""

ELICIT_PATIENCE = 120.0  # seconds the client may take to answer "open this URL?"


class ConnectOut(AccountOut):
    """connect_account's answer: the account connected now (as get_account), or, status pending, an OAuth connect
    waiting for the user at authorizationUrl (its account fields empty)."""

    id: str | None = None  # type: ignore[assignment]  # empty while pending
    profileId: str | None = None  # type: ignore[assignment]
    platform: str | None = None  # type: ignore[assignment]
    handle: str | None = None  # type: ignore[assignment]
    health: str | None = None  # type: ignore[assignment]
    createdAt: datetime | None = None  # type: ignore[assignment]
    status: Literal["connected", "pending"] = "connected"
    accountIds: list[str] = Field(default_factory=lambda: [])  # every account connected (Facebook: one per Page)
    state: str | None = None  # pending: complete_connect's argument
    authorizationUrl: str | None = None  # pending: the user opens it and approves
    redirectUri: str | None = None
    expiresAt: datetime | None = None
    opened: bool = False  # pending: the client was asked to open the URL (URL-mode elicitation)


class ConnectStatus(BaseModel):
    """Where an OAuth connect stands."""

    state: str
    platform: str
    status: Literal["pending", "exchanging", "connected", "failed", "expired"]
    expiresAt: datetime
    accounts: list[AccountOut] = Field(default_factory=lambda: [])
    error: dict[str, Any] | None = None


class AccountList(BaseModel):
    """Connected accounts of a profile."""

    accounts: list[AccountOut]


class ProfileList(BaseModel):
    """Profiles the caller can reach."""

    profiles: list[ProfileOut]


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register the account and profile tools."""

    async def connect_account(
        platform: Annotated[Literal[CONNECTABLE], Field(description=CONNECT_HELP)],
        ctx: Context,
        handle: Annotated[str | None, Field(min_length=1, max_length=253, description="The account's handle (Bluesky: handle or DID; sandbox: any; OAuth: optional).")] = None,
        emulates: Annotated[str | None, Field(description=only_for(
            "emulates", f"the platform whose rules apply ({', '.join(Platform)})."))] = None,
        appPassword: Annotated[str | None, Field(description=only_for(
            "appPassword", "an app password (Settings → App passwords), never the account password."))] = None,
        pdsUrl: Annotated[str | None, Field(description=only_for("pdsUrl", "the PDS to log in to (default https://bsky.social)."))] = None,
        instanceUrl: Annotated[str | None, Field(description=only_for("instanceUrl", "its server."))] = None,
        profileId: ProfileArg = None,
        defaults: Annotated[dict[str, str] | None, Field(description='Per-account defaults, e.g. {"boardId": "123"} for Pinterest.')] = None,
        sandboxMode: Annotated[Literal["caller_id", "own_id", "container"] | None, Field(description=only_for("sandboxMode",
            "caller_id (default: our ids, as Bluesky), own_id (its ids, repeats refused, as X) or container (processes "
            "first, as Instagram)."))] = None,
        oauth: Annotated[bool | None, Field(description="Sandbox: sign in through the emulated platform's OAuth.")] = None,
        accessToken: Annotated[str | None, Field(max_length=4096, description="OAuth: a developer-portal token (verified first).")] = None,
        refreshToken: Annotated[str | None, Field(max_length=4096)] = None,
        expiresAt: Instant | None = None,
    ) -> ConnectOut:
        profile, caller = await profile_of(rt, profileId)
        given = {"emulates": emulates, "sandboxMode": sandboxMode, "appPassword": appPassword, "pdsUrl": pdsUrl,
                 "instanceUrl": instanceUrl}
        refuse_foreign_arguments(platform, given)
        spec = PLATFORMS[platform]
        if caller.test_mode and spec.real:
            from omnipost.errors import UnauthorizedError

            raise UnauthorizedError("An op_test_ key can only connect sandbox accounts.", rule="platform",
                                    remediation="Use an op_live_ key, or connect a sandbox account.")
        oauth_platform, target = oauth_target(platform, emulates, oauth, accessToken)
        if oauth_platform is None:
            for name, value in (("oauth", oauth), ("accessToken", accessToken), ("refreshToken", refreshToken), ("expiresAt", expiresAt)):
                if value is not None and value is not False:
                    raise ValidationFailedError(f"{name} is for accounts connected through OAuth, not {platform}.", path=name,
                                                remediation=f"Leave {name} out, or connect a platform that uses OAuth.")
            if handle is None:
                raise ValidationFailedError("handle is required for this platform.", path="handle")
            assert spec.connect_with is not None  # CONNECTABLE: the platforms with a connect flow
            connected = await spec.connect_with(ConnectRequest(
                handle=handle, args={k: v for k, v in given.items() if v is not None}, defaults=dict(defaults or {}),
                deps=rt.adapter_deps()))
            account = await rt.accounts.add(profile.id, platform=platform, emulates=connected.emulates, handle=connected.handle,
                                            credentials=connected.credentials, defaults=connected.defaults,
                                            token_expires_at=connected.token_expires_at, identity=connected.identity)
            return ConnectOut(**account_out(account).model_dump(), accountIds=[account.id])
        args: dict[str, Any] = {k: v for k, v in {"handle": handle, "defaults": defaults, "sandboxMode": sandboxMode,
                                                  "instanceUrl": instanceUrl}.items() if v}
        service = rt.connect_
        if accessToken is not None:
            ids = await service.bring_token(profile.id, oauth_platform, access_token=accessToken, refresh_token=refreshToken,
                                            expires_at=expiresAt, target=target, args=args)
            return await connected_out(profile.id, ids)
        if refreshToken is not None or expiresAt is not None:
            raise ValidationFailedError("refreshToken and expiresAt go with accessToken.", path="refreshToken" if refreshToken else "expiresAt")
        started = await service.start(profile.id, oauth_platform, target=target, args=args)
        if rt._tg is not None:
            await service.ensure_listening(rt._tg)
        opened = await ask_to_open(ctx, started.authorization_url, started.state, oauth_platform)
        return ConnectOut(status="pending", platform=platform, emulates=oauth_platform if target == "sandbox" else None,
                          state=started.state, authorizationUrl=started.authorization_url, redirectUri=started.redirect_uri,
                          expiresAt=started.expires_at, opened=opened)

    def oauth_target(platform: str, emulates: str | None, oauth: bool | None, access_token: str | None) -> tuple[str | None, str]:
        """(the OAuth provider's platform, what the tokens become), or (None, "") for a connect without OAuth."""
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

    async def connected_out(profile_id: str, ids: list[str]) -> ConnectOut:
        """The first account just stored, as get_account answers it, with every id connected."""
        return ConnectOut(**account_out(await rt.accounts.get(profile_id, ids[0])).model_dump(), accountIds=ids)

    async def ask_to_open(ctx: Context, url: str, state: str, platform: str) -> bool:
        """URL-mode elicitation where the client supports it (and the session can ask); False when not asked."""
        caps = ctx.client_capabilities
        if caps is None or caps.elicitation is None or caps.elicitation.url is None:
            return False
        try:
            with anyio.move_on_after(ELICIT_PATIENCE):
                result = await ctx.elicit_url(f"Sign in to {platform} and approve omnipost's access.", url, state)
                return result.action == "accept"
        except MCPError as exc:  # 2026-07-28 sessions have no back-channel: the URL is in the result instead
            logger.debug("URL elicitation not available: %s", exc)
        return False

    server.add_tool(
        connect_account, name="connect_account", title="Connect an account",
        description=("Connect an account to a profile; returns it (acc_…: a target's accountId). Bluesky: handle (or DID) "
                     "and an app password, optionally pdsUrl; the session is kept and refreshed, the password not stored. "
                     "Sandbox: a local simulated platform with the rules of the one it emulates, to try publishing end to end "
                     "without a real account. OAuth: status pending and authorizationUrl for the user (show it unless "
                     "opened), then complete_connect. Reconnecting updates the account (same id). A platform's own arguments are refused "
                     "for the others."),
        annotations=LOCAL_WRITE,
    )

    async def complete_connect(
        state: Annotated[str, Field(max_length=200, description="From connect_account.")],
        redirectUrl: Annotated[str | None, Field(max_length=8192, description="The URL the browser landed on.")] = None,
        code: Annotated[str | None, Field(max_length=4096, description="Or only its code.")] = None,
        profileId: ProfileArg = None,
    ) -> ConnectStatus:
        profile, caller = await profile_of(rt, profileId)
        service = rt.connect_
        if redirectUrl is not None or code is not None:
            row = await service.complete(state, code=code, redirect_url=redirectUrl, profile_id=profile.id, test_mode=caller.test_mode)
        else:
            row = await service.get(state, profile_id=profile.id, test_mode=caller.test_mode)
        accounts = [account_out(await rt.accounts.get(profile.id, a)) for a in row.account_ids]
        return ConnectStatus(state=row.state, platform=row.platform, status=row.status, expiresAt=row.expires_at,  # type: ignore[arg-type]
                             accounts=accounts, error=row.error)

    server.add_tool(
        complete_connect, name="complete_connect", title="Complete or check an OAuth connect",
        description=("Finish an OAuth connect: redirectUrl (or code) the user pasted stores the account; with only "
                     "state, says whether the user finished (pending, connected, failed, expired)."),
        annotations=PUBLISH,
    )

    async def list_accounts(profileId: ProfileArg = None,
                            platform: Annotated[str | None, Field(description="Only accounts of (or emulating) this platform.")] = None) -> AccountList:
        reach = await reach_of(rt, profileId)
        return AccountList(accounts=[account_out(a) for a in await rt.accounts.list(reach, platform)])

    server.add_tool(list_accounts, name="list_accounts", title="List connected accounts",
                    description="List the profile's connected accounts: id, platform (or the platform a sandbox account emulates), handle and health (active or needs_reconnect).",
                    annotations=READ)

    async def get_account(accountId: Annotated[str, Field(description="acc_… id.")], profileId: ProfileArg = None) -> AccountOut:
        reach = await reach_of(rt, profileId)  # first: it waits until the server is open
        account = await rt.accounts.get(reach, accountId)
        adapter = rt.adapters.get(account.platform)
        if account.health != "active" or not isinstance(adapter, Verifying):
            return account_out(account)
        # The platform says who the credentials belong to (a whoami): refused → needs_reconnect (token.revoked); a
        # platform that cannot be asked now leaves the health as stored.
        try:
            who = await adapter.verify(rt.accounts.context(account))
        except PlatformAuthError:
            await rt.publisher.mark_account(account.id, "needs_reconnect")
            return account_out(await rt.accounts.get(reach, accountId))
        except PlatformError as exc:
            logger.info("could not verify account %s (%s)", account.id, exc.code)
            return account_out(account)
        return account_out(account).model_copy(update={"displayName": who.name or account.display_name})

    server.add_tool(get_account, name="get_account", title="Get an account",
                    description="One connected account of the profile: platform, handle, health, token expiry and defaults. Unknown ids are not_found.",
                    annotations=READ)

    async def disconnect_account(accountId: Annotated[str, Field(description="acc_… id.")], profileId: ProfileArg = None) -> DisconnectedOut:
        reach = await reach_of(rt, profileId)
        account = await rt.accounts.get(reach, accountId)
        # Revoke upstream first (it needs the credentials); a failure is reported, and the account is removed anyway.
        revoked, warning = await rt.sessions.revoke(rt.accounts.context(account))
        out = account_out(await rt.accounts.disconnect(reach, accountId))
        return DisconnectedOut(**out.model_dump(), revoked=revoked, warnings=[warning] if warning else [])

    server.add_tool(disconnect_account, name="disconnect_account", title="Disconnect an account",
                    description="Disconnect an account: omnipost's access is revoked at the platform where it allows it (revoked: "
                                "true/false/unsupported), its credentials are deleted here even if revoking fails, and it can no "
                                "longer publish; its past posts stay in the history.",
                    annotations=LOCAL_DESTRUCTIVE)

    async def list_profiles() -> ProfileList:
        await rt.wait_ready()
        caller = current_caller()
        return ProfileList(profiles=[profile_out(p) for p in await rt.accounts.list_profiles(bound=caller.profile_id)])

    server.add_tool(list_profiles, name="list_profiles", title="List profiles",
                    description="List the profiles (workspaces: a brand, a client) the caller can reach. Accounts, posts and media belong to one profile.",
                    annotations=READ)

    async def create_profile(name: Annotated[str, Field(min_length=1, max_length=64, description="Profile name.")]) -> ProfileOut:
        await rt.wait_ready()
        caller = current_caller()
        if caller.profile_id is not None:
            from omnipost.errors import UnauthorizedError

            raise UnauthorizedError("A profile-bound API key cannot create profiles.", rule="profile.scope_mismatch",
                                    remediation="Use an org-wide key.")
        return profile_out(await rt.accounts.create_profile(name))

    server.add_tool(create_profile, name="create_profile", title="Create a profile",
                    description="Create a profile (a workspace for one brand or client) with its own accounts, posts and media.",
                    annotations=LOCAL_WRITE)
