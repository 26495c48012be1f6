"""What a built model is made of at run time: the base classes of the modules a
spec names, the classes themselves (one per block and form, with the forward
``netdsl.backend.forward`` writes), and the few leaf modules torch lacks.

A block's class is made when a spec is built: ``type(name, (Block,), {"forward":
...})``, its forward compiled from the source the writer gave, registered with
:mod:`linecache` so that ``inspect.getsource``, tracebacks and debuggers show it.
Instances of a block whose forwards read the same share one class, and so do the
forms of a block that differ only in optional modules (with a projection
shortcut and without), whose one forward calls such a module where it is not
None (:mod:`netdsl.backend.forms`, as the export decides). No module holds these
classes, so pickling one records how to make
it again (:class:`SpecModule`): a model saved with ``torch.save(model)`` loads
in a process that never saw the spec.

The network's class checks the rank of its inputs before a call, and, when a
call fails, says which spec line the failing statement came from and how the
input differs from the one the spec was checked for.
"""

from __future__ import annotations

import builtins
import collections
import functools
import hashlib
import linecache
import re
import sys
import textwrap
import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Proxy

# -- classes made from a spec


class SpecModule(nn.Module):
    """Base of the module classes a spec names (``Bottleneck``, ``ResNet``).

    Those classes are made when a spec is built, so no module holds them and
    pickle cannot find them by name; an instance is pickled as the recipe of its
    class (base, name, docstring, forward source, outputs type) and its state,
    and unpickling makes the class again (:func:`spec_class`). ``torch.save(model)``
    and ``pickle`` then work in a process that has never seen the spec, as they do
    for torchvision's models.
    """

    _recipe: tuple | None = None

    def __reduce_ex__(self, protocol):
        recipe = type(self).__dict__.get("_recipe")
        if recipe is None:  # netdsl's own classes are found by name
            return super().__reduce_ex__(protocol)
        return (_remake, recipe, self.__getstate__())


class Block(SpecModule, nn.Module):
    """Base of block modules whose body is more than a plain sequence: their class
    has the forward written from the spec."""

    def __prepare_scriptable__(self):
        # torch.jit.script calls this first and compiles what it returns.
        return scriptable(self)


class SequentialBlock(SpecModule, nn.Sequential):
    """Base of block modules whose body is a plain sequence of modules."""


class Group(Block):
    """Base of labelled groups holding combinators (a plain one is an ``nn.Sequential``)."""


class Container(SpecModule, nn.Module):
    """A labelled group whose parts are wired by name (``-> c3``, ``from c3``): it holds
    its modules under its name, and the network or block around it runs them, as
    torchvision's FPN runs ``inner_blocks[i]``."""


_CLASSES: dict[tuple, type] = {}


def spec_class(base: type, name: str, module: str, doc: str | None, forward: str | None = None,
               outputs: tuple[str, tuple[str, ...]] | None = None) -> type:
    """The module class ``name`` on ``base`` with ``forward`` (the method's source, as
    :meth:`netdsl.backend.forward.Forward.text` gives it; None to keep the base's),
    one per process for each recipe. ``outputs`` is the name and fields of the
    named tuple the forward returns, where it returns one.

    >>> src = "    def forward(self, x):\\n        return x\\n"
    >>> spec_class(Block, "Unit", "netdsl.blocks", None, src) is spec_class(
    ...     Block, "Unit", "netdsl.blocks", None, src)
    True
    """
    recipe = (base, name, module, doc, forward, outputs)
    cls = _CLASSES.get(recipe)
    if cls is None:
        body: dict = {"__module__": module, "__doc__": doc, "__qualname__": name, "_recipe": recipe}
        if forward is not None:
            body["forward"] = _compile_forward(name, forward, outputs)
        cls = _CLASSES[recipe] = type(name, (base,), body)
    return cls


def _remake(base: type, name: str, module: str, doc: str | None, forward: str | None = None,
            outputs: tuple | None = None):
    # Unpickling: an empty instance of the class, whose state pickle restores next.
    return object.__new__(spec_class(base, name, module, doc, forward, outputs))


# The names a generated forward may use besides its own locals (and, for a fused
# model's network, the two layout helpers of netdsl.backend.fuse).
_GLOBALS = {"torch": torch, "F": F, "nn": nn, "__builtins__": builtins}


def _fused_globals() -> dict:
    from .fuse import to_channels_last, to_default_format

    return {"to_channels_last": to_channels_last, "to_default_format": to_default_format}


