"""`omnipost schedule --csv FILE` (issue 14): a spreadsheet export as one schedule_posts call.

One row is one post. The first row names the columns (any order, any letter case; docs/week-planning.md documents them):

| column | meaning |
| --- | --- |
| scheduledAt (required) | ISO-8601 time; without an offset it is read in `timezone` |
| accounts (required) | account ids (acc_…), separated by `;` or spaces: one target each |
| text | the post text (a quoted cell may span lines) |
| timezone | IANA zone for a scheduledAt without offset (default UTC) |
| media | media ids (med_…) or public URLs, separated by `;` |
| altText | alt text of the media, `;`-separated in the same order |
| firstComment, title, visibility, campaign | as in schedule_post |
| thread | follow-up posts, separated by a line holding only `---` (or ` || ` inside one line) |
| skipDuplicateCheck | true/false (also yes/no, 1/0) |

A row that cannot be read as a post (a missing required cell, too many cells, a bad true/false) is reported with its
line number and left out; the other rows go on (with `atomic`, nothing is stored). An item the server refuses is
reported at its row's line the same way.
"""

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("scheduledAt", "accounts", "text", "timezone", "media", "altText", "firstComment", "title", "visibility",
           "campaign", "thread", "skipDuplicateCheck")
_BY_LOWER = {c.lower(): c for c in COLUMNS}
_TRUE, _FALSE = {"true", "yes", "1", "y"}, {"false", "no", "0", "n", ""}


class CsvError(Exception):
    """The file as a whole cannot be read (no header, an unknown column): nothing is sent."""


@dataclass
class Parsed:
    """What a CSV file holds: the items to send, each with its line, and the rows that are not posts."""

    items: list[dict[str, Any]] = field(default_factory=lambda: [])
    lines: list[int] = field(default_factory=lambda: [])  # the first line of each item's row
    bad: list[tuple[int, str]] = field(default_factory=lambda: [])  # (line, why)


def _split(value: str) -> list[str]:
    return [v for v in re.split(r"[;\s]+", value.strip()) if v]


def parse(text: str) -> Parsed:
    """Read a CSV export (UTF-8, a byte-order mark allowed, `,` or `;` delimited).

    Raises:
        CsvError: no header row, a column nobody knows, or a required column missing.
    """
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise CsvError("the file is empty")
    try:
        dialect: Any = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except (csv.Error, StopIteration) as exc:
        raise CsvError(f"line 1: cannot read the header ({exc})") from None
    names: list[str] = []
    for cell in header:
        name = _BY_LOWER.get(cell.strip().lower())
        if name is None:
            raise CsvError(f"line 1: unknown column '{cell.strip()[:40]}' (columns: {', '.join(COLUMNS)})")
        names.append(name)
    for required in ("scheduledAt", "accounts"):
        if required not in names:
            raise CsvError(f"line 1: the column {required} is required")
    out = Parsed()
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.bad.append((start, f"cannot read the row ({exc})"))
            end = reader.line_num
            continue
        end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        item, why = _item(names, row)
        if why is not None:
            out.bad.append((start, why))
        else:
            out.items.append(item)
            out.lines.append(start)
    return out


def _item(names: list[str], row: list[str]) -> tuple[dict[str, Any], str | None]:
    """A row as a schedule_posts item, or why it is not one."""
    if len(row) > len(names):
        return {}, f"{len(row)} cells, the header names {len(names)}"
    cells = {name: row[i] if i < len(row) else "" for i, name in enumerate(names)}
    if not cells["scheduledAt"].strip():
        return {}, "scheduledAt is empty"
    accounts = _split(cells["accounts"])
    if not accounts:
        return {}, "accounts is empty"
    item: dict[str, Any] = {"scheduledAt": cells["scheduledAt"].strip(), "targets": [{"accountId": a} for a in accounts]}
    for name in ("text", "firstComment", "title"):
        if cells.get(name):
            item[name] = cells[name]
    for name in ("timezone", "visibility", "campaign"):
        if cells.get(name, "").strip():
            item[name] = cells[name].strip()
    if cells.get("media", "").strip():
        alts = [a.strip() for a in cells.get("altText", "").split(";")]
        item["media"] = []
        for i, ref in enumerate(_split(cells["media"])):
            medium: dict[str, Any] = {"url": ref} if ref.lower().startswith(("http://", "https://")) else {"mediaId": ref}
            if i < len(alts) and alts[i]:
                medium["altText"] = alts[i]
            item["media"].append(medium)
    if cells.get("thread", "").strip():
        parts = re.split(r"\r?\n---\r?\n| \|\| ", cells["thread"])
        item["thread"] = [p.strip() for p in parts if p.strip()]
    flag = cells.get("skipDuplicateCheck", "").strip().lower()
    if flag not in _TRUE | _FALSE:
        return {}, f"skipDuplicateCheck '{flag[:20]}' is not true or false"
    if flag in _TRUE:
        item["skipDuplicateCheck"] = True
    return item, None


def at_line(path: str | None, line: int) -> str:
    """`items[4].targets[0].text` -> `line 7: targets[0].text`."""
    rest = re.sub(r"^items\[\d+\]\.?", "", path or "")
    return f"line {line}" + (f": {rest}" if rest else "")
