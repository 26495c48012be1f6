"""Activations: elementwise, shape-keeping, no MACs in fvcore's count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from . import shapes
from .base import Arg, Kind, Layer, LayerError, PosInt, _bool, _float, _int, _str

_INPLACE = Arg("inplace", _bool, False, "overwrite the input tensor")

# kind → (torch class, takes `inplace`, autograd reads its output, the function `apply`
# calls, oneDNN's post-op when fused after a convolution)
_SIMPLE = {
    "relu": ("ReLU", True, True, "F.relu", ("relu", [])),
    "relu6": ("ReLU6", True, False, "F.relu6", ("hardtanh", [0.0, 6.0])),
    "silu": ("SiLU", True, False, "F.silu", None),
    "hardswish": ("Hardswish", True, False, "F.hardswish", ("hardswish", [])),
    "hardsigmoid": ("Hardsigmoid", True, False, "", ("hardsigmoid", [])),
    "mish": ("Mish", True, False, "", None),
    "sigmoid": ("Sigmoid", False, True, "torch.sigmoid", None),
    "tanh": ("Tanh", False, True, "torch.tanh", None),
}


class Activation(Layer):
    if not TYPE_CHECKING:
        # The kinds of _SIMPLE, as the discriminated union reads them; a type checker
        # cannot spell a literal from a run-time tuple, and knows the field as Layer's ``kind: str``.
        kind: Literal[tuple(_SIMPLE)]
    inplace: bool = False


class SimpleActivation(Kind):
    """An activation with no argument but ``inplace``, where torch's has one."""

    node = Activation

    def __init__(self, name: str, cls: str, inplace: bool, saves_output: bool, function: str,
                 post_op: tuple[str, list[float]] | None):
        self.name, self.torch_class = name, f"torch.nn.{cls}"
        self.doc = cls
        self.args = (_INPLACE,) if inplace else ()
        self.inplace_arg = inplace
        self.saves_output = saves_output
        self.function = function
        self._post_op = post_op

    def torch_kwargs(self, n):
        return {"inplace": n.inplace} if self.args else {}

    def function_args(self, n):
        return [("inplace", True)] if self.args and n.inplace else []

    def post_op(self, kwargs):
        return self._post_op


class GELU(Layer):
    kind: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = "none"


class GELUKind(Kind):
    name = "gelu"
    example = "gelu(approximate = \"tanh\")"
    node = GELU
    doc = "GELU (torch.nn.GELU); `approximate = \"tanh\"` for the tanh approximation"
    torch_class = "torch.nn.GELU"
    function = "F.gelu"
    args = (Arg("approximate", _str(("none", "tanh")), "none", '"none" or "tanh"'),)

    def torch_kwargs(self, n):
        return {"approximate": n.approximate}

    def function_args(self, n):
        return [] if n.approximate == "none" else [("approximate", n.approximate)]


class LeakyReLU(Layer):
    kind: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = 0.01
    inplace: bool = False


class LeakyReLUKind(Kind):
    name = "leaky_relu"
    example = "leaky_relu(0.2)"
    node = LeakyReLU
    doc = "LeakyReLU (torch.nn.LeakyReLU)"
    torch_class = "torch.nn.LeakyReLU"
    args = (Arg("negative_slope", _float, 0.01, "slope for negative inputs"), _INPLACE)
    inplace_arg = True
    # In place, its backward reads its output; the flag cannot depend on arguments, and a
    # needless refusal costs less than a broken backward.
    saves_output = True

    def post_op(self, kwargs):
        return ("leaky_relu", [float(kwargs["negative_slope"])])

    def post_kwargs(self, module):
        return {"negative_slope": 0.01 if module is None else float(module.negative_slope)}

    def check(self, values):
        if values["inplace"] and values["negative_slope"] < 0:
            # torch refuses it in backward: the sign of the output no longer tells the input's.
            raise LayerError("E0218", "in-place `leaky_relu` needs a `negative_slope` of at least 0",
                             f"found {values['negative_slope']}", "drop `inplace = true`, or use a "
                             "slope of 0 or more", arg="negative_slope")

    def torch_kwargs(self, n):
        return {"negative_slope": n.negative_slope, "inplace": n.inplace}


class ELU(Layer):
    kind: Literal["elu"] = "elu"
    alpha: float = 1.0
    inplace: bool = False


class ELUKind(Kind):
    name = "elu"
    node = ELU
    doc = "ELU (torch.nn.ELU)"
    torch_class = "torch.nn.ELU"
    args = (Arg("alpha", _float, 1.0, "value for large negative inputs is -alpha"), _INPLACE)
    inplace_arg = True
    saves_output = True  # as leaky_relu's

    def check(self, values):
        if values["inplace"] and values["alpha"] < 0:
            raise LayerError("E0218", "in-place `elu` needs an `alpha` of at least 0",
                             f"found {values['alpha']}", "drop `inplace = true`, or use an alpha "
                             "of 0 or more", arg="alpha")

    def torch_kwargs(self, n):
        return {"alpha": n.alpha, "inplace": n.inplace}


class PReLU(Layer):
    kind: Literal["prelu"] = "prelu"
    num_parameters: PosInt = 1
    slope: float = 0.25


class PReLUKind(Kind):
    name = "prelu"
    example = "prelu(per_channel = true)"
    node = PReLU
    doc = "PReLU (torch.nn.PReLU): one learnable slope, or one per channel"
    torch_class = "torch.nn.PReLU"
    args = (Arg("per_channel", _bool, False, "one slope per channel instead of one in all"),
            Arg("slope", _float, 0.25, "the slopes' initial value (torch's `init`)"))
    parameters = ("weight",)
    factory = True

    def infer(self, values, shape):
        return {"num_parameters": shape[0] if values["per_channel"] else 1,
                "slope": values["slope"]}, shape

    def params(self, n):
        return n.num_parameters

    def torch_kwargs(self, n):
        return {"num_parameters": n.num_parameters, "init": n.slope}

    def default_init(self, module, pname, tensor):
        from torch import nn
        nn.init.constant_(tensor, module.init)
        return True


class Softmax(Layer):
    kind: Literal["softmax"] = "softmax"
    dim: int = 0


class SoftmaxKind(Kind):
    name = "softmax"
    example = "softmax(dim = 0)"
    node = Softmax
    doc = "softmax along one dimension of the sample (torch.nn.Softmax; dim 0 is the channels)"
    torch_class = "torch.nn.Softmax"
    function = "F.softmax"
    args = (Arg("dim", _int, 0, "the dimension, without the batch: 0 is channels or features; "
                "negative counts from the end"),)
    saves_output = True

    def infer(self, values, shape):
        return {"dim": shapes.dim(self.name, values["dim"], shape)}, shape

    def torch_kwargs(self, n):
        return {"dim": n.dim + 1}  # torch counts the batch dimension

    def function_args(self, n):
        return [("dim", n.dim + 1)]


KINDS = tuple(SimpleActivation(k, *v) for k, v in _SIMPLE.items()) + (
    GELUKind(), LeakyReLUKind(), ELUKind(), PReLUKind(), SoftmaxKind())
