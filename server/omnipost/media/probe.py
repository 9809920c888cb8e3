"""Facts about media bytes (kind, MIME type, dimensions, duration), sniffed from the content alone.

A file name or a declared MIME type is never consulted: images are identified by Pillow from
their header (pixels are never decoded), MP4/MOV/HEIF by walking their ISO-BMFF boxes here, and
WebM/Matroska by walking their EBML elements here (`read_matroska`, from a seekable file, so a
multi-gigabyte recording is probed from its first kilobytes). Every failure, whatever its cause,
leaves as a `MediaError`.
"""

import binascii
import functools
import hashlib
import io
import math
import re
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, NamedTuple

from omnipost.errors import MediaError

if TYPE_CHECKING:
    from PIL import Image as PILImage

MediaKind = Literal["image", "gif", "video"]

# The request field the bytes arrive in; callers that know the full JSON path may refine it.
RULE = "bytesBase64"

UNRECOGNISED = "bytes are not a recognised image or video (JPEG, PNG, WebP, GIF, MP4, MOV, WebM)"
_SEND_SUPPORTED = "Send a JPEG, PNG, WebP, GIF, BMP or TIFF image, or an MP4, MOV or WebM video."
_SEND_WHOLE = "Re-export the file and send all of its bytes; it appears truncated or corrupt."


@dataclass(frozen=True)
class MediaFacts:
    """What the bytes are, as measured; width/height are as displayed (EXIF/track rotation applied)."""

    kind: MediaKind  # "gif" only for an animated GIF (more than one frame); a still GIF is "image"
    mime: str  # sniffed, e.g. image/jpeg, image/png, image/heic, video/mp4, video/quicktime, video/webm
    size: int  # bytes
    width: int | None
    height: int | None
    duration: float | None  # seconds; videos only, None when the file does not record it
    frames: int | None  # images: frame/page count (1 = still); None for videos and image sequences
    sha256: str  # hex digest of the bytes


class _Parsed(NamedTuple):
    """Format-specific facts, before the size and digest that every format shares."""

    kind: MediaKind
    mime: str
    width: int | None
    height: int | None
    duration: float | None
    frames: int | None


def probe_bytes(data: bytes) -> MediaFacts:
    """Identify `data` and measure it; raise MediaError if it is not a supported image or video."""
    if not data:
        raise MediaError("media bytes are empty", rule=RULE, remediation=_SEND_SUPPORTED)
    if _looks_like_bmff(data):
        parsed = _probe_bmff(data)
    elif looks_like_ebml(data):
        parsed = read_matroska(io.BytesIO(data), len(data))
    else:
        parsed = _probe_image(data)
    # Hashed only once the bytes are known to be media: no point digesting a gigabyte of garbage.
    return MediaFacts(
        kind=parsed.kind,
        mime=parsed.mime,
        size=len(data),
        width=parsed.width,
        height=parsed.height,
        duration=parsed.duration,
        frames=parsed.frames,
        sha256=hashlib.sha256(data).hexdigest(),
    )


# --- base64 -------------------------------------------------------------------------------

_DATA_URL = re.compile(r"data:([^,]*),", re.IGNORECASE)
_BASE64_WHITESPACE = b" \t\n\r\v\f"
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_BASE64_REMEDIATION = (
    "Encode the file's bytes as standard base64 (A-Z a-z 0-9 + /, '=' padding), "
    "optionally as a data:<mime>;base64, URL."
)


