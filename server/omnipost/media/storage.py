"""Content-addressed media files on disk, and facts read from a file rather than from bytes.

Files live at `<data_dir>/media/<sha256[:2]>/<sha256>`, mode 0600, directories 0700. Every
ingest streams into a temporary file in `<data_dir>/media/` (same filesystem) while hashing, then
`os.replace`s it into place, so a reader never sees a partial file and memory stays flat whatever
the size (chunks of 1 MiB, copied in a worker thread). Runs of zero bytes are not written but
skipped, leaving a hole where the filesystem supports one, so a sparse source stays sparse.

The size cap (`max_bytes`) defaults to `default_max_bytes()`: the largest per-file limit of any
platform rule (Facebook's 4 GB video), rounded up to a whole GiB, so a file just over a platform's
limit is still stored and meets that platform's own rule (with its numbers) rather than a generic
refusal. An operator may configure a smaller cap (OMNIPOST_MEDIA_MAX_BYTES); then files between it
and a platform's limit are refused at upload with media.too_large.

A placed file is "pending" until its owner calls `release(sha256)` (the media service does, once
a database record refers to it); `remove` leaves pending files alone, so a delete racing an
upload of the same content cannot unlink the file the upload is about to record. This guards
one process; several processes sharing a data directory are not coordinated.

`probe_file` gives the same `MediaFacts` as `probe.probe_bytes` on the same content: images via
Pillow from the file header, HEIF stills by `probe_bytes` (they are small), WebM/Matroska by the
same EBML walk as `probe_bytes` (reading headers only), and MP4/MOV via PyAV (FFmpeg), imported
lazily because it is heavy.
"""

import binascii
import functools
import hashlib
import os
import re
import stat
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import anyio
import anyio.to_thread
import httpx2

from omnipost.errors import MediaError
from omnipost.media import probe
from omnipost.media.fetch import MediaTooLargeError, Resolver, fetch
from omnipost.media.probe import MediaFacts, decode_base64, probe_bytes

PATH_FORBIDDEN = "media.path_forbidden"
PATH_NOT_FOUND = "media.path_not_found"

CHUNK = 1024 * 1024
# Bytes copied per worker-thread hop; progress is reported between hops.
STEP = 8 * CHUNK
GIB = 1024**3
DEFAULT_URL_TIMEOUT = 120.0
# HEIF stills are parsed from memory by probe_bytes; anything bigger is not a photo.
HEIF_MAX_BYTES = 128 * 1024 * 1024
# Packets demuxed while looking for the first decodable frame (its display-matrix rotation).
ROTATION_PACKETS = 64

Progress = Callable[[int, int | None], Awaitable[None]]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def default_max_bytes() -> int:
    """The store's default cap: above the largest per-file limit of any platform rule, rounded up to a whole GiB."""
    from omnipost.preflight.rules import largest_media_limit  # the rules import media.probe; import them late

    return (largest_media_limit() // GIB + 1) * GIB


@functools.cache
def _zeros() -> bytes:
    """A chunk of zero bytes, made at the first use (not at import: 1 MB of idle memory otherwise)."""
    return bytes(CHUNK)


def _is_zero(chunk: bytes | memoryview) -> bool:
    """Whether every byte of the chunk is zero (compared against a zero buffer: memcmp speed, no copy)."""
    view = memoryview(chunk)
    zeros = _zeros()
    return all(zeros.startswith(view[at : at + CHUNK]) for at in range(0, len(view), CHUNK))


class MediaPathForbiddenError(MediaError):
    """A local path outside the configured media roots, or not a regular file."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            rule=PATH_FORBIDDEN,
            remediation="Give the absolute path of a regular file inside one of the configured media directories.",
        )


class MediaPathNotFoundError(MediaError):
    """A path inside the media roots that does not exist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, rule=PATH_NOT_FOUND, remediation="Check the path; it must name an existing file.")


