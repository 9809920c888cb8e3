"""Profiles and accounts: connect (each platform's flow is its spec's connect_with), list, get, disconnect."""

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field

from omnipost.outputs import AccountOut, DisconnectedOut, ProfileOut, account_out, profile_out
from omnipost.auth import current_caller
from omnipost.domain import Platform
from omnipost.errors import ValidationFailedError
from omnipost.platforms.base import ConnectRequest
from omnipost.platforms.registry import CONNECT_ARGS, CONNECT_HELP, CONNECTABLE, PLATFORMS
from omnipost.tools.common import LOCAL_DESTRUCTIVE, LOCAL_WRITE, READ, ProfileArg, profile_of, reach_of

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime

PLATFORM_ARGS = CONNECT_ARGS
"""connect_account's platform-specific arguments and the one platform that takes each (from the registry; its
description says so); given for another platform, the call is refused naming the argument. handle, profileId and
defaults are for all."""


def only_for(argument: str, description: str) -> str:
    """An argument's description, saying which platform takes it."""
    return f"Only for platform {PLATFORM_ARGS[argument]} (refused for the others): {description}"


def refuse_foreign_arguments(platform: str, given: dict[str, object]) -> None:
    """validation_failed naming the first argument given that `platform` does not take."""
    for argument, value in given.items():
        owner = PLATFORM_ARGS[argument]
        if value is not None and owner != platform:
            raise ValidationFailedError(f"{argument} is only for {owner} accounts, not {platform}.", path=argument,
                                        remediation=f"Leave {argument} out when connecting a {platform} account.")


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
        handle: Annotated[str, Field(min_length=1, max_length=253, description="The account's handle (Bluesky: handle or DID; sandbox: any display handle).")],
        emulates: Annotated[str | None, Field(description=only_for(
            "emulates", f"the platform whose rules apply ({', '.join(Platform)})."))] = None,
        appPassword: Annotated[str | None, Field(description=only_for(
            "appPassword", "an app password (Settings → App passwords), never the account password."))] = None,
        pdsUrl: Annotated[str | None, Field(description=only_for("pdsUrl", "the PDS to log in to (default https://bsky.social)."))] = None,
        profileId: ProfileArg = None,
        defaults: Annotated[dict[str, str] | None, Field(description='Per-account defaults, e.g. {"boardId": "123"} for Pinterest.')] = None,
        sandboxMode: Annotated[Literal["caller_id", "own_id", "container"] | None, Field(description=only_for("sandboxMode",
            "how it takes posts. caller_id (default): omnipost picks each post's id, as Bluesky; own_id: it assigns ids "
            "and refuses the same text twice in 24 h, as X; container: a post processes, then is published, as Instagram."))] = None,
    ) -> AccountOut:
        profile, caller = await profile_of(rt, profileId)
        given = {"emulates": emulates, "sandboxMode": sandboxMode, "appPassword": appPassword, "pdsUrl": pdsUrl}
        refuse_foreign_arguments(platform, given)
        spec = PLATFORMS[platform]
        if caller.test_mode and spec.real:
            from omnipost.errors import UnauthorizedError

            raise UnauthorizedError("An op_test_ key can only connect sandbox accounts.", rule="platform",
                                    remediation="Use an op_live_ key, or connect a sandbox account.")
        assert spec.connect_with is not None  # CONNECTABLE: the platforms with a connect flow
        connected = await spec.connect_with(ConnectRequest(
            handle=handle, args={k: v for k, v in given.items() if v is not None}, defaults=dict(defaults or {}),
            deps=rt.adapter_deps()))
        account = await rt.accounts.add(profile.id, platform=platform, emulates=connected.emulates, handle=connected.handle,
                                        credentials=connected.credentials, defaults=connected.defaults,
                                        token_expires_at=connected.token_expires_at, identity=connected.identity)
        return account_out(account)

    server.add_tool(
        connect_account, name="connect_account", title="Connect an account",
        description=("Connect an account to a profile; returns it (acc_…: a target's accountId). Bluesky: handle (or DID) "
                     "and an app password, optionally pdsUrl; the session is kept and refreshed, the password not stored. "
                     "Sandbox: a local simulated platform with the rules of the one it emulates, to try publishing end to end "
                     "without a real account. Connecting an already connected account updates it (same id)."),
        annotations=LOCAL_WRITE,
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
        return account_out(await rt.accounts.get(reach, accountId))

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
