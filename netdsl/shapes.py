"""Shape rules: the output shape of each built-in layer, and the input channels
or features it infers, from its arguments and its input shape.

Shapes have no batch dimension: ``[C, H, W]`` or ``[F]``. A rule that cannot
apply raises :class:`ShapeError`, which the checker turns into a diagnostic at
the layer's span.
"""

from __future__ import annotations

import math
from typing import Any

Shape = tuple[int, ...]


class ShapeError(Exception):
    def __init__(self, code: str, message: str, label: str, help: str | None = None,
                 arg: str | None = None):
        super().__init__(message)
        self.code, self.message, self.label, self.help, self.arg = code, message, label, help, arg


def fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _need_image(kind: str, shape: Shape) -> None:
    if len(shape) != 3:
        help = None
        if len(shape) == 1:
            help = f"`{kind}` works on [C, H, W] feature maps; it cannot follow `flatten` or `linear`"
        raise ShapeError("E0306", f"`{kind}` needs a [C, H, W] input", f"the input here is {fmt(shape)}",
                         help)


def _window(kind: str, size: int, k: int, s: int, p: int, d: int, ceil: bool, axis: str) -> int:
    """Output size along one axis, as torch computes it (``pooling_output_shape``
    for pools; convolution is the same without ``ceil_mode``)."""
    eff = d * (k - 1) + 1
    out = (size + 2 * p - eff + ((s - 1) if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1  # torch: the last window must start inside the input or its left padding
    pool = kind != "conv2d"
    if (pool and out < 1) or (not pool and size + 2 * p < eff):
        code = "E0305" if pool else "E0304"
        pad = f" plus padding {p}" if p else ""
        what = "pooling window" if pool else "kernel"
        msg = (f"the spatial size reaches zero: `{kind}` window {eff} is larger than its input {size}{pad}"
               if pool else f"kernel larger than its input: {eff} > {size}{pad} ({axis})")
        raise ShapeError(code, msg, f"{what} {eff} on an input of {axis} {size}{pad}",
                         "make the input larger (see `input`), or use a smaller kernel, "
                         "more padding or fewer downsampling layers before this one",
                         arg="kernel_size")
    return out


def _spatial(kind: str, a: dict, shape: Shape) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = a["kernel_size"], a["stride"], a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    ceil = a.get("ceil_mode", False)
    if kind != "conv2d":
        for p, k in ((ph, kh), (pw, kw)):
            # torch compares the padding with the window as written, not the dilated one.
            if p > k // 2:
                raise ShapeError("E0204", f"`{kind}` padding {p} is more than half its window {k}",
                                 "padding too large",
                                 f"pooling padding must be at most half the kernel size ({k // 2} "
                                 f"for a window of {k}, whatever the dilation)", arg="padding")
    return (_window(kind, shape[1], kh, sh, ph, dh, ceil, "height"),
            _window(kind, shape[2], kw, sw, pw, dw, ceil, "width"))


def infer(kind: str, args: dict[str, Any], shape: Shape) -> tuple[dict[str, Any], Shape]:
    """Inferred fields and the output shape of layer ``kind`` on ``shape``.

    >>> infer("conv2d", {"out_channels": 64, "kernel_size": (7, 7), "stride": (2, 2),
    ...                  "padding": (3, 3), "dilation": (1, 1), "groups": 1}, (3, 224, 224))
    ({'in_channels': 3}, (64, 112, 112))
    """
    if kind == "conv2d":
        _need_image(kind, shape)
        c, g = shape[0], args["groups"]
        if c % g or args["out_channels"] % g:
            bad = c if c % g else args["out_channels"]
            which = "input" if c % g else "output"
            raise ShapeError("E0307", f"groups={g} does not divide the {which} channels ({bad})",
                             f"{bad} channels in {g} groups", 
                             f"use a number of groups that divides both {c} and {args['out_channels']}",
                             arg="groups")
        h, w = _spatial(kind, args, shape)
        return {"in_channels": c}, (args["out_channels"], h, w)
    if kind in ("maxpool2d", "avgpool2d"):
        _need_image(kind, shape)
        h, w = _spatial(kind, args, shape)
        return {}, (shape[0], h, w)
    if kind == "linear":
        if len(shape) != 1:
            n = math.prod(shape)
            raise ShapeError("E0306", "`linear` needs a flat [features] input",
                             f"the input here is {fmt(shape)}",
                             f"add `flatten` before it (it would give [{n}] features)")
        return {"in_features": shape[0]}, (args["out_features"],)
    if kind == "batchnorm2d":
        _need_image(kind, shape)
        if not args.get("track_running_stats", True) and shape[1] * shape[2] == 1:
            # Without running statistics it normalises over the batch in eval mode too, and
            # torch needs more than one value per channel: one sample of [C, 1, 1] has one.
            raise ShapeError("E0306", "`batchnorm2d(track_running_stats = false)` needs more "
                             "than one value per channel", f"the input here is {fmt(shape)}",
                             "keep running statistics (the default), or normalise before the "
                             "spatial size reaches 1 × 1", arg="track_running_stats")
        return {"num_features": shape[0]}, shape
    if kind in ("adaptive_avgpool2d", "local_response_norm"):
        _need_image(kind, shape)
        if kind == "adaptive_avgpool2d":
            return {}, (shape[0],) + tuple(args["output_size"])
        return {}, shape
    if kind == "flatten":
        return {}, (math.prod(shape),)
    if kind in _RESAMPLING:
        _need_image(kind, shape)
        return _RESAMPLING[kind](args, shape)
    return {}, shape


def _conv_transpose(args: dict, shape: Shape):
    c, g = shape[0], args["groups"]
    if c % g or args["out_channels"] % g:
        bad = c if c % g else args["out_channels"]
        raise ShapeError("E0307", f"groups={g} does not divide the {'input' if c % g else 'output'} "
                         f"channels ({bad})", f"{bad} channels in {g} groups",
                         f"use a number of groups that divides both {c} and {args['out_channels']}",
                         arg="groups")
    out = []
    for size, k, s, p, op, d, axis in zip(shape[1:], args["kernel_size"], args["stride"], args["padding"],
                                          args["output_padding"], args["dilation"], ("height", "width")):
        if op < 0 or op >= max(s, d):
            raise ShapeError("E0204", f"`conv_transpose2d` output_padding {op} must be below its stride "
                             f"or dilation", "output padding too large",
                             f"output_padding only picks among the {s} sizes a stride of {s} can come "
                             "from: use 0, or at most stride - 1", arg="output_padding")
        o = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if o < 1:
            raise ShapeError("E0304", f"`conv_transpose2d` output {axis} would be {o}",
                             f"padding {p} removes more than the output has", "use less padding",
                             arg="padding")
        out.append(o)
    return {"in_channels": c}, (args["out_channels"], *out)


def _upsample(args: dict, shape: Shape):
    size, scale = args["size"], args["scale_factor"]
    if (size is None) == (scale is None):
        raise ShapeError("E0203", "`upsample` needs exactly one of `size` and `scale_factor`",
                         "both given" if size is not None else "neither given",
                         "for example `upsample(scale_factor = 2)` or `upsample(size = [28, 28])`")
    if args["align_corners"] is not None and args["mode"] == "nearest":
        raise ShapeError("E0204", "`align_corners` only applies to mode \"bilinear\"",
                         "with mode \"nearest\"", "drop `align_corners`, or use mode = \"bilinear\"",
                         arg="align_corners")
    if size is not None:
        return {}, (shape[0], *size)
    if scale <= 0:
        raise ShapeError("E0204", "`upsample` scale_factor must be positive", f"found {scale}",
                         "2 doubles the height and width", arg="scale_factor")
    out = tuple(math.floor(d * scale) for d in shape[1:])
    if min(out) < 1:
        raise ShapeError("E0305", "the spatial size reaches zero", f"{fmt(shape)} scaled by {scale}",
                         "use a larger scale_factor", arg="scale_factor")
    return {}, (shape[0], *out)


def _channel_shuffle(args: dict, shape: Shape):
    g = args["groups"]
    if shape[0] % g:
        raise ShapeError("E0307", f"groups={g} does not divide the input channels ({shape[0]})",
                         f"{shape[0]} channels in {g} groups",
                         f"use a number of groups that divides {shape[0]}", arg="groups")
    return {}, shape


_RESAMPLING = {"conv_transpose2d": _conv_transpose, "upsample": _upsample,
               "channel_shuffle": _channel_shuffle}
