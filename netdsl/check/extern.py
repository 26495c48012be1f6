"""The rule of a use of an extern module (``blur_pool(channels = 64, stride = 2)`` after
``extern blur_pool = "timm.layers.BlurPool2d"``): a Python class netdsl does not know.

Nothing is imported unless the grant (:mod:`netdsl.grant`) covers the class's path;
without it the use is refused here, at its place, with how to grant it (E0121). With
it, the class is imported (E0123 where it cannot be), its arguments are matched to
its constructor's signature as Python would (E0201-E0206), and a module of it is
built and run on the meta device to learn its output shape and parameters, and
traced by fvcore for its MACs (E0124 where it cannot run on its input). What that
gives is the IR node :class:`netdsl.layers.extern.Extern`, which the later stages
treat as any layer. A run that imports Python code is not kept by ``check``'s result
cache: the code can change where no spec file does.
"""

from __future__ import annotations

import inspect
import keyword
import math
from typing import Any

from ..diagnostics import Diagnostic, short
from ..layers import shapes
from ..layers.extern import Extern, python_value
from ..span import Span
from ..syntax import ast, observer
from .context import Built, Context, Shape, Shared
from .evaluate import Env, span_of
from .flows import NameScope
from .values import POISON, ExternRef, show, type_name

# Constructor arguments netdsl decides itself: where the module lives and its type.
_OWN = frozenset({"device", "dtype"})


def use(cx: Context, ref: ExternRef, u: ast.Use, env: Env, shape: Shape | None, shared: Shared,
        scope: NameScope, label: str | None) -> Built:
    """Check one use of the extern ``ref``: the grant, the class, its arguments and what
    it does to ``shape``."""
    name = scope.name(cx, label, u.span)
    at = _name_span(u)
    decl = ref.defn
    if not cx.grant.allows(decl.target):
        prefix = decl.target.rsplit(".", 1)[0]
        cx.report(Diagnostic(
            "E0121", f"extern `{short(decl.target)}` is not granted", at,
            f"`{short(ref.name)}` is a Python class, declared at {decl.target_span.where()}",
            f"importing it runs its code; if you trust it, grant its module: "
            f"`--allow-module {prefix}` (API: `grant=[\"{prefix}\"]`)"))
        scope.lose(label)
        return [], None, False
    from ..backend.extern import ExternError, count_macs, module_class, probe

    observer.uncacheable()  # the result depends on Python code, which no spec file holds
    try:
        cls = module_class(decl.target)
    except ExternError as e:
        cx.report(Diagnostic("E0123", f"cannot use extern `{short(decl.target)}`", at, str(e),
                             f"declared at {decl.target_span.where()}; check the path and that "
                             "the package is installed"))
        scope.lose(label)
        return [], None, False
    params, open_keywords = _signature(cls)
    bound, ok = cx.bind(ref.name, params, u, env, extra_keywords=open_keywords)
    kwargs: list[tuple[str, Any]] = []
    for key, (v, arg) in bound.items():
        if v is POISON:
            continue
        if key in _OWN:
            cx.report(Diagnostic("E0202", f"`{short(ref.name)}` takes no argument `{key}` here",
                                 arg.span, "netdsl decides it",
                                 "netdsl builds every module on the device the model is built on; "
                                 "remove it"))
            ok = False
            continue
        if keyword.iskeyword(key):
            cx.report(Diagnostic("E0202", f"`{short(ref.name)}` cannot take an argument named `{key}`",
                                 arg.span, f"`{key}` is a Python keyword",
                                 "Python cannot pass it by name (the exported file would not "
                                 "compile); rename the argument in the class"))
            ok = False
            continue
        converted = _value(v)
        if converted is POISON:
            cx.report(Diagnostic("E0206", f"`{short(ref.name)}` argument `{short(key)}` must be a "
                                 "number, a string, `true`, `false`, `none` or a list of them",
                                 span_of(arg.value), f"found {type_name(v)} {show(v)}",
                                 "a Python class is given values, not netdsl's layers or blocks"))
            ok = False
            continue
        kwargs.append((key, converted))
    if not ok or shape is None:
        scope.lose(label)
        return [], None, False
    given = {k: python_value(v) for k, v in kwargs}
    try:
        found = probe(cls, given, shape)
    except ExternError as e:
        cx.report(Diagnostic("E0124", f"extern `{short(ref.name)}` cannot apply to its input",
                             u.span, str(e), f"its input is {shapes.fmt(shape)} (batch first in "
                             "the call); check the arguments against the class's documentation"))
        scope.lose(label)
        return [], None, False
    out = found.out_shape
    if found.writes_input and shared:
        cx.report(Diagnostic(
            "E0311", f"in-place `{short(ref.name)}` would overwrite a tensor that is used again", u.span,
            "it writes its input in place" + (f", which `{shared}` before it keeps for the backward pass"
                                              if isinstance(shared, str) else
                                              ", which is also used elsewhere"),
            "the class changes its input (as `inplace = true` does); make it return a new tensor "
            "(`inplace = false`), or put it where its input is read by nothing else"))
        scope.lose(label)
        return [], None, False
    if any(d > cx.limits.max_dim for d in out):
        cx.report(Diagnostic("E0407", f"a dimension of {max(out)} is over the limit", u.span,
                             f"output {shapes.fmt(out)}", f"the limit is {cx.limits.max_dim} "
                             "(--limit max_dim=N)"))
        scope.lose(label)
        return [], None, False
    if math.prod(out) == 0:
        cx.report(Diagnostic("E0124", f"extern `{short(ref.name)}` gives an empty output", u.span,
                             f"output {shapes.fmt(out)}", "a layer's output holds at least one value; "
                             "check the arguments against the class's documentation"))
        scope.lose(label)
        return [], None, False
    # Counted only within the limits: a spec's arguments could ask a granted class for
    # more memory than the machine has, which the limits refuse before anything is made.
    within = found.params <= cx.limits.max_params and \
        4 * math.prod(out) <= cx.limits.max_activation_bytes
    node = Extern(name=name, in_shape=shape, out_shape=out, span=u.span, target=decl.target,
                  kwargs=tuple(kwargs), params=found.params,
                  macs=count_macs(cls, given, shape, found) if within else None)
    if label is not None:
        scope.layers[name] = ("extern", dict(kwargs), node)
    # Its backward may read its output, and it may be a view of its input: nothing after
    # it writes in place (E0311 names it).
    return [node], out, ref.name


