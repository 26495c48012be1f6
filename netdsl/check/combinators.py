"""The combinators' rules: what residual, concat, dense, gate and side outputs require
of their bodies' shapes, the IR node each builds, the help that says how to fix a
residual whose body and shortcut disagree, and the training tuple that side outputs
make (``sides``). Their bodies' statements are checked by the checker like any others
(``cx.run``); each rule is a function of the checker's :class:`~.context.Context` and
the statement, and gives what a unit gives (:data:`~.context.Built`).
"""

from __future__ import annotations

from keyword import iskeyword

from .. import ir
from ..diagnostics import Diagnostic, closest, rename
from ..layers import KINDS, shapes
from ..syntax import ast
from .context import Built, Context
from .evaluate import Env, span_of, values_of
from .flows import ConcatFlow, DenseFlow, NameScope, SeqFlow
from .lost import skipped
from .values import POISON


def _leaves(nodes):
    """The nodes of a body in order, looking inside block instances and labelled groups."""
    for n in nodes:
        if n.kind == "scope":
            yield from _leaves(n.body)
        else:
            yield n


def _hw(shape) -> str:
    return f"{shape[1]}×{shape[2]}"


def _turns(shape, out) -> str:
    return f"keeps {_hw(shape)}" if shape[1:] == out[1:] else f"turns {_hw(shape)} into {_hw(out)}"


def _at(span, here) -> str:
    """Where ``span`` is, as line:column when it is in the file of ``here``."""
    if span is None:
        return "?"
    return f"{span.line}:{span.column}" if here is not None and span.file == here.file else span.where()


