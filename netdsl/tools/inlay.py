"""Inlay hints: what a check inferred, written beside the text it is about.

At the end of each line that emits modules, the output shape of the last of them
(a line in a block, one shape per distinct instance); after a repetition's count
that is not a plain number, the counts it took (``* (stages[i] - 1)  = 2 | 3 | 5``).
They come from ide.check, so from the same checked IR as hover, and take netdsl's
1-based positions in the text that checked; the language server moves them to the
text being edited.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import ir
from .ide import MAX_HOVER_ROWS, Checked, _walk, lines_kept

MAX_SHAPES = 2  # distinct shapes shown on one line; more are counted


@dataclass(frozen=True)
class Hint:
    """One hint: shown before the character at ``line``, ``column`` (1-based; one past
    the line's end is its end). ``kind`` is ``shape`` or ``count``."""

    line: int
    column: int
    label: str
    kind: str
    tooltip: str = ""


def hints(checked: Checked, filename: str | None, text: str) -> list[Hint]:
    """The hints of ``text``, which ``checked`` is the check of, in line order.

    >>> from pathlib import Path
    >>> from netdsl.tools.ide import check
    >>> text = "network n() { input [3, 8, 8]\\n stem: conv2d(4, 3)  # a stem\\n relu * (1 + 1) }"
    >>> [(h.line, h.column, h.label) for h in hints(check(text, None, Path(".")), None, text)]
    [(2, 20, '[4, 6, 6]'), (3, 16, '= 2'), (3, 18, '[4, 6, 6]')]
    """
    lines = text.split("\n")
    out: list[Hint] = []
    shown: set[int] = set()
    for net in checked.networks:
        # Per line, the statements that end last on it: the shape the line gives.
        last: dict[int, tuple[int, list[tuple[int, ...]], list[str]]] = {}
        for node, name in _walk(net):
            end = _end(node, filename, lines)
            if end is None or end[0] in shown:
                continue
            line, column = end
            col, shapes, names = last.get(line, (0, [], []))
            if column > col:
                col, shapes, names = column, [], []
            if column == col:
                shapes.append(tuple(node.out_shape))
                names.append(name)
                last[line] = (col, shapes, names)
        for line, (_, shapes, names) in last.items():
            # The first network with something on a line answers for it, as hover does.
            shown.add(line)
            out.append(_shape_hint(line, _code_end(lines[line - 1]) + 1, shapes, names, net.name))
    for count in checked.counts:
        s = count.span
        if s.file != filename or s.end_line is None or s.end_column is None or not 0 < s.end_line <= len(lines):
            continue
        values = list(count.values) + (["…"] if count.more else [])
        out.append(Hint(s.end_line, s.end_column, "= " + " | ".join(values), "count",
                        "the repetition's count" + ("s, one per instance or turn" if len(values) > 1 else "")))
    out.sort(key=lambda h: (h.line, h.column, h.kind != "count"))
    return out


def moved(seen: list[tuple[str, Checked]], filename: str | None, text: str, first: int, last: int,
          stale: str) -> list[tuple[int, Hint]]:
    """The hints of lines ``first`` to ``last`` of ``text``, each with the line it goes on,
    from the checks ``seen`` (text and check, the newest first): a line takes its hints
    from the first whose text is ``text``, or else from the first that has hints for it
    on a line an edit left as it was, their tooltip starting with ``stale``.

    >>> from pathlib import Path
    >>> from netdsl.tools.ide import check
    >>> old = "network n() { input [3, 8, 8]\\n relu }"
    >>> new = "# a comment\\n" + old
    >>> seen = [(old, check(old, None, Path(".")))]
    >>> [(line, h.label, h.tooltip[:5]) for line, h in moved(seen, None, new, 1, 9, "old:")]
    [(3, '[3, 8, 8]', 'old:\\n')]
    """
    out: dict[int, list[Hint]] = {}
    for was, checked in seen:
        same = was == text
        kept = None if same else lines_kept(was, text)
        found: dict[int, list[Hint]] = {}
        for h in hints(checked, filename, was):
            line = h.line if kept is None else kept.get(h.line)
            if line is not None and first <= line <= last and line not in out:
                found.setdefault(line, []).append(h if same else replace(h, tooltip=f"{stale}\n\n{h.tooltip}"))
        out.update(found)
    return [(line, h) for line in sorted(out) for h in out[line]]


def _end(node, filename: str | None, lines: list[str]) -> tuple[int, int] | None:
    """Where the statement that made ``node`` ends in the file, if a hint goes there: a
    layer, a merge of named results, a chunk (its parts' shape), a block instance or a
    labelled group's ``{ ... }`` (not a combinator, nor a shortcut's label, whose line
    opens a body)."""
    s = node.span
    if s is None or s.file != filename or not isinstance(node, (ir.Layer, ir.Merge, ir.Chunk, ir.Scope)):
        return None
    line = s.end_line or s.line
    if not 0 < line <= len(lines) or s.end_column is None:
        return None
    if isinstance(node, ir.Scope) and node.block is None and lines[line - 1][s.end_column - 2:s.end_column - 1] != "}":
        return None
    return line, s.end_column


def _shape_hint(line: int, column: int, shapes: list[tuple[int, ...]], names: list[str], net: str) -> Hint:
    distinct = list(dict.fromkeys(shapes))
    label = " | ".join(_shape(s) for s in distinct[:MAX_SHAPES])
    if len(distinct) > MAX_SHAPES:
        label += f" | … ({len(distinct)} in all)"
    rows = [f"{n}: {_shape(s)}" for n, s in zip(names, shapes, strict=True)]
    more = [f"… and {len(rows) - MAX_HOVER_ROWS} more"] if len(rows) > MAX_HOVER_ROWS else []
    return Hint(line, column, label, "shape", "\n".join([f"network {net}, output of"] + rows[:MAX_HOVER_ROWS] + more))


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _code_end(line: str) -> int:
    """The length of ``line`` without its comment and the spaces before it.

    >>> _code_end('  a: conv2d(4, 3)   # x'), _code_end('f("#")'), _code_end('}')
    (17, 6, 1)
    """
    i, n, end = 0, len(line), 0
    while i < n:
        ch = line[i]
        if ch == "#":
            break
        if ch == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
        if not ch.isspace():
            end = i + 1
        i += 1
    return min(end, n)

