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

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from .layers import NODES
from .layers.base import (InitScheme, Layer, NonNegInt, NonNegPair, Node, Pair, PosInt, Prob,
                          Shape)

# The layer nodes are defined with their kinds in netdsl.layers; they are named here,
# under this module, as they always were: pickles and ``ir.Conv2d`` keep working.
for _cls in (Node, InitScheme, Layer) + NODES:
    _cls.__module__ = __name__
    globals()[_cls.__name__] = _cls

LayerNode = Union[NODES]


class Scope(Node):
    """A block instance or a labelled group: one submodule with its own names.

    ``cls`` is the module class name (``Bottleneck``) for a block instance, and
    None for a labelled group.
    """

    kind: Literal["scope"] = "scope"
    name: str
    cls: str | None = None
    block: str | None = None
    body: tuple["AnyNode", ...]
    in_shape: Shape
    out_shape: Shape


class Residual(Node):
    """``body(x) + shortcut(x)``; ``shortcut`` None is the identity."""

    kind: Literal["residual"] = "residual"
    body: tuple["AnyNode", ...]
    shortcut: tuple["AnyNode", ...] | None = None
    in_shape: Shape
    out_shape: Shape


class Concat(Node):
    """Parallel branches over one input, concatenated along channels."""

    kind: Literal["concat"] = "concat"
    branches: tuple[tuple["AnyNode", ...], ...]
    in_shape: Shape
    out_shape: Shape


class Dense(Node):
    """Dense connectivity: layer k sees cat(input, out_1..out_{k-1}); returns cat of all."""

    kind: Literal["dense"] = "dense"
    layers: tuple[tuple["AnyNode", ...], ...]
    in_shape: Shape
    out_shape: Shape


class Gate(Node):
    """``x * body(x)``, body broadcasting over the input (squeeze-and-excitation)."""

    kind: Literal["gate"] = "gate"
    body: tuple["AnyNode", ...]
    in_shape: Shape
    out_shape: Shape


class Side(Node):
    """A head on an inner point whose result is returned beside the main output in training."""

    kind: Literal["side"] = "side"
    name: str
    body: tuple["AnyNode", ...]
    in_shape: Shape
    out_shape: Shape


AnyNode = Annotated[Union[LayerNode, Scope, Residual, Concat, Dense, Gate, Side],
                    Field(discriminator="kind")]


class Network(Node):
    """A whole checked network: the root of the IR."""

    kind: Literal["network"] = "network"
    name: str
    cls: str
    params: dict[str, Any] = {}
    input_shape: Shape
    body: tuple[AnyNode, ...]
    out_shape: Shape
    outputs: tuple[str, ...] = ()


for _model in (Scope, Residual, Concat, Dense, Gate, Side, Network):
    _model.model_rebuild()
