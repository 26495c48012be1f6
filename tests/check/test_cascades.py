"""One mistake, one diagnostic: an error must not cause others that the user did not make.

Every shipped spec (specs/*.net) and the standard library (netdsl/stdlib) is checked
with one mistake made in it, at one place at a time, of each kind in :data:`KINDS`: a
layer's first argument replaced by a name that is not defined, a layer's name or its
first keyword misspelled, an expression a statement evaluates (a `let`, a loop's range,
a condition, a count, a default) replaced by an undefined name, an invalid label, a
misspelled read of a named result, a `-> NAME` deleted. The spec, and every spec that
imports it, must then give exactly one diagnostic, at the place of the mistake (for a
deleted `-> NAME`, at the statement that reads it), or none where the network never
reaches that place (a branch not taken). A later rule that looks up what the mistake
left unknown (a label for `init` or `reuse`, a named result, a side output, a shape)
stays silent about it, and a block's instances report a mistake in it once.

The fast subset checks :data:`SAMPLE` places of each kind in the first spec each
reaches; the slow test every place, in every spec.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from shipped import grant_for

import netdsl
from netdsl import NetdslError
from netdsl.syntax import ast
from netdsl.syntax.loader import stdlib_dir
from netdsl.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = 10  # places of each kind in the fast subset
UNDEFINED = "nosuchname"

#: A mistake made at one place: the line changed, its new text, and the lines where
#: its one diagnostic may be.
Site = tuple[int, str, frozenset[int]]


def _nodes(node) -> Iterator:
    """Every AST node in ``node``, in source order."""
    if isinstance(node, (list, tuple)):
        for x in node:
            yield from _nodes(x)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        yield node
        for f in dataclasses.fields(node):
            yield from _nodes(getattr(node, f.name))


def _replace(lines: list[str], span, text: str | Callable[[str], str], at=None) -> Site | None:
    """The site that replaces what ``span`` covers on its line by ``text`` (or by what
    ``text`` makes of it); None for a span over several lines."""
    if span is None or span.end_line not in (None, span.line) or span.end_column is None:
        return None
    line = lines[span.line - 1]
    old = line[span.column - 1:span.end_column - 1]
    new = text(old) if callable(text) else text
    return span.line, line[:span.column - 1] + new + line[span.end_column - 1:], frozenset(at or {span.line})


def _argument(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """A layer's or block's first argument replaced by an undefined name (E0101)."""
    for n in _nodes(module.items):
        if isinstance(n, ast.Use) and n.args:
            yield _replace(lines, getattr(n.args[0].value, "span", None), UNDEFINED)


def _layer(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """A layer's or block's name misspelled (E0102, or E0118 after `apply`)."""
    for n in _nodes(module.items):
        if isinstance(n, ast.Use):
            span = n.span.replace(end_line=n.span.line, end_column=n.span.column + len(n.name))
            if lines[span.line - 1][span.column - 1:span.end_column - 1] == n.name:
                yield _replace(lines, span, n.name + "x")


def _value(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """An expression a statement evaluates replaced by an undefined name: a `let`'s value,
    a loop's range, a condition, a count, a default, an input shape, an init scheme."""
    # A block's `input x` declares a name and evaluates nothing.
    declared = {id(n) for b in module.items if isinstance(b, ast.BlockDef) for n in _nodes(b.body)
                if isinstance(n, ast.Input) and isinstance(n.shape, ast.Name)}
    for n in _nodes(module.items):
        if id(n) in declared:
            continue
        exprs = ([n.value] if isinstance(n, ast.Let) else [n.iterable] if isinstance(n, ast.For) else
                 [n.cond] if isinstance(n, (ast.If, ast.Residual, ast.Shortcut)) else
                 [n.count] if isinstance(n, ast.Repeat) else [n.default] if isinstance(n, ast.Param) else
                 [n.shape] if isinstance(n, (ast.Input, ast.NamedInput)) else
                 [n.scheme] if isinstance(n, ast.Init) else [n.sizes] if isinstance(n, ast.Split) else
                 [a.value for a in n.args] if isinstance(n, ast.NetworkAlias) else [])
        for e in exprs:
            yield _replace(lines, getattr(e, "span", None), UNDEFINED)


