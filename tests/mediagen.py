"""Synthetic media for tests: real, well-formed bytes generated at test time (no fixture files).

Padding (`size=`) keeps every file valid and probe-able with unchanged dimensions:
PNG gets a private ancillary chunk before IEND, WebP an unknown RIFF chunk, BMP/JPEG/GIF/TIFF
bytes after their end marker / outside any referenced offset (readers ignore them).

Videos are built in memory as one bytes object whose mdat is zero-filled. A multi-gigabyte
`size` therefore costs that much RAM (zero pages are cheap to read, but the result is copied
once), so limit tests near ~1 GB only where the rule truly needs real bytes; rules that only
read `MediaFacts.size` are better tested with a constructed MediaFacts.
"""

import base64
import io
import struct
import zlib

from PIL import Image

_PIL_FORMAT = {
    "png": "PNG",
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "tif": "TIFF",
}
# Formats Pillow can write with several frames (animation, or pages for TIFF).
_MULTI_FRAME = frozenset({"GIF", "PNG", "WEBP", "TIFF"})
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# Lowercase 1st letter: ancillary; lowercase 2nd: private; uppercase 3rd: reserved bit clear.
_PNG_PAD_CHUNK = b"omNi"


def b64(data: bytes) -> str:
    """Standard base64 of `data`, as a request's bytesBase64 carries it."""
    return base64.b64encode(data).decode("ascii")


