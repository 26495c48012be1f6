"""The IR: a network after evaluation, expansion and shape inference.

Pydantic v2 models, frozen and strict about unknown fields, with a
discriminated union over ``kind``. Every node carries its span (which takes no
part in equality) and the static shapes of its input and output, without the
batch dimension. The IR round-trips through JSON::

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n conv2d(4, 3) }")
    >>> Network.model_validate_json(net.model_dump_json()) == net
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias, Union

from pydantic import Field

from ..layers import NODES
from ..layers.base import InitScheme, Layer, Node, NonNegInt, PosInt, Shape

# The layer nodes are defined with their kinds in netdsl.layers; they are named here,
# under this module, as they always were: pickles and ``ir.Conv2d`` keep working.
for _cls in (Node, InitScheme, Layer) + NODES:
    _cls.__module__ = __name__
    globals()[_cls.__name__] = _cls

if TYPE_CHECKING:
    # The union is built from the catalogue when the module loads, which a type checker
    # cannot follow; to it, a layer node is any Layer (each has its own ``kind``).
    LayerNode: TypeAlias = Layer
else:
    LayerNode = Union[NODES]  # noqa: UP007 -- a union of a run-time tuple of classes has no `|` spelling


class Scope(Node):
    """A block instance or a labelled group: one submodule with its own names.

    ``cls`` is the module class name (``Bottleneck``) for a block instance, and
    None for a labelled group.

    A block of several tensors (``input x``, ``output tuple(a, b)`` in its body) says
    so: ``inputs`` are its forward's parameters, in order, and ``outputs`` the names
    it returns as a tuple (empty: the block returns its current result); ``in_shapes``
    and ``out_shapes`` their shapes, where ``in_shape`` and ``out_shape`` are the first
    ones. Where it is used, ``sources`` are the results passed in (``from a, b``;
    empty: the current result) and ``targets`` the names its outputs get (``-> y, z``).
    """

    kind: Literal["scope"] = "scope"
    body_fields: ClassVar[tuple[str, ...]] = ("body",)
    name: str
    cls: str | None = None
    block: str | None = None
    body: tuple[AnyNode, ...]
    in_shape: Shape
    out_shape: Shape
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    in_shapes: tuple[Shape, ...] = ()
    out_shapes: tuple[Shape, ...] = ()
    sources: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


class Residual(Node):
    """``body(x) + shortcut(x)``; ``shortcut`` None is the identity."""

    kind: Literal["residual"] = "residual"
    body_fields: ClassVar[tuple[str, ...]] = ("body", "shortcut")
    body: tuple[AnyNode, ...]
    shortcut: tuple[AnyNode, ...] | None = None
    in_shape: Shape
    out_shape: Shape


class Concat(Node):
    """Parallel branches over one input, concatenated along channels."""

    kind: Literal["concat"] = "concat"
    body_fields: ClassVar[tuple[str, ...]] = ("branches",)
    branches: tuple[tuple[AnyNode, ...], ...]
    in_shape: Shape
    out_shape: Shape


class Dense(Node):
    """Dense connectivity: layer k sees cat(input, out_1..out_{k-1}); returns cat of all."""

    kind: Literal["dense"] = "dense"
    body_fields: ClassVar[tuple[str, ...]] = ("layers",)
    layers: tuple[tuple[AnyNode, ...], ...]
    in_shape: Shape
    out_shape: Shape


class Gate(Node):
    """``x * body(x)``, body broadcasting over the input (squeeze-and-excitation)."""

    kind: Literal["gate"] = "gate"
    body_fields: ClassVar[tuple[str, ...]] = ("body",)
    body: tuple[AnyNode, ...]
    in_shape: Shape
    out_shape: Shape


class Side(Node):
    """A head on an inner point whose result is returned beside the main output in training."""

    kind: Literal["side"] = "side"
    body_fields: ClassVar[tuple[str, ...]] = ("body",)
    name: str
    body: tuple[AnyNode, ...]
    in_shape: Shape
    out_shape: Shape


class Bind(Node):
    """``-> name``: the current result gets a name in its network or block instance."""

    kind: Literal["bind"] = "bind"
    name: str
    in_shape: Shape
    out_shape: Shape


class From(Node):
    """``from name``: the named result becomes the current one (``in_shape`` is () where
    there was none yet: a network of several inputs)."""

    kind: Literal["from"] = "from"
    name: str
    in_shape: Shape = ()
    out_shape: Shape


MergeOp = Literal["add", "sub", "mul", "div", "concat", "resize", "crop", "matmul"]
# The elementwise merges, and the Python operator each one is.
ELEMENTWISE = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
# The merges that give their first result the height and width of their second.
RESAMPLE = ("resize", "crop")


class Merge(Node):
    """Named results, in that order, combined elementwise with torch's broadcasting
    (``add(a, b, ...)``, ``sub(a, b)``, ``mul(a, b, ...)``, ``div(a, b)``; ``by`` a
    constant operand after them, ``mul(a, by = 0.2)``),
    concatenated along channels (``concat(a, b, ...)``), or the first given the
    height and width of the second: ``resize(a, b)`` interpolates (``mode``,
    ``align_corners`` as ``F.interpolate``'s), ``crop(a, b)`` cuts out a window,
    centred, or with its top-left corner at ``offset``. Both read the second
    result's size when the model runs, so a model built at one resolution runs at
    any other. ``matmul(a, b)`` is ``a @ b``, over the last two dimensions of each
    sample, the others broadcast; ``left_shape`` is ``a``'s shape, which fvcore's
    count of it reads."""

    kind: Literal["merge"] = "merge"
    op: MergeOp
    sources: tuple[str, ...]
    in_shape: Shape = ()
    out_shape: Shape
    mode: Literal["nearest", "bilinear"] | None = None
    align_corners: bool | None = None
    offset: tuple[NonNegInt, NonNegInt] | None = None
    by: float | None = None
    left_shape: Shape | None = None


class Chunk(Node):
    """``chunk(x) -> a, b``: the named result ``source`` cut into as many equal parts as
    there are ``targets``, along dimension ``dim`` of each sample (channels by default),
    part k named ``targets[k]``; ``out_shape`` is one part's."""

    kind: Literal["chunk"] = "chunk"
    source: str
    targets: tuple[str, ...]
    dim: NonNegInt = 0
    in_shape: Shape
    out_shape: Shape


class Split(Node):
    """The input's channels cut into ``sizes``; part k runs through ``parts[k]``; the
    results are concatenated along channels."""

    kind: Literal["split"] = "split"
    body_fields: ClassVar[tuple[str, ...]] = ("parts",)
    sizes: tuple[PosInt, ...]
    parts: tuple[tuple[AnyNode, ...], ...]
    in_shape: Shape
    out_shape: Shape


AnyNode = Annotated[LayerNode | Scope | Residual | Concat | Dense | Gate | Side | Bind | From | Merge | Chunk
                    | Split, Field(discriminator="kind")]

# The nodes of general dataflow: they name results or read them back.
FLOW_NODES = (Bind, From, Merge, Chunk)


def has_flow(nodes) -> bool:
    """Whether a body names results or reads them, itself or in its labelled groups (which
    share its names); a block instance's names are its own. Such a body is lowered to a
    plan over named slots, and its labelled groups to containers.

    >>> has_flow((Bind(name="a", in_shape=(1,), out_shape=(1,)),))
    True
    """
    return any(isinstance(n, FLOW_NODES) or (isinstance(n, Scope) and (
        bool(n.sources or n.targets) or (n.cls is None and has_flow(n.body)))) for n in nodes)


class Outputs(Node):
    """What a network returns, in order: ``form`` is tuple, namedtuple or dict; ``keys``
    the field names or dict keys; ``sources`` the named results."""

    form: Literal["tuple", "namedtuple", "dict"]
    keys: tuple[str, ...]
    sources: tuple[str, ...]
    shapes: tuple[Shape, ...]


class NetInput(Node):
    """One of a network's named inputs."""

    name: str
    shape: Shape


class Network(Node):
    """A whole checked network: the root of the IR."""

    kind: Literal["network"] = "network"
    body_fields: ClassVar[tuple[str, ...]] = ("body",)
    name: str
    cls: str
    params: dict[str, Any] = {}
    input_shape: Shape
    body: tuple[AnyNode, ...]
    out_shape: Shape
    outputs: tuple[str, ...] = ()
    # The training tuple's type name and field order (`sides T(logits, ...)`); by
    # default `<cls>Outputs` with logits first, then the sides in spec order.
    sides_type: str | None = None
    sides_order: tuple[str, ...] = ()
    # General dataflow: named inputs (empty for one unnamed `input`; the first is
    # ``input_shape``) and what the network returns where it says (else ``out_shape``).
    inputs: tuple[NetInput, ...] = ()
    result: Outputs | None = None


for _model in (Scope, Residual, Concat, Dense, Gate, Side, Split, Network):
    _model.model_rebuild()


# The walk, under ``ir`` too (``ir.walk(nodes)``); it imports the classes above.
from .walk import Visitor as Visitor  # noqa: E402
from .walk import bodies as bodies  # noqa: E402
from .walk import kind_of as kind_of  # noqa: E402
from .walk import walk as walk  # noqa: E402

#: The constructs: every node kind that is not a layer (layers are one case for
#: every consumer of the IR, since what differs between them is in the catalogue).
CONSTRUCTS: tuple[type[Node], ...] = (Scope, Residual, Concat, Dense, Gate, Side, Bind, From, Merge,
                                      Chunk, Split)