def decode_base64(value: str) -> bytes:
    """Decode strict standard base64, optionally a `data:<mime>;base64,` URL; whitespace is ignored."""
    text = value.strip()
    match = _DATA_URL.match(text)
    if match is not None:
        # Only the encoding parameter matters; the declared MIME type is never trusted.
        if not match.group(1).lower().endswith(";base64"):
            raise _base64_error("bytesBase64 is a data: URL that is not base64-encoded (no ';base64')")
        text = text[match.end() :]
    if not text.isascii():
        raise _base64_error("bytesBase64 contains non-ASCII characters, so it is not base64")
    # Line-wrapped base64 (MIME, PEM, `base64` CLI) is common and harmless; any other junk is not.
    raw = text.encode("ascii").translate(None, _BASE64_WHITESPACE)
    if not raw:
        raise _base64_error("bytesBase64 is empty")
    problem = ""
    if len(raw) % 4 == 0:
        try:
            # strict_mode rejects stray characters, padding in the middle or at the start, and
            # data after padding; it runs in C, so a 30 MB payload is checked in tens of ms.
            return binascii.a2b_base64(raw, strict_mode=True)
        except binascii.Error as exc:
            problem = str(exc).rstrip(". ").lower()
    # Only failures reach here, so the slower scan for a precise message costs valid input nothing.
    found = _NOT_BASE64.search(raw)
    if found is not None:
        bad = found.group().decode("ascii")
        hint = " (URL-safe base64? use '+' and '/' instead of '-' and '_')" if bad in "-_" else ""
        raise _base64_error(f"bytesBase64 contains {bad!r}, which is not a base64 character{hint}")
    if len(raw) % 4:
        raise _base64_error(
            f"bytesBase64 has {len(raw)} characters, not a multiple of 4 (missing or extra '=' padding)"
        )
    raise _base64_error(f"bytesBase64 is not valid base64: {problem}")


def _base64_error(message: str) -> MediaError:
    return MediaError(message, rule=RULE, remediation=_BASE64_REMEDIATION)


# --- images (Pillow) ----------------------------------------------------------------------

# Restricting Pillow to these plugins keeps exotic formats (PSD, ICO, PCX, ...) from being
# "recognised" as media no platform accepts. JPEG files with an MPO extension open as "MPO".
_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_PILLOW_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
# Signatures used only to word an error better when Pillow refuses a file that claims a format.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 are transposed: the displayed width is the stored height.
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


@functools.cache
def pillow() -> ModuleType:
    """PIL.Image with exactly the formats we accept registered; imported on first use, not at start-up.

    The *ImagePlugin imports only register those formats. Registering exactly the ones we accept
    means Image.open never falls back to init(), which would import all ~40 Pillow plugins.
    """
    from PIL import (  # noqa: F401
        BmpImagePlugin,
        GifImagePlugin,
        Image,
        JpegImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )

    return Image


def _probe_image(data: bytes) -> _Parsed:
    """Read format, size and frame count from an image header without decoding pixels."""
    return read_image(io.BytesIO(data), data)


def read_image(source: Any, head: bytes) -> _Parsed:
    """Format, size and frame count of the image in `source` (a path or binary file), pixels not decoded.

    `head` is the start of the data, quoted when the image is refused.
    """
    image = pillow()
    try:
        # Pillow warns about damaged metadata and oversized images; here the outcome is a fact or
        # a MediaError, so the warnings are only log noise (the pixel limit is enforced by our own
        # check below). catch_warnings is process-wide and racy across threads before Python
        # 3.14, so nothing may depend on it being in force, and nothing does.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with image.open(source, formats=_PILLOW_FORMATS) as img:
                fmt = img.format or ""
                width, height = img.size
                _check_pixels(width, height)
                # An MPO is a JPEG carrying extra views (stereo, depth); it is still one photo.
                frames = 1 if fmt in ("JPEG", "MPO") else int(getattr(img, "n_frames", 1))
                if _orientation(img, fmt) in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
    except MediaError:
        raise
    except image.DecompressionBombError as exc:
        # Pillow refuses before exposing the size; its message carries the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many_pixels(None, None, int(found.group(1)) if found else None) from None
    except Exception:
        # Unidentified images and damaged headers (OSError, SyntaxError, ValueError, EOFError,
        # struct.error, ... depending on the plugin) all mean the same thing to the caller.
        raise _not_media(head) from None
    if fmt not in _PILLOW_MIME or width <= 0 or height <= 0:
        raise _not_media(head)
    kind: MediaKind = "gif" if fmt == "GIF" and frames > 1 else "image"
    return _Parsed(kind, _PILLOW_MIME[fmt], width, height, None, frames)


