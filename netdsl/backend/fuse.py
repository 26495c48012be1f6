"""Inference mode: fold batch norms and activations into the convolutions before
them, and run the convolutions the way an inference runtime does on a CPU.

In eval mode a batch norm is an affine map per channel with fixed statistics,
``y = (x - mean) / sqrt(var + eps) * gamma + beta``; applied to a convolution's
output it is the same as a convolution with scaled weights and a new bias, so
the fused model skips one pass over every such activation.

Folding alone saves a few percent of a CPU forward, which the convolutions
dominate; what makes them faster is how they run (docs/benchmarks.md measures
each step). So the fused model also:

- holds its 4-D weights in ``channels_last`` (NHWC) and converts each 4-D input
  once, at the network's entry: oneDNN's convolutions work in NHWC, so no layer
  reorders its activations. A 4-D output is handed back in torch's default
  (contiguous) format, so a caller sees the same tensors as before.
- calls oneDNN's convolution directly (``torch.ops.mkldnn._convolution_pointwise``,
  what Inductor's CPU backend emits) for every convolution: torch's own dispatch
  sends a 1x1 convolution at batch below 16 on one thread to its im2col-and-GEMM
  path, which is about twice as slow there.
- folds a piecewise-linear activation (relu, relu6, hardswish, hardsigmoid,
  leaky_relu) that directly follows a convolution into it, as oneDNN's post-op:
  it is applied while the output is still in cache.

The fast kernel has no autograd formula, and only oneDNN's CPU float32 path is
used; so it runs only for CPU float32 tensors with autograd off for them
(``torch.no_grad()`` / ``inference_mode``, or nothing requiring grad), and not
while FX, TorchScript, ``torch.compile`` or ``torch.export`` trace the model.
Otherwise each folded convolution runs ``F.conv2d`` and its folded activation,
the same function, so gradients, CUDA and tracing stay right.

The transform works on the built module and its forward's source. A
convolution followed by a batch norm is two consecutive statements of a
generated forward (``out = self.conv1(x)``, ``out = self.bn1(out)``) or two
consecutive children of an ``nn.Sequential``, where the first's output goes only
to the second. Such a pair is folded wherever it sits (residual bodies and
shortcuts, concat branches, dense layers, gates, split parts, named dataflow),
the batch norm becomes an ``nn.Identity`` under its own name, and the
statement that called it is removed: the fused module's class has the forward
without it, readable as before (``inspect.getsource``). A folded activation's
statement goes too (in a ``nn.Sequential`` it becomes an ``nn.Identity``); its
module stays, since a block may call it again elsewhere (ResNet's one
``relu``). Which activations fold, and as what post-op, is the layer
catalogue's (``Kind.post_op``). A class that forms of a block share calls a
module some of them lack under ``if self.NAME is not None``; a fused instance
runs that forward as its own form would, the guard replaced by its call or
dropped, so that a convolution and its batch norm are consecutive again.

A fused model computes the eval-mode function only: batch statistics and
running-statistics updates are gone. So it refuses to train: ``.train()``
raises, and so does a forward call in training mode.
"""

from __future__ import annotations

import ast
import collections
import textwrap
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Proxy

from ..layers import LAYERS
from ..layers.base import _torch_class
from .runtime import SpecModule, spec_class

REFUSAL = ("this model was built with fuse=True: its batch norms are folded into the "
           "convolutions before them, which computes the eval-mode function only "
           "(no batch statistics, no running-statistics updates); build it without "
           "fuse to train it")

# What fuse() does, in order; each step needs the ones before it. bench/fuse.py
# measures them one by one (``fuse(model, steps=STEPS[:k])``).
STEPS = ("batchnorm", "channels_last", "onednn", "activation")


class FusedModelTrainingError(RuntimeError):
    """A model whose batch norms were folded away was asked to train."""


