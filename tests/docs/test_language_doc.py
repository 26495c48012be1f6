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


def _shown(value) -> str:
    """A default as the spec language writes it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "none"}[value]
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _layer_table(text: str) -> list[str]:
    """The code spans of the first column of the `| layer | meaning |` table, in order."""
    table = text.split("| layer | meaning |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    return [span for row in table.splitlines() for span in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def test_the_layer_table_gives_every_layer_kind_once_with_its_signature():
    from netdsl.layers import LAYERS, REQUIRED

    spans = _layer_table(LANGUAGE)
    kinds = [re.match(r"\w+", s).group(0) for s in spans]
    repeated = sorted({k for k in kinds if kinds.count(k) > 1})
    assert not repeated, f"rows repeated in the layer table: {repeated}"
    assert sorted(kinds) == sorted(LAYERS)
    for span, kind in zip(spans, kinds, strict=True):
        args = ", ".join(a.name if a.default is REQUIRED else f"{a.name} = {_shown(a.default)}"
                         for a in LAYERS[kind].args)
        assert span == (f"{kind}({args})" if args else kind)


def test_a_repeated_row_of_the_layer_table_is_found():
    text = ("| layer | meaning |\n|---|---|\n| `relu(inplace = false)`, `sigmoid` | a |\n"
            "| `flatten` | b |\n| `sigmoid` | c |\n\nafter\n")
    assert _layer_table(text) == ["relu(inplace = false)", "sigmoid", "flatten", "sigmoid"]


def _sections_of(text: str) -> dict[str, str]:
    """Each `###` heading → the `##` section it sits in."""
    out, section = {}, ""
    for level, title in re.findall(r"^(##+)\s+(.*?)\s*$", doc_blocks.prose(text), re.M):
        if level == "##":
            section = title
        elif level == "###":
            out[title] = section
    return out


def _combinators() -> set[str]:
    """The constructs whose IR node holds bodies of its own: every kind but the group."""
    import typing

    from netdsl import ir

    nodes = typing.get_args(typing.get_args(ir.AnyNode)[0])
    return {n.model_fields["kind"].default for n in nodes if n.body_fields} - {"scope"}


def test_every_combinator_is_described_under_combinators():
    combinators = _combinators()
    assert {"residual", "concat", "dense", "gate", "split", "side"} <= combinators
    placed = {re.match(r"`(\w+)", h).group(1): s for h, s in _sections_of(LANGUAGE).items()
              if re.match(r"`(\w+)", h)}
    for kind in combinators:
        assert placed.get(kind) == "Combinators", f"`{kind}` is described under {placed.get(kind)!r}"


_COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}


def test_a_count_of_connection_kinds_is_the_number_described():
    # The page once said "four kinds of connection" after a fifth and a sixth were added.
    described = sum(1 for s in _sections_of(LANGUAGE).values() if s == "Combinators")
    assert described == len(_combinators())
    stated = re.findall(r"\b(\w+) (?:kinds of connection|connection patterns|combinators)\b",
                        doc_blocks.prose(LANGUAGE), flags=re.I)
    for word in stated:
        count = int(word) if word.isdigit() else _COUNTS.get(word.lower())
        assert count is None or count == described, f"the page says {word}, it describes {described}"


def test_a_construct_under_another_section_is_found():
    text = "## Combinators\n\n### `residual`\n\n## Class names\n\n### `split { ... }`\n"
    assert _sections_of(text) == {"`residual`": "Combinators", "`split { ... }`": "Class names"}


def test_the_layers_apply_takes_are_the_checkers():
    from netdsl.check.calls import FUNCTIONS

    text = " ".join(LANGUAGE.split())
    listed = re.search(r"It takes ([\w, ]+?) \(E0118 for others\)", text).group(1)
    assert sorted(re.split(r",\s*|\s+and\s+", listed)) == sorted(FUNCTIONS)
