"""Where the shared conformance data lives (twitter-text, Bluesky rich text, Unicode), and how tests load it.

The data sits next to the repository, in `<repo>/../shared/reference-data`; `OMNIPOST_REFERENCE_DATA` points
elsewhere. Tests that need it are skipped, with the reason, only when that directory does not exist at all; a
file missing from an existing directory is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

_REPO = Path(__file__).resolve().parents[1]
REFERENCE_DATA: Path = Path(
    os.environ.get("OMNIPOST_REFERENCE_DATA") or _REPO.parent / "shared" / "reference-data"
).resolve()

AVAILABLE: bool = REFERENCE_DATA.is_dir()
MISSING_REASON = (
    f"reference data directory not found: {REFERENCE_DATA} (set OMNIPOST_REFERENCE_DATA to its location)"
)
requires_reference_data = pytest.mark.skipif(not AVAILABLE, reason=MISSING_REASON)


def path(*parts: str) -> Path:
    """A file inside the reference data directory."""
    return REFERENCE_DATA.joinpath(*parts)


def load_yaml(*parts: str) -> Any:
    """Parse a YAML file of the reference data, or None when the data directory is missing."""
    if not AVAILABLE:
        return None
    with path(*parts).open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_json(*parts: str) -> Any:
    """Parse a JSON file of the reference data, or None when the data directory is missing."""
    if not AVAILABLE:
        return None
    with path(*parts).open(encoding="utf-8") as f:
        return json.load(f)


def params(items: Iterable[Any], ident: Callable[[Any], str]) -> list[Any]:
    """pytest parameters for `items` with readable ids; one skipped placeholder when the data is missing."""
    if not AVAILABLE:
        return [pytest.param(None, id="reference-data-missing", marks=pytest.mark.skip(reason=MISSING_REASON))]
    return [pytest.param(item, id=ident(item)) for item in items]


def short_id(text: str, limit: int = 40) -> str:
    """A compact, printable test id fragment for `text`."""
    s = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return s if len(s) <= limit else s[: limit - 1] + "…"
