"""Quick fixes (Diagnostic.fixes): over every error and site fixture, each fix a
diagnostic proposes, applied to the spec, makes that diagnostic go away."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdsl.diagnostics import Fix
from netdsl.tools import ide

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "errors").glob("E*.net")) + \
    sorted((ROOT / "tests" / "fixtures" / "sites").glob("E*.net"))


def apply(text: str, fix: Fix) -> str:
    """``text`` with ``fix`` made: its span's columns count characters, the end is exclusive."""
    lines = text.split("\n")
    s = fix.span
    start = sum(len(line) + 1 for line in lines[:s.line - 1]) + s.column - 1
    end_line = s.end_line or s.line
    end = sum(len(line) + 1 for line in lines[:end_line - 1]) + s.end_column - 1
    return text[:start] + fix.text + text[end:]


def _where(d):
    return d.code, d.span.line, d.span.column


def _readable(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    return None if any(line.startswith(("# limit:", "# set:")) for line in text.splitlines()[:5]) else text


CASES = [(p, t) for p in FIXTURES if (t := _readable(p)) is not None]


@pytest.mark.parametrize(("path", "text"), CASES, ids=[p.name for p, _ in CASES])
def test_each_fix_removes_its_diagnostic(path, text):
    checked = ide.check(text, str(path), path.parent)
    for d in checked.diagnostics:
        for fix in d.fixes:
            assert fix.span.file == d.span.file
            if fix.span.file != str(path):
                continue
            again = ide.check(apply(text, fix), str(path), path.parent)
            assert _where(d) not in {_where(e) for e in again.diagnostics if e.span}, (fix, again.diagnostics)
            assert all(e.code[:3] != "E00" for e in again.diagnostics), "the fix does not parse"


def test_the_fixes_the_corpus_shows():
    """Which codes the fixtures get fixes for: a code that loses its fixes fails here."""
    found: dict[str, set[str]] = {}
    for path, text in CASES:
        for d in ide.check(text, str(path), path.parent).diagnostics:
            for fix in d.fixes:
                found.setdefault(d.code, set()).add(fix.title.split("`")[0].strip())
    assert found == {"E0101": {"change to"}, "E0102": {"change to"}, "E0110": {"change to"},
                     "E0125": {"name its result", "change to"}, "E0202": {"change to"}, "E0306": {"add"}}


HEAD = "network n() {\n    input [3, 8, 8]\n"
# (a spec's body, the fix's title, the body once fixed): one for each kind of fix.
FIXED = [
    ("    conv2d(4, 3, bias = False)\n", "change to `false`", "    conv2d(4, 3, bias = false)\n"),
    ("    let c = 4\n    conv2d(cc, 3)\n", "change to `c`", "    let c = 4\n    conv2d(c, 3)\n"),
    ("    conv2d(mx(4, 2), 3)\n", "change to `max`", "    conv2d(max(4, 2), 3)\n"),
    ("    conv2dd(4, 3)\n", "change to `conv2d`", "    conv2d(4, 3)\n"),
    ("    conv2d(4, 3, strid = 2)\n", "change to `stride`", "    conv2d(4, 3, stride = 2)\n"),
    ("    conv2d(4, 3, in_channels = 3, stride = 2)\n", "remove `in_channels`", "    conv2d(4, 3, stride = 2)\n"),
    ("    conv2d(in_channels = 3, out_channels = 4, kernel_size = 3)\n", "remove `in_channels`",
     "    conv2d(out_channels = 4, kernel_size = 3)\n"),
    ("    conv2d(4, 3, bias = \"false\")\n", "remove the quotes: `false`", "    conv2d(4, 3, bias = false)\n"),
    ("    conv2d(4, 3, stride = \"2\")\n", "remove the quotes: `2`", "    conv2d(4, 3, stride = 2)\n"),
    ("    fc: linear(10)\n", "add `flatten` before it", "    flatten\n    fc: linear(10)\n"),
    ("    act: relu\n    reuse atc\n", "change to `act`", "    act: relu\n    reuse act\n"),
    ("    relu -> skip\n    conv2d(3, 1)\n    add(skip, skp)\n", "name its result `skp`",
     "    relu -> skip\n    conv2d(3, 1) -> skp\n    add(skip, skp)\n"),
    ("    init conv2.weight = zeros\n    conv1: conv2d(4, 3)\n", "change to `conv1`",
     "    init conv1.weight = zeros\n    conv1: conv2d(4, 3)\n"),
    ("    relu -> a\n    output tupel(a)\n", "change to `tuple`", "    relu -> a\n    output tuple(a)\n"),
]


@pytest.mark.parametrize(("body", "title", "fixed"), FIXED, ids=[t for _, t, _ in FIXED])
def test_a_fix_makes_the_edit_its_help_proposes(body, title, fixed):
    text = HEAD + body + "}\n"
    (d,) = ide.check(text, None, Path(".")).diagnostics
    (fix,) = d.fixes
    assert fix.title == title
    assert apply(text, fix) == HEAD + fixed + "}\n"
    assert ide.check(apply(text, fix), None, Path(".")).diagnostics == []
