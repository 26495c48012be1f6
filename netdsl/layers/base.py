"""What every layer kind is made of: argument converters, the base of the IR
nodes, and :class:`Kind`, the one place that says everything about a kind.

The base IR classes live here rather than in :mod:`netdsl.ir` because ``ir``
builds its union of layer nodes from the catalogue: the catalogue must not
import ``ir``.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..span import Span

REQUIRED = object()

Shape = tuple[int, ...]
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Pair = tuple[PosInt, PosInt]
NonNegPair = tuple[NonNegInt, NonNegInt]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The fields that hold this node's bodies (a tuple of nodes, or a tuple of such
    # tuples), in the order their modules are registered: :func:`netdsl.ir.walk.bodies`.
    body_fields: ClassVar[tuple[str, ...]] = ()

    span: Span | None = None


class InitScheme(Node):
    """How one parameter tensor is initialised (``torch.nn.init`` names)."""

    fn: Literal["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
                "normal", "uniform", "trunc_normal", "constant", "zeros", "ones"]
    args: dict[str, float | str] = {}


class Layer(Node):
    """A leaf module; ``name`` is its name inside the enclosing scope.

    ``reuse``: another call of the module already named ``name`` in this scope
    (``reuse relu``), which owns no parameters of its own. ``functional``: no
    module at all, the layer's torch function called in place (``apply flatten``).
    """

    name: str
    in_shape: Shape
    out_shape: Shape
    init: dict[str, InitScheme] = {}
    reuse: bool = False
    functional: bool = False

    if TYPE_CHECKING:
        # Every layer class declares its own ``kind``, a literal the discriminated union
        # reads; the base has no such field, so that pydantic's fields stay as they are.
        kind: str


# ---- argument converters: a spec value to the IR's, or ArgTypeError ----

# What a PyTorch user writes for a layer's argument, and the catalogue's name for it
# (the checker's "did you mean" for an unknown argument).
TORCH_SPELLINGS = {"kernel": "kernel_size", "k": "kernel_size", "ksize": "kernel_size",
                   "pad": "padding", "out": "out_channels", "channels": "out_channels",
                   "features": "out_features", "prob": "p", "rate": "p", "drop_rate": "p",
                   "slope": "negative_slope", "scale": "scale_factor", "align": "align_corners"}
# torch's constructor arguments that netdsl takes from the layer's input instead.
INFERRED = frozenset({"in_channels", "in_features", "num_features", "num_channels", "in_chs"})


class ArgTypeError(Exception):
    """A value of the wrong type for an argument; ``expected`` says what fits."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgTypeError("an integer")
    return v


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgTypeError("a number")
    if not math.isfinite(v):
        raise ArgTypeError("a finite number")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ArgTypeError("`true` or `false`")
    return v


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ArgTypeError("an integer or a list of two integers [h, w]")
        return (_pair_item(v[0]), _pair_item(v[1]))
    x = _pair_item(v)
    return (x, x)


def _pair_item(v: Any) -> int:
    try:
        return _int(v)
    except ArgTypeError:
        raise ArgTypeError("an integer or a list of two integers [h, w]") from None


def _pair_or_none(v: Any) -> tuple[int, int] | None:
    return None if v is None else _pair(v)


class _str:
    """The converter to one of ``choices``, which tools read (the tests draw from them)."""

    def __init__(self, choices: tuple[str, ...]):
        self.choices = choices

    def __call__(self, v: Any) -> str:
        if not isinstance(v, str) or v not in self.choices:
            raise ArgTypeError("one of " + ", ".join(f'"{c}"' for c in self.choices))
        return v


def _ints(v: Any) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ArgTypeError("a list of integers")
    try:
        return tuple(_int(x) for x in v)
    except ArgTypeError:
        raise ArgTypeError("a list of integers") from None


class _none_or:
    """The converter ``inner`` that also lets None through; tools read ``inner``."""

    def __init__(self, inner: Callable[[Any], Any]):
        self.inner = inner

    def __call__(self, v: Any) -> Any:
        return None if v is None else self.inner(v)


@dataclass(frozen=True)
class Arg:
    """One argument of a layer. ``min`` bounds an integer argument (each item of a
    pair) from below, and with the ``max_dim`` limit from above; ``unit`` keeps a
    number between 0 and 1 (a probability or a fraction)."""

    name: str
    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    doc: str = ""
    min: int | None = None
    unit: bool = False


