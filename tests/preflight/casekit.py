"""Load the YAML rule cases and turn their media shorthand into real bytes or media records.

A case (twitter-text `validate.yml` style):

    - description: text over 300 graphemes
      target: {text: "..."}            # merged into {"platform": <file's platform>}
      request: {...}                   # optional: extra top-level request fields
      account: {platform: linkedin, defaults: {authorUrn: ...}}   # optional: target gets this account
      expected: [bluesky.text.max_graphemes]   # rule ids of the errors, in any order
      warnings: [media.not_probed]     # optional: warning rule ids that must appear
      passes: [bluesky.text.max_graphemes]     # optional: rules this case shows passing at their boundary
      measure: 301                     # optional: the measured text length

Media shorthand inside `media`:
    {image: {fmt: png, width: 100, height: 100, size: 2100000, frames: 1}, altText: ...}  -> bytesBase64 (real file)
    {video: {brand: isom, width: 1280, height: 720, duration: 10, size: 5000000}}          -> bytesBase64 (real file)
    {stored: {kind: video, mime: video/mp4, size: 4000000001, width: 1920, height: 1080}}  -> mediaId of a media record
    {stored: {...}, hosted: false}  -> ... that no media host can hand a URL-fetching platform (media/host.py)
    {url: ...} / {mediaId: ...} / {bytesBase64: ...}                                       -> as given
"""

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mediagen import b64, make_image, make_video
from omnipost.domain import Platform
from omnipost.media.probe import MediaFacts
from omnipost.preflight.model import AccountInfo

CASES_DIR = Path(__file__).parent / "cases"


@dataclass
class Directory:
    """Accounts and media records the cases refer to (the store's role, for these tests)."""

    accounts: dict[str, AccountInfo] = field(default_factory=lambda: {})
    media: dict[str, MediaFacts] = field(default_factory=lambda: {})
    unhosted: set[str] = field(default_factory=lambda: set[str]())  # media ids with no public URL to be had

    async def get_account(self, account_id: str, profile_id: str | None) -> AccountInfo | None:
        return self.accounts.get(account_id)

    async def get_media(self, media_id: str, profile_id: str | None) -> MediaFacts | None:
        return self.media.get(media_id)

    async def public_url_available(self, media_id: str, profile_id: str | None) -> bool:
        return media_id not in self.unhosted


@dataclass
class Case:
    platform: str
    description: str
    request: dict[str, Any]
    expected: list[str]
    warnings: list[str]
    passes: list[str]
    measure: int | None
    directory: Directory

    @property
    def id(self) -> str:
        return f"{self.platform}: {self.description}"


def _media_item(item: dict[str, Any], directory: Directory) -> dict[str, Any]:
    item = dict(item)
    if "image" in item:
        spec = dict(item.pop("image") or {})
        item["bytesBase64"] = b64(make_image(spec.pop("fmt", "png"), spec.pop("width", 100), spec.pop("height", 100), **spec))
    elif "video" in item:
        spec = dict(item.pop("video") or {})
        item["bytesBase64"] = b64(make_video(**spec))
    elif "stored" in item:
        spec = dict(item.pop("stored"))
        media_id = "med_" + hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()[:12]
        directory.media[media_id] = MediaFacts(
            kind=spec["kind"], mime=spec["mime"], size=spec["size"], width=spec.get("width"), height=spec.get("height"),
            duration=spec.get("duration"), frames=spec.get("frames"), sha256="0" * 64,
        )
        item["mediaId"] = media_id
        if item.pop("hosted", True) is False:
            directory.unhosted.add(media_id)
    return item


def _expand_media(obj: Any, directory: Directory) -> Any:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k == "media" and isinstance(v, list):
                out[k] = [_media_item(m, directory) for m in v]
            else:
                out[k] = _expand_media(v, directory)
        return out
    if isinstance(obj, list):
        return [_expand_media(v, directory) for v in obj]
    return obj


def load_cases() -> list[Case]:
    """Every case of every cases/<platform>.yaml."""
    cases: list[Case] = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        platform = doc["platform"]
        for raw in doc["cases"]:
            directory = Directory()
            target = {"platform": platform, **copy.deepcopy(raw.get("target") or {})}
            if "account" in raw:
                acc = raw["account"]
                account_id = acc.get("id", f"acc_case_{len(cases)}")
                directory.accounts[account_id] = AccountInfo(
                    id=account_id, platform=Platform(acc.get("platform", platform)), handle=acc.get("handle"),
                    defaults=acc.get("defaults") or {}, adapter=acc.get("adapter"),
                )
                target.pop("platform", None)
                target["accountId"] = account_id
            request = {**copy.deepcopy(raw.get("request") or {}), "targets": [target]}
            cases.append(Case(
                platform=platform,
                description=raw["description"],
                request=_expand_media(request, directory),
                expected=list(raw.get("expected") or []),
                warnings=list(raw.get("warnings") or []),
                passes=list(raw.get("passes") or []),
                measure=raw.get("measure"),
                directory=directory,
            ))
    return cases