def _same_padding(n) -> tuple[int, int] | None:
    """The padding with which a window layer at stride 1 keeps its input's size, or None
    where none does (an even kernel; a pool's padding may be at most half its window).

    >>> from netdsl.ir import Conv2d
    >>> _same_padding(Conv2d(name="c", in_shape=(3, 8, 8), out_shape=(4, 4, 4), in_channels=3,
    ...                      out_channels=4, kernel_size=(5, 5), dilation=(1, 1)))
    (2, 2)
    """
    pads = []
    for k, d in zip(n.kernel_size, getattr(n, "dilation", (1, 1)), strict=True):
        if d * (k - 1) % 2:
            return None
        pads.append(d * (k - 1) // 2)
    if KINDS[n.kind].half_window_padding and any(p > k // 2 for p, k in zip(pads, n.kernel_size, strict=True)):
        return None
    return tuple(pads)


def _stride(nodes, shape, out) -> int | None:
    """The stride of a 1×1 conv that gives ``out``'s size from ``shape``'s as the body's
    strided layers do: their strides multiplied, if that fits, else None."""
    total = 1
    for n in _leaves(nodes):
        stride = getattr(n, "stride", (1, 1))
        if stride[0] != stride[1]:
            return None
        total *= stride[0]
    fits = all((size - 1) // total + 1 == o for size, o in zip(shape[1:], out[1:], strict=False))
    return total if fits else None


def _cond(cx: Context, expr, env) -> bool | None:
    if expr is None:
        return True
    v = cx.typed(expr, env, "bool", "a condition")
    return None if v is POISON else v


def residual(cx: Context, st: ast.Residual, env: Env, shape, shared, scope: NameScope) -> Built:
    on = _cond(cx, st.cond, env)
    if on is None:
        skipped([st], None, scope)
        return [], None, False
    body = SeqFlow(shape, True if on else shared)
    cx.run(st.body, Env({}, env), body, scope)
    if not on:
        return body.nodes, body.shape, body.shared
    sc_nodes, sc_shape = None, shape
    if st.shortcut is not None:
        use = _cond(cx, st.shortcut.cond, env)
        if use is None:
            _skipped_shortcut(st.shortcut, scope)
            return [], None, False
        if use:
            sub = SeqFlow(shape, True)
            label = None if st.shortcut.label is None else cx.label(st.shortcut.label, env)
            if label is POISON:
                _skipped_shortcut(st.shortcut, scope)
                return [], None, False
            if label:
                name = scope.name(cx, label, st.shortcut.span)
                inner = NameScope(scope)
                cx.run(st.shortcut.body, Env({}, env), sub, inner)
                cx.close(inner, sub)
                sc_nodes = cx.scope_node(name, None, None, sub, shape, st.shortcut.span)
            else:
                cx.run(st.shortcut.body, Env({}, env), sub, scope)
                sc_nodes = sub.nodes
            sc_shape = sub.shape
    if shape is None or body.shape is None or sc_shape is None:
        return [], None, False
    if body.shape != sc_shape:
        what = "the shortcut gives" if sc_nodes is not None else "the input is"
        if sc_nodes is not None:
            help = _shortcut_help(cx, st, shape, body.nodes, body.shape, sc_nodes, sc_shape)
        elif st.shortcut is not None:
            help = _skipped_help(cx, st.shortcut, env, shape, body.shape)
        else:
            help = _identity_help(cx, st, shape, body.nodes, body.shape)
        cx.report(Diagnostic("E0301", "residual add needs equal shapes", st.span,
                             f"body gives {shapes.fmt(body.shape)}, {what} {shapes.fmt(sc_shape)}",
                             help))
        return [], None, False
    node = ir.Residual(body=tuple(body.nodes), shortcut=None if sc_nodes is None else tuple(sc_nodes),
                       in_shape=shape, out_shape=body.shape, span=st.span)
    return [node], body.shape, False


def _skipped_shortcut(sc: ast.Shortcut, scope: NameScope) -> None:
    if sc.label is not None:
        scope.lose(sc.label)
    skipped(sc.body, None, scope)


# -- what fixes a residual whose body and shortcut disagree
def _identity_help(cx: Context, st, shape, nodes, out) -> str:
    """No shortcut: the input is added as it is, so the body must keep its shape."""
    if len(shape) != 3 or len(out) != 3:
        return (f"a residual adds its input to its body's output: the body must give "
                f"{shapes.fmt(shape)}, or a shortcut must turn the input into {shapes.fmt(out)}")
    parts = []
    padded = _padding_hint(cx, nodes, st.span) if shape[1:] != out[1:] else None
    if padded is not None:
        parts.append(padded)
    stride = None if padded is not None or shape[1:] == out[1:] else _stride(nodes, shape, out)
    if out[0] != shape[0] or stride is not None:
        # The example shows the stride; the words name the bigger change.
        project = (f"projects {shape[0]} → {out[0]} channels" if out[0] != shape[0] else
                   f"downsamples {_hw(shape)} to {_hw(out)} like the body")
        args = f"{out[0]}, 1" + (f", stride = {stride}" if stride and stride != 1 else "")
        parts.append(f"add a shortcut that {project}, e.g. `shortcut {{ conv2d({args}, bias = false) }}`")
    elif padded is None:
        parts.append(f"the body turns {_hw(shape)} into {_hw(out)}; add a shortcut that gives the same "
                     "size, or pad the body so that it gives the input's size divided by its stride")
    return "; and ".join(parts)


def _shortcut_help(cx: Context, st, shape, nodes, out, sc_nodes, sc_out) -> str:
    """A shortcut is used, and gives another shape than the body: say which side to change."""
    if len(out) != len(sc_out):
        return (f"the body gives {shapes.fmt(out)} and the shortcut {shapes.fmt(sc_out)}: "
                "end both with the same kind of layer")
    parts = []
    if out[0] != sc_out[0]:
        last = next((n for n in reversed(list(_leaves(sc_nodes)))
                     if isinstance(n, ir.Layer) and KINDS[n.kind].projects), None)
        if last is not None:
            parts.append(f"the shortcut's last layer `{cx.text(last.span)}` at {_at(last.span, st.span)} "
                         f"gives {sc_out[0]} channels and the body {out[0]}: make it give {out[0]} "
                         f"(or make the body end with {sc_out[0]})")
        else:
            parts.append(f"the shortcut keeps {sc_out[0]} channels and the body gives {out[0]}: "
                         f"end the shortcut with `conv2d({out[0]}, 1, bias = false)`")
    if out[1:] != sc_out[1:]:
        hint = _padding_hint(cx, nodes, st.span) or _padding_hint(cx, sc_nodes, st.span)
        strides = _stride(nodes, shape, out), _stride(sc_nodes, shape, sc_out)
        if hint is None and None not in strides:
            hint = (f"the body {_turns(shape, out)} (stride {strides[0]}) and the shortcut "
                    f"{_turns(shape, sc_out)} (stride {strides[1]}): give the shortcut stride {strides[0]} "
                    "like the body")
        parts.append(hint or f"the body {_turns(shape, out)} and the shortcut {_turns(shape, sc_out)}: "
                     "give them the same strides and padding")
    return "; and ".join(parts)


def _skipped_help(cx: Context, sc: ast.Shortcut, env, shape, out) -> str:
    """The shortcut's `if` is false here: its condition, and the values that made it false."""
    values = values_of(sc.cond, env)
    what = " and ".join(w for w, changed in (
        (f"the channels, {shape[0]} → {out[0]}", out[0] != shape[0]),
        (f"the size, {_hw(shape)} → {_hw(out)}", len(shape) == len(out) == 3 and shape[1:] != out[1:]))
        if changed) or f"{shapes.fmt(shape)} → {shapes.fmt(out)}"
    named = f" `{cx.text(sc.label.span)}`" if sc.label else ""
    return (f"the shortcut{named} is skipped for this use: its condition `{cx.text(span_of(sc.cond))}` is "
            f"false" + (f" ({values})" if values else "") + ", so the input is added "
            f"unchanged; the condition must hold whenever the body changes the shape (here {what})")


def _padding_hint(cx: Context, nodes, here) -> str | None:
    """Where the layers of ``nodes`` change the spatial size at stride 1, the first one
    and the padding that keeps the size: a dropped `padding = 1` is the usual cause."""
    changes = [n for n in _leaves(nodes) if len(n.in_shape) == 3 and len(n.out_shape) == 3
               and n.in_shape[1:] != n.out_shape[1:]]
    if not changes or any(getattr(n, "stride", (1, 1)) != (1, 1) or not isinstance(n, ir.Layer)
                          or not KINDS[n.kind].window
                          for n in changes):
        return None
    n = changes[0]
    pad = _same_padding(n)
    fix = ("an even kernel cannot keep the size at stride 1: use an odd one with padding" if pad is None
           else f"give it `padding = {pad[0] if pad[0] == pad[1] else list(pad)}`")
    more = len(changes) - 1
    also = f" ({more} more layer{'s' if more > 1 else ''} after it shrink{'' if more > 1 else 's'} " \
           "the size too)" if more else ""
    return (f"`{cx.text(n.span)}` at {_at(n.span, here)} turns {_hw(n.in_shape)} into "
            f"{_hw(n.out_shape)}; {fix}{also}")


def concat(cx: Context, st: ast.Concat, env: Env, shape, shared, scope: NameScope) -> Built:
    flow = ConcatFlow(shape)
    cx.run(st.body, Env({}, env), flow, scope)
    if not flow.branches:
        cx.report(Diagnostic("E0302", "`concat` has no branches", st.span, "empty",
                             "list one branch per line inside the braces"))
        return [], None, False
    branches = flow.shaped()
    if shape is None or branches is None:
        return [], None, False
    first = branches[0][1]
    for _, s, span in branches:
        if len(s) != 3 or s[1:] != first[1:]:
            listing = ", ".join(shapes.fmt(b[1]) for b in branches)
            cx.report(Diagnostic(
                "E0302", "concatenated branches must have the same spatial size", span or st.span,
                f"this branch gives {shapes.fmt(s)}, the first gives {shapes.fmt(first)}",
                f"branch outputs are {listing}; give every branch the same strides and padding"))
            return [], None, False
    out = (sum(s[0] for _, s, _ in branches),) + tuple(first[1:])
    node = ir.Concat(branches=tuple(tuple(n) for n, _, _ in branches), in_shape=shape,
                     out_shape=out, span=st.span)
    return [node], out, False


def dense(cx: Context, st: ast.Dense, env: Env, shape, shared, scope: NameScope) -> Built:
    if shape is not None and len(shape) != 3:
        cx.report(Diagnostic("E0306", "`dense` needs a [C, H, W] input", st.span,
                             f"the input here is {shapes.fmt(shape)}", None))
        return [], None, False
    flow = DenseFlow(shape, cx)
    cx.run(st.body, Env({}, env), flow, scope)
    if not flow.ok:
        return [], None, False
    out = (flow.channels,) + tuple(shape[1:])
    node = ir.Dense(layers=tuple(tuple(n) for n in flow.layers), in_shape=shape, out_shape=out,
                    span=st.span)
    return [node], out, False


def gate(cx: Context, st: ast.Gate, env: Env, shape, shared, scope: NameScope) -> Built:
    body = SeqFlow(shape, True)
    cx.run(st.body, Env({}, env), body, scope)
    if shape is None or body.shape is None:
        return [], None, False
    g = body.shape
    fits = len(g) == len(shape) and all(a in (1, b) for a, b in zip(g, shape, strict=True)) and g[0] == shape[0]
    if not fits:
        cx.report(Diagnostic("E0303", "a gate must give one factor per channel of its input",
                             st.span, f"body gives {shapes.fmt(g)}, the input is {shapes.fmt(shape)}",
                             f"end the gate body with {shape[0]} channels of size 1×1 or "
                             f"{shapes.fmt(shape[1:])}"))
        return [], None, False
    node = ir.Gate(body=tuple(body.nodes), in_shape=shape, out_shape=shape, span=st.span)
    return [node], shape, False


def side(cx: Context, st: ast.Side, env: Env, shape, shared, scope: NameScope) -> Built:
    flow = cx.side_flow
    if st.template is not None:
        name = cx.value(st.template, env)
        if name is POISON or not name.isidentifier():
            if name is not POISON:
                cx.report(Diagnostic("E0113", f"side output \"{name}\" is not a field name",
                                     st.name_span or st.span, "the outputs tuple needs identifiers",
                                     "use letters, digits and `_`, not starting with a digit"))
            _skipped_side(st, flow, scope)
            return [], None, False
        st = ast.Side(name=name, body=st.body, span=st.span, name_span=st.name_span)
    if flow is None:
        cx.report(Diagnostic("E0312", "a side output belongs in the network body", st.span,
                             "inside a block, group or combinator",
                             "move `side` to the top level of the network"))
        skipped(st.body, None, scope)
        return [], None, False
    if st.name == "logits" or st.name.startswith("_") or iskeyword(st.name):
        why, other = (("the main output is `logits`", "aux") if st.name == "logits" else
                      ("a name starting with `_`", st.name.lstrip("_") or "aux")
                      if st.name.startswith("_") else ("a Python keyword", st.name))
        if iskeyword(other) or other == "logits":
            other += "_"
        cx.report(Diagnostic("E0113", f"side output `{st.name}` cannot be a field of the "
                             "outputs tuple", st.name_span or st.span, why,
                             f"rename it, e.g. `{other}`: in training the network returns "
                             "a named tuple (logits, <side names>)"))
        _skipped_side(st, flow, scope)
        return [], None, False
    if st.name in flow.sides:
        cx.report(Diagnostic("E0108", f"duplicate side output `{st.name}`", st.span,
                             "named again here", None))
        skipped(st.body, None, scope)
        return [], None, False
    flow.sides.append(st.name)
    body = SeqFlow(shape, True)
    cx.run(st.body, Env({}, env), body, scope)
    if shape is None or body.shape is None:
        return [], None, True
    node = ir.Side(name=st.name, body=tuple(body.nodes), in_shape=shape, out_shape=body.shape,
                   span=st.span)
    return [node], shape, True


def _skipped_side(st: ast.Side, flow: SeqFlow | None, scope: NameScope) -> None:
    """A side output that a mistake kept from being made: its name and what its body
    would have made are unknown."""
    if flow is not None:
        if st.template is not None:
            flow.sides_lost.template(st.template)
        else:
            flow.sides_lost.add(st.name)
    skipped(st.body, None, scope)


def sides_order(cx: Context, st: ast.Sides, env: Env, flow, scope: NameScope) -> None:
    """``sides GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``: the type name and
    field order of the training tuple; checked against the sides at the network's end."""
    if not getattr(flow, "network", False):
        cx.report(Diagnostic("E0119", "`sides` belongs in the network body", st.span,
                             "inside a block, group or combinator",
                             "move `sides` to the top level of the network"))
        return
    if flow.sides_decl is not None:
        cx.report(Diagnostic("E0119", "`sides` given twice", st.span, "second time here",
                             f"keep one; the first is at {flow.sides_decl.span.where()}"))
        return
    flow.sides_decl = st


def training_outputs(cx: Context, flow, cls: str) -> tuple[str | None, tuple[str, ...]]:
    """The training tuple's type name and field order: ``sides`` where the network
    gives it, else ``<cls>Outputs(logits, <sides in spec order>)``."""
    st = flow.sides_decl
    default = ("logits",) + tuple(flow.sides)
    if st is None:
        return None, default
    seen: set[str] = set()
    for name, span in zip(st.fields, st.field_spans or [st.span] * len(st.fields), strict=True):
        if name in seen:
            cx.report(Diagnostic("E0120", f"`{name}` is listed twice in `sides`", span,
                                 "second time here", "list each output once"))
        elif name not in default and name not in flow.sides_lost:
            near = closest(name, [n for n in default if n not in st.fields])  # not one listed already
            cx.report(Diagnostic("E0120", f"`sides` lists `{name}`, which is no output",
                                 span, "not `logits` nor a side output",
                                 f"did you mean `{near}`?" if near else
                                 "the outputs are " + ", ".join(default), fixes=rename(near, span)))
        seen.add(name)
    missing = [n for n in default if n not in seen]
    if missing:
        cx.report(Diagnostic("E0120", "`sides` leaves out " + ", ".join(f"`{n}`" for n in missing),
                             st.span, "every output needs a place in the tuple",
                             f"add {', '.join(missing)} to the list"))
    type_name = st.type_name or f"{cls}Outputs"
    if iskeyword(type_name):
        cx.report(Diagnostic("E0120", f"`{type_name}` cannot name a tuple type", st.span,
                             "a Python keyword", f"use another name, e.g. `{cls}Outputs`"))
    return type_name, tuple(st.fields)
