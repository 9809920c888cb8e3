"""Turn a PostRequest into resolved targets and run every shallow rule on each of them.

Resolution folds defaults: top-level content < `platforms[<p>]` < the target's own values.
Preflight collects every violation of every target (never stops at the first).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from omnipost.domain import OPTION_KEY, Platform
from omnipost.errors import MediaError, NotFoundError, echo
from omnipost.media.probe import MediaFacts, decode_base64, probe_bytes
from omnipost.preflight.model import AccountInfo, MediaRef, ResolvedTarget, Violation
from omnipost.preflight.rules import RULES, URL_ONLY_MEDIA, generic
from omnipost.request import OPTION_OBJECTS, MediaItem, PostRequest, Target

_CONTENT = ("text", "media", "firstComment", "thread", "title", "visibility")


class AccountLookup(Protocol):
    """Finds a connected account in a profile (the store implements this)."""

    async def get_account(self, account_id: str, profile_id: str | None) -> AccountInfo | None: ...


class MediaLookup(Protocol):
    """Finds an uploaded media record in a profile (the store implements this). It may also answer
    `async public_url_available(media_id, profile_id) -> bool` (whether a platform that fetches media by URL can be
    handed one for it: media/host.py); a lookup without it is taken to host every file."""

    async def get_media(self, media_id: str, profile_id: str | None) -> MediaFacts | None: ...


class NoAccounts:
    """The lookup used before any account store exists: nothing is connected."""

    async def get_account(self, account_id: str, profile_id: str | None) -> AccountInfo | None:
        return None


class NoMedia:
    """The lookup used before any media store exists: no media is uploaded."""

    async def get_media(self, media_id: str, profile_id: str | None) -> MediaFacts | None:
        return None


@dataclass
class Resolution:
    """Resolved targets plus violations found while resolving (unreadable bytes)."""

    targets: list[ResolvedTarget]
    early: dict[int, list[Violation]] = field(default_factory=lambda: {})


def pick(name: str, *layers: Any) -> Any:
    """The most specific layer that sets `name` wins (target, then platform override, then top level)."""
    for layer in layers:
        if layer is not None:
            value = getattr(layer, name, None)
            if value is not None:
                return value
    return None


async def resolve(request: PostRequest, accounts: AccountLookup, media: MediaLookup) -> Resolution:
    """Fold defaults and overrides into one ResolvedTarget per target; probe inline media once per distinct payload.

    Raises:
        NotFoundError: a target names an accountId that does not exist in scope.
    """
    out = Resolution(targets=[])
    probe_cache: dict[str, MediaFacts | MediaError] = {}
    media_cache: dict[str, MediaFacts | None] = {}
    for index, target in enumerate(request.targets):
        account = await _account_for(index, target, accounts, request.profileId)
        platform = account.platform if account is not None else target.platform
        assert platform is not None  # the Target model requires accountId or platform
        override = request.platforms.for_platform(platform) if request.platforms else None
        layers = (target, override, request)
        items: list[MediaItem] = pick("media", *layers) or []
        refs: list[MediaRef] = []
        for i, item in enumerate(items):
            ref, violation = await _media_ref(index, i, item, probe_cache, media_cache, media, request.profileId)
            refs.append(ref)
            if violation is not None:
                out.early.setdefault(index, []).append(violation)
        out.targets.append(
            ResolvedTarget(
                index=index,
                platform=platform,
                account=account,
                text=pick("text", *layers) or "",
                media=tuple(refs),
                first_comment=pick("firstComment", *layers),
                thread=tuple(pick("thread", *layers) or ()),
                title=pick("title", target, override, _options_of(target, platform), request),
                visibility=pick("visibility", *layers),
                options=_merge_options(platform, target, override),
                foreign_options=tuple(
                    k for k in OPTION_OBJECTS if getattr(target, k) is not None and k != OPTION_KEY[platform]
                ),
            )
        )
    return out


async def _account_for(index: int, target: Target, accounts: AccountLookup, profile_id: str | None) -> AccountInfo | None:
    if target.accountId is None:
        return None
    account = await accounts.get_account(target.accountId, profile_id)
    if account is None:
        raise NotFoundError(
            f"Account '{echo(target.accountId)}' was not found.",
            rule=f"targets[{index}].accountId",
            remediation="Call list_accounts for valid ids, or give just a platform to validate without an account.",
        )
    if target.platform is not None and target.platform is not account.platform:
        raise NotFoundError(
            f"Account '{echo(target.accountId)}' is not a {target.platform.value} account.",
            rule=f"targets[{index}].platform",
            remediation="Drop platform, or name an account of that platform.",
        )
    return account


def _options_of(target: Target, platform: Platform) -> Any:
    return getattr(target, OPTION_KEY[platform], None)


def _merge_options(platform: Platform, target: Target, override: Any) -> dict[str, Any]:
    """Platform option fields: the top-level override's, then the target's own option object's."""
    merged: dict[str, Any] = {}
    if override is not None:
        own_fields = set(type(override).model_fields) - set(_CONTENT)
        merged.update({k: v for k, v in override.model_dump(exclude_none=True).items() if k in own_fields})
    options = _options_of(target, platform)
    if options is not None:
        merged.update(options.model_dump(exclude_none=True))
    return merged