def _orientation(img: "PILImage.Image", fmt: str) -> int:
    """The EXIF orientation tag, 1 (upright) when absent or unreadable."""
    # PNG's getexif() decodes the whole image to find a late eXIf chunk, so only formats whose
    # EXIF is parsed with the header are asked; platforms honour JPEG orientation in practice.
    if fmt not in ("JPEG", "MPO", "WEBP", "TIFF") or (fmt != "TIFF" and "exif" not in img.info):
        return 1
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:
        # Corrupt EXIF is common and harmless to platforms; it must not reject a good image.
        return 1
    return value if isinstance(value, int) else 1


def _check_pixels(width: int, height: int) -> None:
    """Reject images larger than Pillow's decompression-bomb limit, read at call time."""
    limit = pillow().MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise _too_many_pixels(width, height)


def _too_many_pixels(width: int | None, height: int | None, pixels: int | None = None) -> MediaError:
    limit = pillow().MAX_IMAGE_PIXELS or 0
    if width is not None and height is not None:
        claimed = f"{width}×{height} pixels"
    else:
        claimed = f"{pixels:,} pixels" if pixels is not None else "its declared size"
    return MediaError(
        f"image is too large to process safely: {claimed} exceeds the {limit:,}-pixel limit",
        rule=RULE,
        remediation=f"Downscale the image to at most {limit:,} pixels (e.g. 8192×8192) and send it again.",
    )


def _not_media(data: bytes) -> MediaError:
    """The error for bytes no supported parser accepts, naming the format they claim to be."""
    claimed = _claimed_format(data)
    if claimed is None:
        return MediaError(UNRECOGNISED, rule=RULE, remediation=_SEND_SUPPORTED)
    return MediaError(
        f"bytes start like a {claimed} file but its header is corrupt or truncated",
        rule=RULE,
        remediation=_SEND_WHOLE,
    )


def _claimed_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


# --- ISO base media file format (MP4, MOV, HEIF) ------------------------------------------

# QuickTime files written before ftyp existed start straight with one of these atoms.
_LEGACY_QT_FIRST = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_QUICKTIME = b"qt  "
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# A major brand from this set makes the file a HEIF still image rather than a movie.
_HEIF_BRANDS = _HEIC_BRANDS | _AVIF_BRANDS | {b"mif1", b"mif2", b"msf1"}
# Image-sequence brands: animated, but the frame count lives in sample tables we do not read.
_SEQUENCE_BRANDS = frozenset({b"msf1", b"hevc", b"hevx", b"hevs", b"avis"})
_UNKNOWN_32 = 0xFFFFFFFF
_UNKNOWN_64 = 0xFFFFFFFFFFFFFFFF


class _Box(NamedTuple):
    """One box: its four-character type and the [start, end) of its payload in the data."""

    type: bytes
    start: int
    end: int


def _looks_like_bmff(data: bytes) -> bool:
    return len(data) >= 8 and (data[4:8] == b"ftyp" or data[4:8] in _LEGACY_QT_FIRST)


def _probe_bmff(data: bytes) -> _Parsed:
    """Read brand, duration and picture size from the box tree; mdat payloads are never touched."""
    ftyp = moov = meta = None
    for box in _children(data, 0, len(data)):
        if box.type == b"ftyp" and ftyp is None:
            ftyp = box
        elif box.type == b"moov" and moov is None:
            moov = box
        elif box.type == b"meta" and meta is None:
            meta = box
    if ftyp is None:
        major, brands = _QUICKTIME, frozenset({_QUICKTIME})
    else:
        major, brands = _brands(data, ftyp)
    if major in _HEIF_BRANDS:
        return _probe_heif(data, meta, major, brands)
    if moov is None:
        raise _malformed("there is no 'moov' box (movie header), so the file is incomplete")
    duration, width, height = _movie_facts(data, moov)
    mime = "video/quicktime" if major == _QUICKTIME else "video/mp4"
    return _Parsed("video", mime, width, height, duration, None)


