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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .span import Span

Shape = tuple[int, ...]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Pair = tuple[PosInt, PosInt]
NonNegPair = tuple[NonNegInt, NonNegInt]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span | None = None


class InitScheme(Node):
    """How one parameter tensor is initialised (``torch.nn.init`` names)."""

    fn: Literal["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
                "normal", "uniform", "trunc_normal", "constant", "zeros", "ones"]
    args: dict[str, float | str] = {}


class Layer(Node):
    """A leaf module; ``name`` is its name inside the enclosing scope.

    ``reuse``: another call of the module already named ``name`` in this scope
    (``reuse relu``), which owns no parameters of its own. ``functional``: no
    module at all, the layer's torch function called in place (``apply flatten``).
    """

    name: str
    in_shape: Shape
    out_shape: Shape
    init: dict[str, InitScheme] = {}
    reuse: bool = False
    functional: bool = False


class Conv2d(Layer):
    kind: Literal["conv2d"] = "conv2d"
    in_channels: PosInt
    out_channels: PosInt
    kernel_size: Pair
    stride: Pair = (1, 1)
    padding: NonNegPair = (0, 0)
    dilation: Pair = (1, 1)
    groups: PosInt = 1
    bias: bool = True

    @model_validator(mode="after")
    def _groups_divide(self) -> "Conv2d":
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError("groups must divide in_channels and out_channels")
        return self


class Linear(Layer):
    kind: Literal["linear"] = "linear"
    in_features: PosInt
    out_features: PosInt
    bias: bool = True


class BatchNorm2d(Layer):
    kind: Literal["batchnorm2d"] = "batchnorm2d"
    num_features: PosInt
    eps: Annotated[float, Field(gt=0.0)] = 1e-5
    momentum: Prob = 0.1
    affine: bool = True
    track_running_stats: bool = True


class Activation(Layer):
    kind: Literal["relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "gelu"]
    inplace: bool = False


class MaxPool2d(Layer):
    kind: Literal["maxpool2d"] = "maxpool2d"
    kernel_size: Pair
    stride: Pair
    padding: NonNegPair = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False


class AvgPool2d(Layer):
    kind: Literal["avgpool2d"] = "avgpool2d"
    kernel_size: Pair
    stride: Pair
    padding: NonNegPair = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True


class AdaptiveAvgPool2d(Layer):
    kind: Literal["adaptive_avgpool2d"] = "adaptive_avgpool2d"
    output_size: Pair


class Dropout(Layer):
    kind: Literal["dropout"] = "dropout"
    p: Prob = 0.5
    inplace: bool = False


class Flatten(Layer):
    kind: Literal["flatten"] = "flatten"


class Identity(Layer):
    kind: Literal["identity"] = "identity"


class LocalResponseNorm(Layer):
    kind: Literal["local_response_norm"] = "local_response_norm"
    size: PosInt
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


class StochasticDepth(Layer):
    kind: Literal["stochastic_depth"] = "stochastic_depth"
    p: Prob
    mode: Literal["row", "batch"] = "row"


class ConvTranspose2d(Layer):
    kind: Literal["conv_transpose2d"] = "conv_transpose2d"
    in_channels: PosInt
    out_channels: PosInt
    kernel_size: Pair
    stride: Pair = (1, 1)
    padding: NonNegPair = (0, 0)
    output_padding: NonNegPair = (0, 0)
    groups: PosInt = 1
    bias: bool = True
    dilation: Pair = (1, 1)


class Upsample(Layer):
    """``size`` or ``scale_factor``, exactly one (torch.nn.Upsample)."""

    kind: Literal["upsample"] = "upsample"
    size: Pair | None = None
    scale_factor: Annotated[float, Field(gt=0.0)] | None = None
    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool | None = None


class ChannelShuffle(Layer):
    kind: Literal["channel_shuffle"] = "channel_shuffle"
    groups: PosInt


LayerNode = Union[Conv2d, Linear, BatchNorm2d, Activation, MaxPool2d, AvgPool2d,
                  AdaptiveAvgPool2d, Dropout, Flatten, Identity, LocalResponseNorm,
                  StochasticDepth, ConvTranspose2d, Upsample, ChannelShuffle]


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


class Merge(Node):
    """``add(a, b, ...)`` or ``concat(a, b, ...)`` of named results, in that order."""

    kind: Literal["merge"] = "merge"
    op: Literal["add", "concat"]
    sources: tuple[str, ...]
    in_shape: Shape = ()
    out_shape: Shape


class Split(Node):
    """The input's channels cut into ``sizes``; part k runs through ``parts[k]``; the
    results are concatenated along channels."""

    kind: Literal["split"] = "split"
    sizes: tuple[PosInt, ...]
    parts: tuple[tuple["AnyNode", ...], ...]
    in_shape: Shape
    out_shape: Shape


AnyNode = Annotated[Union[LayerNode, Scope, Residual, Concat, Dense, Gate, Side, Bind, From, Merge,
                          Split], Field(discriminator="kind")]

# The nodes of general dataflow: they name results or read them back.
FLOW_NODES = (Bind, From, Merge)


def has_flow(nodes) -> bool:
    """Whether a body names results or reads them, itself or in its labelled groups (which
    share its names); a block instance's names are its own. Such a body is lowered to a
    plan over named slots, and its labelled groups to containers.

    >>> has_flow((Bind(name="a", in_shape=(1,), out_shape=(1,)),))
    True
    """
    return any(isinstance(n, FLOW_NODES) or (isinstance(n, Scope) and n.cls is None and has_flow(n.body))
               for n in nodes)


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


def bodies(node: Node) -> list[tuple]:
    """The bodies inside a combinator, read from its fields (a tuple of nodes is one
    body, a tuple of such tuples several), so that a pass that only needs to look
    through combinators works for every one, those added later included.

    >>> r = Residual(body=(Identity(name="a", in_shape=(1,), out_shape=(1,)),),
    ...              in_shape=(1,), out_shape=(1,))
    >>> [[n.name for n in b] for b in bodies(r)]
    [['a']]
    """
    out = []
    for name in type(node).model_fields:
        value = getattr(node, name)
        if isinstance(value, tuple) and value:
            if all(isinstance(v, Node) for v in value):
                out.append(value)
            elif all(isinstance(v, tuple) for v in value):
                out.extend(v for v in value if all(isinstance(x, Node) for x in v))
    return out
