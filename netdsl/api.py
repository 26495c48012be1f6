"""The Python API: parse, compile (checked IR) and build (nn.Module)."""

from __future__ import annotations

import contextlib
import gc
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
    with _gc_paused():
        text, filename, base = read_spec(spec, limits)
        program = load(text, filename, base, limits)
        checker = Checker(program, limits)
        values = {}
        for key, value in overrides.items():
            try:
                values[key] = (_override_value(key, value), None)
            except RecursionError:  # a Python list nested a thousand deep
                raise NetdslError([Diagnostic("E0402", f"--set {key}: lists nested deeper than "
                                              f"{limits.max_nesting} levels", None, "", None)]) from None
        shape = tuple(input) if input is not None else None
        net = checker.network(network, values, shape)
        _check_module_depth(net, limits, program.sources)
        _check_params(net, limits, program.sources)
        _check_activations(net, limits, program.sources)
    return net


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector while the front end runs.

    The front end makes a few small, acyclic objects per token and IR node. With
    the collector on, its full collections rescan the whole process heap (torch's
    included) as those pile up, so a 10,000-layer spec cost 1.8× more per layer than
    a 100-layer one; paused, the front end is linear. Cycles it leaves are collected
    when the collector resumes.

    >>> with _gc_paused():
    ...     gc.isenabled()
    False
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _children(node) -> tuple:
    if isinstance(node, (ir.Scope, ir.Gate, ir.Side)):
        return node.body
    if isinstance(node, ir.Residual):
        return node.body + (node.shortcut or ())
    if isinstance(node, ir.Concat):
        return tuple(n for branch in node.branches for n in branch)
    if isinstance(node, ir.Dense):
        return tuple(n for layer in node.layers for n in layer)
    return ()


def _check_module_depth(net: ir.Network, limits: Limits, sources) -> None:
    """Refuse modules nested deeper than ``limits.max_nesting``.

    One file's text nests at most that deep, but a block that uses a block nests its
    modules again; building the model, running it and printing its IR recurse once
    per level, and past about 130 levels they fail (pydantic's serialiser, fvcore's
    tracer), so the checked IR is bounded here, iteratively.

    >>> _check_module_depth(compile("network n() { input [1]\\n a: { b: { relu } } }"), Limits(max_nesting=1), {})
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0402]: modules nested more than 1 deep
    ...
    """
    todo = [(node, 1) for node in net.body]
    while todo:
        node, depth = todo.pop()
        children = _children(node)
        if children and depth > limits.max_nesting:
            raise NetdslError([Diagnostic(
                "E0402", f"modules nested more than {limits.max_nesting} deep", node.span,
                "too deep here", "blocks inside blocks nest their groups and combinators again; "
                "flatten the spec, or raise --limit max_nesting=N")], sources)
        todo.extend((child, depth + 1) for child in children)


def _check_params(net: ir.Network, limits: Limits, sources) -> None:
    """Refuse a network over ``limits.max_params`` from its IR, before any tensor exists.

    >>> _check_params(compile("network n() { input [4]\\n linear(3) }"), Limits(max_params=10), {})
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0408]: the network has 15 parameters, over the limit of 10
    ...
    """
    from .analysis import _layers, count_params, layer_params

    total = count_params(net)
    if total <= limits.max_params:
        return
    biggest = max(_layers(net.body), key=layer_params)
    raise NetdslError([Diagnostic(
        "E0408", f"the network has {total:,} parameters, over the limit of {limits.max_params:,}",
        biggest.span, f"the largest layer, `{biggest.name}`, has {layer_params(biggest):,}",
        "check the widths and feature counts; if you mean it, raise --limit max_params=N "
        "(or Limits(max_params=N)), and build on the meta device first")], sources)


def _check_activations(net: ir.Network, limits: Limits, sources) -> None:
    """Refuse a network whose largest activation of one sample is over
    ``limits.max_activation_bytes``, from its IR, before any tensor exists.

    The largest tensor bounds what building costs: its fvcore cross-check runs one
    sample without gradients, where each intermediate is freed once used.

    >>> _check_activations(compile("network n() { input [3, 8, 8]\\n conv2d(16, 1) }"),
    ...                    Limits(max_activation_bytes=1000), {})
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0409]: the largest activation of one sample is 4,096 bytes, over the limit of 1,000
    ...
    """
    from .analysis import activations, fmt_bytes, layer_output_bytes

    total, largest, name, node = activations(net)
    if largest <= limits.max_activation_bytes:
        return
    if node is None:
        label = f"its input {list(net.input_shape)} is {fmt_bytes(largest)} in float32"
    else:
        what = "output" if largest == layer_output_bytes(node) else "working tensor"
        label = f"{what} {list(node.out_shape)}: {fmt_bytes(largest)} in float32"
    raise NetdslError([Diagnostic(
        "E0409", f"the largest activation of one sample is {largest:,} bytes, over the limit of "
        f"{limits.max_activation_bytes:,}", net.span if node is None else node.span, label,
        "use a smaller input (`input`, or --input C,H,W), fewer channels or more downsampling "
        "early; if you mean it, raise --limit max_activation_bytes=N "
        "(or Limits(max_activation_bytes=N))").with_notes(
        ("" if node is None else f"module `{name}`; ") + "all activations of one sample, "
        f"forward and backward (torchinfo's count): {fmt_bytes(total)}")], sources)


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
