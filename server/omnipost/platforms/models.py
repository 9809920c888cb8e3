"""Per-platform pydantic models the registry names on each spec (platforms/registry.py): the publish options a
target may carry for one platform (`{"pinterest": {"boardId": ...}}`) and the credentials an account stores.

Option models are part of the post request (request.py builds its per-platform fields from the registry), so
their names, fields and descriptions are the public tools/list schema: change them only on purpose.
Credentials models describe what a connect stores (sealed at rest by the vault); secrets are SecretStr.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Strict(BaseModel):
    """Unknown fields are refused (a misspelt option would otherwise be dropped silently)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, populate_by_name=True)


class BlueskyOptions(Strict):
    """Bluesky-only options."""

    langs: list[Annotated[str, Field(min_length=2, max_length=35)]] | None = Field(
        default=None, max_length=3, description="Up to 3 BCP-47 language tags."
    )


class TwitterOptions(Strict):
    """X-only options."""

    replySettings: Literal["following", "mentionedUsers", "subscribers", "verified"] | None = Field(
        default=None, description="Who may reply; omit for everyone."
    )


class LinkedInOptions(Strict):
    """LinkedIn-only options."""

    visibility: str | None = Field(default=None, description="PUBLIC, CONNECTIONS or LOGGED_IN.")


class FacebookOptions(Strict):
    """Facebook Page options."""

    videoType: Literal["video", "reel"] | None = Field(default=None, description="How a video is published.")


class InstagramOptions(Strict):
    """Instagram options."""

    contentType: Literal["feed", "story", "reel"] | None = Field(default=None, description="feed (default), story or reel.")


class ThreadsOptions(Strict):
    """Threads options."""

    replyToId: str | None = Field(default=None, min_length=1, max_length=64, description="Threads media id to reply to.")


class PinterestOptions(Strict):
    """Pinterest options."""

    boardId: str | None = Field(default=None, min_length=1, max_length=64, description="Board to pin to (else the account default).")
    destinationUrl: str | None = Field(default=None, min_length=1, description="Click-through link of the pin.")
    title: str | None = Field(default=None, description="Pin title.")


class SandboxCredentials(BaseModel):
    """A sandbox account: the bearer token the local sandbox issued, and its account id there."""

    token: SecretStr
    account: str


class BlueskyCredentials(BaseModel):
    """A Bluesky session (com.atproto.server.createSession); the app password itself is never stored."""

    accessJwt: SecretStr
    refreshJwt: SecretStr
    did: str
    pdsUrl: str
