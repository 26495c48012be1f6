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

The transform works on the built module: a netdsl model wires its children
through small plan objects (:mod:`netdsl.backend.runtime`), so a convolution followed by
a batch norm is two consecutive steps of one plan, or two consecutive children
of a ``nn.Sequential``; the output of the first goes only to the second. Such a
pair is folded wherever it sits (residual bodies and shortcuts, concat branches,
dense layers, gates, split parts, named dataflow), and the batch norm becomes an
``nn.Identity`` under its own name, dropped from the plan so that nothing runs
in its place. A folded activation is dropped from the plan too (in a
``nn.Sequential`` it becomes an ``nn.Identity``); in a plan its module stays,
since a block may call it again elsewhere (ResNet's one ``relu``).

A fused model computes the eval-mode function only: batch statistics and
running-statistics updates are gone. So it refuses to train: ``.train()``
raises, and so does a forward call in training mode.
"""

from __future__ import annotations

import collections

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Proxy

from .runtime import Chain, ConcatOp, DenseOp, FunctionOp, GateOp, GraphOp, ResidualOp, SideOp, SplitOp

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
                m.__class__ = FusedConv2d  # in place: the plans hold this very object
                m._post = None
    fuser = _Fuser(model, batchnorm="batchnorm" in steps, activation="activation" in steps)
    for owner in list(model.modules()):
        if isinstance(owner, nn.Sequential):
            fuser.sequential(owner)
            continue
        plan = owner.__dict__.get("_plan")
        if plan is not None:
            object.__setattr__(owner, "_plan", fuser.plan(plan, owner))
    if model.__dict__.get("_steps") and isinstance(model._plan, Chain):
        # The root's top-level steps, which a forward with side outputs walks (never, in
        # eval mode; kept consistent with the plan all the same).
        object.__setattr__(model, "_steps", model._plan.steps)
    if "channels_last" in steps:
        model.to(memory_format=torch.channels_last)
        if "_plan" in model.__dict__:
            object.__setattr__(model, "_plan", ChannelsLast(model._plan))
    model.register_forward_pre_hook(_refuse_training)
    # An instance attribute, so the class (shared by every model of the spec) is untouched.
    object.__setattr__(model, "train", _TrainRefusal(model))
    return model


class FusedConv2d(nn.Conv2d):
    """A convolution of a fused model: a plain ``nn.Conv2d`` (same parameters, same
    ``state_dict``) that runs on oneDNN where it can, with the activation folded
    into it, if any, applied as oneDNN's post-op.

    ``_post`` is ``None`` or ``(name, kwargs)`` of that activation (:data:`_POST`).
    """

    _post: tuple | None = None

    def forward(self, x):
        post = self._post
        if _onednn_applies(x, self.weight):
            attr, scalars, algorithm = ("none", [], None) if post is None else _POST[post[0]][0](post[1])
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                attr, scalars, algorithm)
        y = self._conv_forward(x, self.weight, self.bias)
        return y if post is None else _POST[post[0]][1](y, **post[1])

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self._post is None else f"{s}, then {self._post[0]}"


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


# activation name -> (its oneDNN post-op (attr, scalars, algorithm) from its kwargs,
# its torch function): the two are the same function (tests/test_fuse.py). Only the
# piecewise-linear ones: folded, they save a pass over memory (relu: 244 -> 208 us for
# a 1x1 conv to 96 x 112 x 112, one thread); SiLU's, GELU's and sigmoid's exponentials
# cost the same in the post-op (SiLU a little more), so those stay steps of their own.
_POST = {
    "relu": (lambda k: ("relu", [], None), F.relu),
    "relu6": (lambda k: ("hardtanh", [0.0, 6.0], None), F.relu6),
    "hardswish": (lambda k: ("hardswish", [], None), F.hardswish),
    "hardsigmoid": (lambda k: ("hardsigmoid", [], None), F.hardsigmoid),
    "leaky_relu": (lambda k: ("leaky_relu", [k["negative_slope"]], None), F.leaky_relu),
}


def _activation(step) -> tuple | None:
    """``(name, kwargs)`` of a plan step or child that is a foldable activation, else None."""
    t = type(step)
    if t in _MODULES:
        return _MODULES[t], {}
    if t is nn.LeakyReLU:
        return "leaky_relu", {"negative_slope": float(step.negative_slope)}
    if t is FunctionOp and step.name in _POST:
        return step.name, {}
    return None


_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid"}


def _convertible(m) -> bool:
    # Exactly nn.Conv2d (not a subclass a user made), with numeric zero padding,
    # which is what the oneDNN kernel takes; and a torch that has the kernel (a
    # private op: a build or version without it keeps torch's convolution).
    return (type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and torch.backends.mkldnn.is_available() and _has_kernel())


def _has_kernel() -> bool:
    return hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class ChannelsLast:
    """The network's plan with each 4-D input converted to ``channels_last`` once,
    and each 4-D output back to torch's default format. Under FX tracing (a Proxy)
    the plan runs as it is."""

    __slots__ = ("plan",)

    def __init__(self, plan):
        self.plan = plan

    def __call__(self, *xs):
        if xs and isinstance(xs[0], Proxy):
            return self.plan(*xs)
        out = self.plan(*[x.contiguous(memory_format=torch.channels_last)
                          if isinstance(x, torch.Tensor) and x.ndim == 4 else x for x in xs])
        if isinstance(out, tuple):
            return tuple(_default_format(y) for y in out)
        return _default_format(out)


def _default_format(y):
    return y.contiguous() if isinstance(y, torch.Tensor) and y.ndim == 4 else y


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


class _Fuser:
    """Folds along every plan and ``nn.Sequential`` of one model."""

    def __init__(self, model: nn.Module, batchnorm: bool, activation: bool):
        self.batchnorm, self.activation = batchnorm, activation
        # How many places call each module (a reused label calls one from several).
        self.uses: collections.Counter = collections.Counter()
        for owner in model.modules():
            if isinstance(owner, nn.Sequential):
                self.uses.update(id(m) for m in owner._modules.values())
            plan = owner.__dict__.get("_plan")
            if plan is not None:
                self._count(plan)

    def _count(self, plan) -> None:
        for s in _substeps(plan):
            if isinstance(s, nn.Module):
                self.uses[id(s)] += 1
            else:
                self._count(s)

    def _bn_after(self, conv, bn) -> bool:
        # A convolution or batch norm called from two places is folded nowhere: the
        # other place needs it as it was.
        return (self.batchnorm and type(conv) in (nn.Conv2d, FusedConv2d) and self.uses[id(conv)] == 1
                and getattr(conv, "_post", None) is None and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats and bn.running_mean is not None
                and conv.out_channels == bn.num_features and self.uses[id(bn)] == 1)

    def _act_after(self, conv, step) -> tuple | None:
        if not (self.activation and type(conv) is FusedConv2d and conv._post is None
                and self.uses[id(conv)] == 1):
            return None
        return _activation(step)

    def run(self, steps: list, replace) -> list:
        """``steps`` with each folded batch norm and activation gone; ``replace(i)``
        puts an Identity where step i was, when it is a child to keep a name for."""
        out, i = [], 0
        while i < len(steps):
            step = steps[i]
            out.append(step)
            i += 1
            if i < len(steps) and self._bn_after(step, steps[i]):
                _fold(step, steps[i])
                replace(i, steps[i])
                i += 1
            if i < len(steps):
                act = self._act_after(step, steps[i])
                if act is not None:
                    step._post = act
                    i += 1
        return out

    def sequential(self, seq: nn.Sequential) -> None:
        names = list(seq._modules)
        children = [seq._modules[n] for n in names]

        def replace(i, _child):
            seq._modules[names[i]] = nn.Identity()  # same name, so later children keep theirs

        kept = {id(m) for m in self.run(children, replace)}
        for n, m in zip(names, children):
            if id(m) not in kept and not isinstance(seq._modules[n], nn.Identity):
                seq._modules[n] = nn.Identity()  # a folded activation

    def plan(self, plan, owner: nn.Module):
        """The plan with each folded step gone from it (plans are rewritten in place
        where they hold a tuple, and the plan itself is returned)."""
        if isinstance(plan, Chain):
            def replace(i, bn):
                for name, m in owner._modules.items():
                    if m is bn:
                        owner._modules[name] = nn.Identity()

            plan.steps = tuple(self.plan(s, owner) for s in self.run(list(plan.steps), replace))
            return plan
        if isinstance(plan, ResidualOp):
            plan.body = self.plan(plan.body, owner)
            if plan.shortcut is not None:
                plan.shortcut = self.plan(plan.shortcut, owner)
        elif isinstance(plan, ConcatOp):
            plan.branches = tuple(self.plan(b, owner) for b in plan.branches)
        elif isinstance(plan, DenseOp):
            plan.layers = tuple(self.plan(lay, owner) for lay in plan.layers)
        elif isinstance(plan, (GateOp, SideOp)):
            plan.body = self.plan(plan.body, owner)
        elif isinstance(plan, SplitOp):
            plan.parts = tuple(self.plan(p, owner) for p in plan.parts)
        elif isinstance(plan, GraphOp):
            plan.steps = tuple((self.plan(fn, owner), src, dst, free) for fn, src, dst, free in plan.steps)
        return plan


def _substeps(plan) -> list:
    """The steps a plan calls directly (modules, or plans in their turn)."""
    if isinstance(plan, Chain):
        return list(plan.steps)
    if isinstance(plan, ResidualOp):
        return [plan.body] + ([plan.shortcut] if plan.shortcut is not None else [])
    if isinstance(plan, ConcatOp):
        return list(plan.branches)
    if isinstance(plan, DenseOp):
        return list(plan.layers)
    if isinstance(plan, (GateOp, SideOp)):
        return [plan.body]
    if isinstance(plan, SplitOp):
        return list(plan.parts)
    if isinstance(plan, GraphOp):
        return [fn for fn, *_ in plan.steps]
    return [plan] if isinstance(plan, nn.Module) else []


__all__ = ["fuse", "FusedConv2d", "FusedModelTrainingError", "REFUSAL", "STEPS"]
