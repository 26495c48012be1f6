"""Semantic tokens: what each word of a spec is, for editors that highlight from the
server (Neovim, Emacs with lsp-mode) rather than from the TextMate grammar.

The text is cut into tokens as the formatter cuts it; each name is then classed by
what refs.py found it to be (a block, a network, a parameter, a ``let``, a loop
variable, a label, a named result, with ``declaration`` where it is defined), or
else by the catalogues: a layer, a function or an init scheme is a ``function``
of the ``defaultLibrary``, a word the grammar quotes a ``keyword``, the name
before ``=`` in a call a ``parameter``. A text that does not parse is classed by
the catalogues alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..check.evaluate import BUILTINS, INIT_SCHEMES
from ..layers import LAYERS
from ..syntax import ast
from .refs import keywords, things

# The legend, in the order the protocol numbers them.
TYPES = ("keyword", "function", "class", "namespace", "parameter", "variable", "property", "string",
         "number", "comment", "operator")
MODIFIERS = ("declaration", "defaultLibrary")

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\r\n]*)
  | (?P<string>"(?:[^"\\\r\n]|\\[^\r\n])*"?)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\*\*|//|==|!=|<=|>=|->|[-+*/%<>=])
""", re.X)
_KIND = {"block": "class", "extern": "class", "network": "namespace", "parameter": "parameter", "let": "variable",
         "loop variable": "variable", "label": "property", "result": "variable"}
_KEYWORD_ARG = re.compile(r"\s*=(?!=)")


@dataclass(frozen=True)
class Token:
    """``line`` and ``column`` 1-based, ``length`` in characters."""

    line: int
    column: int
    length: int
    type: str
    modifiers: tuple[str, ...] = ()


def tokens(text: str, module: ast.Module | None) -> list[Token]:
    """The tokens of ``text``, in order; ``module``: its syntax tree, or None.

    >>> from netdsl.syntax.parser import parse
    >>> text = "block b(c) { conv: conv2d(c, 3, bias = false) }  # x"
    >>> [(t.column, t.type, *t.modifiers) for t in tokens(text, parse(text, None))][:6]
    ... # doctest: +NORMALIZE_WHITESPACE
    [(1, 'keyword'), (7, 'class', 'declaration'), (9, 'parameter', 'declaration'),
     (14, 'property', 'declaration'), (20, 'function', 'defaultLibrary'), (27, 'parameter')]
    """
    known: dict[tuple[int, int], tuple[str, tuple[str, ...]]] = {}
    if module is not None:
        for t in things(module, text):
            for i, s in enumerate(t.spans):
                known[(s.line, s.column)] = (_KIND[t.kind], ("declaration",) if t.defined and i == 0 else ())
    words = keywords()
    library = set(LAYERS) | set(BUILTINS) | set(INIT_SCHEMES)
    depth = 0
    out: list[Token] = []
    for n, line in enumerate(text.split("\n"), 1):
        for m in _TOKEN.finditer(line):
            kind, word, column = m.lastgroup, m.group(), m.start() + 1
            after_as = bool(out) and out[-1].line == n and out[-1].type == "keyword" and \
                line[out[-1].column - 1:out[-1].column + 1] == "as"
            if kind == "op":
                out.append(Token(n, column, len(word), "operator"))
                continue
            if kind != "name":
                out.append(Token(n, column, len(word), kind or "operator"))
                continue
            if (n, column) in known:
                typ, mods = known[(n, column)]
                out.append(Token(n, column, len(word), typ, mods))
            elif after_as:  # `block bottleneck(...) as Bottleneck`: the module's class
                out.append(Token(n, column, len(word), "class", ("declaration",)))
            elif word in library:
                out.append(Token(n, column, len(word), "function", ("defaultLibrary",)))
            elif word in words:
                out.append(Token(n, column, len(word), "keyword"))
            elif _KEYWORD_ARG.match(line, m.end()) and _in_parens(line, m.start(), depth):
                out.append(Token(n, column, len(word), "parameter"))
            else:
                out.append(Token(n, column, len(word), "variable"))
        depth += _parens(line)
    return out


def _in_parens(line: str, at: int, depth: int) -> bool:
    """Whether position ``at`` of ``line`` is inside parentheses, ``depth`` of them open
    before the line (comments and strings aside, which do not hold a ``name =``)."""
    return depth + _parens(line[:at]) > 0


def _parens(text: str) -> int:
    text = _TOKEN.sub(lambda m: "" if m.lastgroup in ("comment", "string") else m.group(), text)
    return text.count("(") - text.count(")")


def encode(found: list[Token], units) -> list[int]:
    """The protocol's relative encoding: five numbers a token, positions and lengths in
    the client's units (``units(line, column, length)`` gives the start and length).

    >>> encode([Token(1, 1, 5, "keyword"), Token(1, 7, 1, "class", ("declaration",)), Token(3, 2, 1, "number")],
    ...        lambda line, column, length: (column - 1, length))
    [0, 0, 5, 0, 0, 0, 6, 1, 2, 1, 2, 1, 1, 8, 0]
    """
    data: list[int] = []
    last_line, last_start = 1, 0
    for t in found:
        start, length = units(t.line, t.column, t.length)
        delta_line = t.line - last_line
        data += [delta_line, start - (last_start if delta_line == 0 else 0), length, TYPES.index(t.type),
                 sum(1 << MODIFIERS.index(m) for m in t.modifiers)]
        last_line, last_start = t.line, start
    return data
