"""Spec text → AST. The grammar lives in ``grammar.lark``; this module only
drives Lark and builds AST nodes, and turns Lark's errors into diagnostics.

Two paths give the same AST: the lean driver (``lalr.LeanParser``), which calls
the builder's rule methods as Lark's table reduces, and the plain one, Lark's
parse tree then the builder's pass over it. Every text takes the lean one first;
a text it declines (a syntax error, too deep, a builder diagnostic) is parsed
again on the plain one, which alone reports errors. (Lark's own tree-less path,
``Lark(transformer=...)``, was measured against the lean one and lost: see ``lalr``.)"""

from __future__ import annotations

import collections
import functools
from importlib import resources
from typing import Any

from lark import Lark, Token, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.visitors import Transformer_NonRecursive

from ..diagnostics import Diagnostic, NetdslError, by_position
from ..limits import Limits
from ..span import Span
from . import ast

_KEYWORDS = {
    "IMPORT", "EXTERN", "BLOCK", "NETWORK", "LET", "INPUT", "INIT", "FOR", "IF", "ELSE", "RESIDUAL",
    "SHORTCUT", "ASSERT", "IN", "CONCAT", "DENSE", "GATE", "SIDE", "SIDES", "AS", "REUSE",
    "APPLY", "FROM", "OUTPUT", "SPLIT", "ARROW", "LBRACE", "RBRACE", "LSQB", "RSQB",
}

# How a parse error names what it expected, in words.
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "_NL": "a new line",
    "LBRACE": "`{`", "RBRACE": "`}`", "LSQB": "`[`", "RSQB": "`]`", "LPAR": "`(`",
    "RPAR": "`)`", "COMMA": "`,`", "COLON": "`:`", "SEMICOLON": "`;`", "EQUAL": "`=`",
    "DOT": "`.`", "STAR": "`*`", "$END": "the end of the file", "_sep": "a new line",
}


# Rules that nest: each one met on the way down a tree is one level of
# nesting. The parser itself is iterative, but checking recurses once per level,
# so the levels a spec may use are bounded (E0402) before anything recurses.
_NESTS = frozenset({
    "body", "if_stmt", "list", "listcomp", "index", "slice", "call", "ifexp", "or_", "and_", "not_", "eq", "ne",
    "lt", "le", "gt", "ge", "contains", "add", "sub", "mul", "div", "floordiv", "mod", "neg",
    "pos", "pow",
})


class _ParenNewlines:
    """Drop line breaks inside ( ) and [ ], so calls and lists may span lines.

    The lean driver (``lalr.LeanParser``) applies the same rule from these attributes."""

    opens, closes, dropped = ("LPAR", "LSQB"), ("RPAR", "RSQB"), "_NL"
    always_accept = (dropped,)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in self.opens:
                depth += 1
            elif tok.type in self.closes:
                depth = max(0, depth - 1)
            elif tok.type == self.dropped and depth:
                continue
            yield tok


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    from .lalr import build_lark, skip_unit_reductions

    grammar = resources.files(__package__).joinpath("grammar.lark").read_text()
    options = dict(parser="lalr", lexer="contextual", start=["start", "expr"],
                   propagate_positions=True, maybe_placeholders=True)
    lark, _ = build_lark(grammar, _ParenNewlines(), options)
    skip_unit_reductions(lark)
    return lark


def _lean():
    """The lean driver over ``_lark()``'s table, or None where this Lark is not the one
    it knows (then every text takes the plain path)."""
    return _lean_over(_lark())


@functools.lru_cache(maxsize=1)
def _lean_over(lark: Lark):
    from .lalr import LeanParser, Unsupported

    try:
        return LeanParser(lark, _rule_methods(_Builder), _NESTS)
    except Unsupported:
        return None


def _fast(text: str, start: str, builder: _Builder):
    """What ``builder`` makes of ``text`` by the lean driver, or None where it declines:
    a syntax error, nesting past the builder's limit, or a diagnostic of the builder's
    own. The plain path then parses again and reports, so its diagnostics are the only ones."""
    from .lalr import Declined

    lean = _lean()
    if lean is None:
        return None
    try:
        node = lean.parse(text, start, builder, builder.max_depth)
    except Declined:
        return None
    return None if builder.errors else node


