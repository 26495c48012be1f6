"""Static analysis of a checked network: per-module output shape, parameters
and multiply-accumulates, with no tensor allocated.

MACs follow fvcore's counting rules op by op, so the total equals
``fvcore.nn.FlopCountAnalysis(model, x).total()`` for a batch of one in eval
mode. fvcore counts one multiply-add as one "flop"; here that number is
called MACs, and FLOPs are 2 × MACs. Where fvcore counts nothing for an op
(activations, max and average pooling, dropout, additions, concatenation,
multiplication) the row says so: its ``counted`` is False.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from . import ir

TYPE_NAMES = {
    "conv2d": "Conv2d", "linear": "Linear", "batchnorm2d": "BatchNorm2d", "relu": "ReLU",
    "relu6": "ReLU6", "silu": "SiLU", "hardswish": "Hardswish", "sigmoid": "Sigmoid",
    "tanh": "Tanh", "gelu": "GELU", "maxpool2d": "MaxPool2d", "avgpool2d": "AvgPool2d",
    "adaptive_avgpool2d": "AdaptiveAvgPool2d", "dropout": "Dropout", "flatten": "Flatten",
    "identity": "Identity", "local_response_norm": "LocalResponseNorm",
    "stochastic_depth": "StochasticDepth",
}

# Layer kinds fvcore has a counting rule for.
COUNTED = {"conv2d", "linear", "batchnorm2d", "adaptive_avgpool2d"}


@dataclass
class Row:
    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...]
    params: int
    macs: int
    counted: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


@dataclass
class Analysis:
    network: str
    input: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    rows: list[Row] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return 2 * self.macs


def layer_params(node: ir.Layer) -> int:
    """Learnable parameters of one layer.

    >>> layer_params(ir.Linear(name="fc", in_shape=(400,), out_shape=(120,), in_features=400,
    ...                        out_features=120))
    48120
    """
    k = node.kind
    if k == "conv2d":
        kh, kw = node.kernel_size
        return node.out_channels * (node.in_channels // node.groups) * kh * kw + \
            (node.out_channels if node.bias else 0)
    if k == "linear":
        return node.out_features * node.in_features + (node.out_features if node.bias else 0)
    if k == "batchnorm2d":
        return 2 * node.num_features if node.affine else 0
    return 0


def layer_macs(node: ir.Layer) -> int:
    """Multiply-accumulates of one layer for one sample, by fvcore's rules (eval mode)."""
    k = node.kind
    if k == "conv2d":
        kh, kw = node.kernel_size
        return math.prod(node.out_shape) * (node.in_channels // node.groups) * kh * kw
    if k == "linear":
        return node.in_features * node.out_features
    if k == "batchnorm2d":
        n = math.prod(node.in_shape)
        if not node.track_running_stats:  # batch statistics even in eval: fvcore's training rule
            return n * (5 if node.affine else 4)
        return n * (2 if node.affine else 1)
    if k == "adaptive_avgpool2d":
        return math.prod(node.in_shape)
    return 0


def _modules(nodes):
    """The module-producing nodes of a body, looking through combinators, in order."""
    for node in nodes:
        if isinstance(node, (ir.Layer, ir.Scope)):
            yield node
        elif isinstance(node, ir.Residual):
            yield from _modules(node.body)
            if node.shortcut is not None:
                yield from _modules(node.shortcut)
        elif isinstance(node, ir.Concat):
            for branch in node.branches:
                yield from _modules(branch)
        elif isinstance(node, ir.Dense):
            for layer in node.layers:
                yield from _modules(layer)
        elif isinstance(node, (ir.Gate, ir.Side)):
            yield from _modules(node.body)


def scope_type(node: ir.Scope) -> str:
    pure = all(isinstance(n, (ir.Layer, ir.Scope)) for n in node.body)
    if node.cls is not None:
        return node.cls
    return "Sequential" if pure else "Group"


def analyse(net: ir.Network) -> Analysis:
    """Rows for every module of ``net`` in ``named_modules`` order, and totals.

    >>> import netdsl
    >>> a = analyse(netdsl.compile("network n() { input [1, 32, 32]\\n conv2d(6, 5)\\n relu }"))
    >>> a.params, a.macs, [r.counted for r in a.rows]
    (156, 117600, [True, False])
    """
    rows: list[Row] = []

    def walk(nodes, prefix: str, depth: int) -> tuple[int, int]:
        total_p = total_m = 0
        for node in _modules(nodes):
            name = prefix + node.name
            if isinstance(node, ir.Scope):
                row = Row(name, scope_type(node), depth, tuple(node.out_shape), 0, 0, True)
                rows.append(row)
                row.params, row.macs = walk(node.body, name + ".", depth + 1)
            else:
                p, m = layer_params(node), layer_macs(node)
                rows.append(Row(name, TYPE_NAMES[node.kind], depth, tuple(node.out_shape), p, m,
                                node.kind in COUNTED))
            total_p += rows[-1].params if isinstance(node, ir.Layer) else row.params
            total_m += rows[-1].macs if isinstance(node, ir.Layer) else row.macs
        return total_p, total_m

    params, macs = walk(net.body, "", 0)
    # A side head runs in training only: its rows keep their cost, but the total is
    # for eval mode, where fvcore never sees it (Inception v3's AuxLogits).
    macs -= sum(layer_macs(layer) for node in net.body if isinstance(node, ir.Side)
                for layer in _layers(node.body))
    return Analysis(net.name, tuple(net.input_shape), tuple(net.out_shape), params, macs, rows)


def count_params(net: ir.Network) -> int:
    """Total parameters, from the IR alone."""
    return sum(layer_params(n) for n in _layers(net.body))


def _layers(nodes):
    for node in _modules(nodes):
        if isinstance(node, ir.Scope):
            yield from _layers(node.body)
        else:
            yield node