def fuse(model: nn.Module, *, steps: tuple[str, ...] = STEPS) -> nn.Module:
    """Make ``model`` an inference model, in place, and return it: fold every batch
    norm and activation that directly follows a convolution into it, hold the
    weights in ``channels_last``, run the convolutions on oneDNN; put the model
    in eval mode for good. ``steps`` is a prefix of :data:`STEPS` (for measuring).

    >>> import netdsl, torch
    >>> m = netdsl.build("network n() { input [3, 8, 8]\\n c: conv2d(4, 3, bias = false)\\n b: batchnorm2d\\n relu }")
    >>> x = torch.randn(2, 3, 8, 8)
    >>> expected = m.eval()(x)
    >>> f = fuse(m)
    >>> type(f.b).__name__, type(f.c).__name__, f.c.bias is not None
    ('Identity', 'FusedConv2d', True)
    >>> with torch.no_grad():
    ...     torch.allclose(f(x), expected, atol=1e-6)
    True
    >>> f.train()
    Traceback (most recent call last):
      ...
    netdsl.backend.fuse.FusedModelTrainingError: this model was built with fuse=True: ...
    """
    if tuple(steps) != STEPS[:len(steps)]:
        raise ValueError(f"steps must be a prefix of {STEPS}, got {tuple(steps)}")
    model.eval()
    if "onednn" in steps:
        for m in model.modules():
            if _convertible(m):
                m.__class__ = FusedConv2d  # in place: every forward calls this very object
                object.__setattr__(m, "_post", None)
    fuser = _Fuser(model, batchnorm="batchnorm" in steps, activation="activation" in steps)
    for owner in list(model.modules()):
        if isinstance(owner, nn.Sequential):
            fuser.sequential(owner)
        elif _forward_source(owner) is not None:
            fuser.forward(owner)
    if "channels_last" in steps:
        model.to(memory_format=torch.channels_last)
        if _forward_source(model) is not None:
            _channels_last(model)
    model.register_forward_pre_hook(_refuse_training)
    # An instance attribute, so the class (shared by every model of the spec) is untouched.
    object.__setattr__(model, "train", _TrainRefusal(model))
    return model


class FusedConv2d(nn.Conv2d):
    """A convolution of a fused model: a plain ``nn.Conv2d`` (same parameters, same
    ``state_dict``) that runs on oneDNN where it can, with the activation folded
    into it, if any, applied as oneDNN's post-op.

    ``_post`` is ``None`` or ``(kind, kwargs)`` of that activation: a layer kind of
    the catalogue whose ``post_op`` folds it, and the keyword arguments of
    ``torch.nn.functional.<kind>``, which runs where oneDNN does not.
    """

    _post: tuple | None = None

    def forward(self, x):
        post = self._post
        if _onednn_applies(x, self.weight):
            attr, scalars = ("none", []) if post is None else _post_op(post)
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                attr, scalars, None)
        y = self._conv_forward(x, self.weight, self.bias)
        return y if post is None else _POST[post[0]](y, **post[1])

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self._post is None else f"{s}, then {self._post[0]}"


def _post_op(post: tuple) -> tuple[str, list[float]]:
    found = LAYERS[post[0]].post_op(post[1])
    assert found is not None  # only kinds with a post-op are folded
    return found


def _onednn_applies(x, weight) -> bool:
    """Whether oneDNN's kernel may run: a CPU float32 tensor, no autograd to record
    (the kernel has no backward), oneDNN on, and no tracer or compiler watching
    (they get the plain ops, which they know)."""
    if isinstance(x, Proxy) or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return torch._C._get_mkldnn_enabled()  # torch.backends.mkldnn.flags(enabled=False)


# The activations a convolution folds (kind → torch.nn.functional's function of that
# name, which runs where oneDNN does not): those the catalogue gives a post-op.
_POST = {name: getattr(F, name) for name, kind in LAYERS.items()
         if kind.post_op(kind.post_kwargs(None)) is not None}


def _activation_module(m: nn.Module) -> tuple | None:
    """``(kind, kwargs)`` of a module that is a foldable activation, else None."""
    for name in _POST:
        if type(m) is _torch_class(LAYERS[name].torch_class):
            return name, LAYERS[name].post_kwargs(m)
    return None


def _activation_function(call: ast.Call) -> tuple | None:
    """``(kind, kwargs)`` of a generated call of a foldable activation's function
    (``F.relu(out, inplace=True)``), else None."""
    func = ast.unparse(call.func)
    for name in _POST:
        kind = LAYERS[name]
        if kind.function and kind.function == func:
            return name, kind.post_kwargs(None)
    return None


def _convertible(m) -> bool:
    # Exactly nn.Conv2d (not a subclass a user made), with numeric zero padding,
    # which is what the oneDNN kernel takes; and a torch that has the kernel (a
    # private op: a build or version without it keeps torch's convolution).
    return (type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and torch.backends.mkldnn.is_available() and _has_kernel())


