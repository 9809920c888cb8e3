"""Profiles and accounts: connect (each platform's flow is its spec's connect_with), list, get, disconnect."""

import logging
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from pydantic import Field

from omnipost.outputs import (AccountList, AccountOut, ConnectOut, ConnectStatus, DisconnectedOut, ProfileList,  # noqa: F401 - re-exported
                              ProfileOut, account_out)
from omnipost.auth import current_caller
from omnipost.domain import Platform
from omnipost.platforms.registry import CONNECT_ARGS, CONNECT_HELP, CONNECTABLE
from omnipost.tools.common import LOCAL_DESTRUCTIVE, LOCAL_WRITE, PUBLISH, READ, Instant, ProfileArg

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


logger = logging.getLogger("omnipost.tools.accounts")

OAUTH_ARGS = ("oauth", "accessToken", "refreshToken", "expiresAt")
"""connect_account's OAuth arguments: for a platform that connects through OAuth, or a sandbox account emulating one."""

ELICIT_PATIENCE = 120.0  # seconds the client may take to answer "open this URL?"


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
        from omnipost.accounts_service import ConnectArgs

        args = ConnectArgs.model_construct(platform=platform, handle=handle, emulates=emulates, appPassword=appPassword,
                                           pdsUrl=pdsUrl, instanceUrl=instanceUrl, profileId=profileId, defaults=defaults,
                                           sandboxMode=sandboxMode, oauth=oauth, accessToken=accessToken,
                                           refreshToken=refreshToken, expiresAt=expiresAt)
        return await rt.services.connect(current_caller(), args,
                                         ask_to_open=lambda url, state, platform: ask_to_open(ctx, url, state, platform))

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
        return await rt.services.complete_connect(current_caller(), state, redirect_url=redirectUrl, code=code,
                                                  profile_id=profileId)

    server.add_tool(
        complete_connect, name="complete_connect", title="Complete or check an OAuth connect",
        description=("Finish an OAuth connect: redirectUrl (or code) the user pasted stores the account; with only "
                     "state, says whether the user finished (pending, connected, failed, expired)."),
        annotations=PUBLISH,
    )

    async def list_accounts(profileId: ProfileArg = None,
                            platform: Annotated[str | None, Field(description="Only accounts of (or emulating) this platform.")] = None) -> AccountList:
        return await rt.services.list_accounts(current_caller(), profile_id=profileId, platform=platform)

    server.add_tool(list_accounts, name="list_accounts", title="List connected accounts",
                    description="List the profile's connected accounts: id, platform (or the platform a sandbox account emulates), handle and health (active or needs_reconnect).",
                    annotations=READ)

    async def get_account(accountId: Annotated[str, Field(description="acc_… id.")], profileId: ProfileArg = None) -> AccountOut:
        return await rt.services.get_account(current_caller(), accountId, profile_id=profileId)

    server.add_tool(get_account, name="get_account", title="Get an account",
                    description="One connected account of the profile: platform, handle, health, token expiry and defaults. Unknown ids are not_found.",
                    annotations=READ)

    async def disconnect_account(accountId: Annotated[str, Field(description="acc_… id.")], profileId: ProfileArg = None) -> DisconnectedOut:
        return await rt.services.disconnect(current_caller(), accountId, profile_id=profileId)

    server.add_tool(disconnect_account, name="disconnect_account", title="Disconnect an account",
                    description="Disconnect an account: omnipost's access is revoked at the platform where it allows it (revoked: "
                                "true/false/unsupported), its credentials are deleted here even if revoking fails, and it can no "
                                "longer publish; its past posts stay in the history.",
                    annotations=LOCAL_DESTRUCTIVE)

    async def list_profiles() -> ProfileList:
        return await rt.services.list_profiles(current_caller())

    server.add_tool(list_profiles, name="list_profiles", title="List profiles",
                    description="List the profiles (workspaces: a brand, a client) the caller can reach. Accounts, posts and media belong to one profile.",
                    annotations=READ)

    async def create_profile(name: Annotated[str, Field(min_length=1, max_length=64, description="Profile name.")]) -> ProfileOut:
        return await rt.services.create_profile(current_caller(), name)

    server.add_tool(create_profile, name="create_profile", title="Create a profile",
                    description="Create a profile (a workspace for one brand or client) with its own accounts, posts and media.",
                    annotations=LOCAL_WRITE)