def _children(data: bytes, start: int, end: int) -> Iterator[_Box]:
    """The boxes laid end to end in data[start:end], each checked to fit inside it."""
    pos = start
    while pos < end:
        remaining = end - pos
        if remaining < 8:
            # QuickTime may end an atom list with a 32-bit zero; tolerate zero padding only.
            if not any(data[pos:end]):
                return
            raise _malformed(f"{remaining} stray byte(s) where a box header should be")
        size, btype = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:  # the real size is a 64-bit "largesize" after the type
            if remaining < 16:
                raise _malformed(f"the '{_name(btype)}' box header is truncated")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # size 0 means the box runs to the end of its container
            size = remaining
        if size < header:
            raise _malformed(f"the '{_name(btype)}' box declares an impossible size of {size} bytes")
        if size > remaining:
            raise _malformed(
                f"the '{_name(btype)}' box declares {size:,} bytes but only {remaining:,} remain"
            )
        yield _Box(btype, pos + header, pos + size)
        pos += size


def _brands(data: bytes, ftyp: _Box) -> tuple[bytes, frozenset[bytes]]:
    """The major brand and the set of all brands (major and compatible) of an ftyp box."""
    (major,) = _unpack(">4s", data, ftyp.start, ftyp)
    compatible = {data[i : i + 4] for i in range(ftyp.start + 8, ftyp.end - 3, 4)}
    return major, frozenset(compatible | {major})


def _movie_facts(data: bytes, moov: _Box) -> tuple[float | None, int, int]:
    """Duration in seconds and displayed width/height of the first video track of a moov box."""
    mvhd: _Box | None = None
    fragment_duration: int | None = None
    tracks: list[tuple[bytes | None, int, int]] = []
    for box in _children(data, moov.start, moov.end):
        if box.type == b"mvhd" and mvhd is None:
            mvhd = box
        elif box.type == b"trak":
            track = _track(data, box)
            if track is not None:
                tracks.append(track)
        elif box.type == b"mvex":
            fragment_duration = _fragment_duration(data, box)
    if mvhd is None:
        raise _malformed("the 'moov' box has no 'mvhd' (movie header)")
    version = _version(data, mvhd)
    if version == 1:
        timescale, units = _unpack(">16xIQ", data, mvhd.start + 4, mvhd)
        unknown = units == _UNKNOWN_64
    else:
        timescale, units = _unpack(">8xII", data, mvhd.start + 4, mvhd)
        unknown = units == _UNKNOWN_32
    if timescale == 0:
        raise _malformed("the 'mvhd' box has a timescale of 0")
    if units == 0 and fragment_duration:
        # Fragmented MP4 leaves mvhd at 0 and records the total in mvex/mehd.
        units = fragment_duration
    duration = None if unknown or units == 0 else units / timescale
    # Prefer a track whose handler says video: subtitle tracks can carry a size too.
    visual = [t for t in tracks if t[1] and t[2]]
    chosen = next((t for t in visual if t[0] == b"vide"), visual[0] if visual else None)
    if chosen is None:
        raise MediaError(
            "the MP4/MOV file has no video track (audio only?)",
            rule=RULE,
            remediation="Send a file with a video track, or post the audio as a video with a still image.",
        )
    return duration, chosen[1], chosen[2]


def _track(data: bytes, trak: _Box) -> tuple[bytes | None, int, int] | None:
    """(handler type, displayed width, displayed height) of a trak box, None without a tkhd."""
    size: tuple[int, int] | None = None
    handler: bytes | None = None
    for box in _children(data, trak.start, trak.end):
        if box.type == b"tkhd" and size is None:
            size = _track_size(data, box)
        elif box.type == b"mdia":
            for inner in _children(data, box.start, box.end):
                if inner.type == b"hdlr":
                    (handler,) = _unpack(">4x4s", data, inner.start + 4, inner)
                    break
    return None if size is None else (handler, size[0], size[1])


def _track_size(data: bytes, tkhd: _Box) -> tuple[int, int]:
    """Width and height (16.16 fixed point) of a tkhd, swapped when its matrix turns by 90°."""
    version = _version(data, tkhd)
    # The fields before the matrix are 20 bytes in version 0 and 32 in version 1 (64-bit times).
    matrix_at = tkhd.start + 4 + (32 if version == 1 else 20) + 16
    a, b, c, d = _unpack(">ii4xii", data, matrix_at, tkhd)
    raw_width, raw_height = _unpack(">II", data, matrix_at + 36, tkhd)
    width, height = round(raw_width / 65536), round(raw_height / 65536)
    # Phones record portrait video as landscape frames plus a 90° rotation matrix; platforms
    # show (and judge aspect ratio on) the rotated picture.
    if a == 0 and d == 0 and b != 0 and c != 0:
        width, height = height, width
    return width, height