@dataclass(frozen=True)
class StoredFile:
    """A file in the store: where it is, its digest (also its name) and its size in bytes."""

    path: Path
    sha256: str
    size: int


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Sink:
    """A temporary file in the store that hashes and counts what is written to it."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".incoming-")  # created 0600
        self.path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.hasher = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes

    def write(self, chunk: bytes | memoryview) -> int:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise MediaTooLargeError(f"the file is over the {self.max_bytes:,}-byte limit", limit=self.max_bytes)
        self.hasher.update(chunk)
        if _is_zero(chunk):  # a hole instead of zeros on disk; finish() sets the length
            self.file.seek(len(chunk), os.SEEK_CUR)
            return len(chunk)
        return self.file.write(chunk)

    def finish(self) -> str:
        """Flush to disk and return the hex digest."""
        self.file.truncate(self.size)  # a trailing hole (skipped zeros) still counts towards the length
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        return self.hasher.hexdigest()

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class MediaStore:
    """Content-addressed media files under `data_dir/media`, ingested from paths, URLs or base64.

    `roots`: the only directories `ingest_path` reads from (none: path uploads are refused).
    `max_bytes`: the largest file accepted from any source (None: `default_max_bytes()`).
    """

    def __init__(self, data_dir: Path, roots: list[Path], *, max_bytes: int | None = None) -> None:
        self.root = Path(data_dir) / "media"
        self.roots = [Path(r).expanduser() for r in roots]
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()

    # --- layout ---------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Where the file with this digest lives (whether or not it exists)."""
        if not _SHA256.match(sha256):
            raise ValueError("not a lower-case hex SHA-256 digest")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _place(self, sink: _Sink) -> StoredFile:
        """Move a finished sink to its content address and mark it pending."""
        digest = sink.finish()
        final = self.path_for(digest)
        final.parent.mkdir(exist_ok=True, mode=0o700)
        with self._lock:
            if final.is_file():
                sink.path.unlink(missing_ok=True)  # same content already stored
            else:
                os.replace(sink.path, final)
            os.chmod(final, 0o600)
            self._pending[digest] += 1
        return StoredFile(final, digest, sink.size)

    def release(self, sha256: str) -> None:
        """Drop one pending mark taken by an ingest (call once the file is recorded, or abandoned)."""
        with self._lock:
            self._pending[sha256] -= 1
            if self._pending[sha256] <= 0:
                del self._pending[sha256]

    def remove(self, sha256: str) -> bool:
        """Delete the file unless an ingest still holds it pending; True if it was deleted."""
        path = self.path_for(sha256)
        with self._lock:
            if self._pending.get(sha256, 0) > 0:
                return False
            try:
                path.unlink()
            except FileNotFoundError:
                return False
        return True

    # --- ingest ---------------------------------------------------------------------------

    async def ingest_path(self, path: str, *, progress: Progress | None = None) -> StoredFile:
        """Copy a local file from inside the media roots into the store."""
        fd, size = await anyio.to_thread.run_sync(self._open_under_roots, path)
        if size > self.max_bytes:
            os.close(fd)
            raise MediaTooLargeError(f"the file is {size:,} bytes, over the {self.max_bytes:,}-byte limit", limit=self.max_bytes)
        with os.fdopen(fd, "rb", buffering=0) as src:
            await anyio.to_thread.run_sync(self._prepare)
            sink = await anyio.to_thread.run_sync(_Sink, self.root, self.max_bytes)
            try:
                buffer = bytearray(CHUNK)
                while True:
                    copied = await anyio.to_thread.run_sync(_copy_step, src, sink, buffer)
                    if progress is not None:
                        await progress(sink.size, size)
                    if copied < STEP:
                        break
                return await anyio.to_thread.run_sync(self._place, sink)
            except BaseException:
                sink.discard()
                raise

    def _open_under_roots(self, path: str) -> tuple[int, int]:
        """Open `path` read-only after checking it is a regular file inside a root; (fd, size)."""
        if not self.roots:
            raise MediaPathForbiddenError("uploading from a local path is disabled: no media directories are configured")
        if "\x00" in path:  # no file name holds one; os.path would raise ValueError on it
            raise MediaPathForbiddenError("the path contains a NUL character")
        given = Path(path).expanduser()
        if not given.is_absolute():
            raise MediaPathForbiddenError("the path must be absolute")
        if ".." in given.parts:
            raise MediaPathForbiddenError("the path must not contain '..'")
        roots = [Path(os.path.realpath(r)) for r in self.roots]
        real = Path(os.path.realpath(given))  # every symlink resolved, the final one included
        if not any(_within(real, root) for root in roots):
            raise MediaPathForbiddenError("the path is outside the configured media directories")
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            # O_NOFOLLOW: a symlink swapped in since realpath() fails; O_NONBLOCK: a FIFO can't hang us.
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise MediaPathNotFoundError("no file exists at the path") from None
        except IsADirectoryError:
            raise MediaPathForbiddenError("the path is a directory, not a regular file") from None
        except OSError:
            raise MediaPathForbiddenError("the path cannot be opened (a symlink, or not readable by the server)") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise MediaPathForbiddenError("the path is not a regular file")
            # An intermediate directory may have become a symlink between realpath() and open():
            # ask the kernel where the open file really is (Linux; elsewhere the check above stands).
            proc = f"/proc/self/fd/{fd}"
            if os.path.islink(proc):
                opened = Path(os.readlink(proc))
                if not any(_within(opened, root) for root in roots):
                    raise MediaPathForbiddenError("the path is outside the configured media directories")
        except BaseException:
            os.close(fd)
            raise
        return fd, info.st_size

    async def ingest_url(
        self,
        url: str,
        *,
        resolver: Resolver,
        http: httpx2.AsyncClient | None = None,
        timeout: float = DEFAULT_URL_TIMEOUT,
        max_bytes: int | None = None,
        progress: Progress | None = None,
        allow_loopback: bool = False,
    ) -> StoredFile:
        """Fetch `url` through the SSRF guard (media.fetch) straight into the store.

        `allow_loopback` is for tests only and is passed to `fetch` (see there).
        """
        limit = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        await anyio.to_thread.run_sync(self._prepare)
        sink = await anyio.to_thread.run_sync(_Sink, self.root, limit)
        try:
            await fetch(
                url,
                http=http,
                resolver=resolver,
                max_bytes=limit,
                timeout=timeout,
                dest=sink,  # type: ignore[arg-type]  # only .write is used
                progress=progress,
                allow_loopback=allow_loopback,
            )
            return await anyio.to_thread.run_sync(self._place, sink)
        except BaseException:
            sink.discard()
            raise

    async def ingest_stream(self, chunks: AsyncIterator[bytes], *, progress: Progress | None = None) -> StoredFile:
        """Write a request body (POST /v1/media) into the store as it arrives, STEP bytes at a time: memory stays flat
        whatever the file's size (about one CHUNK held at a time), and a body over the limit stops being read at the limit."""
        await anyio.to_thread.run_sync(self._prepare)
        sink = await anyio.to_thread.run_sync(_Sink, self.root, self.max_bytes)
        try:
            pending = bytearray()
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= CHUNK:
                    full, pending = pending, bytearray()
                    await anyio.to_thread.run_sync(sink.write, full)
                    if progress is not None:
                        await progress(sink.size, None)
            if pending:
                await anyio.to_thread.run_sync(sink.write, pending)
            if sink.size == 0:
                raise MediaError("The body is empty: send the file's bytes.", rule="body")
            return await anyio.to_thread.run_sync(self._place, sink)
        except BaseException:
            sink.discard()
            raise

    async def ingest_base64(self, data: str, *, progress: Progress | None = None) -> StoredFile:
        """Decode base64 (or a data: URL) into the store, a slice at a time."""
        await anyio.to_thread.run_sync(self._prepare)
        sink = await anyio.to_thread.run_sync(_Sink, self.root, self.max_bytes)
        try:
            pieces = _base64_pieces(data)
            while True:
                more = await anyio.to_thread.run_sync(_write_next, pieces, sink)
                if progress is not None:
                    await progress(sink.size, None if more else sink.size)
                if not more:
                    break
            return await anyio.to_thread.run_sync(self._place, sink)
        except BaseException:
            sink.discard()
            raise


