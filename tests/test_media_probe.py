"""Media facts are sniffed from real (generated) bytes; every failure is a MediaError."""

import contextlib
import hashlib
import io
import random
import struct
import warnings
import zlib

import pytest
from mediagen import (
    b64,
    box,
    ftyp_box,
    full_box,
    hdlr_box,
    make_heif,
    make_image,
    make_video,
    make_webm,
    ebml,
    mvhd_box,
    tkhd_box,
)
from omnipost.errors import MediaError
from omnipost.media.probe import UNRECOGNISED, MediaFacts, decode_base64, probe_bytes
from PIL import Image, features

IMAGE_MIMES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}


def _png_header(width: int, height: int) -> bytes:
    """A PNG with only IHDR and IEND: it declares a size but carries no pixel data."""

    def chunk(ctype: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _media_error(data: bytes) -> MediaError:
    with pytest.raises(MediaError) as caught:
        probe_bytes(data)
    return caught.value


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(IMAGE_MIMES))
def test_each_image_format_reports_mime_and_dimensions(fmt: str) -> None:
    data = make_image(fmt, 120, 80)
    facts = probe_bytes(data)
    assert facts == MediaFacts(
        kind="image",
        mime=IMAGE_MIMES[fmt],
        size=len(data),
        width=120,
        height=80,
        duration=None,
        frames=1,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_animated_gif_is_kind_gif_with_its_frame_count() -> None:
    facts = probe_bytes(make_image("gif", 64, 48, frames=5))
    assert (facts.kind, facts.mime, facts.width, facts.height, facts.frames) == ("gif", "image/gif", 64, 48, 5)


def test_still_gif_is_kind_image() -> None:
    facts = probe_bytes(make_image("gif", 64, 48))
    assert (facts.kind, facts.mime, facts.frames) == ("image", "image/gif", 1)


@pytest.mark.parametrize(("fmt", "mime"), [("png", "image/png"), ("webp", "image/webp"), ("tiff", "image/tiff")])
def test_animated_png_webp_and_multipage_tiff_stay_kind_image_with_frames(fmt: str, mime: str) -> None:
    facts = probe_bytes(make_image(fmt, 40, 30, frames=3))
    assert (facts.kind, facts.mime, facts.width, facts.height, facts.frames) == ("image", mime, 40, 30, 3)


@pytest.mark.parametrize(
    ("orientation", "expected"), [(1, (400, 300)), (3, (400, 300)), (6, (300, 400)), (8, (300, 400))]
)
def test_jpeg_exif_orientation_gives_displayed_dimensions(orientation: int, expected: tuple[int, int]) -> None:
    facts = probe_bytes(make_image("jpeg", 400, 300, exif_orientation=orientation))
    assert (facts.width, facts.height) == expected


@pytest.mark.parametrize("fmt", sorted(IMAGE_MIMES))
@pytest.mark.parametrize("size", [6_000_000, 25_000_000])
def test_padded_image_is_exactly_the_requested_size_and_still_probes(fmt: str, size: int) -> None:
    data = make_image(fmt, 120, 80, size=size)
    assert len(data) == size
    facts = probe_bytes(data)
    assert (facts.size, facts.mime, facts.width, facts.height) == (size, IMAGE_MIMES[fmt], 120, 80)


@pytest.mark.parametrize("fmt", sorted(IMAGE_MIMES))
@pytest.mark.parametrize("extra", [1, 7, 12, 13, 4097])
def test_small_odd_paddings_stay_valid_and_fully_decodable(fmt: str, extra: int) -> None:
    natural = len(make_image(fmt, 30, 20))
    data = make_image(fmt, 30, 20, size=natural + extra)
    assert len(data) == natural + extra
    assert (probe_bytes(data).width, probe_bytes(data).height) == (30, 20)
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # the padding must not stop a real decoder either
        assert img.size == (30, 20)


def test_padded_animated_gif_keeps_its_frames() -> None:
    facts = probe_bytes(make_image("gif", 50, 50, frames=4, size=6_000_000))
    assert (facts.kind, facts.frames, facts.size) == ("gif", 4, 6_000_000)


def test_make_image_refuses_a_size_below_the_encoded_file() -> None:
    with pytest.raises(ValueError):
        make_image("bmp", 100, 100, size=100)


# --- decompression bombs --------------------------------------------------------------------


def test_png_claiming_100000_by_100000_is_rejected_without_decoding() -> None:
    data = _png_header(100_000, 100_000)
    error = _media_error(data)  # the header has no pixel data: a MediaError proves no decode was needed
    assert error.rule == "bytesBase64"


def test_image_over_pillows_warning_threshold_is_a_media_error_and_no_warning_leaks() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        error = _media_error(_png_header(10_000, 10_000))
    assert error.rule == "bytesBase64"
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]