def _fragment_duration(data: bytes, mvex: _Box) -> int | None:
    for box in _children(data, mvex.start, mvex.end):
        if box.type == b"mehd":
            fmt = ">Q" if _version(data, box) == 1 else ">I"
            (units,) = _unpack(fmt, data, box.start + 4, box)
            return int(units)
    return None


def _probe_heif(data: bytes, meta: _Box | None, major: bytes, brands: frozenset[bytes]) -> _Parsed:
    """Size of the primary item of a HEIF/HEIC/AVIF image, from its ispe (and irot) properties."""
    if brands & _HEIC_BRANDS:
        mime = "image/heic"
    elif brands & _AVIF_BRANDS:
        mime = "image/avif"
    else:
        mime = "image/heif"
    if meta is None:
        raise _malformed("the HEIF image has no 'meta' box")
    _version(data, meta)
    primary: int | None = None
    properties: list[_Box] = []
    associations: dict[int, list[int]] = {}
    for box in _children(data, meta.start + 4, meta.end):
        if box.type == b"pitm":
            fmt = ">H" if _version(data, box) == 0 else ">I"
            (primary,) = _unpack(fmt, data, box.start + 4, box)
        elif box.type == b"iprp":
            for inner in _children(data, box.start, box.end):
                if inner.type == b"ipco":
                    properties = list(_children(data, inner.start, inner.end))
                elif inner.type == b"ipma":
                    _read_ipma(data, inner, associations)
    sizes = {i: p for i, p in enumerate(properties, start=1) if p.type == b"ispe"}
    linked = associations.get(primary, []) if primary is not None else []
    own = [sizes[i] for i in linked if i in sizes]
    if own:
        width, height = _unpack(">II", data, own[0].start + 4, own[0])
    elif sizes:
        # No usable association: the largest declared size is the main image, not a thumbnail.
        declared = [_unpack(">II", data, p.start + 4, p) for p in sizes.values()]
        width, height = max(declared, key=lambda s: s[0] * s[1])
    else:
        raise _malformed("the HEIF image declares no size ('ispe' property)")
    if width <= 0 or height <= 0:
        raise _malformed("the HEIF image declares a zero width or height")
    for i in linked:
        if 0 < i <= len(properties) and properties[i - 1].type == b"irot":
            (angle,) = _unpack(">B", data, properties[i - 1].start, properties[i - 1])
            if angle & 3 in (1, 3):  # quarter turns; odd ones swap width and height
                width, height = height, width
    _check_pixels(width, height)
    frames = None if major in _SEQUENCE_BRANDS else 1
    return _Parsed("image", mime, width, height, None, frames)


def _read_ipma(data: bytes, ipma: _Box, out: dict[int, list[int]]) -> None:
    """Add each item's 1-based property indices from an ipma box to `out`."""
    version = _version(data, ipma)
    (flags,) = _unpack(">I", data, ipma.start, ipma)
    wide_index = flags & 1  # 15-bit indices instead of 7-bit
    (count,) = _unpack(">I", data, ipma.start + 4, ipma)
    pos = ipma.start + 8
    for _ in range(count):
        (item,) = _unpack(">H" if version < 1 else ">I", data, pos, ipma)
        pos += 2 if version < 1 else 4
        (n,) = _unpack(">B", data, pos, ipma)
        pos += 1
        indices = out.setdefault(item, [])
        for _ in range(n):
            if wide_index:
                (value,) = _unpack(">H", data, pos, ipma)
                indices.append(value & 0x7FFF)
                pos += 2
            else:
                (value,) = _unpack(">B", data, pos, ipma)
                indices.append(value & 0x7F)
                pos += 1


