"""The checker as its rule modules see it: the one contract between ``checker`` and
the rules of ``combinators``, ``calls`` and ``dataflow``.

A rule is a plain function whose first argument is a :class:`Context`; the
checker passes itself. The protocol lists everything a rule may read or call
on the checker, and nothing else: the memo, the step counts and the expansion
of blocks stay the checker's own. mypy holds :class:`~netdsl.check.checker.Checker`
to this protocol wherever it hands itself to a rule (the dispatch tables).

>>> from netdsl.check.checker import Checker
>>> from netdsl.diagnostics import Diagnostic
>>> from netdsl.syntax.loader import Program
>>> cx: Context = Checker(Program(None))
>>> cx.report(Diagnostic("E0101", "unknown name `x`"))
>>> [d.code for d in cx.diags]
['E0101']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, Union

if TYPE_CHECKING:
    from .. import ir
    from ..diagnostics import Diagnostic
    from ..grant import Grant
    from ..limits import Limits
    from ..span import Span
    from ..syntax import ast
    from ..syntax.loader import Program
    from .dataflow import ValueScope
    from .evaluate import Env
    from .flows import ConcatFlow, DenseFlow, NameScope, SeqFlow
    from .memo import Record

#: A static shape without the batch dimension: [C, H, W] or [F].
Shape = tuple[int, ...]
#: Whether a tensor must not be overwritten in place: False, True (something else reads
#: it), or the kind of the layer whose backward pass reads it (``relu``, ``sigmoid``).
Shared = bool | str
#: What checking a unit gives: its IR nodes, its output shape (None where a mistake made
#: it unknown) and whether that output is shared.
Built = tuple[list["ir.AnyNode"], Shape | None, Shared]
#: How consecutive items are wired (flows.py).
Flow = Union["SeqFlow", "ConcatFlow", "DenseFlow"]


class Context(Protocol):
    """What a rule may use of the checker."""

    #: The program being checked: its blocks, networks and sources.
    program: Program
    limits: Limits
    #: The Python modules an `extern` may import (netdsl/grant.py).
    grant: Grant
    #: The diagnostics reported so far, read to tell whether a step reported any.
    diags: list[Diagnostic]
    #: The network's flow while a `side` at its top level, unlabelled, is checked; else None.
    side_flow: SeqFlow | None
    #: The network's own value scope, to tell a name from outside a block (E0129).
    network_values: ValueScope | None
    #: Names bound inside block instances already closed → (block, where): E0129.
    inner_names: dict[str, tuple[str, Span | None]]
    #: The same, in order, as (name, block, where), for the memo to replay.
    record: Record

    def report(self, d: Diagnostic) -> None:
        """Record a diagnostic (once per code and place), with the chain of
        block instances it is in."""

    def value(self, expr: ast.Expr, env: Env, init: bool = False) -> Any:
        """Evaluate ``expr``; a mistake is reported and gives POISON."""

    def typed(self, expr: ast.Expr, env: Env, kind: str, what: str) -> Any:
        """Evaluate ``expr`` as a ``"bool"``, ``"int"`` or ``"list"``; else report and give POISON."""

    def text(self, span: Span | None) -> str:
        """The source text of ``span`` on one line, for messages."""

    def label(self, s: ast.String, env: Env) -> Any:
        """A label's text, or POISON where it cannot name a module (reported)."""

    def run(self, stmts: Sequence[ast.Stmt], env: Env, flow: Flow, scope: NameScope) -> None:
        """Check a body's statements in order, into ``flow``, naming modules in ``scope``."""

    def stmt(self, st: ast.Stmt, env: Env, flow: Flow, scope: NameScope) -> None:
        """Check one statement."""

    def close(self, scope: NameScope, flow: SeqFlow | None = None, root: bool = False) -> None:
        """End a name scope: report its ``init`` rules that matched no layer, and name the
        unlabelled stateless modules of ``flow`` (its body) after their kind."""

    def scope_node(self, name: str, cls: str | None, block: str | None, sub: SeqFlow,
                   shape: Shape | None, span: Span | None) -> list[ir.AnyNode]:
        """The scope node of a labelled body checked into ``sub`` ([] where a shape is unknown)."""

    def bind(self, what: str, params: list[tuple[str, bool]], use: ast.Use,
             env: Env, extra_keywords: bool = False) -> tuple[dict[str, tuple[Any, ast.Arg]], bool]:
        """Match a call's arguments to ``params`` (name, required); evaluated in ``env``;
        with ``extra_keywords``, any other keyword too."""

    def layer(self, kind: str, use: ast.Use, env: Env, shape: Shape | None, shared: Shared,
              scope: NameScope, label: str | None, functional: bool = False) -> Built:
        """Check a use of layer ``kind``: its arguments, ranges, init rules and shapes."""

    def place(self, kind: str, values: dict, bound: dict, use: ast.Use, shape: Shape, shared: Shared,
              name: str, init: dict, **flags: bool) -> Built:
        """The IR node of layer ``kind`` with argument ``values`` on input ``shape``."""