def test_large_image_under_the_limit_is_probed_from_its_header_alone() -> None:
    # 81 M pixels of 24-bit colour would be ~243 MB decoded; the file has no pixel data at all.
    facts = probe_bytes(_png_header(9000, 9000))
    assert (facts.mime, facts.width, facts.height) == ("image/png", 9000, 9000)


# --- video ----------------------------------------------------------------------------------


def test_mp4_reports_mime_dimensions_and_duration() -> None:
    data = make_video("isom", 1280, 720, 10.0)
    facts = probe_bytes(data)
    assert facts == MediaFacts(
        kind="video",
        mime="video/mp4",
        size=len(data),
        width=1280,
        height=720,
        duration=10.0,
        frames=None,
        sha256=hashlib.sha256(data).hexdigest(),
    )


@pytest.mark.parametrize("brand", ["isom", "iso2", "mp41", "mp42", "avc1", "M4V ", "dash"])
def test_non_quicktime_brands_are_video_mp4(brand: str) -> None:
    assert probe_bytes(make_video(brand)).mime == "video/mp4"


def test_mov_with_qt_brand_is_video_quicktime() -> None:
    facts = probe_bytes(make_video("qt  ", 1920, 1080, 3.5))
    assert (facts.kind, facts.mime, facts.width, facts.height, facts.duration) == (
        "video",
        "video/quicktime",
        1920,
        1080,
        3.5,
    )


@pytest.mark.parametrize("version", [0, 1])
def test_mvhd_and_tkhd_versions_0_and_1_give_the_same_facts(version: int) -> None:
    facts = probe_bytes(make_video("mp42", 640, 360, 12.345, version=version))
    assert (facts.width, facts.height, facts.duration) == (640, 360, 12.345)


def test_moov_after_mdat_is_found_by_walking_box_sizes() -> None:
    data = make_video("isom", 720, 1280, 59.9, size=3_000_000, moov_first=False)
    facts = probe_bytes(data)
    assert (facts.size, facts.width, facts.height, facts.duration) == (3_000_000, 720, 1280, 59.9)


def test_make_video_pads_to_the_exact_size() -> None:
    assert len(make_video(size=6_000_000)) == 6_000_000
    assert len(make_video(size=6_000_000, large_mdat=True)) == 6_000_000


def test_mdat_with_64_bit_largesize_is_walked() -> None:
    facts = probe_bytes(make_video(size=100_000, large_mdat=True, moov_first=False))
    assert (facts.width, facts.height, facts.duration) == (1280, 720, 10.0)


def test_box_of_size_zero_runs_to_the_end_of_the_file() -> None:
    data = make_video()
    trailing_mdat = struct.pack(">I4s", 0, b"mdat") + bytes(5000)
    assert probe_bytes(data + trailing_mdat).duration == 10.0


def test_rotated_video_reports_displayed_dimensions() -> None:
    upright = probe_bytes(make_video(width=1920, height=1080, rotation=180))
    portrait = probe_bytes(make_video(width=1920, height=1080, rotation=90))
    assert (upright.width, upright.height) == (1920, 1080)
    assert (portrait.width, portrait.height) == (1080, 1920)


def test_video_track_is_preferred_over_an_earlier_sized_text_track() -> None:
    subtitles = box(b"trak", tkhd_box(1280, 100) + box(b"mdia", hdlr_box("text")))
    video = box(b"trak", tkhd_box(1080, 1350) + box(b"mdia", hdlr_box("vide")))
    data = ftyp_box("isom") + box(b"moov", mvhd_box(1000, 5000) + subtitles + video)
    assert (probe_bytes(data).width, probe_bytes(data).height) == (1080, 1350)