def _compile_forward(name: str, source: str, outputs: tuple | None):
    """The function ``source`` (a ``def forward`` written by netdsl's forward writer)
    defines, compiled under a file name of its own whose lines :mod:`linecache`
    holds. The source is netdsl's: names and numbers it escaped, never spec text."""
    code_text = textwrap.dedent(source)
    digest = hashlib.blake2b(code_text.encode(), digest_size=4).hexdigest()
    files = re.findall(r"  # (.+?):\d+$", code_text, re.M)
    spec = f" of {files[0]}" if files else ""
    filename = f"<netdsl: {name}.forward{spec} #{digest}>"
    namespace = dict(_GLOBALS)
    if "to_channels_last(" in code_text:
        namespace.update(_fused_globals())
    if outputs is not None:
        type_name, fields = outputs
        namespace[outputs_variable(type_name)] = named_outputs(type_name, tuple(fields))
    linecache.cache[filename] = (len(code_text), None, code_text.splitlines(True), filename)
    exec(compile(code_text, filename, "exec"), namespace)  # netdsl-generated: see above
    fn = namespace["forward"]
    assert isinstance(fn, types.FunctionType)
    fn.__qualname__ = f"{name}.forward"
    return fn


def outputs_variable(type_name: str) -> str:
    """The name a forward calls its outputs type by: the type's own where it is a
    plain identifier that hides nothing, else ``Outputs``.

    >>> outputs_variable("GoogLeNetOutputs"), outputs_variable("a-b"), outputs_variable("torch")
    ('GoogLeNetOutputs', 'Outputs', 'Outputs')
    """
    if (type_name.isidentifier() and type_name.isascii() and type_name not in _GLOBALS
            and not hasattr(builtins, type_name) and type_name != "self"):
        return type_name
    return "Outputs"


@functools.cache
def named_outputs(type_name: str, fields: tuple[str, ...]):
    """The named tuple type ``type_name`` with ``fields`` in that order, one per process.

    >>> named_outputs("GoogLeNetOutputs", ("logits", "aux_logits2", "aux_logits1"))._fields
    ('logits', 'aux_logits2', 'aux_logits1')
    """
    return collections.namedtuple(type_name, fields)


# -- the network


class InputShapeError(ValueError):
    """A built model was called with an input its spec does not accept."""


class Network(SpecModule, nn.Module):
    """Base of the root module of a built spec.

    Its class has the forward written from the spec. A call first checks each
    input's rank (an unbatched ``[C, H, W]`` would otherwise pass through the
    convolutions as a batch of C one-channel images, or fail deep inside); a call
    that fails says in a note where, in the spec, the failing statement comes from,
    and an input whose shape the spec does not fit raises :class:`InputShapeError`.
    """

    spec_name: str = ""
    input_shape: tuple[int, ...] = ()
    # One shape per named input; empty for a network of one unnamed `input`.
    input_shapes: tuple[tuple[int, ...], ...] = ()
    input_names: tuple[str, ...] = ()

    def __prepare_scriptable__(self):
        # torch.jit.script calls this first and compiles what it returns. Tracing
        # decides `self.training` once: a network with side outputs scripts as it
        # runs in the mode it is in (docs/cli.md).
        return scriptable(self)

    def _expected(self) -> list[tuple[str, tuple[int, ...]]]:
        if self.input_shapes:
            return list(zip(self.input_names, self.input_shapes, strict=True))
        return [("x", tuple(self.input_shape))]

    def __call__(self, *args, **kwargs):
        expected = self._expected()
        given = list(args) + [kwargs[n] for n, _ in expected[len(args):] if n in kwargs]
        for x, (_, want) in zip(given, expected, strict=False):  # a call may give too few
            # While FX traces, x is a Proxy, whose rank is not known.
            if not isinstance(x, Proxy) and getattr(x, "ndim", None) != len(want) + 1:
                raise InputShapeError(self._input_problem(x, want))
        try:
            return super().__call__(*args, **kwargs)
        except (RuntimeError, TypeError) as e:  # TypeError: not a tensor at all
            problem = None
            for x, (_, want) in zip(given, expected, strict=False):
                problem = problem or self._input_problem(x, want)
            note = _failed_statement(e)
            if problem is not None:
                err = InputShapeError(problem)
                if note:
                    _add_note(err, note)
                raise err from e
            if note and note not in getattr(e, "__notes__", ()):
                _add_note(e, note)
            raise

    def _input_problem(self, x, want) -> str | None:
        """Why ``x`` does not fit the spec's input ``want``, once a call has failed or
        its rank is wrong; None where it fits."""
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


def _add_note(e: BaseException, note: str) -> None:
    """``e.add_note(note)``; before Python 3.11, kept in ``__notes__`` all the same."""
    if sys.version_info >= (3, 11):
        e.add_note(note)
    else:  # pragma: no cover - Python 3.10
        e.__notes__ = [*getattr(e, "__notes__", []), note]  # type: ignore[attr-defined]


_NETDSL_FILE = re.compile(r"^<netdsl: ")
_SPEC_COMMENT = re.compile(r"^(?P<code>.*?)  # (?P<file>.+):(?P<line>\d+)$")


def _failed_statement(e: BaseException) -> str | None:
    """A note naming the spec line of the innermost statement of a generated forward
    that ``e`` went through, with that statement; None when it went through none."""
    tb, last = e.__traceback__, None
    while tb is not None:
        if _NETDSL_FILE.match(tb.tb_frame.f_code.co_filename):
            last = tb
        tb = tb.tb_next
    if last is None:
        return None
    text = linecache.getline(last.tb_frame.f_code.co_filename, last.tb_lineno).strip()
    m = _SPEC_COMMENT.match(text)
    if m is None:
        return None
    spec_line = linecache.getline(m["file"], int(m["line"])).strip()
    shown = f": `{spec_line}`" if spec_line else ""
    owner = last.tb_frame.f_locals.get("self")
    where = f"{type(owner).__name__}.forward" if owner is not None else "forward"
    return (f"netdsl: this failed at {m['file']}:{m['line']}{shown} "
            f"(`{m['code'].strip()}` in {where})")


