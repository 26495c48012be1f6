"""The canonical layout of a spec, for ``netdsl fmt``.

The formatter works on tokens, not on the AST: comments and blank lines are not in
the AST, and a token stream keeps every one of them where it was. It only decides
the white space between tokens:

- one statement per line, indented four spaces per ``{``; a ``;`` becomes a line break;
- ``} else {`` and ``} shortcut ... {`` continue the line of the ``}``, and a block or
  network header split before ``as`` or ``{`` is joined into one line;
- one space around binary operators, ``=`` and after ``,`` and a label's ``:``; none
  inside brackets, before ``(`` of a call or ``[`` of an index, after a unary sign,
  or around ``.`` and a slice's ``:``;
- at most one blank line in a row, none right after ``{`` or before ``}``;
- a bracketed line longer than ``WIDTH`` is filled: it breaks at the shallowest bracket
  depth it can, after a comma if there is one, else before ``for``/``if``/``else``/
  ``and``/``or``, else at a space, never inside a short subscript, and continues under
  the first column inside the innermost open bracket, the way the shipped specs are
  written; a list of lists is laid out as a table, one row per line;
- comments stay on their line; a comment inside brackets ends that line;
- no trailing commas, no trailing spaces, one newline at the end.

Only a file that parses is formatted, so layout never hides a syntax error, and the
result parses to the same AST (the tests check this on every shipped spec and on
fuzzer input). Formatting the result again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..diagnostics import Diagnostic, NetdslError
from ..limits import Limits
from . import parser
from .loader import check_nesting

WIDTH = 100
INDENT = "    "

_TOKEN = re.compile(r"""
    (?P<nl>\r\n|\r|\n)
  | (?P<ws>[\t \f]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<string>"(?:[^"\\\r\n]|\\[^\r\n])*")
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>\*\*|//|==|!=|<=|>=|->|=>|.)
""", re.X)

# Words after which a `-`, `+` or `[` starts an operand: they are not values.
_KEYWORDS = frozenset({
    "import", "assert", "in", "block", "network", "let", "input", "init", "for", "if",
    "else", "residual", "shortcut", "concat", "dense", "gate", "side", "and", "or", "not",
})
# Where a long expression breaks best, when no comma is at hand: before these words.
_BREAK_BEFORE = frozenset({"for", "if", "else", "and", "or"})
# Keywords after which `(` opens an operand, not an argument list.
_OPERAND_WORDS = frozenset({"assert", "in", "let", "input", "if", "else", "and", "or", "not", "for",
                            "import", "return"})
_VALUE_WORDS = frozenset({"true", "false", "none"})
_BINARY = frozenset({"+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=",
                     "=", "->", "=>"})
_OPEN = {"(": ")", "[": "]"}
_CLOSE = frozenset(_OPEN.values())
_CONTINUES = frozenset({"else", "shortcut"})


@dataclass(frozen=True)
class _Tok:
    kind: str  # nl, comment, string, number, name, op
    text: str


def format_text(text: str, filename: str | None = None, limits: Limits | None = None) -> str:
    """``text`` in the canonical layout. Raises NetdslError when it does not parse.

    >>> print(format_text("network n(){input [1,8,8];conv1:conv2d(4,3,padding=1) # stem\\nrelu}"), end="")
    network n() {
        input [1, 8, 8]
        conv1: conv2d(4, 3, padding = 1)  # stem
        relu
    }
    """
    limits = limits or Limits()
    if len(text) > limits.max_file_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_file_bytes:
        # Before any work: an editor's format request of a huge document is answered at once.
        raise NetdslError([Diagnostic("E0401", f"{filename or 'the text'} is over the limit of "
                                      f"{limits.max_file_bytes} bytes", None, "",
                                      "raise it with --limit max_file_bytes=N if this is really a spec")])
    if text.startswith("\ufeff"):
        text = text[1:]
    check_nesting(text, filename, limits)
    parser.parse(text, filename, limits)
    return _layout(_tokens(text))


def _tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        if kind != "ws":
            out.append(_Tok(kind, "\n" if kind == "nl" else m.group().rstrip()))
    return out


@dataclass
class _Line:
    indent: int
    tokens: list[_Tok]  # comments inside brackets are tokens too: they end a row
    comment: str | None = None  # the comment at the end of the line
    blank_before: bool = False


def _layout(tokens: list[_Tok]) -> str:
    lines: list[_Line] = []
    current = _Line(0, [])
    depth = 0  # open `{`
    brackets = 0  # open `(` and `[`
    newlines = 0  # line breaks since the last token: two or more leave a blank line
    ended = False  # the current line is complete but for a comment on the same line

    def flush():
        nonlocal current, ended
        if current.tokens or current.comment is not None:
            lines.append(current)
        current, ended = _Line(depth, []), False

    def next_significant(i: int) -> int:
        while i < len(tokens) and tokens[i].kind in ("nl", "comment"):
            i += 1
        return i

    def continues(i: int) -> bool:
        if i >= len(tokens):
            return False
        if tokens[i].kind == "name" and tokens[i].text in _CONTINUES:
            return True
        # A block or network header split before `as` or `{` is one line.
        head = current.tokens
        return (bool(head) and head[0].text in ("block", "network") and not brackets
                and all(t.text != "{" for t in head) and tokens[i].text in ("as", "{"))

    for i, tok in enumerate(tokens):
        if tok.kind == "nl":
            newlines += 1
            if brackets:
                continue
            if continues(next_significant(i + 1)) and not ended and current.comment is None:
                continue  # the lexer joins such a line to the one above
            flush()
            continue
        blank, same_line = newlines >= 2, newlines == 0
        newlines = 0
        if ended and tok.text == "}" and current.comment is None:
            current.tokens.append(tok)  # an empty body stays `{}`
            depth -= 1
            ended = False
            continue
        if ended:  # after a `{`: only a comment may stay on its line
            if tok.kind == "comment" and same_line:
                current.comment = tok.text
                continue
            flush()
        if tok.kind == "comment":
            if brackets and current.tokens:
                current.tokens.append(tok)
            elif current.tokens and same_line:
                current.comment = tok.text
            else:
                flush()  # a line of its own (also between `}` and `else`)
                current.comment = tok.text
                current.blank_before = blank and _after_content(lines)
                flush()
            continue
        if tok.kind == "op" and tok.text == ";" and not brackets:
            flush()
            continue
        if tok.kind == "op" and tok.text == "}":
            flush()
            depth -= 1
            current = _Line(depth, [tok])  # `} else {`, `} shortcut ... {`, `} * 3` go on
            continue
        if not current.tokens and current.comment is None:
            current.indent = depth
            current.blank_before = blank and _after_content(lines)
        current.tokens.append(tok)
        if tok.kind == "op":
            if tok.text in _OPEN:
                brackets += 1
            elif tok.text in _CLOSE:
                brackets = max(0, brackets - 1)
            elif tok.text == "{":
                depth += 1
                ended = True
    flush()

    out: list[str] = []
    for line in lines:
        if line.blank_before and out and not _is_close(line):
            out.append("")
        out.extend(_render(line))
    return "\n".join(out).rstrip("\n") + "\n" if out else ""


def _after_content(lines: list[_Line]) -> bool:
    """Whether a blank line may go here: not first in the file, nor right after a `{`."""
    return bool(lines) and not (lines[-1].tokens and lines[-1].tokens[-1].text == "{")


def _is_close(line: _Line) -> bool:
    return bool(line.tokens) and line.tokens[0].text == "}"


def _render(line: _Line) -> list[str]:
    prefix = INDENT * line.indent
    rows = _rows(_spaced(_drop_trailing_commas(line.tokens)), prefix) if line.tokens else [prefix]
    if line.comment is not None:
        rows[-1] = (rows[-1] + "  " + line.comment) if line.tokens else prefix + line.comment
    return rows


Piece = tuple[str, str, "_Tok"]


def _rows(pieces: list[Piece], prefix: str) -> list[str]:
    flat = prefix + "".join(space + text for space, text, _ in pieces).lstrip(" ")
    if len(flat) <= WIDTH and not any(p[2].kind == "comment" for p in pieces):
        return [flat]
    table = _table(pieces)
    if table is None:
        return _fill(pieces, prefix)
    head, items, tail = table
    rows = _rows(head, prefix)
    for item in items:
        rows.extend(_rows(item, prefix + INDENT))
    rows.extend(_rows([("", tail[0][1], tail[0][2])] + tail[1:], prefix))
    return rows


def _table(pieces: list[Piece]) -> tuple[list[Piece], list[list[Piece]], list[Piece]] | None:
    """A list of lists at the line's outer level, split as a table is laid out: one row
    per item, each ending with a comma. None where the line holds no such list."""
    depth = 0
    for i, (_, text, _tok) in enumerate(pieces):
        if text in _OPEN:
            if depth == 0 and text == "[" and (i == 0 or not _is_value(_code_before(pieces, i))):
                items, end = _items(pieces, i)
                if end is not None and len(items) >= 2 and any(it[0][1] == "[" for it in items if it):
                    return pieces[:i + 1], items, pieces[end:]
            depth += 1
        elif text in _CLOSE:
            depth -= 1
    return None


def _code_before(pieces: list[Piece], i: int) -> _Tok:
    for j in range(i - 1, -1, -1):
        if pieces[j][2].kind != "comment":
            return pieces[j][2]
    return pieces[i][2]


def _items(pieces: list[Piece], start: int) -> tuple[list[list[Piece]], int | None]:
    """The items of the bracket opened at ``start``, each with its comma, and where it closes."""
    items: list[list[Piece]] = []
    item: list[Piece] = []
    depth = 0
    for j in range(start + 1, len(pieces)):
        space, text, tok = pieces[j]
        if depth == 0 and text in _CLOSE:
            if item:
                items.append(item + [("", ",", _Tok("op", ","))])
            return items, j
        if text in _OPEN:
            depth += 1
        elif text in _CLOSE:
            depth -= 1
        if depth == 0 and text == ",":
            items.append(item + [(space, text, tok)])
            item = []
        elif tok.kind == "comment" and not item and items:
            items[-1].append((space, text, tok))  # a comment after a comma stays on its row
        else:
            item.append(("", text, tok) if not item else (space, text, tok))
    return items, None


def _drop_trailing_commas(tokens: list[_Tok]) -> list[_Tok]:
    """Without a comma that only ends a list: the layout adds none back, so one rule."""
    out = []
    for i, tok in enumerate(tokens):
        if tok.text == ",":
            j = i + 1
            while j < len(tokens) and tokens[j].kind == "comment":
                j += 1
            if j < len(tokens) and tokens[j].text in _CLOSE:
                continue
        out.append(tok)
    return out


def _spaced(tokens: list[_Tok]) -> list[tuple[str, str, _Tok]]:
    """Each token with the space that goes before it on a line."""
    out: list[tuple[str, str, _Tok]] = []
    prev: _Tok | None = None
    prev_unary = False
    brackets: list[str] = []
    for tok in tokens:
        text = tok.text
        unary = False
        if prev is None:
            space = ""
        elif tok.kind == "comment":
            space = "  "
        elif prev.kind == "comment":
            space = ""
        elif text in (",", ")", "]", ";", "."):
            space = ""
        elif prev.text in ("(", "[", ".") or prev_unary or (text == "}" and prev.text == "{"):
            space = ""
        elif text == ":":
            space = ""
        elif prev.text == ":":
            space = "" if brackets and brackets[-1] == "[" else " "
        elif text in ("(", "[") and _is_value(prev):
            space = ""  # a call or an index
        elif text == "(" and prev.kind == "name" and prev.text not in _OPERAND_WORDS:
            space = ""  # `concat(a, b)`, `add(...)`, `output dict(...)`: called like functions
        elif text in ("+", "-") and not _is_value(prev):
            space, unary = " ", True
        else:
            space = " "
        if text == "-" or text == "+":
            unary = prev is None or (not _is_value(prev) and prev.kind != "comment")
        out.append((space, text, tok))
        if text in _OPEN:
            brackets.append(text)
        elif text in _CLOSE and brackets:
            brackets.pop()
        prev, prev_unary = tok, unary
    return out


def _is_value(tok: _Tok) -> bool:
    """Whether ``tok`` ends an operand, so that `-` after it subtracts and `(` calls."""
    if tok.kind in ("string", "number"):
        return True
    if tok.kind == "name":
        return tok.text not in _KEYWORDS or tok.text in _VALUE_WORDS
    return tok.text in _CLOSE


def _short_groups(pieces: list[tuple[str, str, _Tok]], limit: int = 40) -> list[bool]:
    """For each piece that opens a bracket: whether the group it opens is at most
    ``limit`` columns wide (a subscript that short is not broken)."""
    out = [False] * len(pieces)
    stack: list[tuple[int, int]] = []
    col = 0
    for i, (space, text, _) in enumerate(pieces):
        col += len(space) + len(text)
        if text in _OPEN:
            stack.append((i, col))
        elif text in _CLOSE and stack:
            j, start = stack.pop()
            out[j] = col - start <= limit
    return out


def _fill(pieces: list[tuple[str, str, _Tok]], prefix: str) -> list[str]:
    """Rows no wider than WIDTH where the brackets allow. A row that overflows breaks
    at its best place: the shallowest bracket depth, a comma before a space, and of
    those the last; it goes on under the first column inside its innermost bracket."""
    rows: list[list] = []  # each row: [indent, [(space, text, depth_before, opens_before)]]
    row: list = []
    indent = prefix

    def width(items, start: str) -> int:
        return len(start) + sum((len(sp) if k else 0) + len(tx) for k, (sp, tx, _, _) in enumerate(items))

    def columns(items, start: str) -> list[int]:
        """The column after each open bracket left open at the end of ``items``."""
        col, stack = len(start), list(opens_at_start)
        for k, (sp, tx, _, _) in enumerate(items):
            col += (len(sp) if k else 0) + len(tx)
            if tx in _OPEN:
                stack.append(col)
            elif tx in _CLOSE and stack:
                stack.pop()
        return stack

    opens_at_start: list[int] = []
    depth = 0
    index_open: list[int] = []  # depths of the open subscripts
    index_depth: list = []  # for each item of ``row``: inside a subscript?
    prev = None
    short = _short_groups(pieces)
    for i, (space, text, tok) in enumerate(pieces):
        row.append((space, text, depth, None))
        index_depth.append(index_open[-1] if index_open else None)
        if text in _OPEN:
            depth += 1
            # Never break inside a subscript (`xs[i - 1]`): it reads as one value.
            after_value = prev is not None and _is_value(prev)
            subscript = text == "[" and after_value and short[i]
            if subscript or index_open:
                index_open.append(depth)
        elif text in _CLOSE:
            depth = max(0, depth - 1)
            if index_open and index_open[-1] > depth:
                index_open.pop()
        if tok.kind != "comment":
            prev = tok
        forced = tok.kind == "comment"
        while forced or (width(row, indent) > WIDTH and len(row) > 1):
            if forced:
                cut = len(row)
            else:
                # A break before item k (k > 0) where a space was, inside a bracket.
                best = None
                for k in range(1, len(row)):
                    sp, tx, d, _ = row[k]
                    if sp != " " or d == 0 or row[k - 1][1] in _OPEN or index_depth[k] is not None:
                        continue
                    key = (d, row[k - 1][1] != ",", tx not in _BREAK_BEFORE, -k)
                    if best is None or key < best[0]:
                        best = (key, k)
                if best is None:
                    break
                cut = best[1]
            head, tail = row[:cut], row[cut:]
            index_depth = index_depth[cut:]
            rows.append([indent, head])
            opens_at_start = columns(head, indent)
            indent = " " * opens_at_start[-1] if opens_at_start else prefix + INDENT
            row = [("", tail[0][1], tail[0][2], None)] + tail[1:] if tail else []
            forced = False
    if row:
        rows.append([indent, row])
    out = []
    for start, items in rows:
        out.append((start + "".join((sp if k else "") + tx for k, (sp, tx, _, _) in
                                    enumerate(items))).rstrip())
    return out