def test_first_sized_track_is_used_when_no_handler_is_recorded() -> None:
    tracks = box(b"trak", tkhd_box(0, 0)) + box(b"trak", tkhd_box(800, 600)) + box(b"trak", tkhd_box(320, 240))
    facts = probe_bytes(ftyp_box("mp42") + box(b"moov", mvhd_box(90000, 90000 * 4) + tracks))
    assert (facts.width, facts.height, facts.duration) == (800, 600, 4.0)


def test_unknown_movie_duration_is_none() -> None:
    trak = box(b"trak", tkhd_box(640, 480))
    facts = probe_bytes(ftyp_box("isom") + box(b"moov", mvhd_box(1000, 0xFFFFFFFF) + trak))
    assert facts.duration is None


def test_fragmented_mp4_duration_comes_from_mehd() -> None:
    mvex = box(b"mvex", full_box(b"mehd", 1, 0, struct.pack(">Q", 42_000)))
    moov = box(b"moov", mvhd_box(1000, 0) + box(b"trak", tkhd_box(640, 480)) + mvex)
    assert probe_bytes(ftyp_box("iso6") + moov + box(b"moof") + box(b"mdat", bytes(16))).duration == 42.0


def test_legacy_quicktime_without_ftyp_is_video_quicktime() -> None:
    moov = box(b"moov", mvhd_box(600, 1800) + box(b"trak", tkhd_box(320, 240)))
    facts = probe_bytes(box(b"wide") + box(b"mdat", bytes(64)) + moov)
    assert (facts.mime, facts.width, facts.height, facts.duration) == ("video/quicktime", 320, 240, 3.0)


def test_audio_only_mp4_is_a_media_error() -> None:
    error = _media_error(make_video("M4A ", width=0, height=0))
    assert "no video track" in error.message


def test_mp4_without_moov_is_a_media_error() -> None:
    error = _media_error(ftyp_box("isom") + box(b"mdat", bytes(100)))
    assert "moov" in error.message


def test_truncated_moov_box_is_a_media_error() -> None:
    data = make_video()
    error = _media_error(data[: len(data) - 30])  # cuts into moov (mdat is only a header here)
    assert "truncated or malformed" in error.message


def test_mdat_declaring_more_bytes_than_present_is_a_media_error() -> None:
    data = make_video(size=10_000, moov_first=False)
    error = _media_error(data[:5_000])
    assert "'mdat' box declares" in error.message


@pytest.mark.parametrize("declared", [1, 4, 7])
def test_box_smaller_than_its_own_header_is_a_media_error(declared: int) -> None:
    data = ftyp_box("isom") + struct.pack(">I4s", declared, b"moov") + bytes(200)
    assert "impossible size" in _media_error(data).message


def test_tkhd_too_short_for_its_fields_is_a_media_error() -> None:
    short_tkhd = full_box(b"tkhd", 0, 3, bytes(40))
    data = ftyp_box("isom") + box(b"moov", mvhd_box(1000, 1000) + box(b"trak", short_tkhd))
    assert "'tkhd' box is too short" in _media_error(data).message


def test_mvhd_with_zero_timescale_is_a_media_error() -> None:
    data = ftyp_box("isom") + box(b"moov", mvhd_box(0, 1000) + box(b"trak", tkhd_box(640, 480)))
    assert "timescale" in _media_error(data).message


def test_mvhd_with_unsupported_version_is_a_media_error() -> None:
    mvhd = full_box(b"mvhd", 2, 0, bytes(120))
    data = ftyp_box("isom") + box(b"moov", mvhd + box(b"trak", tkhd_box(640, 480)))
    assert "unsupported version 2" in _media_error(data).message



# --- WebM / Matroska (EBML) -----------------------------------------------------------------


