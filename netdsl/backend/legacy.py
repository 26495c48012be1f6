"""The runtime of models built by netdsl 0.1.0, kept so that whole models users
saved then (``torch.save(model)``) load and run: their pickles name
``netdsl.modules.Block``, ``netdsl.modules.ResidualOp`` and the other classes
here (``netdsl.modules`` is an alias of this module, netdsl/_moved.py).

Frozen: models built now run the forward ``netdsl.backend.forward`` writes, not
these plan objects, and nothing but unpickling creates them. A model loaded
through here runs as it did under 0.1.0 (tests/backend/test_pickle.py checks it in a
fresh process against outputs recorded then); to get the readable forward,
rebuild it from its spec and load its ``state_dict``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Proxy

# Pickles and programs name these here; they are the ones new models use.
from .runtime import InputShapeError, LayerNorm2d, Permute, StochasticDepth  # noqa: F401


class Chain:
    """Run steps in order."""

    __slots__ = ("steps",)

    def __init__(self, steps):
        self.steps = tuple(steps)

    def __call__(self, x):
        for step in self.steps:
            x = step(x)
        return x


def _identity(x):
    return x


class ResidualOp:
    """``body(x) + shortcut(x)``; in place when the body's output is its own new tensor."""

    __slots__ = ("body", "shortcut", "inplace")

    def __init__(self, body, shortcut, inplace: bool):
        self.body, self.shortcut, self.inplace = body, shortcut, inplace

    def __call__(self, x):
        out = self.body(x)
        identity = x if self.shortcut is None else self.shortcut(x)
        if self.inplace:
            out += identity
            return out
        return out + identity


class ConcatOp:
    """Parallel branches over one input, concatenated along channels."""

    __slots__ = ("branches",)

    def __init__(self, branches):
        self.branches = tuple(branches)

    def __call__(self, x):
        return torch.cat([branch(x) for branch in self.branches], 1)


