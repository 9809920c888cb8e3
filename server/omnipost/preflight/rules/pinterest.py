"""Pinterest limits, from the API v5 /pins schema (platforms.md §7, checked 2026-11-24)."""

from collections.abc import Iterable
from urllib.parse import urlsplit

from omnipost.domain import Platform
from omnipost.preflight import checks as c
from omnipost.preflight.model import PlatformRules, ResolvedTarget, Violation
from omnipost.preflight.text import CODEPOINTS

SRC = c.Source(
    name="Pinterest",
    doc_url="https://developers.pinterest.com/docs/api/v5/pins-create",
    source="Pinterest API v5 POST /pins schema: board_id required, title ≤ 100, description ≤ 800, link ≤ 2048, "
    "alt_text ≤ 500 (JSON-schema maxLength, code points); image_base64 content_type image/jpeg|image/png; images ≤ 20 MB",
    checked="2026-11-24",
)

TEXT_LIMIT = 800  # the pin description
LINK_SCHEMES = ("https", "http")  # a pin's click-through opens in a browser: web pages only


def _check_board(t: ResolvedTarget) -> Iterable[Violation]:
    board = t.options.get("boardId") or (t.account.defaults.get("boardId") if t.account else None)
    if not board:
        yield Violation("pinterest.board.required", f"{t.path}.pinterest.boardId", "Pinterest needs a board to pin to; none is set.",
                        "Set pinterest.boardId (or platforms.pinterest.boardId), or give the account a default board.")


def _max_len(rule_id: str, field: str, limit: int, value_of: str) -> c.Check:
    def check(t: ResolvedTarget) -> Iterable[Violation]:
        value = t.title if value_of == "title" else t.options.get(value_of)
        if isinstance(value, str):
            n = CODEPOINTS.count(value)
            if n > limit:
                yield Violation(rule_id, f"{t.path}.{field}", f"{field} is {n} characters; Pinterest allows {limit}.",
                                f"{field} is {n} characters; Pinterest allows {limit}: cut {n - limit}.", n, limit)
    return check


def _check_link_scheme(t: ResolvedTarget) -> Iterable[Violation]:
    link = t.options.get("destinationUrl")
    if not isinstance(link, str):
        return
    try:
        parts = urlsplit(link.strip())
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket: not a URL at all
        scheme, host = "", None
    if scheme not in LINK_SCHEMES or not host:
        shown = f"{scheme}:" if scheme else "no scheme"
        yield Violation("pinterest.link.http_url", f"{t.path}.pinterest.destinationUrl",
                        f"destinationUrl must be an absolute http(s) URL; it has {shown}" + ("" if host or not scheme else " and no host") + ".",
                        "Give destinationUrl as a full https:// (or http://) address of a web page, or remove it.",
                        scheme or None, list(LINK_SCHEMES))


def _check_image_only(t: ResolvedTarget) -> Iterable[Violation]:
    for m in t.media:
        if m.facts is not None and m.facts.kind == "video":
            yield Violation("pinterest.media.image_only", f"{t.path}.media[{m.index}]", "Video pins are not supported yet; pins are images.",
                            f"Replace media[{m.index}] with an image (JPEG or PNG).", "video", "image")


def _check_single(t: ResolvedTarget) -> Iterable[Violation]:
    if len(t.media) > 1:
        yield Violation("pinterest.media.single_only", f"{t.path}.media", f"A pin carries one image; {len(t.media)} attached.",
                        f"Keep one image and remove {len(t.media) - 1}; publish the others as separate pins.", len(t.media), 1)


