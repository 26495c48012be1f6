"""``scale``: a learnable tensor, one value per channel, that multiplies its input
(ConvNeXt's layer scale). It is a bare parameter of the enclosing module, named by
the statement's label, as torchvision's ``CNBlock.layer_scale``."""

from __future__ import annotations

import math
from typing import Literal

from .base import Arg, Kind, Layer, PosInt, Torch, _float


class Scale(Layer):
    kind: Literal["scale"] = "scale"
    shape: tuple[PosInt, ...]
    value: float = 1.0


class ScaleKind(Kind):
    name = "scale"
    example = "scale(init = 0.5)"
    node = Scale
    doc = ("multiply by a learnable per-channel tensor ([C, 1, 1] on a map), a parameter of the "
           "enclosing module named by the label")
    torch_class = "torch.nn.Parameter"
    args = (Arg("init", _float, 1.0, "the initial value of every element"),)
    bare_parameter = True
    output_not_saved = True  # its backward keeps the input and the parameter

    def infer(self, values, shape):
        return {"shape": (shape[0],) + (1,) * (len(shape) - 1), "value": values["init"]}, shape

    def params(self, n):
        return math.prod(n.shape)

    def torch(self, n):
        return Torch(self.torch_class, {"shape": n.shape, "value": n.value})

    def build(self, node, device):
        import torch
        return torch.nn.Parameter(torch.empty(node.shape, device=device))

    def initialise(self, node, tensor) -> None:
        """Fill the parameter with its initial value (under ``torch.no_grad``)."""
        tensor.fill_(node.value)


KINDS = (ScaleKind(),)