def parse(text: str, filename: str | None = None, limits: Limits | None = None) -> ast.Module:
    """Parse spec text into an AST module.

    >>> m = parse("block unit(c) { conv2d(c, 3)\\n relu }")
    >>> m.items[0].name
    'unit'
    """
    limits = limits or Limits()
    key = (text, filename, limits.max_nesting)
    module = _PARSED.get(key)
    if module is not None:
        _PARSED.move_to_end(key)
        return module
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        # Old Mac files end lines with a lone CR; CRLF needs nothing, but one rule is simpler.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    items = _fast(text, "start", _Builder(filename, text, max_depth=limits.max_nesting))
    if items is None:
        items = _plain(text, filename, limits)
    module = ast.Module(items=tuple(items), file=filename)
    if len(key[0]) <= _PARSED_TEXT:
        _PARSED[key] = module
        if len(_PARSED) > _PARSED_ENTRIES:
            _PARSED.popitem(last=False)
    return module


def _plain(text: str, filename: str | None, limits: Limits) -> list:
    """The items of ``text`` by Lark's tree and the builder's pass over it: the
    reference the lean driver is tested against, and the path that reports errors."""
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as e:
        raise NetdslError([_with_unclosed(_syntax_error(e, text, filename), text)],
                          {filename: text}) from None
    too_deep = _check_depth(tree, filename, limits.max_nesting)
    if too_deep is not None:
        raise NetdslError([too_deep], {filename: text})
    builder = _Builder(filename, text, max_depth=limits.max_nesting)
    items = builder.transform(tree)
    if builder.errors:
        raise NetdslError(by_position(builder.errors), {filename: text})
    return items


# The ASTs of the texts parsed last. An AST is immutable, so one parse serves every
# compile of the same text: a sweep checks a spec thousands of times, and every
# compile of resnet50.net parses the library it imports again. Large texts are left
# out, so the cache holds at most a few megabytes.
_PARSED: collections.OrderedDict = collections.OrderedDict()
_PARSED_ENTRIES = 64
_PARSED_TEXT = 64_000


def _check_depth(tree: Tree, filename: str | None, limit: int,
                 line: int = 0, col: int = 0) -> Diagnostic | None:
    """E0402 where ``tree`` nests deeper than ``limit`` levels, else None.

    Iterative, so a chain of ten thousand operators costs no Python stack.

    >>> _check_depth(_lark().parse("- - - 1", start="expr"), None, 2).code
    'E0402'
    """
    todo = [(tree, 0)]
    while todo:
        node, depth = todo.pop()
        if node.data in _NESTS:
            depth += 1
            if depth > limit:
                row, column = getattr(node.meta, "line", 1), getattr(node.meta, "column", 1)
                at = (Span(file=filename, line=line, column=col + column - 1) if line else
                      Span(file=filename, line=row, column=column))
                return Diagnostic(
                    "E0402", f"nesting deeper than {limit} levels", at, "too deep here",
                    "each `{ }`, list, call, operator and `else if` is one level; name a part "
                    "with `let`, or raise --limit max_nesting=N")
        todo.extend((child, depth) for child in node.children if isinstance(child, Tree))
    return None


def _shown(value: str, width: int = 40) -> str:
    """A token as a message quotes it: a 100 kB line is not repeated in full."""
    return value if len(value) <= width else value[:width] + "…"


