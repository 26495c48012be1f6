"""The code blocks of the docs, and how tests/docs/test_docs.py runs them as a reader would.

The convention, for whoever writes docs (README.md and every page of docs/):

- Every fenced block names its language. ```` ```sh ````, ```` ```console ```` and
  ```` ```python ```` blocks are run by the tests, from the root of a scratch copy of
  the repository, as a reader with the virtual environment active runs them (`netdsl`,
  `python` and `python3` on the PATH are the environment's). The pages of `OUTSIDE`
  (the tutorial) run instead in an empty folder, as a reader follows them in a folder
  of their own; `$REPO` names the repository, for a file they take from it:
  - ```` ```sh ````: the block is one shell script; it must exit with status 0.
  - ```` ```console ````: each line starting with `$ ` is a command, the lines under it
    its output (stdout and stderr together), compared line by line; a line `...` stands
    for any number of lines, and `...` inside a line for any text (a figure that
    floating-point summation order changes from one CPU to another). A command must exit
    with status 0 unless its output shows an `error`.
  - ```` ```python ````: the block runs as a script. A line that is an expression with a
    comment after it states the expression's value: `model.fc.out_features  # 10` is
    checked to be `repr` of the value (a tuple's without its parentheses). It must also
    paste into Python's interactive prompt: a blank line ends each indented block
    (`for`, `with`, `def`) before the next statement, and none sits inside one.
- Add ` no-run` to the language to show a block without running it: installs, editor
  set-up, what needs a GPU, long benchmarks (```` ```sh no-run ````). Say why on the
  line before it, `<!-- no-run: it installs packages -->`: every block that can run,
  runs, unless its page says why not.
- ```` ```text ```` is output shown without its command, or a synopsis: not run.
  ```` ```netdsl ```` is spec text; with `<!-- file: NAME -->` on the line before it,
  it is saved as NAME in the scratch copy before the page's commands run. Other
  languages (`json`, `lua`, `toml`) are configuration, shown as they are.
- ```` ```mermaid ```` is a diagram, drawn where the page is read. With
  `<!-- netdsl graph ARGS -->` on the line before it, it is what that command
  prints (checked by tests/docs/test_gallery.py).

docs/errors.md is generated (tests/errors_doc.py): its ```` ```console ```` blocks are
the recorded output of its examples, checked by tests/check/test_diagnostics.py, not run here.
"""

from __future__ import annotations

import ast
import code
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = {"sh", "console", "python"}
# Pages a reader follows in a folder of their own, outside the repository.
OUTSIDE = {"tutorial.md"}
SHOWN = {"text", "netdsl", "json", "lua", "toml", "mermaid"}
FLAGS = {"no-run"}
_FENCE = re.compile(r"^```(.*)$")
_FILE = re.compile(r"^<!-- file: (\S+) -->$")
_NO_RUN = re.compile(r"^<!-- no-run: (.*?) ?-->$")


@dataclass
class Block:
    page: Path
    line: int      # of the opening fence, 1-based
    language: str
    flags: set[str]
    text: str
    file: str | None  # the name given by a `<!-- file: NAME -->` line before it
    reason: str | None = None  # why it is not run, from a `<!-- no-run: REASON -->` line before it

    @property
    def runs(self) -> bool:
        return self.language in RUN and "no-run" not in self.flags

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """README.md and the docs pages whose blocks are run (docs/errors.md is generated)."""
    return [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "errors.md")


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        words = m.group(1).split()
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{page.name}:{start + 1}: a code block that is never closed")
        i += 1
        before = lines[start - 1] if start else ""
        file, no_run = _FILE.match(before), _NO_RUN.match(before)
        out.append(Block(page, start + 1, words[0] if words else "", set(words[1:]),
                         "\n".join(body) + "\n", file.group(1) if file else None,
                         no_run.group(1).strip() if no_run else None))
    return out


