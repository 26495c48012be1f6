"""The Python API: parse, compile (checked IR) and build (nn.Module)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from . import ir
from .check.checker import Checker, given
from .diagnostics import Diagnostic, NetdslError
from .grant import Grant
from .ir.walk import children, json_step
from .limits import Limits
from .syntax import ast
from .syntax.loader import check_nesting, decode, load, read_at_most, read_source
from .syntax.parser import parse as _parse
from .syntax.parser import parse_expr


def _is_path(spec) -> bool:
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and "\n" not in spec and "{" not in spec


class Stdin:
    """The spec text on standard input: what the command line's ``-`` stands for.

    The command line never guesses: its spec argument is a path (``pathlib.Path``,
    whatever characters the name holds), or ``-`` for this. The text is read once,
    at most ``max_file_bytes`` of it, when a command first needs it; diagnostics
    name it ``<stdin>``, and its imports are looked up from the working directory.

    >>> import io
    >>> src = Stdin(io.BytesIO(b"network n() { input [4]\\n linear(2) }"))
    >>> read_spec(src)[:2]
    ('network n() { input [4]\\n linear(2) }', '<stdin>')
    """

    name = "<stdin>"

    def __init__(self, stream=None):
        self._stream = stream
        self._text: str | None = None

    def __str__(self) -> str:
        return "-"

    def __getstate__(self):  # to a worker process: the text read, never the stream
        return {"_stream": None, "_text": self._text}

    def read(self, limits: Limits) -> str:
        if self._text is None:
            import sys

            from .syntax import observer

            observer.uncacheable()  # what was on stdin is not an observation a hit can repeat
            stream = self._stream if self._stream is not None else sys.stdin.buffer
            data = read_at_most(stream, limits.max_file_bytes)  # never more than the limit allows
            if len(data) > limits.max_file_bytes:
                raise NetdslError([Diagnostic(
                    "E0401", f"standard input is over the limit of {limits.max_file_bytes} bytes",
                    None, "", "raise it with --limit max_file_bytes=N if this is really a spec")])
            self._text = decode(data, self.name, limits)
        return self._text


def _type(value) -> str:
    return "None" if value is None else type(value).__name__


def _check_spec(spec) -> None:
    if not isinstance(spec, (str, bytes, os.PathLike, Stdin)):
        raise TypeError("spec must be a path (str or os.PathLike), spec text (str) or bytes, "
                        f"not {_type(spec)}")


def _check_arguments(spec, network, input, limits) -> tuple[Any, ...] | dict[Any, Any] | None:
    """Refuse arguments of the wrong kind where they are given, not deep inside;
    returns ``input`` as a tuple (of shapes, for several inputs in order) or, for named
    inputs, a dict of them. What is inside them is checked by the checker."""
    _check_spec(spec)
    if network is not None and not isinstance(network, str):
        raise TypeError(f"network must be the name of a network (str) or None, not {_type(network)}")
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a netdsl.Limits, not {_type(limits)}")
    if input is None:
        return None
    if isinstance(input, Mapping):  # a network of named inputs: a shape per name
        return {k: _check_arguments(spec, None, v, None) for k, v in input.items()}
    if isinstance(input, (str, bytes)) or not hasattr(input, "__iter__"):
        raise TypeError("input must be a shape: a tuple or list of integers (C, H, W) or (F,), "
                        f"not {_type(input)}")
    input = tuple(input)
    if input and all(isinstance(s, (tuple, list)) for s in input):  # a shape per input, in order
        return tuple(tuple(s) for s in input)
    return input


def read_spec(spec, limits: Limits | None = None) -> tuple[str, str | None, Path]:
    """(text, filename, directory for imports) of a path or source text."""
    _check_spec(spec)
    limits = limits or Limits()
    if isinstance(spec, Stdin):
        return spec.read(limits), spec.name, Path.cwd()
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
    if not isinstance(text, str):
        raise TypeError(f"text must be spec source text (str), not {_type(text)}")
    if filename is not None and not isinstance(filename, str):
        raise TypeError(f"filename must be a str or None, not {_type(filename)}")
    return _parse(text, filename)


def compile(spec, *, network: str | None = None, input: tuple[int, ...] | None = None,
            limits: Limits | None = None, import_path=(), grant=None, **overrides) -> ir.Network:
    """Check a spec and return its IR: every layer with inferred channels and shapes.

    ``spec`` is a path to a ``.net`` file, the source text itself, or its bytes.
    ``overrides`` set the network's hyperparameters: Python values as they are, a
    string as a netdsl expression (``depths="[2, 2, 2, 2]"``, ``unit="basic"``; a
    netdsl string is written in quotes, ``mode='"batch"'``). Arguments of the wrong
    kind raise TypeError; anything wrong in the spec or a value raises NetdslError.
    ``import_path`` lists directories where an import not found next to the
    importing file is looked for; imports read nothing outside them, the spec's
    own directory (the current one for a spec given as text) and ``std/``.
    ``grant`` lists the Python modules whose classes an ``extern`` may import
    (``grant=["timm.layers"]``; importing runs their code, so nothing is granted by
    default, and a spec's extern is then an error).

    >>> net = compile("network n(width = 8) { input [3, 32, 32]\\n conv2d(width, 3) }", width=16)
    >>> net.body[0].out_shape
    (16, 30, 30)
    """
    return compile_spec(spec, overrides, network=network, input=input, limits=limits,
                        import_path=import_path, grant=grant)


def compile_spec(spec, overrides: Mapping[str, object] | None = None, *, network: str | None = None,
                 input=None, limits: Limits | None = None, import_path=(),
                 origin: str = "api", grant=None) -> ir.Network:
    """:func:`compile`, with the overrides in a mapping and where they come from:
    ``origin="cli"`` for ``--set`` texts (every value a str holding an expression),
    so that messages name them as the user wrote them.

    >>> compile_spec("network n(c = 2) { input [4]\\n linear(c) }", {"c": "1 +"}, origin="cli")
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0004]: unexpected end of file
    ...
      = note: in --set c=1 +
    ...
    """
    if origin not in ("api", "cli"):
        raise ValueError(f"origin must be 'api' or 'cli', not {origin!r}")
    shape = _check_arguments(spec, network, input, limits)
    granted = Grant.of(grant)
    overrides = dict(overrides or {})
    limits = limits or Limits()
    with _gc_paused():
        text, filename, base = read_spec(spec, limits)
        program = load(text, filename, base, limits, import_path)
        values: dict[str, tuple[Any, None]] = {}
        sources: dict[str | None, str] = {}
        for key, value in overrides.items():
            if origin == "cli":  # every value is the text of a --set
                values[key] = (parse_override(key, cast(str, value), limits, "cli", sources), None)
                continue
            try:
                values[key] = (_override_value(key, value, limits, sources), None)
            except RecursionError:  # a Python list nested a thousand deep
                raise NetdslError([Diagnostic("E0402", f"{given(key, origin)}: lists nested deeper than "
                                              f"{limits.max_nesting} levels", None, "", None)]) from None
        # The values' own text is a source too, so their errors show it.
        program = dataclasses.replace(program, sources={**program.sources, **sources})
        net = Checker(program, limits, origin, granted).network(network, values, shape)
        check_limits(net, limits, program.sources)
    return net


def parse_override(name: str, text: str, limits: Limits | None = None, origin: str = "api",
                   sources: dict | None = None) -> ast.Expr:
    """Parse a hyperparameter value given as text from outside a spec (``--set NAME=TEXT``
    or ``compile(NAME="TEXT")``), within the same limits as spec text; an error in it
    is a NetdslError noted with the value it was in. ``sources`` collects the text.

    >>> parse_override("depths", "[2, 3]").items[1].value
    3
    >>> parse_override("depths", "(" * 200 + "1" + ")" * 200)
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0402]: nesting deeper than 100 levels
    ...
    """
    limits = limits or Limits()
    filename = f"<--set {name}>" if origin == "cli" else f"<value of {name}>"
    if sources is not None:
        sources[filename] = text
    try:
        # Parentheses leave no trace in the parse tree: the text's brackets are counted first.
        check_nesting(text, filename, limits)
        return parse_expr(text, limits, filename)
    except NetdslError as e:
        note = f"in --set {name}={text}" if origin == "cli" else f"in {given(name, origin)}"
        raise NetdslError([d.with_notes(note) for d in e.diagnostics], e.sources) from None


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


#: How deep pydantic reads JSON: the checked IR must round-trip through it
#: (``--emit-ir``, ``ir.Network.model_validate_json``).
_JSON_DEPTH = 200


def check_limits(net: ir.Network, limits: Limits, sources) -> None:
    """The limits a checked network is held to as a whole, before anything is built:
    module depth (E0402), parameters (E0408) and the largest activation (E0409).
    Every front end that checks a spec (compile, the language server) ends here.

    >>> check_limits(compile("network n() { input [4]\\n linear(3) }"), Limits(max_params=10), {})
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0408]: the network has 15 parameters, over the limit of 10
    ...
    """
    from .analysis.counts import summary, totals

    # Each check walks the whole IR only where it fails; a pass reads the summaries of
    # the network's subtrees, which shared subtrees (memo.py) have once for all.
    parts = [summary(node) for node in net.body]
    if not all(3 + s.json <= _JSON_DEPTH and (s.depth is None or 1 + s.depth <= limits.max_nesting)
               for s in parts):
        _check_module_depth(net, limits, sources)
    t = totals(net)
    if t.params > limits.max_params:
        _check_params(net, limits, sources)
    if t.largest_activation_bytes > limits.max_activation_bytes:
        _check_activations(net, limits, sources)


def _check_module_depth(net: ir.Network, limits: Limits, sources) -> None:
    """Refuse modules nested deeper than ``limits.max_nesting``, or than the IR's JSON can hold.

    One file's text nests at most that deep, but a block that uses a block nests its
    modules again; building the model, running it and printing its IR recurse once
    per level, and past about 130 levels they fail (pydantic's serialiser, fvcore's
    tracer), so the checked IR is bounded here, iteratively. Its JSON nests two levels
    per group, block or residual and three per concat or dense (lists of branches),
    and pydantic reads only 200: about 98 levels of the first kind, 65 of the second.

    >>> _check_module_depth(compile("network n() { input [1]\\n a: { b: { relu } } }"), Limits(max_nesting=1), {})
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0402]: modules nested more than 1 deep
    ...
    """
    # (node, its depth in modules, the JSON level of its object: Network { body [ node {)
    todo: list[tuple[ir.Node, int, int]] = [(node, 1, 3) for node in net.body]
    while todo:
        node, depth, level = todo.pop()
        kids = children(node)
        if kids and depth > limits.max_nesting:
            raise NetdslError([Diagnostic(
                "E0402", f"modules nested more than {limits.max_nesting} deep", node.span,
                "too deep here", "blocks inside blocks nest their groups and combinators again; "
                "flatten the spec, or raise --limit max_nesting=N")], sources)
        # Below its object, a layer nests its init scheme's arguments (init { weight { args {)
        # or its shapes; a combinator, its shapes and its children.
        inner = 3 if getattr(node, "init", None) else 1
        if level + inner > _JSON_DEPTH:
            raise NetdslError([Diagnostic(
                "E0402", "modules nested too deep for the checked IR", node.span, "too deep here",
                "the IR is JSON, which is read at most 200 levels deep: about 98 levels of groups, "
                "blocks and residuals, or 65 of concat and dense; flatten the spec"
                ).with_notes(f"inside {depth - 1} nested modules")], sources)
        step = json_step(node)
        todo.extend((child, depth + 1, level + step) for child in kids)


def _check_params(net: ir.Network, limits: Limits, sources) -> None:
    """Refuse a network over ``limits.max_params`` from its IR, before any tensor exists.

    >>> _check_params(compile("network n() { input [4]\\n linear(3) }"), Limits(max_params=10), {})
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0408]: the network has 15 parameters, over the limit of 10
    ...
    """
    from .analysis.counts import _layers, count_params, layer_params

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
    ...                    Limits(max_activation_bytes=1000), {})  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0409]: the largest activation of one sample is 4,096 bytes,
    over the limit of 1,000
    ...
    """
    from .analysis.counts import activations, fmt_bytes, layer_output_bytes

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


