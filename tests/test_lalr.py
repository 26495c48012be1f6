"""The parser's table cache: a broken or unwritable cache never stops a parse."""

import pickle

import pytest

from netdsl import parser
from netdsl.lalr import cache_file

SPEC = "network n() { input [3, 8, 8]\n conv2d(4, 3) }"


@pytest.fixture
def fresh_parser(monkeypatch):
    """Each test builds the parser again under its own cache directory (and parses its
    text again: the parser keeps the ASTs of texts it has seen)."""
    parser._lark.cache_clear()
    parser._PARSED.clear()
    yield monkeypatch
    parser._lark.cache_clear()
    parser._PARSED.clear()


def _written(tmp_path):
    return sorted(tmp_path.glob("lark-*.pickle"))


def test_tables_are_written_then_read_back(fresh_parser, tmp_path):
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    first = parser.parse(SPEC)
    (path,) = _written(tmp_path)
    stamp = path.stat().st_mtime_ns
    parser._lark.cache_clear()
    parser._PARSED.clear()
    assert parser.parse(SPEC) == first
    assert path.stat().st_mtime_ns == stamp  # loaded, not rebuilt


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"0" * 64 + b"\n" + pickle.dumps([1, 2])])
def test_a_corrupt_cache_is_rebuilt(fresh_parser, tmp_path, content):
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    parser.parse(SPEC)
    (path,) = _written(tmp_path)
    good = path.read_bytes()
    path.write_bytes(content)
    parser._lark.cache_clear()
    parser._PARSED.clear()
    assert parser.parse(SPEC).items[0].name == "n"
    assert path.read_bytes().split(b"\n", 1)[0] == good.split(b"\n", 1)[0]


def test_an_unusable_cache_directory_means_no_cache(fresh_parser, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(blocker / "cache"))
    assert cache_file("start: 'a'", {}) is False
    assert parser.parse(SPEC).items[0].name == "n"


def test_the_cache_can_be_turned_off(fresh_parser, tmp_path):
    fresh_parser.setenv("NETDSL_CACHE_DIR", "")
    fresh_parser.setenv("HOME", str(tmp_path))
    assert parser.parse(SPEC).items[0].name == "n"
    assert not list(tmp_path.rglob("lark-*.pickle"))


def test_an_edited_grammar_gets_its_own_file(fresh_parser, tmp_path):
    fresh_parser.setenv("NETDSL_CACHE_DIR", str(tmp_path))
    assert cache_file("start: 'a'", {}) != cache_file("start: 'b'", {})


def _reference_lark():
    """The parser as Lark builds it, without the pass-through reductions."""
    from importlib import resources

    from lark import Lark

    grammar = resources.files("netdsl").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", start=["start", "expr"],
                propagate_positions=True, maybe_placeholders=True, postlex=parser._ParenNewlines())


def _shape(tree):
    """Every subtree's rule, position and tokens: what the AST builder reads."""
    from lark import Tree

    return [(t.data, *(getattr(t.meta, k, None) for k in ("line", "column", "end_line", "end_column")),
             [(c.type, str(c), c.line, c.column) if not isinstance(c, Tree) and c is not None else None
              for c in t.children])
            for t in tree.iter_subtrees()]


def test_pass_through_reductions_give_the_same_trees():
    from pathlib import Path

    from lark.exceptions import UnexpectedInput

    root = Path(__file__).resolve().parent.parent
    files = sorted([*root.glob("specs/*.net"), *root.glob("netdsl/stdlib/**/*.net"),
                    *root.glob("tests/fixtures/**/*.net")])
    files = [p for p in files if p.stat().st_size < 8000]  # the crash fixtures' long chains add nothing
    assert len(files) > 20
    ref, ours = _reference_lark(), parser._lark()
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        outcomes = []
        for lark in (ref, ours):
            try:
                outcomes.append(_shape(lark.parse(text, start="start")))
            except UnexpectedInput as e:
                outcomes.append((type(e).__name__, e.line, e.column))
        assert outcomes[0] == outcomes[1], path.name
