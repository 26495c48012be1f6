"""The catalogue of built-in layers: their argument signatures, in the order a
user writes them, and the IR class each one becomes.

Input channels and features are never arguments: the checker infers them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from . import ir

REQUIRED = object()


class ArgTypeError(Exception):
    """A value of the wrong type for an argument; ``expected`` says what fits."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgTypeError("an integer")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgTypeError("a number")
    if not math.isfinite(v):
        raise ArgTypeError("a finite number")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ArgTypeError("`true` or `false`")
    return v


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ArgTypeError("an integer or a list of two integers [h, w]")
        return (_pair_item(v[0]), _pair_item(v[1]))
    x = _pair_item(v)
    return (x, x)


def _pair_item(v: Any) -> int:
    try:
        return _int(v)
    except ArgTypeError:
        raise ArgTypeError("an integer or a list of two integers [h, w]") from None


def _pair_or_none(v: Any):
    return None if v is None else _pair(v)


def _str(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if not isinstance(v, str) or v not in choices:
            raise ArgTypeError("one of " + ", ".join(f'"{c}"' for c in choices))
        return v
    return conv


@dataclass(frozen=True)
class Arg:
    name: str
    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    doc: str = ""


@dataclass(frozen=True)
class LayerSig:
    """One built-in layer: ``kind`` names the IR node; ``args`` in positional order."""

    kind: str
    node: type
    args: tuple[Arg, ...]
    doc: str

    def arg(self, name: str) -> Arg | None:
        for a in self.args:
            if a.name == name:
                return a
        return None


def _act(kind: str, doc: str, inplace: bool = True) -> LayerSig:
    args = (Arg("inplace", _bool, False, "overwrite the input tensor"),) if inplace else ()
    return LayerSig(kind, ir.Activation, args, doc)


_POOL_COMMON = (
    Arg("kernel_size", _pair, doc="window size, int or [h, w]"),
    Arg("stride", _pair_or_none, None, "defaults to kernel_size"),
    Arg("padding", _pair, 0, "implicit padding on both sides"),
)

LAYERS: dict[str, LayerSig] = {sig.kind: sig for sig in [
    LayerSig("conv2d", ir.Conv2d, (
        Arg("out_channels", _int, doc="number of output channels"),
        Arg("kernel_size", _pair, doc="int or [h, w]"),
        Arg("stride", _pair, 1, "int or [h, w]"),
        Arg("padding", _pair, 0, "int or [h, w], zero padding on both sides"),
        Arg("dilation", _pair, 1, "int or [h, w]"),
        Arg("groups", _int, 1, "must divide input and output channels"),
        Arg("bias", _bool, True, "add a learnable bias"),
    ), "2-D convolution (torch.nn.Conv2d); input channels are inferred"),
    LayerSig("linear", ir.Linear, (
        Arg("out_features", _int, doc="number of output features"),
        Arg("bias", _bool, True, "add a learnable bias"),
    ), "fully connected layer (torch.nn.Linear); input features are inferred"),
    LayerSig("batchnorm2d", ir.BatchNorm2d, (
        Arg("eps", _float, 1e-5, "added to the variance"),
        Arg("momentum", _float, 0.1, "running-statistics momentum"),
        Arg("affine", _bool, True, "learnable scale and shift"),
        Arg("track_running_stats", _bool, True, "keep running mean and variance"),
    ), "batch normalisation over channels (torch.nn.BatchNorm2d)"),
    _act("relu", "ReLU"),
    _act("relu6", "ReLU6"),
    _act("silu", "SiLU (swish)"),
    _act("hardswish", "Hardswish"),
    _act("sigmoid", "Sigmoid", inplace=False),
    _act("tanh", "Tanh", inplace=False),
    _act("gelu", "GELU", inplace=False),
    LayerSig("maxpool2d", ir.MaxPool2d, _POOL_COMMON + (
        Arg("dilation", _pair, 1, "window dilation"),
        Arg("ceil_mode", _bool, False, "round the output size up"),
    ), "2-D max pooling (torch.nn.MaxPool2d)"),
    LayerSig("avgpool2d", ir.AvgPool2d, _POOL_COMMON + (
        Arg("ceil_mode", _bool, False, "round the output size up"),
        Arg("count_include_pad", _bool, True, "count padding zeros in the average"),
    ), "2-D average pooling (torch.nn.AvgPool2d)"),
    LayerSig("adaptive_avgpool2d", ir.AdaptiveAvgPool2d, (
        Arg("output_size", _pair, doc="int or [h, w]"),
    ), "adaptive average pooling to a fixed size (torch.nn.AdaptiveAvgPool2d)"),
    LayerSig("dropout", ir.Dropout, (
        Arg("p", _float, 0.5, "probability of zeroing an element"),
        Arg("inplace", _bool, False, "overwrite the input tensor"),
    ), "dropout (torch.nn.Dropout), active in training only"),
    LayerSig("flatten", ir.Flatten, (), "flatten [C, H, W] to [C*H*W] (torch.nn.Flatten)"),
    LayerSig("identity", ir.Identity, (), "passes its input through (torch.nn.Identity)"),
    LayerSig("local_response_norm", ir.LocalResponseNorm, (
        Arg("size", _int, doc="number of neighbouring channels"),
        Arg("alpha", _float, 1e-4, "multiplicative factor"),
        Arg("beta", _float, 0.75, "exponent"),
        Arg("k", _float, 1.0, "additive factor"),
    ), "local response normalisation across channels (torch.nn.LocalResponseNorm)"),
    LayerSig("stochastic_depth", ir.StochasticDepth, (
        Arg("p", _float, doc="probability of dropping the residual branch"),
        Arg("mode", _str(("row", "batch")), "row", '"row" drops per sample, "batch" the whole batch'),
    ), "stochastic depth (torchvision.ops.StochasticDepth), active in training only"),
    LayerSig("conv_transpose2d", ir.ConvTranspose2d, (
        Arg("out_channels", _int, doc="number of output channels"),
        Arg("kernel_size", _pair, doc="int or [h, w]"),
        Arg("stride", _pair, 1, "int or [h, w]"),
        Arg("padding", _pair, 0, "int or [h, w], removed from both sides of the output"),
        Arg("output_padding", _pair, 0, "int or [h, w], added to one side of the output"),
        Arg("groups", _int, 1, "must divide input and output channels"),
        Arg("bias", _bool, True, "add a learnable bias"),
        Arg("dilation", _pair, 1, "int or [h, w]"),
    ), "2-D transposed convolution (torch.nn.ConvTranspose2d); input channels are inferred"),
    LayerSig("upsample", ir.Upsample, (
        Arg("scale_factor", lambda v: None if v is None else _float(v), None, "multiplier of height and width"),
        Arg("size", _pair_or_none, None, "output size, int or [h, w] (instead of scale_factor)"),
        Arg("mode", _str(("nearest", "bilinear")), "nearest", '"nearest" or "bilinear"'),
        Arg("align_corners", lambda v: None if v is None else _bool(v), None, "bilinear only"),
    ), "upsampling by a factor or to a size (torch.nn.Upsample)"),
    LayerSig("channel_shuffle", ir.ChannelShuffle, (
        Arg("groups", _int, doc="number of channel groups to interleave"),
    ), "interleave the channels of `groups` groups (torch.nn.ChannelShuffle, ShuffleNet)"),
]}

# Parameters each layer kind owns, for `init KIND.PARAM = ...`.
PARAMETERS: dict[str, tuple[str, ...]] = {
    "conv2d": ("weight", "bias"),
    "linear": ("weight", "bias"),
    "batchnorm2d": ("weight", "bias"),
    "conv_transpose2d": ("weight", "bias"),
}

# What autograd keeps of each kind, for in-place operations. Three sets, because
# a wrong guess costs differently: one kind missing from OUTPUT_NOT_SAVED costs an
# extra tensor; one wrongly there breaks backward.
#
# Kinds whose output is their input, a view of it, or (dropout, stochastic depth in
# training) a product nothing keeps: what follows them sees the tensor before them.
PASS_THROUGH = frozenset({"identity", "flatten", "dropout", "stochastic_depth"})

# Kinds whose backward reads their output (torch saves the result of relu, sigmoid and
# tanh, in place or not): the checker refuses an in-place op on that output, even
# through a pass-through layer (E0311).
SAVES_OUTPUT = frozenset({"relu", "sigmoid", "tanh"})

# Kinds whose output autograd never keeps (they keep their input and weights, or only
# sizes): a residual may add its shortcut into that output in place, as torchvision's
# blocks do. Activations are left out: they keep their output, or may in some torch version.
OUTPUT_NOT_SAVED = frozenset({"conv2d", "linear", "batchnorm2d", "maxpool2d", "avgpool2d",
                              "adaptive_avgpool2d", "conv_transpose2d", "upsample"})