def _copy_step(src: BinaryIO, sink: _Sink, buffer: bytearray) -> int:
    """Copy up to STEP bytes from src to sink; the number copied (less than STEP at end of file)."""
    view = memoryview(buffer)
    copied = 0
    while copied < STEP:
        n = src.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        sink.write(view[:n])
        copied += n
    return copied


def _write_next(pieces: Iterator[bytes], sink: _Sink) -> bool:
    """Decode and write the next slice; False once the input is exhausted."""
    piece = next(pieces, None)
    if piece is None:
        return False
    sink.write(piece)
    return True


# --- base64, in slices --------------------------------------------------------------------

_DATA_URL = re.compile(r"data:([^,]*),", re.IGNORECASE)
_BASE64_WHITESPACE = b" \t\n\r\v\f"
_SLICE = 4 * 1024 * 1024  # characters per slice (~3 MiB decoded)


def _base64_pieces(value: str) -> Iterator[bytes]:
    """Decode `value` slice by slice, accepting exactly what probe.decode_base64 accepts.

    Only the slices are copied, never the whole text. When anything is wrong, decode_base64 is
    run on the whole value to raise its precise MediaError (so the messages agree too).
    """
    start, end = 0, len(value)
    while start < end and value[start].isspace():
        start += 1
    while end > start and value[end - 1].isspace():
        end -= 1
    match = _DATA_URL.match(value, start, end)
    if match is not None:
        if not match.group(1).lower().endswith(";base64"):
            _reject(value)
        start = match.end()
    carry = b""
    seen_padding = False
    seen_any = False
    for at in range(start, end, _SLICE):
        text = value[at : min(at + _SLICE, end)]
        if not text.isascii():
            _reject(value)
        raw = carry + text.encode("ascii").translate(None, _BASE64_WHITESPACE)
        cut = len(raw) // 4 * 4
        quanta, carry = raw[:cut], raw[cut:]
        if not quanta:
            continue
        if seen_padding:  # data after '=' padding
            _reject(value)
        seen_any = True
        try:
            decoded = binascii.a2b_base64(quanta, strict_mode=True)
        except binascii.Error:
            _reject(value)
        seen_padding = quanta.endswith(b"=")
        yield decoded
    if carry or not seen_any:
        _reject(value)


