"""Media records: upload (path, URL or base64), list, get, delete, and facts for preflight.

A record (`media` table) belongs to one profile and points, by SHA-256, at a file in the
content-addressed `MediaStore`. It records the mode of the key that uploaded it (auth.Reach): an
op_test_ key sees only test-mode records. Uploading the same content twice to a profile in one
mode returns the first record. Deleting is soft (the record keeps `deleted_at`); the file goes
once no live record in any profile refers to its digest.
"""

import builtins
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import httpx2
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from omnipost.auth import Reach, as_reach
from omnipost.clock import Clock
from omnipost.errors import MediaError, NotFoundError, ValidationFailedError, echo
from omnipost.media import probe
from omnipost.media.fetch import Resolver
from omnipost.media.host import MediaHosting, StoredMedium
from omnipost.media.probe import MediaFacts
from omnipost.media.storage import DEFAULT_URL_TIMEOUT, MediaStore, Progress, StoredFile, probe_file
from omnipost.store.db import Database, new_id
from omnipost.store.models import Media

MAX_LIMIT = 200
MAX_FILENAME = 255
MAX_ALT_TEXT = 5000


class MediaService:
    """Upload, list, fetch and delete a profile's media."""

    def __init__(
        self,
        db: Database,
        store: MediaStore,
        resolver: Resolver,
        http: httpx2.AsyncClient | None,
        clock: Clock,
        *,
        url_timeout: float = DEFAULT_URL_TIMEOUT,
        hosting: "MediaHosting | None" = None,
    ) -> None:
        self.db = db
        self.hosting = hosting  # where platforms that fetch by URL get media from (media/host.py)
        self.store = store
        self.resolver = resolver
        self.http = http
        self.clock = clock
        self.url_timeout = url_timeout
        # Serialises "find or insert" against "soft-delete and maybe unlink" in this process.
        self._lock = anyio.Lock()

    async def upload(
        self,
        scope: Reach | str,
        *,
        path: str | None = None,
        url: str | None = None,
        bytes_base64: str | None = None,
        alt_text: str | None = None,
        filename: str | None = None,
        progress: Progress | None = None,
        stream: AsyncIterator[bytes] | None = None,
    ) -> Media:
        """Store one file from exactly one source (`stream`: a request body, POST /v1/media) and record it; same
        content, same record."""
        sources = [name for name, value in (("path", path), ("url", url), ("bytesBase64", bytes_base64), ("body", stream))
                   if value is not None]
        if len(sources) != 1:
            raise ValidationFailedError(
                "give exactly one of path, url or bytesBase64" + (f" (got {', '.join(sources)})" if sources else ""),
                path=sources[1] if len(sources) > 1 else "path",
                remediation="Send the file once: a local path, a public URL, or its bytes as base64.",
            )
        source = sources[0]
        if alt_text is not None and len(alt_text) > MAX_ALT_TEXT:
            raise ValidationFailedError(f"altText is longer than {MAX_ALT_TEXT} characters", path="altText")
        if filename is not None and (len(filename) > MAX_FILENAME or "/" in filename or "\x00" in filename):
            raise ValidationFailedError("filename must be a bare file name of at most 255 characters", path="filename")

        if stream is not None:
            stored = await self.store.ingest_stream(stream, progress=progress)
        else:
            stored = await self._ingest(path=path, url=url, bytes_base64=bytes_base64, progress=progress)
        try:
            try:
                facts = await anyio.to_thread.run_sync(lambda: probe_file(stored.path, sha256=stored.sha256))
            except MediaError as exc:
                if exc.rule == probe.RULE:
                    exc.rule = source  # the field the unreadable bytes came from
                raise
            name = filename or _default_filename(path=path, url=url)
            async with self._lock:
                record = await self._record(as_reach(scope), facts, alt_text=alt_text, filename=name, source_url=url)
            if self.hosting is not None:
                # Copied to the bucket now (the file is still pending, so a racing delete cannot unlink it): workers on
                # other machines find it there. A failure is only logged; publishing copies it if it is missing.
                await self.hosting.store(self.stored(record))
        except BaseException:
            self.store.release(stored.sha256)
            with anyio.CancelScope(shield=True):  # clean up even when the upload was cancelled
                async with self._lock:
                    await self._remove_if_unreferenced(stored.sha256, remote=False)  # no network while cancelled
            raise
        self.store.release(stored.sha256)
        return record

    async def _ingest(
        self, *, path: str | None, url: str | None, bytes_base64: str | None, progress: Progress | None
    ) -> StoredFile:
        if path is not None:
            return await self.store.ingest_path(path, progress=progress)
        if url is not None:
            return await self.store.ingest_url(
                url, resolver=self.resolver, http=self.http, timeout=self.url_timeout, progress=progress
            )
        assert bytes_base64 is not None
        return await self.store.ingest_base64(bytes_base64, progress=progress)

    async def _record(self, reach: Reach, facts: MediaFacts, *, alt_text: str | None, filename: str | None,
                      source_url: str | None = None) -> Media:
        async with self.db.session() as s:
            existing = (
                await s.exec(
                    select(Media)
                    .where(Media.profile_id == reach.profile_id, Media.sha256 == facts.sha256, Media.mode == reach.mode,
                           col(Media.deleted_at).is_(None))
                    .order_by(col(Media.id))
                )
            ).first()
            if existing is not None:
                changed = False
                if alt_text is not None and alt_text != existing.alt_text:
                    existing.alt_text, changed = alt_text, True
                if source_url is not None and existing.source_url is None:  # the same bytes, now known to be public
                    existing.source_url, changed = source_url, True
                if changed:
                    s.add(existing)
                    await s.commit()
                return existing
            media = Media(
                id=new_id("med"),
                profile_id=reach.profile_id,
                mode=reach.mode,
                sha256=facts.sha256,
                kind=facts.kind,
                mime=facts.mime,
                size=facts.size,
                width=facts.width,
                height=facts.height,
                duration=facts.duration,
                frames=facts.frames,
                alt_text=alt_text,
                filename=filename,
                source_url=source_url,
                created_at=self.clock.now(),
            )
            s.add(media)
            await s.commit()
            return media

    async def list(self, scope: Reach | str, cursor: str | None = None, limit: int = 50) -> tuple[builtins.list[Media], str | None]:
        """Live media of a profile within reach, newest first; `cursor` is the `next_cursor` of the previous page."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailedError(f"limit must be between 1 and {MAX_LIMIT}", path="limit")
        if cursor is not None and not cursor.startswith("med_"):
            raise ValidationFailedError("cursor is not one this server returned", path="cursor")
        query = self._visible(scope)
        if cursor is not None:
            query = query.where(col(Media.id) < cursor)
        query = query.order_by(col(Media.id).desc()).limit(limit + 1)
        async with self.db.session() as s:
            rows = builtins.list((await s.exec(query)).all())
        if len(rows) > limit:
            return rows[:limit], rows[limit - 1].id
        return rows, None

    @staticmethod
    def _visible(scope: Reach | str) -> "SelectOfScalar[Media]":
        """The profile's undeleted records within reach (a test reach: only test-mode ones)."""
        reach = as_reach(scope)
        query = select(Media).where(Media.profile_id == reach.profile_id, col(Media.deleted_at).is_(None))
        return query.where(Media.mode == "test") if reach.test_mode else query

    async def get(self, scope: Reach | str, media_id: str) -> Media | None:
        """The live record, or None when it is unknown, deleted, another profile's, or out of reach."""
        async with self.db.session() as s:
            return (await s.exec(self._visible(scope).where(Media.id == media_id))).first()

    async def delete(self, scope: Reach | str, media_id: str) -> None:
        """Soft-delete the record; remove the file when no live record refers to its content."""
        async with self._lock:
            async with self.db.session() as s:
                media = (await s.exec(self._visible(scope).where(Media.id == media_id))).first()
                if media is None:
                    raise NotFoundError(f"no media {echo(media_id)!r}", rule="mediaId", remediation="Call list_media for the ids.")
                media.deleted_at = self.clock.now()
                s.add(media)
                await s.commit()
                sha = media.sha256
            await self._remove_if_unreferenced(sha)

    async def _remove_if_unreferenced(self, sha256: str, *, remote: bool = True) -> None:
        """Unlink the file if no live record (any profile) refers to it. Hold self._lock."""
        async with self.db.session() as s:
            live = (
                await s.exec(select(Media.id).where(Media.sha256 == sha256, col(Media.deleted_at).is_(None)).limit(1))
            ).first()
        if live is None:
            await anyio.to_thread.run_sync(self.store.remove, sha256)
            if remote and self.hosting is not None:  # the bucket's copy too (content-addressed: no live record needs it)
                await self.hosting.remove(sha256)

    def stored(self, media: Media) -> StoredMedium:
        """The record as a media host sees it."""
        return StoredMedium(media_id=media.id, sha256=media.sha256, mime=media.mime, size=media.size,
                            path=self.store.path_for(media.sha256), source_url=media.source_url)

    def facts(self, media: Media) -> MediaFacts:
        """The record as preflight sees it."""
        kind: probe.MediaKind = media.kind  # type: ignore[assignment]  # written from MediaFacts.kind
        return MediaFacts(
            kind=kind,
            mime=media.mime,
            size=media.size,
            width=media.width,
            height=media.height,
            duration=media.duration,
            frames=media.frames,
            sha256=media.sha256,
        )


def _default_filename(*, path: str | None, url: str | None) -> str | None:
    """The last path segment of the source, when there is a sensible one."""
    if path is not None:
        name = PurePosixPath(path).name
    elif url is not None:
        name = unquote(PurePosixPath(urlsplit(url).path).name)
    else:
        return None
    name = name.replace("\x00", "")
    return name[:MAX_FILENAME] or None
