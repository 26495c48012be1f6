"""The outline of a spec, and the names a workspace defines.

A document's symbols nest as its names do: the networks, blocks and ``let``s at the
top level; inside them the ``let``s, side heads and labels, a labelled group or
shortcut holding the labels written in it. Constructs that open no scope
(``for``, ``if``, ``residual``, an unlabelled group) add no level: their labels sit
in the enclosing one, as their modules do in the ``state_dict``. A label is shown as
written, a template with its quotes (``"layer{i + 1}"``).

Everything here reads the syntax tree alone, so it answers on a file whose
network does not check. Positions are netdsl's (1-based, in characters; a range's
end is one past its last character).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

from ..diagnostics import NetdslError
from ..limits import Limits
from ..span import Span
from ..syntax import ast
from ..syntax.loader import read_source
from .ide import parse_or_none


@dataclass(frozen=True)
class Symbol:
    """A named thing of a spec: ``kind`` is network, block, let, group (a labelled group,
    a labelled shortcut or a side head) or label (a labelled layer or block instance).
    ``span`` is all of it, from its keyword to its closing brace; ``name`` where its
    name is written."""

    name: str
    kind: str
    span: Span
    name_span: Span
    detail: str = ""
    children: tuple[Symbol, ...] = ()


def outline(module: ast.Module, text: str) -> list[Symbol]:
    """The symbols of a parsed document, nested as its scopes are.

    >>> from netdsl.syntax.parser import parse
    >>> text = "let w = 4\\nnetwork n() {\\n input [3, 8, 8]\\n stem: {\\n  conv: conv2d(w, 3)\\n }\\n}\\n"
    >>> def show(ss, d=0):
    ...     for s in ss:
    ...         at = f"{s.span.line}:{s.span.column}-{s.span.end_line}:{s.span.end_column}"
    ...         print("  " * d + f"{s.kind} {s.name} {at}")
    ...         show(s.children, d + 1)
    >>> show(outline(parse(text, None), text))
    let w 1:1-1:10
    network n 2:1-7:2
      group stem 4:2-6:3
        label conv 5:3-5:21
    """
    lines = text.split("\n")
    braces = _Braces(text)
    out = []
    for item in module.items:
        if isinstance(item, ast.Import):
            continue
        keyword = _item_keyword(item)
        line = lines[item.span.line - 1] if 0 < item.span.line <= len(lines) else ""
        at = line.rfind(keyword, 0, item.span.column - 1)
        start = (item.span.line, at + 1 if at >= 0 else item.span.column)
        if isinstance(item, (ast.BlockDef, ast.NetworkDef)):
            end = braces.after((item.span.line, item.span.column)) or _end(item, braces)
            kind = "block" if isinstance(item, ast.BlockDef) else "network"
            detail = f"{kind} {item.name}({', '.join(p.name for p in item.params)})"
            children = tuple(_body(item.body, lines, braces))
        elif isinstance(item, ast.NetworkAlias):
            end, kind, children = _end(item, braces), "network", ()
            detail = f"network {item.name} = {item.base.id}(…)"
        elif isinstance(item, ast.Extern):
            end, kind, detail, children = _end(item, braces), "extern", f"extern {item.name} = {item.target}", ()
        else:
            end, kind, detail, children = _end(item, braces), "let", "", ()
        out.append(Symbol(item.name, kind, _span(item.span.file, start, end), item.span, detail, children))
    return out


def extents(module: ast.Module, text: str) -> list[Span]:
    """Where each block and network of a parsed document is, from its name to its closing
    brace: ``outline`` without what is inside them, for a fraction of its time.

    >>> from netdsl.syntax.parser import parse
    >>> text = "let w = 4\\nblock b(c) {\\n    relu\\n}\\n"
    >>> [(s.line, s.end_line) for s in extents(parse(text, None), text)]
    [(2, 4)]
    """
    braces = _Braces(text)
    out = []
    for item in module.items:
        if isinstance(item, (ast.BlockDef, ast.NetworkDef)):
            end = braces.after((item.span.line, item.span.column)) or (item.span.line, item.span.column)
            out.append(_span(item.span.file, (item.span.line, item.span.column), end))
    return out


def moved(found: Sequence[Symbol], kept: dict[int, int]) -> list[Symbol]:
    """The symbols of an earlier text in a text an edit made from it: those whose first,
    last and name lines the edit left as they were (``kept``: old line → new line), on
    the lines they are now.

    >>> s = Symbol("b", "block", Span(line=2, column=1, end_line=4, end_column=2), Span(line=2, column=7))
    >>> [(m.span.line, m.span.end_line) for m in moved([s], {2: 3, 4: 5})], moved([s], {2: 3})
    ([(3, 5)], [])
    """
    out = []
    for s in found:
        first, last = kept.get(s.span.line), kept.get(s.span.end_line or s.span.line)
        name = kept.get(s.name_span.line)
        if first is None or last is None or name is None:
            continue
        out.append(replace(s, span=s.span.replace(line=first, end_line=last),
                           name_span=s.name_span.replace(line=name, end_line=name),
                           children=tuple(moved(s.children, kept))))
    return out


def _body(body: Iterable, lines: list[str], braces: _Braces) -> list[Symbol]:
    """The symbols of the statements of one scope, those of constructs that open none included."""
    out: list[Symbol] = []
    for st in body:
        if isinstance(st, ast.Let):
            start = (st.span.line, _keyword(lines, st.span, "let"))
            out.append(Symbol(st.name, "let", _span(st.span.file, start, _end(st, braces)), st.span))
        elif isinstance(st, ast.Labelled):
            name = _written(lines, st.label.span) or _plain(st.label)
            unit = st.unit
            inner = tuple(_body(_statements(unit), lines, braces))
            grouped = not isinstance(unit, (ast.Use, ast.Repeat)) or bool(inner)
            detail = "" if grouped else _written(lines, unit.span).split("\n")[0]  # type: ignore[attr-defined]
            out.append(Symbol(name, "group" if grouped else "label", _span(st.span.file, _start(st), _end(st, braces)),
                              st.label.span, detail, inner))
        elif isinstance(st, ast.Side):
            where = st.name_span or st.span
            out.append(Symbol(st.name, "group", _span(st.span.file, _start(st), _end(st, braces)), where, "side",
                              tuple(_body(st.body, lines, braces))))
        elif isinstance(st, ast.Residual) and st.shortcut is not None and st.shortcut.label is not None:
            out.extend(_body(st.body, lines, braces))
            sc = st.shortcut
            where = sc.label_span or sc.span
            out.append(Symbol(_written(lines, where) or _plain(sc.label), "group",  # type: ignore[arg-type]
                              _span(st.span.file, _start(sc), _end(sc, braces)), where, "shortcut",
                              tuple(_body(sc.body, lines, braces))))
        else:
            out.extend(_body(_statements(st), lines, braces))
    return out


def _statements(node) -> Iterator:
    """The statements directly inside ``node``, in every body it has."""
    if not is_dataclass(node) or isinstance(node, (ast.Expr, Span)):
        return
    for f in fields(node):
        value = getattr(node, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, (ast.Stmt, ast.Shortcut)):
                yield v


def _plain(s: ast.String) -> str:
    return "".join(p if isinstance(p, str) else "{…}" for p in s.parts)


def _written(lines: list[str], s: Span | None) -> str:
    """The text ``s`` covers, if it is on one line."""
    if s is None or s.end_column is None or s.end_line not in (None, s.line) or not 0 < s.line <= len(lines):
        return ""
    return lines[s.line - 1][s.column - 1:s.end_column - 1]


def _keyword(lines: list[str], s: Span, word: str) -> int:
    line = lines[s.line - 1] if 0 < s.line <= len(lines) else ""
    at = line.rfind(word, 0, s.column - 1)
    return at + 1 if at >= 0 else s.column


def _spans(node) -> Iterator[Span]:
    """Every span in ``node`` and under it, its expressions' included."""
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, Span):
            yield n
        elif isinstance(n, (tuple, list)):
            todo.extend(n)
        elif is_dataclass(n):
            todo.extend(getattr(n, f.name) for f in fields(n))