# -- scripting


class _ScriptTracer(torch.fx.Tracer):
    """FX's tracer, keeping StochasticDepth a call of its module: inlined, its
    ``if self.training`` would be decided once, at tracing."""

    def is_leaf_module(self, m, qualname):
        return isinstance(m, StochasticDepth) or super().is_leaf_module(m, qualname)


def scriptable(module: nn.Module) -> torch.fx.GraphModule:
    """``module`` as an FX graph of torch ops and its own leaf modules, which
    TorchScript compiles (a generated forward may reach modules through
    ``getattr`` with names TorchScript does not take). Same submodule names and
    parameters, so the same ``state_dict``.

    >>> import netdsl
    >>> m = netdsl.build("network n() { input [3, 8, 8]\\n residual { c: conv2d(3, 1) } }")
    >>> list(scriptable(m).state_dict())
    ['c.weight', 'c.bias']
    """
    return torch.fx.GraphModule(module, _ScriptTracer().trace(module), type(module).__name__)


# -- leaf modules torch does not have


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


class Permute(nn.Module):
    """``x.permute(dims)``, as ``torchvision.ops.misc.Permute`` (dims include the batch)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x):
        return torch.permute(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


@torch.fx.wrap
def pad_same(x, kernel_size: list[int], stride: list[int], dilation: list[int]):
    """``x`` padded with zeros as TensorFlow's "same" pads it before a strided window:
    the output of the window has ceil(size / stride) positions, the odd pixel after.
    A leaf of FX graphs (``torch.fx.wrap``): the sizes are read when the model runs."""
    ih, iw = x.shape[-2], x.shape[-1]
    ph = max((-(-ih // stride[0]) - 1) * stride[0] + (kernel_size[0] - 1) * dilation[0] + 1 - ih, 0)
    pw = max((-(-iw // stride[1]) - 1) * stride[1] + (kernel_size[1] - 1) * dilation[1] + 1 - iw, 0)
    return nn.functional.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding, computed from the input's size
    when the model runs (timm's ``Conv2dSame``): the same parameters as ``nn.Conv2d``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1, bias=True,
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias,
                         device=device, dtype=dtype)

    def forward(self, x):
        x = pad_same(x, list(self.kernel_size), list(self.stride), list(self.dilation))
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ScaledStdConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardised over each output channel's fan-in
    before each use, scaled by ``gamma / sqrt(fan-in)`` and by a learnable ``gain``
    (timm's ``ScaledStdConv2d``: NF-ResNet, NFNet)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, gamma=1.0, eps=1e-6, gain_init=1.0, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         device=device, dtype=dtype)
        self.gamma, self.eps, self.gain_init = gamma, eps, gain_init
        # A Python float, as timm's: computed in the forward, a trace would take it in float32.
        self.scale = gamma * self.weight[0].numel() ** -0.5
        self.gain = nn.Parameter(torch.full((out_channels, 1, 1, 1), gain_init, device=device, dtype=dtype))

    def forward(self, x):
        weight = nn.functional.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None, weight=(self.gain * self.scale).view(-1),
            training=True, momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return nn.functional.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma={self.gamma}, eps={self.eps}"


class Sum(nn.Module):
    """``torch.sum(x, dim, keepdim)`` as a module (dims include the batch)."""

    def __init__(self, dim, keepdim=False):
        super().__init__()
        self.dim, self.keepdim = tuple(dim), keepdim

    def forward(self, x):
        return torch.sum(x, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class Mean(nn.Module):
    """``torch.mean(x, dim, keepdim)`` as a module (dims include the batch)."""

    def __init__(self, dim, keepdim=False):
        super().__init__()
        self.dim, self.keepdim = tuple(dim), keepdim

    def forward(self, x):
        return torch.mean(x, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class Amax(nn.Module):
    """``torch.amax(x, dim, keepdim)`` as a module (dims include the batch)."""

    def __init__(self, dim, keepdim=False):
        super().__init__()
        self.dim, self.keepdim = tuple(dim), keepdim

    def forward(self, x):
        return torch.amax(x, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class Narrow(nn.Module):
    """``torch.narrow(x, dim, start, length)`` as a module (dim includes the batch)."""

    def __init__(self, dim, start, length):
        super().__init__()
        self.dim, self.start, self.length = dim, start, length

    def forward(self, x):
        return torch.narrow(x, self.dim, self.start, self.length)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, start={self.start}, length={self.length}"


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an [N, C, H, W] map at each position, as
    torchvision's ConvNeXt ``LayerNorm2d``: ``weight`` and ``bias`` are its own."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
