"""Every diagnostic code: a failing-spec fixture that gives it at the stated
position, a catalogue entry (netdsl/errors.md, identical to docs/errors.md)
whose example gives it, and `netdsl explain`."""

import re
import subprocess
import sys
from pathlib import Path

import errors_doc
import pytest

import netdsl
from netdsl.codes import entries, explain

ROOT = errors_doc.ROOT
FIXTURES = errors_doc.fixtures()


def raised_codes() -> set[str]:
    """Every code the package can raise: the E0xxx string literals in its source."""
    codes = set()
    for path in (ROOT / "netdsl").rglob("*.py"):  # the catalogue is a subpackage
        codes.update(re.findall(r"""["'](E0\d{3})["']""", path.read_text()))
    return codes


def test_the_package_raises_codes_from_every_stage():
    # Guards the scan above: if it found nothing, the tests below would pass vacuously.
    codes = raised_codes()
    assert {"E0001", "E0101", "E0201", "E0301", "E0401", "E0408", "E0501"} <= codes


@pytest.mark.parametrize("fx", FIXTURES, ids=[fx.name for fx in FIXTURES])
def test_fixture_gives_its_code_at_its_position(fx):
    assert fx.name.startswith(fx.code + "_"), "a fixture is named after the code it gives"
    error = errors_doc.compile_fixture(fx)
    assert error is not None, f"{fx.name} compiles, but should give {fx.code}"
    first = error.diagnostics[0]
    assert first.code == fx.code, error.render()
    if fx.line is None:
        assert first.span is None
    else:
        assert (first.span.line, first.span.column) == (fx.line, fx.column), error.render()
    assert "Traceback" not in error.render()


@pytest.mark.parametrize("code", sorted(raised_codes()))
def test_every_code_has_a_fixture_and_a_catalogue_entry(code):
    assert code in {fx.code for fx in FIXTURES}, f"add tests/fixtures/errors/{code}_....net"
    assert code in entries(), f"add `## {code}: ...` to netdsl/errors.md"
    assert f"<!-- example: {code}_" in (ROOT / "netdsl" / "errors.md").read_text()


_NO_HELP = re.compile(r"^No help: *(.*?)\s*$", re.M)


def no_help_reason(entry: str) -> str | None:
    """The reason an entry states for its diagnostic having no `help` line, if it states one."""
    m = _NO_HELP.search(entry)
    if m is None:
        return None
    assert m.group(1), "`No help:` must say why"
    return m.group(1)


def test_a_no_help_marker_is_read_and_must_give_a_reason():
    assert no_help_reason("## E0999: x\n\nNo help: the message names the fix.\n") == "the message names the fix."
    assert no_help_reason("## E0999: x\n\nSee the help line.\n") is None
    with pytest.raises(AssertionError):
        no_help_reason("## E0999: x\n\nNo help:\n")


@pytest.mark.parametrize("fx", FIXTURES, ids=[fx.name for fx in FIXTURES])
def test_every_fixture_renders_a_help_or_its_entry_says_why_not(fx):
    # The docs promise a `help` line with the fix in every diagnostic.
    error = errors_doc.compile_fixture(fx)
    first = error.diagnostics[0]
    reason = no_help_reason(entries()[fx.code])
    if reason is None:
        assert first.help and first.help.strip(), f"{fx.name} gives no help:\n{error.render()}"
        assert "  = help: " in first.render(error.sources)
    else:
        # A stale reason hides a help that the catalogue should show.
        assert not first.help, f"{fx.code} says `No help: {reason}`, but {fx.name} gives one"


def test_the_catalogue_documents_no_code_the_package_lacks():
    assert set(entries()) <= raised_codes()


def test_docs_errors_md_is_the_package_catalogue():
    package = (ROOT / "netdsl" / "errors.md").read_text(encoding="utf-8")
    assert (ROOT / "docs" / "errors.md").read_text(encoding="utf-8") == package


