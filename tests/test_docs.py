"""The documentation stands on its own: links resolve, Python blocks parse, every page is in the site, and no
page points at files or tracking outside this repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]
PACKAGES = ("adversarial", "privacy", "sparse", "compress", "data", "models", "report", "training")

FENCED = re.compile(r"^```.*?^```[ \t]*$", re.DOTALL | re.MULTILINE)
PYTHON = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# phrasing that points outside the repository or at how the work was organised
OUTSIDE = {
    "a path out of the repository": re.compile(r"\.\./shared|(?<![\w.])shared/"),
    "an issue tracker": re.compile(r"\bissues?\b", re.IGNORECASE),
    "a design or reading digest": re.compile(r"\bdigest\.(?:md|txt)\b|\b(?:design|paper|reading) digests?\b",
                                             re.IGNORECASE),
    "a design document": re.compile(r"\bdesign (?:doc|document|file|notes?)\b", re.IGNORECASE),
    "a section number of an outside document": re.compile(r"\(A\d+(?:\.\d+)?[,;)]|\bA\d+\.\d+\b"),
    "a missed target": re.compile(r"\btargets? (?:was |were )?(?:not )?(?:met|missed)\b", re.IGNORECASE),
}


def prose(path: Path) -> str:
    """The page without fenced code blocks and code spans (code may contain anything)."""
    return CODE_SPAN.sub("", FENCED.sub("", path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """The anchor GitHub and MkDocs give a heading: lowercase words joined by '-', punctuation dropped."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r" ", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCED.sub("", path.read_text(encoding="utf-8")))}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists():
            shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved
            broken.append(f"{target} (no {shown})")
        elif not resolved.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif anchor.startswith("modelsafe."):  # an API object's anchor: `mkdocs build --strict` checks those
            continue
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


@pytest.mark.parametrize("page", [*PAGES, *sorted((ROOT / "examples").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_references_outside_the_repository(page):
    text = prose(page) if page.suffix == ".md" else page.read_text(encoding="utf-8")
    found = [f"{what}: {m.group(0)!r} (line {text[:m.start()].count(chr(10)) + 1})"
             for what, pattern in OUTSIDE.items() for m in pattern.finditer(text)]
    assert not found, f"{page.relative_to(ROOT)}: {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_parse(page):
    for number, block in enumerate(PYTHON.findall(page.read_text(encoding="utf-8")), 1):
        compile(block, f"{page.name}, python block {number}", "exec")


def nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_site_lists_every_page_and_package():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    for package in PACKAGES:
        page = DOCS / "api" / f"{package}.md"
        assert f"api/{package}.md" in listed
        assert re.search(rf"^::: modelsafe\.{package}$", page.read_text(encoding="utf-8"), re.MULTILINE), page


def test_docs_extra_builds_the_site():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    docs = re.search(r"^docs = \[(.*?)\]", pyproject, re.MULTILINE)
    assert docs and "mkdocs" in docs.group(1) and "mkdocstrings" in docs.group(1)
