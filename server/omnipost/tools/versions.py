"""platform_versions: the upstream API version each adapter speaks and its sunset (PRODUCT §10)."""

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from omnipost.tools.common import READ

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime


class PlatformVersionOut(BaseModel):
    """One platform's pinned upstream API version."""

    platform: str = Field(description="Platform (adapter) id.")
    api: str = Field(description="What is versioned, in the platform's words.")
    version: str = Field(description="The version omnipost speaks, e.g. v24.0 or a LinkedIn-Version month 202601.")
    sunsetAt: datetime | None = Field(description="When the platform stops accepting this version (UTC); null if none is published.")
    daysLeft: int | None = Field(description="Whole days until sunsetAt (negative once past); null without a sunset.")
    status: Literal["ok", "deprecated_soon", "past_sunset"] = Field(
        description="deprecated_soon within 30 days of the sunset (version.deprecated is emitted then); past_sunset after it.")
    confirmed: bool = Field(description="False when the version or sunset is an estimate (see note).")
    source: str = Field(description="Where the values come from.")
    checked: str = Field(description="ISO date the values were last checked against the source.")
    note: str | None = None


class PlatformVersions(BaseModel):
    """Every platform's pinned upstream API version."""

    versions: list[PlatformVersionOut]


def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register platform_versions."""

    async def platform_versions() -> PlatformVersions:
        from omnipost.versions import listing

        return PlatformVersions(versions=[PlatformVersionOut.model_validate(r) for r in listing(rt.clock.now())])

    server.add_tool(platform_versions, name="platform_versions", title="Platform API versions",
                    description=("The upstream API version omnipost speaks for each platform with its sunset, days left, status (ok, deprecated_soon within "
                                 "30 days, past_sunset) and source. A version.deprecated webhook fires near a sunset."),
                    annotations=READ)
