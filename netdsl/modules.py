"""Runtime pieces of a built model: module base classes and the small plan
objects that wire a block's children together.

A plan is built once, at lowering; a forward call runs it without looking
anything up by name, as a hand-written torchvision module would. Plans hold
references to the block's own registered children, so ``copy.deepcopy``
and ``.to(device)`` keep working.
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import torch
from torch import nn
from torch.fx import Proxy


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


class SpecModule:
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
    return base.__new__(spec_class(base, name, module, doc))


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


class InputShapeError(ValueError):
    """A built model was called with an input its spec does not accept."""


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
            state = {**state, "_outputs": outputs_type(fields.name[:-len("Outputs")], fields.fields[1:])}
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
        self._outputs = None
        self._ndim = 1

    def forward(self, x):
        # A wrong rank is refused before it runs: an unbatched [C, H, W] would otherwise
        # pass through convolutions as a batch of C one-channel images, or fail deep
        # inside. While FX traces, x is a Proxy whose rank is not known.
        if not isinstance(x, Proxy) and getattr(x, "ndim", None) != self._ndim:
            raise InputShapeError(self._input_problem(x))
        try:
            if self._sides and self.training:
                return self._forward_with_sides(x)
            return self._plan(x)
        except (RuntimeError, TypeError) as e:  # TypeError: not a tensor at all
            problem = self._input_problem(x)
            if problem is None:
                raise
            raise InputShapeError(problem) from e

    def _forward_with_sides(self, x):
        sides = []
        for step in self._steps:
            if isinstance(step, SideOp):
                sides.append(step.body(x))
            else:
                x = step(x)
        return self._outputs(x, *sides)

    def _input_problem(self, x) -> str | None:
        """Why ``x`` does not fit the spec's ``input``, once a forward call has failed.

        Only a wrong rank or a failed call gets here, so a working forward pays for
        one rank compare; a different height or width is named too, since it breaks
        a later `linear`.
        """
        want = self.input_shape
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


@functools.lru_cache(maxsize=None)
def outputs_type(cls_name: str, sides: tuple[str, ...]):
    """The named tuple a network returns in training mode when it has side outputs,
    one type per name and fields in a process.

    >>> outputs_type("InceptionV3", ("aux_logits",))._fields
    ('logits', 'aux_logits')
    """
    return collections.namedtuple(f"{cls_name}Outputs", ("logits",) + tuple(sides))


@dataclasses.dataclass(frozen=True)
class _Fields:
    """A network's outputs type as pickled: its name and fields."""

    name: str
    fields: tuple[str, ...]


class StochasticDepth(nn.Module):
    """Randomly drop a residual branch per sample ("row") or per batch, in training.

    Same arithmetic and random draws as ``torchvision.ops.StochasticDepth``.
    """

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