def _has_kernel() -> bool:
    return hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def to_channels_last(x):
    """A 4-D input in ``channels_last``, once, at the network's entry (a Proxy, while
    FX traces, as it is)."""
    if isinstance(x, torch.Tensor) and not isinstance(x, Proxy) and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def to_default_format(y):
    """A 4-D output handed back in torch's default (contiguous) format."""
    if isinstance(y, tuple):
        return type(y)(*map(to_default_format, y)) if hasattr(y, "_fields") else \
            tuple(map(to_default_format, y))
    if isinstance(y, dict):
        return {k: to_default_format(v) for k, v in y.items()}
    if isinstance(y, torch.Tensor) and not isinstance(y, Proxy) and y.ndim == 4:
        return y.contiguous()
    return y


class _TrainRefusal:
    """``model.train``: ``train(False)`` (what ``eval()`` calls) is allowed, nothing else."""

    def __init__(self, model):
        self.model = model

    def __call__(self, mode: bool = True):
        if mode:
            raise FusedModelTrainingError(REFUSAL)
        return nn.Module.train(self.model, False)

    def __reduce__(self):
        return (_TrainRefusal, (self.model,))


def _refuse_training(module, args):
    if module.training:
        raise FusedModelTrainingError(REFUSAL)


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    assert bn.running_var is not None and bn.running_mean is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = shift.to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(bias)


# -- a generated forward, as Python's syntax tree

def _forward_source(m: nn.Module) -> str | None:
    """The source of the forward netdsl wrote for ``m``'s class, or None."""
    recipe = type(m).__dict__.get("_recipe") if isinstance(m, SpecModule) else None
    return None if recipe is None else recipe[4]


def _parse(m: nn.Module) -> ast.FunctionDef:
    source = _forward_source(m)
    assert source is not None
    fn = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(fn, ast.FunctionDef)
    return fn


def _callee(owner: nn.Module, func: ast.expr) -> nn.Module | None:
    """The submodule of ``owner`` a generated call names (``self.conv1``,
    ``self.fpn.inner1``, ``getattr(self, '1')``, ``self.get_submodule('a.b')``)."""
    if isinstance(func, ast.Attribute):
        base = owner if isinstance(func.value, ast.Name) and func.value.id == "self" else \
            _callee(owner, func.value)
        return None if base is None else base._modules.get(func.attr)
    if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr" \
            and len(func.args) == 2 and isinstance(func.args[1], ast.Constant):
        return owner._modules.get(str(func.args[1].value))
    if isinstance(func, ast.Call) and isinstance(func.func, ast.Attribute) and \
            func.func.attr == "get_submodule" and isinstance(func.args[0], ast.Constant):
        try:
            return owner.get_submodule(str(func.args[0].value))
        except AttributeError:
            return None
    return None


class _Step(NamedTuple):
    """A statement ``target = call(arg)`` of a generated forward (``arg`` None where the
    argument is not one plain variable)."""

    stmt: ast.Assign
    target: str
    call: ast.Call
    arg: str | None


def _step(stmt: ast.stmt) -> _Step | None:
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.Call)):
        return None
    call = stmt.value
    first = call.args[0] if len(call.args) == 1 else None
    return _Step(stmt, stmt.targets[0].id, call, first.id if isinstance(first, ast.Name) else None)


def _statements(fn: ast.FunctionDef) -> list[ast.stmt]:
    """Every statement of a function in the order it is written, nested ones included."""
    out: list[ast.stmt] = []

    def visit(body: list[ast.stmt]) -> None:
        for st in body:
            out.append(st)
            if isinstance(st, ast.If):
                visit(st.body)
                visit(st.orelse)

    visit(fn.body)
    return out


def _own_names(st: ast.stmt) -> list[ast.Name]:
    """The names a statement itself uses: an ``if``'s test, not its body, whose
    statements come next in :func:`_statements`."""
    return [n for n in ast.walk(st.test if isinstance(st, ast.If) else st) if isinstance(n, ast.Name)]


