"""docs/language.md's own structure stays true: its contents list is its sections,
its layer table is the catalogue, and each construct sits in the section about it."""

import re
from pathlib import Path

import doc_blocks

ROOT = Path(__file__).resolve().parents[2]
LANGUAGE = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


def _contents(text: str) -> list[tuple[str, str]]:
    """(title, anchor) of each link of the page's `Contents:` paragraph, in order."""
    paragraph = re.search(r"^Contents: (.*?)(?:\n\n|\Z)", text, re.M | re.S).group(1)
    return re.findall(r"\[([^\]]+)\]\(#([^)\s]+)\)", paragraph)


def test_the_contents_list_every_section_in_order():
    sections = doc_blocks.headings(LANGUAGE, 2)
    assert len(sections) > 10
    assert _contents(LANGUAGE) == [(title, doc_blocks.slug(title)) for title in sections]


def test_a_section_missing_from_the_contents_is_found():
    text = "Contents: [A](#a) · [C](#c)\n\n## A\n\n```text\n## not a section\n```\n\n## B\n\n## C\n"
    sections = doc_blocks.headings(text, 2)
    assert sections == ["A", "B", "C"]
    assert _contents(text) != [(title, doc_blocks.slug(title)) for title in sections]
