"""The Python API: parse, compile (checked IR) and build (nn.Module)."""

from __future__ import annotations

import os
from pathlib import Path

from . import ast, ir
from .diagnostics import Diagnostic, NetdslError
from .elaborate import Checker
from .limits import Limits
from .loader import decode, load, read_source
from .parser import parse as _parse
from .parser import parse_expr


def _is_path(spec) -> bool:
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and "\n" not in spec and "{" not in spec


def read_spec(spec, limits: Limits | None = None) -> tuple[str, str | None, Path]:
    """(text, filename, directory for imports) of a path or source text."""
    limits = limits or Limits()
    if _is_path(spec):
        path = Path(spec)
        return read_source(path, limits), str(spec), path.parent
    if isinstance(spec, bytes):
        return decode(spec, None, limits), None, Path.cwd()
    if len(spec.encode("utf-8", "surrogatepass")) > limits.max_file_bytes:
        raise NetdslError([Diagnostic("E0401", "spec text is over the size limit", None, "",
                                      "raise it with Limits(max_file_bytes=N)")])
    return spec, None, Path.cwd()


def parse(text: str, filename: str | None = None) -> ast.Module:
    """Parse spec source text into its AST; syntax errors raise NetdslError.

    >>> parse("network n() { input [1, 4, 4]\\n relu }").items[0].name
    'n'
    """
    return _parse(text, filename)


def compile(spec, *, network: str | None = None, input: tuple[int, ...] | None = None,
            limits: Limits | None = None, **overrides) -> ir.Network:
    """Check a spec and return its IR: every layer with inferred channels and shapes.

    ``spec`` is a path to a ``.net`` file or the source text itself.
    ``overrides`` set the network's hyperparameters; values are Python values
    or, as strings, netdsl expressions (``compile(p, depths="[2, 2, 2, 2]")``).

    >>> net = compile("network n(width = 8) { input [3, 32, 32]\\n conv2d(width, 3) }", width=16)
    >>> net.body[0].out_shape
    (16, 30, 30)
    """
    limits = limits or Limits()
    text, filename, base = read_spec(spec, limits)
    program = load(text, filename, base, limits)
    checker = Checker(program, limits)
    values = {}
    for key, value in overrides.items():
        values[key] = (_override_value(key, value), None)
    shape = tuple(input) if input is not None else None
    return checker.network(network, values, shape)


def _override_value(key, value):
    if isinstance(value, str):
        try:
            return parse_expr(value)
        except NetdslError:
            return value
    if isinstance(value, list):
        return tuple(_override_value(key, v) for v in value)
    return value


def build(spec, *, device=None, network: str | None = None, input=None,
          limits: Limits | None = None, **overrides):
    """Check a spec and build its ``torch.nn.Module``.

    >>> model = build("network n() { input [3, 32, 32]\\n conv1: conv2d(8, 3)\\n relu }")
    >>> sorted(model.state_dict())
    ['conv1.bias', 'conv1.weight']
    """
    from .lower import lower

    net = compile(spec, network=network, input=input, limits=limits, **overrides)
    return lower(net, device=device)
