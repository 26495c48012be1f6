"""The one walk over IR nodes: what a node's bodies are, every node below some
nodes in order, and a visitor that dispatches on a node's kind.

Every consumer of the IR (lowering and the forward's writer, analysis, graph,
diff, the editor's index, the limits) reads a node's children through
:func:`bodies`, which finds them from the node's fields, so a new construct is
walked everywhere without a line changed here: a node class names the fields
that hold its bodies in ``body_fields``, where it is defined. What a consumer *does* with a
construct is its own: a :class:`Visitor` has a ``visit_<kind>`` method for each
construct it treats in its own way, and names in ``through`` the kinds it only
looks through (their bodies, visited in order). ``tests/ir/test_walk.py`` lists
every construct against every consumer: a new node kind fails there until each
consumer says which it is.

Layers are one case for every consumer: ``visit_layer``, since what differs
between layer kinds lives in the catalogue (:mod:`netdsl.layers`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ..layers.base import Layer, Node


def bodies(node: Node) -> list[tuple[Node, ...]]:
    """The bodies inside a node, in the order lowering registers their modules: a
    residual's body then its shortcut, a concat's branches, a dense block's layers,
    a split's parts, a scope's body. A layer and a flow node have none.

    >>> from netdsl import ir
    >>> r = ir.Residual(body=(ir.Identity(name="a", in_shape=(1,), out_shape=(1,)),),
    ...                 in_shape=(1,), out_shape=(1,))
    >>> [[n.name for n in b] for b in bodies(r)]
    [['a']]
    """
    out: list[tuple[Node, ...]] = []
    for name in type(node).body_fields:
        value = getattr(node, name)
        if not value:
            continue
        if isinstance(value[0], tuple):  # several bodies: branches, layers, parts
            out.extend(value)
        else:
            out.append(value)
    return out


def children(node: Node) -> tuple[Node, ...]:
    """The nodes of a node's bodies, in order, as one tuple.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n concat { relu\\n sigmoid } }")
    >>> [n.kind for n in children(net.body[0])]
    ['relu', 'sigmoid']
    """
    return tuple(n for body in bodies(node) for n in body)


def json_step(node: Node) -> int:
    """How many JSON levels a node's children sit below its object: 2 for a body
    (``{"body": [child``), 3 for several (``{"branches": [[child``).

    >>> from netdsl import ir
    >>> s = ir.Scope(name="g", body=(), in_shape=(1,), out_shape=(1,))
    >>> c = ir.Concat(branches=((),), in_shape=(1,), out_shape=(1,))
    >>> json_step(s), json_step(c)
    (2, 3)
    """
    cls = type(node)
    return 3 if any(_nested(cls, name) for name in cls.body_fields) else 2


def _nested(cls: type[Node], name: str) -> bool:
    """Whether field ``name`` of ``cls`` holds several bodies (``tuple[tuple[...], ...]``)."""
    annotation = cls.model_fields[name].annotation
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    for option in options:
        if typing.get_origin(option) is tuple:
            inner = typing.get_args(option)
            return bool(inner) and typing.get_origin(inner[0]) is tuple
    return False


def walk(nodes: Sequence[Node]) -> Iterator[Node]:
    """Every node of ``nodes`` and below them, each before its bodies, in order.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n residual { c: conv2d(3, 1) }\\n relu }")
    >>> [n.kind for n in walk(net.body)]
    ['residual', 'conv2d', 'relu']
    """
    stack = [iter(nodes)]
    while stack:
        for node in stack[-1]:
            yield node
            inner = bodies(node)
            if inner:
                stack.append(iter([n for body in inner for n in body]))
            break
        else:
            stack.pop()


def kind_of(node: Node) -> str:
    """The dispatch key of a node: ``layer`` for every layer, else its ``kind``."""
    return "layer" if isinstance(node, Layer) else node.kind  # type: ignore[attr-defined]


class Visitor:
    """Dispatch on a node's kind: ``visit_layer`` for a layer, ``visit_<kind>`` for a
    construct (``visit_from`` for ``from``), or, for a kind in ``through``, the
    visits of its bodies' nodes in order (:meth:`generic_visit`). Any other kind is
    a bug in netdsl: a construct this consumer was never told about.
    """

    through: ClassVar[frozenset[str]] = frozenset()

    def visit(self, node: Node, *args: Any, **kwargs: Any) -> Any:
        kind = kind_of(node)
        method = getattr(self, f"visit_{kind}", None)
        if method is not None:
            return method(node, *args, **kwargs)
        if kind in self.through:
            return self.generic_visit(node, *args, **kwargs)
        raise NotImplementedError(f"{type(self).__name__} has no rule for `{kind}` nodes")

    def generic_visit(self, node: Node, *args: Any, **kwargs: Any) -> Any:
        for body in bodies(node):
            for n in body:
                self.visit(n, *args, **kwargs)
        return None

    @classmethod
    def handles(cls, kind: str) -> bool:
        """Whether this visitor has a rule for ``kind`` (its own, or looking through)."""
        return kind in cls.through or callable(getattr(cls, f"visit_{kind}", None))
