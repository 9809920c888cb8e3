"""Bluesky record keys: a deterministic TID per piece of a post, derived from its upstream key."""

import hashlib
import re
from omnipost.platforms.bluesky.lexicon import POST

TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID_PATTERN = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_IN_KEY = re.compile(r"(?:^|_)([0-7][0-9A-HJKMNP-TV-Z]{25})(?=$|-)", re.IGNORECASE)


def _ulid_ms(key: str) -> int | None:
    """The millisecond timestamp of the ULID inside an omnipost id (`post_01J...`), if there is one."""
    m = _ULID_IN_KEY.search(key)
    if m is None:
        return None
    value = 0
    for ch in m.group(1)[:10].upper():
        value = value * 32 + _CROCKFORD.index(ch)
    return value


def tid_for(key: str) -> str:
    """The deterministic TID record key for one piece's key (see the module docstring)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    word = int.from_bytes(digest[:8], "big")
    ms = _ulid_ms(key)
    micros = (ms // 1000) * 1_000_000 + word % 1_000_000 if ms is not None else word >> 11
    micros &= (1 << 53) - 1
    clock_id = int.from_bytes(digest[8:10], "big") & 0x3FF
    value = (micros << 10) | clock_id
    return "".join(TID_ALPHABET[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


def piece_key(upstream_key: str, piece: str) -> str:
    """The key of one piece: `""` main post, `"t<i>"` thread segment i (from 1), `"c"` the first comment."""
    return upstream_key if not piece else f"{upstream_key}-{piece}"


def at_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST}/{rkey}"


def web_url(did: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{did}/post/{rkey}"
