"""The media store (paths, URLs, base64 into content-addressed files), probe_file, and MediaService."""

import base64
import hashlib
import os
import random
import stat
import struct
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import av
import pytest
from anyio.abc import ByteStream
from mediagen import make_heif, make_image, make_video, make_webm
from omnipost.errors import MediaError, NotFoundError, ValidationFailedError
from omnipost.media import storage
from omnipost.media.fetch import TOO_LARGE, URL_FORBIDDEN
from omnipost.media.probe import decode_base64, probe_bytes
from omnipost.media.service import MediaService
from omnipost.media.storage import PATH_FORBIDDEN, PATH_NOT_FOUND, MediaStore, default_max_bytes, probe_file
from omnipost.store.db import Database, new_id
from omnipost.store.models import Media, Profile
from test_media_fetch import FakeResolver, respond, serve, tripwire_client

pytestmark = pytest.mark.anyio

WAIT = 30
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    inside = tmp_path / "uploads"
    inside.mkdir()
    return inside


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    other = tmp_path / "private"
    other.mkdir()
    (other / "secret.png").write_bytes(make_image("png", 10, 10))
    return other


@pytest.fixture
def store(tmp_path: Path, roots: Path) -> MediaStore:
    return MediaStore(tmp_path / "data", [roots])


def _encode(container: Any, stream: Any, frames: int) -> None:
    """`frames` grey frames of changing shade, encoded and muxed, then the encoder flushed."""
    for i in range(frames):
        frame = av.VideoFrame(stream.width, stream.height, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 23) % 256]) * plane.buffer_size)
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_video(path: Path, *, width: int = 64, height: int = 48, frames: int = 12, rate: int = 12,
                rotation: int | None = None, fmt: str | None = None) -> Path:
    """A real H.264 (or MPEG-4 Part 2) video, encoded by PyAV from solid-colour frames."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        _encode(container, stream, frames)
    return path


def assert_private_file(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- ingest_path: roots, escapes, special files -------------------------------------------


async def test_ingest_path_stores_a_content_addressed_private_copy(store: MediaStore, roots: Path) -> None:
    data = make_image("png", 40, 30)
    (roots / "a.png").write_bytes(data)
    stored = await store.ingest_path(str(roots / "a.png"))
    digest = hashlib.sha256(data).hexdigest()
    assert stored.sha256 == digest
    assert stored.size == len(data)
    assert stored.path == store.root / digest[:2] / digest
    assert stored.path.read_bytes() == data
    assert_private_file(stored.path)
    assert stat.S_IMODE(stored.path.parent.stat().st_mode) & 0o077 == 0
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".incoming")] == []


async def test_same_content_is_stored_once(store: MediaStore, roots: Path) -> None:
    data = make_image("jpeg", 20, 20)
    (roots / "one.jpg").write_bytes(data)
    (roots / "two.jpg").write_bytes(data)
    first = await store.ingest_path(str(roots / "one.jpg"))
    second = await store.ingest_path(str(roots / "two.jpg"))
    assert first.path == second.path
    assert list(first.path.parent.iterdir()) == [first.path]


async def test_nested_directories_and_internal_symlinks_are_allowed(store: MediaStore, roots: Path) -> None:
    (roots / "deep" / "er").mkdir(parents=True)
    (roots / "deep" / "er" / "p.png").write_bytes(make_image("png"))
    (roots / "alias.png").symlink_to(roots / "deep" / "er" / "p.png")
    await store.ingest_path(str(roots / "deep" / "er" / "p.png"))
    await store.ingest_path(str(roots / "alias.png"))


def _forbidden(exc: pytest.ExceptionInfo[MediaError]) -> None:
    assert exc.value.rule == PATH_FORBIDDEN


async def test_paths_outside_the_roots_are_forbidden(store: MediaStore, outside: Path) -> None:
    with pytest.raises(MediaError) as exc:
        await store.ingest_path(str(outside / "secret.png"))
    _forbidden(exc)


async def test_dotdot_is_forbidden_even_when_it_lands_inside(store: MediaStore, roots: Path, outside: Path) -> None:
    (roots / "x.png").write_bytes(make_image("png"))
    for path in (roots / ".." / "private" / "secret.png", roots / "sub" / ".." / "x.png"):
        with pytest.raises(MediaError) as exc:
            await store.ingest_path(str(path))
        _forbidden(exc)


async def test_symlink_escapes_are_forbidden(store: MediaStore, roots: Path, outside: Path) -> None:
    (roots / "link.png").symlink_to(outside / "secret.png")
    (roots / "linkdir").symlink_to(outside, target_is_directory=True)
    (roots / "passwd").symlink_to("/etc/passwd")
    for path in (roots / "link.png", roots / "linkdir" / "secret.png", roots / "passwd"):
        with pytest.raises(MediaError) as exc:
            await store.ingest_path(str(path))
        _forbidden(exc)


async def test_relative_paths_and_missing_roots_are_forbidden(tmp_path: Path, roots: Path) -> None:
    (roots / "x.png").write_bytes(make_image("png"))
    with pytest.raises(MediaError) as exc:
        await MediaStore(tmp_path / "data", [roots]).ingest_path("uploads/x.png")
    _forbidden(exc)
    with pytest.raises(MediaError) as exc:
        await MediaStore(tmp_path / "data", []).ingest_path(str(roots / "x.png"))
    _forbidden(exc)


async def test_non_regular_files_are_forbidden(tmp_path: Path, store: MediaStore, roots: Path) -> None:
    (roots / "dir").mkdir()
    os.mkfifo(roots / "fifo")  # opening must not block: O_NONBLOCK, then refused as not regular
    with anyio.fail_after(WAIT):
        for path in (roots / "dir", roots / "fifo"):
            with pytest.raises(MediaError) as exc:
                await store.ingest_path(str(path))
            _forbidden(exc)
        # A device that never ends: refused before a byte is read.
        with pytest.raises(MediaError) as exc:
            await MediaStore(tmp_path / "data", [Path("/dev")]).ingest_path("/dev/zero")
        _forbidden(exc)


async def test_missing_file_inside_the_roots(store: MediaStore, roots: Path) -> None:
    with pytest.raises(MediaError) as exc:
        await store.ingest_path(str(roots / "nope.png"))
    assert exc.value.rule == PATH_NOT_FOUND


async def test_size_cap_applies_to_paths(tmp_path: Path, roots: Path) -> None:
    (roots / "big.bin").write_bytes(b"\0" * 5000)
    small = MediaStore(tmp_path / "data", [roots], max_bytes=4999)
    with pytest.raises(MediaError) as exc:
        await small.ingest_path(str(roots / "big.bin"))
    assert exc.value.rule == TOO_LARGE
    assert not list((tmp_path / "data").rglob("*.bin"))


def disk_bytes(path: Path) -> int:
    """Bytes the file really occupies on disk (holes of a sparse file take none)."""
    return path.stat().st_blocks * 512


def sparse_video(path: Path, size: int) -> Path:
    """A real (PyAV-encoded) MP4 grown to `size` bytes by a hole at the end of its mdat: the file's length is `size`,
    its disk use a few kilobytes, and FFmpeg reads it as the same short clip (the sample offsets are unchanged)."""
    real = write_video(path.with_suffix(".small.mp4")).read_bytes()
    boxes, pos = {}, 0
    while pos < len(real):
        length, kind = struct.unpack_from(">I4s", real, pos)
        boxes[kind] = (pos, length)
        pos += length
    mdat_at, mdat_len = boxes[b"mdat"]
    assert mdat_at + mdat_len == boxes[b"moov"][0]  # PyAV writes ftyp, free, mdat, moov
    hole = size - len(real)
    assert mdat_len + hole <= 0xFFFFFFFF, "keep the mdat within a 32-bit size"
    with open(path, "wb") as f:
        f.write(real[:mdat_at] + struct.pack(">I", mdat_len + hole) + real[mdat_at + 4 : mdat_at + mdat_len])
        f.seek(hole, os.SEEK_CUR)
        f.write(real[mdat_at + mdat_len :])
    assert path.stat().st_size == size
    return path


def test_default_cap_is_above_every_platform_file_limit() -> None:
    from omnipost.preflight.rules import CATALOGUE, largest_media_limit

    byte_limits = [r.limit for r in CATALOGUE.values() if r.unit == "bytes"]
    assert largest_media_limit() == max(byte_limits) == CATALOGUE["facebook.media.video_size_max"].limit
    # Strictly above: a file one byte over the largest limit still reaches that platform's rule.
    assert default_max_bytes() > largest_media_limit()
    assert default_max_bytes() % storage.GIB == 0
    assert MediaStore(Path("/nonexistent"), []).max_bytes == default_max_bytes()


def test_the_cap_is_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from omnipost.config import Settings

    assert Settings(_env_file=None).media_max_bytes is None  # type: ignore[call-arg]
    monkeypatch.setenv("OMNIPOST_MEDIA_MAX_BYTES", "1048576")
    assert Settings(_env_file=None).media_max_bytes == 1048576  # type: ignore[call-arg]
    monkeypatch.setenv("OMNIPOST_MEDIA_MAX_BYTES", "0")
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_cap_boundary_for_paths_and_base64(tmp_path: Path, roots: Path) -> None:
    cap = 3 * storage.CHUNK + 7  # not a multiple of the copy chunk: the last partial chunk crosses it
    small = MediaStore(tmp_path / "data", [roots], max_bytes=cap)
    exact = make_webm(size=cap)
    (roots / "exact.webm").write_bytes(exact)
    (roots / "over.webm").write_bytes(make_webm(size=cap + 1))
    assert (await small.ingest_path(str(roots / "exact.webm"))).size == cap
    assert (await small.ingest_base64(base64.b64encode(exact).decode())).size == cap
    for attempt in (small.ingest_path(str(roots / "over.webm")),
                    small.ingest_base64(base64.b64encode(make_webm(size=cap + 1)).decode())):
        with pytest.raises(MediaError) as exc:
            await attempt
        assert exc.value.rule == TOO_LARGE
    assert not [p for p in small.root.rglob(".incoming-*")]


async def test_zero_runs_are_stored_as_holes_and_read_back_as_zeros(store: MediaStore, roots: Path) -> None:
    source = roots / "sparse.bin"
    size = 40 * storage.CHUNK + 5
    with open(source, "wb") as f:
        f.write(b"head")
        f.seek(size - 4)
        f.write(b"tail")
    stored = await store.ingest_path(str(source))
    assert stored.size == size == stored.path.stat().st_size
    assert stored.sha256 == hashlib.sha256(b"head" + bytes(size - 8) + b"tail").hexdigest()
    assert disk_bytes(stored.path) < 4 * storage.CHUNK
    trailing = roots / "trailing.bin"  # ends in a hole: the length must still count it
    trailing.write_bytes(b"x")
    os.truncate(trailing, 10 * storage.CHUNK)
    again = await store.ingest_path(str(trailing))
    assert again.path.stat().st_size == 10 * storage.CHUNK
    assert again.path.read_bytes() == b"x" + bytes(10 * storage.CHUNK - 1)


async def test_ingest_path_reports_progress(store: MediaStore, roots: Path) -> None:
    size = 3 * storage.STEP + 123
    (roots / "big.bin").write_bytes(os.urandom(size))
    reports: list[tuple[int, int | None]] = []

    async def progress(done: int, total: int | None) -> None:
        reports.append((done, total))

    stored = await store.ingest_path(str(roots / "big.bin"), progress=progress)
    assert stored.size == size
    assert reports[-1] == (size, size)
    assert len(reports) == 4


# --- remove / pending ---------------------------------------------------------------------


async def test_remove_spares_pending_files_until_released(store: MediaStore, roots: Path) -> None:
    (roots / "x.png").write_bytes(make_image("png"))
    stored = await store.ingest_path(str(roots / "x.png"))
    assert store.remove(stored.sha256) is False  # still pending: an upload is about to record it
    store.release(stored.sha256)
    assert store.remove(stored.sha256) is True
    assert not stored.path.exists()
    assert store.remove(stored.sha256) is False


# --- base64 -------------------------------------------------------------------------------


async def test_ingest_base64_matches_decode_base64(store: MediaStore) -> None:
    data = make_image("gif", 30, 20, frames=3)
    for text in (
        base64.b64encode(data).decode(),
        "data:image/gif;base64," + base64.b64encode(data).decode(),
        "  \n" + base64.encodebytes(data).decode() + "\n\t ",
    ):
        stored = await store.ingest_base64(text)
        assert stored.path.read_bytes() == data == decode_base64(text)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "QUJD", "QUJDRA==", "QUJDRA=", "QUJD RA==", "QUJD\nRA==\n", "QU=JDRA==", "QUJDRA==QUJD",
     "QUJD-_==", "QUJDé===", "data:image/png,QUJD", "data:image/png;base64,QUJD", "DATA:;BASE64,QUJDRA==",
     "=QUJD", "QUJDRA===", "QUJDR===", "QQ==QQ==", "\x1cQUJD\x1f", "QUJD\x1cQUJD"],
)
@pytest.mark.parametrize("slice_chars", [4, 5, 8, storage._SLICE])
async def test_base64_slices_accept_exactly_what_decode_base64_accepts(
    store: MediaStore, monkeypatch: pytest.MonkeyPatch, text: str, slice_chars: int
) -> None:
    monkeypatch.setattr(storage, "_SLICE", slice_chars)
    try:
        expected: bytes | MediaError = decode_base64(text)
    except MediaError as exc:
        expected = exc
    if isinstance(expected, MediaError):
        with pytest.raises(MediaError) as got:
            await store.ingest_base64(text)
        assert got.value.rule == expected.rule
    else:
        stored = await store.ingest_base64(text)
        assert stored.path.read_bytes() == expected


async def test_base64_slicing_agrees_on_random_inputs(store: MediaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_SLICE", 7)
    rng = random.Random(1234)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \n"
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            expected: bytes | None = decode_base64(text)
        except MediaError:
            expected = None
        try:
            got: bytes | None = (await store.ingest_base64(text)).path.read_bytes()
        except MediaError:
            got = None
        assert got == expected, text
    assert [p for p in store.root.iterdir() if p.name.startswith(".incoming")] == []


# --- ingest_url ---------------------------------------------------------------------------


async def test_ingest_url_streams_into_the_store(store: MediaStore) -> None:
    data = make_image("webp", 33, 22)

    async def handler(_seen: object, stream: ByteStream) -> None:
        await respond(stream, 200, data, {"Content-Type": "image/webp"})

    resolver = FakeResolver({"cdn.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/a.webp": handler}) as server, tripwire_client() as (client, _wire):
            stored = await store.ingest_url(f"http://cdn.example:{server.port}/a.webp", resolver=resolver, http=client,
                                            allow_loopback=True)
    assert stored.path.read_bytes() == data
    assert_private_file(stored.path)


async def test_ingest_url_failure_leaves_no_file(store: MediaStore) -> None:
    async def handler(_seen: object, stream: ByteStream) -> None:
        await respond(stream, 200, b"x" * 10_000)

    resolver = FakeResolver({"cdn.example": ["127.0.0.1"]})
    with anyio.fail_after(WAIT):
        async with serve({"/big": handler}) as server, tripwire_client() as (client, _wire):
            with pytest.raises(MediaError) as exc:
                await store.ingest_url(f"http://cdn.example:{server.port}/big", resolver=resolver, http=client,
                                       max_bytes=100, allow_loopback=True)
    assert exc.value.rule == TOO_LARGE
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


# --- probe_file agrees with probe_bytes ---------------------------------------------------

IMAGES = [
    ("png", {}), ("jpeg", {}), ("jpeg", {"exif_orientation": 6}), ("jpeg", {"exif_orientation": 3}),
    ("webp", {}), ("gif", {}), ("gif", {"frames": 4}), ("bmp", {}), ("tiff", {}), ("tiff", {"frames": 2}),
    ("png", {"frames": 3}),
]


@pytest.mark.parametrize(("fmt", "options"), IMAGES)
def test_probe_file_agrees_with_probe_bytes_on_images(tmp_path: Path, fmt: str, options: dict[str, int]) -> None:
    data = make_image(fmt, 120, 80, **options)  # type: ignore[arg-type]
    path = tmp_path / "img"
    path.write_bytes(data)
    assert probe_file(path) == probe_bytes(data)


@pytest.mark.parametrize("rotation", [None, 90, -90, 180])
@pytest.mark.parametrize("fmt", ["mp4", "mov"])
def test_probe_file_agrees_with_probe_bytes_on_real_videos(tmp_path: Path, rotation: int | None, fmt: str) -> None:
    path = write_video(tmp_path / f"clip.{fmt}", width=64, height=48, frames=18, rate=12, rotation=rotation, fmt=fmt)
    data = path.read_bytes()
    from_file, from_bytes = probe_file(path), probe_bytes(data)
    assert from_file.kind == from_bytes.kind == "video"
    assert from_file.mime == from_bytes.mime == ("video/quicktime" if fmt == "mov" else "video/mp4")
    assert (from_file.width, from_file.height) == (from_bytes.width, from_bytes.height)
    expected = (48, 64) if rotation in (90, -90) else (64, 48)
    assert (from_file.width, from_file.height) == expected
    assert from_file.duration == pytest.approx(from_bytes.duration, abs=1e-3)
    assert from_file.duration == pytest.approx(1.5, abs=0.1)
    assert (from_file.size, from_file.sha256, from_file.frames) == (from_bytes.size, from_bytes.sha256, None)


def write_webm(path: Path, *, width: int = 64, height: int = 48, frames: int = 12, rate: int = 12) -> Path:
    """A real VP8 WebM encoded by PyAV (libvpx), as a browser or ffmpeg would write one."""
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        _encode(container, stream, frames)
    return path


def test_probe_file_agrees_with_probe_bytes_and_ffmpeg_on_a_real_webm(tmp_path: Path) -> None:
    path = write_webm(tmp_path / "clip.webm", width=96, height=64, frames=18, rate=12)
    from_file, from_bytes = probe_file(path), probe_bytes(path.read_bytes())
    assert from_file == from_bytes
    assert (from_file.kind, from_file.mime, from_file.width, from_file.height) == ("video", "video/webm", 96, 64)
    with av.open(str(path)) as container:
        assert from_file.duration == pytest.approx(container.duration / 1_000_000, abs=1e-3)
    assert from_file.duration == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("options", [{}, {"live": True}, {"tracks_last": True}, {"display": (853, 360)}, {"audio": True}])
def test_probe_file_agrees_with_probe_bytes_on_generated_webm(tmp_path: Path, options: dict[str, object]) -> None:
    data = make_webm(640, 360, size=20_000, **options) if not options.get("live") else make_webm(640, 360, **options)  # type: ignore[arg-type]
    (tmp_path / "v").write_bytes(data)
    assert probe_file(tmp_path / "v") == probe_bytes(data)


def test_probe_file_on_heif_and_non_media(tmp_path: Path) -> None:
    heic = make_heif(4032, 3024, rotation=90)
    (tmp_path / "h").write_bytes(heic)
    assert probe_file(tmp_path / "h") == probe_bytes(heic)
    for i, junk in enumerate([b"", b"hello world, not media", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, b"RIFF\0\0\0\0WEBPxxxx"]):
        path = tmp_path / f"junk{i}"
        path.write_bytes(junk)
        with pytest.raises(MediaError) as from_file:
            probe_file(path)
        with pytest.raises(MediaError) as from_bytes:
            probe_bytes(junk)
        assert from_file.value.rule == from_bytes.value.rule


def test_probe_file_is_stricter_than_probe_bytes_on_header_only_videos(tmp_path: Path) -> None:
    # mediagen's MP4s carry boxes but no sample description: probe_bytes reads the headers,
    # FFmpeg finds no codec and rightly calls the file unplayable. Real files agree (above).
    data = make_video(width=1920, height=1080, duration=3.0, size=4096)
    (tmp_path / "v.mp4").write_bytes(data)
    assert probe_bytes(data).width == 1920
    with pytest.raises(MediaError):
        probe_file(tmp_path / "v.mp4")


def test_probe_file_rejects_truncated_and_audio_only_movies(tmp_path: Path) -> None:
    real = write_video(tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(real[:40])
    with pytest.raises(MediaError):
        probe_file(tmp_path / "cut.mp4")
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        frame.planes[0].update(b"\0" * frame.planes[0].buffer_size)
        frame.sample_rate, frame.pts = 8000, 0
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    with pytest.raises(MediaError):
        probe_file(audio)


# --- MediaService -------------------------------------------------------------------------


class Clock:
    def now(self) -> datetime:
        return NOW


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(None, tmp_path / "db", NOW)
    yield database
    await database.close()


@pytest.fixture
async def profiles(db: Database) -> tuple[str, str]:
    first = await db.ensure_default_profile(NOW)
    other = Profile(id=new_id("prf"), name="other", created_at=NOW)
    async with db.session() as s:
        s.add(other)
        await s.commit()
    return first.id, other.id


@pytest.fixture
def service(db: Database, store: MediaStore) -> MediaService:
    return MediaService(db, store, FakeResolver({"cdn.example": ["127.0.0.1"]}), None, Clock())


async def test_upload_records_facts_and_dedupes_per_profile(
    service: MediaService, store: MediaStore, roots: Path, profiles: tuple[str, str]
) -> None:
    mine, theirs = profiles
    data = make_image("jpeg", 300, 200, exif_orientation=6)
    (roots / "photo.jpg").write_bytes(data)
    first = await service.upload(mine, path=str(roots / "photo.jpg"), alt_text="a cat")
    assert first.id.startswith("med_")
    assert (first.kind, first.mime, first.width, first.height, first.size) == ("image", "image/jpeg", 200, 300, len(data))
    assert first.filename == "photo.jpg" and first.alt_text == "a cat"
    assert service.facts(first) == probe_bytes(data)

    again = await service.upload(mine, bytes_base64=base64.b64encode(data).decode())
    assert again.id == first.id and again.alt_text == "a cat"
    relabelled = await service.upload(mine, path=str(roots / "photo.jpg"), alt_text="a sleeping cat")
    assert relabelled.id == first.id
    assert (await service.get(mine, first.id)).alt_text == "a sleeping cat"  # type: ignore[union-attr]

    elsewhere = await service.upload(theirs, path=str(roots / "photo.jpg"))
    assert elsewhere.id != first.id
    assert await service.get(theirs, first.id) is None  # another profile's id is invisible
    assert store.path_for(first.sha256).exists()


async def test_upload_of_a_real_video(service: MediaService, roots: Path, profiles: tuple[str, str]) -> None:
    write_video(roots / "clip.mov", fmt="mov", rotation=90, frames=24, rate=12)
    media = await service.upload(profiles[0], path=str(roots / "clip.mov"), filename="holiday.mov")
    assert (media.kind, media.mime, media.width, media.height, media.filename) == (
        "video", "video/quicktime", 48, 64, "holiday.mov")
    assert media.duration == pytest.approx(2.0, abs=0.1)


async def test_upload_of_a_webm_video(service: MediaService, roots: Path, profiles: tuple[str, str]) -> None:
    (roots / "clip.webm").write_bytes(make_webm(1280, 720, 8.0, audio=True, size=300_000))
    media = await service.upload(profiles[0], path=str(roots / "clip.webm"))
    assert (media.kind, media.mime, media.width, media.height, media.duration, media.size) == (
        "video", "video/webm", 1280, 720, 8.0, 300_000)
    live = make_webm(480, 640, live=True, codec="V_VP8")
    recorded = await service.upload(profiles[0], bytes_base64=base64.b64encode(live).decode())
    assert (recorded.mime, recorded.width, recorded.height, recorded.duration) == ("video/webm", 480, 640, None)


async def test_a_video_between_2_and_4_gb_is_stored_and_meets_facebooks_size_rule(
    service: MediaService, store: MediaStore, roots: Path, profiles: tuple[str, str]
) -> None:
    from omnipost.clock import FixedClock
    from omnipost.request import PostRequest
    from omnipost.validation import validate_request

    size = 2 * storage.GIB + 16 * storage.CHUNK  # past the old 2 GiB cap, under Facebook's 4 GB
    path = sparse_video(roots / "long.mp4", size)
    media = await service.upload(profiles[0], path=str(path))
    assert (media.kind, media.mime, media.size) == ("video", "video/mp4", size)
    assert disk_bytes(store.path_for(media.sha256)) < 10 * storage.CHUNK  # the hole was not written out

    class Lookup:
        async def get_account(self, account_id: str, profile_id: str | None) -> None:
            return None

        async def get_media(self, media_id: str, profile_id: str | None) -> object:
            record = await service.get(profiles[0], media_id)
            return service.facts(record) if record is not None else None

    async def rules_broken(platform: str) -> set[str]:
        request = PostRequest.model_validate({"targets": [{"platform": platform, "text": "Long cut", "media": [{"mediaId": media.id}]}]})
        result = await validate_request(request, clock=FixedClock(NOW), accounts=Lookup(), media=Lookup())  # type: ignore[arg-type]
        return {e.rule or "" for e in result.results[0].errors}

    assert await rules_broken("facebook") == set()  # measured, and under Facebook's 4 GB
    assert "twitter.media.video_size_max" in await rules_broken("x")  # the same facts break X's 512 MB


async def test_upload_needs_exactly_one_source(service: MediaService, roots: Path, profiles: tuple[str, str]) -> None:
    with pytest.raises(ValidationFailedError):
        await service.upload(profiles[0])
    with pytest.raises(ValidationFailedError):
        await service.upload(profiles[0], path=str(roots / "x"), url="https://cdn.example/x")


async def test_unreadable_media_is_refused_and_leaves_no_file(
    service: MediaService, store: MediaStore, roots: Path, profiles: tuple[str, str]
) -> None:
    (roots / "notes.txt").write_bytes(b"definitely not a picture")
    with pytest.raises(MediaError) as exc:
        await service.upload(profiles[0], path=str(roots / "notes.txt"))
    assert exc.value.rule == "path"  # the field the bad bytes came from
    with pytest.raises(MediaError) as exc:
        await service.upload(profiles[0], bytes_base64=base64.b64encode(b"nope nope").decode())
    assert exc.value.rule == "bytesBase64"
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert (await service.list(profiles[0]))[0] == []


async def test_url_upload_goes_through_the_guard(service: MediaService, profiles: tuple[str, str]) -> None:
    # The service never relaxes the guard: a name resolving to loopback is refused.
    for url in ("http://cdn.example/a.png", "http://127.0.0.1/a.png", "http://169.254.169.254/latest/"):
        with pytest.raises(MediaError) as exc:
            await service.upload(profiles[0], url=url)
        assert exc.value.rule == URL_FORBIDDEN


async def test_list_pages_newest_first(service: MediaService, roots: Path, profiles: tuple[str, str]) -> None:
    ids = []
    for i in range(5):
        (roots / f"{i}.png").write_bytes(make_image("png", 10 + i, 10))
        ids.append((await service.upload(profiles[0], path=str(roots / f"{i}.png"))).id)
    (roots / "x.png").write_bytes(make_image("png", 99, 99))
    await service.upload(profiles[1], path=str(roots / "x.png"))
    page1, cursor = await service.list(profiles[0], limit=2)
    page2, cursor2 = await service.list(profiles[0], cursor=cursor, limit=2)
    page3, cursor3 = await service.list(profiles[0], cursor=cursor2, limit=2)
    assert [m.id for m in page1 + page2 + page3] == list(reversed(ids))
    assert cursor3 is None
    everything, end = await service.list(profiles[0])
    assert len(everything) == 5 and end is None
    with pytest.raises(ValidationFailedError):
        await service.list(profiles[0], limit=0)
    with pytest.raises(ValidationFailedError):
        await service.list(profiles[0], cursor="garbage")


async def test_delete_is_soft_and_removes_the_file_with_the_last_live_record(
    service: MediaService, store: MediaStore, db: Database, roots: Path, profiles: tuple[str, str]
) -> None:
    mine, theirs = profiles
    (roots / "p.png").write_bytes(make_image("png", 50, 50))
    a = await service.upload(mine, path=str(roots / "p.png"))
    b = await service.upload(theirs, path=str(roots / "p.png"))
    path = store.path_for(a.sha256)

    with pytest.raises(NotFoundError):
        await service.delete(theirs, a.id)  # not theirs to delete
    await service.delete(mine, a.id)
    assert await service.get(mine, a.id) is None
    assert path.exists()  # the other profile's record still uses it
    with pytest.raises(NotFoundError):
        await service.delete(mine, a.id)  # already gone

    await service.delete(theirs, b.id)
    assert not path.exists()
    async with db.session() as s:
        row = await s.get(Media, a.id)
    assert row is not None and row.deleted_at is not None  # soft: the record is kept

    again = await service.upload(mine, path=str(roots / "p.png"))  # re-upload after delete: a new record
    assert again.id not in (a.id, b.id) and path.exists()


async def test_delete_racing_an_upload_of_the_same_content_keeps_the_file(
    service: MediaService, store: MediaStore, roots: Path, profiles: tuple[str, str]
) -> None:
    (roots / "p.png").write_bytes(make_image("png", 60, 60))
    first = await service.upload(profiles[0], path=str(roots / "p.png"))
    # Simulate the window: the upload's file is placed (pending) before its record exists.
    pending = await store.ingest_path(str(roots / "p.png"))
    await service.delete(profiles[0], first.id)
    assert pending.path.exists()
    store.release(pending.sha256)


async def test_progress_reaches_the_caller(service: MediaService, roots: Path, profiles: tuple[str, str]) -> None:
    (roots / "p.bmp").write_bytes(make_image("bmp", 64, 64))
    seen: list[tuple[int, int | None]] = []

    async def progress(done: int, total: int | None) -> None:
        seen.append((done, total))

    media = await service.upload(profiles[0], path=str(roots / "p.bmp"), progress=progress)
    assert seen[-1] == (media.size, media.size)

