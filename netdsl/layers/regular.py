"""Regularisers, active in training only: ``dropout``, ``stochastic_depth``."""

from __future__ import annotations

from typing import Literal

from .base import Arg, Kind, Layer, Prob, _bool, _float, _str


class Dropout(Layer):
    kind: Literal["dropout"] = "dropout"
    p: Prob = 0.5
    inplace: bool = False


class DropoutKind(Kind):
    name = "dropout"
    node = Dropout
    doc = "dropout (torch.nn.Dropout), active in training only"
    torch_class = "torch.nn.Dropout"
    function = "F.dropout"
    training_arg = True
    args = (
        Arg("p", _float, 0.5, "probability of zeroing an element", unit=True),
        Arg("inplace", _bool, False, "overwrite the input tensor"),
    )
    inplace_arg = True
    pass_through = True  # in training, a product nothing keeps

    def torch_kwargs(self, n):
        return {"p": n.p, "inplace": n.inplace}

    def function_args(self, n):
        args: list[tuple[str | None, object]] = []
        if n.p != 0.5:
            args.append(("p", n.p))
        if n.inplace:
            args.append(("inplace", True))
        return args


class StochasticDepth(Layer):
    kind: Literal["stochastic_depth"] = "stochastic_depth"
    p: Prob
    mode: Literal["row", "batch"] = "row"


class StochasticDepthKind(Kind):
    name = "stochastic_depth"
    example = "stochastic_depth(0.2)"
    node = StochasticDepth
    doc = "stochastic depth (torchvision.ops.StochasticDepth), active in training only"
    torch_class = "netdsl.backend.runtime.StochasticDepth"
    args = (
        Arg("p", _float, doc="probability of dropping the residual branch", unit=True),
        Arg("mode", _str(("row", "batch")), "row", '"row" drops per sample, "batch" the whole batch'),
    )
    pass_through = True

    def torch_kwargs(self, n):
        return {"p": n.p, "mode": n.mode}


KINDS = (DropoutKind(), StochasticDepthKind())