def _reject(value: str) -> NoReturn:
    decode_base64(value)  # raises the precise error
    raise MediaError("bytesBase64 is not valid base64", rule=probe.RULE)


# --- facts from a file --------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def probe_file(path: Path | str, *, sha256: str | None = None) -> MediaFacts:
    """The MediaFacts of a file, equal to `probe_bytes` of its content; blocking (run in a thread).

    `sha256` may be given when already known (a store file is named by it) to skip re-hashing.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(64)
    if not head:
        probe_bytes(b"")  # raises the "empty" MediaError
    if probe._looks_like_bmff(head):
        brand = head[8:12] if head[4:8] == b"ftyp" else None
        if brand in probe._HEIF_BRANDS:
            if size > HEIF_MAX_BYTES:
                raise MediaError(
                    f"the HEIF image is {size:,} bytes, too large to be a photo",
                    rule=probe.RULE,
                    remediation="Export the image as a JPEG or a smaller HEIC.",
                )
            return probe_bytes(path.read_bytes())
        try:
            parsed = _probe_video(path, quicktime=brand is None or brand == probe._QUICKTIME)
        except MediaError:
            raise
        except Exception as exc:  # FFmpeg surfaces damage in many shapes; all mean the same here
            raise probe._malformed(f"FFmpeg cannot read it ({type(exc).__name__})") from None
    elif probe.looks_like_ebml(head):
        with open(path, "rb") as f:
            parsed = probe.read_matroska(f, size)
    else:
        parsed = _probe_image_file(path, head)
    return MediaFacts(
        kind=parsed.kind,
        mime=parsed.mime,
        size=size,
        width=parsed.width,
        height=parsed.height,
        duration=parsed.duration,
        frames=parsed.frames,
        sha256=sha256 or sha256_file(path),
    )


def _probe_image_file(path: Path, head: bytes) -> "probe._Parsed":
    """probe._probe_image, reading the header from the file instead of from bytes in memory."""
    return probe.read_image(path, head)


def _probe_video(path: Path, *, quicktime: bool) -> "probe._Parsed":
    """Duration and displayed size of the first video stream of an MP4/MOV, read by FFmpeg (PyAV)."""
    import av  # heavy (FFmpeg): only loaded when a video is probed

    try:
        container: Any = av.open(str(path), mode="r", format="mov", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise probe._malformed(f"FFmpeg cannot read it ({type(exc).__name__})") from None
    with container:
        streams = container.streams.video
        if not streams:
            raise MediaError(
                "the MP4/MOV file has no video track (audio only?)",
                rule=probe.RULE,
                remediation="Send a file with a video track, or post the audio as a video with a still image.",
            )
        stream = streams[0]
        if stream.codec_context is None:
            # Header-only or damaged: no sample description, so nothing could ever play it.
            raise probe._malformed("the video track has no codec (sample description), so it cannot be played")
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        sar = stream.sample_aspect_ratio
        if sar and sar != 1:  # anamorphic: displayed width is the stored width times the pixel ratio
            width = round(width * sar)
        if width <= 0 or height <= 0:
            raise probe._malformed("the video track declares no picture size")
        duration: float | None = None
        if container.duration:  # AV_TIME_BASE (microsecond) units
            duration = container.duration / 1_000_000
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        rotation = _first_frame_rotation(container, stream)
    if abs(rotation) % 180 == 90:  # phones store portrait video as landscape frames plus a rotation
        width, height = height, width
    mime = "video/quicktime" if quicktime else "video/mp4"
    return probe._Parsed("video", mime, width, height, duration, None)


def _first_frame_rotation(container: Any, stream: Any) -> int:
    """Degrees of the display matrix, which PyAV only exposes on decoded frames (0 if none decodes)."""
    import av

    try:
        for count, packet in enumerate(container.demux(stream)):
            for frame in packet.decode():
                return int(round(frame.rotation))
            if count >= ROTATION_PACKETS:
                break
    except (av.FFmpegError, ValueError, OSError):
        pass
    return 0