def make_image(
    fmt: str = "png",
    width: int = 100,
    height: int = 100,
    *,
    size: int | None = None,
    frames: int = 1,
    exif_orientation: int | None = None,
) -> bytes:
    """A `width`×`height` image in `fmt`; `frames` > 1 animates it; `size` pads it to exactly that many bytes."""
    pil_format = _PIL_FORMAT.get(fmt.lower())
    if pil_format is None:
        raise ValueError(f"unsupported format {fmt!r}; use one of {sorted(_PIL_FORMAT)}")
    if frames < 1 or (frames > 1 and pil_format not in _MULTI_FRAME):
        raise ValueError(f"{fmt} cannot have {frames} frames")
    # Distinct colours per frame: Pillow merges identical consecutive frames when animating.
    images = [Image.new("RGB", (width, height), ((i * 97) % 256, (i // 256 * 89) % 256, 160)) for i in range(frames)]
    options: dict[str, object] = {}
    if frames > 1:
        options.update(save_all=True, append_images=images[1:], duration=100, loop=0)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif.tobytes()
    out = io.BytesIO()
    images[0].save(out, pil_format, **options)
    data = out.getvalue()
    return data if size is None else _pad_image(pil_format, data, size)


def _pad_image(pil_format: str, data: bytes, size: int) -> bytes:
    """`data` grown to exactly `size` bytes in a way readers of `pil_format` ignore."""
    extra = size - len(data)
    if extra < 0:
        raise ValueError(f"the {pil_format} image is already {len(data)} bytes, more than size={size}")
    if extra == 0:
        return data
    if pil_format == "PNG" and extra >= 12 and data.endswith(_PNG_IEND):
        # A chunk is 4 length + 4 type + payload + 4 CRC bytes.
        filler = bytes(extra - 12)
        crc = zlib.crc32(filler, zlib.crc32(_PNG_PAD_CHUNK))
        chunk = struct.pack(">I", len(filler)) + _PNG_PAD_CHUNK + filler + struct.pack(">I", crc)
        return data[: -len(_PNG_IEND)] + chunk + _PNG_IEND
    if pil_format == "WEBP" and extra >= 8:
        # RIFF chunks are even-sized; an odd remainder becomes one byte after the RIFF.
        payload = (extra - 8) & ~1
        chunk = b"PADD" + struct.pack("<I", payload) + bytes(payload)
        riff_size = len(data) - 8 + len(chunk)
        return b"RIFF" + struct.pack("<I", riff_size) + data[8:] + chunk + bytes(extra - len(chunk))
    if pil_format == "BMP":
        # Keep the header's file-size field truthful.
        return data[:2] + struct.pack("<I", size) + data[6:] + bytes(extra)
    return data + bytes(extra)


# --- ISO-BMFF (MP4 / MOV / HEIF) ----------------------------------------------------------

_IDENTITY = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
# (a, b, c, d) of the tkhd/mvhd matrix per clockwise rotation, 16.16 fixed point.
_ROTATION = {0: (1, 0, 0, 1), 90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}


def box(btype: bytes | str, payload: bytes = b"", *, large: bool = False) -> bytes:
    """An ISO-BMFF box; `large` writes the 64-bit largesize header form."""
    kind = btype.encode("latin-1") if isinstance(btype, str) else btype
    if len(kind) != 4:
        raise ValueError(f"box type must be 4 bytes, got {kind!r}")
    if large or len(payload) + 8 > 0xFFFFFFFF:
        return struct.pack(">I4sQ", 1, kind, len(payload) + 16) + payload
    return struct.pack(">I4s", len(payload) + 8, kind) + payload


def full_box(btype: bytes | str, version: int, flags: int, body: bytes) -> bytes:
    """A box whose payload starts with a version byte and 24 bits of flags."""
    return box(btype, struct.pack(">I", (version << 24) | flags) + body)


def ftyp_box(brand: str, compatible: list[str] | None = None) -> bytes:
    """An ftyp box with major `brand` (padded to 4 chars) and compatible brands."""
    major = _brand(brand)
    brands = [major] + [_brand(b) for b in (compatible or [])]
    return box(b"ftyp", major + struct.pack(">I", 0x200) + b"".join(dict.fromkeys(brands)))


def mvhd_box(timescale: int, units: int, *, version: int = 0) -> bytes:
    """A movie header with `units` of duration at `timescale` ticks per second."""
    times = struct.pack(">QQIQ" if version == 1 else ">IIII", 0, 0, timescale, units)
    rest = struct.pack(">IH10x9i24xI", 0x10000, 0x100, *_IDENTITY, 2)  # rate 1.0, volume 1.0, next track 2
    return full_box(b"mvhd", version, 0, times + rest)


def tkhd_box(width: int, height: int, *, units: int = 0, version: int = 0, rotation: int = 0) -> bytes:
    """A track header for a `width`×`height` picture, rotated clockwise by `rotation` degrees."""
    a, b, c, d = (v * 0x10000 for v in _ROTATION[rotation])
    times = struct.pack(">QQIIQ" if version == 1 else ">IIIII", 0, 0, 1, 0, units)
    matrix = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000)
    tail = struct.pack(">8xhhhH", 0, 0, 0, 0) + matrix + struct.pack(">II", width << 16, height << 16)
    return full_box(b"tkhd", version, 3, times + tail)  # flags: enabled, in movie


def hdlr_box(handler: str) -> bytes:
    """A handler box naming the track (or meta) type: vide, soun, text, pict..."""
    return full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, _brand(handler)) + b"\x00")


def make_video(
    brand: str = "isom",
    width: int = 1280,
    height: int = 720,
    duration: float = 10.0,
    *,
    size: int | None = None,
    moov_first: bool = True,
    version: int = 0,
    rotation: int = 0,
    large_mdat: bool = False,
) -> bytes:
    """A minimal well-formed MP4/MOV: ftyp, moov(mvhd, trak(tkhd, mdia(hdlr))), zero-filled mdat.

    `brand` "qt  " makes a QuickTime movie; `version` selects 32- or 64-bit mvhd/tkhd fields;
    `size` pads the mdat so the file is exactly that many bytes; `large_mdat` forces a 64-bit
    mdat size header.
    """
    major = _brand(brand)
    compatible = ["qt  "] if major == b"qt  " else [brand, "isom", "mp41"]
    timescale = 600 if major == b"qt  " else 1000
    units = round(duration * timescale)
    trak = box(b"trak", tkhd_box(width, height, units=units, version=version, rotation=rotation)
               + box(b"mdia", hdlr_box("vide")))
    moov = box(b"moov", mvhd_box(timescale, units, version=version) + trak)
    head = ftyp_box(brand, compatible)
    fixed = len(head) + len(moov)
    header = 16 if large_mdat else 8
    payload = 0 if size is None else size - fixed - header
    if header == 8 and payload + 8 > 0xFFFFFFFF:
        # Past 4 GiB the 32-bit size field cannot hold it: switch to the largesize header.
        header, payload = 16, payload - 8
    if payload < 0:
        raise ValueError(f"size={size} is below the {fixed + header} bytes the boxes need")
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + payload) if header == 16 else struct.pack(">I4s", 8 + payload, b"mdat")
    # One join: the zero-filled payload is read from untouched (zero) pages and copied once.
    parts = [head, moov, mdat, bytes(payload)] if moov_first else [head, mdat, bytes(payload), moov]
    return b"".join(parts)


