"""`netdsl fmt`: one canonical layout, the same AST, every comment kept, a fixed point.

The layout rules are pinned by hand-written examples; the contract (same AST,
comments, fixed point, one layout whatever the input's white space) is checked on
every shipped spec, on fuzzer input and on randomly re-spaced specs."""

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import netdsl
from netdsl.syntax.fmt import WIDTH, _tokens, format_text
from netdsl.syntax.parser import parse

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "specs").glob("*.net")) + sorted((ROOT / "netdsl" / "stdlib").glob("*.net"))

sys.path.insert(0, str(ROOT / "bench"))
import fuzz  # noqa: E402


def _comments(text):
    return [t.text for t in _tokens(text) if t.kind == "comment"]


@pytest.mark.parametrize("before, after", [
    # operators, `=` and commas spaced; none inside brackets; `;` ends a statement
    ("network n(){input [1,8,8];c1:conv2d(4,3,padding=1);relu}",
     "network n() {\n    input [1, 8, 8]\n    c1: conv2d(4, 3, padding = 1)\n    relu\n}\n"),
    # unary minus, index, slice, power, comparisons, ifexp
    ("let a = xs[ -1 ]\nlet b=xs[1 :]+xs[:2]\nlet c=-2** -1 if a>=b else(a)",
     "let a = xs[-1]\nlet b = xs[1:] + xs[:2]\nlet c = -2 ** -1 if a >= b else (a)\n"),
    # `} else {` and `} shortcut` continue the line of the `}`
    ("block b(s=1){\n  if s==1 {relu}\n  else {relu6}\n  residual {relu}\n  shortcut if s!=1 {relu}\n}",
     "block b(s = 1) {\n    if s == 1 {\n        relu\n    } else {\n        relu6\n    }\n"
     "    residual {\n        relu\n    } shortcut if s != 1 {\n        relu\n    }\n}\n"),
    # blank lines: at most one, none after `{` or before `}` or at the ends
    ("\n\nlet a = 1\n\n\n\nlet b = 2\nnetwork n() {\n\n    relu\n\n}\n\n",
     "let a = 1\n\nlet b = 2\nnetwork n() {\n    relu\n}\n"),
    # comments: a line's own, after code, on `{` and `}` lines, inside brackets
    ("# head\nnetwork n() {   # opens\n  relu    # after\n      # own line\n  conv2d(4,  # four\n 3)\n} # end",
     "# head\nnetwork n() {  # opens\n    relu  # after\n    # own line\n    conv2d(4,  # four\n"
     "           3)\n}  # end\n"),
    # no trailing commas; labels, quoted labels, init's dotted name
    ('network n(a,) {\n "x{a}" : relu ( inplace = true , )\n init conv2d . weight = ones\n}',
     'network n(a) {\n    "x{a}": relu(inplace = true)\n    init conv2d.weight = ones\n}\n'),
])
def test_layout_rules(before, after):
    assert format_text(before) == after
    assert parse(after) == parse(before)


def test_a_long_call_fills_its_lines_under_the_bracket():
    args = ", ".join(f"argument{i} = {i}" for i in range(12))
    out = format_text(f"network n() {{\n    some_block({args})\n}}\n")
    body = out.splitlines()[1:-1]
    assert len(body) > 1 and all(len(line) <= WIDTH for line in body)
    assert all(line.startswith(" " * len("    some_block(")) for line in body[1:])
    assert all(line.rstrip().endswith(",") for line in body[:-1])


def test_a_list_of_lists_is_laid_out_as_a_table_with_one_row_per_line():
    rows = [[i, i * 10, i * 100, "M"] * 3 for i in range(6)]
    text = "let table = [" + ", ".join("[" + ", ".join(map(str, r)).replace("M", '"M"') + "]"
                                       for r in rows) + "]\n"
    out = format_text(text)
    lines = out.splitlines()
    assert lines[0] == "let table = [" and lines[-1] == "]"
    assert len(lines) == len(rows) + 2
    assert all(line.startswith("    [") and line.endswith("],") for line in lines[1:-1])


def test_a_syntax_error_is_reported_not_formatted():
    with pytest.raises(netdsl.NetdslError) as e:
        format_text("network n() {\n    conv2d(4, \n}\n", "x.net")
    assert e.value.diagnostics[0].code in ("E0001", "E0004")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_spec_is_formatted(path):
    text = path.read_text(encoding="utf-8")
    assert format_text(text, str(path)) == text, f"run: netdsl fmt {path.relative_to(ROOT)}"


def _respaced(text: str, rng: random.Random) -> str:
    """``text`` with other white space where the language does not care: any amount
    of spaces between tokens, line breaks inside brackets, trailing spaces, `;`
    between statements on one line."""
    out = []
    depth = 0
    toks = _tokens(text)
    for i, tok in enumerate(toks):
        if tok.kind == "nl":
            out.append(rng.choice(["", " ", "\t "]) + "\n")
            continue
        prev = toks[i - 1] if i else None
        if prev is not None and prev.kind != "nl":
            words = {prev.kind, tok.kind} <= {"name", "number"} or tok.kind == "comment"
            choices = [" ", "  "] + ([] if words else [""])
            if depth and tok.kind != "comment" and prev.kind != "comment":
                choices.append("\n" + " " * rng.randrange(12))
            out.append(rng.choice(choices))
        elif prev is not None:
            out.append(" " * rng.randrange(6))
        if tok.text in "([":
            depth += 1
        elif tok.text in ")]":
            depth -= 1
        out.append(tok.text)
    return "".join(out)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SHIPPED), st.integers(0, 2**32))