def _syntax_error(e: UnexpectedInput, text: str, filename: str | None) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream
        ch = text[pos] if pos is not None and pos < len(text) else ""
        span = Span(file=filename, line=e.line, column=e.column, end_line=e.line,
                    end_column=e.column + 1)
        if ch == '"':
            return Diagnostic("E0003", "unterminated string", span, "the string starts here",
                              help="close the string with `\"` on the same line")
        shown = repr(ch)[1:-1] if ch else "end of input"
        return Diagnostic("E0002", f"unexpected character `{shown}`", span,
                          "not part of the language",
                          help="names are letters, digits and `_`; comments start with `#`")
    if isinstance(e, UnexpectedToken):
        tok = e.token
        expected = _expected_words(e.expected if not hasattr(e, "accepts") or not e.accepts
                                   else e.accepts)
        if tok.type == "$END":
            line = text.count("\n") + 1
            col = len(text.rsplit("\n", 1)[-1]) + 1
            span = Span(file=filename, line=line, column=col)
            return Diagnostic("E0004", "unexpected end of file", span,
                              f"expected {expected}",
                              help="a `{`, `(` or `[` may be left open above")
        span = Span(file=filename, line=tok.line, column=tok.column, end_line=tok.end_line,
                    end_column=tok.end_column)
        found = "line break" if tok.type == "_NL" else f"`{_shown(tok.value)}`"
        return Diagnostic("E0001", f"unexpected {found}", span, f"expected {expected}",
                          help=_syntax_help(tok, e.expected))
    if isinstance(e, UnexpectedEOF):
        line = text.count("\n") + 1
        return Diagnostic("E0004", "unexpected end of file", Span(file=filename, line=line,
                          column=len(text.rsplit("\n", 1)[-1]) + 1),
                          f"expected {_expected_words(e.expected)}")
    return Diagnostic("E0001", "syntax error", None, str(e))


_CLOSES = {")": "(", "]": "[", "}": "{"}
_OPENS = {v: k for k, v in _CLOSES.items()}


def unclosed(text: str) -> tuple[str, int, int] | None:
    """The bracket that is opened and never closed, as ``(bracket, line, column)``, or None.

    Where several are open, indentation says which one lost its closer, as rustc
    guesses: a ``}`` that starts a line closes the ``{`` of the line indented like it,
    so one opened in between, on a line indented deeper, is the unclosed one. Only a
    kind of bracket with more openers than closers is named: a misindented but
    balanced file has none.

    >>> unclosed("network n() {\\n    residual {\\n        relu\\n    relu\\n}\\n")
    ('{', 2, 14)
    >>> unclosed("network n() {\\n    relu\\n") , unclosed('a { "{" } # {')
    (('{', 1, 13), None)
    """
    stack: list[tuple[str, int, int, int]] = []  # bracket, line, column, indentation of its line
    # Where in the stack each kind of bracket, and each indentation of a `{`, is: a closer
    # finds its opener without walking the stack, so a file of many open brackets is linear.
    of_kind: dict[str, list[int]] = {"(": [], "[": [], "{": []}
    of_indent: dict[int, list[int]] = {}
    lost: list[tuple[str, int, int, int]] = []
    surplus = {"(": 0, "[": 0, "{": 0}
    for number, line in enumerate(text.split("\n"), 1):
        indent = len(line.expandtabs(4)) - len(line.lstrip(" \t").expandtabs(4))
        first = len(line) - len(line.lstrip(" \t"))
        i, n = 0, len(line)
        while i < n:
            ch = line[i]
            if ch == "#":
                break
            if ch == '"':  # a string, with its escapes, ends on its line (else E0003)
                i += 1
                while i < n and line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
            elif ch in _OPENS:
                of_kind[ch].append(len(stack))
                if ch == "{":
                    of_indent.setdefault(indent, []).append(len(stack))
                stack.append((ch, number, i + 1, indent))
                surplus[ch] += 1
            elif ch in _CLOSES:
                want = _CLOSES[ch]
                surplus[want] -= 1
                same = of_indent.get(indent) if ch == "}" and i == first else None
                at = same[-1] if same else of_kind[want][-1] if of_kind[want] else None
                if at is not None:  # else a stray closer, which is not this question
                    lost.extend(reversed(stack[at + 1:]))  # innermost first: nearest the closer
                    for popped in reversed(stack[at:]):
                        of_kind[popped[0]].pop()
                        if popped[0] == "{":
                            of_indent[popped[3]].pop()
                    del stack[at:]
            i += 1
    lost.extend(reversed(stack))
    for bracket, at_line, at_column, _ in lost:
        if surplus[bracket] > 0:
            return bracket, at_line, at_column
    return None


