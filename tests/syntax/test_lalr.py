"""The parser's table cache: a broken or unwritable cache never stops a parse. The lean
LALR driver: the same ASTs, spans and diagnostics as Lark's own parse and tree, and in
use for every valid text with the installed Lark (a Lark it does not know fails here)."""

import dataclasses
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdsl import cachedir
from netdsl.syntax import parser
from netdsl.syntax.lalr import tables_name

SPEC = "network n() { input [3, 8, 8]\n conv2d(4, 3) }"


@pytest.fixture
def fresh_parser(monkeypatch):
    """Each test builds the parser again under its own cache directory (and parses its
    text again: the parser keeps the ASTs of texts it has seen)."""
    parser._lark.cache_clear()
    parser._PARSED.clear()
    yield monkeypatch
    monkeypatch.undo()
    cachedir.open_cache(fresh=True)
    parser._lark.cache_clear()
    parser._PARSED.clear()


def _use(monkeypatch, directory) -> None:
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(directory))
    cachedir.open_cache(fresh=True)


def _written(tmp_path):
    return sorted(tmp_path.glob("lark-*.tables"))


def _rebuild():
    parser._lark.cache_clear()
    parser._PARSED.clear()


def test_tables_are_written_then_read_back(fresh_parser, tmp_path):
    _use(fresh_parser, tmp_path)
    first = parser.parse(SPEC)
    (path,) = _written(tmp_path)
    stamp = path.stat().st_mtime_ns
    _rebuild()
    assert parser.parse(SPEC) == first
    assert path.stat().st_mtime_ns == stamp  # loaded, not rebuilt


@pytest.mark.slow
def test_the_tables_load_from_the_cache_in_a_new_process(tmp_path):
    # The tables are read back through Lark's deserialisation (Lark._load_from_dict): a
    # Lark that changed it must fail here, not make every process build them silently.
    code = ("from netdsl.syntax import lalr, parser\n"
            "import importlib.resources as r\n"
            "g = r.files('netdsl.syntax').joinpath('grammar.lark').read_text()\n"
            "opts = dict(parser='lalr', lexer='contextual', start=['start', 'expr'],"
            " propagate_positions=True, maybe_placeholders=True)\n"
            "lark, cached = lalr.build_lark(g, parser._ParenNewlines(), opts)\n"
            "print(cached, lark.parse('network n() { input [1]\\n relu }', start='start').data)\n")
    env = {**os.environ, "NETDSL_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            for _ in range(2)]
    assert [r.stdout.split() for r in runs] == [["False", "start"], ["True", "start"]], runs


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"garbage\n", b"0" * 64 + b"\n" + pickle.dumps([1, 2])])
def test_a_corrupt_cache_is_rebuilt(fresh_parser, tmp_path, content):
    _use(fresh_parser, tmp_path)
    parser.parse(SPEC)
    (path,) = _written(tmp_path)
    good = path.read_bytes()
    path.write_bytes(content)
    _rebuild()
    assert parser.parse(SPEC).items[0].name == "n"
    assert path.read_bytes()[:8] == good[:8]  # rebuilt and stored again
    assert cachedir.open_cache().read(path.name, 2**24) is not None


def test_an_unusable_cache_directory_means_no_cache(fresh_parser, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    _use(fresh_parser, blocker / "cache")
    assert cachedir.open_cache() is None
    assert parser.parse(SPEC).items[0].name == "n"


def test_the_cache_can_be_turned_off(fresh_parser, tmp_path):
    fresh_parser.setenv("HOME", str(tmp_path))
    _use(fresh_parser, "")
    assert parser.parse(SPEC).items[0].name == "n"
    assert not list(tmp_path.rglob("lark-*"))


def test_an_edited_grammar_gets_its_own_file():
    assert tables_name("start: 'a'", {}) != tables_name("start: 'b'", {})


def _reference_lark():
    """The parser as Lark builds it, without the pass-through reductions."""
    from importlib import resources

    from lark import Lark

    grammar = resources.files("netdsl.syntax").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", start=["start", "expr"],
                propagate_positions=True, maybe_placeholders=True, postlex=parser._ParenNewlines())


def _shape(tree):
    """Every subtree's rule, position and tokens: what the AST builder reads."""
    from lark import Tree

    return [(t.data, *(getattr(t.meta, k, None) for k in ("line", "column", "end_line", "end_column")),
             [(c.type, str(c), c.line, c.column) if not isinstance(c, Tree) and c is not None else None
              for c in t.children])
            for t in tree.iter_subtrees()]


@pytest.mark.slow
def test_pass_through_reductions_give_the_same_trees():
    from pathlib import Path

    from lark.exceptions import UnexpectedInput

    root = Path(__file__).resolve().parents[2]
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


