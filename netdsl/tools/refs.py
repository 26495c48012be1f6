"""References and rename: which written names are the same thing, in one document.

The spec's own scoping, read from its syntax tree: a block, a network or a
top-level ``let`` is seen everywhere in the file; a parameter, a ``let`` and a loop
variable in the body they are in, below them (a block's parameter also where a
call to the block names it as a keyword, ``unit(64, stride = 2)``); a label in the
scope it names a module of (the definition, a labelled group, a labelled shortcut
or a side head), with ``reuse`` of it there and ``init LABEL.param`` in that scope,
an enclosing one, or another definition (an ``init`` of a network reaches the
labels of the blocks it uses); a named result (``-> name``) in its definition,
with every ``from``, merge and ``output`` that reads it.

A name made by a template (``"layer{i + 1}"``) is nobody's reference, and names
another file defines are not renamed here. Positions are netdsl's: 1-based, in
characters, a span's end one past its last character.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from ..span import Span
from ..syntax import ast
from ..syntax.loader import stdlib_dir
from .ide import parse_or_none

NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\Z")
# The reference specs netdsl ships (a checkout's specs/) and its standard library: their
# labels are state_dict keys that match the reference implementations' weights.
SHIPPED = tuple(p for p in (Path(__file__).resolve().parents[2] / "specs", stdlib_dir()) if p.is_dir())


@dataclass(eq=False)
class Thing:
    """One named thing: ``kind`` is block, network, let, parameter, loop variable,
    label or result. ``spans`` are where its name is written, its definition first
    when it has one in the document (``defined``)."""

    name: str
    kind: str
    spans: list[Span] = field(default_factory=list)
    defined: bool = False
    shared: list[Span] = field(default_factory=list)  # inits that also set another label's layers
    origin: Span | None = None  # where an imported file defines it


class _Env:
    """Names in scope: a chain of tables, the innermost first."""

    def __init__(self, parent: _Env | None = None):
        self.parent = parent
        self.table: dict[str, Thing | None] = {}  # None: a name bound without a place (a comprehension's)

    def find(self, name: str) -> Thing | None:
        env: _Env | None = self
        while env is not None:
            if name in env.table:
                return env.table[name]
            env = env.parent
        return None


@dataclass(eq=False)
class _LabelScope:
    parent: _LabelScope | None
    labels: dict[str, Thing] = field(default_factory=dict)
    inits: list[tuple[str, Span]] = field(default_factory=list)
    children: list[_LabelScope] = field(default_factory=list)


class _Resolver:
    def __init__(self, module: ast.Module, lines: list[str], imported: dict[str, tuple[str, Span]] | None = None):
        self.lines = lines
        self.things: list[Thing] = []
        self.globals = _Env()
        self.params: dict[str, dict[str, Thing]] = {}  # of each block and network, by name
        self.roots: list[_LabelScope] = []
        self.results: dict[str, Thing] = {}
        items = [i for i in module.items if not isinstance(i, ast.Import)]
        for item in items:
            kind = ("let" if isinstance(item, ast.Let) else "block" if isinstance(item, ast.BlockDef)
                    else "extern" if isinstance(item, ast.Extern) else "network")
            self.globals.table.setdefault(item.name, self._new(item.name, kind, item.span))
            if isinstance(item, (ast.BlockDef, ast.NetworkDef)):
                self.params.setdefault(item.name, {p.name: self._new(p.name, "parameter", _named(p.span, p.name))
                                                   for p in item.params})
        for name, (kind, where) in (imported or {}).items():
            if name not in self.globals.table:  # the file's own names win, as in loading
                thing = self.globals.table[name] = self._new(name, kind, None)
                thing.origin = where
        for item in items:
            if isinstance(item, ast.Let):
                self.expr(item.value, self.globals)
            elif isinstance(item, ast.NetworkAlias):
                self.use_name(item.base.id, item.base.span, self.globals)
                self.args(item.base.id, item.args, self.globals)
            elif not isinstance(item, ast.Extern):
                self.definition(item)
        self.resolve_inits()

    def _new(self, name: str, kind: str, span: Span | None) -> Thing:
        thing = Thing(name, kind, [span] if span is not None else [], span is not None)
        self.things.append(thing)
        return thing

    # -- definitions and statements
    def definition(self, item: ast.BlockDef | ast.NetworkDef) -> None:
        env = _Env(self.globals)
        params = self.params.get(item.name, {})
        for p in item.params:
            if p.default is not None:
                self.expr(p.default, self.globals)
            env.table[p.name] = params.get(p.name)
        scope = _LabelScope(None)
        self.roots.append(scope)
        self.results = {}  # named results are seen in their definition only
        self.body(item.body, env, scope)

    def body(self, stmts, env: _Env, scope: _LabelScope) -> None:
        for st in stmts:
            self.stmt(st, env, scope)

    def stmt(self, st, env: _Env, scope: _LabelScope) -> None:
        if isinstance(st, ast.Let):
            self.expr(st.value, env)
            env.table[st.name] = self._new(st.name, "let", _named(st.span, st.name))
        elif isinstance(st, ast.For):
            self.expr(st.iterable, env)
            inner = _Env(env)
            inner.table[st.var] = self._new(st.var, "loop variable", self._loop_var(st))
            self.body(st.body, inner, scope)
        elif isinstance(st, ast.If):
            self.expr(st.cond, env)
            self.body(st.body, _Env(env), scope)
            self.body(st.orelse, _Env(env), scope)
        elif isinstance(st, ast.Use):
            self.use_name(st.name, _named(st.span, st.name), env)
            self.args(st.name, st.args, env)
        elif isinstance(st, ast.Labelled):
            self.label(st.label, scope, env)
            if isinstance(st.unit, ast.Group):
                self.body(st.unit.body, env, self.child(scope))
            else:
                self.stmt(st.unit, env, scope)
        elif isinstance(st, ast.Reuse):
            name = _plain(st.label)
            if name is not None:
                found = self.find_label(scope, name)
                if found is not None:
                    found.spans.append(st.label.span)
        elif isinstance(st, ast.Init):
            self.expr(st.scheme, env)
            scope.inits.append((st.target, st.span.replace(end_line=st.span.line,
                                                           end_column=st.span.column + len(st.target))))
        elif isinstance(st, ast.Residual):
            if st.cond is not None:
                self.expr(st.cond, env)
            self.body(st.body, env, scope)
            sc = st.shortcut
            if sc is not None:
                if sc.cond is not None:
                    self.expr(sc.cond, env)
                if sc.label is not None:
                    self.label(sc.label, scope, env, sc.label_span)
                self.body(sc.body, env, self.child(scope) if sc.label is not None else scope)
        elif isinstance(st, ast.Side):
            self.body(st.body, env, self.child(scope))
        elif isinstance(st, ast.Bind):
            if st.unit is not None:
                self.stmt(st.unit, env, scope)
            self.result(st.target, env, define=True)
        elif isinstance(st, ast.From):
            self.result(st.source, env)
        elif isinstance(st, ast.Merge):
            for r in st.sources:
                self.result(r, env)
            for a in st.options:
                self.expr(a.value, env)
        elif isinstance(st, ast.Output):
            for e in st.entries:
                self.result(e.source, env)
        elif isinstance(st, ast.Apply):
            self.stmt(st.use, env, scope)
        else:  # the other statements: their expressions, and their bodies in this scope
            for f in fields(st):
                value = getattr(st, f.name)
                for v in value if isinstance(value, tuple) else (value,):
                    if isinstance(v, ast.Stmt):
                        self.stmt(v, env, scope)
                    elif isinstance(v, ast.Expr):
                        self.expr(v, env)

    def child(self, scope: _LabelScope) -> _LabelScope:
        inner = _LabelScope(scope)
        scope.children.append(inner)
        return inner

    def label(self, label: ast.String, scope: _LabelScope, env: _Env, span: Span | None = None) -> None:
        name = _plain(label)
        span = span or label.span
        if name is None or span is None or not self._written(span, name):
            for part in label.parts:
                if isinstance(part, ast.Expr):
                    self.expr(part, env)
            return
        thing = scope.labels.get(name)
        if thing is None:
            scope.labels[name] = self._new(name, "label", span)
        else:  # the same label in two branches of an `if`: one name
            thing.spans.append(span)

    def find_label(self, scope: _LabelScope | None, name: str) -> Thing | None:
        return scope.labels.get(name) if scope is not None else None

    def result(self, ref: ast.Ref, env: _Env, define: bool = False) -> None:
        name = _plain(ref.name)
        if name is None or not self._written(ref.span, name):
            for part in ref.name.parts:
                if isinstance(part, ast.Expr):
                    self.expr(part, env)
            return
        thing = self.results.get(name)
        if thing is None:
            thing = self.results[name] = self._new(name, "result", None)
        if define and not thing.defined:
            thing.spans.insert(0, ref.span)
            thing.defined = True
        else:
            thing.spans.append(ref.span)

    def use_name(self, name: str, span: Span | None, env: _Env) -> None:
        found = env.find(name)
        if found is not None and span is not None:
            found.spans.append(span)

    def args(self, callee: str, args, env: _Env) -> None:
        target = env.find(callee)
        # A call by the block's (or base network's) own name: its keywords are its parameters.
        params = self.params.get(callee) if target is not None and target.kind in ("block", "network") else None
        for a in args:
            self.expr(a.value, env)
            at = _named(a.span, a.name) if a.name is not None else None
            if at is not None and params is not None and a.name in params:
                params[a.name].spans.append(at)

    # -- expressions
    def expr(self, node, env: _Env) -> None:
        todo = [(node, env)]
        while todo:
            n, e = todo.pop()
            if isinstance(n, ast.Name):
                self.use_name(n.id, n.span, e)
            elif isinstance(n, ast.ListComp):
                inner = _Env(e)
                for var in [n.var, *(c.var for c in n.more)]:
                    inner.table[var] = None
                todo.append((n.iterable, e))
                todo.extend((x, inner) for x in (n.elt, n.cond, *n.more) if x is not None)
            elif isinstance(n, ast.CompFor):
                todo.extend((x, e) for x in (n.iterable, n.cond) if x is not None)
            elif isinstance(n, ast.Call):
                todo.extend((a.value, e) for a in n.args)
            elif isinstance(n, (tuple, list)):
                todo.extend((x, e) for x in n)
            elif is_dataclass(n) and not isinstance(n, Span):
                todo.extend((getattr(n, f.name), e) for f in fields(n) if f.name != "span")

    # -- inits, once every label is known
    def resolve_inits(self) -> None:
        def labels_under(scope: _LabelScope, name: str) -> list[Thing]:
            found = [scope.labels[name]] if name in scope.labels else []
            for c in scope.children:
                found.extend(labels_under(c, name))
            return found

        def walk(scope: _LabelScope):
            yield scope
            for c in scope.children:
                yield from walk(c)

        for root in self.roots:
            for scope in walk(root):
                for name, span in scope.inits:
                    targets = labels_under(scope, name) or [
                        t for other in self.roots if other is not root for t in labels_under(other, name)]
                    for t in targets:
                        t.spans.append(span)
                        if len(targets) > 1:
                            t.shared.append(span)

    # -- text
    def _written(self, span: Span | None, name: str) -> bool:
        if span is None or not 0 < span.line <= len(self.lines):
            return False
        return self.lines[span.line - 1][span.column - 1:span.column - 1 + len(name)] == name

    def _loop_var(self, st: ast.For) -> Span | None:
        line = self.lines[st.span.line - 1] if 0 < st.span.line <= len(self.lines) else ""
        m = re.compile(r"for\s+(" + re.escape(st.var) + r")\b").match(line, st.span.column - 1)
        if m is None:
            return None
        return Span(file=st.span.file, line=st.span.line, column=m.start(1) + 1, end_line=st.span.line,
                    end_column=m.end(1) + 1)


def _plain(s: ast.String) -> str | None:
    return s.parts[0] if len(s.parts) == 1 and isinstance(s.parts[0], str) else None


def _named(span: Span | None, name: str) -> Span | None:
    """The part of ``span`` that is the name it starts with."""
    if span is None:
        return None
    return span.replace(end_line=span.line, end_column=span.column + len(name))


def things(module: ast.Module, text: str, imported: dict[str, tuple[str, Span]] | None = None) -> list[Thing]:
    """Every named thing of a parsed document, with where each is written; ``imported``:
    the blocks, networks and ``let``s its imports define (name → kind and where), whose
    uses here are then found too.

    >>> from netdsl.syntax.parser import parse
    >>> text = "block b(c) { conv2d(c, 3) }\\nnetwork n() { input [3, 8, 8]\\n b(c = 4) }"
    >>> [(t.name, t.kind, [(s.line, s.column) for s in t.spans]) for t in things(parse(text, None), text)][:2]
    [('b', 'block', [(1, 7), (3, 2)]), ('c', 'parameter', [(1, 9), (1, 21), (3, 4)])]
    """
    r = _Resolver(module, text.split("\n"), imported)
    for t in r.things:
        t.spans = _unique(t.spans)
    return [t for t in r.things if t.spans]


def _unique(spans: list[Span]) -> list[Span]:
    seen, out = set(), []
    for s in spans:
        key = (s.line, s.column)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def at(module: ast.Module, text: str, line: int, column: int,
       imported: dict[str, tuple[str, Span]] | None = None) -> Thing | None:
    """The named thing written at a position (on its name, or just after it).

    >>> from netdsl.syntax.parser import parse
    >>> text = "network n(w = 4) { input [3, 8, 8]\\n conv2d(w, 3) }"
    >>> [(s.line, s.column) for s in at(parse(text, None), text, 2, 10).spans]
    [(1, 11), (2, 9)]
    """
    for t in things(module, text, imported):
        for s in t.spans:
            if s.line == line and s.column <= column <= (s.end_column or s.column):
                return t
    return None


# ---------------------------------------------------------------- rename

class Refused(Exception):
    """A rename that would break the spec or its contract, and why."""


@functools.cache
def keywords() -> frozenset[str]:
    """The words the grammar quotes (``"for"``, ``"residual"``): no rename makes one a name.

    >>> {"for", "residual", "reuse"} <= keywords()
    True
    """
    text = (Path(__file__).resolve().parents[1] / "syntax" / "grammar.lark").read_text(encoding="utf-8")
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    return frozenset(re.findall(r'"([A-Za-z_]+)"', code))


def renamable(module: ast.Module, text: str, filename: str | None, line: int, column: int,
              protected: tuple[Path, ...] = SHIPPED,
              imported: dict[str, tuple[str, Span]] | None = None) -> tuple[Thing, Span]:
    """The thing at a position and the span of its name there, if it may be renamed at all;
    else Refused, with the reason (what ``rename`` refuses whatever the new name)."""
    thing = at(module, text, line, column, imported)
    if thing is None:
        raise Refused("no name to rename here: a block, network, parameter, let, loop variable, label or "
                      "named result")
    if not thing.defined:
        where = f" (at {thing.origin.where()})" if thing.origin is not None else ""
        raise Refused(f"`{thing.name}` is not defined in this file: rename it where it is defined{where}")
    at_stake = keys_at_stake(thing, filename, protected)
    if at_stake is not None:
        raise Refused(at_stake + "; copy the spec to rename it")
    if thing.shared:
        s = thing.shared[0]
        raise Refused(f"the `init` at {s.line}:{s.column} also sets other layers labelled `{thing.name}`: "
                      "renaming this one would change what it sets")
    here = next(s for s in thing.spans if s.line == line and s.column <= column <= (s.end_column or s.column))
    return thing, here


def keys_at_stake(thing: Thing, filename: str | None, protected: tuple[Path, ...] = SHIPPED) -> str | None:
    """Why renaming ``thing`` would change ``state_dict`` keys that must stay as they are:
    it is a label of a file under ``protected``; None otherwise."""
    if thing.kind != "label" or filename is None or not _under(filename, protected):
        return None
    return (f"`{thing.name}` is a label of a reference spec shipped with netdsl: it names the module, and so "
            "its `state_dict` keys, which match the reference implementation's weights")


def rename(module: ast.Module, text: str, filename: str | None, line: int, column: int,
           new: str, protected: tuple[Path, ...] = SHIPPED,
           imported: dict[str, tuple[str, Span]] | None = None) -> list[tuple[Span, str]]:
    """The edits that rename the thing at a position to ``new``: (span, text) pairs.
    Refused (with the reason) where ``new`` is no name, where it would make another
    thing's name or change what a name means, where the name is not defined in this
    document, and for a label in a file under ``protected`` (shipped reference specs,
    whose labels are their ``state_dict`` keys).

    >>> from netdsl.syntax.parser import parse
    >>> text = "network n(w = 4) { input [3, 8, 8]\\n conv2d(w, 3) }"
    >>> [(s.line, s.column, t) for s, t in rename(parse(text, None), text, None, 2, 9, "width")]
    [(1, 11, 'width'), (2, 9, 'width')]
    """
    thing, _ = renamable(module, text, filename, line, column, protected, imported)
    if not NAME.match(new):
        raise Refused(f"`{new}` is not a name: a letter or `_`, then letters, digits and `_`")
    if new in keywords():
        raise Refused(f"`{new}` is a keyword of the language")
    if new == thing.name:
        return []
    edits = [(s, new) for s in thing.spans]
    after = _apply(text, edits)
    tree = parse_or_none(after, filename)
    if tree is None:
        raise Refused(f"the file would not parse with `{new}` there")
    moved = _moved(thing.spans, len(new) - len(thing.name))
    again = at(tree, after, moved[0][0], moved[0][1])
    if again is None or {(s.line, s.column) for s in again.spans} != set(moved):
        raise Refused(f"`{new}` is already a name in scope here: renaming would change what names mean")
    return edits


def _under(filename: str, protected: tuple[Path, ...]) -> bool:
    try:
        path = Path(filename).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(path.is_relative_to(p) for p in protected)


def _apply(text: str, edits: list[tuple[Span, str]]) -> str:
    lines = text.split("\n")
    for s, new in sorted(edits, key=lambda e: (e[0].line, e[0].column), reverse=True):
        line = lines[s.line - 1]
        lines[s.line - 1] = line[:s.column - 1] + new + line[(s.end_column or s.column) - 1:]
    return "\n".join(lines)


def _moved(spans: list[Span], grow: int) -> list[tuple[int, int]]:
    """Where each span starts once every one of them has grown by ``grow`` characters."""
    out = []
    for s in spans:
        before = sum(1 for o in spans if o.line == s.line and o.column < s.column)
        out.append((s.line, s.column + before * grow))
    return out


# ---------------------------------------------------------------- names in scope

def in_scope(module: ast.Module, text: str, line: int) -> list[Thing]:
    """The names a statement on ``line`` may use, as completion offers them: the file's
    blocks, networks and top-level ``let``s; in the definition around the line, its
    parameters, its labels, and the ``let``s and loop variables written above the line.

    >>> from netdsl.syntax.parser import parse
    >>> text = ("let w = 4\\nblock b(c) {\\n    let h = c\\n    conv: conv2d(h, 3)\\n}\\n"
    ...         "network n() { input [3, 8, 8]\\n b(w) }")
    >>> [(t.name, t.kind) for t in in_scope(parse(text, None), text, 4)]
    [('w', 'let'), ('b', 'block'), ('c', 'parameter'), ('n', 'network'), ('h', 'let'), ('conv', 'label')]
    """
    return Scopes(module, text).at(line)


class Scopes:
    """The names of a parsed text, read once, for ``in_scope`` at any line (completion
    asks at every keystroke)."""

    def __init__(self, module: ast.Module, text: str):
        from .symbols import extents  # where each definition ends

        self.text = text
        self.definitions = extents(module, text)
        tops = {(i.span.line, i.span.column) for i in module.items if isinstance(i, ast.Let)}
        self.things = [t for t in things(module, text) if t.defined]
        self.tops = [t for t in self.things if t.kind in ("block", "network")
                     or (t.kind == "let" and (t.spans[0].line, t.spans[0].column) in tops)]

    def at(self, line: int) -> list[Thing]:
        around = [s for s in self.definitions if s.line <= line <= (s.end_line or s.line)]
        out = []
        for t in self.things:
            at = t.spans[0]
            if t in self.tops:
                out.append(t)
            elif around and around[0].line <= at.line <= (around[0].end_line or at.line) and (
                    t.kind in ("parameter", "label") or at.line < line):
                out.append(t)
        return out
