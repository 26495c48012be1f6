"""Checking a spec against a reference PyTorch model from a test suite.

``assert_equivalent`` builds the spec, loads the reference's weights into it
strictly and compares the two models (see :mod:`netdsl.analysis.compare` for the checks);
on any difference it raises ``AssertionError`` whose message is the report that
``netdsl verify`` prints, naming the first module whose output differs and the
spec line that made it. It fits a pytest test as it is::

    def test_my_resnet():
        assert_equivalent("specs/my_resnet.net", torchvision.models.resnet50,
                          input=(3, 64, 64))
"""

from __future__ import annotations

import os

import torch
from torch import nn

from . import ir
from .analysis.compare import ATOL, RTOL, Report, compare, module_spans


def reference_module(reference, kwargs: dict | None = None) -> nn.Module:
    """``reference`` as a module: a module as it is, or a constructor called with ``kwargs``.

    >>> type(reference_module(torch.nn.Linear, {"in_features": 2, "out_features": 1})).__name__
    'Linear'
    """
    if isinstance(reference, nn.Module):
        if kwargs:
            raise TypeError("reference_args apply to a constructor; the reference is already a module")
        return reference
    if not callable(reference):
        raise TypeError(f"reference must be an nn.Module or a callable that returns one, "
                        f"not {type(reference).__name__}")
    made = reference(**(kwargs or {}))
    if not isinstance(made, nn.Module):
        raise TypeError(f"{getattr(reference, '__qualname__', reference)!r} returned "
                        f"{type(made).__name__}, not an nn.Module")
    return made


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm of ``model`` random running statistics and affine
    parameters, in place, and return it.

    Fresh batch norms (mean 0, variance 1, weight 1, bias 0) are close to the
    identity in eval mode, so an eval comparison would not exercise their
    statistics or ``eps``; and with small initial weights a fresh network's
    outputs can be so near zero that any absolute tolerance passes. Randomise
    the reference before comparing (the spec's model receives its weights).

    >>> bn = randomise_norms(torch.nn.BatchNorm2d(3))
    >>> bool((bn.running_var != 1).all())
    True
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.running_mean is not None and m.running_var is not None:  # both, or neither
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def _name(obj) -> str:
    if isinstance(obj, nn.Module):
        return type(obj).__name__ + "()"
    if isinstance(obj, (str, os.PathLike)) and "\n" not in str(obj):
        return str(obj)
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{mod}.{qual}" if mod and qual else "the spec" if isinstance(obj, str) else repr(obj)


def check_equivalent(spec, reference, input=None, *, reference_args: dict | None = None,
                     batch: int = 2, seed: int = 0, atol: float = ATOL, rtol: float = RTOL,
                     train: bool = True, gradients: bool = True, load: bool = True,
                     network: str | None = None, import_path=(), limits=None, grant=None,
                     **overrides) -> Report:
    """:func:`assert_equivalent`'s checks, returning the :class:`~netdsl.analysis.compare.Report`
    instead of raising.

    >>> spec = "network n() { input [4]\\n fc: linear(2) }"
    >>> check_equivalent(spec, torch.nn.Sequential(), input=(4,)).checks[0].summary
    '2 missing'
    """
    from .api import compile as compile_spec
    from .backend.lower import lower

    x = None
    if isinstance(input, torch.Tensor):
        x, input = input, tuple(input.shape[1:])
    if isinstance(spec, nn.Module):
        model, spans = spec, None
        if overrides or network is not None:
            raise TypeError("overrides and network apply to a spec, not to a built model")
    else:
        net = spec if isinstance(spec, ir.Network) else compile_spec(
            spec, network=network, input=input, limits=limits, import_path=import_path, grant=grant,
            **overrides)
        model, spans = lower(net, device="cpu", grant=grant), module_spans(net)
    ref = reference_module(reference, reference_args)
    if x is None:
        shape = tuple(input) if input is not None else tuple(getattr(model, "input_shape", ()))
        if not shape:
            raise TypeError("input is needed: a shape (C, H, W) or a batch tensor")
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))
    return compare(model, ref, x, spans=spans, atol=atol, rtol=rtol, seed=seed, train=train,
                   gradients=gradients, load=load, spec_name=_name(spec), reference_name=_name(reference))


def assert_equivalent(spec, reference, input=None, *, reference_args: dict | None = None,
                      batch: int = 2, seed: int = 0, atol: float = ATOL, rtol: float = RTOL,
                      train: bool = True, gradients: bool = True, load: bool = True,
                      network: str | None = None, import_path=(), limits=None, grant=None,
                      **overrides) -> Report:
    """Assert that ``spec`` builds a model equivalent to ``reference``.

    ``spec`` is what :func:`netdsl.build` takes (a path or spec text; ``overrides``,
    ``network``, ``import_path``, ``limits`` and ``grant`` as there), a checked ``ir.Network``,
    or an already built model (its report then has no spec lines). ``reference``
    is an ``nn.Module`` or a constructor, called with ``reference_args``.
    ``input`` is a shape ``(C, H, W)`` (the spec is compiled for it and a batch
    of ``batch`` random samples drawn with ``seed``) or a batch tensor; by
    default the spec's own ``input``.

    The reference's state_dict is loaded into the spec's model strictly
    (``load=False`` compares the models' own weights), then parameter counts,
    eval outputs, training-mode outputs with both models seeded by ``seed``
    (``train=False`` skips), and the gradients of one fixed loss
    (``gradients=False`` skips) are compared with ``torch.testing.assert_close``'s
    rule, ``|ours - ref| <= atol + rtol * |ref|`` (for a gradient, ``rtol`` is of the
    tensor's largest magnitude: its tiny elements are sums of large terms, which
    another summation order changes by more than their own size). On any difference this raises
    AssertionError with the report as its message; otherwise it returns the report.

    Dropout and stochastic depth agree in training mode only if both models draw
    their random numbers in the same order: a model that runs its random layers
    in another order fails the training check, and the report says so.

    >>> spec = "network n() { input [4]\\n fc: linear(2) }"
    >>> assert_equivalent(spec, torch.nn.Sequential())
    Traceback (most recent call last):
      ...
    AssertionError: the spec vs Sequential(): NOT equivalent (atol=1e-05, rtol=0.0001)
    ...
    >>> class Ref(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x)
    >>> assert_equivalent(spec, Ref).ok
    True
    """
    report = check_equivalent(spec, reference, input, reference_args=reference_args, batch=batch,
                              seed=seed, atol=atol, rtol=rtol, train=train, gradients=gradients,
                              load=load, network=network, import_path=import_path, limits=limits, grant=grant,
                              **overrides)
    if not report.ok:
        raise AssertionError(report.render())
    return report


__all__ = ["assert_equivalent", "check_equivalent", "randomise_norms", "reference_module"]