def test_the_catalogue_shows_what_netdsl_prints_today():
    # If this fails after a message changed: run `.venv/bin/python tests/errors_doc.py`.
    package = (ROOT / "netdsl" / "errors.md").read_text(encoding="utf-8")
    assert errors_doc.refresh(package) == package


def _documented_examples():
    text = (ROOT / "netdsl" / "errors.md").read_text(encoding="utf-8")
    found = []
    for m in re.finditer(r"^## (E\d{4}).*?<!-- example: (\S+) -->\n```netdsl\n(.*?)\n```", text,
                         re.M | re.S):
        source = re.sub(rb"\\x([0-9a-f]{2})", lambda b: bytes([int(b.group(1), 16)]),
                        m.group(3).encode("utf-8"))
        found.append((m.group(1), m.group(2), source + b"\n"))
    return found


def test_every_entry_has_an_example():
    assert [code for code, _, _ in _documented_examples()] == sorted(entries())


@pytest.mark.parametrize("code, name, source", _documented_examples(),
                         ids=[c for c, _, _ in _documented_examples()])
def test_every_documented_example_gives_its_code(code, name, source):
    # The spec as the catalogue prints it, compiled from that text (not the fixture file),
    # with the --limit and --set its header names.
    fx = errors_doc.read_fixture(errors_doc.FIXTURES / name)
    error = errors_doc.compile_fixture(fx, source)
    assert error is not None and error.diagnostics[0].code == code


def test_explain_returns_the_entry_without_the_generator_markers():
    text = explain("E0301")
    assert text.startswith("## E0301: residual add needs equal shapes")
    assert "error[E0301]: residual add needs equal shapes" in text
    assert "**Fix:**" in text and "<!--" not in text
    assert explain(" e0301 ") == text
    assert explain("E0999") is None and explain("nonsense") is None


def test_the_catalogue_is_package_data():
    # `netdsl explain` must work where netdsl is installed without the repository's docs/.
    pyproject = (ROOT / "pyproject.toml").read_text()
    package_data = pyproject.split("[tool.setuptools.package-data]")[1].split("[")[1].split("]")[0]
    assert '"errors.md"' in package_data
    assert (Path(netdsl.__file__).parent / "errors.md").is_file()