def test_webm_reports_mime_dimensions_and_duration() -> None:
    data = make_webm(1280, 720, 12.5)
    assert probe_bytes(data) == MediaFacts(
        kind="video", mime="video/webm", size=len(data), width=1280, height=720, duration=12.5, frames=None,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_matroska_doc_type_is_video_x_matroska() -> None:
    facts = probe_bytes(make_webm(640, 360, doc_type="matroska", codec="V_MPEG4/ISO/AVC"))
    assert (facts.kind, facts.mime, facts.width, facts.height) == ("video", "video/x-matroska", 640, 360)


def test_live_recording_without_sizes_or_duration_is_probed() -> None:
    # A browser's MediaRecorder writes Segment and Cluster with unknown sizes and no Duration.
    facts = probe_bytes(make_webm(480, 640, live=True, audio=True, codec="V_VP8"))
    assert (facts.mime, facts.width, facts.height, facts.duration) == ("video/webm", 480, 640, None)


def test_tracks_after_the_media_are_found_through_the_seek_head() -> None:
    facts = probe_bytes(make_webm(320, 240, 3.0, tracks_last=True, size=50_000))
    assert (facts.width, facts.height, facts.duration, facts.size) == (320, 240, 3.0, 50_000)


def test_anamorphic_webm_reports_the_displayed_width() -> None:
    facts = probe_bytes(make_webm(1440, 1080, display=(1920, 1080)))
    assert (facts.width, facts.height) == (1920, 1080)


@pytest.mark.parametrize(("roll", "expected"), [(90.0, (360, 640)), (-90.0, (360, 640)), (180.0, (640, 360))])
def test_projection_roll_gives_displayed_dimensions(roll: float, expected: tuple[int, int]) -> None:
    facts = probe_bytes(make_webm(640, 360, roll=roll))
    assert (facts.width, facts.height) == expected


def test_make_webm_pads_to_the_exact_size_and_ffmpeg_reads_the_same_header() -> None:
    import av

    data = make_webm(800, 600, 7.0, size=200_000)
    assert len(data) == 200_000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width, stream.codec_context.height) == ("vp9", 800, 600)
        assert container.duration == 7_000_000
    assert (probe_bytes(data).width, probe_bytes(data).duration) == (800, 7.0)


def test_audio_only_webm_is_a_media_error() -> None:
    error = _media_error(make_webm(video=False, audio=True))
    assert (error.code, error.rule) == ("validation_failed", "bytesBase64")
    assert "no video track" in error.message


def test_webm_video_track_without_codec_is_a_media_error() -> None:
    assert "malformed" in _media_error(make_webm(codec="")).message


def test_ebml_document_that_is_not_a_video_is_refused() -> None:
    header = ebml("EBML", ebml("DocType", "notmatroska"))
    assert _media_error(header + ebml("Segment", b"")).rule == "bytesBase64"


@pytest.mark.parametrize("cut", [4, 20, 60, 120])
def test_truncated_webm_is_a_media_error(cut: int) -> None:
    data = make_webm()
    assert "truncated or malformed" in _media_error(data[:cut]).message


def test_webm_walk_is_bounded_on_hostile_input() -> None:
    # 200,000 empty Void elements before anything useful: refused after a bounded number of reads.
    header = ebml("EBML", ebml("DocType", "webm"))
    voids = ebml("Void") * 200_000
    assert "malformed" in _media_error(header + ebml("Segment", voids)).message

# --- HEIF -----------------------------------------------------------------------------------


def test_heic_reports_the_primary_items_size_not_the_thumbnails() -> None:
    facts = probe_bytes(make_heif(4032, 3024, thumbnail=(320, 240)))
    assert (facts.kind, facts.mime, facts.width, facts.height, facts.frames) == ("image", "image/heic", 4032, 3024, 1)


def test_heic_rotation_property_gives_displayed_dimensions() -> None:
    facts = probe_bytes(make_heif(4032, 3024, rotation=90))
    assert (facts.width, facts.height) == (3024, 4032)


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif_written_by_a_real_encoder_is_image_avif() -> None:
    out = io.BytesIO()
    Image.new("RGB", (123, 45), (10, 200, 30)).save(out, "AVIF")
    facts = probe_bytes(out.getvalue())
    assert (facts.kind, facts.mime, facts.width, facts.height) == ("image", "image/avif", 123, 45)