def _version(data: bytes, box: _Box) -> int:
    """The version byte of a full box, which must be 0 or 1."""
    (version,) = _unpack(">B", data, box.start, box)
    if version > 1:
        raise _malformed(f"the '{_name(box.type)}' box has unsupported version {version}")
    return int(version)


def _unpack(fmt: str, data: bytes, offset: int, box: _Box) -> tuple[Any, ...]:
    """struct.unpack_from, but only within `box`, and a MediaError when the box is too short."""
    if offset + struct.calcsize(fmt) > box.end:
        raise _malformed(f"the '{_name(box.type)}' box is too short")
    return struct.unpack_from(fmt, data, offset)


def _name(btype: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "?" for b in btype)


def _malformed(reason: str) -> MediaError:
    return MediaError(f"the MP4/MOV/HEIF data is truncated or malformed: {reason}", rule=RULE, remediation=_SEND_WHOLE)


# --- Matroska / WebM (EBML) ---------------------------------------------------------------

# Element ids (with their length marker, as written) from the Matroska spec (RFC 9559).
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML = 0x1A45DFA3
_DOC_TYPE = 0x4282
_SEGMENT = 0x18538067
_SEEK_HEAD, _SEEK, _SEEK_ID, _SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
_INFO, _TIMESTAMP_SCALE, _DURATION = 0x1549A966, 0x2AD7B1, 0x4489
_TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _CODEC_ID, _VIDEO = 0x1654AE6B, 0xAE, 0x83, 0x86, 0xE0
_PIXEL_WIDTH, _PIXEL_HEIGHT = 0xB0, 0xBA
_DISPLAY_WIDTH, _DISPLAY_HEIGHT, _DISPLAY_UNIT = 0x54B0, 0x54BA, 0x54B2
_PROJECTION, _PROJECTION_POSE_ROLL = 0x7670, 0x7675
_CLUSTER = 0x1F43B675
_VIDEO_TRACK = 1  # TrackType: 1 video, 2 audio, 17 subtitle, ...
_MATROSKA_MIME = {"webm": "video/webm", "matroska": "video/x-matroska"}
_DEFAULT_TIMESTAMP_SCALE = 1_000_000  # nanoseconds per Duration unit
_MAX_STRING = 4096
# Elements read before a file is judged hostile: real files need a few dozen (headers stop at the first Cluster).
_EBML_BUDGET = 100_000


class _Element(NamedTuple):
    """One EBML element: its id and the [start, end) of its payload; `unknown`: its size was not written."""

    id: int
    start: int
    end: int
    unknown: bool = False


def looks_like_ebml(head: bytes) -> bool:
    """Whether the data starts with an EBML header (WebM, Matroska)."""
    return head[:4] == _EBML_MAGIC