# ---------------------------------------------------------------- the lean driver

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import fuzz  # noqa: E402
import fuzz_specs  # noqa: E402

from netdsl.diagnostics import NetdslError  # noqa: E402
from netdsl.limits import Limits  # noqa: E402
from netdsl.span import Span  # noqa: E402

FILES = sorted([*ROOT.glob("specs/*.net"), *ROOT.glob("netdsl/stdlib/**/*.net"),
                *ROOT.glob("tests/fixtures/**/*.net")])


def _ast_shape(x):
    """An AST as nested tuples, every span's fields included (spans compare equal to
    any span, so ``==`` on ASTs would miss a wrong position), and each leaf's type."""
    if isinstance(x, Span):
        return ("Span", *x.as_dict().values())
    if dataclasses.is_dataclass(x):
        return (type(x).__name__, *((f.name, _ast_shape(getattr(x, f.name))) for f in dataclasses.fields(x)))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, *map(_ast_shape, x))
    return (type(x).__name__, x)


def _outcome(run):
    try:
        return _ast_shape(run())
    except NetdslError as e:
        return [(d.code, d.message, _ast_shape(d.span), d.label, d.help, d.notes) for d in e.diagnostics]


def _both(run):
    """What ``run`` gives by the lean driver, then by the plain path (Lark's tree).

    Where ``run`` succeeds, the lean driver must have taken every text it was given
    (the spec, and each ``{hole}`` of its strings): a text it declined there, so that
    the plain path parsed it, would be the silent slowdown of a Lark it no longer fits."""
    parser._PARSED.clear()
    declined = []
    fast_path = parser._fast

    def spied(text, start, builder):
        node = fast_path(text, start, builder)
        if node is None:
            declined.append((start, text[:60]))
        return node

    with mock.patch.object(parser, "_fast", spied):
        fast = _outcome(run)
    if not isinstance(fast, list):  # an AST, not diagnostics
        assert not declined, f"the lean driver declined valid text: {declined}"
    with mock.patch.object(parser, "_lean", lambda: None):
        parser._PARSED.clear()
        plain = _outcome(run)
    parser._PARSED.clear()
    return fast, plain


def test_the_installed_lark_is_the_one_the_lean_driver_knows(fresh_parser, tmp_path):
    """The lean driver reads Lark's internals (lalr.LeanParser's docstring lists them).
    Where a Lark release changes them, netdsl still parses, by the ~2.5x slower tree
    path (docs/benchmarks.md), so that change must fail here, naming what changed:
    the driver over the tables as built and as loaded back from the cache (through
    ``Lark._load_from_dict``), every state's lexer in the form it reads, and the
    pass-through reductions made free on the tree path."""
    import lark as lark_module
    from lark import Lark

    from netdsl.syntax import lalr

    _use(fresh_parser, tmp_path)
    for from_cache in (False, True):
        _rebuild()
        parser._lean_over.cache_clear()
        with mock.patch.object(Lark, "_load_from_dict", wraps=Lark._load_from_dict) as loads:
            lark = parser._lark()
        assert loads.called == from_cache, f"the tables did not load from the cache ({from_cache})"
        try:
            lean = lalr.LeanParser(lark, parser._rule_methods(parser._Builder), parser._NESTS)
        except lalr.Unsupported as e:
            pytest.fail(f"lark {lark_module.__version__} is not the Lark the lean driver knows: {e}")
        unknown = [state for state in lean.actions if lean._lexer(state) is None]
        assert not unknown, f"lark {lark_module.__version__}: lexers of another form in states {unknown}"
        assert lalr.skip_unit_reductions(lark) > 10
        assert parser._lean() is not None
    parser._lean_over.cache_clear()


def test_the_lean_driver_is_in_use_on_the_shipped_specs():
    assert parser._lean() is not None
    for path in ROOT.glob("specs/*.net"):
        text = path.read_text(encoding="utf-8")
        assert parser._fast(text, "start", parser._Builder(str(path), text)) is not None, path.name


def test_the_shape_sees_a_moved_span():
    a, b = parser.parse("network n() { relu }"), parser.parse("network n() {  relu }")
    assert a == b and _ast_shape(a) != _ast_shape(b)


@pytest.mark.slow
def test_every_file_gives_the_same_ast_or_the_same_diagnostics():
    assert len(FILES) > 100
    for path in FILES:
        text = path.read_text(encoding="utf-8", errors="replace")
        fast, plain = _both(lambda text=text, path=path: parser.parse(text, str(path)))
        assert fast == plain, path.name