def _only_reader(fn: ast.FunctionDef, writer: ast.stmt, reader: ast.stmt, var: str) -> bool:
    """Whether the value ``writer`` gives ``var`` is read by ``reader`` alone: no other
    statement reads ``var`` before it is written again (generated forwards have no
    loops, so the written order is the order they run in)."""
    order = _statements(fn)
    for st in order[order.index(writer) + 1:]:
        names = [n for n in _own_names(st) if n.id == var]
        if st is not reader and any(isinstance(n.ctx, ast.Load) for n in names):
            return False
        if any(isinstance(n.ctx, ast.Store) for n in names):
            return True
    return True


def _optional_test(test: ast.expr) -> str | None:
    """NAME where ``test`` is ``self.NAME is not None``: the guard of a module some
    instances of a class lack (netdsl.backend.forms)."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.IsNot) \
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None \
            and isinstance(test.left, ast.Attribute) and isinstance(test.left.value, ast.Name) \
            and test.left.value.id == "self":
        return test.left.attr
    return None


def _specialise(m: nn.Module, lines: list[str]) -> list[str]:
    """A forward's lines as this instance runs them: each ``if self.NAME is not None:``
    of a module some instances of its class lack replaced by its body where ``m`` has
    the module, dropped where it is None. A convolution and the batch norm after it
    are then consecutive statements again, and fold as in a class of their own."""
    fn = ast.parse("\n".join(lines)).body[0]
    assert isinstance(fn, ast.FunctionDef)
    out = list(lines)
    for st in reversed(_statements(fn)):
        name = _optional_test(st.test) if isinstance(st, ast.If) and not st.orelse else None
        if name is None or name not in m._modules and getattr(m, name, False) is not None:
            continue
        assert isinstance(st, ast.If) and st.end_lineno is not None
        body = [] if m._modules.get(name) is None else \
            [line[4:] for line in out[st.body[0].lineno - 1:st.end_lineno]]
        out[st.lineno - 1:st.end_lineno] = body
    return out


class _Source:
    """A generated forward being edited: its lines, and its syntax tree for finding
    what to edit. Every statement netdsl writes is one line, so an edit is a line
    removed or a target renamed, and each line keeps its spec comment."""

    def __init__(self, m: nn.Module):
        source = _forward_source(m)
        assert source is not None
        self.lines = _specialise(m, textwrap.dedent(source).split("\n"))
        fn = ast.parse("\n".join(self.lines)).body[0]
        assert isinstance(fn, ast.FunctionDef)
        self.fn = fn
        self.dropped: set[int] = set()
        self.changed = False

    def drop(self, stmt: ast.stmt) -> None:
        self.dropped.add(stmt.lineno - 1)
        self.changed = True

    def retarget(self, stmt: ast.Assign, name: str) -> None:
        line = self.lines[stmt.lineno - 1]
        old = stmt.targets[0]
        assert isinstance(old, ast.Name) and old.end_col_offset is not None
        self.lines[stmt.lineno - 1] = line[:old.col_offset] + name + line[old.end_col_offset:]
        old.id = name
        self.changed = True

    def install(self, m: nn.Module) -> None:
        """Give ``m`` a class of the same name with this forward."""
        base, name, module, doc, _, outputs = type(m).__dict__["_recipe"]
        text = "\n".join(line for i, line in enumerate(self.lines) if i not in self.dropped)
        m.__class__ = spec_class(base, name, module, doc, textwrap.indent(text, "    "), outputs)


def _channels_last(root: nn.Module) -> None:
    """The network's forward with each 4-D input made ``channels_last`` once, and each
    output handed back in the default format."""
    src = _Source(root)
    indent = " " * src.fn.body[0].col_offset
    head = [f"{indent}{a.arg} = to_channels_last({a.arg})  # fused: NHWC inside"
            for a in src.fn.args.args[1:]]
    for node in ast.walk(src.fn):
        if isinstance(node, ast.Return) and node.value is not None:
            line = src.lines[node.lineno - 1]
            v = node.value
            text = line[v.col_offset:v.end_col_offset]
            if isinstance(v, ast.Tuple) and not text.startswith("("):
                text = f"({text})"  # `return a, b`: one tuple, one argument
            src.lines[node.lineno - 1] = (line[:v.col_offset] + f"to_default_format({text})"
                                          + line[v.end_col_offset:])
    src.lines[src.fn.lineno:src.fn.lineno] = head
    src.changed = True
    src.install(root)


class _Fuser:
    """Folds along every generated forward and ``nn.Sequential`` of one model."""

    def __init__(self, model: nn.Module, batchnorm: bool, activation: bool):
        self.batchnorm, self.activation = batchnorm, activation
        # How many places call each module (a reused label calls one from several).
        self.uses: collections.Counter = collections.Counter()
        for owner in model.modules():
            if isinstance(owner, nn.Sequential):
                self.uses.update(id(m) for m in owner._modules.values())
            elif _forward_source(owner) is not None:
                for node in ast.walk(_parse(owner)):
                    if isinstance(node, ast.Call):
                        callee = _callee(owner, node.func)
                        if callee is not None:
                            self.uses[id(callee)] += 1

    def _pair(self, conv: nn.Module | None, bn: nn.Module | None) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
        """The convolution and the batch norm after it, where the one folds into the
        other: a convolution or batch norm called from two places is folded nowhere
        (the other place needs it as it was)."""
        if not (self.batchnorm and isinstance(conv, nn.Conv2d) and type(conv) in (nn.Conv2d, FusedConv2d)
                and self.uses[id(conv)] == 1 and getattr(conv, "_post", None) is None
                and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                and bn.running_mean is not None and conv.out_channels == bn.num_features
                and self.uses[id(bn)] == 1):
            return None
        return conv, bn

    def _post_target(self, conv: nn.Module | None) -> FusedConv2d | None:
        """The convolution an activation after it may fold into."""
        if (self.activation and isinstance(conv, FusedConv2d) and conv._post is None
                and self.uses[id(conv)] == 1):
            return conv
        return None

    def sequential(self, seq: nn.Sequential) -> None:
        names = list(seq._modules)
        children = [seq._modules[n] for n in names]
        i = 0
        while i < len(children):
            conv = children[i]
            i += 1
            pair = self._pair(conv, children[i]) if i < len(children) else None
            if pair is not None:
                _fold(*pair)
                seq._modules[names[i]] = nn.Identity()  # same name, so later children keep theirs
                i += 1
            target = self._post_target(conv)
            if i < len(children) and target is not None:
                act = _activation_module(children[i])
                if act is not None:
                    target._post = act
                    seq._modules[names[i]] = nn.Identity()
                    i += 1

    def forward(self, owner: nn.Module) -> None:
        """Fold along ``owner``'s forward; give it the class of the forward without the
        folded statements, where any were."""
        src = _Source(owner)
        for body in [src.fn.body] + [st.body for st in _statements(src.fn) if isinstance(st, ast.If)]:
            self._fold_statements(owner, src, body)
        if src.changed:
            src.install(owner)

    def _fold_statements(self, owner: nn.Module, src: _Source, body: list[ast.stmt]) -> None:
        i = 0
        while i < len(body):
            first = _step(body[i])
            conv = None if first is None else _callee(owner, first.call.func)
            if first is None or conv is None:
                i += 1
                continue
            target = first.target
            nxt = _step(body[i + 1]) if i + 1 < len(body) else None
            if nxt is not None and nxt.arg == target and _only_reader(src.fn, body[i], body[i + 1], target):
                bn = _callee(owner, nxt.call.func)
                pair = self._pair(conv, bn)
                if pair is not None:
                    _fold(*pair)
                    holder = _owner_of(owner, pair[1])
                    for name, child in list(holder._modules.items()):
                        if child is pair[1]:
                            holder._modules[name] = nn.Identity()  # its name stays, for hooks
                    src.retarget(first.stmt, nxt.target)
                    src.drop(nxt.stmt)
                    del body[i + 1]
                    target = nxt.target
                    nxt = _step(body[i + 1]) if i + 1 < len(body) else None
            post = self._post_target(conv)
            if nxt is not None and post is not None and nxt.arg == target \
                    and _only_reader(src.fn, body[i], body[i + 1], target):
                callee = _callee(owner, nxt.call.func)
                act = _activation_module(callee) if callee is not None else _activation_function(nxt.call)
                if act is not None:
                    post._post = act
                    src.retarget(first.stmt, nxt.target)
                    src.drop(nxt.stmt)
                    del body[i + 1]
            i += 1


def _owner_of(root: nn.Module, child: nn.Module) -> nn.Module:
    for m in root.modules():
        if any(c is child for c in m._modules.values()):
            return m
    raise AssertionError("a callee that no module holds")


__all__ = ["fuse", "FusedConv2d", "FusedModelTrainingError", "REFUSAL", "STEPS"]
