"""Every documentation link omnipost hands out or commits resolves (issue 11 item 7): the generated rule and error
pages are current, each rule's docUrl into this repository names a file and an anchor that exist, and every
relative link of README.md and docs/*.md reaches a file (and its anchor)."""

import re
from pathlib import Path

import pytest

from omnipost import docpages
from omnipost.errors import AppError
from omnipost.preflight.rules import CATALOGUE
from omnipost.validation import rule_uri

ROOT = Path(__file__).resolve().parents[1]
REPO_BLOB = docpages.REPO_URL + "/blob/main/"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """Explicit `<a id>` anchors and GitHub's heading slugs."""
    text = path.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return found


def resolves(target: Path, anchor: str | None) -> bool:
    return target.is_file() and (anchor is None or anchor in anchors(target))


@pytest.mark.parametrize("name", sorted(docpages.pages()))
def test_generated_pages_are_current(name: str) -> None:
    committed = ROOT / "docs" / name
    assert committed.is_file() and committed.read_text(encoding="utf-8") == docpages.pages()[name], (
        f"docs/{name} is stale: run python -m omnipost.docpages")


def test_every_rule_and_error_code_has_its_anchor() -> None:
    assert {r.id for r in CATALOGUE.values()} <= anchors(ROOT / "docs" / "rules.md")
    codes = {cls.code for cls in _subclasses(AppError)}
    assert {"not_found", "preflight_failed", "unauthenticated", "platform_outcome_unknown"} <= codes
    assert codes <= anchors(ROOT / "docs" / "errors.md")


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_every_rule_doc_url_into_the_repository_resolves() -> None:
    own = [r for r in CATALOGUE.values() if r.doc_url.startswith(docpages.REPO_URL)]
    assert {"post.duplicate", "media.unknown", "media.url_unreachable"} <= {r.id for r in own}
    for rule in CATALOGUE.values():
        assert rule.doc_url.startswith("https://"), rule.id
        assert rule_uri(rule.id) == f"omnipost://rules/{rule.id}"
        if rule.doc_url.startswith(docpages.REPO_URL):
            assert rule.doc_url.startswith(REPO_BLOB), rule.doc_url
            path, _, anchor = rule.doc_url[len(REPO_BLOB):].partition("#")
            assert resolves(ROOT / path, anchor or None), rule.doc_url


@pytest.mark.parametrize("page", ["README.md", "docs/rules.md", "docs/errors.md", "docs/rest.md"])
def test_every_relative_link_resolves(page: str) -> None:
    source = ROOT / page
    checked = 0
    for link in LINK.findall(source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", link):  # https:, mailto:, omnipost:
            continue
        path, _, anchor = link.partition("#")
        target = (source.parent / path).resolve() if path else source
        assert resolves(target, anchor or None), f"{page}: {link}"
        checked += 1
    assert checked > 0


def test_a_missing_anchor_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text('<a id="x.y"></a>\n\n## Some Heading\n', encoding="utf-8")
    assert resolves(page, "x.y") and resolves(page, "some-heading") and resolves(page, None)
    assert not resolves(page, "nope") and not resolves(tmp_path / "missing.md", None)
