"""Resampling: ``upsample``, ``pixel_shuffle`` (``conv_transpose2d`` is with the
convolutions)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from . import shapes
from .base import Arg, ArgTypeError, Kind, Layer, LayerError, Pair, PosInt, _bool, _float, _int, _none_or, _pair, _str

PosFloat = Annotated[float, Field(gt=0.0)]


def _scale(v) -> tuple[float, float]:
    what = "a number or a list of two numbers [h, w]"
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ArgTypeError(what)
        v0, v1 = v
    else:
        v0 = v1 = v
    try:
        return (_float(v0), _float(v1))
    except ArgTypeError:
        raise ArgTypeError(what) from None


class Upsample(Layer):
    kind: Literal["upsample"] = "upsample"
    size: Pair | None = None
    scale_factor: tuple[PosFloat, PosFloat] | None = None
    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool | None = None


class UpsampleKind(Kind):
    name = "upsample"
    example = "upsample(scale_factor = 2, mode = \"bilinear\")"
    node = Upsample
    doc = "resize a [C, H, W] map by a scale factor or to a size (torch.nn.Upsample)"
    torch_class = "torch.nn.Upsample"
    args = (
        Arg("scale_factor", _none_or(_scale), None, "a number or [h, w]; or give `size`"),
        Arg("size", _none_or(_pair), None, "the output's [h, w]; or give `scale_factor`", min=1),
        Arg("mode", _str(("nearest", "bilinear")), "nearest", '"nearest" or "bilinear"'),
        Arg("align_corners", _none_or(_bool), None, 'for "bilinear": align the corner pixels'),
    )
    counted = True

    def check(self, values):
        if (values["scale_factor"] is None) == (values["size"] is None):
            raise LayerError("E0221", "`upsample` needs exactly one of `scale_factor` and `size`",
                             "both given" if values["size"] is not None else "neither given",
                             "give `scale_factor = 2` to double the size, or `size = [h, w]`")
        if values["align_corners"] is not None and values["mode"] == "nearest":
            raise LayerError("E0222", '`align_corners` only applies to `mode = "bilinear"`',
                             "nearest mode has no corners to align",
                             'drop `align_corners`, or use `mode = "bilinear"`', arg="align_corners")

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        if values["size"] is not None:
            return {}, (shape[0], *values["size"])
        # torch: floor(float(size * scale)), in double precision like Python's floats.
        sizes = [float(n * s) for n, s in zip(shape[1:], values["scale_factor"], strict=True)]
        if not all(math.isfinite(v) for v in sizes):
            raise LayerError("E0407", "a dimension of `upsample`'s output is beyond any limit",
                             f"scale factor {list(values['scale_factor'])} on {shapes.fmt(shape[1:])}",
                             "use a scale factor the size can be multiplied by, or give `size`",
                             arg="scale_factor")
        out = tuple(math.floor(v) for v in sizes)
        if min(out) < 1:
            raise LayerError("E0305", f"the spatial size reaches zero: `upsample` gives "
                             f"{shapes.fmt(out)} from {shapes.fmt(shape[1:])}",
                             f"scale factor {list(values['scale_factor'])}",
                             "use a larger scale factor, or give `size`", arg="scale_factor")
        return {}, (shape[0], *out)

    def macs(self, n):
        return math.prod(n.out_shape) * (4 if n.mode == "bilinear" else 1)

    def torch_kwargs(self, n):
        return dict(size=n.size, scale_factor=n.scale_factor, mode=n.mode, align_corners=n.align_corners)


class PixelShuffle(Layer):
    kind: Literal["pixel_shuffle"] = "pixel_shuffle"
    upscale_factor: PosInt


class PixelShuffleKind(Kind):
    name = "pixel_shuffle"
    example = "pixel_shuffle(2)"
    example_input = (4, 3, 3)
    node = PixelShuffle
    doc = "[C·r², H, W] → [C, H·r, W·r] (torch.nn.PixelShuffle)"
    torch_class = "torch.nn.PixelShuffle"
    args = (Arg("upscale_factor", _int, doc="r", min=1),)
    pass_through = True  # with r = 1, torch may return its input's storage

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        r = values["upscale_factor"]
        if shape[0] % (r * r):
            raise LayerError("E0313", f"`pixel_shuffle({r})` needs channels divisible by {r * r}",
                             f"the input has {shape[0]} channels", f"give the layer before it a "
                             f"multiple of {r * r} channels, e.g. {(shape[0] // (r * r) + 1) * r * r}",
                             arg="upscale_factor")
        return {}, (shape[0] // (r * r), shape[1] * r, shape[2] * r)

    def torch_kwargs(self, n):
        return {"upscale_factor": n.upscale_factor}


KINDS = (UpsampleKind(), PixelShuffleKind())
