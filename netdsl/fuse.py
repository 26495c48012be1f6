"""Inference fusion: fold each batch norm into the convolution that feeds it.

In eval mode a batch norm is an affine map per channel with fixed statistics,
``y = (x - mean) / sqrt(var + eps) * gamma + beta``; applied to a convolution's
output it is the same as a convolution with scaled weights and a new bias, so
the fused model skips one pass over every such activation.

The transform works on the built module: a netdsl model wires its children
through small plan objects (:mod:`netdsl.modules`), so a convolution followed by
a batch norm is two consecutive steps of one plan, or two consecutive children
of a ``nn.Sequential``; the output of the first goes only to the second. Such a
pair is folded wherever it sits (residual bodies and shortcuts, concat branches,
dense layers, gates), and the batch norm becomes an ``nn.Identity`` under its
own name, dropped from the plan so that nothing runs in its place.

A fused model computes the eval-mode function only: batch statistics and
running-statistics updates are gone. So it refuses to train: ``.train()``
raises, and so does a forward call in training mode.
"""

from __future__ import annotations

import torch
from torch import nn

from .modules import Chain, ConcatOp, DenseOp, GateOp, ResidualOp, SideOp

REFUSAL = ("this model was built with fuse=True: its batch norms are folded into the "
           "convolutions before them, which computes the eval-mode function only "
           "(no batch statistics, no running-statistics updates); build it without "
           "fuse to train it")


class FusedModelTrainingError(RuntimeError):
    """A model whose batch norms were folded away was asked to train."""


def fuse(model: nn.Module) -> nn.Module:
    """Fold every batch norm that directly follows a convolution into it, in place,
    put the model in eval mode for good, and return it.

    >>> import netdsl, torch
    >>> m = netdsl.build("network n() { input [3, 8, 8]\\n c: conv2d(4, 3, bias = false)\\n b: batchnorm2d\\n relu }")
    >>> x = torch.randn(2, 3, 8, 8)
    >>> expected = m.eval()(x)
    >>> f = fuse(m)
    >>> type(f.b).__name__, f.c.bias is not None, torch.allclose(f(x), expected, atol=1e-6)
    ('Identity', True, True)
    >>> f.train()
    Traceback (most recent call last):
      ...
    netdsl.fuse.FusedModelTrainingError: this model was built with fuse=True: ...
    """
    model.eval()
    folded: dict[int, nn.Module] = {}  # id -> each folded batch norm
    for owner in list(model.modules()):
        if isinstance(owner, nn.Sequential):
            _fuse_sequential(owner)
            continue
        plan = owner.__dict__.get("_plan")
        if plan is not None:
            object.__setattr__(owner, "_plan", _fuse_plan(plan, owner, folded))
        steps = owner.__dict__.get("_steps")
        if steps:  # the root's top-level steps, which a forward with side outputs walks
            object.__setattr__(owner, "_steps", _drop_folded(steps, folded))
    model.register_forward_pre_hook(_refuse_training)
    # An instance attribute, so the class (shared by every model of the spec) is untouched.
    object.__setattr__(model, "train", _TrainRefusal(model))
    return model


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


def _foldable(conv, bn) -> bool:
    return (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d)
            and bn.track_running_stats and bn.running_mean is not None
            and conv.out_channels == bn.num_features)


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


def _fuse_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for a, b in zip(names, names[1:]):
        conv, bn = seq._modules[a], seq._modules[b]
        if _foldable(conv, bn):
            _fold(conv, bn)
            seq._modules[b] = nn.Identity()  # same name, so later children keep theirs


def _fuse_plan(plan, owner: nn.Module, folded: dict):
    """The plan with each folded batch norm gone from it (plans are rewritten in
    place where they hold a tuple, and the plan itself is returned)."""
    if isinstance(plan, Chain):
        steps = list(plan.steps)
        for i in range(len(steps) - 1):
            conv, bn = steps[i], steps[i + 1]
            if _foldable(conv, bn) and _child_name(owner, bn) is not None:
                _fold(conv, bn)
                owner._modules[_child_name(owner, bn)] = nn.Identity()
                folded[id(bn)] = bn  # kept alive, so its id is not reused
        plan.steps = tuple(_fuse_plan(s, owner, folded) for s in steps if id(s) not in folded)
        return plan
    if isinstance(plan, ResidualOp):
        plan.body = _fuse_plan(plan.body, owner, folded)
        if plan.shortcut is not None:
            plan.shortcut = _fuse_plan(plan.shortcut, owner, folded)
    elif isinstance(plan, ConcatOp):
        plan.branches = tuple(_fuse_plan(b, owner, folded) for b in plan.branches)
    elif isinstance(plan, DenseOp):
        plan.layers = tuple(_fuse_plan(lay, owner, folded) for lay in plan.layers)
    elif isinstance(plan, (GateOp, SideOp)):
        plan.body = _fuse_plan(plan.body, owner, folded)
    return plan


def _drop_folded(steps: tuple, folded: dict) -> tuple:
    return tuple(s for s in steps if id(s) not in folded)


def _child_name(owner: nn.Module, child: nn.Module) -> str | None:
    for name, m in owner._modules.items():
        if m is child:
            return name
    return None


__all__ = ["fuse", "FusedModelTrainingError", "REFUSAL"]