def _override_value(key, value, limits, sources):
    if isinstance(value, str):
        return parse_override(key, value, limits, "api", sources)
    if isinstance(value, (list, tuple)):
        return tuple(_override_value(key, v, limits, sources) for v in value)
    return value


def build(spec, *, device=None, network: str | None = None, input=None,
          limits: Limits | None = None, import_path=(), grant=None, fuse: bool = False, **overrides):
    """Check a spec and build its ``torch.nn.Module``.

    ``fuse=True`` builds it for inference only: in eval mode, with each batch norm
    (and relu-like activation) that follows a convolution folded into it, the
    weights in ``channels_last`` and the convolutions on oneDNN
    (:func:`netdsl.backend.fuse.fuse`); such a model refuses to train.

    >>> model = build("network n() { input [3, 32, 32]\\n conv1: conv2d(8, 3)\\n relu }")
    >>> sorted(model.state_dict())
    ['conv1.bias', 'conv1.weight']
    """
    from .backend.lower import lower, target_device

    device = target_device(device)  # before the work of checking: a bad device fails at once
    net = compile(spec, network=network, input=input, limits=limits, import_path=import_path,
                  grant=grant, **overrides)
    model = lower(net, device=device, grant=grant)
    if fuse:
        from .backend.fuse import fuse as fuse_model

        model = fuse_model(model)
    return model
