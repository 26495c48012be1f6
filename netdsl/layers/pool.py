"""Pooling: ``maxpool2d``, ``avgpool2d``, ``adaptive_avgpool2d``,
``adaptive_maxpool2d``."""

from __future__ import annotations

import math
from typing import Any, Literal

from . import shapes
from .base import Arg, Kind, Layer, NonNegPair, Pair, _bool, _pair, _pair_or_none

_COMMON = (
    Arg("kernel_size", _pair, doc="window size, int or [h, w]", min=1),
    Arg("stride", _pair_or_none, None, "defaults to kernel_size", min=1),
    Arg("padding", _pair, 0, "implicit padding on both sides", min=0),
)


class _Window(Kind):
    output_not_saved = True
    window = half_window_padding = True

    def onnx_problem(self, n):
        # ONNX's ceil_mode keeps a last window that starts in the right padding; torch
        # drops it. Where that changes the size, the file would compute another shape.
        if not n.ceil_mode:
            return None
        for axis, size, out in (("height", n.in_shape[1], n.out_shape[1]), ("width", n.in_shape[2], n.out_shape[2])):
            i = 0 if axis == "height" else 1
            k, s, p = n.kernel_size[i], n.stride[i], n.padding[i]
            d = getattr(n, "dilation", (1, 1))[i]
            onnx = -(-(size + 2 * p - (d * (k - 1) + 1)) // s) + 1
            if onnx != out:
                return (f"`{self.name}` with `ceil_mode = true` gives {out} here, where ONNX would give "
                        f"{onnx} ({axis} {size}): ONNX keeps a last window that starts in the padding",
                        f"ONNX computes another {axis}", "export without ceil_mode (pad the input "
                        "instead), or change the padding or the input size so that the last window "
                        "starts inside the input", "ceil_mode")
        return None
    # The keyword arguments `apply` passes only where they differ from these defaults.
    _optional: tuple[tuple[str, Any], ...] = ()

    def function_args(self, n):
        out: list = [(None, n.kernel_size)]
        if n.stride != n.kernel_size:
            out.append(("stride", n.stride))
        for k, default in self._optional:
            if getattr(n, k) != default:
                out.append((k, getattr(n, k)))
        return out

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        stride = values["stride"] or values["kernel_size"]
        h, w = shapes.spatial(self.name, {**values, "stride": stride}, shape)
        return {"stride": stride}, (shape[0], h, w)


class MaxPool2d(Layer):
    kind: Literal["maxpool2d"] = "maxpool2d"
    kernel_size: Pair
    stride: Pair
    padding: NonNegPair = (0, 0)
    dilation: Pair = (1, 1)
    ceil_mode: bool = False


class MaxPool2dKind(_Window):
    name = "maxpool2d"
    attribute = "maxpool"
    example = "maxpool2d(2)"
    node = MaxPool2d
    doc = "2-D max pooling (torch.nn.MaxPool2d)"
    torch_class = "torch.nn.MaxPool2d"
    function = "F.max_pool2d"
    _optional = (("padding", (0, 0)), ("dilation", (1, 1)), ("ceil_mode", False))
    args = _COMMON + (
        Arg("dilation", _pair, 1, "window dilation", min=1),
        Arg("ceil_mode", _bool, False, "round the output size up"),
    )

    def torch_kwargs(self, n):
        return dict(kernel_size=n.kernel_size, stride=n.stride, padding=n.padding, dilation=n.dilation,
                    ceil_mode=n.ceil_mode)


class AvgPool2d(Layer):
    kind: Literal["avgpool2d"] = "avgpool2d"
    kernel_size: Pair
    stride: Pair
    padding: NonNegPair = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True


class AvgPool2dKind(_Window):
    name = "avgpool2d"
    attribute = "avgpool"
    example = "avgpool2d(2)"
    node = AvgPool2d
    doc = "2-D average pooling (torch.nn.AvgPool2d)"
    torch_class = "torch.nn.AvgPool2d"
    function = "F.avg_pool2d"
    _optional = (("padding", (0, 0)), ("ceil_mode", False), ("count_include_pad", True))
    args = _COMMON + (
        Arg("ceil_mode", _bool, False, "round the output size up"),
        Arg("count_include_pad", _bool, True, "count padding zeros in the average"),
    )

    def torch_kwargs(self, n):
        return dict(kernel_size=n.kernel_size, stride=n.stride, padding=n.padding, ceil_mode=n.ceil_mode,
                    count_include_pad=n.count_include_pad)


class AdaptiveAvgPool2d(Layer):
    kind: Literal["adaptive_avgpool2d"] = "adaptive_avgpool2d"
    output_size: Pair


class AdaptiveAvgPool2dKind(Kind):
    name = "adaptive_avgpool2d"
    attribute = "avgpool"
    example = "adaptive_avgpool2d(2)"
    # Declared as Kind's, since adaptive_maxpool2d's kind derives from this one.
    node: type[Layer] = AdaptiveAvgPool2d
    doc = "adaptive average pooling to a fixed size (torch.nn.AdaptiveAvgPool2d)"
    torch_class = "torch.nn.AdaptiveAvgPool2d"
    function = "F.adaptive_avg_pool2d"
    args = (Arg("output_size", _pair, doc="int or [h, w]", min=1),)
    counted = output_not_saved = True

    def function_args(self, n):
        return [(None, n.output_size)]

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        return {}, (shape[0], *values["output_size"])

    def macs(self, n):
        return math.prod(n.in_shape)

    def torch_kwargs(self, n):
        return {"output_size": n.output_size}


class AdaptiveMaxPool2d(Layer):
    kind: Literal["adaptive_maxpool2d"] = "adaptive_maxpool2d"
    output_size: Pair


class AdaptiveMaxPool2dKind(AdaptiveAvgPool2dKind):
    name = "adaptive_maxpool2d"
    attribute = "maxpool"
    example = "adaptive_maxpool2d(2)"
    node = AdaptiveMaxPool2d
    doc = "adaptive max pooling to a fixed size (torch.nn.AdaptiveMaxPool2d)"
    torch_class = "torch.nn.AdaptiveMaxPool2d"
    function = ""
    counted = False

    def macs(self, n):
        return 0


KINDS = (MaxPool2dKind(), AvgPool2dKind(), AdaptiveAvgPool2dKind(), AdaptiveMaxPool2dKind())
