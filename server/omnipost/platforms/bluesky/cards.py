"""Bluesky link cards: reading og:title/og:description/og:image from a fetched page."""

import re
from dataclasses import replace
from html.parser import HTMLParser

class _PageMeta(HTMLParser):
    """Collects <meta property|name=... content=...> and the first <title> of a page's head."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title: str | None = None
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            a = {k.lower(): (v or "") for k, v in attrs}
            key = (a.get("property") or a.get("name") or "").strip().lower()
            if key and "content" in a:
                self.meta.setdefault(key, a["content"])
        elif tag == "title" and self.title is None:
            self._title = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self.title, self._title = "".join(self._title), None

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)

    def first(self, *keys: str) -> str:
        for key in keys:
            value = " ".join(self.meta.get(key, "").split())
            if value:
                return value
        return ""


def _parse_page(data: bytes, content_type: str) -> _PageMeta:
    charset = "utf-8"
    m = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
    if m:
        charset = m.group(1)
    try:
        text = data.decode(charset, errors="replace")
    except LookupError:
        text = data.decode("utf-8", errors="replace")
    parser = _PageMeta()
    parser.feed(text)
    parser.close()
    return parser
