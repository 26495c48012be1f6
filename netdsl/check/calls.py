"""The rules of a layer called other than as a new module: again (``reuse``) or as a
function (``apply``). torchvision's modules do both: a Bottleneck registers one
``relu`` and calls it three times; a ResNet calls ``torch.flatten(x, 1)`` and
Inception's BasicConv2d calls ``F.relu``, functions that are no modules. A spec that
does the same gets torchvision's module tree, so hooks, FX node names and
``create_feature_extractor`` work with torchvision's names. This module owns which
layers may be called so and what a reused module must fit; the layer itself is
checked and placed by the checker (``cx.place``, ``cx.layer``).
"""

from __future__ import annotations

from ..diagnostics import Diagnostic, closest, rename, short
from ..layers import LAYERS, shapes
from ..syntax import ast
from . import extern
from .context import Built, Context
from .evaluate import Env
from .flows import NameScope, SeqFlow
from .values import POISON, BlockRef, LayerRef

# Layer kinds `apply` can call: those whose catalogue entry names a torch function.
FUNCTIONS: frozenset[str] = frozenset(k for k, v in LAYERS.items() if v.function)


def reuse(cx: Context, st: ast.Reuse, env: Env, flow, scope: NameScope) -> None:
    """``reuse relu``: the module labelled ``relu`` in this scope, called again on
    the current tensor. It must fit that tensor as it is: a layer whose inferred
    fields (input channels, features) would change cannot be shared."""
    label = cx.value(st.label, env)
    shape, shared = flow.next_input(cx, st.span)
    # Where it fails, what it gives is unknown (None): the layers after it stay silent.
    flow.accept(*_reused(cx, st, label, shape, shared, scope), st.span)
    _made(flow, st)


def _reused(cx: Context, st: ast.Reuse, label, shape, shared, scope: NameScope) -> Built:
    if label is POISON:
        return [], None, False
    entry = scope.layers.get(label)
    if entry is None:
        if label in scope.lost:
            return [], None, False  # the layer failed, and said why
        if label in scope.used:
            cx.report(Diagnostic(
                "E0116", f"`{short(label)}` is a block or group, not a layer", st.label.span,
                "only a labelled layer can be reused",
                "reuse a layer (`relu`, `conv2d`, ...); a block used twice is written "
                "twice, with two labels"))
        else:
            near = closest(label, list(scope.layers))
            cx.report(Diagnostic(
                "E0115", f"no layer labelled `{short(label)}` before this point in its scope",
                st.label.span, "nothing to reuse",
                f"did you mean `{near}`?" if near else
                f"label the layer first, e.g. `{short(label)}: relu(inplace = true)`, in the "
                "same block, network or labelled group, before `reuse`", fixes=rename(near, st.label.span)))
        return [], None, False
    kind, values, first = entry
    if shape is None:
        return [], None, False
    if kind == "extern":
        again = extern.reused(first, st, label, shape)
        if isinstance(again, Diagnostic):
            cx.report(again)
            return [], None, False
        return [again], again.out_shape, first.target.rsplit(".", 1)[1]
    use = ast.Use(name=kind, args=(), has_parens=False, span=st.span)
    before = len(cx.diags)
    nodes, out, out_shared = cx.place(kind, values, {}, use, shape, shared, label,
                                      first.init, reuse=True)
    if not nodes:
        return [], None, False
    fixed = [f for f in ("in_channels", "in_features", "num_features")
             if getattr(nodes[0], f, None) != getattr(first, f, None)]
    if fixed and len(cx.diags) == before:
        f = fixed[0]
        cx.report(Diagnostic(
            "E0320", f"reused `{short(label)}` was built for {getattr(first, f)} input "
            f"{'features' if f == 'in_features' else 'channels'}, here it gets "
            f"{getattr(nodes[0], f)}", st.span, f"input {shapes.fmt(shape)}",
            f"a shared module keeps its weights' shape; use a new layer here, or reuse "
            f"`{short(label)}` where the input has {getattr(first, f)} channels"))
        return [], None, False
    # Any other argument its module was made with that this input would change (a group
    # norm's channels, a per-channel prelu's slopes, a layer norm's shape, a scale's).
    made, here = LAYERS[kind].torch(first).kwargs, LAYERS[kind].torch(nodes[0]).kwargs
    differ = [k for k in made if made[k] != here.get(k)]
    if differ and len(cx.diags) == before:
        k = differ[0]
        cx.report(Diagnostic(
            "E0320", f"reused `{short(label)}` was built for input {shapes.fmt(first.in_shape)} "
            f"({k} = {made[k]}), here it gets {shapes.fmt(shape)} ({k} = {here.get(k)})", st.span,
            f"input {shapes.fmt(shape)}",
            f"a shared module keeps the shape it was made for; use a new layer here, or reuse "
            f"`{short(label)}` where the input is {shapes.fmt(first.in_shape)}"))
        return [], None, False
    return nodes, out, out_shared


def apply(cx: Context, st: ast.Apply, env: Env, flow, scope: NameScope) -> None:
    """``apply flatten``: a parameter-free layer called as its torch function."""
    use = st.use
    shape, shared = flow.next_input(cx, st.span)
    target = env.lookup(use.name, None)
    kind = target.kind if isinstance(target, LayerRef) else (
        use.name if use.name in LAYERS and not isinstance(target, BlockRef) else None)
    if kind not in FUNCTIONS:
        flow.accept([], None, False, st.span)  # what it gives is unknown: what follows stays silent
        _made(flow, None)
        block = isinstance(target, BlockRef) or use.name in cx.program.blocks
        what = "a block" if block else "a layer with parameters or state" if kind else \
            "not a layer"
        cx.report(Diagnostic(
            "E0118", f"`{short(use.name)}` cannot be applied as a function", use.span, what,
            "`apply` takes a layer without parameters or state: "
            + ", ".join(sorted(FUNCTIONS)) + "; use the layer as a module instead"))
        return
    nodes, out, out_shared = cx.layer(kind, use, env, shape, shared, scope, None,
                                      functional=True)
    flow.accept(nodes, out, out_shared, st.span)
    _made(flow, st)


def _made(flow, st: ast.Reuse | ast.Apply | None) -> None:
    """``st`` made a result nothing has read yet, which a `from` or a merge would drop, as
    a unit's (None: it failed, and made none)."""
    values = flow.values if isinstance(flow, SeqFlow) else None
    if values is not None:
        values.dangling = None if st is None else st.span
