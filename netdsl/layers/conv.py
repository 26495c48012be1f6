"""Convolutions and the fully connected layer: ``conv2d``, ``conv1d``,
``conv_transpose2d``, ``linear``."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from . import shapes
from .base import (
    Arg,
    ArgTypeError,
    Kind,
    Layer,
    LayerError,
    NonNegInt,
    NonNegPair,
    Pair,
    PosInt,
    Torch,
    _bool,
    _float,
    _int,
    _pair,
)
from .norm import _positive_eps


def _groups_divide(node):
    """The IR's own check of a convolution node's groups (the checker reports E0307 first)."""
    if node.in_channels % node.groups or node.out_channels % node.groups:
        raise ValueError("groups must divide in_channels and out_channels")
    return node


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
    # `padding = "same"` where no symmetric padding gives it (a stride, or an even
    # dilated kernel): TensorFlow's, computed from the input's size when the model runs.
    same: bool = False

    _groups = model_validator(mode="after")(_groups_divide)


def _kaiming_default(module, pname, tensor) -> bool:
    """``_ConvNd`` and ``Linear``'s ``reset_parameters``, one parameter at a time."""
    from torch import nn
    if pname == "weight":
        nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
    else:
        # The bound depends on the weight's shape only, not on its values.
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(tensor, -bound, bound)
    return True


def _pair_or_same(v) -> tuple[int, int] | str:
    """An int or a pair, or "same": TensorFlow's padding, whatever the stride."""
    if v == "same":
        return "same"
    try:
        return _pair(v)
    except ArgTypeError:
        raise ArgTypeError('an integer, a list of two integers [h, w], or "same"') from None


def same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis, (before, after): the output has
    ceil(size / s) positions, and the odd pixel, if any, goes after.

    >>> same_padding(224, 3, 2, 1), same_padding(7, 3, 1, 1), same_padding(8, 1, 2, 1)
    ((0, 1), (1, 1), (0, 0))
    """
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _whole(v) -> int | None:
    """``v`` where it is an integer (not a bool), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# torch 2.14's oneDNN convolution backward on the CPU corrupts memory and kills the
# process (SIGSEGV) at large strides: seen from 3,000 with 64 input channels, and at
# every stride from 16,384. No network needs a stride past its input's size, and
# 1,024 is larger than any patch size in use (ViT's 16 and 32, a full 224 image).
MAX_CONV_STRIDE = 1024


def _stride_within_limit(kind: str, strides) -> None:
    for s in strides:
        if s > MAX_CONV_STRIDE:
            raise LayerError("E0204", f"`{kind}` argument `stride` must be at most {MAX_CONV_STRIDE:,}",
                             f"found {s}",
                             "torch's CPU convolution (oneDNN) crashes the process in the backward "
                             "pass at strides in the thousands; a stride larger than the input "
                             "gives the same output as a stride equal to it", arg="stride")


