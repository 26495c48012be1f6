"""Normalisations: ``batchnorm2d``, ``layer_norm``, ``layer_norm2d``,
``group_norm``, ``instance_norm2d``, ``local_response_norm``."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from . import shapes
from .base import Arg, Kind, Layer, LayerError, PosInt, Prob, _bool, _float, _int

PosFloat = Annotated[float, Field(gt=0.0)]


# The smallest normal float32: an eps below it is 0 or a subnormal once the variance
# is float32, and the division it guards is no longer finite.
FLOAT32_TINY = 1.1754943508222875e-38


def _positive_eps(kind: str, values) -> None:
    if values["eps"] <= 0:
        raise LayerError("E0204", f"`{kind}` argument `eps` must be positive", f"found {values['eps']}",
                         "`eps` keeps the division by the variance finite; torch's default is 1e-5",
                         arg="eps")
    if values["eps"] < FLOAT32_TINY:
        raise LayerError("E0204", f"`{kind}` argument `eps` is below float32's smallest normal number",
                         f"found {values['eps']:g}, which float32 holds as 0 or a subnormal",
                         "`eps` keeps the division by the variance finite; torch's default is 1e-5",
                         arg="eps")


def _ones_zeros(module, pname, tensor) -> bool:
    from torch import nn
    (nn.init.ones_ if pname == "weight" else nn.init.zeros_)(tensor)
    return True


class BatchNorm2d(Layer):
    kind: Literal["batchnorm2d"] = "batchnorm2d"
    num_features: PosInt
    eps: PosFloat = 1e-5
    momentum: Prob = 0.1
    affine: bool = True
    track_running_stats: bool = True


class BatchNorm2dKind(Kind):
    name = "batchnorm2d"
    # Declared as Kind's, since batchnorm1d's kind derives from this one.
    node: type[Layer] = BatchNorm2d
    doc = "batch normalisation over channels (torch.nn.BatchNorm2d)"
    torch_class = "torch.nn.BatchNorm2d"
    args = (
        Arg("eps", _float, 1e-5, "added to the variance"),
        Arg("momentum", _float, 0.1, "running-statistics momentum", unit=True),
        Arg("affine", _bool, True, "learnable scale and shift"),
        Arg("track_running_stats", _bool, True, "keep running mean and variance"),
    )
    parameters = ("weight", "bias")
    counted = factory = output_not_saved = True

    def check(self, values):
        _positive_eps(self.name, values)

    def torch_order(self, positional, shape):
        # nn.BatchNorm2d(num_features): read netdsl's way, the channel count is the eps.
        if positional and isinstance(positional[0], int) and not isinstance(positional[0], bool) \
                and positional[0] > 1 and shape and positional[0] == shape[0]:
            return self.name
        return None

    def infer(self, values, shape):
        if len(shape) == 1:
            raise LayerError("E0306", "`batchnorm2d` needs a [C, H, W] input",
                             f"the input here is {shapes.fmt(shape)}",
                             "features after `flatten` or `linear` take `batchnorm1d`")
        shapes.need_image(self.name, shape)
        if not values.get("track_running_stats", True) and shape[1] * shape[2] == 1:
            # Without running statistics it normalises over the batch in eval mode too, and
            # torch needs more than one value per channel: one sample of [C, 1, 1] has one.
            raise LayerError("E0306", "`batchnorm2d(track_running_stats = false)` needs more "
                             "than one value per channel", f"the input here is {shapes.fmt(shape)}",
                             "keep running statistics (the default), or normalise before the "
                             "spatial size reaches 1 × 1", arg="track_running_stats")
        return {"num_features": shape[0]}, shape

    def params(self, n):
        return 2 * n.num_features if n.affine else 0

    def macs(self, n):
        size = math.prod(n.in_shape)
        if not n.track_running_stats:  # batch statistics even in eval: fvcore's training rule
            return size * (5 if n.affine else 4)
        return size * (2 if n.affine else 1)

    def torch_kwargs(self, n):
        return dict(num_features=n.num_features, eps=n.eps, momentum=n.momentum, affine=n.affine,
                    track_running_stats=n.track_running_stats)

    default_init = staticmethod(_ones_zeros)


class BatchNorm1d(Layer):
    kind: Literal["batchnorm1d"] = "batchnorm1d"
    num_features: PosInt
    eps: PosFloat = 1e-5
    momentum: Prob = 0.1
    affine: bool = True
    track_running_stats: bool = True


class BatchNorm1dKind(BatchNorm2dKind):
    """Batch normalisation of features ``[F]`` (after ``flatten`` or ``linear``) or of
    channels ``[C, L]``: the arguments, parameters, counts and init of ``batchnorm2d``."""

    name = "batchnorm1d"
    node = BatchNorm1d
    example = "batchnorm1d"
    example_input = (4,)
    doc = "batch normalisation of features [F] or channels [C, L] (torch.nn.BatchNorm1d)"
    torch_class = "torch.nn.BatchNorm1d"

    def infer(self, values, shape):
        if len(shape) not in (1, 2):
            raise LayerError("E0306", "`batchnorm1d` needs an [F] or [C, L] input",
                             f"the input here is {shapes.fmt(shape)}",
                             "for [C, H, W] feature maps, use `batchnorm2d`")
        if not values.get("track_running_stats", True) and math.prod(shape[1:]) == 1:
            raise LayerError("E0306", "`batchnorm1d(track_running_stats = false)` needs more "
                             "than one value per feature", f"the input here is {shapes.fmt(shape)}",
                             "keep running statistics (the default): without them it normalises "
                             "over the batch in eval mode too, one value per feature in a sample",
                             arg="track_running_stats")
        return {"num_features": shape[0]}, shape


class LayerNorm(Layer):
    kind: Literal["layer_norm"] = "layer_norm"
    normalized_shape: tuple[PosInt, ...]
    eps: PosFloat = 1e-5
    elementwise_affine: bool = True
    bias: bool = True


class LayerNormKind(Kind):
    name = "layer_norm"
    example = "layer_norm(dims = 2)"
    node = LayerNorm
    doc = "layer normalisation over the last `dims` dimensions (torch.nn.LayerNorm)"
    torch_class = "torch.nn.LayerNorm"
    args = (
        Arg("dims", _int, 1, "how many trailing dimensions to normalise over", min=1),
        Arg("eps", _float, 1e-5, "added to the variance"),
        Arg("elementwise_affine", _bool, True, "learnable scale and shift"),
        Arg("bias", _bool, True, "learnable shift (with elementwise_affine)"),
    )
    parameters = ("weight", "bias")
    counted = factory = True

    def check(self, values):
        _positive_eps(self.name, values)

    def infer(self, values, shape):
        dims = values["dims"]
        if dims > len(shape):
            raise LayerError("E0217", f"`layer_norm` over {dims} dimensions of a {len(shape)}-dimensional "
                             "input", f"the input here is {shapes.fmt(shape)}",
                             f"use `dims` between 1 and {len(shape)}", arg="dims")
        return {"normalized_shape": tuple(shape[len(shape) - dims:])}, shape

    def params(self, n):
        k = math.prod(n.normalized_shape)
        return (2 * k if n.bias else k) if n.elementwise_affine else 0

    def macs(self, n):
        return math.prod(n.in_shape) * (5 if n.elementwise_affine else 4)

    def torch_kwargs(self, n):
        return dict(normalized_shape=n.normalized_shape, eps=n.eps,
                    elementwise_affine=n.elementwise_affine, bias=n.bias)

    default_init = staticmethod(_ones_zeros)


class LayerNorm2d(Layer):
    kind: Literal["layer_norm2d"] = "layer_norm2d"
    num_channels: PosInt
    eps: PosFloat = 1e-5
    elementwise_affine: bool = True


class LayerNorm2dKind(Kind):
    name = "layer_norm2d"
    node = LayerNorm2d
    doc = ("layer normalisation over the channels of a [C, H, W] map at each position, "
           "as torchvision's ConvNeXt (LayerNorm2d)")
    torch_class = "netdsl.backend.runtime.LayerNorm2d"
    args = (
        Arg("eps", _float, 1e-5, "added to the variance"),
        Arg("elementwise_affine", _bool, True, "learnable scale and shift"),
    )
    parameters = ("weight", "bias")
    counted = factory = True

    def check(self, values):
        _positive_eps(self.name, values)

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        return {"num_channels": shape[0]}, shape

    def params(self, n):
        return 2 * n.num_channels if n.elementwise_affine else 0

    def macs(self, n):
        return math.prod(n.in_shape) * (5 if n.elementwise_affine else 4)

    def torch_kwargs(self, n):
        return dict(normalized_shape=n.num_channels, eps=n.eps, elementwise_affine=n.elementwise_affine)

    default_init = staticmethod(_ones_zeros)


class GroupNorm(Layer):
    kind: Literal["group_norm"] = "group_norm"
    num_groups: PosInt
    num_channels: PosInt
    eps: PosFloat = 1e-5
    affine: bool = True


class GroupNormKind(Kind):
    name = "group_norm"
    example = "group_norm(2)"
    node = GroupNorm
    doc = "group normalisation (torch.nn.GroupNorm); channels are inferred"
    torch_class = "torch.nn.GroupNorm"
    args = (
        Arg("num_groups", _int, doc="groups the channels are split into; must divide them", min=1),
        Arg("eps", _float, 1e-5, "added to the variance"),
        Arg("affine", _bool, True, "learnable per-channel scale and shift"),
    )
    parameters = ("weight", "bias")
    counted = factory = True

    def check(self, values):
        _positive_eps(self.name, values)

    def infer(self, values, shape):
        if len(shape) > 4:
            shapes.need_image(self.name, shape)
        shapes.divides("num_groups", values["num_groups"], shape[0], arg="num_groups")
        if shape[0] // values["num_groups"] * math.prod(shape[1:]) == 1:
            # torch normalises each group of each sample and refuses one value per group.
            raise LayerError("E0306", "`group_norm` needs more than one value per group",
                             f"{values['num_groups']} groups of the input {shapes.fmt(shape)}",
                             "use fewer groups, or normalise where each group holds more than one "
                             "value", arg="num_groups")
        return {"num_channels": shape[0]}, shape

    def params(self, n):
        return 2 * n.num_channels if n.affine else 0

    def macs(self, n):
        return math.prod(n.in_shape) * (5 if n.affine else 4)

    def torch_kwargs(self, n):
        return dict(num_groups=n.num_groups, num_channels=n.num_channels, eps=n.eps, affine=n.affine)

    default_init = staticmethod(_ones_zeros)


class InstanceNorm2d(Layer):
    kind: Literal["instance_norm2d"] = "instance_norm2d"
    num_features: PosInt
    eps: PosFloat = 1e-5
    momentum: Prob = 0.1
    affine: bool = False
    track_running_stats: bool = False


class InstanceNorm2dKind(Kind):
    name = "instance_norm2d"
    example = "instance_norm2d(affine = true, track_running_stats = true)"
    node = InstanceNorm2d
    doc = "instance normalisation (torch.nn.InstanceNorm2d)"
    torch_class = "torch.nn.InstanceNorm2d"
    args = (
        Arg("eps", _float, 1e-5, "added to the variance"),
        Arg("momentum", _float, 0.1, "running-statistics momentum", unit=True),
        Arg("affine", _bool, False, "learnable per-channel scale and shift"),
        Arg("track_running_stats", _bool, False, "keep running mean and variance for eval"),
    )
    parameters = ("weight", "bias")
    counted = factory = True

    def check(self, values):
        _positive_eps(self.name, values)

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        if shape[1] * shape[2] == 1:
            raise LayerError("E0306", "`instance_norm2d` needs more than one position per channel",
                             f"the input here is {shapes.fmt(shape)}",
                             "it normalises each channel of each sample over H × W: normalise "
                             "before the spatial size reaches 1 × 1")
        return {"num_features": shape[0]}, shape

    def params(self, n):
        return 2 * n.num_features if n.affine else 0

    def macs(self, n):
        return math.prod(n.in_shape) * (5 if n.affine else 4)

    def torch_kwargs(self, n):
        return dict(num_features=n.num_features, eps=n.eps, momentum=n.momentum, affine=n.affine,
                    track_running_stats=n.track_running_stats)

    default_init = staticmethod(_ones_zeros)


class LocalResponseNorm(Layer):
    kind: Literal["local_response_norm"] = "local_response_norm"
    size: PosInt
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0


class LocalResponseNormKind(Kind):
    name = "local_response_norm"
    example = "local_response_norm(2)"
    node = LocalResponseNorm
    doc = "local response normalisation across channels (torch.nn.LocalResponseNorm)"
    torch_class = "torch.nn.LocalResponseNorm"
    args = (
        Arg("size", _int, doc="number of neighbouring channels", min=1),
        Arg("alpha", _float, 1e-4, "multiplicative factor"),
        Arg("beta", _float, 0.75, "exponent"),
        Arg("k", _float, 1.0, "additive factor"),
    )

    def check(self, values):
        # It divides by (k + alpha * mean(x²)) ** beta: a base of zero or below gives
        # infinities or NaN (a zero input, or a negative base to a fractional power).
        for key, ok, bound_text in (("k", values["k"] > 0, "positive"),
                                    ("alpha", values["alpha"] >= 0, "at least 0")):
            if not ok:
                raise LayerError("E0204", f"`local_response_norm` argument `{key}` must be {bound_text}",
                                 f"found {values[key]}", "it divides by (k + alpha · mean(x²)) ** beta, "
                                 "which must stay positive; AlexNet uses k = 2, alpha = 1e-4", arg=key)
        # k ** beta is the divisor of a zero input: past float32's range (e**±88) it is 0 or
        # infinite, and the output or its gradient is not finite.
        if abs(values["beta"] * math.log(values["k"])) > 80:
            raise LayerError("E0204", "`local_response_norm`'s k ** beta is beyond float32",
                             f"beta = {values['beta']:g} with k = {values['k']:g}",
                             "it divides by (k + alpha · mean(x²)) ** beta, which float32 holds only "
                             "while |beta · ln k| ≤ 80; AlexNet uses beta = 0.75, k = 2", arg="beta")

    def infer(self, values, shape):
        shapes.need_image(self.name, shape)
        return {}, shape

    def largest_tensor(self, n):
        # torch pads the squared input by size - 1 channels, then average-pools across channels.
        c, *rest = n.in_shape
        return max(math.prod(n.out_shape), (c + n.size - 1) * math.prod(rest))

    def torch_kwargs(self, n):
        return dict(size=n.size, alpha=n.alpha, beta=n.beta, k=n.k)


KINDS = (BatchNorm2dKind(), BatchNorm1dKind(), LayerNormKind(), LayerNorm2dKind(), GroupNormKind(),
         InstanceNorm2dKind(), LocalResponseNormKind())