def _label(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """A label that cannot name a module (E0111)."""
    for n in _nodes(module.items):
        if isinstance(n, (ast.Labelled, ast.Shortcut)) and n.label is not None:
            yield _replace(lines, n.label.span, '"bad..label"')


def _typo(text: str) -> str:
    return text[:-1] + 'x"' if text.endswith('"') else text + "x"


def _read(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """A named result read under a misspelled name (E0125, "did you mean")."""
    for n in _nodes(module.items):
        refs = ([n.source] if isinstance(n, (ast.From, ast.OutputEntry)) else
                list(n.sources) if isinstance(n, ast.Merge) else [])
        for ref in refs:
            yield _replace(lines, ref.span, _typo)


def _unbound(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """A `-> NAME` deleted where one statement reads NAME (E0125 there): one written the
    same, and no other with a template that can give the same name (`"c{i}"`,
    `"c{i + 1}"`, `"c0"`). Not one of several names (`-> y, z`), which go together."""
    readers: dict[str, list[int]] = {}
    for n in _nodes(module.items):
        refs = ([n.source] if isinstance(n, (ast.From, ast.OutputEntry)) else
                list(n.sources) if isinstance(n, ast.Merge) else [])
        for ref in refs:
            readers.setdefault(_form(lines, ref.span), []).append(ref.span.line)
    for n in _nodes(module.items):
        if isinstance(n, ast.Bind) and n.unit is not None and not n.more:
            form = _form(lines, n.target.span)
            at = [line for f, ls in readers.items() if _may_meet(form, f) for line in ls]
            if len(at) == 1 and n.target.span.line == n.span.line:
                line = lines[n.span.line - 1]
                arrow = line.rindex("->", 0, n.target.span.column - 1)
                yield n.span.line, line[:arrow].rstrip() + line[n.target.span.end_column - 1:], frozenset(at)


def _may_meet(a: str, b: str) -> bool:
    """Whether two forms of names may give one name: `c{}_{}` and `c{}_0` may."""
    def pattern(form: str) -> str:
        return ".*".join(map(re.escape, form.split("{}")))
    return bool(re.fullmatch(pattern(a), b) or re.fullmatch(pattern(b), a))


def _form(lines: list[str], span) -> str:
    """A name as written, its templates' values left out: `"c{i + 2}"` is `c{}`."""
    return re.sub(r"\{[^}]*\}", "{}", lines[span.line - 1][span.column - 1:span.end_column - 1].strip('"'))


def _keyword(module: ast.Module, lines: list[str]) -> Iterator[Site | None]:
    """A layer's or block's first keyword misspelled (E0202, "did you mean")."""
    for n in _nodes(module.items):
        if isinstance(n, ast.Use):
            a = next((a for a in n.args if a.name is not None), None)
            if a is not None:
                yield _replace(lines, a.span.replace(end_line=a.span.line, end_column=a.span.column + len(a.name)),
                               a.name + "x")


KINDS: dict[str, Callable[[ast.Module, list[str]], Iterator[Site | None]]] = {
    "argument": _argument, "layer": _layer, "value": _value, "label": _label, "read": _read,
    "unbound": _unbound, "keyword": _keyword,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[Path, list[Path]]:
    """The shipped specs and the standard library, in a folder of their own (the specs
    import the copy of the library, ``stdlib/blocks.net``, instead of ``std/``): each
    file, and the files to compile to check it."""
    root = tmp_path_factory.mktemp("corpus")
    for path in sorted((ROOT / "specs").glob("*.net")):
        (root / path.name).write_text(path.read_text().replace('import "std/', 'import "stdlib/'))
    shutil.copytree(stdlib_dir(), root / "stdlib", ignore=shutil.ignore_patterns("__*"))
    return _importers(root)


def _importers(root: Path) -> dict[Path, list[Path]]:
    """Each spec file → the files to compile to check it: itself where it defines a
    network, and every file that imports it, directly or not."""
    files = sorted(root.glob("*.net")) + sorted((root / "stdlib").glob("*.net"))
    imports = {f: {(f.parent / m).resolve() for m in re.findall(r'^import "([^"]+)"', f.read_text(), re.M)}
               for f in files}
    out = {}
    for f in files:
        users = {f.resolve()}
        while True:
            more = {g.resolve() for g in files if g.resolve() not in users and imports[g] & users}
            if not more:
                break
            users |= more
        out[f] = [g for g in files if g.resolve() in users
                  and any(isinstance(i, (ast.NetworkDef, ast.NetworkAlias)) for i in parse(g.read_text()).items)]
    return out


def _diagnostics(path: Path) -> list:
    # A copy of a shipped spec gets the shipped spec's grant: its externs are no mistake.
    shipped = ROOT / "specs" / path.name
    try:
        netdsl.compile(path, grant=grant_for(shipped) if shipped.exists() else None)
    except NetdslError as e:
        return e.diagnostics
    return []


def _check(importers: dict[Path, list[Path]], kind: str, sample: int | None) -> tuple[list[str], int, int]:
    """Make each mistake of ``kind`` (or ``sample`` of them, spread evenly over the corpus)
    and compile what it reaches (every spec it reaches, or with ``sample`` the first): the
    cascades found, the places tried and those some compile reached."""
    texts = {path: path.read_text() for path in importers}
    sites = [(path, site) for path, text in texts.items()
             for site in sorted({s for s in KINDS[kind](parse(text, str(path)), text.split("\n")) if s is not None})]
    if sample is not None:
        sites = [sites[i * len(sites) // sample] for i in range(min(sample, len(sites)))]
    cascades, reached = [], 0
    for path, (line, new, at) in sites:
        lines = texts[path].split("\n")
        path.write_text("\n".join(lines[:line - 1] + [new] + lines[line:]))
        try:
            hit = False
            for target in importers[path][:1] if sample is not None else importers[path]:
                diags = _diagnostics(target)
                hit = hit or bool(diags)
                if diags and not (len(diags) == 1 and diags[0].span is not None
                                  and Path(diags[0].span.file).resolve() == path.resolve()
                                  and diags[0].span.line in at):
                    cascades.append(f"{path.name}:{line} `{new.strip()}` in {target.name}: " + "; ".join(
                        f"{d.code} {d.message} at {d.span.where() if d.span else '-'}" for d in diags))
            reached += hit
        finally:
            path.write_text(texts[path])
    return cascades, len(sites), reached


def _assert_one_each(importers: dict[Path, list[Path]], kind: str, sample: int | None) -> None:
    cascades, tried, reached = _check(importers, kind, sample)
    assert not cascades, f"{len(cascades)} of {tried} mistakes gave other diagnostics:\n" + "\n".join(cascades)
    # Places no network reaches are few: a checker that went silent would pass the above.
    assert tried and reached >= 0.75 * tried, f"only {reached} of {tried} mistakes were reported"


@pytest.mark.parametrize("kind", KINDS)
def test_one_mistake_gives_one_diagnostic_at_sampled_places(corpus, kind):
    _assert_one_each(corpus, kind, SAMPLE)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_one_mistake_gives_one_diagnostic_everywhere(corpus, kind):
    _assert_one_each(corpus, kind, None)


def test_an_error_early_in_inception_v3_is_all_it_reports(corpus):
    # The case that was reported: any error before the auxiliary classifier added
    # `E0110 init fc.weight matches no layer` at 125:10, with "did you mean `fc`?".
    path = next(p for p in corpus if p.name == "inception_v3.net")
    text = path.read_text()
    path.write_text(text.replace("Conv2d_1a_3x3: basic_conv2d(32,", "Conv2d_1a_3x3: basic_conv2d(nosuchname,"))
    try:
        assert [(d.code, d.span.line) for d in _diagnostics(path)] == [("E0101", 144)]
    finally:
        path.write_text(text)


# ---------------------------------------------------------------- each cascade, alone and beside a second mistake


def _found(text: str) -> list[tuple[str, int | None]]:
    """The code and line of each diagnostic of the spec ``text``, in order."""
    try:
        netdsl.compile(text)
    except NetdslError as e:
        return [(d.code, d.span.line if d.span else None) for d in e.diagnostics]
    return []


# (what, spec, the diagnostics it gives): one mistake gives one; a second, independent
# mistake beside it gives its own.
CASES = [
    ("an init rule for the label of a layer that failed", """network n() {
        input [3, 8, 8]
        init fc.weight = zeros
        conv2d(nosuchname, 3)
        apply flatten
        fc: linear(10)
    }""", [("E0101", 4)]),
    ("a misspelled init label beside it", """network n() {
        input [3, 8, 8]
        init fcc.weight = zeros
        conv2d(nosuchname, 3)
        apply flatten
        fc: linear(10)
    }""", [("E0110", 3), ("E0101", 4)]),
    ("an init rule for a label in a block that was never expanded", """block b() { bn3: batchnorm2d }
    network n() {
        input [3, 8, 8]
        init bn3.weight = zeros
        bb
    }""", [("E0102", 5)]),
    ("reuse of a layer whose input is unknown", """network n() {
        input [3, 8, 8]
        conv2d(nosuchname, 3)
        relu: relu(inplace = true)
        reuse relu
    }""", [("E0101", 3)]),
    ("reuse of a layer whose name is misspelled", """network n() {
        input [3, 8, 8]
        relu: reluu(inplace = true)
        reuse relu
    }""", [("E0102", 3)]),
    ("a misspelled reuse beside it", """network n() {
        input [3, 8, 8]
        relu: reluu(inplace = true)
        reuse rleu
    }""", [("E0102", 3), ("E0115", 4)]),
    ("a layer after an `apply` of no function", """network n() {
        input [3, 8, 8]
        apply flattn
        linear(10)
    }""", [("E0118", 3)]),
    ("a wrong argument after it", """network n() {
        input [3, 8, 8]
        apply flattn
        linear(10, bias = 2)
    }""", [("E0118", 3), ("E0206", 4)]),
    ("the shape after an `if` whose condition is unknown", """network n() {
        input [3, 8, 8]
        if nosuchname {
            conv2d(6, 1)
        }
        conv2d(12, 3, groups = 3)
    }""", [("E0101", 3)]),
    ("the names, labels and dropped result of a `for` over an unknown list", """network n() {
        input [3, 8, 8]
        init conv1.weight = zeros
        conv2d(8, 3) -> a
        relu
        for i in range(nosuchname) {
            "conv{i}": conv2d(8, 1) -> "x{i}"
            add(a, "x{i}")
        }
        from x1
    }""", [("E0101", 6)]),
    ("a name the loop could not have made beside it", """network n() {
        input [3, 8, 8]
        conv2d(8, 3)
        for i in range(nosuchname) {
            conv2d(8, 1) -> "x{i}"
        }
        from y1
    }""", [("E0101", 4), ("E0125", 7)]),
    ("a result read before it is named", """network n() {
        input [3, 32, 32]
        add(stem, stem2)
        stem: conv2d(16, 3, padding = 1) -> stem
        relu -> stem2
    }""", [("E0126", 3), ("E0126", 3)]),
    ("the result a misspelled read meant", """network n() {
        input [3, 8, 8]
        conv2d(8, 3) -> x
        conv2d(8, 3) -> a
        add(x, ax)
    }""", [("E0125", 5)]),
    ("an unused result beside it", """network n() {
        input [3, 8, 8]
        conv2d(8, 3) -> x
        conv2d(8, 3) -> a
        conv2d(8, 3) -> b
        add(x, ax)
    }""", [("E0128", 5), ("E0125", 6)]),
    ("a missing `-> NAME`: the result it left unread", """network n() {
        input [3, 8, 8]
        conv2d(8, 3, padding = 1) -> stem
        conv2d(8, 1)
        add(stem, skip)
    }""", [("E0125", 5)]),
    ("a missing `-> NAME` before a `from`", """network n() {
        input [3, 8, 8]
        conv2d(8, 3, padding = 1) -> stem
        conv2d(8, 1)
        from stem
        conv2d(8, 3, padding = 1) -> body
        add(body, skip)
    }""", [("E0125", 7)]),
    ("a dropped result beside a misspelled read", """network n() {
        input [3, 8, 8]
        conv2d(8, 3, padding = 1) -> stem
        conv2d(8, 1)
        from stem
        conv2d(8, 1) -> skip
        add(stem, skp)
    }""", [("E0128", 4), ("E0125", 7)]),
    ("a misspelled template read in a loop", """network n() {
        input [3, 8, 8]
        conv2d(8, 3, padding = 1) -> x0
        conv2d(8, 3, padding = 1) -> x1
        for i in range(2) {
            from "y{i}"
            relu -> "r{i}"
        }
        add(r0, r1)
    }""", [("E0125", 6)]),
    ("a mistake in a block that instances with other arguments meet", """block b(act) {
        conv2d(8, 3, padding = 1)
        act(inplac = true)
    }
    network n() {
        input [3, 8, 8]
        b(relu)
        b(relu6)
    }""", [("E0202", 3)]),
    ("a side output whose name is unknown, and `sides`", """network n() {
        input [3, 8, 8]
        sides NOutputs(logits, aux)
        side "{nosuchname}" { apply flatten
            linear(2) }
        apply flatten
        linear(10)
    }""", [("E0101", 4)]),
    ("a label that is no name, and what reads it", """network n() {
        input [3, 8, 8]
        init conv.weight = zeros
        "conv..1": conv2d(8, 3)
        relu: relu
        reuse relu
        linear(10)
    }""", [("E0111", 4)]),
    ("a block's inputs after a layer, and its callers", """block f() {
        conv2d(4, 1)
        input x
        input y
        from x
        conv2d(4, 1) -> a
        add(a, y)
    }
    network n() {
        input [4, 8, 8]
        conv2d(4, 1) -> p
        conv2d(4, 1) -> q
        from p, q
        f()
    }""", [("E0132", 3)]),
    ("a part of a chunk too few, and what reads it", """network n() {
        input x: [4, 8, 8]
        chunk(x) -> a
        concat(a, b)
    }""", [("E0137", 3)]),
]


@pytest.mark.parametrize(("what", "spec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_reported_once_and_a_second_one_too(what, spec, expected):
    assert _found(spec) == expected


def test_two_mistakes_without_a_place_are_two():
    # Kept once per code and place; without a place, once per message.
    with pytest.raises(NetdslError) as e:
        netdsl.compile("network n(width = 4) { input [3]\n linear(width) }", widht=8, dpeth=2)
    assert [d.message for d in e.value.diagnostics] == ["`n` has no parameter `widht`", "`n` has no parameter `dpeth`"]