# --- not media ------------------------------------------------------------------------------


def test_empty_bytes_are_a_media_error() -> None:
    error = _media_error(b"")
    assert error.message == "media bytes are empty"
    assert (error.code, error.rule) == ("validation_failed", "bytesBase64")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_a_media_error(seed: int) -> None:
    noise = random.Random(seed).randbytes(4096)
    assert _media_error(noise).message == UNRECOGNISED


@pytest.mark.parametrize(
    "data",
    [b"hello, world", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", b'<svg xmlns="http://www.w3.org/2000/svg"/>', b"\x00" * 64],
)
def test_other_file_types_are_not_recognised(data: bytes) -> None:
    assert _media_error(data).message == UNRECOGNISED


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "PCX"])
def test_formats_pillow_reads_but_platforms_reject_are_not_recognised(fmt: str) -> None:
    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, fmt)
    assert _media_error(out.getvalue()).message == UNRECOGNISED


def test_corrupt_header_names_the_format_it_claims() -> None:
    data = make_image("png")
    broken = data[:16] + b"\xff" * 8 + data[24:]  # IHDR width/height garbage, CRC now wrong
    assert "start like a PNG" in _media_error(broken).message


def test_damaged_media_never_raises_anything_but_media_error() -> None:
    rng = random.Random(1234)
    samples = [make_image(fmt, 40, 30) for fmt in IMAGE_MIMES]
    samples += [make_image("gif", frames=3), make_image("jpeg", exif_orientation=6)]
    samples += [make_video(), make_video("qt  ", moov_first=False, version=1), make_heif(rotation=90)]
    samples += [make_webm(audio=True, display=(853, 360), roll=90.0), make_webm(live=True), make_webm(tracks_last=True)]
    for sample in samples:
        variants = [sample[:cut] for cut in range(0, len(sample), max(1, len(sample) // 200))]
        for _ in range(200):
            mutated = bytearray(sample)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            variants.append(bytes(mutated))
        for variant in variants:
            with contextlib.suppress(MediaError):  # anything else escaping fails the test
                probe_bytes(variant)


# --- base64 ---------------------------------------------------------------------------------


def test_decode_base64_round_trips_b64() -> None:
    data = make_image("jpeg")
    assert decode_base64(b64(data)) == data


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", "DATA:video/mp4;BASE64,", "data:;base64,"])
def test_decode_base64_accepts_data_urls(prefix: str) -> None:
    data = make_image("png")
    assert decode_base64(prefix + b64(data)) == data


def test_decode_base64_ignores_line_breaks_and_surrounding_whitespace() -> None:
    data = make_image("gif")
    text = b64(data)
    wrapped = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert decode_base64(f"  \n{wrapped}\n\t ") == data
    assert decode_base64(" ".join(text)) == data


@pytest.mark.parametrize("value", ["QU*D", "QUJD!", "QU JD\u00e9AAA", "QU\x00D"])
def test_decode_base64_rejects_invalid_characters(value: str) -> None:
    with pytest.raises(MediaError) as caught:
        decode_base64(value)
    assert caught.value.rule == "bytesBase64"


def test_decode_base64_points_out_url_safe_alphabet() -> None:
    with pytest.raises(MediaError, match="URL-safe"):
        decode_base64("QU-D")


@pytest.mark.parametrize("value", ["QUJ", "QQ=", "QQ===", "QU=D", "=QUJ", "QQ==QQ==", "Q==="])
def test_decode_base64_rejects_bad_padding(value: str) -> None:
    with pytest.raises(MediaError):
        decode_base64(value)


@pytest.mark.parametrize("value", ["", "   \n", "data:image/png;base64,"])
def test_decode_base64_rejects_empty_input(value: str) -> None:
    with pytest.raises(MediaError, match="empty"):
        decode_base64(value)


def test_decode_base64_rejects_a_data_url_that_is_not_base64() -> None:
    with pytest.raises(MediaError, match="not base64-encoded"):
        decode_base64("data:text/plain,hello")