class _Ebml:
    """Reads EBML element headers and small values from a seekable binary file; payloads are skipped by seeking."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.size = size
        self.budget = _EBML_BUDGET

    def read(self, at: int, n: int) -> bytes:
        self.f.seek(at)
        return self.f.read(n)

    def _vint(self, at: int, limit: int, *, is_id: bool) -> tuple[int, int, bool]:
        """(value, bytes used, all value bits set) of the variable-length integer at `at` (an id keeps its marker)."""
        first = self.read(at, 1) if at < limit else b""
        if not first:
            raise _ebml_malformed("an element header is truncated")
        length = 9 - first[0].bit_length()  # leading zero bits + 1
        if length > (4 if is_id else 8):
            raise _ebml_malformed("an element header has an invalid length marker")
        raw = first + (self.read(at + 1, length - 1) if length > 1 else b"")
        if len(raw) < length or at + length > limit:
            raise _ebml_malformed("an element header is truncated")
        value = int.from_bytes(raw, "big")
        if is_id:
            return value, length, False
        bits = (1 << (7 * length)) - 1
        value &= bits
        return value, length, value == bits

    def element_at(self, pos: int, end: int) -> _Element:
        """The element whose header starts at `pos`, checked to fit before `end`."""
        self.budget -= 1
        if self.budget < 0:
            raise _ebml_malformed(f"more than {_EBML_BUDGET:,} elements before the video track")
        eid, n, _ = self._vint(pos, end, is_id=True)
        size, m, unknown = self._vint(pos + n, end, is_id=False)
        start = pos + n + m
        if unknown:  # live recordings (MediaRecorder) write Segment and Cluster without a size
            return _Element(eid, start, end, True)
        if size > end - start:
            raise _ebml_malformed(f"an element declares {size:,} bytes but only {end - start:,} remain")
        return _Element(eid, start, start + size)

    def children(self, parent: _Element) -> Iterator[_Element]:
        """The elements laid end to end in `parent`; one of unknown size ends the walk (it runs to the parent's end)."""
        pos = parent.start
        while pos < parent.end:
            element = self.element_at(pos, parent.end)
            yield element
            if element.unknown:
                return
            pos = element.end

    def uint(self, e: _Element) -> int:
        if e.end - e.start > 8:
            raise _ebml_malformed("an unsigned integer element is longer than 8 bytes")
        return int.from_bytes(self.read(e.start, e.end - e.start), "big") if e.end > e.start else 0

    def real(self, e: _Element) -> float:
        n = e.end - e.start
        if n == 0:
            return 0.0
        if n not in (4, 8):
            raise _ebml_malformed(f"a float element is {n} bytes (4 or 8 expected)")
        (value,) = struct.unpack(">f" if n == 4 else ">d", self.read(e.start, n))
        return float(value)

    def string(self, e: _Element) -> str:
        if e.end - e.start > _MAX_STRING:
            raise _ebml_malformed("a string element is implausibly long")
        return self.read(e.start, e.end - e.start).split(b"\x00", 1)[0].decode("ascii", "replace")


def read_matroska(f: BinaryIO, size: int) -> _Parsed:
    """Kind, MIME type, displayed size and duration of a WebM/Matroska file, from its EBML header, Info and Tracks.

    `f` is a seekable binary file of `size` bytes. Only element headers and the few small values needed are read:
    the walk stops once Info and Tracks are found (before the first Cluster, in every muxer's layout), and follows
    the SeekHead when they come after the media.
    """
    r = _Ebml(f, size)
    root = _Element(0, 0, size)
    top = r.children(root)
    header = next(top, None)
    if header is None or header.id != _EBML or header.unknown:
        raise _ebml_malformed("the EBML header is missing or damaged")
    doc_type = "matroska"  # the EBML default
    for e in r.children(header):
        if e.id == _DOC_TYPE:
            doc_type = r.string(e)
    mime = _MATROSKA_MIME.get(doc_type)
    if mime is None:
        raise MediaError(
            f"the file is an EBML document of type {doc_type[:40]!r}, not a WebM or Matroska video",
            rule=RULE,
            remediation=_SEND_SUPPORTED,
        )
    segment = next((e for e in top if e.id == _SEGMENT), None)
    if segment is None:
        raise _ebml_malformed("there is no Segment, so the file holds no media")
    info = tracks = None
    seeks: dict[int, int] = {}
    for e in r.children(segment):
        if e.id == _INFO and info is None:
            info = e
        elif e.id == _TRACKS and tracks is None:
            tracks = e
        elif e.id == _SEEK_HEAD and not seeks:
            seeks = _seek_positions(r, e)
        elif e.id == _CLUSTER and e.unknown:
            break  # media of unknown length follows; nothing after it can be reached by walking
        if info is not None and tracks is not None:
            break
    if tracks is None and _TRACKS in seeks:
        tracks = _seek_target(r, segment, seeks[_TRACKS], _TRACKS)
    if info is None and _INFO in seeks:
        info = _seek_target(r, segment, seeks[_INFO], _INFO)
    if tracks is None:
        raise _ebml_malformed("there are no Tracks (no track descriptions before the media)")
    width, height = _matroska_picture(r, tracks)
    return _Parsed("video", mime, width, height, _matroska_duration(r, info), None)


def _seek_positions(r: _Ebml, seek_head: _Element) -> dict[int, int]:
    """The SeekHead's index: element id -> position relative to the Segment's payload."""
    out: dict[int, int] = {}
    for seek in r.children(seek_head):
        if seek.id != _SEEK or seek.unknown:
            continue
        target = position = None
        for e in r.children(seek):
            if e.id == _SEEK_ID and e.end - e.start <= 4:
                target = int.from_bytes(r.read(e.start, e.end - e.start), "big")
            elif e.id == _SEEK_POSITION:
                position = r.uint(e)
        if target is not None and position is not None:
            out.setdefault(target, position)
    return out


def _seek_target(r: _Ebml, segment: _Element, position: int, wanted: int) -> _Element | None:
    """The element a SeekHead entry points at, if it is really there (a stale index is ignored)."""
    at = segment.start + position
    if not segment.start <= at < segment.end:
        return None
    try:
        element = r.element_at(at, segment.end)
    except MediaError:
        return None
    return element if element.id == wanted and not element.unknown else None


def _matroska_duration(r: _Ebml, info: _Element | None) -> float | None:
    """Seconds: Info's Duration in TimestampScale units; None when absent (live recordings do not write it)."""
    if info is None:
        return None
    scale, duration = _DEFAULT_TIMESTAMP_SCALE, None
    for e in r.children(info):
        if e.id == _TIMESTAMP_SCALE:
            scale = r.uint(e)
        elif e.id == _DURATION:
            duration = r.real(e)
    if duration is None or not math.isfinite(duration) or duration <= 0 or scale <= 0:
        return None
    return duration * scale / 1e9


def _matroska_picture(r: _Ebml, tracks: _Element) -> tuple[int, int]:
    """Displayed width and height of the first video track (display size and projection roll applied)."""
    for entry in r.children(tracks):
        if entry.id != _TRACK_ENTRY or entry.unknown:
            continue
        kind, codec, video = None, "", None
        for e in r.children(entry):
            if e.id == _TRACK_TYPE:
                kind = r.uint(e)
            elif e.id == _CODEC_ID:
                codec = r.string(e)
            elif e.id == _VIDEO and not e.unknown:
                video = e
        if kind != _VIDEO_TRACK:
            continue
        if not codec:
            raise _ebml_malformed("the video track has no CodecID, so it cannot be played")
        if video is None:
            raise _ebml_malformed("the video track has no Video settings (picture size)")
        return _video_size(r, video)
    raise MediaError(
        "the WebM/Matroska file has no video track (audio only?)",
        rule=RULE,
        remediation="Send a file with a video track, or post the audio as a video with a still image.",
    )


def _video_size(r: _Ebml, video: _Element) -> tuple[int, int]:
    values: dict[int, int] = {}
    roll = 0.0
    for e in r.children(video):
        if e.id in (_PIXEL_WIDTH, _PIXEL_HEIGHT, _DISPLAY_WIDTH, _DISPLAY_HEIGHT, _DISPLAY_UNIT):
            values[e.id] = r.uint(e)
        elif e.id == _PROJECTION and not e.unknown:
            for inner in r.children(e):
                if inner.id == _PROJECTION_POSE_ROLL:
                    roll = r.real(inner)
    width, height = values.get(_PIXEL_WIDTH, 0), values.get(_PIXEL_HEIGHT, 0)
    if width <= 0 or height <= 0:
        raise _ebml_malformed("the video track declares no picture size")
    shown_w, shown_h = values.get(_DISPLAY_WIDTH, width), values.get(_DISPLAY_HEIGHT, height)
    # DisplayUnit 0-3 (pixels, cm, inches, aspect ratio) all give the display aspect ratio; like the MP4 path (and
    # FFmpeg), an anamorphic picture keeps its height and takes the width the ratio gives.
    if values.get(_DISPLAY_UNIT, 0) <= 3 and shown_w > 0 and shown_h > 0 and shown_w * height != shown_h * width:
        width = max(1, round(height * shown_w / shown_h))
    if round(abs(roll)) % 180 == 90:  # the picture is shown turned by a quarter: width and height swap
        width, height = height, width
    return width, height


def _ebml_malformed(reason: str) -> MediaError:
    return MediaError(f"the WebM/Matroska data is truncated or malformed: {reason}", rule=RULE, remediation=_SEND_WHOLE)
