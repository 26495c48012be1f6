"""A second, independent evaluation of a checked network, for differential tests.

A built model runs the forward that netdsl/backend/forward.py writes as Python source:
the one implementation of what each construct does. This module reads the same IR and
evaluates it directly, node by node, with a dict of named tensors instead of
generated variables, calling the built model's own leaf modules (their arithmetic is
torch's; the wiring between them is what is compared). Where the two disagree, the
writer has wired something wrongly: a variable written over while a later statement
still reads it, a branch fed the wrong tensor, a merge of the wrong results.

Eval mode only: a side head does not run there, and nothing random does.

    >>> import netdsl, torch
    >>> spec = "network n() { input image: [3, 8, 8]\\n from image\\n conv2d(3, 1)\\n -> y\\n add(y, image) }"
    >>> model = netdsl.build(spec).eval()
    >>> x = torch.randn(1, 3, 8, 8)
    >>> torch.equal(evaluate(netdsl.compile(spec), model, x), model(x))
    True
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from netdsl import ir
from netdsl.layers import KINDS

_MODULES = {"F": F, "torch": torch}


def evaluate(net: ir.Network, model: torch.nn.Module, *xs: torch.Tensor):
    """``model``'s eval-mode output on ``xs``, computed from ``net``'s IR."""
    names: dict[str, torch.Tensor] = {}
    for i, x in zip(net.inputs, xs, strict=False):
        names[i.name] = x
    out = _seq(net.body, xs[0], model, "", names)
    result = net.result
    if result is None:
        return out
    values = [names[s] for s in result.sources]
    if result.form == "dict":
        return dict(zip(result.keys, values, strict=True))
    return tuple(values)


def _function(path: str):
    """A catalogue function such as ``F.relu`` or ``torch.flatten``, by attribute lookup."""
    owner, _, name = path.partition(".")
    return getattr(_MODULES[owner], name)


def _attr(model: torch.nn.Module, path: str):
    return functools.reduce(getattr, path.split("."), model)


def _seq(nodes, x, model, prefix: str, names: dict):
    for node in nodes:
        x = _one(node, x, model, prefix, names)
    return x


def _one(node, x, model, prefix: str, names: dict):  # noqa: PLR0911, PLR0912 - one case per construct
    if isinstance(node, ir.Layer):
        kind = KINDS[node.kind]
        if node.functional:
            args = kind.function_args(node)
            kwargs = {k: v for k, v in args if k is not None}
            if kind.training_arg:
                kwargs["training"] = model.training
            return _function(kind.function)(x, *[v for k, v in args if k is None], **kwargs)
        if kind.bare_parameter:
            return _attr(model, prefix + node.name) * x
        return model.get_submodule(prefix + node.name)(x)
    if isinstance(node, ir.Scope):
        # A block instance has names of its own, its inputs the first (the results passed
        # in, or the current one); a labelled group shares its body's.
        given = [names[s] for s in node.sources] if node.sources else [x]
        own = dict(zip(node.inputs, given, strict=True)) if node.inputs else {}
        out = _seq(node.body, given[0], model, f"{prefix}{node.name}.", own if node.cls is not None else names)
        if node.outputs:
            names.update(zip(node.targets, [own[o] for o in node.outputs], strict=True))
            return None  # no current result: a `from` comes next
        return out
    if isinstance(node, ir.Residual):
        out = _seq(node.body, x, model, prefix, names)
        identity = x if node.shortcut is None else _seq(node.shortcut, x, model, prefix, names)
        return out + identity
    if isinstance(node, ir.Concat):
        return torch.cat([_seq(b, x, model, prefix, names) for b in node.branches], 1)
    if isinstance(node, ir.Dense):
        features = [x]
        for layer in node.layers:
            features.append(_seq(layer, torch.cat(features, 1), model, prefix, names))
        return torch.cat(features, 1)
    if isinstance(node, ir.Gate):
        return _seq(node.body, x, model, prefix, names) * x
    if isinstance(node, ir.Side):
        return x  # training only
    if isinstance(node, ir.Bind):
        names[node.name] = x
        return x
    if isinstance(node, ir.From):
        return names[node.name]
    if isinstance(node, ir.Merge):
        return _merge(node, [names[s] for s in node.sources])
    if isinstance(node, ir.Chunk):
        source = names[node.source]
        size = source.shape[node.dim + 1] // len(node.targets)
        parts = [source.narrow(node.dim + 1, k * size, size) for k in range(len(node.targets))]
        names.update(zip(node.targets, parts, strict=True))
        return parts[0]
    if isinstance(node, ir.Split):
        parts = torch.split(x, list(node.sizes), 1)
        return torch.cat([_seq(body, p, model, prefix, names) for body, p in zip(node.parts, parts, strict=True)],
                         1)
    raise TypeError(f"no evaluation for {type(node).__name__}")


def _merge(node: ir.Merge, values: list[torch.Tensor]) -> torch.Tensor:
    if node.op == "concat":
        return torch.cat(values, 1)
    a, b = values[0], values[-1]
    if node.op == "resize":
        kwargs = {} if node.align_corners is None else {"align_corners": node.align_corners}
        return F.interpolate(a, size=tuple(b.shape[-2:]), mode=node.mode or "nearest", **kwargs)
    if node.op == "matmul":
        return torch.matmul(a, b)
    if node.op == "crop":
        h, w = b.shape[-2:]
        top, left = node.offset or ((a.shape[-2] - h) // 2, (a.shape[-1] - w) // 2)
        return a[:, :, top:top + h, left:left + w]
    op = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[node.op]
    return functools.reduce(op, values + ([node.by] if node.by is not None else []))