def _relaid(text: str, rng: random.Random) -> str:
    """``text`` with other white space: tabs, form feeds, CRLF, comments, blank lines,
    line breaks inside brackets (which the post-lexer drops) and now and then none."""
    out, depth = [], 0
    for tok in fuzz.tokens(text):
        if tok in ("(", "["):
            depth += 1
        elif tok in (")", "]"):
            depth = max(0, depth - 1)
        if tok == "\n":
            tok = rng.choice(["\n", "\r\n", "  # note\n", "\n\n    "] if not depth else
                             ["\n", "\n      ", " # in brackets\n"])
        elif tok.isspace():
            tok = rng.choice([" ", "\t", "  ", "\f ", ""] + (["\n  ", " # c\n"] if depth else []))
        out.append(tok)
    return "".join(out)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3))
def test_generated_and_mutated_specs_give_the_same_ast_or_diagnostics(seed, how):
    rng = random.Random(seed)
    texts = [p.read_text(encoding="utf-8") for p in fuzz.SOURCES]
    if how == 0:  # a new spec from the fuzzer's generators
        text = fuzz_specs.generate(rng)[1]
    elif how == 1:  # a shipped spec after the fuzzer's mutations (often broken)
        text = fuzz.make_input(seed, 0, texts, ["relu", "x", "in_channels"]).data.decode("utf-8", "replace")
    else:  # a shipped spec laid out anew
        text = _relaid(rng.choice(texts), rng)
    limits = Limits(max_nesting=rng.choice([3, 6, 10, 100])) if how == 3 else Limits()
    fast, plain = _both(lambda: parser.parse(text, "g.net", limits))
    assert fast == plain


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32))
def test_expressions_give_the_same_ast_or_diagnostics(seed):
    rng = random.Random(seed)
    text = fuzz_specs._expr(rng)
    if rng.random() < 0.3:
        text = text[:rng.randrange(len(text) + 1)]
    fast, plain = _both(lambda: parser.parse_expr(text))
    assert fast == plain
    hole = f'network n() {{ input [1]\n "a{{{text}}}": relu }}'  # the same expression in a label's hole
    fast, plain = _both(lambda: parser.parse(hole, "h.net", Limits(max_nesting=4)))
    assert fast == plain


def test_the_nesting_limit_is_reported_as_before():
    text = ('network n(a = [[1, 2], [- - 3]]) {\n input [1]\n'
            ' "b{- - - 1}": { c: { relu } }\n if 1 + 2 * 3 > 0 { relu } else if true { relu }\n}\n')
    seen = set()
    for limit in range(1, 10):
        fast, plain = _both(lambda limit=limit: parser.parse(text, "d.net", Limits(max_nesting=limit)))
        assert fast == plain
        seen.add(fast[0][0] if isinstance(fast, list) else "ok")
        fast, plain = _both(lambda limit=limit: parser.parse_expr("[- - 1, [2]]", Limits(max_nesting=limit)))
        assert fast == plain
        seen.add(fast[0][0] if isinstance(fast, list) else "ok")
    assert seen == {"E0402", "ok"}


def test_a_syntax_error_is_the_plain_paths_and_leaves_nothing_cached():
    text = "network n() {\n    conv2d(4, 3\n    relu\n}\n"
    with pytest.raises(NetdslError) as e:
        parser.parse(text, "s.net")
    assert parser._fast(text, "start", parser._Builder("s.net", text)) is None
    assert e.value.diagnostics[0].notes == ("this `(` at 2:11 is not closed",)
    assert not any(key[0] == text for key in parser._PARSED)


def test_a_lark_without_what_the_driver_relies_on_means_the_plain_path(monkeypatch):
    from types import SimpleNamespace

    from netdsl.syntax import lalr

    lark = parser._lark()
    with pytest.raises(lalr.Unsupported):
        lalr.LeanParser(SimpleNamespace(options=lark.options), parser._rule_methods(parser._Builder),
                        parser._NESTS)
    with pytest.raises(lalr.Unsupported):  # a rule the builder has no method for
        lalr.LeanParser(lark, {}, parser._NESTS)

    lean = lalr.LeanParser(lark, parser._rule_methods(parser._Builder), parser._NESTS)
    lean._unless = type(None)  # a scanner whose keyword callbacks it does not know
    with pytest.raises(lalr.Declined):
        lean.parse(SPEC, "start", parser._Builder(None, SPEC), 100)

    def missing(*args):
        raise lalr.Unsupported("no such attribute")

    text = (ROOT / "specs" / "resnet50.net").read_text(encoding="utf-8")
    expected = _ast_shape(parser.parse(text, "r.net"))
    monkeypatch.setattr(lalr, "LeanParser", missing)
    parser._lean_over.cache_clear()
    parser._PARSED.clear()
    try:
        assert parser._lean() is None
        assert _ast_shape(parser.parse(text, "r.net")) == expected
    finally:
        parser._lean_over.cache_clear()
        parser._PARSED.clear()