class LayerError(Exception):
    """A layer that cannot apply to its arguments or its input: the checker turns it
    into a diagnostic at the argument ``arg`` (or the layer when None). ``before``: a
    layer that, written on a line of its own before this one, makes it apply (the
    help's edit, which an editor offers as a quick fix)."""

    def __init__(self, code: str, message: str, label: str, help: str | None = None,
                 arg: str | None = None, before: str | None = None):
        super().__init__(message)
        self.code, self.message, self.label, self.help, self.arg = code, message, label, help, arg
        self.before = before


@dataclass(frozen=True)
class Torch:
    """The torch module a layer builds, described as data: its class (a dotted path)
    and its constructor's keyword arguments, for tools that generate code or draw."""

    cls: str
    kwargs: dict[str, Any]

    @property
    def name(self) -> str:
        return self.cls.rsplit(".", 1)[1]


class Kind:
    """One built-in layer kind. A subclass (or an instance with other attributes)
    says everything netdsl knows about it; nothing else switches on kinds.

    Class attributes: ``name`` as a spec writes it; ``node`` its IR class; ``args``
    in positional order; ``doc``; ``torch_class`` the dotted path of the module it
    builds; ``parameters`` the names of its learnable tensors (``init KIND.NAME``);
    ``matrix_parameters`` those of two or more dimensions (fan-based init fits);
    ``counted`` whether fvcore has a counting rule for it; ``factory`` whether its
    constructor takes ``device=``; the autograd flags, see :mod:`netdsl.layers`; and
    ``example``, a typical use on ``example_input`` (the kind's name when empty).
    """

    name: str = ""
    node: type[Layer] = Layer
    args: tuple[Arg, ...] = ()
    doc: str = ""
    torch_class: str = ""
    parameters: tuple[str, ...] = ()
    matrix_parameters: tuple[str, ...] = ()
    counted: bool = False
    factory: bool = False
    # Made by its own constructor on the target device (its own initialisation), never
    # on the meta device and initialised parameter by parameter: an extern module.
    own_init: bool = False
    # What autograd keeps: see PASS_THROUGH, SAVES_OUTPUT, OUTPUT_NOT_SAVED in __init__.
    pass_through: bool = False
    saves_output: bool = False
    output_not_saved: bool = False
    # Its tensor is a bare parameter of the enclosing module, not a submodule.
    bare_parameter: bool = False
    # `apply KIND`: the torch function the layer is called as (``F.relu``,
    # ``torch.flatten``), whose last name also names its node in an FX graph; empty
    # where it cannot be applied (it has parameters or state).
    function: str = ""
    # Whether that function takes ``training=``, which the forward gives as the module's
    # own flag (``F.dropout(x, p=0.2, training=self.training)``, as timm's heads call it).
    training_arg: bool = False
    # Whether its ``inplace`` argument may overwrite its input (the in-place checks).
    inplace_arg: bool = False
    # Its output size follows the window formula from kernel_size, stride, padding (and
    # dilation): the checker's help can say which padding keeps the size at stride 1.
    window: bool = False
    # Its padding may be at most half its window, as torch's pools require.
    half_window_padding: bool = False
    # Its first argument sets the output's channels or features: what a shortcut that
    # gives the wrong width usually ends with.
    projects: bool = False
    # A typical use and an input it checks on: the generic tests build and run it.
    example: str = ""
    example_input: tuple[int, ...] = (2, 6, 6)

    # The attribute torchvision gives a module of this kind (`self.avgpool`); the kind's
    # name where empty. An unlabelled module that holds no state is named so.
    attribute: str = ""

    @property
    def stateless(self) -> bool:
        """Whether its module holds no parameter and no buffer, so that its name is in
        no ``state_dict`` key."""
        return not self.parameters and not self.factory and not self.bare_parameter and not self.own_init

    @property
    def use(self) -> str:
        """A typical use of the kind, as a spec writes it."""
        return self.example or self.name

    def arg(self, name: str) -> Arg | None:
        for a in self.args:
            if a.name == name:
                return a
        return None

    # ---- front half (no torch) ----

    def check(self, values: dict[str, Any]) -> None:
        """Checks of the argument values beyond their type and ``min``/``unit``
        ranges; raise :class:`LayerError`."""

    def torch_order(self, positional: list[Any], shape: Shape) -> str | None:
        """Where a call's positional values read as torch's constructor, whose first
        argument netdsl infers from the input (``conv2d(3, 16, 3)`` on 3 channels is
        ``nn.Conv2d(3, 16, 3)``), the call netdsl reads the same way; else None. Only
        where netdsl's own reading is implausible: a legal spec is never refused."""
        return None

    def infer(self, values: dict[str, Any], shape: Shape) -> tuple[dict[str, Any], Shape]:
        """The IR fields the input decides (channels, features) and the output shape;
        raise :class:`LayerError` where the layer cannot apply."""
        return {}, shape

    # ---- analysis (no torch) ----

    def type_name(self, node) -> str:
        """The class name of the module ``node`` builds, as the layer table shows it."""
        return self.torch_class.rsplit(".", 1)[1]

    def is_counted(self, node) -> bool:
        """Whether fvcore counts MACs for ``node``'s op (the table's "—" where not)."""
        return self.counted

    def params(self, node) -> int:
        """Learnable parameters."""
        return 0

    def arguments(self, node) -> dict[str, Any]:
        """What ``node`` was made with, as JSON-like data, for tools that compare two
        networks (``netdsl diff``): its fields but its name, span and shapes."""
        return node.model_dump(exclude={"span", "name", "in_shape", "out_shape"})

    def macs(self, node) -> int:
        """Multiply-accumulates for one sample, by fvcore's rules in eval mode."""
        return 0

    def largest_tensor(self, node) -> int:
        """Elements of the largest tensor it makes for one sample."""
        return math.prod(node.out_shape)

    # ---- lowering ----

    def torch_kwargs(self, node) -> dict[str, Any]:
        """The constructor's keyword arguments for ``node``."""
        return {}

    def torch(self, node) -> Torch:
        """The module ``node`` builds, as data."""
        return Torch(self.torch_class, self.torch_kwargs(node))

    def build(self, node, device):
        """The module for ``node`` (torch is imported only here). On the meta device
        its ``reset_parameters`` is skipped: lowering builds every module there and
        initialises each parameter once its storage exists (``lower.initialise``),
        and the meta tensors' own draws went through torch's Python decompositions,
        a fifth of lowering EfficientNet-B0.
        """
        desc = self.torch(node)
        cls = _torch_class(desc.cls)
        if not self.factory:
            return cls(**desc.kwargs)
        if str(device) != "meta":
            return cls(**desc.kwargs, device=device)
        m = _without_reset(cls)(**desc.kwargs, device=device)
        m.__class__ = cls  # the very class torch's own constructor gives
        return m

    def function_args(self, node) -> list[tuple[str | None, Any]]:
        """The arguments after the input of the call ``apply`` makes, as (keyword or
        None for a positional one, value), each left out where it is the function's
        default. Values are as the IR holds them (pairs as tuples)."""
        return []

    def post_op(self, kwargs: dict[str, Any]) -> tuple[str, list[float]] | None:
        """Fusion (``fuse=True``): this activation, with the keyword arguments
        ``kwargs`` of ``torch.nn.functional.<name>``, as oneDNN's post-op of the
        convolution before it: ``(algorithm, scalars)``. None where it is not folded:
        only the piecewise-linear ones are, since for the others the post-op measured
        no faster (docs/benchmarks.md)."""
        return None

    def post_kwargs(self, module) -> dict[str, Any]:
        """The keyword arguments of ``torch.nn.functional.<name>`` that ``module`` (or,
        for None, the function ``apply`` calls) applies, for :meth:`post_op`."""
        return {}

    def initialise(self, node, tensor) -> None:
        """For a ``bare_parameter`` kind: fill its tensor, allocated on the target device,
        with the initial value ``node`` gives (lowering calls it under ``torch.no_grad``)."""
        raise NotImplementedError(f"`{self.name}` builds a module, not a bare parameter")

    def onnx_problem(self, node) -> tuple[str, str, str, str | None] | None:
        """Why ``node`` cannot be exported to ONNX as torch runs it, as (message, label,
        help, the argument at fault or None), or None where it can: an ONNX file that
        onnxruntime refuses, or that computes something else, is never written."""
        return None

    def default_init(self, module, pname: str, tensor) -> bool:
        """Initialise one parameter as the module's ``reset_parameters`` does, leaving
        the others alone; False where this kind cannot do it per parameter."""
        return False

    def __repr__(self) -> str:
        return f"<layer {self.name}>"


@functools.cache
def _torch_class(path: str) -> type:
    mod, cls = path.rsplit(".", 1)
    return getattr(importlib.import_module(mod), cls)


def _skip_reset(self) -> None:
    pass


@functools.cache
def _without_reset(cls: type) -> type:
    """``cls`` whose constructor leaves its meta tensors alone (the same layout, so
    an instance can be given ``cls`` back)."""
    return type(cls.__name__, (cls,), {"reset_parameters": _skip_reset, "__module__": cls.__module__})