class Conv2dKind(Kind):
    name = "conv2d"
    window = projects = True
    example = "conv2d(4, 3, padding = 1)"
    # Declared as Kind's, since conv_transpose2d's kind derives from this one.
    node: type[Layer] = Conv2d
    doc = "2-D convolution (torch.nn.Conv2d); input channels are inferred"
    torch_class = "torch.nn.Conv2d"
    args: tuple[Arg, ...] = (
        Arg("out_channels", _int, doc="number of output channels", min=1),
        Arg("kernel_size", _pair, doc="int or [h, w]", min=1),
        Arg("stride", _pair, 1, "int or [h, w]", min=1),
        Arg("padding", _pair_or_same, 0, 'int or [h, w], zero padding on both sides; or "same", '
            "TensorFlow's: the output is ceil(input / stride)", min=0),
        Arg("dilation", _pair, 1, "int or [h, w]", min=1),
        Arg("groups", _int, 1, "must divide input and output channels", min=1),
        Arg("bias", _bool, True, "add a learnable bias"),
    )
    parameters: tuple[str, ...] = ("weight", "bias")
    matrix_parameters = ("weight",)
    counted = factory = output_not_saved = True

    def torch_order(self, positional, shape):
        # nn.Conv2d(in, out, kernel, stride, ...): read netdsl's way, the out channels come
        # out as the kernel, larger than any kernel in use (AlexNet's 11 is the largest).
        if (len(positional) >= 3 and len(shape) == 3 and _whole(positional[0]) == shape[0]
                and (_whole(positional[1]) or 0) > 11):
            return f"{self.name}({', '.join(map(str, positional[1:]))})"
        return None

    def check(self, values):
        _stride_within_limit(self.name, values["stride"])

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        shapes.divides("groups", values["groups"], shape[0], values["out_channels"])
        if values["padding"] != "same":
            h, w = shapes.spatial(self.name, values, shape)
            return {"in_channels": shape[0]}, (values["out_channels"], h, w)
        # TensorFlow's "same": symmetric where that gives it at any input size (stride 1 and
        # an odd dilated kernel, as timm's static case), else padded when the model runs.
        static = all(s == 1 and (d * (k - 1)) % 2 == 0
                     for k, s, d in zip(values["kernel_size"], values["stride"], values["dilation"], strict=True))
        pad = tuple(d * (k - 1) // 2 for k, d in zip(values["kernel_size"], values["dilation"], strict=True)) \
            if static else (0, 0)
        out = tuple(-(-n // s) for n, s in zip(shape[1:], values["stride"], strict=True))
        return {"in_channels": shape[0], "padding": pad, "same": not static}, (values["out_channels"], *out)

    def torch(self, node):
        if getattr(node, "same", False):
            kwargs = self.torch_kwargs(node)
            del kwargs["padding"]  # computed from the input when the model runs
            return Torch("netdsl.backend.runtime.Conv2dSame", kwargs)
        return super().torch(node)

    def params(self, n):
        kh, kw = n.kernel_size
        return n.out_channels * (n.in_channels // n.groups) * kh * kw + (n.out_channels if n.bias else 0)

    def macs(self, n):
        kh, kw = n.kernel_size
        return math.prod(n.out_shape) * (n.in_channels // n.groups) * kh * kw

    def torch_kwargs(self, n):
        return dict(in_channels=n.in_channels, out_channels=n.out_channels, kernel_size=n.kernel_size,
                    stride=n.stride, padding=n.padding, dilation=n.dilation, groups=n.groups,
                    bias=n.bias)

    default_init = staticmethod(_kaiming_default)


class Conv1d(Layer):
    kind: Literal["conv1d"] = "conv1d"
    in_channels: PosInt
    out_channels: PosInt
    kernel_size: PosInt
    stride: PosInt = 1
    padding: NonNegInt = 0
    dilation: PosInt = 1
    groups: PosInt = 1
    bias: bool = True

    _groups = model_validator(mode="after")(_groups_divide)


class Conv1dKind(Kind):
    name = "conv1d"
    projects = True
    example = "conv1d(4, 3, padding = 1)"
    example_input = (2, 6)
    node = Conv1d
    doc = ("1-D convolution over a [C, L] sequence (torch.nn.Conv1d; ECA attention convolves "
           "across channels); input channels are inferred")
    torch_class = "torch.nn.Conv1d"
    args = (
        Arg("out_channels", _int, doc="number of output channels", min=1),
        Arg("kernel_size", _int, doc="the kernel's length", min=1),
        Arg("stride", _int, 1, "the step", min=1),
        Arg("padding", _int, 0, "zero padding on both ends", min=0),
        Arg("dilation", _int, 1, "spacing of the kernel's taps", min=1),
        Arg("groups", _int, 1, "must divide input and output channels", min=1),
        Arg("bias", _bool, True, "add a learnable bias"),
    )
    parameters = ("weight", "bias")
    matrix_parameters = ("weight",)
    counted = factory = output_not_saved = True

    def check(self, values):
        _stride_within_limit(self.name, (values["stride"],))

    def infer(self, values, shape):
        shapes.need_sequence(self.name, shape)
        shapes.divides("groups", values["groups"], shape[0], values["out_channels"])
        length = shapes.window(self.name, shape[1], values["kernel_size"], values["stride"],
                               values["padding"], values["dilation"], False, "length")
        return {"in_channels": shape[0]}, (values["out_channels"], length)

    def params(self, n):
        return n.out_channels * (n.in_channels // n.groups) * n.kernel_size + (n.out_channels if n.bias else 0)

    def macs(self, n):
        return math.prod(n.out_shape) * (n.in_channels // n.groups) * n.kernel_size

    def torch_kwargs(self, n):
        return dict(in_channels=n.in_channels, out_channels=n.out_channels, kernel_size=n.kernel_size,
                    stride=n.stride, padding=n.padding, dilation=n.dilation, groups=n.groups,
                    bias=n.bias)

    default_init = staticmethod(_kaiming_default)


class StdConv2d(Layer):
    kind: Literal["std_conv2d"] = "std_conv2d"
    in_channels: PosInt
    out_channels: PosInt
    kernel_size: Pair
    stride: Pair = (1, 1)
    padding: NonNegPair = (0, 0)
    dilation: Pair = (1, 1)
    groups: PosInt = 1
    bias: bool = True
    gamma: float = 1.0
    eps: float = 1e-6
    gain_init: float = 1.0

    _groups = model_validator(mode="after")(_groups_divide)


class StdConv2dKind(Conv2dKind):
    """timm's ScaledStdConv2d (NF-ResNet, NFNet): before each use the weight is
    standardised over each output channel's fan-in, scaled by gamma / sqrt(fan-in)
    and by a learnable gain per output channel."""

    name = "std_conv2d"
    window = projects = False  # the help about padding and widths speaks of conv2d
    example = "std_conv2d(4, 3, padding = 1, gamma = 1.7139)"
    node = StdConv2d
    doc = ("2-D convolution with scaled weight standardisation and a learnable gain (timm's "
           "ScaledStdConv2d, NF-ResNet); input channels are inferred")
    torch_class = "netdsl.backend.runtime.ScaledStdConv2d"
    # conv2d's arguments (its padding without "same"), then the standardisation's.
    args = tuple(Arg("padding", _pair, 0, "int or [h, w], zero padding on both sides", min=0)
                 if a.name == "padding" else a for a in Conv2dKind.args) + (
        Arg("gamma", _float, 1.0, "the standardised weight's scale, times 1 / sqrt(fan-in): "
            "the activation's gain (1.7139 for relu)"),
        Arg("eps", _float, 1e-6, "added to each output channel's weight variance"),
        Arg("gain_init", _float, 1.0, "the learnable gain's initial value"),
    )
    parameters = ("weight", "bias", "gain")

    def check(self, values):
        super().check(values)
        _positive_eps(self.name, values)

    def params(self, n):
        return super().params(n) + n.out_channels

    def macs(self, n):
        # fvcore also counts the standardisation, a batch norm in training mode over the
        # weight with an affine term: 5 per weight element, once per forward.
        kh, kw = n.kernel_size
        return super().macs(n) + 5 * n.out_channels * (n.in_channels // n.groups) * kh * kw

    def torch_kwargs(self, n):
        return {**super().torch_kwargs(n), "gamma": n.gamma, "eps": n.eps, "gain_init": n.gain_init}

    def default_init(self, module, pname, tensor):
        if pname == "gain":
            from torch import nn
            nn.init.constant_(tensor, module.gain_init)
            return True
        return _kaiming_default(module, pname, tensor)


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


class ConvTranspose2dKind(Conv2dKind):
    name = "conv_transpose2d"
    window = projects = False  # its size grows with the stride; the help speaks of conv2d
    example = "conv_transpose2d(4, 2, stride = 2)"
    node = ConvTranspose2d
    doc = "2-D transposed convolution (torch.nn.ConvTranspose2d); input channels are inferred"
    torch_class = "torch.nn.ConvTranspose2d"
    args = (
        Arg("out_channels", _int, doc="number of output channels", min=1),
        Arg("kernel_size", _pair, doc="int or [h, w]", min=1),
        Arg("stride", _pair, 1, "int or [h, w]", min=1),
        Arg("padding", _pair, 0, "int or [h, w], removed from both sides of the output", min=0),
        Arg("output_padding", _pair, 0, "int or [h, w], added to one side of the output", min=0),
        Arg("groups", _int, 1, "must divide input and output channels", min=1),
        Arg("bias", _bool, True, "add a learnable bias"),
        Arg("dilation", _pair, 1, "int or [h, w]", min=1),
    )

    def check(self, values):
        for op, s, d in zip(values["output_padding"], values["stride"], values["dilation"], strict=True):
            if op >= s and op >= d:
                raise LayerError("E0216", f"`conv_transpose2d` output_padding {op} is not smaller "
                                 f"than its stride {s} or its dilation {d}", "output padding too large",
                                 "torch needs output_padding smaller than the stride or the dilation; "
                                 "it only picks among the sizes a strided convolution maps to one",
                                 arg="output_padding")

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        shapes.divides("groups", values["groups"], shape[0], values["out_channels"])
        out = []
        for axis, size, k, s, p, op, d in zip(("height", "width"), shape[1:], values["kernel_size"],
                                              values["stride"], values["padding"],
                                              values["output_padding"], values["dilation"],
                                              strict=True):
            o = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            if o < 1:
                raise LayerError("E0305", f"the spatial size reaches zero: `conv_transpose2d` gives "
                                 f"{axis} {o} from {size}", f"padding {p} removes more than the "
                                 f"output has", "use less padding or a larger kernel", arg="padding")
            out.append(o)
        return {"in_channels": shape[0]}, (values["out_channels"], *out)

    def params(self, n):
        kh, kw = n.kernel_size
        return n.in_channels * (n.out_channels // n.groups) * kh * kw + (n.out_channels if n.bias else 0)

    def macs(self, n):
        # fvcore counts a transposed convolution over its input's positions.
        kh, kw = n.kernel_size
        return math.prod(n.in_shape) * (n.out_channels // n.groups) * kh * kw

    def torch_kwargs(self, n):
        return dict(in_channels=n.in_channels, out_channels=n.out_channels, kernel_size=n.kernel_size,
                    stride=n.stride, padding=n.padding, output_padding=n.output_padding,
                    groups=n.groups, bias=n.bias, dilation=n.dilation)

    def onnx_problem(self, n):
        # torch takes an output padding below the stride or the dilation; ONNX's
        # ConvTranspose, as onnxruntime runs it, only below the stride.
        for i, axis in enumerate(("height", "width")):
            if n.output_padding[i] >= n.stride[i]:
                return (f"`conv_transpose2d` with `output_padding = {n.output_padding[i]}` at stride "
                        f"{n.stride[i]} ({axis}) cannot be run from ONNX",
                        "onnxruntime needs an output padding below the stride",
                        "make the output padding smaller than the stride, or grow the output with "
                        "`zero_pad2d` after the layer", "output_padding")
        return None


class Linear(Layer):
    kind: Literal["linear"] = "linear"
    in_features: PosInt
    out_features: PosInt
    bias: bool = True


class LinearKind(Kind):
    name = "linear"
    projects = True
    example = "linear(3)"
    example_input = (4,)
    node = Linear
    doc = ("fully connected layer (torch.nn.Linear) on the last dimension; input features are "
           "inferred")
    torch_class = "torch.nn.Linear"
    args = (
        Arg("out_features", _int, doc="number of output features", min=1),
        Arg("bias", _bool, True, "add a learnable bias"),
    )
    parameters = ("weight", "bias")
    matrix_parameters = ("weight",)
    counted = factory = output_not_saved = True

    def torch_order(self, positional, shape):
        # nn.Linear(in_features, out_features): read netdsl's way, the out features would
        # be the bias, which is true or false.
        if len(positional) == 2 and len(shape) == 1 and _whole(positional[0]) == shape[0] \
                and _whole(positional[1]) is not None:
            return f"{self.name}({positional[1]})"
        return None

    def infer(self, values, shape):
        # A [C, H, W] map needs `flatten` first; one a `permute` made channels-last is
        # mapped along its last dimension, as nn.Linear does.
        if len(shape) != 1 and not isinstance(shape, shapes.Permuted):
            n = math.prod(shape)
            raise LayerError("E0306", "`linear` needs a flat [features] input",
                             f"the input here is {shapes.fmt(shape)}",
                             f"add `flatten` before it (it would give [{n}] features), or `permute` "
                             "the channels last to map each position's channels", before="flatten")
        return {"in_features": shape[-1]}, shapes.like(shape, (*shape[:-1], values["out_features"]))

    def params(self, n):
        return n.out_features * n.in_features + (n.out_features if n.bias else 0)

    def macs(self, n):
        return math.prod(n.in_shape) * n.out_features

    def torch_kwargs(self, n):
        return dict(in_features=n.in_features, out_features=n.out_features, bias=n.bias)

    default_init = staticmethod(_kaiming_default)


KINDS = (Conv2dKind(), Conv1dKind(), StdConv2dKind(), ConvTranspose2dKind(), LinearKind())
