"""Flows and name scopes: the state a body is checked in.

A flow says how consecutive items are wired — in sequence, as parallel
branches over one input, or densely connected — and so what input each item
sees. A name scope gives each module of a network, block instance or labelled
group its name: its label, or its position among the modules the scope made.
"""

from __future__ import annotations

from types import EllipsisType
from typing import TYPE_CHECKING, Any

from .. import ir
from ..diagnostics import Diagnostic
from ..ir.walk import bodies
from ..layers import shapes
from ..span import Span
from ..syntax import ast
from .lost import Lost

if TYPE_CHECKING:
    from .context import Context, Shape
    from .dataflow import ValueScope


class SeqFlow:
    """Items in sequence: each one's input is the previous one's output.

    ``shared`` says whether the current tensor must not be overwritten in place:
    False, True (something else reads it), or the kind of the layer whose backward
    pass reads it (``relu``, ``sigmoid``, ``tanh``).
    """

    values: ValueScope | None = None  # the names it may bind and read; None in combinators

    # Set on a network's flow only (Checker._network).
    input_override: Any  # the input shape(s) given from outside the spec, or None
    input_shape: Any  # the network's (first) input shape, once declared
    sides: list[str]  # the side outputs' names, in spec order
    sides_decl: Any  # the `sides` statement (ast.Sides), or None
    sides_lost: Lost  # the side outputs an error kept from being made

    def __init__(self, shape, shared: bool, network: bool = False, block: bool = False):
        self.shape = shape
        self.shared = shared
        self.nodes: list = []
        self.network = network
        self.block = block  # a block instance's own body: it may declare `input x` and `output`
        self.has_input = not network
        self.missing_reported = False

    def next_input(self, cx: Context, span: Span | None):
        if self.values is not None and self.values.no_current:
            no_current(cx, self.values, span)
        if self.values is not None and (self.values.pack is not None or self.values.several is not None):
            from .dataflow import one_tensor
            one_tensor(cx, self.values, span, "this statement reads one tensor")
            return None, self.shared
        if not self.has_input and not self.missing_reported:
            self.missing_reported = True
            cx.report(Diagnostic("E0308", "no input shape declared before the first layer",
                                      span, "this layer has no input",
                                      "start the network with `input [C, H, W]`, e.g. `input [3, 224, 224]`"))
        return self.shape, self.shared

    def accept(self, nodes, shape, shared, span) -> None:
        self.nodes.extend(nodes)
        self.shape = shape
        self.shared = shared


class ConcatFlow:
    """Parallel branches: every item sees the same input."""

    def __init__(self, shape):
        self.input = shape
        self.branches: list[tuple[list, Shape | None, Span | None]] = []

    def next_input(self, cx: Context, span: Span | None):
        return self.input, True

    def accept(self, nodes, shape, shared, span) -> None:
        self.branches.append((nodes, shape, span))

    def shaped(self) -> list[tuple[list, Shape, Span | None]] | None:
        """The branches, where every one's output shape is known; else None (a mistake in
        a branch made one unknown, and was reported)."""
        known = [(nodes, shape, span) for nodes, shape, span in self.branches if shape is not None]
        return known if len(known) == len(self.branches) else None


class DenseFlow:
    """Dense connectivity: item k sees the concatenation of the input and all earlier outputs."""

    def __init__(self, shape, cx: Context):
        self.input = shape
        self.channels: int = shape[0] if shape else 0  # read only while ok
        self.layers: list[list] = []
        self.ok = shape is not None
        self.cx = cx  # reports a layer that changes the size

    def next_input(self, cx: Context, span: Span | None):
        if not self.ok:
            return None, False
        return (self.channels,) + tuple(self.input[1:]), False

    def accept(self, nodes, shape, shared, span) -> None:
        self.layers.append(nodes)
        if not self.ok or shape is None:
            self.ok = False
            return
        if len(shape) != 3 or shape[1:] != self.input[1:]:
            self.ok = False
            self.cx.report(Diagnostic(
                "E0302", "a dense layer must keep the spatial size",
                span, f"it gives {shapes.fmt(shape)} from an input of {shapes.fmt(self.input[1:])} size",
                "dense connectivity concatenates along channels; use stride 1 and 'same' padding"))
            return
        self.channels += shape[0]


# ---------------------------------------------------------------- scopes


