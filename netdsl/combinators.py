"""The combinators' checks: residual, concat, dense, gate and side outputs.

Each one checks its shapes statically and builds its IR node; the body
statements run through the checker like any others. A mixin of
:class:`netdsl.elaborate.Checker`.
"""

from __future__ import annotations

from keyword import iskeyword

from . import ast, ir, shapes
from .diagnostics import Diagnostic
from .evaluate import Env
from .flows import ConcatFlow, DenseFlow, NameScope, SeqFlow
from .values import POISON


class CombinatorChecks:
    def _cond(self, expr, env) -> bool | None:
        if expr is None:
            return True
        v = self.typed(expr, env, "bool", "a condition")
        return None if v is POISON else v

    def residual(self, st: ast.Residual, env: Env, shape, shared, scope):
        on = self._cond(st.cond, env)
        if on is None:
            return [], None, False
        body = SeqFlow(shape, True if on else shared)
        self.run(st.body, Env({}, env), body, scope)
        if not on:
            return body.nodes, body.shape, body.shared
        sc_nodes, sc_shape = None, shape
        if st.shortcut is not None:
            use = self._cond(st.shortcut.cond, env)
            if use is None:
                return [], None, False
            if use:
                sub = SeqFlow(shape, True)
                if st.shortcut.label and not self.label_free(
                        st.shortcut.label, st.shortcut.label_span or st.shortcut.span):
                    return [], None, False
                if st.shortcut.label:
                    name = scope.name(self, st.shortcut.label, st.shortcut.span)
                    inner = NameScope(scope)
                    self.run(st.shortcut.body, Env({}, env), sub, inner)
                    self.close(inner)
                    sc_nodes = self._scope_node(name, None, None, sub, shape, st.shortcut.span)
                else:
                    self.run(st.shortcut.body, Env({}, env), sub, scope)
                    sc_nodes = sub.nodes
                sc_shape = sub.shape
        if shape is None or body.shape is None or sc_shape is None:
            return [], None, False
        if body.shape != sc_shape:
            what = "the shortcut gives" if sc_nodes is not None else "the input is"
            help = None
            if sc_nodes is None and body.shape[0] != shape[0]:
                help = (f"add a shortcut that projects {shape[0]} → {body.shape[0]} channels, e.g. "
                        f"`shortcut {{ conv2d({body.shape[0]}, 1"
                        + (f", stride = {shape[1] // body.shape[1]}" if len(shape) == 3 and len(body.shape) == 3
                           and body.shape[1] and shape[1] != body.shape[1] else "") + ", bias = false) }`")
            elif sc_nodes is None:
                help = "the body changes the spatial size; add a shortcut with the same stride"
            self.report(Diagnostic("E0301", "residual add needs equal shapes", st.span,
                                   f"body gives {shapes.fmt(body.shape)}, {what} {shapes.fmt(sc_shape)}",
                                   help))
            return [], None, False
        node = ir.Residual(body=tuple(body.nodes), shortcut=None if sc_nodes is None else tuple(sc_nodes),
                           in_shape=shape, out_shape=body.shape, span=st.span)
        return [node], body.shape, False

    def concat(self, st: ast.Concat, env: Env, shape, scope):
        flow = ConcatFlow(shape)
        self.run(st.body, Env({}, env), flow, scope)
        if not flow.branches:
            self.report(Diagnostic("E0302", "`concat` has no branches", st.span, "empty",
                                   "list one branch per line inside the braces"))
            return [], None, False
        if shape is None or any(s is None for _, s, _ in flow.branches):
            return [], None, False
        first = flow.branches[0][1]
        for nodes, s, span in flow.branches:
            if len(s) != 3 or s[1:] != first[1:]:
                listing = ", ".join(shapes.fmt(b[1]) for b in flow.branches)
                self.report(Diagnostic(
                    "E0302", "concatenated branches must have the same spatial size", span or st.span,
                    f"this branch gives {shapes.fmt(s)}, the first gives {shapes.fmt(first)}",
                    f"branch outputs are {listing}; give every branch the same strides and padding"))
                return [], None, False
        out = (sum(s[0] for _, s, _ in flow.branches),) + tuple(first[1:])
        node = ir.Concat(branches=tuple(tuple(n) for n, _, _ in flow.branches), in_shape=shape,
                         out_shape=out, span=st.span)
        return [node], out, False

    def dense(self, st: ast.Dense, env: Env, shape, scope):
        if shape is not None and len(shape) != 3:
            self.report(Diagnostic("E0306", "`dense` needs a [C, H, W] input", st.span,
                                   f"the input here is {shapes.fmt(shape)}", None))
            return [], None, False
        flow = DenseFlow(shape)
        flow.checker = self
        self.run(st.body, Env({}, env), flow, scope)
        if not flow.ok:
            return [], None, False
        out = (flow.channels,) + tuple(shape[1:])
        node = ir.Dense(layers=tuple(tuple(n) for n in flow.layers), in_shape=shape, out_shape=out,
                        span=st.span)
        return [node], out, False

    def gate(self, st: ast.Gate, env: Env, shape, scope):
        body = SeqFlow(shape, True)
        self.run(st.body, Env({}, env), body, scope)
        if shape is None or body.shape is None:
            return [], None, False
        g = body.shape
        fits = len(g) == len(shape) and all(a in (1, b) for a, b in zip(g, shape)) and g[0] == shape[0]
        if not fits:
            self.report(Diagnostic("E0303", "a gate must give one factor per channel of its input",
                                   st.span, f"body gives {shapes.fmt(g)}, the input is {shapes.fmt(shape)}",
                                   f"end the gate body with {shape[0]} channels of size 1×1 or "
                                   f"{shapes.fmt(shape[1:])}"))
            return [], None, False
        node = ir.Gate(body=tuple(body.nodes), in_shape=shape, out_shape=shape, span=st.span)
        return [node], shape, False

    def side(self, st: ast.Side, env: Env, shape, scope):
        flow = self._side_flow
        if flow is None:
            self.report(Diagnostic("E0312", "a side output belongs in the network body", st.span,
                                   "inside a block, group or combinator",
                                   "move `side` to the top level of the network"))
            return [], None, False
        if st.name == "logits" or st.name.startswith("_") or iskeyword(st.name):
            why, other = (("the main output is `logits`", "aux") if st.name == "logits" else
                          ("a name starting with `_`", st.name.lstrip("_") or "aux")
                          if st.name.startswith("_") else ("a Python keyword", st.name))
            if iskeyword(other) or other == "logits":
                other += "_"
            self.report(Diagnostic("E0113", f"side output `{st.name}` cannot be a field of the "
                                   "outputs tuple", st.name_span or st.span, why,
                                   f"rename it, e.g. `{other}`: in training the network returns "
                                   "a named tuple (logits, <side names>)"))
            return [], None, False
        if st.name in flow.sides:
            self.report(Diagnostic("E0108", f"duplicate side output `{st.name}`", st.span,
                                   "named again here", None))
            return [], None, False
        flow.sides.append(st.name)
        body = SeqFlow(shape, True)
        self.run(st.body, Env({}, env), body, scope)
        if shape is None or body.shape is None:
            return [], None, True
        node = ir.Side(name=st.name, body=tuple(body.nodes), in_shape=shape, out_shape=body.shape,
                       span=st.span)
        return [node], shape, True

    _side_flow = None