def _start(node) -> tuple[int, int]:
    return min((s.line, s.column) for s in _spans(node))


def _end(node, braces: _Braces) -> tuple[int, int]:
    """One past the last character of ``node``: of what its spans cover, and of the
    closing brace of every body opened within."""
    start = _start(node)
    end = max(((s.end_line or s.line), s.end_column or s.column + 1) for s in _spans(node))
    return braces.close(start, end)


class _Braces:
    """The braces of a text, outside strings and comments: each ``{`` with the position
    one past its ``}``."""

    def __init__(self, text: str):
        self.opens: list[tuple[int, int]] = []
        self.closes: list[tuple[int, int]] = []
        stack: list[int] = []
        for n, line in enumerate(text.split("\n"), 1):
            i, size = 0, len(line)
            while i < size:
                ch = line[i]
                if ch == "#":
                    break
                if ch == '"':
                    i += 1
                    while i < size and line[i] != '"':
                        i += 2 if line[i] == "\\" else 1
                elif ch == "{":
                    stack.append(len(self.opens))
                    self.opens.append((n, i + 1))
                    self.closes.append((n, i + 2))  # unclosed: itself
                elif ch == "}" and stack:
                    self.closes[stack.pop()] = (n, i + 2)
                i += 1

    def close(self, start: tuple[int, int], end: tuple[int, int]) -> tuple[int, int]:
        """``end`` moved past the closing brace of every ``{`` between ``start`` and it."""
        i = bisect.bisect_left(self.opens, start)
        while i < len(self.opens) and self.opens[i] < end:
            end = max(end, self.closes[i])
            i += 1
        return end

    def after(self, at: tuple[int, int]) -> tuple[int, int] | None:
        """One past the ``}`` of the first ``{`` after ``at``."""
        i = bisect.bisect_left(self.opens, at)
        return self.closes[i] if i < len(self.opens) else None


