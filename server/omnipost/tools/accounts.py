"""Profiles and accounts: connect (sandbox now), list, get, disconnect."""

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field

from omnipost.outputs import AccountOut, ProfileOut, account_out, profile_out
from omnipost.auth import current_caller
from omnipost.domain import PLATFORM_ALIASES, Platform
from omnipost.errors import ValidationFailedError, echo
from omnipost.platforms.registry import CONNECT_HELP, CONNECTABLE
from omnipost.tools.common import LOCAL_DESTRUCTIVE, LOCAL_WRITE, READ, profile_of, reach_of

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime

ProfileArg = Annotated[str | None, Field(description="Profile id or name; the default profile if omitted.")]
PLATFORM_ARGS: dict[str, str] = {"emulates": "sandbox", "sandboxMode": "sandbox", "appPassword": "bluesky", "pdsUrl": "bluesky"}
"""connect_account's platform-specific arguments and the one platform that takes each (its description says so);
given for another platform, the call is refused naming the argument. handle, profileId and defaults are for all."""


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
            "how the simulated platform takes posts. caller_id: omnipost chooses each post's id (as Bluesky); "
            "own_id: the platform assigns ids and refuses the same text twice within 24 h (as X, LinkedIn); container: a post "
            "is a container that processes, then is published (as Instagram, Threads). Default caller_id, whatever it "
            "emulates."))] = None,
    ) -> AccountOut:
        profile, caller = await profile_of(rt, profileId)
        refuse_foreign_arguments(platform, {"emulates": emulates, "sandboxMode": sandboxMode, "appPassword": appPassword,
                                            "pdsUrl": pdsUrl})
        assert rt.http is not None
        if platform == "bluesky":
            if caller.test_mode:
                from omnipost.errors import UnauthorizedError

                raise UnauthorizedError("An op_test_ key can only connect sandbox accounts.", rule="platform",
                                        remediation="Use an op_live_ key, or connect a sandbox account.")
            if not appPassword:
                raise ValidationFailedError("Connecting Bluesky needs an app password.", path="appPassword",
                                            remediation="Create one in Bluesky: Settings → Privacy and security → App passwords.")
            from omnipost.platforms.bluesky import connect_bluesky, session_expiry

            session = await connect_bluesky(rt.http, handle.strip(), appPassword, pdsUrl or "https://bsky.social", clock=rt.clock)
            account = await rt.accounts.add(profile.id, platform="bluesky", handle=session["handle"], credentials=session["credentials"],
                                            defaults={"did": session["did"], "pdsUrl": session["pdsUrl"], **(defaults or {})},
                                            token_expires_at=session_expiry(session["credentials"]))
            return account_out(account)
        from omnipost.platforms.sandbox import register_account

        if emulates is None or emulates.strip().lower() not in PLATFORM_ALIASES:
            raise ValidationFailedError(f"Unknown platform '{echo(emulates)}'.", path="emulates",
                                        remediation=f"Use one of {', '.join(sorted(PLATFORM_ALIASES))}.")
        real = PLATFORM_ALIASES[emulates.strip().lower()].value
        mode = sandboxMode or "caller_id"
        issued = await register_account(rt.http, rt.sandbox_url, handle, real, mode=mode)
        merged = dict(defaults or {}) | {"sandboxMode": mode}  # the adapter publishes in the account's mode
        if real == "linkedin":
            # A real LinkedIn connect reads the member id from /v2/userinfo; the sandbox's account id plays it.
            merged.setdefault("authorUrn", "urn:li:person:" + re.sub(r"[^A-Za-z0-9_-]", "", str(issued["account"])))
        account = await rt.accounts.add(profile.id, platform="sandbox", emulates=real, handle=handle,
                                        credentials={"token": issued["token"], "account": issued["account"]}, defaults=merged)
        return account_out(account)

    server.add_tool(
        connect_account, name="connect_account", title="Connect an account",
        description=("Connect an account to a profile. Bluesky: the handle (or DID) and an app password, optionally the PDS "
                     "URL of a self-hosted server; the session is kept and refreshed, the password is not stored. Sandbox: a "
                     "local simulated platform that applies the rules of the platform it `emulates` and stores what it "
                     "receives, so publishing can be tried end to end with no real account. Returns the account (acc_…) to "
                     "use as a target's accountId."),
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

    async def disconnect_account(accountId: Annotated[str, Field(description="acc_… id.")], profileId: ProfileArg = None) -> AccountOut:
        reach = await reach_of(rt, profileId)
        return account_out(await rt.accounts.disconnect(reach, accountId))

    server.add_tool(disconnect_account, name="disconnect_account", title="Disconnect an account",
                    description="Disconnect an account: its credentials are deleted and it can no longer publish; its past posts stay in the history.",
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