def test_one_layout_whatever_the_white_space(path, seed):
    text = path.read_text(encoding="utf-8")
    messy = _respaced(text, random.Random(seed))
    assert parse(messy) == parse(text)
    assert format_text(messy) == format_text(text)


@pytest.mark.slow
def test_fuzzer_input_that_parses_keeps_its_ast_and_comments_and_is_a_fixed_point():
    texts = [p.read_text(encoding="utf-8") for p in fuzz.SOURCES]
    names = sorted({n for t in texts for n in re.findall(r"[A-Za-z_]\w*", t)})
    formatted = 0
    for i in range(200):
        data = fuzz.make_input(11, i, texts, names).data
        try:
            text = data.decode("utf-8")
            out = format_text(text)  # refuses what the parser or the nesting limit refuses
        except (UnicodeDecodeError, netdsl.NetdslError):
            continue
        formatted += 1
        assert parse(out) == parse(text.removeprefix("\ufeff")), i
        assert _comments(out) == _comments(text), i
        assert format_text(out) == out, i
    assert formatted > 50  # the property was tried, not skipped


def test_the_fuzzer_reports_a_formatter_that_changes_the_ast(monkeypatch):
    import netdsl.syntax.fmt

    monkeypatch.setattr(netdsl.syntax.fmt, "_layout", lambda toks: "network n() {}\n")
    assert "changed the AST" in fuzz.check_fmt(b"network n() { relu }")


# ---------------------------------------------------------------- the command


def _netdsl(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "netdsl", *args], capture_output=True, text=True,
                          input=stdin, cwd=cwd)


MESSY = "network n(){input [1,8,8]\n  conv1:conv2d(4,3,padding=1)  # stem\n relu}\n"
TIDY = format_text(MESSY)


def test_fmt_rewrites_in_place_and_says_so(tmp_path):
    spec = tmp_path / "a.net"
    spec.write_text(MESSY)
    spec.chmod(0o640)
    r = _netdsl("fmt", str(spec))
    assert r.returncode == 0, r.stderr
    assert spec.read_text() == TIDY
    assert oct(spec.stat().st_mode & 0o777) == "0o640"
    assert f"reformatted {spec}" in r.stderr and "1 file reformatted" in r.stderr
    again = _netdsl("fmt", str(spec))
    assert again.returncode == 0 and "0 files reformatted, 1 left unchanged" in again.stderr
    assert list(tmp_path.iterdir()) == [spec]  # no temporary file left


@pytest.mark.slow
def test_fmt_check_and_diff_change_nothing_and_exit_1_when_a_file_would_change(tmp_path):
    spec = tmp_path / "a.net"
    spec.write_text(MESSY)
    r = _netdsl("fmt", "--check", str(spec))
    assert r.returncode == 1 and f"would reformat {spec}" in r.stderr
    d = _netdsl("fmt", "--diff", str(spec))
    assert d.returncode == 1 and "+    conv1: conv2d(4, 3, padding = 1)  # stem" in d.stdout
    assert spec.read_text() == MESSY
    spec.write_text(TIDY)
    assert _netdsl("fmt", "--check", str(spec)).returncode == 0


def test_fmt_leaves_a_spec_with_errors_as_it_was(tmp_path):
    bad, good = tmp_path / "bad.net", tmp_path / "good.net"
    bad.write_text("network n() {\n    conv2d(4,\n")
    good.write_text(MESSY)
    r = _netdsl("fmt", str(tmp_path))
    assert r.returncode == 1
    assert "error[E0004]" in r.stderr and "1 not formatted" in r.stderr
    assert bad.read_text() == "network n() {\n    conv2d(4,\n"
    assert good.read_text() == TIDY  # the others are still formatted


@pytest.mark.slow
def test_fmt_stdin_to_stdout_and_usage_errors(tmp_path):
    r = _netdsl("fmt", "-", stdin=MESSY)
    assert r.returncode == 0 and r.stdout == TIDY
    assert _netdsl("fmt", "--check", "-", stdin=MESSY).returncode == 1
    missing = _netdsl("fmt", str(tmp_path / "nope.net"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert _netdsl("fmt", str(tmp_path)).returncode == 2  # holds no .net file


def test_a_diff_on_a_terminal_escapes_control_characters_and_a_piped_one_keeps_them(tmp_path, capsys,
                                                                                  monkeypatch):
    # Found by the command fuzzer: a comment's CSI byte reached the terminal raw.
    from netdsl.cli import main

    spec = tmp_path / "n.net"
    spec.write_text("network n() {\n  input [3, 8, 8]\n  conv2d(4,3)  # \x9b31m red\n}\n", encoding="utf-8")
    assert main(["fmt", "--diff", str(spec)]) == 1
    piped = capsys.readouterr().out
    assert "\x9b31m" in piped  # a patch keeps the file's bytes
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["fmt", "--diff", str(spec)]) == 1
    shown = capsys.readouterr().out
    assert "\x9b" not in shown and "\\x9b31m red" in shown
    assert [line[:1] for line in shown.splitlines()] == [line[:1] for line in piped.splitlines()]