def test_cli_explain_prints_an_entry_and_refuses_an_unknown_code():
    ok = subprocess.run([sys.executable, "-m", "netdsl", "explain", "E0405"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("E0405: ")
    bad = subprocess.run([sys.executable, "-m", "netdsl", "explain", "E0999"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown error code 'E0999'" in bad.stderr


@pytest.mark.slow
def test_catalogue_output_is_what_the_cli_prints():
    # The catalogue renders outputs through the API; the CLI must print the same.
    fx = next(f for f in FIXTURES if f.limits)
    r = subprocess.run([sys.executable, "-m", "netdsl", *fx.command().split()[1:]], cwd=errors_doc.FIXTURES,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert f"$ {fx.command()}\n{r.stderr}" in explain(fx.code)


# ---------------------------------------------------------------- several errors at once


def test_independent_errors_are_reported_together_in_order():
    spec = """network n(width = 16) {
    input [3, 32, 32]
    conv2d(widht, 3)
    conv2d(16, 3, strides = 2)
    conv3d(8, 3)
    let x = 1 // 0
    relu
}
"""
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    got = [(d.code, d.span.line) for d in e.value.diagnostics]
    assert got == [("E0101", 3), ("E0202", 4), ("E0102", 5), ("E0211", 6)]
    assert "error: could not compile the spec (4 errors)" in str(e.value)


def test_errors_in_several_blocks_and_the_network_are_reported_together():
    spec = """block a(c) {
    conv2d(c, 3, padding = -1)
}
block b(c) {
    conv2d(c, 99)
}
network n() {
    input [3, 8, 8]
    concat {
        a(4)
        b(4)
    }
}
"""
    # Branches of a concat see the same input, so an error in one leaves the other checkable.
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec)
    assert e.value.codes == ["E0204", "E0304"]
    # Each error inside a block says where the block was used.
    assert e.value.diagnostics[0].notes == ("in block `a` used at <spec>:10:9",)
    assert e.value.diagnostics[1].notes == ("in block `b` used at <spec>:11:9",)


def test_one_mistake_is_reported_once():
    # A bad parameter used three times is one error, not three.
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile("network n(w = 1 / 0) { input [3, 8, 8]\n conv2d(w, 1)\n conv2d(w, 1)\n"
                       " conv2d(w, 1) }")
    assert e.value.codes == ["E0211"]


# ---------------------------------------------------------------- rendering a hostile spec


def _error(spec, **kw):
    with pytest.raises(netdsl.NetdslError) as e:
        netdsl.compile(spec, **kw)
    return e.value


def test_a_long_misspelt_name_is_compared_and_quoted_in_bounded_work(monkeypatch):
    # An 8,000-character name beside its misspelling: comparing the two cost their
    # product (28 s and 2.4 GB for a 16 KB file); quoting it, 8 KB per message.
    from netdsl import diagnostics

    compared = []
    real = diagnostics._distance
    monkeypatch.setattr(diagnostics, "_distance", lambda a, b, bound: compared.append((a, b)) or real(a, b, bound))
    name = "w" * 8000
    spec = f"let {name} = 4\nnetwork n() {{\n input [3, 8, 8]\n conv2d({name[:-1]}x, 3)\n}}"
    error = _error(spec)
    d = error.diagnostics[0]
    assert d.code == "E0101" and (d.span.line, d.span.column) == (4, 9)
    assert all(len(a) <= 64 and len(b) <= 64 + 21 for a, b in compared)
    assert "(8000 characters)" in d.message and len(d.message) < 100
    assert len(str(error)) < 1000


@pytest.mark.parametrize("use", ["{}(1)", "conv2d(4, 3, {}=1)", "b({}=1)", "relu * len({}(1))",
                                 "init {}.weight = zeros\n relu", "init conv2d.{} = zeros"])
def test_every_unknown_name_message_is_cut_to_a_readable_length(use):
    name = "z" * 5000
    spec = "block b(c = 1) { relu }\nnetwork n() {\n input [3, 8, 8]\n " + use.format(name) + "\n}"
    d = _error(spec).diagnostics[0]
    assert d.code in ("E0102", "E0202", "E0103", "E0110") and "(5000 characters)" in d.message
    assert len(d.message) < 120 and len(d.help or "") < 200


def test_closest_skips_names_that_cannot_be_near():
    from netdsl.diagnostics import _distance, closest

    assert closest("widht", ["depth", "width", "wdith"]) == "width"  # the first nearest wins
    assert closest("ab", ["abcdef"]) is None
    assert closest("conv", ["conv2d" * 20]) is None
    assert _distance("kitten", "sitting", 10) == 3
    assert _distance("kitten", "sitting", 1) == 2  # over the bound: bound + 1


def test_many_errors_render_the_first_fifty_and_count_the_rest(monkeypatch):
    from netdsl import diagnostics

    splits = []
    real = diagnostics.source_lines
    monkeypatch.setattr(diagnostics, "source_lines", lambda text: splits.append(1) or real(text))
    n = 3000
    error = _error("network n() {\n input [3, 8, 8]\n" + "q\n" * n + "}\n")
    assert len(error.diagnostics) == n  # complete, for the API
    text = str(error)
    assert text.count("error[E0102]") == 50
    assert "\n\n... and 2950 more errors\n\nerror: could not compile the spec (3000 errors)" in text
    assert len(splits) == 1  # the source is split into lines once per render, not per error


def test_set_notes_split_the_source_once(monkeypatch):
    # A range error at a use of a --set parameter looks up the names in its line.
    from netdsl.check import checker as elaborate

    splits = []
    real = elaborate.source_lines
    monkeypatch.setattr(elaborate, "source_lines", lambda text: splits.append(1) or real(text))
    spec = "network n(c = 4) {\n input [3, 8, 8]\n" + "assert c > 0\n" * 200 + "}\n"
    error = _error(spec, c=-1)
    assert len(error.diagnostics) == 200 and "set from outside the spec" in error.diagnostics[0].notes[-1]
    assert len(splits) == 1


_RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _check(tmp_path, spec):
    (tmp_path / "n.net").write_text(spec)
    r = subprocess.run([sys.executable, "-m", "netdsl", "check", "n.net"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1 and not _RAW.search(r.stderr)
    return r.stderr


@pytest.mark.slow
def test_control_characters_never_reach_the_terminal(tmp_path):
    out = _check(tmp_path, 'network n() {\n input [3, 8, 8]\n\tassert false, "\x1b]0;title\x07\x9b2J"; foo\n}\n')
    assert r"error[E0501]: assertion failed: \x1b]0;title\x07\x9b2J" in out
    lines = out.splitlines()
    shown = r'3 |     assert false, "\x1b]0;title\x07\x9b2J"; foo'
    assert lines.count(shown) == 2
    # The caret is under `foo`, which the escapes before it moved right, as tabs do.
    caret = lines[len(lines) - lines[::-1].index(shown)]
    assert caret.index("^") == shown.index("foo")
    assert caret.endswith(" ^^^ not a layer, a block or a block parameter")
    # A raw control character outside a string is a syntax error, shown escaped too.
    out = _check(tmp_path, "network n() {\n input [3, 8, 8]\n relu(\x1b[31m)\n}\n")
    assert "error[E0002]: unexpected character `\\x1b`" in out
    assert "3 |  relu(\\x1b[31m)\n  |       ^^^^ not part of the language" in out


def test_every_part_of_a_diagnostic_is_escaped():
    from netdsl.diagnostics import Diagnostic
    from netdsl.span import Span

    d = Diagnostic("E0101", "m\x1b", Span(file="f\x07.net", line=1, column=3, end_column=4),
                   "l\x1b", "h\x9b", ("n\x7f",))
    text = d.render({"f\x07.net": "a\x1bb\u202ec"})
    assert not _RAW.search(text.replace("\n", "")) and "\u202e" not in text
    assert text.splitlines() == [
        r"error[E0101]: m\x1b", r" --> f\x07.net:1:3", "  |", r"1 | a\x1bb\u202ec",
        r"  |      ^ l\x1b", "  |", r"  = note: n\x7f", r"  = help: h\x9b"]


def test_lines_are_counted_as_the_parser_counts_them():
    # A form feed is not a line break: the caret stays on the parser's line.
    error = _error("network n() {\n input [3, 8, 8] # \x0c\n q\n}\n")
    assert error.diagnostics[0].span.line == 3
    assert r"3 |  q" in str(error)


def test_a_caret_far_along_a_long_line_stays_under_its_token():
    spec = "network n() {\n input [3, 8, 8]\n " + "relu; " * 100 + "foo\n}\n"
    lines = str(_error(spec)).splitlines()
    shown, caret = lines[3], lines[4]
    assert shown.startswith("3 | …") and len(shown) < 300 and len(caret) < 300
    assert shown[caret.index("^"):].startswith("foo") and caret.count("^") == 3


def test_errors_come_in_the_order_of_the_text():
    # The checker meets them as it expands: the network first (line 6), then the block it
    # uses (line 2), with the file's `let`s before both (line 11). A reader goes down the file.
    spec = """block b(c) {
    conv2d(c, 3, strides = 2)
}
network n() {
    input [3, 32, 32]
    conv2d(widht, 3)
    b(4)
    relu * -1
}
let x = 1 // 0
"""
    error = _error(spec)
    assert [(d.code, d.span.line) for d in error.diagnostics] == [
        ("E0202", 2), ("E0101", 6), ("E0204", 8), ("E0211", 10)]

