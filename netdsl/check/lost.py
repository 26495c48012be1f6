"""What an error left unknown, so that one mistake is reported once.

A statement that fails makes nothing: a layer with a wrong argument has no module, a
`for` over an undefined list runs no iteration, a misspelled block is not expanded.
The rules after it that look up what it would have made -- a label for `reuse` or an
`init` rule, a named result for `from` or a merge, a name nothing reads, a side output
for `sides`, the shape of the current tensor -- would then report mistakes the user
did not make. The checker notes here what each failure lost, and those rules stay
silent about it: the error that lost it is reported already.

What is lost is kept as names, as the templates of names (a label ``"layer{i}"`` that
a `for` over an undefined list never made is any name that fits ``layer*``), or as
everything (the labels inside a block that was never expanded).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..layers import LAYERS
from ..syntax import ast

if TYPE_CHECKING:
    from .flows import NameScope


class Lost:
    """Names that an error left unknown.

    >>> from netdsl.syntax.parser import parse_expr
    >>> lost = Lost()
    >>> lost.template(parse_expr('"layer{i + 1}"'))
    >>> "layer3" in lost, "layer" in lost, "stem" in lost
    (True, True, False)
    """

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.patterns: dict[str, re.Pattern[str]] = {}
        self.everything = False

    def add(self, name: str) -> None:
        self.names.add(name)

    def template(self, s: ast.String) -> None:
        """Every name the template ``s`` can give, whatever its values are."""
        if all(isinstance(p, str) for p in s.parts):
            self.names.add("".join(p for p in s.parts if isinstance(p, str)))
            return
        pattern = "".join(re.escape(p) if isinstance(p, str) else ".*" for p in s.parts)
        if pattern not in self.patterns:
            self.patterns[pattern] = re.compile(pattern, re.DOTALL)

    def __contains__(self, name: object) -> bool:
        return self.everything or name in self.names or (
            isinstance(name, str) and any(p.fullmatch(name) for p in self.patterns.values()))

    def __bool__(self) -> bool:
        return self.everything or bool(self.names) or bool(self.patterns)


def statements(stmts: Sequence[ast.Stmt]) -> Iterator[ast.Stmt]:
    """The statements of a body and of every body in it, nested ones after their own."""
    todo = list(reversed(stmts))
    while todo:
        st = todo.pop()
        yield st
        inner: list[ast.Stmt] = [*getattr(st, "body", ()), *getattr(st, "orelse", ())]
        unit = getattr(st, "unit", None)
        if unit is not None:
            inner.append(unit)
        shortcut = getattr(st, "shortcut", None)
        if shortcut is not None:
            inner.extend(shortcut.body)
        todo.extend(reversed(inner))


# Statements that make no module and no result: a body of only these changes nothing
# that the statements after it see (the containers count by what they hold; a group is
# a part of a `split` or a branch of a `concat` even when it is empty).
_INERT = (ast.Let, ast.Assert, ast.Init, ast.Sides, ast.For, ast.If, ast.Labelled, ast.Repeat)


def skipped(stmts: Sequence[ast.Stmt], flow, scope: NameScope) -> None:
    """Note what ``stmts``, which an error kept from being checked, would have made: their
    labels in ``scope``, the results they would have named and read, their side outputs;
    and unless they make nothing, that the current result of ``flow`` is unknown and was
    read (the statement before them is not reported as dropped). ``flow`` is None in a
    combinator, whose rule gives the unknown shape itself."""
    values = getattr(flow, "values", None)
    makes = False
    for st in statements(stmts):
        if isinstance(st, ast.Labelled):
            scope.lose(st.label)
        elif isinstance(st, ast.Residual) and st.shortcut is not None and st.shortcut.label is not None:
            scope.lose(st.shortcut.label)
        elif isinstance(st, ast.Use) and st.name not in LAYERS:
            scope.lose(None, inside=True)  # a block, or a parameter that may hold one
        if values is not None:
            if isinstance(st, ast.Bind):
                for ref in (st.target,) + st.more:
                    values.lost_binds.template(ref.name)
            elif isinstance(st, ast.NamedInput):
                values.lost_binds.add(st.name)
            elif isinstance(st, ast.Input) and isinstance(st.shape, ast.Name):
                values.lost_binds.add(st.shape.id)  # a block's input: how many it takes is unknown
                values.unsure = True
            elif isinstance(st, (ast.From, ast.Merge)) and values.no_current:
                values.no_current = False  # it may have said which result goes on
                values.unsure = True
            for ref in reads(st):
                values.lost_reads.template(ref.name)
        if isinstance(st, ast.Side) and getattr(flow, "network", False):
            if st.template is not None:
                flow.sides_lost.template(st.template)
            else:
                flow.sides_lost.add(st.name)
        if isinstance(st, (ast.Input, ast.NamedInput)) and getattr(flow, "network", False):
            flow.missing_reported = True  # it may have declared the input
        makes = makes or not isinstance(st, _INERT)
    if makes and flow is not None:
        if values is not None:
            values.dangling = None
            values.pack = values.several = None  # whether they took them is not known
        flow.accept([], None, False, None)


def reads(st: ast.Stmt) -> tuple[ast.Ref, ...]:
    """The named results a statement reads."""
    if isinstance(st, ast.From):
        return (st.source,) + st.more
    if isinstance(st, ast.Merge):
        return st.sources
    if isinstance(st, ast.Output):
        return tuple(e.source for e in st.entries)
    return ()