def _with_unclosed(d: Diagnostic, text: str) -> Diagnostic:
    """A syntax error with the bracket left open before it named, when there is one:
    the parser only notices a missing ``}`` lines later, or at the end of the file."""
    if d.code not in ("E0001", "E0004") or d.span is None:
        return d
    found = unclosed(text)
    if found is None or (found[1], found[2]) >= (d.span.line, d.span.column):
        return d
    bracket, line, column = found
    opened = text.split("\n")[line - 1][:column].strip()
    if len(opened) > 40:
        opened = "…" + opened[-39:]
    what = {"{": "body ends", "[": "list ends", "(": "arguments end"}[bracket]
    return Diagnostic(d.code, d.message, d.span, d.label,
                      f"add the `{_OPENS[bracket]}` that closes `{opened}` where its {what}",
                      d.notes + (f"this `{bracket}` at {line}:{column} is not closed",))


@functools.lru_cache(maxsize=1)
def _literals() -> dict[str, str]:
    """Terminal name → its text in backquotes, for the anonymous ones (`__ANON_0` is `==`)."""
    return {t.name: f"`{t.pattern.value}`" for t in _lark().terminals if t.pattern.type == "str"}


# What usually fixes a syntax error comes first in "expected ...": a closing
# bracket or a separator, rather than an operator that could continue an expression.
_FIRST = ("RPAR", "RSQB", "RBRACE", "COMMA", "_NL", "SEMICOLON", "COLON", "EQUAL", "NAME",
          "NUMBER", "STRING", "LBRACE", "LPAR", "LSQB")


def _expected_words(expected) -> str:
    words = []
    for name in sorted(expected, key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n)):
        if name in ("_NL_CONTINUE", "WS", "COMMENT"):
            continue
        word = _WORDS.get(name) or _literals().get(name)
        if word is None:
            word = f"`{name.lower()}`" if name.isalpha() and name.isupper() else name
        if word not in words:
            words.append(word)
    if not words:
        return "something else"
    if len(words) > 6:
        words = words[:6] + ["..."]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_help(tok: Token, expected) -> str | None:
    if tok.type == "EQUAL" and "LPAR" in expected:
        return "keyword arguments go inside the parentheses: `conv2d(64, 3, stride = 2)`"
    if "RPAR" in expected and "COMMA" in expected:
        return "separate arguments with `,` and close the call with `)`"
    if tok.type == "NAME" and "_NL" in expected:
        return "put each statement on its own line, or separate them with `;`"
    return None


def _tok_span(tok: Any, filename: str | None, line_offset: int = 0, col_offset: int = 0) -> Span:
    if line_offset:
        return Span(file=filename, line=line_offset, column=col_offset + tok.column - 1,
                    end_line=line_offset, end_column=col_offset + tok.end_column - 1)
    return Span(file=filename, line=tok.line, column=tok.column, end_line=tok.end_line,
                end_column=tok.end_column)


def _binop(op: str):
    """The builder's method for a binary operator rule."""
    def method(self, meta, children):
        left, right = children
        return ast.BinOp(op=op, left=left, right=right, span=self._span(meta))
    return method


def _unop(op: str):
    """The builder's method for a unary operator rule."""
    def method(self, meta, children):
        (operand,) = children
        return ast.UnaryOp(op=op, operand=operand, span=self._span(meta))
    return method


@functools.cache
def _rule_methods(cls) -> dict:
    """Rule name -> the plain function of each ``(self, meta, children)`` method of ``cls``."""
    return {name: attr.base_func for klass in reversed(cls.__mro__)
            for name, attr in vars(klass).items() if hasattr(attr, "visit_wrapper")}


