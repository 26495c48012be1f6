"""Layers that move or reshape a tensor without arithmetic: ``flatten``,
``unflatten``, ``narrow``, ``identity``, ``permute``, ``channel_shuffle``,
``zero_pad2d``."""

from __future__ import annotations

import math
from typing import Literal

from . import shapes
from .base import Arg, ArgTypeError, Kind, Layer, LayerError, NonNegInt, PosInt, _int, _ints


class Flatten(Layer):
    kind: Literal["flatten"] = "flatten"
    start_dim: NonNegInt = 0
    end_dim: NonNegInt | None = None  # None: the last dimension


class FlattenKind(Kind):
    name = "flatten"
    node = Flatten
    doc = ("flatten dimensions start_dim .. end_dim of the sample into one (torch.nn.Flatten, without "
           "the batch): by default [C, H, W] to [C*H*W]")
    torch_class = "torch.nn.Flatten"
    function = "torch.flatten"
    args = (Arg("start_dim", _int, 0, "the first dimension flattened, without the batch: 0 is the channels"),
            Arg("end_dim", _int, -1, "the last dimension flattened; negative counts from the end"))
    pass_through = True

    def infer(self, values, shape):
        start = shapes.dim(self.name, values["start_dim"], shape, "start_dim")
        end = shapes.dim(self.name, values["end_dim"], shape, "end_dim")
        if start > end:
            raise LayerError("E0226", f"`flatten` from dimension {start} to dimension {end}: the start "
                             "comes after the end", f"start_dim {start} is after end_dim {end}",
                             "give the first dimension to flatten as `start_dim` and the last as "
                             "`end_dim`", arg="start_dim")
        out = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        return {"start_dim": start, "end_dim": None if end == len(shape) - 1 else end}, out

    def torch_kwargs(self, n):
        return {"start_dim": n.start_dim + 1, "end_dim": -1 if n.end_dim is None else n.end_dim + 1}

    def function_args(self, n):
        # The batch dimension stays: torch.flatten(x, 1) in torchvision's forwards.
        args: list[tuple[str | None, object]] = [(None, n.start_dim + 1)]
        if n.end_dim is not None:
            args.append((None, n.end_dim + 1))
        return args


def _sizes(v) -> tuple[int, ...]:
    try:
        return _ints(v)
    except ArgTypeError:
        raise ArgTypeError("a list of sizes (one of them may be -1)") from None


class Unflatten(Layer):
    kind: Literal["unflatten"] = "unflatten"
    dim: NonNegInt
    # As written: a -1 stays -1, so that the model runs at any size the dimension takes.
    sizes: tuple[int, ...]


class UnflattenKind(Kind):
    name = "unflatten"
    example = "unflatten(0, [2, -1])"
    node = Unflatten
    doc = ("split one dimension of the sample into several (torch.nn.Unflatten, without the batch): "
           "`unflatten(0, [2, -1])` makes [C, H, W] [2, C/2, H, W]")
    torch_class = "torch.nn.Unflatten"
    function = "torch.unflatten"
    args = (Arg("dim", _int, doc="the dimension split, without the batch: 0 is the channels"),
            Arg("sizes", _sizes, doc="the sizes it splits into, whose product is its size; one may be -1"))
    pass_through = True  # a view of its input

    def infer(self, values, shape):
        d = shapes.dim(self.name, values["dim"], shape)
        sizes = values["sizes"]
        size = shape[d]
        wrong = [s for s in sizes if s < 1 and s != -1]
        known = math.prod(s for s in sizes if s != -1)
        free = sizes.count(-1)
        if wrong or free > 1 or (free == 0 and known != size) or (free == 1 and size % known):
            why = (f"size {wrong[0]} is neither positive nor -1" if wrong else
                   "more than one size is -1" if free > 1 else
                   f"{' * '.join(map(str, sizes))} = {known}, not {size}" if free == 0 else
                   f"{known} does not divide {size}")
            raise LayerError("E0227", f"`unflatten` cannot split dimension {d} of size {size} into "
                             f"{list(sizes)}", why,
                             "give sizes whose product is the dimension's size, or one -1 for the "
                             "size that makes it so", arg="sizes")
        out = tuple(size // known if s == -1 else s for s in sizes)
        return {"dim": d}, shape[:d] + out + shape[d + 1:]

    def torch_kwargs(self, n):
        return {"dim": n.dim + 1, "unflattened_size": n.sizes}

    def function_args(self, n):
        # A list: the forward writes a tuple of equal ints as one int, torch's habit for pairs.
        return [(None, n.dim + 1), (None, list(n.sizes))]


class Narrow(Layer):
    kind: Literal["narrow"] = "narrow"
    dim: NonNegInt
    start: NonNegInt
    length: PosInt


class NarrowKind(Kind):
    name = "narrow"
    example = "narrow(0, 0, 1)"
    node = Narrow
    doc = ("keep `length` entries of one dimension from `start` (torch.narrow, without the batch): "
           "`narrow(0, 0, c)` is `x[:, :c]`")
    torch_class = "netdsl.backend.runtime.Narrow"
    function = "torch.narrow"
    args = (Arg("dim", _int, doc="the dimension, without the batch: 0 is the channels"),
            Arg("start", _int, doc="the first entry kept", min=0),
            Arg("length", _int, doc="how many entries are kept", min=1))
    pass_through = True  # a view of its input

    def infer(self, values, shape):
        d = shapes.dim(self.name, values["dim"], shape)
        start, length = values["start"], values["length"]
        if start + length > shape[d]:
            raise LayerError("E0228", f"`narrow` keeps entries {start} to {start + length - 1} of "
                             f"dimension {d}, which has {shape[d]}", f"the input here is {shapes.fmt(shape)}",
                             f"keep at most {shape[d] - start} entries from {start}"
                             if start < shape[d] else f"start before {shape[d]}", arg="length")
        return {"dim": d}, shape[:d] + (length,) + shape[d + 1:]

    def torch_kwargs(self, n):
        return {"dim": n.dim + 1, "start": n.start, "length": n.length}

    def function_args(self, n):
        return [(None, n.dim + 1), (None, n.start), (None, n.length)]


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


KINDS = (FlattenKind(), IdentityKind(), PermuteKind(), ChannelShuffleKind(), ZeroPad2dKind(),
         UnflattenKind(), NarrowKind())