async def _media_ref(
    target_index: int,
    index: int,
    item: MediaItem,
    probe_cache: dict[str, MediaFacts | MediaError],
    media_cache: dict[str, MediaFacts | None],
    media: MediaLookup,
    profile_id: str | None,
) -> tuple[MediaRef, Violation | None]:
    if item.mediaId is not None:
        if item.mediaId not in media_cache:
            media_cache[item.mediaId] = await media.get_media(item.mediaId, profile_id)
        facts = media_cache[item.mediaId]
        public_url = True
        available = getattr(media, "public_url_available", None)  # a lookup without it (a test double) hosts every file
        if facts is not None and available is not None:
            public_url = await available(item.mediaId, profile_id)
        return MediaRef(index, "mediaId", item.altText, facts, media_id=item.mediaId, unknown=facts is None,
                        public_url=public_url), None
    if item.url is not None:
        return MediaRef(index, "url", item.altText, None, url=item.url), None
    payload = item.bytesBase64 or ""
    probed = probe_cache.get(payload)
    if probed is None:
        try:
            probed = probe_bytes(decode_base64(payload))
        except MediaError as exc:
            probed = exc
        probe_cache[payload] = probed
    if isinstance(probed, MediaError):
        path = f"targets[{target_index}].media[{index}].bytesBase64"
        v = Violation("media.unreadable", path, f"media[{index}]: {probed.message}",
                      "Send the file's own bytes, base64-encoded: JPEG, PNG, WebP, GIF, BMP, TIFF, MP4, MOV or WebM.")
        return MediaRef(index, "bytesBase64", item.altText, None), v
    return MediaRef(index, "bytesBase64", item.altText, probed, inline=payload), None


def applicable_rules(platform: Platform) -> Iterable[Callable[[ResolvedTarget], Iterable[Violation]]]:
    """Every shallow check that runs for a target on `platform`, generic ones first."""
    for rule in generic.ALL:
        if rule.check is not None:
            yield rule.check
    if platform in URL_ONLY_MEDIA:
        for rule in generic.URL_ONLY:
            if rule.check is not None:
                yield rule.check
    for rule in RULES[platform].rules:
        if rule.stage == "shallow" and rule.check is not None:
            yield rule.check


# Built once: the checks per platform are fixed data.
_CHECKS: dict[Platform, tuple[Callable[[ResolvedTarget], Iterable[Violation]], ...]] = {
    p: tuple(applicable_rules(p)) for p in Platform
}


def run_preflight(target: ResolvedTarget) -> list[Violation]:
    """Every violation (errors and warnings) of one resolved target."""
    found: list[Violation] = []
    for check in _CHECKS[target.platform]:
        found.extend(check(target))
    return found
