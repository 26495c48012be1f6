"""The editor's questions (netdsl/tools/ide.py), without a client: diagnostics are
those of ``netdsl check``, hovers agree with the layer table, definitions and
completions survive broken text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shipped import grant_for
from slow_cases import slow_except

import netdsl
from netdsl.analysis import analyse
from netdsl.grant import Grant
from netdsl.layers import LAYERS
from netdsl.limits import Limits
from netdsl.tools import ide

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.net"))
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "errors").glob("E*.net"))


def _key(d):
    s = d.span
    return (d.code, d.message, d.label, d.help, d.notes,
            (s.file, s.line, s.column, s.end_line, s.end_column) if s else None)


def _plain(path: Path) -> bool:
    """A fixture checked with default limits and no --set, in valid UTF-8."""
    head = path.read_bytes()
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(line.startswith(("# limit:", "# set:")) for line in text.splitlines()[:5])


@pytest.mark.parametrize("path", SPECS + [p for p in FIXTURES if _plain(p)], ids=lambda p: p.name)
def test_diagnostics_are_those_of_check(path):
    """The contract of the editor's diagnostics: netdsl.compile on the saved file, under
    the same grant (a shipped spec's externs granted, as the tests grant them)."""
    grant = grant_for(path) if path in SPECS else None
    try:
        netdsl.compile(str(path), grant=grant)
        want = []
    except netdsl.NetdslError as e:
        want = [_key(d) for d in e.diagnostics]
    got = ide.check(path.read_text(encoding="utf-8"), str(path), path.parent, grant=Grant.of(grant))
    if path.name == "E0107_no_network.net":
        # A file with no network is a library of blocks to its editor, not an error.
        assert got.diagnostics == [] and [k[0] for k in want] == ["E0107"]
    else:
        assert [_key(d) for d in got.diagnostics] == want
        assert bool(got.networks) == (not want)


def test_each_network_of_a_file_is_checked_and_errors_are_said_once():
    text = ("block b(c) { conv2d(c, 9) }\n"
            "network one() { input [3, 8, 8]\n b(4) }\n"
            "network two() { input [3, 8, 8]\n b(4) }\n"
            "network three() { input [3, 32, 32]\n b(4) }\n")
    got = ide.check(text, None, Path("."))
    # One error in the block, reached from two networks: the notes say from where.
    assert [(d.code, d.notes) for d in got.diagnostics] == [
        ("E0304", ("in block `b` used at <spec>:3:2",)), ("E0304", ("in block `b` used at <spec>:5:2",))]
    assert [n.name for n in got.networks] == ["three"]
    # A global `let` is evaluated for every network, and its error is the same each time.
    got = ide.check("let x = 1 // 0\n" + text, None, Path("."))
    assert [d.code for d in got.diagnostics].count("E0211") == 1


def test_a_file_over_the_size_limit_is_refused_with_a_help_true_of_the_server(tmp_path):
    # `netdsl check` says to raise the limit with --limit, which the language server does not take.
    limits = Limits(max_file_bytes=100)
    big = "network n() { input [3, 8, 8]\n" + "    relu\n" * 20 + "}\n"
    (tmp_path / "big.net").write_text(big)
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(str(tmp_path / "big.net"), limits=limits)
    assert e.value.diagnostics[0].help.startswith("raise it with --limit max_file_bytes=N")
    for text in (big, 'import "big.net"\nnetwork m() { input [3, 8, 8]\n relu }\n'):  # the document, an import
        (d,) = ide.check(text, str(tmp_path / "edited.net"), tmp_path, limits).diagnostics
        assert d.code == "E0401"
        assert d.help == ("the language server keeps to this limit (max_file_bytes); on the command line, "
                          "`netdsl check --limit max_file_bytes=N` checks a larger file")


@pytest.mark.parametrize("name", slow_except(["resnet", "inception_v3", "densenet", "efficientnet"],
                                             fast=("resnet", "inception_v3", "efficientnet")))
def test_hover_rows_agree_with_the_layer_table(name):
    path = ROOT / "specs" / f"{name}.net"
    text = path.read_text()
    (net,) = ide.check(text, str(path), path.parent).networks
    table = {r.name: r for r in analyse(net).rows}
    seen = 0
    for line in range(1, len(text.splitlines()) + 1):
        for r in ide.rows_at(net, str(path), line):
            if r.type.startswith("network"):
                a = analyse(net)
                assert (r.params, r.macs, r.out_shape) == (a.params, a.macs, a.output_shape)
            elif "(" not in r.name:
                row = table[r.name]
                assert (r.params, r.macs or 0, r.out_shape) == (row.params, row.macs, row.output_shape)
                seen += 1
    # Every module written in this file is reached from some line of it.
    assert seen == sum(1 for r in analyse(net).rows
                       if _defined_in(net, r.name, str(path)))


def _defined_in(net, dotted, filename):
    node = net
    for part in dotted.split("."):
        node = next(n for n in _modules(node) if n.name == part)
    return node.span is not None and node.span.file == filename


def _modules(node):
    from netdsl.analysis import _modules as walk
    return walk(node.body)


def test_hover_on_a_block_line_lists_every_instance_and_stops_at_a_dozen():
    text = ("block b(c) {\n conv2d(c, 1)\n}\n"
            "network n(k = 3) { input [3, 8, 8]\n b(4) * k }\n")
    checked = ide.check(text, None, Path("."))
    shown = ide.hover(checked, None, 2)
    assert shown.count("| Conv2d |") == 3 and "`0.0`" in shown and "`2.0`" in shown
    big = ide.check(text.replace("k = 3", "k = 20"), None, Path("."))
    shown = ide.hover(big, None, 2)
    assert shown.count("| Conv2d |") == ide.MAX_HOVER_ROWS and "8 more (20 in all)" in shown
    assert ide.hover(checked, None, 3) is None  # a closing brace emits nothing
    assert ide.hover(checked, "other.net", 2) is None  # the line of another file


def test_hover_on_a_combinator_and_a_variant():
    text = ("network n() { input [3, 8, 8]\n residual {\n  conv2d(3, 3, padding = 1)\n }\n}\n"
            "network m = n()\n")
    checked = ide.check(text, "x.net", Path("."))
    assert "`(residual)` | residual | [3, 8, 8] → [3, 8, 8] | 84 |" in ide.hover(checked, "x.net", 2)
    assert "network M" in ide.hover(checked, "x.net", 6)


def test_hover_on_block_headers_lets_and_inits():
    text = ("let widths = [4, 8]\n"
            "block unit(c) {\n"
            "    let mid = 2 * c\n"
            "    conv2d(mid, 1)\n"
            "}\n"
            "block unused() { relu }\n"
            "network n() {\n"
            "    input [3, 8, 8]\n"
            "    init conv2d.weight = zeros\n"
            "    for w in widths { unit(w) }\n"
            "    unit(4)\n"
            "}\n")
    checked = ide.check(text, "x.net", Path("."))
    header = ide.hover(checked, "x.net", 2)
    assert header.count("| Unit |") == 3 and "`0` | Unit | [3, 8, 8] → [8, 8, 8]" in header
    assert ide.hover(checked, "x.net", 6) is None  # a block no network uses: nothing known
    assert ide.hover(checked, "x.net", 1) == "`widths` = `[4, 8]`"
    # One value per distinct instance, the repeated unit(4) once.
    assert ide.hover(checked, "x.net", 3) == "`mid` takes 2 values:\n\n- `8`\n- `16`"
    init = ide.hover(checked, "x.net", 9)
    assert "sets 3 parameters with `zeros()`" in init
    assert "| `0.0.weight` | Conv2d |" in init and "| `2.0.weight` | Conv2d |" in init
    # Checked again as it is (the parser hands back the same objects), it knows as much.
    assert ide.hover(ide.check(text, "x.net", Path(".")), "x.net", 3) == ide.hover(checked, "x.net", 3)
    # A library: its own top-level lets, and nothing of blocks no network uses.
    library = ide.check("let k = 3 * 3\nblock b() { relu }\n", "lib.net", Path("."))
    assert ide.hover(library, "lib.net", 1) == "`k` = `9`" and ide.hover(library, "lib.net", 2) is None


def test_the_line_a_line_was_before_an_edit():
    old = "a\nb\nc\nd\n"
    assert [ide.line_before(old, "a\nb\nX\nc\nd\n", n) for n in range(1, 7)] == [1, 2, None, 3, 4, 5]
    assert [ide.line_before(old, "a\nd\n", n) for n in range(1, 4)] == [1, 4, 5]
    assert [ide.line_before(old, "a\nc\nb\nd\n", n) for n in range(1, 5)] == [1, None, 2, 4]
    assert ide.line_before(old, old, 9) is None and ide.line_before(old, old, 0) is None


def test_index_follows_imports_past_broken_files_and_cycles(tmp_path):
    (tmp_path / "a.net").write_text('import "b.net"\nimport "broken.net"\nblock a1() { relu }\n')
    (tmp_path / "b.net").write_text('import "a.net"\nblock b1(c, k = [3, 3]) { relu }\n')
    (tmp_path / "broken.net").write_text("block x( {\n")
    text = 'import "a.net"\nimport "std/blocks.net"\nimport "missing.net"\nblock own() { relu }\n'
    idx = ide.index(text, str(tmp_path / "main.net"), tmp_path)
    assert {"a1", "b1", "own"} <= set(idx.definitions)
    assert idx.definitions["b1"].params == ("c", "k = [3, 3]")
    assert idx.definitions["b1"].span.file == str((tmp_path / "b.net").resolve())
    # Everything brought in through a.net is placed on that import, line 1.
    assert {p.name: s.line for p, s in idx.origin.items()}.items() >= {"a.net": 1, "b.net": 1, "broken.net": 1}.items()
    assert any(d.span.file.endswith("blocks.net") for d in idx.definitions.values()
               if d.span.file != str(tmp_path / "main.net"))
    assert ide.index("block x( {", None, tmp_path) is None


def test_diagnostics_of_a_file_imported_through_another_sit_on_the_first_import(tmp_path):
    (tmp_path / "a.net").write_text('import "b.net"\n')
    (tmp_path / "b.net").write_text("block b() { reluu }\n")
    main = tmp_path / "main.net"
    text = '# main\nimport "a.net"\nnetwork n() { input [3, 8, 8]\n b() }\n'
    checked = ide.check(text, str(main), tmp_path)
    (p,) = ide.place(checked.diagnostics, str(main), ide.index(text, str(main), tmp_path))
    assert p.span.line == 2 and p.elsewhere.line == 1
    assert p.message.startswith(f"{p.elsewhere.file}:1:13: ")


def test_definition_and_completion_by_position():
    text = ("let width = 8\n"
            "block unit(c, stride = 1) { conv2d(c, 3, stride = stride) }\n"
            "network n() { input [3, 8, 8]\n unit(width)\n unit(width, \n}\n")
    idx = ide.index(text.replace("width, \n", "width)\n"), None, Path("."))
    assert ide.definition(text, idx, 4, 2).line == 2
    assert ide.definition(text, idx, 4, 8).line == 1
    assert ide.definition(text, idx, 4, 12).line == 1  # just after `width`
    assert ide.definition(text, idx, 3, 16) is None  # `input`
    inside = ide.completions(text, idx, 5, 14)
    assert [c.label for c in inside if c.kind == "argument"] == ["stride"]  # `c` is given by position
    outside = ide.completions(text, idx, 4, 1)
    assert not [c for c in outside if c.kind == "argument"]
    assert {c.label for c in outside if c.kind == "layer"} == set(LAYERS)
    assert "unit" in {c.label for c in outside if c.kind == "block"}


# What an editor holds while someone types: any text, any position.
_TEXT = st.text(alphabet=st.sampled_from(list('network block unit(c)=1{}[]:;,"#\n conv2d relu 3 * import "x.net"')),
                max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, line=st.integers(-1, 8), column=st.integers(-1, 40))
def test_no_text_or_position_raises(tmp_path_factory, text, line, column):
    base = tmp_path_factory.getbasetemp()
    checked = ide.check(text, None, base)
    idx = ide.index(text, None, base)
    ide.place(checked.diagnostics, None, idx)
    ide.hover(checked, None, line)
    if idx is not None:
        ide.definition(text, idx, line, column)
    ide.completions(text, idx, line, column)
    ide.word_at(text, line, column)


def test_hover_shows_a_reused_module_and_a_called_function_apart_from_the_modules():
    import netdsl

    net = netdsl.compile("network n() { input [2, 4, 4]\n act: relu\n reuse act\n apply flatten }")
    assert [r.name for r in ide.rows_at(net, None, 3)] == ["act (again)"]
    assert [(r.name, r.out_shape) for r in ide.rows_at(net, None, 4)] == [("(flatten)", (32,))]


def test_a_document_over_the_size_limit_is_neither_indexed_nor_formatted(monkeypatch):
    # Indexing and formatting parsed the whole text on every keystroke: 11 s each for 2 MB,
    # while `check` refuses it at once. Both now refuse it before parsing.
    from pathlib import Path

    from netdsl.syntax import fmt as fmt_module
    from netdsl.tools import ide as ide_module

    big = "network n() { input [1]\n" + "    relu\n" * 300_000 + "}\n"
    monkeypatch.setattr(ide_module, "parse", lambda *a, **k: pytest.fail("parsed"))
    monkeypatch.setattr(fmt_module.parser, "parse", lambda *a, **k: pytest.fail("parsed"))
    assert ide_module.index(big, "big.net", Path(".")) is None
    with pytest.raises(netdsl.NetdslError, match="over the limit"):
        fmt_module.format_text(big, "big.net")


def test_a_block_library_is_checked_for_what_no_input_shape_decides():
    from netdsl.tools.ide import check

    lib = ("block b(c = 4, d) {\n    conv2d(c, 3, paddin = 1)\n    relux\n    conv2d(\"x\", 3)\n"
           "    conv2d(d, 3)\n    -> y\n    add(y, z)\n}\n")
    got = [(d.code, d.span.line) for d in check(lib, "lib.net", Path(".")).diagnostics]
    assert got == [("E0202", 2), ("E0102", 3), ("E0206", 4), ("E0125", 7)]
    # What depends on the input (channels, shapes) waits for a network that uses the block.
    clean = "block b(c) {\n    conv2d(c * in_channels, 3)\n    linear(in_shape[0])\n}\n"
    assert check(clean, "lib.net", Path(".")).diagnostics == []
    std = (Path(netdsl.__file__).parent / "stdlib" / "blocks.net").read_text()
    assert check(std, "blocks.net", Path(".")).diagnostics == []
    # A block of several tensors: its inputs are of unknown shapes too.
    several = ("block join(c) {\n    input x\n    input skip\n    from x\n    conv2d(c, 1) -> y\n"
               "    resize(skip, y) -> q\n    from q\n    relux -> r\n    output tuple(r, y)\n}\n")
    assert [(d.code, d.span.line) for d in check(several, "lib.net", Path(".")).diagnostics] == [("E0102", 8)]