class NameScope:
    """Names the modules of one scope (network, block instance, labelled group)."""

    def __init__(self, parent: NameScope | None):
        self.parent = parent
        self.used: dict[str, Span | None] = {}
        self.positions: set[str] = set()  # the names given by position, to unlabelled modules
        # The containers dotted labels make (`"convs.0"` makes `convs`), and where first.
        self.containers: dict[str, Span | None] = {}
        self.count = 0
        self.init: list[tuple[str, str, ir.InitScheme, Span | None]] = []
        self.matched: set[int] = set()
        # Labelled layers, for `reuse`: label -> (kind, argument values, IR node).
        self.layers: dict[str, tuple] = {}
        # The labels of its own layers that an error left unknown (lost.py), and those of
        # the scopes inside it, which its `init` rules reach too.
        self.lost = Lost()
        self.lost_inside = Lost()

    def lose(self, label: str | ast.String | EllipsisType | None, inside: bool = False) -> None:
        """An error left the layer ``label`` of this scope unknown (a label, its template,
        None for no label, or ``...`` for a label that is itself unknown); with ``inside``,
        any label in the scopes inside it too (a block that was never expanded). `reuse`
        and `init` stay silent about them."""
        if label is None and not inside:
            return
        s: NameScope | None = self
        while s is not None:
            lost = s.lost if s is self else s.lost_inside
            if isinstance(label, ast.String):
                lost.template(label)
            elif label is ...:
                lost.everything = True
            elif label is not None:
                lost.add(label)
            if inside:
                s.lost_inside.everything = True
            s = s.parent

    def unknown(self, label: str) -> bool:
        """Whether an error left the layer ``label`` unknown, here or in a scope inside."""
        return label in self.lost or label in self.lost_inside

    def name(self, cx: Context, label: str | None, span: Span | None) -> str:
        position = self.count
        self.count += 1
        if label is None:
            name = str(position)
            while name in self.used:
                name += "_"
            self.positions.add(name)
        else:
            name = label
            prefixes = [".".join(label.split(".")[:i]) for i in range(1, label.count(".") + 1)]
            leaf = next((p for p in prefixes if p in self.used), None)
            if label in self.containers or leaf is not None:
                first = self.containers[label] if leaf is None else self.used[leaf]
                at = first.where() if first else "an earlier line"
                cx.report(Diagnostic(
                    "E0108", f"label `{label}` " + (f"is the container of the labels under it, from {at}"
                                                    if leaf is None else f"puts a module in `{leaf}`, "
                                                    f"which is a module of its own (at {at})"),
                    span, "one name for two things",
                    "a dotted label (`\"convs.0\"`) makes its container; label the other module apart"))
                self.used[name] = span
                return name
            for p in prefixes:
                self.containers.setdefault(p, span)
            if label in self.used:
                first = self.used[label]
                at = first.where() if first else "an earlier line"
                if label in self.positions:
                    # `"1": relu` after an unlabelled module numbered 1: no label was given twice.
                    cx.report(Diagnostic(
                        "E0108", f"label `{label}` collides with the name of the unlabelled module "
                        f"at position {label}", span, f"the module at {at} is already named `{label}`",
                        "a module without a label is named by its position in its block, network or "
                        f"group; use a label that is not a number, e.g. `layer{label}`, or label "
                        "that module too"))
                else:
                    cx.report(Diagnostic(
                        "E0108", f"duplicate label `{label}` in one scope", span, "used again here",
                        f"the first `{label}` is at {at}; "
                        "labels name modules and must be unique in their block, network or group"))
        self.used[name] = span
        return name




def no_current(cx: Context, values: ValueScope, span: Span | None) -> None:
    """A layer reads the current result where there is none: the network has named
    inputs and no `from` has said which one. Reported once; the names it meant are
    then unknown, so unused inputs are not reported."""
    if values.unpacked:
        # The results of a block of several outputs are named, and none is current.
        names = ", ".join(values.unpacked)
        cx.report(Diagnostic("E0132", f"after `-> {names}`, say which result a layer reads", span,
                             "no current result here",
                             f"go on from one of them, e.g. `from {values.unpacked[0]}`"))
    else:
        names = ", ".join(n for n, _, _ in values.inputs)
        cx.report(Diagnostic("E0132", "with several inputs, say which one a layer reads", span,
                             "no current result here",
                             f"start with `from {values.inputs[0][0]}` (the inputs are {names})"))
    values.no_current = False
    values.unsure = True


def name_by_kind(scope: NameScope, nodes: list, root: bool = False) -> list:
    """``nodes``, the body of ``scope``, with each unlabelled module that holds no state
    named after its kind as torchvision names such a module (``relu``, ``avgpool``,
    ``flatten``; ``relu_1`` for a second one) rather than by its position, wherever the
    scope is a module with a forward of its own: the network (``root``), or a block or
    labelled group that is no plain sequence. A plain sequence is an ``nn.Sequential``
    and keeps torchvision's numbering, as do modules with parameters or buffers, whose
    names are in ``state_dict`` keys.

    >>> from netdsl.layers.base import Layer
    >>> s = NameScope(None); names = [s.name(None, None, None), s.name(None, "fc", None)]
    >>> class R(Layer): kind: str = "relu"
    >>> [n.name for n in name_by_kind(s, [R(name=names[0], in_shape=(1,), out_shape=(1,))], root=True)]
    ['relu']
    """
    from ..layers import KINDS
    from .reserved import reserved

    def movable(n) -> bool:
        return (isinstance(n, ir.Layer) and n.name in scope.positions and not n.reuse and not n.functional
                and n.kind in KINDS and KINDS[n.kind].stateless)

    if not root and _sequential(nodes, KINDS):
        return nodes
    taken = set(scope.used)
    renamed: dict[int, str] = {}

    def visit(body) -> None:
        for n in body:
            if movable(n):
                base = KINDS[n.kind].attribute or n.kind
                name, i = base, 0
                while name in taken or reserved(name):
                    i += 1
                    name = f"{base}_{i}"
                taken.add(name)
                renamed[id(n)] = name
            elif not isinstance(n, ir.Scope):
                for part in bodies(n):
                    visit(part)

    visit(nodes)
    if not renamed:
        return nodes
    return [_renamed(n, renamed) for n in nodes]


def _renamed(n, renamed: dict[int, str]):
    if id(n) in renamed:
        return n.model_copy(update={"name": renamed[id(n)]})
    if isinstance(n, ir.Scope) or not n.body_fields:
        return n
    update = {}
    for f in n.body_fields:
        v = getattr(n, f)
        if v is None:
            continue
        update[f] = tuple(tuple(_renamed(x, renamed) for x in part) if isinstance(part, tuple)
                          else _renamed(part, renamed) for part in v)
    return n.model_copy(update=update)


def _sequential(nodes, kinds) -> bool:
    """What lowering builds as an ``nn.Sequential`` (backend/forward.py's ``is_sequential``)."""
    return all((isinstance(n, ir.Scope) or (isinstance(n, ir.Layer) and not n.reuse and not n.functional
                                            and not kinds[n.kind].bare_parameter)) and "." not in n.name
               for n in nodes) and not ir.has_flow(nodes)
