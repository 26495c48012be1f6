"""Reductions over dimensions of the sample: ``sum``, ``mean``, ``amax``.

``dim`` counts the dimensions of one sample, as every netdsl shape does: 0 is the
channels, and a negative one counts from the end (``mean(dim = [-2, -1])`` is
torchvision's ``x.mean([2, 3])``). A reduction keeps the batch dimension, so it
may not remove every dimension of the sample: ``keepdim = true`` keeps them as 1.
fvcore counts no multiply-accumulates for any of them, and neither does netdsl.
"""

from __future__ import annotations

from typing import Literal

from . import shapes
from .base import Arg, ArgTypeError, Kind, Layer, LayerError, NonNegInt, _bool, _ints


def _dims(v) -> tuple[int, ...]:
    """One dimension, or a list of them (negative ones count from the end)."""
    try:
        return _ints(v if isinstance(v, (list, tuple)) else [v])
    except ArgTypeError:
        raise ArgTypeError("an integer or a non-empty list of integers") from None


class Reduction(Layer):
    """A reduction over ``dim`` (sorted, from 0, without the batch)."""

    kind: Literal["sum", "mean", "amax"]
    dim: tuple[NonNegInt, ...]
    keepdim: bool = False


class ReductionKind(Kind):
    node = Reduction

    def __init__(self, name: str, what: str, torch_function: str, runtime: str, saves_output: bool):
        self.name = name
        # amax's backward finds the maxima again in its output; sum's and mean's keep only sizes.
        self.saves_output = saves_output
        self.output_not_saved = not saves_output
        self.doc = (f"the {what} over dimensions of the sample ({torch_function}; dim 0 is the "
                    "channels, negative counts from the end)")
        self.function = torch_function
        self.torch_class = f"netdsl.backend.runtime.{runtime}"
        self.example = f"{name}(dim = [1, 2])"
        self.args = (Arg("dim", _dims, doc="a dimension or a list of them, without the batch: "
                         "0 is the channels"),
                     Arg("keepdim", _bool, False, "keep each reduced dimension as size 1"))

    def infer(self, values, shape):
        dims = []
        for d in values["dim"]:
            d = shapes.dim(self.name, d, shape)
            if d in dims:
                raise LayerError("E0225", f"`{self.name}` reduces dimension {d} twice",
                                 f"dimension {d} is listed more than once",
                                 "list each dimension once", arg="dim")
            dims.append(d)
        dims.sort()
        if values["keepdim"]:
            out = tuple(1 if i in dims else s for i, s in enumerate(shape))
        else:
            out = tuple(s for i, s in enumerate(shape) if i not in dims)
            if not out:
                raise LayerError("E0224", f"`{self.name}` over every dimension of "
                                 f"{shapes.fmt(shape)} leaves nothing but the batch",
                                 "every dimension of the sample is reduced",
                                 "netdsl's shapes keep at least one dimension: add `keepdim = true`, "
                                 "or reduce fewer dimensions", arg="dim")
        return {"dim": tuple(dims)}, out

    def torch_kwargs(self, n):
        return {"dim": tuple(d + 1 for d in n.dim), "keepdim": n.keepdim}

    def function_args(self, n):
        args: list[tuple[str | None, object]] = [("dim", tuple(d + 1 for d in n.dim))]
        if n.keepdim:
            args.append(("keepdim", True))
        return args


KINDS = (ReductionKind("sum", "sum", "torch.sum", "Sum", False),
         ReductionKind("mean", "mean", "torch.mean", "Mean", False),
         ReductionKind("amax", "maximum", "torch.amax", "Amax", True))
