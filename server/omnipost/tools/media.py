"""Media tools: upload_media, list_media, delete_media."""

from typing import TYPE_CHECKING, Annotated

from mcp.server.mcpserver import Context
from pydantic import Field

from omnipost.auth import current_caller
from omnipost.outputs import MediaOut, MediaPage
from omnipost.tools.common import LOCAL_DESTRUCTIVE, LOCAL_WRITE, READ, KeyArg, ProfileArg

if TYPE_CHECKING:
    from omnipost.app import OmnipostServer
    from omnipost.runtime import Runtime



def register(server: "OmnipostServer", rt: "Runtime") -> None:
    """Register the media tools."""

    async def upload_media(
        ctx: Context,
        path: Annotated[str | None, Field(description="A local file under the allowed roots (OMNIPOST_MEDIA_ROOTS).")] = None,
        url: Annotated[str | None, Field(description="A public http(s) URL to fetch (private and loopback addresses are refused).")] = None,
        bytesBase64: Annotated[str | None, Field(description="The file's bytes, base64-encoded (small files).")] = None,
        altText: Annotated[str | None, Field(max_length=5000, description="Alternative text, used where the platform supports it.")] = None,
        profileId: ProfileArg = None,
        idempotencyKey: KeyArg = None,
    ) -> MediaOut:
        async def progress(done: int, total: int | None) -> None:
            await ctx.report_progress(done, total, "bytes stored")

        return await rt.services.upload_media(current_caller(), path=path, url=url, bytes_base64=bytesBase64, alt_text=altText,
                                              profile_id=profileId, key=idempotencyKey, progress=progress)

    server.add_tool(upload_media, name="upload_media", title="Upload media",
                    description=("Upload an image or video once and reuse it by mediaId in any post: a local path (under the "
                                 "allowed roots), a public URL, or base64 bytes. Returns its id, sniffed type, size, dimensions "
                                 "and duration, which validate_post checks media rules against. The same file gives the same id."),
                    annotations=LOCAL_WRITE)

    async def list_media(profileId: ProfileArg = None, cursor: Annotated[str | None, Field(description="nextCursor of the previous page.")] = None,
                         limit: Annotated[int, Field(ge=1, le=200)] = 50) -> MediaPage:
        return await rt.services.list_media(current_caller(), profile_id=profileId, cursor=cursor, limit=limit)

    server.add_tool(list_media, name="list_media", title="List media",
                    description="List the profile's uploaded media, newest first: id, kind, MIME type, size, dimensions, duration.",
                    annotations=READ)

    async def delete_media(mediaId: Annotated[str, Field(description="med_… id.")], profileId: ProfileArg = None) -> MediaOut:
        return await rt.services.delete_media(current_caller(), mediaId, profile_id=profileId)

    server.add_tool(delete_media, name="delete_media", title="Delete media",
                    description="Delete an uploaded file. Posts already published keep their copy on the platform.",
                    annotations=LOCAL_DESTRUCTIVE)