def _span(file: str | None, start: tuple[int, int], end: tuple[int, int]) -> Span:
    return Span(file=file, line=start[0], column=start[1], end_line=end[0], end_column=end[1])


# ---------------------------------------------------------------- the workspace

MAX_FILES = 2_000  # .net files read from the workspace's folders for one query
SKIPPED = {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", "build", "dist"}


def spec_files(folder: Path, limit: int = MAX_FILES) -> list[Path]:
    """The ``.net`` files under ``folder``, at most ``limit``, not looking into hidden
    folders, virtual environments or build output.

    >>> spec_files(Path("/nowhere"))
    []
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".net"):
                found.append(Path(root) / name)
                if len(found) >= limit:
                    return found
    return found


def top_level(module: ast.Module) -> list[tuple[str, str, Span]]:
    """The names a file defines for others: its networks, blocks and ``let``s, each with
    its kind and where its name is.

    >>> from netdsl.syntax.parser import parse
    >>> [(n, k) for n, k, _ in top_level(parse("let w = 4\\nblock b() { relu }", None))]
    [('w', 'let'), ('b', 'block')]
    """
    return [(item.name, _item_keyword(item), item.span) for item in module.items if not isinstance(item, ast.Import)]


def _item_keyword(item) -> str:
    """The keyword a top-level item starts with: its kind of name."""
    return ("let" if isinstance(item, ast.Let) else "block" if isinstance(item, ast.BlockDef)
            else "extern" if isinstance(item, ast.Extern) else "network")


MAX_CACHED = 4_096  # files whose top-level names are kept between queries


class Defined:
    """The top-level names of files on disk, read again only when a file changes (its
    modification time or size); a file that cannot be read or parsed defines none."""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.kept: dict[Path, tuple[tuple[int, int], list[tuple[str, str, Span]]]] = {}

    def __call__(self, path: Path) -> list[tuple[str, str, Span]]:
        try:
            st = path.stat()
        except OSError:
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        kept = self.kept.get(path)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        try:
            module = parse_or_none(read_source(path, self.limits), str(path), self.limits)
        except NetdslError:
            module = None
        found = top_level(module) if module is not None else []
        if len(self.kept) >= MAX_CACHED:
            self.kept.clear()
        self.kept[path] = (stamp, found)
        return found


def matches(query: str, name: str) -> bool:
    """Whether ``name`` has the letters of ``query`` in order, in any case, as editors
    filter symbols.

    >>> matches("bnk", "bottleneck"), matches("BOT", "bottleneck"), matches("x", "bottleneck")
    (True, True, False)
    """
    rest = iter(name.lower())
    return all(ch in rest for ch in query.lower())