class DenseOp:
    """Layer k sees cat(x, y1, ..., y_{k-1}); the result is cat(x, y1, ..., yn)."""

    __slots__ = ("layers",)

    def __init__(self, layers):
        self.layers = tuple(layers)

    def __call__(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class GateOp:
    """``x * body(x)``: squeeze-and-excitation style gating."""

    __slots__ = ("body",)

    def __init__(self, body):
        self.body = body

    def __call__(self, x):
        return self.body(x) * x


class SideOp:
    """A side head; the network runs it in training mode only."""

    __slots__ = ("name", "body")

    def __init__(self, name, body):
        self.name, self.body = name, body

    def __call__(self, x):
        return x


class FunctionOp:
    """A layer called as its torch function, as ``torch.flatten(x, 1)`` in a forward:
    no module, and in an FX graph a node named after the function."""

    __slots__ = ("name", "kwargs", "fn")

    def __init__(self, name: str, kwargs: dict):
        self.name, self.kwargs = name, kwargs
        self.fn: Any = _FUNCTIONS[name]

    @classmethod
    def of(cls, node) -> FunctionOp:
        """The call an ``apply`` layer makes (``node.functional``)."""
        k = node.kind
        if k in ("relu", "relu6", "silu", "hardswish"):
            return cls(k, {"inplace": node.inplace})
        if k == "maxpool2d":
            return cls("max_pool2d", {"kernel_size": node.kernel_size, "stride": node.stride,
                                      "padding": node.padding, "dilation": node.dilation,
                                      "ceil_mode": node.ceil_mode})
        if k == "avgpool2d":
            return cls("avg_pool2d", {"kernel_size": node.kernel_size, "stride": node.stride,
                                      "padding": node.padding, "ceil_mode": node.ceil_mode,
                                      "count_include_pad": node.count_include_pad})
        if k == "adaptive_avgpool2d":
            return cls("adaptive_avg_pool2d", {"output_size": node.output_size})
        if k == "flatten":
            return cls("flatten", {"start_dim": 1})
        if k == "gelu":
            return cls("gelu", {"approximate": getattr(node, "approximate", "none")})
        return cls(k, {})

    def __call__(self, x):
        return self.fn(x, **self.kwargs)

    def __reduce__(self):
        return FunctionOp, (self.name, self.kwargs)


_FUNCTIONS = {
    "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "hardswish": F.hardswish,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "gelu": F.gelu, "max_pool2d": F.max_pool2d,
    "avg_pool2d": F.avg_pool2d, "adaptive_avg_pool2d": F.adaptive_avg_pool2d,
    "flatten": torch.flatten,
}


class GraphOp:
    """General dataflow: steps over numbered slots, worked out at lowering.

    Slots ``0 .. n_inputs - 1`` hold the inputs; step ``(fn, src, dst, free)`` calls
    ``fn`` on the slots ``src`` (one, or several for a merge), writes slot ``dst``,
    then drops the slots ``free`` that nothing reads later, so a skip is held only
    as long as a hand-written forward's local would be. ``out`` is a slot or a tuple
    of slots. No names are looked up per call.
    """

    __slots__ = ("steps", "size", "out")

    def __init__(self, steps, size: int, out):
        self.steps, self.size, self.out = tuple(steps), size, out

    def __call__(self, *xs):
        v = list(xs)
        v.extend([None] * (self.size - len(xs)))
        for fn, src, dst, free in self.steps:
            if len(src) == 1:
                v[dst] = fn(v[src[0]])
            else:
                v[dst] = fn(*[v[i] for i in src])
            for i in free:
                v[i] = None
        if isinstance(self.out, tuple):
            return tuple(v[i] for i in self.out)
        return v[self.out]


def add_op(*xs):
    """``add(a, b, ...)``: the sum of named results, left to right."""
    out = xs[0] + xs[1]
    for x in xs[2:]:
        out = out + x
    return out


def cat_op(*xs):
    """``concat(a, b, ...)``: named results joined along channels."""
    return torch.cat(xs, 1)


class SplitOp:
    """The channels cut into parts (``x.chunk`` when equal, as torchvision's ShuffleNet
    does), part k through ``parts[k]``, the results concatenated."""

    __slots__ = ("sizes", "parts", "equal")

    def __init__(self, sizes, parts):
        self.sizes, self.parts = tuple(sizes), tuple(parts)
        self.equal = len(set(self.sizes)) == 1

    def __call__(self, x):
        xs = x.chunk(len(self.parts), 1) if self.equal else torch.split(x, list(self.sizes), 1)
        # Indexed, not zipped: under FX the chunks are one Proxy, which cannot be iterated.
        return torch.cat([part(xs[i]) for i, part in enumerate(self.parts)], 1)


class SpecModule(nn.Module):
    """Mixin of the module classes a spec names (``Bottleneck``, ``Resnet``).

    Those classes are made when a spec is built, so no module holds them and
    pickle cannot find them by name; an instance is pickled as its base class,
    its class name and its state instead, and unpickling makes the class again
    (:func:`spec_class`). ``torch.save(model)`` and ``pickle`` then work in a
    process that has never seen the spec, as they do for torchvision's models.
    """

    def __reduce_ex__(self, protocol):
        cls = type(self)
        if cls.__module__ == __name__:  # netdsl's own classes are found by name
            return super().__reduce_ex__(protocol)
        inputs = getattr(cls, "_input_names", ())
        if inputs:  # a network of several inputs: its forward is made with the class
            return (_remake_network, (cls.__name__, cls.__doc__, inputs), self.__getstate__())
        base = cls.__bases__[0]
        return (_remake, (base, cls.__name__, cls.__module__, cls.__doc__), self.__getstate__())


_SPEC_CLASSES: dict[tuple, type] = {}


def spec_class(base: type, name: str, module: str, doc: str | None) -> type:
    """The module class ``name`` on ``base``, one per process for each name and base.

    >>> spec_class(Block, "Bottleneck", "netdsl.blocks", None) is spec_class(
    ...     Block, "Bottleneck", "netdsl.blocks", None)
    True
    """
    key = (base, name, module, doc)
    cls = _SPEC_CLASSES.get(key)
    if cls is None:
        cls = _SPEC_CLASSES[key] = type(name, (base,), {"__module__": module, "__doc__": doc})
    return cls


def _remake(base: type, name: str, module: str, doc: str | None):
    # Unpickling: an empty instance of the class, whose state pickle restores next.
    return object.__new__(spec_class(base, name, module, doc))


class _ScriptTracer(torch.fx.Tracer):
    """FX's tracer, keeping StochasticDepth a call of its module: inlined, its
    ``if self.training`` would be decided once, at tracing."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, StochasticDepth) or super().is_leaf_module(m, qualname)


def scriptable(module: nn.Module) -> torch.fx.GraphModule:
    """``module`` as an FX graph of torch ops and its own leaf modules, which
    TorchScript compiles: ``torch.jit.script`` cannot compile the plan objects
    that wire a block's children (Python callables, not modules). Same
    submodule names and parameters, so the same ``state_dict``.

    >>> import netdsl
    >>> m = netdsl.build("network n() { input [3, 8, 8]\\n residual { c: conv2d(3, 1) } }")
    >>> list(scriptable(m).state_dict())
    ['c.weight', 'c.bias']
    """
    return torch.fx.GraphModule(module, _ScriptTracer().trace(module), type(module).__name__)


class SequentialBlock(SpecModule, nn.Sequential):
    """Base of block modules whose body is a plain sequence of modules."""


class Block(SpecModule, nn.Module):
    """Base of block modules whose body is more than a plain sequence."""

    def __init__(self):
        super().__init__()
        self._plan = _identity

    def forward(self, x):
        return self._plan(x)

    def __prepare_scriptable__(self):
        # torch.jit.script calls this first and compiles what it returns.
        return scriptable(self)


class Group(Block):
    """A labelled group holding combinators (a plain one is an ``nn.Sequential``)."""


class Container(SpecModule, nn.Module):
    """A labelled group whose parts are wired by name (``-> c3``, ``from c3``): it holds
    its modules under its name, and the network or block around it runs them, as
    torchvision's FPN runs ``inner_blocks[i]`` one by one."""


class Network(SpecModule, nn.Module):
    """Base of the root module of a built spec."""

    def __getstate__(self):
        state = dict(self.__dict__)
        if state.get("_outputs") is not None:  # a named tuple type made at build time: by its fields
            state["_outputs"] = _Fields(state["_outputs"].__name__, state["_outputs"]._fields)
        return state

    def __setstate__(self, state):
        fields = state.get("_outputs")
        if isinstance(fields, _Fields):
            state = {**state, "_outputs": named_outputs(fields.name, fields.fields)}
        super().__setstate__(state)

    spec_name: str = ""
    input_shape: tuple[int, ...] = ()

    def __prepare_scriptable__(self):
        # torch.jit.script calls this first and compiles what it returns. Tracing
        # decides `self._sides and self.training` once: a network with side outputs
        # scripts as it runs in the mode it is in (docs/cli.md).
        return scriptable(self)

    def __init__(self):
        super().__init__()
        self._plan = _identity
        self._steps: tuple = ()
        self._sides = False
        self._outputs: Any = None
        self._sides_order: tuple[int, ...] = ()
        self._ndim = 1
        self._result = None  # makes the stated tuple, named tuple or dict of `output`
        self._input_shapes: tuple = ()

    def forward(self, x):
        # A wrong rank is refused before it runs: an unbatched [C, H, W] would otherwise
        # pass through convolutions as a batch of C one-channel images, or fail deep
        # inside. While FX traces, x is a Proxy whose rank is not known.
        if not isinstance(x, Proxy) and getattr(x, "ndim", None) != self._ndim:
            raise InputShapeError(self._input_problem(x))
        try:
            if self._sides and self.training:
                return self._forward_with_sides(x)
            if self._result is not None:
                return self._result(self._plan(x))
            return self._plan(x)
        except (RuntimeError, TypeError) as e:  # TypeError: not a tensor at all
            problem = self._input_problem(x)
            if problem is None:
                raise
            raise InputShapeError(problem) from e

    def _forward_many(self, xs):
        """The forward of a network of several named inputs (``forward(self, rgb, depth)``)."""
        for x, want in zip(xs, self._input_shapes, strict=False):
            if not isinstance(x, Proxy) and getattr(x, "ndim", None) != len(want) + 1:
                raise InputShapeError(self._input_problem(x, want))
        out = self._plan(*xs)
        return self._result(out) if self._result is not None else out

    def _forward_with_sides(self, x):
        sides = []
        for step in self._steps:
            if isinstance(step, SideOp):
                sides.append(step.body(x))
            else:
                x = step(x)
        made = (x, *sides)
        return self._outputs(*[made[i] for i in self._sides_order])

    def _input_problem(self, x, want=None) -> str | None:
        """Why ``x`` does not fit the spec's ``input``, once a forward call has failed.

        Only a wrong rank or a failed call gets here, so a working forward pays for
        one rank compare; a different height or width is named too, since it breaks
        a later `linear`.
        """
        want = self.input_shape if want is None else want
        if not isinstance(x, torch.Tensor):
            return f"network `{self.spec_name}` takes a tensor, got {type(x).__name__}"
        expected = "[N, " + ", ".join(str(d) for d in want) + "]"
        what = f"{want[0]} channel{'s' if want[0] != 1 else ''}" if len(want) == 3 else \
            f"{want[0]} feature{'s' if want[0] != 1 else ''}"
        if x.dim() == len(want) and tuple(x.shape) == tuple(want):
            return (f"network `{self.spec_name}` expects input {expected} "
                    f"(batch first, {what}), got {list(x.shape)}: one sample without its "
                    f"batch dimension? pass x.unsqueeze(0)")
        if x.dim() != len(want) + 1 or x.shape[1] != want[0]:
            return (f"network `{self.spec_name}` expects input {expected} "
                    f"(batch first, {what}), got {list(x.shape)}")
        if tuple(x.shape[1:]) != tuple(want):
            return (f"network `{self.spec_name}` expects input {expected}, got {list(x.shape)}: "
                    f"its layers were sized for the spec's `input {list(want)}`")
        return None


@functools.cache
def outputs_type(cls_name: str, sides: tuple[str, ...]):
    """The named tuple a network returns in training mode when it has side outputs,
    one type per name and fields in a process.

    >>> outputs_type("InceptionV3", ("aux_logits",))._fields
    ('logits', 'aux_logits')
    """
    return named_outputs(f"{cls_name}Outputs", ("logits",) + tuple(sides))


@functools.cache
def named_outputs(type_name: str, fields: tuple[str, ...]):
    """The named tuple type ``type_name`` with ``fields`` in that order, one per process.

    >>> named_outputs("GoogLeNetOutputs", ("logits", "aux_logits2", "aux_logits1"))._fields
    ('logits', 'aux_logits2', 'aux_logits1')
    """
    return collections.namedtuple(type_name, fields)


class OutputMaker:
    """Turns the tuple a plan returns into the network's stated ``output``."""

    __slots__ = ("form", "keys", "type")

    def __init__(self, cls_name: str, form: str, keys: tuple[str, ...]):
        self.form, self.keys = form, tuple(keys)
        self.type: Any = collections.namedtuple(f"{cls_name}Outputs", keys) if form == "namedtuple" else None

    def __call__(self, values):
        if self.form == "dict":
            return dict(zip(self.keys, values, strict=False))
        if self.form == "namedtuple":
            return self.type(*values)
        return values

    def __reduce__(self):
        return OutputMaker, (self.type.__name__[:-len("Outputs")] if self.type else "", self.form, self.keys)


# Forwards of networks with several inputs, one per count; the argument names are set to
# the spec's input names when a network class is made (FX and torch.compile read them).
def _forward2(self, x0, x1):
    return self._forward_many((x0, x1))


def _forward3(self, x0, x1, x2):
    return self._forward_many((x0, x1, x2))


def _forward4(self, x0, x1, x2, x3):
    return self._forward_many((x0, x1, x2, x3))


def _forward5(self, x0, x1, x2, x3, x4):
    return self._forward_many((x0, x1, x2, x3, x4))


def _forward6(self, x0, x1, x2, x3, x4, x5):
    return self._forward_many((x0, x1, x2, x3, x4, x5))


def _forward7(self, x0, x1, x2, x3, x4, x5, x6):
    return self._forward_many((x0, x1, x2, x3, x4, x5, x6))


def _forward8(self, x0, x1, x2, x3, x4, x5, x6, x7):
    return self._forward_many((x0, x1, x2, x3, x4, x5, x6, x7))


_FORWARDS = {2: _forward2, 3: _forward3, 4: _forward4, 5: _forward5, 6: _forward6, 7: _forward7,
             8: _forward8}
MAX_INPUTS = max(_FORWARDS)


def forward_for(names: tuple[str, ...]):
    """A ``forward(self, <names>)`` calling ``_forward_many``, with the spec's input names.

    >>> import inspect
    >>> str(inspect.signature(forward_for(("rgb", "depth"))))
    '(self, rgb, depth)'
    """
    template = _FORWARDS[len(names)]
    code = template.__code__
    code = code.replace(co_varnames=("self",) + tuple(names) + code.co_varnames[len(names) + 1:])
    fn = type(template)(code, template.__globals__, "forward")
    fn.__qualname__ = "forward"
    return fn


def network_class(name: str, doc: str | None, inputs: tuple[str, ...] = ()) -> type:
    """The root module class of a spec; one of several inputs gets a forward taking them."""
    if len(inputs) < 2:
        return spec_class(Network, name, "netdsl.networks", doc)
    key = (Network, name, "netdsl.networks", doc, inputs)
    cls = _SPEC_CLASSES.get(key)
    if cls is None:
        cls = _SPEC_CLASSES[key] = type(name, (Network,), {
            "__module__": "netdsl.networks", "__doc__": doc, "forward": forward_for(inputs),
            "_input_names": inputs})
    return cls


def _remake_network(name: str, doc: str | None, inputs: tuple[str, ...]):
    return Network.__new__(network_class(name, doc, inputs))


@dataclasses.dataclass(frozen=True)
class _Fields:
    """A network's outputs type as pickled: its name and fields."""

    name: str
    fields: tuple[str, ...]


class ScaleOp:
    """``parameter * x`` with a bare parameter of the owner module (ConvNeXt's
    ``layer_scale``). It holds the owner and the name, not the tensor: ``to_empty``
    and ``.to()`` may replace the parameter object."""

    __slots__ = ("owner", "name")

    def __init__(self, owner: nn.Module, name: str):
        self.owner, self.name = owner, name

    def __call__(self, x):
        return getattr(self.owner, self.name) * x
