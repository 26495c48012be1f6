"""The abstract syntax tree: what a spec says, before any evaluation.

Every node carries the span it was parsed from. Nodes are plain frozen
dataclasses; the span is excluded from equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..span import Span


def _span() -> Span:
    return field(default=None, compare=False, repr=False)  # type: ignore[return-value]


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr:
    pass


@dataclass(frozen=True)
class Number(Expr):
    value: int | float
    span: Span = _span()


@dataclass(frozen=True)
class String(Expr):
    """A string; ``parts`` interleaves literal text and ``{expr}`` holes."""

    parts: tuple[str | Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Constant(Expr):
    value: bool | None
    span: Span = _span()


@dataclass(frozen=True)
class Name(Expr):
    id: str
    span: Span = _span()


@dataclass(frozen=True)
class List(Expr):
    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Index(Expr):
    value: Expr
    index: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Slice(Expr):
    """``xs[start:stop]``; a missing bound is None."""

    value: Expr
    start: Expr | None
    stop: Expr | None
    span: Span = _span()


@dataclass(frozen=True)
class CompFor:
    """A further ``for var in iterable`` (``if cond``) clause of a comprehension."""

    var: str
    iterable: Expr
    cond: Expr | None = None


@dataclass(frozen=True)
class ListComp(Expr):
    """``[elt for var in iterable]``, or ``[elt for var in iterable if cond]``; ``more``
    holds further clauses, each inside the one before (``[i * j for i in a for j in b]``)."""

    elt: Expr
    var: str
    iterable: Expr
    span: Span = _span()
    cond: Expr | None = None
    more: tuple[CompFor, ...] = ()


@dataclass(frozen=True)
class Arg:
    """A call argument; ``name`` is None for a positional one."""

    name: str | None
    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Call(Expr):
    func: Name
    args: tuple[Arg, ...]
    span: Span = _span()


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True)
class UnaryOp(Expr):
    op: str
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True)
class IfExp(Expr):
    cond: Expr
    then: Expr
    orelse: Expr
    span: Span = _span()


# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class Stmt:
    pass


@dataclass(frozen=True)
class Let(Stmt):
    name: str
    value: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Assert(Stmt):
    """``assert cond, "message"``: a spec's own check of its parameters."""

    cond: Expr
    message: Expr | None
    span: Span = _span()


@dataclass(frozen=True)
class Input(Stmt):
    shape: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Init(Stmt):
    """``init conv2d.weight = kaiming_normal(...)``: target is a layer kind or a label."""

    target: str
    param: str
    scheme: Expr
    span: Span = _span()


@dataclass(frozen=True)
class For(Stmt):
    var: str
    iterable: Expr
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Use(Stmt):
    """A layer or block used as a statement: ``conv2d(64, 3)``, ``relu``."""

    name: str
    args: tuple[Arg, ...]
    has_parens: bool
    span: Span = _span()


@dataclass(frozen=True)
class Group(Stmt):
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Shortcut:
    label: String | None  # a name, or a template in quotes
    cond: Expr | None
    body: tuple[Stmt, ...]
    span: Span = _span()
    label_span: Span | None = _span()


@dataclass(frozen=True)
class Residual(Stmt):
    cond: Expr | None
    body: tuple[Stmt, ...]
    shortcut: Shortcut | None
    span: Span = _span()


@dataclass(frozen=True)
class Concat(Stmt):
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Dense(Stmt):
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Gate(Stmt):
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Side(Stmt):
    """``side NAME { ... }``; a quoted name is a template (``side "aux{i}"``), in ``template``."""

    name: str
    body: tuple[Stmt, ...]
    span: Span = _span()
    name_span: Span | None = _span()
    template: String | None = None


@dataclass(frozen=True)
class Reuse(Stmt):
    """``reuse relu``: call the module labelled ``relu`` in this scope again."""

    label: String
    span: Span = _span()


@dataclass(frozen=True)
class Apply(Stmt):
    """``apply relu(inplace = true)``: a parameter-free layer called as a function."""

    use: Use
    span: Span = _span()


@dataclass(frozen=True)
class Sides(Stmt):
    """``sides GoogLeNetOutputs(logits, aux2, aux1)``: the training outputs' type and order."""

    type_name: str | None
    fields: tuple[str, ...]
    span: Span = _span()
    field_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Repeat(Stmt):
    unit: Stmt
    count: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Labelled(Stmt):
    label: String
    unit: Stmt
    span: Span = _span()


# ---------------------------------------------------------------- top level


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span = _span()


@dataclass(frozen=True)
class Import:
    path: str
    span: Span = _span()


@dataclass(frozen=True)
class Extern:
    """``extern blur_pool = "timm.layers.BlurPool2d"``: a Python module class by its
    dotted path, ``target``, written at ``target_span``."""

    name: str
    target: str
    target_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span = _span()
    cls: str | None = None  # `block bottleneck(...) as Bottleneck`


@dataclass(frozen=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span = _span()
    cls: str | None = None  # `network googlenet(...) as GoogLeNet`


@dataclass(frozen=True)
class NetworkAlias:
    """``network vgg16 = vgg(depth = 16)``: a network with other defaults."""

    name: str
    base: Name
    args: tuple[Arg, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Module:
    """One parsed spec file."""

    items: tuple[Import | Extern | BlockDef | NetworkDef | NetworkAlias | Let, ...]
    file: str | None = None


# ---------------------------------------------------------------- general dataflow


@dataclass(frozen=True)
class Ref:
    """A named result, read or written: ``skip`` or a template ``"skip{i}"``."""

    name: String
    span: Span = _span()


@dataclass(frozen=True)
class Bind(Stmt):
    """``unit -> name``: the output of ``unit`` (or, alone, the current result) gets a name;
    ``unit -> y, z``: the outputs of a block of several, in order (``more`` the names after
    the first)."""

    unit: Stmt | None
    target: Ref
    span: Span = _span()
    more: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class From(Stmt):
    """``from name``: the next statement reads the named result instead of the current one;
    ``from a, b``: the block used next takes these results as its inputs (``more`` the
    names after the first)."""

    source: Ref
    span: Span = _span()
    more: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class Merge(Stmt):
    """``add(a, b)``, ``concat(a, b)`` or ``resize(a, b, mode = "bilinear")``: named
    results merged into the current one, with options by keyword."""

    op: str
    sources: tuple[Ref, ...]
    options: tuple[Arg, ...] = ()
    span: Span = _span()


@dataclass(frozen=True)
class OutputEntry:
    key: String | None
    source: Ref
    span: Span = _span()


@dataclass(frozen=True)
class Output(Stmt):
    """``output dict("0": c3, pool: p)``: what a network returns, in this order."""

    form: str
    entries: tuple[OutputEntry, ...]
    span: Span = _span()
    form_span: Span | None = _span()


@dataclass(frozen=True)
class NamedInput(Stmt):
    """``input rgb: [3, 224, 224]``: one of a network's several inputs."""

    name: str
    shape: Expr
    span: Span = _span()


@dataclass(frozen=True)
class Split(Stmt):
    """``split { a \\n b }``: the channels cut into parts (equal, or ``sizes``), part k run
    through branch k, the results concatenated."""

    sizes: Expr | None
    body: tuple[Stmt, ...]
    span: Span = _span()