def reused(first: Extern, st: ast.Reuse, label: str, shape: Shape) -> Extern | Diagnostic:
    """``reuse`` of an extern module: the same module called again, on an input of the
    shape it was first given (a class netdsl does not know may fix any of it)."""
    if tuple(shape) != tuple(first.in_shape):
        return Diagnostic(
            "E0320", f"reused `{short(label)}` was built for input {shapes.fmt(first.in_shape)}, "
            f"here it gets {shapes.fmt(shape)}", st.span, f"input {shapes.fmt(shape)}",
            f"an extern module is reused only on the input shape it was first given; use a new "
            f"`{first.target.rsplit('.', 1)[1]}` here")
    return first.model_copy(update={"reuse": True, "span": st.span})


def _signature(cls: type) -> tuple[list[tuple[str, bool]], bool]:
    """The constructor's parameters as (name, required), positional ones first, and
    whether it takes any other keyword (``**kwargs``)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # a class Python cannot read the signature of
        return [], True
    positional, keyword, open_keywords = [], [], False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            open_keywords = True
        elif p.kind is p.KEYWORD_ONLY:
            keyword.append((p.name, p.default is p.empty))
        elif p.kind is not p.VAR_POSITIONAL:
            positional.append((p.name, p.default is p.empty))
    return positional + keyword, open_keywords


def _value(v):
    """``v`` as the IR holds an extern's argument, or POISON where it cannot be one."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else POISON
    if isinstance(v, tuple):
        items = tuple(_value(x) for x in v)
        return POISON if any(x is POISON for x in items) else items
    return POISON


def _name_span(u: ast.Use) -> Span:
    return Span(**{**u.span.model_dump(), "end_column": u.span.column + len(u.name),
                   "end_line": u.span.line})