def make_heif(
    width: int = 4032,
    height: int = 3024,
    *,
    brand: str = "heic",
    rotation: int = 0,
    thumbnail: tuple[int, int] | None = (320, 240),
) -> bytes:
    """A minimal HEIF still (e.g. an iPhone HEIC): ftyp + meta(hdlr, pitm, iprp) with no pixel data.

    The thumbnail's ispe comes first in ipco so a reader must follow pitm/ipma to the primary
    item; `rotation` (clockwise degrees) adds an irot property.
    """
    properties: list[bytes] = []
    thumb_index = None
    if thumbnail is not None:
        properties.append(full_box(b"ispe", 0, 0, struct.pack(">II", *thumbnail)))
        thumb_index = len(properties)
    properties.append(full_box(b"ispe", 0, 0, struct.pack(">II", width, height)))
    primary_props = [len(properties)]
    if rotation:
        # irot counts anticlockwise quarter turns.
        properties.append(box(b"irot", bytes([((360 - rotation) // 90) % 4])))
        primary_props.append(len(properties))
    entries = [(1, primary_props)] + ([(2, [thumb_index])] if thumb_index is not None else [])
    ipma_body = struct.pack(">I", len(entries)) + b"".join(
        struct.pack(">HB", item, len(idx)) + bytes(0x80 | i for i in idx) for item, idx in entries
    )
    iprp = box(b"iprp", box(b"ipco", b"".join(properties)) + full_box(b"ipma", 0, 0, ipma_body))
    meta = full_box(b"meta", 0, 0, hdlr_box("pict") + full_box(b"pitm", 0, 0, struct.pack(">H", 1)) + iprp)
    return ftyp_box(brand, ["mif1", brand, "miaf"]) + meta + box(b"mdat", b"")


def _brand(brand: str) -> bytes:
    code = brand.ljust(4).encode("latin-1")
    if len(code) != 4:
        raise ValueError(f"a brand is 4 characters, got {brand!r}")
    return code


# --- EBML (WebM / Matroska) ---------------------------------------------------------------

# Element ids as written (length marker included), from the Matroska spec (RFC 9559).
EBML_IDS = {
    "EBML": 0x1A45DFA3, "EBMLVersion": 0x4286, "EBMLReadVersion": 0x42F7, "EBMLMaxIDLength": 0x42F2,
    "EBMLMaxSizeLength": 0x42F3, "DocType": 0x4282, "DocTypeVersion": 0x4287, "DocTypeReadVersion": 0x4285,
    "Segment": 0x18538067, "SeekHead": 0x114D9B74, "Seek": 0x4DBB, "SeekID": 0x53AB, "SeekPosition": 0x53AC,
    "Info": 0x1549A966, "TimestampScale": 0x2AD7B1, "Duration": 0x4489, "MuxingApp": 0x4D80, "WritingApp": 0x5741,
    "Tracks": 0x1654AE6B, "TrackEntry": 0xAE, "TrackNumber": 0xD7, "TrackUID": 0x73C5, "TrackType": 0x83,
    "CodecID": 0x86, "Video": 0xE0, "PixelWidth": 0xB0, "PixelHeight": 0xBA, "DisplayWidth": 0x54B0,
    "DisplayHeight": 0x54BA, "DisplayUnit": 0x54B2, "Projection": 0x7670, "ProjectionPoseRoll": 0x7675,
    "Audio": 0xE1, "SamplingFrequency": 0xB5, "Channels": 0x9F,
    "Cluster": 0x1F43B675, "Timestamp": 0xE7, "SimpleBlock": 0xA3, "Void": 0xEC,
}
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"  # an 8-byte size with every value bit set: "not written"


def ebml_size(n: int, length: int | None = None) -> bytes:
    """`n` as an EBML variable-length size, in `length` bytes (default: the fewest that hold it)."""
    if length is None:
        length = next(k for k in range(1, 9) if n < (1 << (7 * k)) - 1)
    if not 1 <= length <= 8 or n >= (1 << (7 * length)) - 1:
        raise ValueError(f"{n} does not fit an EBML size of {length} bytes")
    return ((1 << (7 * length)) | n).to_bytes(length, "big")


def ebml(name: str, payload: bytes | int | float | str = b"", *, size_length: int | None = None, unknown: bool = False) -> bytes:
    """One EBML element: an int payload is an unsigned integer, a float an 8-byte double, a str ASCII."""
    eid = EBML_IDS[name]
    if isinstance(payload, bool) or isinstance(payload, int):
        body = payload.to_bytes(max(1, (payload.bit_length() + 7) // 8), "big")
    elif isinstance(payload, float):
        body = struct.pack(">d", payload)
    elif isinstance(payload, str):
        body = payload.encode("ascii")
    else:
        body = payload
    size = UNKNOWN_SIZE if unknown else ebml_size(len(body), size_length)
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + size + body


def make_webm(
    width: int = 640,
    height: int = 360,
    duration: float | None = 10.0,
    *,
    codec: str = "V_VP9",
    doc_type: str = "webm",
    size: int | None = None,
    audio: bool = False,
    video: bool = True,
    display: tuple[int, int] | None = None,
    roll: float | None = None,
    live: bool = False,
    tracks_last: bool = False,
) -> bytes:
    """A minimal well-formed WebM (or Matroska with `doc_type="matroska"`): EBML header, Segment(Info, Tracks,
    one Cluster with one keyframe SimpleBlock whose payload is zero-filled).

    `display` writes DisplayWidth/DisplayHeight (anamorphic), `roll` a Projection roll in degrees; `live` is a
    browser MediaRecorder's layout (Segment and Cluster of unknown size, no Duration); `tracks_last` puts Info and
    Tracks after the Cluster, found through a SeekHead; `size` pads the block so the file is exactly that many bytes.
    """
    header = ebml("EBML", ebml("EBMLVersion", 1) + ebml("EBMLReadVersion", 1) + ebml("EBMLMaxIDLength", 4)
                  + ebml("EBMLMaxSizeLength", 8) + ebml("DocType", doc_type) + ebml("DocTypeVersion", 4)
                  + ebml("DocTypeReadVersion", 2))
    info = ebml("Info", ebml("TimestampScale", 1_000_000) + ebml("MuxingApp", "omnipost-mediagen")
                + ebml("WritingApp", "omnipost-mediagen")
                + (ebml("Duration", float(duration * 1000)) if duration is not None and not live else b""))
    entries = b""
    if video:
        picture = ebml("PixelWidth", width) + ebml("PixelHeight", height)
        if display is not None:
            picture += ebml("DisplayWidth", display[0]) + ebml("DisplayHeight", display[1]) + ebml("DisplayUnit", 0)
        if roll is not None:
            picture += ebml("Projection", ebml("ProjectionPoseRoll", float(roll)))
        entries += ebml("TrackEntry", ebml("TrackNumber", 1) + ebml("TrackUID", 1) + ebml("TrackType", 1)
                        + ebml("CodecID", codec) + ebml("Video", picture))
    if audio:
        entries += ebml("TrackEntry", ebml("TrackNumber", 2) + ebml("TrackUID", 2) + ebml("TrackType", 2)
                        + ebml("CodecID", "A_OPUS") + ebml("Audio", ebml("SamplingFrequency", 48000.0) + ebml("Channels", 2)))
    tracks = ebml("Tracks", entries)
    seek_head = b""
    if tracks_last:
        # Positions are relative to the Segment's payload; 8-byte SeekPositions keep the SeekHead's own size fixed.
        def index(info_at: int, tracks_at: int) -> bytes:
            return ebml("SeekHead", b"".join(
                ebml("Seek", ebml("SeekID", EBML_IDS[name].to_bytes(4, "big")) + ebml("SeekPosition", at.to_bytes(8, "big")))
                for name, at in (("Info", info_at), ("Tracks", tracks_at))))
        seek_head = index(0, 0)
    # One block: track 1, relative timestamp 0, keyframe flag; its frame bytes are zero padding.
    block_head = ebml_size(1) + struct.pack(">hB", 0, 0x80)
    fixed_cluster_head = ebml("Timestamp", 0)

    def cluster(payload: int) -> bytes:
        block = ebml("SimpleBlock", block_head + bytes(payload), size_length=8)
        body = fixed_cluster_head + block
        return ebml("Cluster", body, unknown=True) if live else ebml("Cluster", body, size_length=8)

    def segment(payload: int) -> bytes:
        media = cluster(payload)
        if tracks_last:
            head = index(len(seek_head) + len(media), len(seek_head) + len(media) + len(info))
            body = head + media + info + tracks
        else:
            body = info + tracks + media
        return ebml("Segment", body, unknown=True) if live else ebml("Segment", body, size_length=8)

    base = len(header) + len(segment(0))
    if size is not None and size < base:
        raise ValueError(f"size={size} is below the {base} bytes the elements need")
    return header + segment(0 if size is None else size - base)