@v_args(meta=True)
class _Builder(Transformer_NonRecursive):
    """Tree → AST nodes. Holds no logic beyond construction."""

    def __init__(self, filename: str | None, text: str, line: int = 0, col: int = 0,
                 max_depth: int = Limits.max_nesting):
        super().__init__()
        self.filename = filename
        self.text = text
        self.max_depth = max_depth
        self.line = line  # non-zero when parsing a `{hole}` of a string
        self.col = col
        self.errors: list[Diagnostic] = []

    def _call_userfunc(self, tree, new_children=None):
        # Lark's own dispatch binds a fresh v_args wrapper (functools.update_wrapper)
        # on every node, a tenth of the parse; the rule methods are called directly.
        f = _rule_methods(type(self)).get(tree.data)
        if f is None:
            return super()._call_userfunc(tree, new_children)
        return f(self, tree.meta, new_children if new_children is not None else tree.children)

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(file=self.filename, line=self.line or 1, column=self.col or 1)
        if self.line:
            return Span(file=self.filename, line=self.line, column=self.col + meta.column - 1,
                        end_line=self.line, end_column=self.col + meta.end_column - 1)
        return Span(file=self.filename, line=meta.line, column=meta.column,
                    end_line=meta.end_line, end_column=meta.end_column)

    def _tspan(self, tok: Any) -> Span:
        # ``tok``: a token of the lexer, all its positions set (Lark types them Optional,
        # for tokens made by hand).
        if self.line:
            return _tok_span(tok, self.filename, self.line, self.col)
        return Span(file=self.filename, line=tok.line, column=tok.column, end_line=tok.end_line,
                    end_column=tok.end_column)

    @staticmethod
    def _clean(children):
        return [c for c in children if not (isinstance(c, Token) and c.type in _KEYWORDS)]

    # -- top level
    def start(self, meta, children):
        return self._clean(children)

    def import_stmt(self, meta, children):
        (s,) = self._clean(children)
        return ast.Import(path=self._string_literal(s), span=self._span(meta))

    def extern_def(self, meta, children):
        name, s = self._clean(children)
        return ast.Extern(name=str(name), target=self._string_literal(s), target_span=self._tspan(s),
                          span=self._tspan(name))

    def block_def(self, meta, children):
        name, params, *cls, body = self._clean(children)
        return ast.BlockDef(name=str(name), params=tuple(params or ()), body=body,
                            span=self._tspan(name), cls=cls[0] if cls else None)

    def network_def(self, meta, children):
        name, params, *cls, body = self._clean(children)
        return ast.NetworkDef(name=str(name), params=tuple(params or ()), body=body,
                              span=self._tspan(name), cls=cls[0] if cls else None)

    def sides_type(self, meta, children):
        (name,) = children
        return str(name)

    def class_name(self, meta, children):
        (name,) = self._clean(children)
        return str(name)

    def alias_def(self, meta, children):
        name, base, args = self._clean(children)
        return ast.NetworkAlias(name=str(name), base=ast.Name(str(base), span=self._tspan(base)),
                                args=tuple(args or ()), span=self._tspan(name))

    def params(self, meta, children):
        return children

    def param(self, meta, children):
        name, default = (children + [None])[:2]
        return ast.Param(name=str(name), default=default, span=self._tspan(name))

    def body(self, meta, children):
        return tuple(self._clean(children))

    # -- statements
    def let_stmt(self, meta, children):
        name, value = self._clean(children)
        return ast.Let(name=str(name), value=value, span=self._tspan(name))

    def assert_stmt(self, meta, children):
        kw, cond, message = (children + [None])[:3]
        return ast.Assert(cond=cond, message=message, span=self._span(meta))

    def contains(self, meta, children):
        left, _, right = children
        return ast.BinOp(op="in", left=left, right=right, span=self._span(meta))

    def input_stmt(self, meta, children):
        (shape,) = self._clean(children)
        return ast.Input(shape=shape, span=self._span(meta))

    def init_stmt(self, meta, children):
        target, param, scheme = self._clean(children)
        span = self._tspan(target)
        span = span.model_copy(update={"end_column": self._tspan(param).end_column})
        return ast.Init(target=str(target), param=str(param), scheme=scheme, span=span)

    def for_stmt(self, meta, children):
        var, iterable, body = self._clean(children)
        return ast.For(var=str(var), iterable=iterable, body=body, span=self._span(meta))

    def if_stmt(self, meta, children):
        parts = self._clean(children)
        cond, body = parts[0], parts[1]
        orelse = parts[2] if len(parts) > 2 else ()
        if isinstance(orelse, ast.If):
            orelse = (orelse,)
        return ast.If(cond=cond, body=body, orelse=orelse or (), span=self._span(meta))

    def labelled(self, meta, children):
        label, unit = children
        return ast.Labelled(label=label, unit=unit, span=label.span)

    def label(self, meta, children):
        (tok,) = children
        if tok.type != "STRING":
            return ast.String(parts=(str(tok),), span=self._tspan(tok))
        return self._string(tok)

    def reuse_stmt(self, meta, children):
        (tok,) = self._clean(children)
        return ast.Reuse(label=self.label(meta, [tok]), span=self._span(meta))

    def apply_stmt(self, meta, children):
        (use,) = self._clean(children)
        return ast.Apply(use=use, span=self._span(meta))

    def sides_stmt(self, meta, children):
        names = self._clean(children)
        type_name = None
        if isinstance(names[0], str) and not isinstance(names[0], Token):
            type_name, names = names[0], names[1:]
        return ast.Sides(type_name=type_name, fields=tuple(map(str, names)), span=self._span(meta),
                         field_spans=tuple(self._tspan(n) for n in names))

    def repeat(self, meta, children):
        unit, count = children
        return ast.Repeat(unit=unit, count=count, span=self._span(meta))

    def use(self, meta, children):
        name = children[0]
        has_parens = len(children) > 1
        args = children[1] if has_parens else None
        span = self._span(meta) if has_parens else self._tspan(name)
        return ast.Use(name=str(name), args=tuple(args or ()), has_parens=has_parens, span=span)

    def group(self, meta, children):
        (body,) = children
        return ast.Group(body=body, span=self._span(meta))

    def residual(self, meta, children):
        kw, *rest = children
        cond = None
        if isinstance(rest[0], Token):  # IF
            cond, rest = rest[1], rest[2:]
        body = rest[0]
        shortcut = rest[1] if len(rest) > 1 else None
        return ast.Residual(cond=cond, body=body, shortcut=shortcut, span=self._tspan(kw))

    def shortcut(self, meta, children):
        kw, *rest = children
        label = cond = label_span = None
        if rest and isinstance(rest[0], Token) and rest[0].type in ("NAME", "STRING"):
            label, label_span, rest = self.label(meta, [rest[0]]), self._tspan(rest[0]), rest[1:]
        if rest and isinstance(rest[0], Token) and rest[0].type == "IF":
            cond, rest = rest[1], rest[2:]
        return ast.Shortcut(label=label, cond=cond, body=rest[0], span=self._tspan(kw),
                            label_span=label_span)

    def concat(self, meta, children):
        kw, body = children
        return ast.Concat(body=body, span=self._tspan(kw))

    def dense(self, meta, children):
        kw, body = children
        return ast.Dense(body=body, span=self._tspan(kw))

    def gate(self, meta, children):
        kw, body = children
        return ast.Gate(body=body, span=self._tspan(kw))

    def side(self, meta, children):
        kw, name, body = children
        template = self._string(name) if name.type == "STRING" else None
        return ast.Side(name=str(name), body=body, span=self._tspan(kw), name_span=self._tspan(name),
                        template=template)

    # -- general dataflow
    def ref(self, meta, children):
        (tok,) = children
        name = self._string(tok) if tok.type == "STRING" else ast.String(parts=(str(tok),),
                                                                          span=self._tspan(tok))
        return ast.Ref(name=name, span=self._tspan(tok))

    def bound(self, meta, children):
        at = next(i for i, c in enumerate(children) if isinstance(c, Token) and c.type == "ARROW")
        unit = children[0] if at else None
        target, *more = children[at + 1:]
        return ast.Bind(unit=unit, target=target, more=tuple(more),
                        span=unit.span if unit is not None else self._tspan(children[at]))

    def from_stmt(self, meta, children):
        kw, source, *more = children
        return ast.From(source=source, more=tuple(more), span=self._span(meta))

    def merge(self, meta, children):
        kw, *rest = children
        rest = [c for c in rest if c is not None]
        return ast.Merge(op=str(kw), sources=tuple(c for c in rest if not isinstance(c, ast.Arg)),
                         options=tuple(c for c in rest if isinstance(c, ast.Arg)),
                         span=self._span(meta))

    def output_stmt(self, meta, children):
        kw, form, *entries = children
        return ast.Output(form=str(form), entries=tuple(e for e in entries if e is not None),
                          span=self._tspan(kw), form_span=self._tspan(form))

    def out_entry(self, meta, children):
        key, source = children if len(children) == 2 else (None, children[0])
        return ast.OutputEntry(key=key, source=source, span=self._span(meta))

    def named_input(self, meta, children):
        kw, name, shape = children
        return ast.NamedInput(name=str(name), shape=shape, span=self._tspan(name))

    def split(self, meta, children):
        kw, *sizes, body = children
        sizes = sizes[0] if sizes else None
        return ast.Split(sizes=sizes, body=body, span=self._tspan(kw))

    # -- arguments
    def args(self, meta, children):
        return tuple(children)

    def arg(self, meta, children):
        (value,) = children
        return ast.Arg(name=None, value=value, span=value.span)

    def kwarg(self, meta, children):
        name, value = children
        span = self._tspan(name)
        return ast.Arg(name=str(name), value=value, span=span)

    merge_opt = kwarg

    # -- expressions
    def number(self, meta, children):
        (tok,) = children
        text = str(tok)
        is_float = "." in text or "e" in text or "E" in text
        if not is_float and len(text) > 4000:
            # int() refuses over 4300 digits; shorter ones meet the max_int check later.
            self.errors.append(Diagnostic("E0215", "integer overflow", self._tspan(tok),
                                          f"a literal of {len(text)} digits",
                                          "integers are limited to ±max_int (2**63 - 1 unless "
                                          "--limit max_int=N says otherwise)"))
            return ast.Number(value=0, span=self._tspan(tok))
        return ast.Number(value=float(text) if is_float else int(text), span=self._tspan(tok))

    def string(self, meta, children):
        return self._string(children[0])

    def true(self, meta, children):
        return ast.Constant(value=True, span=self._tspan(children[0]))

    def false(self, meta, children):
        return ast.Constant(value=False, span=self._tspan(children[0]))

    def none(self, meta, children):
        return ast.Constant(value=None, span=self._tspan(children[0]))

    def name(self, meta, children):
        (tok,) = children
        return ast.Name(id=str(tok), span=self._tspan(tok))

    def list(self, meta, children):
        items = tuple(c for c in children if not isinstance(c, Token) and c is not None)
        return ast.List(items=items, span=self._span(meta))

    def slice(self, meta, children):
        value, _, start, stop, _ = children
        return ast.Slice(value=value, start=start, stop=stop, span=self._span(meta))

    def listcomp(self, meta, children):
        _, elt, _, var, _, iterable, *rest = children
        conds = [c for c in rest if isinstance(c, ast.Expr)]
        cond = conds[0] if conds else None
        return ast.ListComp(elt=elt, var=str(var), iterable=iterable, span=self._span(meta),
                            cond=cond, more=tuple(c for c in rest if isinstance(c, ast.CompFor)))

    def comp_for(self, meta, children):
        _, var, _, iterable, *rest = children
        conds = [c for c in rest if isinstance(c, ast.Expr)]
        return ast.CompFor(var=str(var), iterable=iterable, cond=conds[0] if conds else None)

    def index(self, meta, children):
        value, _, idx, _ = children
        return ast.Index(value=value, index=idx, span=self._span(meta))

    def call(self, meta, children):
        name, args = children
        return ast.Call(func=ast.Name(str(name), span=self._tspan(name)), args=tuple(args or ()),
                        span=self._span(meta))

    def ifexp(self, meta, children):
        then, _, cond, _, orelse = children
        return ast.IfExp(cond=cond, then=then, orelse=orelse, span=self._span(meta))

    add, sub, mul, div = _binop("+"), _binop("-"), _binop("*"), _binop("/")
    floordiv, mod, pow = _binop("//"), _binop("%"), _binop("**")
    eq, ne, lt, le, gt, ge = _binop("=="), _binop("!="), _binop("<"), _binop("<="), _binop(">"), _binop(">=")
    and_, or_ = _binop("and"), _binop("or")

    neg, pos, not_ = _unop("-"), _unop("+"), _unop("not")

    # -- strings and templates
    def _string_literal(self, tok: Token) -> str:
        s = self._string(tok)
        return "".join(p for p in s.parts if isinstance(p, str))

    def _string(self, tok: Token) -> ast.String:
        raw = str(tok)[1:-1]
        base = self._tspan(tok)
        parts: list = []
        buf: list[str] = []
        i = 0
        escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                buf.append(escapes.get(raw[i + 1], "\\" + raw[i + 1]))
                i += 2
            elif ch == "{" and raw[i + 1:i + 2] == "{":
                buf.append("{")
                i += 2
            elif ch == "}" and raw[i + 1:i + 2] == "}":
                buf.append("}")
                i += 2
            elif ch == "{":
                end = raw.find("}", i)
                col = base.column + 1 + i
                if end < 0:
                    self.errors.append(Diagnostic(
                        "E0005", "unclosed `{` in a string template",
                        Span(file=self.filename, line=base.line, column=col, end_column=col + 1),
                        "this `{` has no `}`", help="write `{{` for a literal brace"))
                    break
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self._hole(raw[i + 1:end], base.line, col + 1))
                i = end + 1
            else:
                buf.append(ch)
                i += 1
        if buf or not parts:
            parts.append("".join(buf))
        return ast.String(parts=tuple(parts), span=base)

    def _hole(self, text: str, line: int, col: int) -> ast.Expr:
        sub = _Builder(self.filename, text, line=line, col=col, max_depth=self.max_depth)
        node = _fast(text, "expr", sub)
        if node is not None:
            return node
        try:
            tree = _lark().parse(text, start="expr")
        except UnexpectedInput as e:
            d = _syntax_error(e, text, self.filename)
            span = Span(file=self.filename, line=line, column=col + max(0, (d.span.column if d.span else 1) - 1))
            self.errors.append(Diagnostic("E0005", "invalid expression in a string template",
                                          span, d.label, help="a `{...}` hole holds one expression"))
            return ast.String(parts=("",), span=span)
        too_deep = _check_depth(tree, self.filename, self.max_depth, line, col)
        if too_deep is not None:
            self.errors.append(too_deep)
            return ast.String(parts=("",), span=too_deep.span or Span(file=self.filename, line=line, column=col))
        sub = _Builder(self.filename, text, line=line, col=col, max_depth=self.max_depth)
        node = sub.transform(tree)
        self.errors.extend(sub.errors)
        return node


def parse_expr(text: str, limits: Limits | None = None, filename: str = "<--set>") -> ast.Expr:
    """Parse one expression (a value given from outside a spec, as ``--set NAME=VALUE``);
    ``filename`` names the text in spans and diagnostics.

    >>> parse_expr("[3, 4]").items[1].value
    4
    """
    limits = limits or Limits()
    node = _fast(text, "expr", _Builder(filename, text, max_depth=limits.max_nesting))
    if node is not None:
        return node
    try:
        tree = _lark().parse(text, start="expr")
    except UnexpectedInput as e:
        raise NetdslError([_with_unclosed(_syntax_error(e, text, filename), text)],
                          {filename: text}) from None
    too_deep = _check_depth(tree, filename, limits.max_nesting)
    if too_deep is not None:
        raise NetdslError([too_deep], {filename: text})
    builder = _Builder(filename, text, max_depth=limits.max_nesting)
    node = builder.transform(tree)
    if builder.errors:
        raise NetdslError(builder.errors, {filename: text})
    return node


__all__ = ["parse", "parse_expr"]
