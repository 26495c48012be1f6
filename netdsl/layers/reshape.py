"""Layers that move or reshape a tensor without arithmetic: ``flatten``,
``identity``, ``permute``, ``channel_shuffle``, ``zero_pad2d``."""

from __future__ import annotations

import math
from typing import Literal

from . import shapes
from .base import Arg, ArgTypeError, Kind, Layer, LayerError, NonNegInt, PosInt, _int, _ints


class Flatten(Layer):
    kind: Literal["flatten"] = "flatten"


class FlattenKind(Kind):
    name = "flatten"
    node = Flatten
    doc = "flatten [C, H, W] to [C*H*W] (torch.nn.Flatten)"
    torch_class = "torch.nn.Flatten"
    function = "torch.flatten"
    pass_through = True

    def infer(self, values, shape):
        return {}, (math.prod(shape),)

    def function_args(self, n):
        return [(None, 1)]  # the batch dimension stays


class Identity(Layer):
    kind: Literal["identity"] = "identity"


class IdentityKind(Kind):
    name = "identity"
    node = Identity
    doc = "passes its input through (torch.nn.Identity)"
    torch_class = "torch.nn.Identity"
    pass_through = True


class Permute(Layer):
    kind: Literal["permute"] = "permute"
    dims: tuple[NonNegInt, ...]


class PermuteKind(Kind):
    name = "permute"
    example = "permute([1, 2, 0])"
    node = Permute
    doc = ("reorder the dimensions of the sample (torchvision's Permute, without the batch): "
           "`permute([1, 2, 0])` makes [C, H, W] channels-last")
    torch_class = "netdsl.backend.runtime.Permute"
    args = (Arg("dims", _ints, doc="a permutation of 0 .. rank - 1, without the batch dimension"),)
    pass_through = True  # a view of its input

    def infer(self, values, shape):
        dims = values["dims"]
        if sorted(dims) != list(range(len(shape))):
            raise LayerError("E0220", f"`permute({list(dims)})` is not a permutation of the input's "
                             f"{len(shape)} dimensions", f"the input here is {shapes.fmt(shape)}",
                             "list each dimension 0 .. " + str(len(shape) - 1) + " once, without the "
                             f"batch dimension: `permute({list(range(1, len(shape))) + [0]})` puts "
                             "the channels last", arg="dims")
        before = getattr(shape, "order", tuple(range(len(shape))))
        order = tuple(before[d] for d in dims)
        out = tuple(shape[d] for d in dims)
        if order == tuple(range(len(shape))):
            return {}, out
        return {}, shapes.Permuted(out, order)

    def torch_kwargs(self, n):
        return {"dims": (0, *(d + 1 for d in n.dims))}


class ChannelShuffle(Layer):
    kind: Literal["channel_shuffle"] = "channel_shuffle"
    groups: PosInt


class ChannelShuffleKind(Kind):
    name = "channel_shuffle"
    example = "channel_shuffle(2)"
    node = ChannelShuffle
    doc = "interleave the channels of `groups` groups (torch.nn.ChannelShuffle, ShuffleNet)"
    torch_class = "torch.nn.ChannelShuffle"
    args = (Arg("groups", _int, doc="must divide the channels", min=1),)
    pass_through = True  # with one group, torch may return its input's storage

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        shapes.divides("groups", values["groups"], shape[0])
        return {}, shape

    def torch_kwargs(self, n):
        return {"groups": n.groups}


def _pad4(v) -> tuple[int, int, int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 4:
            raise ArgTypeError("an integer or a list [left, right, top, bottom]")
        try:
            return (_int(v[0]), _int(v[1]), _int(v[2]), _int(v[3]))
        except ArgTypeError:
            raise ArgTypeError("an integer or a list [left, right, top, bottom]") from None
    x = _int(v)
    return (x, x, x, x)


class ZeroPad2d(Layer):
    kind: Literal["zero_pad2d"] = "zero_pad2d"
    padding: tuple[NonNegInt, NonNegInt, NonNegInt, NonNegInt]


class ZeroPad2dKind(Kind):
    name = "zero_pad2d"
    example = "zero_pad2d([1, 0, 2, 0])"
    node = ZeroPad2d
    doc = "pad with zeros (torch.nn.ZeroPad2d); int or [left, right, top, bottom]"
    torch_class = "torch.nn.ZeroPad2d"
    args = (Arg("padding", _pad4, doc="int or [left, right, top, bottom]", min=0),)
    pass_through = True  # with no padding, torch may return its input's storage

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        left, right, top, bottom = values["padding"]
        return {}, (shape[0], shape[1] + top + bottom, shape[2] + left + right)

    def torch_kwargs(self, n):
        return {"padding": n.padding}


KINDS = (FlattenKind(), IdentityKind(), PermuteKind(), ChannelShuffleKind(), ZeroPad2dKind())