PINTEREST = PlatformRules(
    platform=Platform.PINTEREST,
    source=SRC.source,
    checked=SRC.checked,
    text_unit=CODEPOINTS,
    text_limit=TEXT_LIMIT,
    supports_title=True,
    rules=(
        c.text_max(SRC, "pinterest.description.max_length", limit=TEXT_LIMIT, unit=CODEPOINTS),
        c.custom(SRC, "pinterest.title.max_length", check=_max_len("pinterest.title.max_length", "title", 100, "title"),
                 summary="A pin title is at most 100 characters.", why="The /pins schema caps title at 100.",
                 remediation="Shorten the title to 100 characters.", limit=100, unit="characters",
                 example_fail={"title": "t" * 101, "media": [{"url": "https://example.com/pin.jpg"}]},
                 example_pass={"title": "Autumn recipes", "media": [{"url": "https://example.com/pin.jpg"}]}),
        c.custom(SRC, "pinterest.link.max_length", check=_max_len("pinterest.link.max_length", "pinterest.destinationUrl", 2048, "destinationUrl"),
                 summary="A pin's destination link is at most 2048 characters.", why="The /pins schema caps link at 2048.",
                 remediation="Use a shorter destination URL.", limit=2048, unit="characters",
                 example_fail={"pinterest": {"destinationUrl": "https://example.com/" + "a" * 2040}},
                 example_pass={"pinterest": {"destinationUrl": "https://example.com/recipe"}}),
        c.custom(SRC, "pinterest.link.http_url", check=_check_link_scheme,
                 summary="A pin's destination link is an absolute http:// or https:// URL.",
                 why="The link is where a click on the pin goes, in a browser; Pinterest takes web pages, so another scheme "
                 "(ftp:, mailto:, javascript:, data:) or a URL without a host cannot be a destination.",
                 remediation="Use a full https:// address of a web page as destinationUrl, or remove it.",
                 limit=list(LINK_SCHEMES), unit="URL schemes",
                 example_fail={"pinterest": {"destinationUrl": "ftp://example.com/recipe.pdf"}},
                 example_pass={"pinterest": {"destinationUrl": "https://example.com/recipe"}}),
        c.alt_text_max(SRC, "pinterest.media.alt_text_max_length", limit=500, unit=CODEPOINTS),
        c.media_required(SRC, "pinterest.media.required", what="exactly one image"),
        c.custom(SRC, "pinterest.media.image_only", check=_check_image_only,
                 summary="Pins are images; video pins need Pinterest's separate video flow, not built yet.",
                 why="A video pin needs a media upload, processing and a cover image.",
                 remediation="Attach an image (JPEG or PNG).",
                 example_fail={"media": [{"bytesBase64": "<an MP4 video>"}]}, example_pass={"media": [{"bytesBase64": "<a PNG image>"}]}),
        c.custom(SRC, "pinterest.media.single_only", check=_check_single,
                 summary="A pin carries one image (carousel pins are not built yet).",
                 why="omnipost creates single-image pins.", remediation="Attach one image per pin.", limit=1, unit="images",
                 example_fail={"media": [{"url": "https://example.com/a.jpg"}, {"url": "https://example.com/b.jpg"}]},
                 example_pass={"media": [{"url": "https://example.com/a.jpg"}]}),
        c.mime_allowed(SRC, "pinterest.image.mime_allowed", mimes=("image/jpeg", "image/png"), kinds=("image", "gif")),
        c.size_max(SRC, "pinterest.image.size_max", kinds=("image", "gif"), max_bytes=20 * c.MB, what="image"),
        c.custom(SRC, "pinterest.board.required", check=_check_board,
                 summary="A pin names a board: pinterest.boardId, or the account's default board.",
                 why="POST /v5/pins requires board_id.", remediation="Set pinterest.boardId or give the account a default board.",
                 example_fail={"media": [{"url": "https://example.com/pin.jpg"}]},
                 example_pass={"pinterest": {"boardId": "1234567890"}, "media": [{"url": "https://example.com/pin.jpg"}]}),
        c.visibility_enum(SRC, "pinterest.visibility.enum", mapping={"public": "public"}),
        c.info_rule(SRC, "pinterest.image_url.reachable", stage="deep",
                    summary="A pin's image URL answers 200 to an anonymous request.",
                    why="Pinterest downloads image_url itself.", remediation="Use a public https image URL, or upload the file."),
        c.info_rule(SRC, "pinterest.destination_url.reachable", stage="deep",
                    summary="A pin's destination link is reachable.",
                    why="Pinterest refuses or flags pins whose click-through link is broken.", remediation="Fix or remove destinationUrl."),
        c.info_rule(SRC, "pinterest.url.reachable", stage="deep",
                    summary="A URL Pinterest must fetch could not be reached.",
                    why="Pinterest answers 'Unable to reach the URL' when it cannot fetch a URL in the request.",
                    remediation="Check that every URL in the pin is public and answers 200."),
    ),
)