def prose(text: str) -> str:
    """The lines of a Markdown page outside its fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def slug(heading: str) -> str:
    """The anchor GitHub makes of a heading: lower case, punctuation dropped, spaces
    to hyphens (a repeated heading's -1, -2 ... aside).

    >>> slug("General dataflow: named results")
    'general-dataflow-named-results'
    """
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def headings(text: str, level: int) -> list[str]:
    """The text of each heading of exactly ``level`` (2 for ``##``), in order, outside code."""
    return re.findall(rf"^{'#' * level}\s+(.*?)\s*$", prose(text), re.M)


def workspace(tmp: Path, page: Path) -> tuple[Path, dict[str, str]]:
    """Where the page's commands run, with the page's files written into it, and the
    environment of a shell in which the virtual environment is active: a scratch copy of
    the repository, or for a page of ``OUTSIDE`` an empty folder, with ``REPO`` naming the
    repository."""
    outside = page.name in OUTSIDE
    root = tmp / ("work" if outside else "repo")
    if outside:
        root.mkdir()
    else:
        shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info"))
    for b in blocks(page):
        if b.file:
            (root / b.file).write_text(b.text, encoding="utf-8")
    bin_ = tmp / "bin"
    bin_.mkdir()
    for name, args in (("netdsl", '-m netdsl "$@"'), ("python", '"$@"'), ("python3", '"$@"')):
        (bin_ / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}\n')
        (bin_ / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ.get('PATH', '')}",
           # The code under test is this checkout's, whatever is installed.
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "COLUMNS": "80"}
    if outside:
        env["REPO"] = str(ROOT)
    env.pop("NETDSL_TRACEBACK", None)
    return root, env


def run_sh(block: Block, cwd: Path, env: dict[str, str]) -> None:
    r = subprocess.run(["bash", "-e", "-c", block.text], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{block.where}: exit status {r.returncode}\n{r.stdout}{r.stderr}"


def console_commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` line of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line.rstrip())
        elif line.strip():
            raise AssertionError(f"{block.where}: output before the first `$ ` command: {line!r}")
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``expected``, a line `...` standing for any number of lines
    and `...` inside a line for any text.

    >>> matches(["a", "...", "max 9.8...e+03; ok"], ["a", "b", "c", "max 9.86e+03; ok"])
    True
    >>> matches(["max 9.8...e+03"], ["max 1.0e+03"])
    False
    """
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and _line_matches(expected[0], actual[0]) and matches(expected[1:], actual[1:])


def _line_matches(expected: str, actual: str) -> bool:
    if "..." not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[0]:
        lines = lines[1:]
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def run_console(block: Block, cwd: Path, env: dict[str, str]) -> None:
    commands = console_commands(block)
    assert commands, f"{block.where}: a console block without a `$ ` command"
    for command, expected in commands:
        r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
        actual = _trim([line.rstrip() for line in r.stdout.splitlines()])
        expected = _trim(expected)
        assert matches(expected, actual), (
            f"{block.where}: `{command}` printed\n" + "\n".join(actual) + "\n--- the docs show\n"
            + "\n".join(expected))
        if not any(line.startswith("error") for line in expected):
            assert r.returncode == 0, f"{block.where}: `{command}` exited with {r.returncode}"


def _stated_values(source: str) -> dict[int, str]:
    """Line number → the comment at the end of that line."""
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:].strip()
    return comments


def run_python(block: Block, cwd: Path) -> None:
    tree = ast.parse(block.text, filename=block.where)
    comments = _stated_values(block.text)
    namespace: dict = {"__name__": "__main__"}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        for stmt in tree.body:
            where = f"{block.where} (line {block.line + stmt.lineno})"
            stated = comments.get(stmt.end_lineno) if isinstance(stmt, ast.Expr) else None
            if stated is None:
                exec(compile(ast.Module([stmt], []), where, "exec"), namespace)
                continue
            value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
            shown = {repr(value)}
            if isinstance(value, tuple):
                shown.add(", ".join(map(repr, value)))
            assert stated in shown, f"{where}: the docs say {stated}, it is {repr(value)}"
    finally:
        os.chdir(old)


class _Prompt(code.InteractiveConsole):
    """Python's interactive prompt, compiling what is typed without running it."""

    def __init__(self) -> None:
        super().__init__(filename="<stdin>")
        self.errors: list[str] = []

    def runcode(self, code) -> None:
        pass

    def showsyntaxerror(self, filename=None, **kwargs) -> None:
        error = sys.exc_info()[1]
        self.errors.append(f"line {error.lineno} of the statement: {error.msg}: {(error.text or '').strip()!r}")


def pasted(block: Block) -> list[str]:
    r"""The syntax errors of the block pasted into Python's interactive prompt, line by line.

    >>> b = Block(ROOT / "README.md", 1, "python", set(), "with a:\n    b = 1\nc = 2\n", None)
    >>> pasted(b)
    ["line 3 of the statement: invalid syntax: 'c = 2'"]
    >>> b.text = "with a:\n    b = 1\n\nc = 2\n"
    >>> pasted(b)
    []
    """
    prompt = _Prompt()
    for line in block.text.splitlines():
        prompt.push(line)
    prompt.push("")  # the Enter that ends what was pasted
    return prompt.errors


def run(block: Block, tmp: Path) -> None:
    """Run the block on its own, in a workspace of its own."""
    run_in(block, *workspace(tmp, block.page))


def run_in(block: Block, cwd: Path, env: dict[str, str]) -> None:
    if block.language == "sh":
        run_sh(block, cwd, env)
    elif block.language == "console":
        run_console(block, cwd, env)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            run_python(block, cwd)
