"""The rules of general dataflow: named results (``-> name``), read back by name
(``from``, ``add(...)``, ``concat(...)``, ``output ...``), named inputs, and
``split``. Names live in a *value scope*: the network, or one block instance.
Groups, labelled or not, share their parent's, so a ResNet body can name ``c3``
inside ``body: { ... }`` and an FPN read it in ``fpn: { ... }``. Combinator bodies
have none: a residual or a concat branch sees only its input. This module owns the
value scopes and every check of a name and its shape, each a diagnostic at the
name; each rule is a function of the checker's :class:`~.context.Context`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from keyword import iskeyword
from typing import Literal, cast, get_args

from .. import ir
from ..diagnostics import Diagnostic, Fix, closest, rename, short
from ..layers import shapes
from ..layers.base import Arg, ArgTypeError, _bool, _float, _int, _none_or, _pair, _str
from ..span import Span
from ..syntax import ast
from .context import Built, Context, Shape
from .evaluate import Env, span_of
from .flows import ConcatFlow, NameScope, SeqFlow, no_current
from .lost import Lost, skipped
from .values import POISON, show

#: The forms an `output` takes, as the IR names them.
Form = Literal["tuple", "namedtuple", "dict"]
FORMS: tuple[Form, ...] = get_args(Form)


@dataclass
class Value:
    """A named result: its shape (None where an error made it unknown), where it was named,
    and whether anything read it."""

    shape: tuple | None
    span: Span | None
    input: bool = False
    used: bool = False


@dataclass
class ValueScope:
    """The names of one network or block instance (``owner`` is the block's name)."""

    owner: str | None
    bound: dict[str, Value] = field(default_factory=dict)
    pending: list[tuple[str, Span | None]] = field(default_factory=list)
    dangling: Span | None = None  # the statement whose result nothing has read yet
    no_current: bool = False      # named inputs and no `from` yet
    output: tuple | None = None   # (ir.Outputs, span, number of nodes before it)
    inputs: list = field(default_factory=list)
    used: bool = False            # any dataflow statement at all
    unsure: bool = False          # a layer read no input: which names it meant is not known
    # Results that nothing read, dropped by later statements: (place) → (result, statements);
    # and the places of `from` statements, whose result is a named one's.
    dropped: dict[tuple, tuple[Span, list[Span]]] = field(default_factory=dict)
    froms: set[tuple] = field(default_factory=set)
    # The names that statements an error kept from being checked would have bound, and
    # read (lost.py): no read of the first is unknown, and none of the second unused.
    lost_binds: Lost = field(default_factory=Lost)
    lost_reads: Lost = field(default_factory=Lost)
    # Blocks of several tensors: the results `from a, b` passed on, for the block used next
    # ([(name, shape)]); the shapes a block instance was given, for its `input`s; and the
    # outputs of the block just used, for `-> y, z` to name ((shapes, block, where, whether
    # its node was made)).
    pack: list | None = None
    given: list | None = None
    several: tuple | None = None
    unpacked: tuple = ()  # the names `-> y, z` gave last, while no result is current
    late_input: bool = False  # an `input` after a layer or a name was reported


def _values(cx: Context, flow, span, what: str) -> ValueScope | None:
    values = getattr(flow, "values", None) if isinstance(flow, SeqFlow) else None
    if values is None:
        cx.report(Diagnostic(
            "E0130", f"{what} cannot be used inside a combinator", span,
            "a residual, concat, dense, gate, side or split body sees only its input",
            "name results and read them back in the network or block body around it; "
            "a combinator's own parts stay unnamed"))
        return None
    values.used = True
    return values


def _name(cx: Context, ref: ast.Ref, env: Env):
    v = cx.value(ref.name, env)
    if v is POISON:
        return POISON
    if not isinstance(v, str) or not v or not all(c.isalnum() or c == "_" for c in v) or v[0].isdigit():
        cx.report(Diagnostic("E0125", f"invalid result name \"{short(str(v))}\"", ref.span,
                             "a result name is a name: letters, digits and `_`",
                             "for example `skip{i}` in a template: \"skip{i}\""))
        return POISON
    return v


def _read(cx: Context, values: ValueScope, ref: ast.Ref, env: Env):
    """The shape of a named result read at ``ref``, marking it used; POISON if unknown."""
    name = _name(cx, ref, env)
    if name is POISON:
        # Whichever it was, it is not unused; and the result before it may be the one meant.
        values.lost_reads.template(ref.name)
        values.dangling = None
        return POISON, None
    v = values.bound.get(name)
    if v is None:
        values.pending.append((name, ref.span))
        return POISON, name
    v.used = True
    return (POISON if v.shape is None else v.shape), name


def _fresh(values: ValueScope, span) -> None:
    """A result that nothing read is dropped by a `from`, a merge or an `output` at ``span``:
    noted, and reported when the scope closes, unless a read of a name that is not there
    most likely meant it (:func:`close`)."""
    at = values.dangling
    values.pack = values.several = None
    if at is not None:
        # Each statement that dropped it: in a loop, one iteration's result may be dropped by
        # the next iteration's first statement and the last one's by what follows the loop.
        values.dropped.setdefault(_place(at), (at, []))[1].append(span)
        values.dangling = None


def _place(span: Span) -> tuple:
    return span.file, span.line, span.column


# -- statements
def bind(cx: Context, st: ast.Bind, env: Env, flow, scope: NameScope) -> None:
    if isinstance(st.unit, ast.Merge) and st.unit.op == "chunk":
        chunk(cx, st.unit, (st.target,) + st.more, env, flow)
        return
    if st.unit is not None:
        cx.stmt(st.unit, env, flow, scope)
    values = _values(cx, flow, st.target.span, "`->`")
    if values is not None and (st.more or values.several is not None):
        _bind_several(cx, st, env, flow, values)
        return
    name = _name(cx, st.target, env)
    if values is None:
        return
    if name is POISON:
        values.lost_binds.template(st.target.name)  # whichever it was, reading it is no mistake
        return
    if values.no_current:
        no_current(cx, values, st.target.span)
        values.lost_binds.add(name)
        return
    if values.pack is not None:
        one_tensor(cx, values, st.target.span, "`->` names one result")
        values.lost_binds.add(name)
        values.dangling = None
        return
    values.dangling = None
    if not _fresh_name(cx, values, name, st.target.span):
        return
    values.bound[name] = Value(flow.shape, st.target.span)
    if flow.shape is not None:
        flow.accept([ir.Bind(name=name, in_shape=flow.shape, out_shape=flow.shape, span=st.target.span)],
                    flow.shape, True, st.span)


def _fresh_name(cx: Context, values: ValueScope, name: str, span) -> bool:
    """Whether ``name`` is not named yet in ``values`` (else reported, E0127)."""
    if name not in values.bound:
        return True
    first = values.bound[name].span
    cx.report(Diagnostic("E0127", f"result `{name}` is named twice", span,
                         "named again here",
                         f"the first `{name}` is at {_where(span, first)}; "
                         "give each result its own name (a template such as \"skip{i}\" in a loop)"))
    return False


def _names_given(cx: Context, values: ValueScope, refs: tuple[ast.Ref, ...], env: Env) -> list:
    """The names ``-> y, z`` gives (POISON where one cannot be told), each lost until it is
    bound: a read of one is no mistake where the statement fails."""
    names = [_name(cx, ref, env) for ref in refs]
    for ref, name in zip(refs, names, strict=True):
        if name is POISON:
            values.lost_binds.template(ref.name)
        else:
            values.lost_binds.add(name)
    return names


def _all_fresh(cx: Context, values: ValueScope, names: list, refs: tuple[ast.Ref, ...], what: str) -> bool:
    """Whether the names given at once are all known and new: none twice among them, nor
    named before (E0127, reported)."""
    twice = next((r for i, (n, r) in enumerate(zip(names, refs, strict=True))
                  if n is not POISON and n in names[:i]), None)
    if twice is not None:
        cx.report(Diagnostic("E0127", f"result `{cx.text(twice.span)}` is named twice", twice.span,
                             "named again here", f"give each {what} its own name"))
        return False
    return not any(n is POISON for n in names) and all(_fresh_name(cx, values, n, r.span)
                                                      for n, r in zip(names, refs, strict=True))


def _bind_several(cx: Context, st: ast.Bind, env: Env, flow, values: ValueScope) -> None:
    """``-> y, z``: the outputs of the block just used, one name each, in its `output`
    order; the block's node says which names its outputs get."""
    refs = (st.target,) + st.more
    names = _names_given(cx, values, refs, env)
    several, values.several = values.several, None
    if several is None:
        values.dangling = None  # named, if not rightly: not a result nothing reads as well
        if flow.shape is not None and not values.no_current:
            cx.report(Diagnostic("E0137", f"{len(refs)} names for one result", st.more[0].span,
                                 f"`{cx.text(st.span) if st.unit is not None else 'the current result'}` "
                                 "gives one tensor",
                                 f"name it once, `-> {cx.text(st.target.span)}`; names in a list are "
                                 "for a block that ends with `output tuple(...)`"))
        elif values.no_current:
            no_current(cx, values, st.target.span)
        return
    shapes_, block, _, made = several
    values.dangling = None  # named, if not rightly: not a result nothing reads as well
    if len(refs) == 1:
        cx.report(Diagnostic("E0136", f"block `{block}` gives {len(shapes_)} results, named here as one",
                             st.target.span, "one name for several tensors",
                             f"name each one: `-> {', '.join(f'y{i + 1}' for i in range(len(shapes_)))}`, "
                             "in the order of the block's `output tuple(...)`"))
        return
    if len(refs) != len(shapes_):
        cx.report(Diagnostic("E0137", f"{len(refs)} names for the {len(shapes_)} results of block `{block}`",
                             (refs[len(shapes_)] if len(refs) > len(shapes_) else st.target).span,
                             f"block `{block}` returns {len(shapes_)} tensors",
                             "give one name per result, in the order of the block's `output tuple(...)`"))
        return
    if not _all_fresh(cx, values, names, refs, "result"):
        return
    values.dangling = None
    for name, ref, shape in zip(names, refs, shapes_, strict=True):
        values.bound[name] = Value(shape, ref.span)
    if made:
        node = flow.nodes[-1]
        assert isinstance(node, ir.Scope) and node.outputs  # what left several results: the block's node
        flow.nodes[-1] = node.model_copy(update={"targets": tuple(names)})
    flow.shape = None  # no current result: read one of the names
    values.no_current = True
    values.unpacked = tuple(names)


def one_tensor(cx: Context, values: ValueScope, span, what: str) -> None:
    """A statement that reads one tensor where there are several: the results of
    `from a, b` that no block took, or the outputs of a block that `-> y, z` did not
    name. Reported once; the statement's result is unknown."""
    if values.pack is not None:
        names = ", ".join(n for n, _ in values.pack)
        cx.report(Diagnostic("E0136", f"{what}, and `from {names}` gives {len(values.pack)}", span,
                             "reads one tensor",
                             "several results go to a block that declares as many `input`s; "
                             f"for one tensor, write `from {values.pack[0][0]}`, or merge them "
                             f"(`concat({names})`, `add({names})`)"))
    elif values.several is not None:
        shapes_, block, where, _ = values.several
        names = ", ".join(f"y{i + 1}" for i in range(len(shapes_)))
        cx.report(Diagnostic("E0136", f"{what}, and block `{block}` gives {len(shapes_)}", span,
                             "reads one tensor",
                             f"name the block's results first, `-> {names}` (the block is used at "
                             f"{_where(span, where)}), then `from` the one to go on with"))
    values.pack = values.several = None


def from_(cx: Context, st: ast.From, env: Env, flow, scope: NameScope) -> None:
    values = _values(cx, flow, st.span, "`from`")
    if values is None:
        return
    shape, name = _read(cx, values, st.source, env)
    _fresh(values, st.span)
    values.no_current, values.unpacked = False, ()
    values.dangling = st.span  # a `from` that nothing follows before the next one reads nothing
    values.froms.add(_place(st.span))
    if st.more:
        # Several results: the block used next takes them as its inputs (item, block).
        pack = [(name, shape)] + [_read(cx, values, ref, env)[::-1] for ref in st.more]
        # A result whose shape is unknown (an error said why) is passed on as unknown.
        values.pack = [(n, None if s is POISON else s) for n, s in pack]
        flow.shape = None
        return
    if shape is POISON:
        flow.shape = None
        return
    flow.accept([ir.From(name=name, in_shape=flow.shape or (), out_shape=shape, span=st.span)],
                shape, True, st.span)


def merge(cx: Context, st: ast.Merge, env: Env, flow, scope: NameScope) -> None:
    if st.op == "chunk":  # `chunk(x) -> a, b` is checked with its names (:func:`chunk`)
        chunk(cx, st, (), env, flow)
        return
    values = _values(cx, flow, st.span, f"`{st.op}(...)`")
    if values is None:
        return
    read = [(_read(cx, values, ref, env), ref) for ref in st.sources]
    _fresh(values, st.span)
    values.no_current, values.unpacked = False, ()
    values.dangling = st.span
    flow.shape = None
    options = _options(cx, st, env)
    # `by = c`: a constant operand after the results (`mul(x, by = 0.2)` is `x * 0.2`).
    by = next((a for a in st.options if a.name == "by"), None) if st.op in ir.ELEMENTWISE else None
    operands = len(st.sources) + (by is not None)
    if operands < 2:
        cx.report(Diagnostic("E0134", f"`{st.op}` takes two results" if st.op in ir.RESAMPLE else
                             f"`{st.op}` needs two or more "
                             f"{'operands' if st.op in ir.ELEMENTWISE else 'results'}", st.span,
                             f"{len(st.sources)} given",
                             f"`{st.op}(a, b)` gives `a` the height and width of `b`" if st.op in ir.RESAMPLE
                             else f"list the results to merge, e.g. `{st.op}(a, b)`"
                             + (f", or give a constant: `{st.op}(a, by = 2)`" if st.op in ir.ELEMENTWISE
                                else "") + "; to go on from one result, write `from NAME`"))
        return
    if st.op in BINARY and operands > 2:
        at = by.span if by is not None else st.sources[2].span
        cx.report(Diagnostic("E0134", f"`{st.op}` takes two results" if st.op in ir.RESAMPLE else
                             f"`{st.op}` takes two operands", at,
                             f"{len(st.sources)} given" + (" and `by`" if by is not None else ""),
                             f"`{st.op}(a, b)` gives `a` the height and width of `b`; for more, "
                             f"name each result: `{st.op}(a, c) -> a2`, `{st.op}(b, c) -> b2`"
                             if st.op in ir.RESAMPLE else
                             f"`{st.op}(a, b)` is `a {BINARY[st.op]} b`"
                             + (f", `{st.op}(a, by = 2)` is `a {BINARY[st.op]} 2`" if st.op in ir.ELEMENTWISE
                                else "") +
                             f"; for more, name one result and go on: "
                             f"`{st.op}(a, b) -> ab`, then `{st.op}(ab, c)`"))
        return
    if options is None or any(s is POISON for (s, _), _ in read):
        return
    shapes_ = [s for (s, _), _ in read]
    names = [n for (_, n), _ in read]
    if st.op in ir.ELEMENTWISE:
        out = shapes_[0]
        for i, s in enumerate(shapes_[1:], 1):
            joint = broadcast(out, s)
            if joint is None:
                _merge_error(cx, "E0325", f"`{st.op}` needs shapes that broadcast", values, names, shapes_,
                             read, i, "each dimension must be equal, or 1 in one of them (torch's "
                             "broadcasting, with as many dimensions on both sides); a 1×1 `conv2d` "
                             "changes channels, `upsample` or a stride the size, "
                             "`adaptive_avgpool2d(1)` makes [C, 1, 1]")
                return
            out = joint
    elif st.op in ir.RESAMPLE:
        out = _resample(cx, st, options, values, names, shapes_, read)
        if out is None:
            return
    elif st.op == "matmul":
        out = _matmul(cx, values, names, shapes_, read)
        if out is None:
            return
        options["left_shape"] = shapes_[0]
    else:
        bad = next((i for i, s in enumerate(shapes_) if len(s) != 3 or s[1:] != shapes_[0][1:]), None)
        if bad is None and len(shapes_[0]) != 3:
            bad = 0
        if bad is not None:
            _merge_error(cx, "E0326", "`concat` needs [C, H, W] results of one spatial size", values,
                         names, shapes_, read, bad,
                         "concat joins channels; give every result the same height and width "
                         "(`resize`, `crop`, `upsample`, a stride, or padding)")
            return
        out = (sum(s[0] for s in shapes_),) + tuple(shapes_[0][1:])
    op = cast(ir.MergeOp, st.op)  # the grammar writes no other
    flow.accept([ir.Merge(op=op, sources=tuple(names), in_shape=(), out_shape=out, span=st.span, **options)],
                out, op == "crop", st.span)  # a crop is a view of its source: not to be overwritten


def chunk(cx: Context, st: ast.Merge, refs: tuple[ast.Ref, ...], env: Env, flow) -> None:
    """``chunk(x) -> a, b``: the named result ``x`` cut into as many equal parts as names
    follow it (``x.chunk(n, 1)``), along ``dim`` of each sample (channels by default),
    each part a named result; no result is current after it, as after ``-> y, z``."""
    values = _values(cx, flow, st.span, "`chunk(...)`")
    if values is None:
        return
    names = _names_given(cx, values, refs, env)
    read = [(_read(cx, values, ref, env), ref) for ref in st.sources]
    _fresh(values, st.span)
    values.dangling = None
    values.no_current, values.unpacked = False, ()
    flow.shape = None  # unknown where it fails (the error says why); none once the parts are named
    options = _options(cx, st, env)
    if len(st.sources) != 1:
        cx.report(Diagnostic("E0134", "`chunk` takes one result", st.sources[1].span,
                             f"{len(st.sources)} given",
                             "`chunk(x) -> a, b` cuts `x` into parts; cut each result on its own, or "
                             "`concat` them first"))
        return
    if len(refs) < 2:
        at = refs[0].span if refs else st.span
        cx.report(Diagnostic("E0137", f"`chunk` with {len(refs) or 'no'} name{'s' if not refs else ''} "
                             "after it", at, "it cuts into as many parts as names follow it",
                             f"name two parts or more: `chunk({cx.text(st.sources[0].span)}) -> a, b`"))
        values.lost_binds.everything = True  # the parts' names are not known: none read is a mistake
        return
    ((shape, source), _), = read
    if options is None or any(n is POISON for n in names):
        return
    if shape is POISON:  # an error made `x` unknown (said where it was made): so are its parts
        for name, ref in zip(names, refs, strict=True):
            if name not in values.bound:
                values.bound[name] = Value(None, ref.span)
        return
    try:
        d = shapes.dim("chunk", options.get("dim", 0), shape)
    except shapes.ShapeError as e:
        arg = next(a for a in st.options if a.name == "dim")
        cx.report(Diagnostic(e.code, e.message, span_of(arg.value), e.label, e.help))
        return
    n = len(refs)
    if shape[d] % n:
        cx.report(Diagnostic("E0332", f"`chunk` cannot cut {shape[d]} into {n} equal parts", refs[-1].span,
                             f"{n} parts of `{source}`, {shapes.fmt(shape)}, along dimension {d}",
                             f"name as many parts as divide {shape[d]}, or cut unequal parts with "
                             f"`narrow` (`from {source}`, `apply narrow({d}, start, length) -> a`)"))
        return
    if not _all_fresh(cx, values, names, refs, "part"):
        return
    part = shape[:d] + (shape[d] // n,) + shape[d + 1:]
    for name, ref in zip(names, refs, strict=True):
        values.bound[name] = Value(part, ref.span)
    values.no_current, values.unpacked = True, tuple(names)
    flow.accept([ir.Chunk(source=source, targets=tuple(names), dim=d, in_shape=shape, out_shape=part,
                          span=st.span)], None, False, st.span)


# torch's largest float32: a constant beyond it is infinite in every tensor it meets.
FLOAT32_MAX = 3.4028234663852886e38

# The elementwise merges that take exactly two operands, and the resampling ones.
BINARY = {"sub": "-", "div": "/", "resize": "", "crop": "", "matmul": "@"}

# The options each merge takes by keyword (concat takes none).
_BY = Arg("by", _none_or(_float), None, "a constant operand, after the results: `mul(x, by = 0.2)`")
OPTIONS: dict[str, tuple[Arg, ...]] = {
    **{op: (_BY,) for op in ir.ELEMENTWISE},
    "resize": (Arg("mode", _str(("nearest", "bilinear")), "nearest", '"nearest" or "bilinear"'),
               Arg("align_corners", _none_or(_bool), None, 'for "bilinear": align the corner pixels')),
    "crop": (Arg("offset", _none_or(_pair), None, "the window's top-left corner [y, x]; centred "
                 "without it"),),
    "chunk": (Arg("dim", _int, 0, "the dimension cut, without the batch: 0 is the channels"),),
}


def _options(cx: Context, st: ast.Merge, env: Env) -> dict | None:
    """The merge's options by keyword, converted; None where one was wrong (reported)."""
    args = OPTIONS.get(st.op, ())
    use = ast.Use(name=st.op, args=st.options, has_parens=True, span=st.span)
    bound, ok = cx.bind(st.op, [(a.name, False) for a in args], use, env)
    out: dict = {}
    for a in args:
        if a.name not in bound:
            continue
        v, node = bound[a.name]
        if v is POISON:
            continue
        try:
            out[a.name] = a.convert(v)
        except ArgTypeError as e:
            cx.report(Diagnostic("E0206", f"`{st.op}` option `{a.name}` must be {e.expected}",
                                 span_of(node.value), f"found {show(v)}",
                                 f"for example `{a.name} = {show(a.default)}`, the default"
                                 if a.default is not None else None))
            ok = False
    if ok and out.get("align_corners") is not None and out.get("mode", "nearest") == "nearest":
        cx.report(Diagnostic("E0222", '`align_corners` only applies to `mode = "bilinear"`',
                             bound["align_corners"][1].span, "nearest mode has no corners to align",
                             'drop `align_corners`, or add `mode = "bilinear"`'))
        ok = False
    if ok and out.get("by") is not None:
        c = out["by"]
        if not abs(c) <= FLOAT32_MAX:
            cx.report(Diagnostic("E0204", f"`{st.op}` option `by` must fit a float32", bound["by"][1].span,
                                 f"found {show(c)}", f"give a value between -{FLOAT32_MAX:.4g} and "
                                 f"{FLOAT32_MAX:.4g}: the tensors it meets are float32"))
            ok = False
        elif st.op == "div" and c == 0:
            cx.report(Diagnostic("E0211", "`div` by a constant 0", bound["by"][1].span, "by = 0",
                                 "every element would be infinite or NaN; divide by another value"))
            ok = False
    if ok and any(v < 0 for v in out.get("offset") or ()):
        cx.report(Diagnostic("E0204", f"`{st.op}` option `offset` must be at least 0", bound["offset"][1].span,
                             f"found {show(list(out['offset']))}",
                             "the offset is the window's top-left corner in its source"))
        ok = False
    return out if ok else None


def _resample(cx: Context, st: ast.Merge, options: dict, values, names, shapes_, read) -> tuple | None:
    """The shape of ``resize(a, b)`` or ``crop(a, b)``: `a`'s channels at `b`'s height
    and width; None where they do not apply (reported)."""
    bad = next((i for i, s in enumerate(shapes_) if len(s) != 3), None)
    if bad is not None:
        _merge_error(cx, "E0329", f"`{st.op}` needs [C, H, W] results", values, names, shapes_, read, bad,
                     f"`{st.op}(a, b)` gives the map `a` the height and width of the map `b`; a flat "
                     "result has neither")
        return None
    (c, h, w), (_, h2, w2) = shapes_
    if st.op == "crop":
        dy, dx = options.get("offset") or ((h - h2) // 2, (w - w2) // 2)
        if h2 > h or w2 > w or h2 + dy > h or w2 + dx > w:
            where = f" at offset [{dy}, {dx}]" if "offset" in options else ""
            _merge_error(cx, "E0330", f"`crop` window{where} reaches outside its source", values, names,
                         shapes_, read, 1, f"the window is `{names[1]}`'s size, which must fit in "
                         f"`{names[0]}`" + (" from the offset" if where else "") +
                         "; to enlarge a map, use `resize` or `zero_pad2d`")
            return None
    return (c, h2, w2)


def _matmul(cx: Context, values, names, shapes_, read) -> tuple | None:
    """The shape of ``matmul(a, b)``, ``a @ b`` on each sample: [..., n, k] by [..., k, m]
    gives [..., n, m], the leading dimensions broadcast; None where they do not fit
    (reported). Each sample needs two dimensions at least: with the batch in front, a
    flat [F] result would be a matrix of the batch."""
    (a, b) = shapes_
    if len(a) < 2 or len(b) < 2:
        bad = 0 if len(a) < 2 else 1
        _merge_error(cx, "E0331", "`matmul` needs two dimensions in each sample", values, names, shapes_,
                     read, bad, "a sample's last two dimensions are the matrix; `unflatten(0, [1, -1])` "
                     "makes a [F] vector a [1, F] row")
        return None
    lead = broadcast(a[:-2], b[:-2])
    if a[-1] != b[-2] or lead is None:
        why = (f"`{names[0]}`'s last dimension ({a[-1]}) is not `{names[1]}`'s second to last "
               f"({b[-2]})" if a[-1] != b[-2] else "the dimensions before the last two do not broadcast")
        _merge_error(cx, "E0331", f"`matmul` of shapes that do not fit: {why}", values, names, shapes_, read,
                     1, "`matmul(a, b)` takes [..., n, k] and [..., k, m]; `permute` swaps two dimensions")
        return None
    return lead + (a[-2], b[-1])


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape torch broadcasts two per-sample shapes to, or None where it cannot.
    Both have the batch dimension in front, so the ranks must be equal as well: torch
    would align a shorter shape with the last dimensions, never with the channels.

    >>> broadcast((16, 8, 8), (16, 1, 1)), broadcast((16, 8, 8), (16,)), broadcast((4, 8), (3, 8))
    ((16, 8, 8), None, None)
    """
    if len(a) != len(b):
        return None
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b, strict=True)):
        return None
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))


def _merge_error(cx: Context, code, message, values, names, shapes_, read, bad, help):
    first, other = names[0], names[bad]
    where = lambda n: _where(read[0][1].span, values.bound[n].span)  # noqa: E731
    cx.report(Diagnostic(
        code, message, read[bad][1].span,
        f"`{other}` is {shapes.fmt(shapes_[bad])} (named at {where(other)}), "
        f"`{first}` is {shapes.fmt(shapes_[0])} (named at {where(first)})", help))


def output(cx: Context, st: ast.Output, env: Env, flow, scope: NameScope) -> None:
    block = isinstance(flow, SeqFlow) and flow.block
    if not (isinstance(flow, SeqFlow) and (flow.network or block)):
        around: ValueScope | None = getattr(flow, "values", None)
        if around is not None:
            for e in st.entries:
                _read(cx, around, e.source, env)  # read, so that they are not reported unused as well
        cx.report(Diagnostic("E0131", "`output` belongs in a network's or a block's own body", st.span,
                             "inside a group or combinator",
                             "move `output` to the end of the network or block body around it"))
        return
    values = _values(cx, flow, st.span, "`output`")
    if values is None:  # never: a network's own flow has a value scope
        return
    if values.output is not None:
        cx.report(Diagnostic("E0131", "a network has one `output`", st.span, "given again here",
                             f"the first is at {_where(st.span, values.output[1])}; list every "
                             "result in that one"))
        return
    if st.form not in FORMS:
        for e in st.entries:  # read, so that they are not reported unused as well
            _read(cx, values, e.source, env)
        near = closest(st.form, FORMS)
        cx.report(Diagnostic("E0131", f"unknown output form `{short(st.form)}`", st.form_span or st.span,
                             "not tuple, namedtuple or dict",
                             f"did you mean `{near}`?" if near else
                             "write `output tuple(a, b)`, `output namedtuple(a, b)` or "
                             "`output dict(\"0\": a, b: b)`", fixes=rename(near, st.form_span)))
        return
    if block and (st.form != "tuple" or len(st.entries) < 2):
        for e in st.entries:
            _read(cx, values, e.source, env)
        cx.report(Diagnostic("E0131", "a block's `output` is a tuple of two results or more",
                             st.form_span if st.form != "tuple" else st.span,
                             f"`output {st.form}(...)` of {len(st.entries)}",
                             "write `output tuple(a, b)`: the block's forward returns them in that "
                             "order, as `return a, b`; a block of one result ends with it, no `output`"))
        return
    outputs = _outputs(cx, st, st.form, values, env)
    _fresh(values, st.span)
    values.output = (outputs, st.span, len(flow.nodes), len(st.entries))


def _outputs(cx: Context, st: ast.Output, form: Form, values: ValueScope, env: Env) -> ir.Outputs | None:
    """What `output` returns: its entries' keys, results and shapes; None if one is wrong."""
    keys, sources, shapes_, ok = [], [], [], True
    for e in st.entries:
        shape, name = _read(cx, values, e.source, env)
        key = name
        if e.key is not None:
            key = cx.label(e.key, env) if form == "namedtuple" else cx.value(e.key, env)
            if form == "tuple":
                cx.report(Diagnostic("E0131", "a tuple has no keys", e.key.span, "a key",
                                     "drop the key, or use `output namedtuple(...)` or "
                                     "`output dict(...)`"))
                ok = False
                continue
        if shape is POISON or key is POISON or name is None:
            ok = False
            continue
        if form == "namedtuple" and (iskeyword(key) or key.startswith("_") or key[0].isdigit()):
            cx.report(Diagnostic("E0131", f"`{short(key)}` cannot be a field of a named tuple",
                                 (e.key or e.source).span, "a Python keyword, or starts with `_` or a digit",
                                 "give it a key that is a name, e.g. `c3: c3`, or use `output dict(...)`"))
            ok = False
            continue
        if key in keys:
            cx.report(Diagnostic("E0131", f"output `{short(str(key))}` is given twice", e.span,
                                 "given again here", "give each output its own key"))
            ok = False
            continue
        keys.append(key)
        sources.append(name)
        shapes_.append(shape)
    if not ok:
        return None
    return ir.Outputs(form=form, keys=tuple(map(str, keys)), sources=tuple(sources), shapes=tuple(shapes_),
                      span=st.span)


def named_input(cx: Context, st: ast.NamedInput, env: Env, flow, scope: NameScope) -> None:
    if not getattr(flow, "network", False):
        cx.report(Diagnostic("E0309", "`input` only belongs in a network", st.span,
                             "inside a block or group",
                             "blocks take their input from where they are used"))
        return
    values = flow.values
    values.used = True
    if flow.nodes or (flow.has_input and not values.inputs):
        cx.report(Diagnostic("E0132", "named inputs come first, and all inputs are named or none",
                             st.span, "after a layer or an unnamed `input`",
                             "declare every input at the top of the network as `input NAME: [C, H, W]`"))
        return
    if st.name in values.bound:
        cx.report(Diagnostic("E0127", f"input `{st.name}` is named twice", st.span, "named again here",
                             "give each input its own name"))
        return
    if not _parameter_name(st.name):
        # The built model's forward takes the inputs by these names: `forward(self, rgb, depth)`.
        cx.report(Diagnostic("E0113", f"input `{st.name}` cannot name a parameter of the model's "
                             "forward", st.span,
                             f"`{st.name}`, which the forward uses itself" if st.name in FORWARD_NAMES
                             else "a Python keyword" if iskeyword(st.name) else "not a plain Python name",
                             f"rename it, e.g. `{st.name.strip('_') or 'x'}_input`: calls, FX, "
                             "torch.export and ONNX take the inputs by these names"))
        return
    override = flow.input_override
    if isinstance(override, dict):
        override = override.get(st.name)
    elif override is not None and override and isinstance(override[0], tuple):
        k = len(values.inputs)
        override = override[k] if k < len(override) else None
    elif override is not None and values.inputs:
        override = None  # one shape given: the first input's
    value = override if override is not None else cx.value(st.shape, env)
    shape = input_shape(cx, value, span_of(st.shape), "input rgb: [3, 224, 224]")
    values.bound[st.name] = Value(shape, st.span, input=True)
    values.inputs.append((st.name, shape, st.span))
    flow.has_input = True
    values.no_current = True
    if shape is not None and flow.input_shape is None:
        flow.input_shape = shape
    flow.shape = None


def block_input(cx: Context, st: ast.Input, env: Env, flow, scope: NameScope) -> None:
    """``input x`` in a block: the block's next tensor, given where it is used (the current
    result, or one of `from a, b`), and a parameter of its forward."""
    assert isinstance(st.shape, ast.Name)
    name = st.shape.id
    values = flow.values
    values.used = True
    if flow.nodes or values.dangling is not None or any(not v.input for v in values.bound.values()):
        values.dangling = None  # what came before is misplaced, not unused
        if not values.late_input:  # once a block: the inputs after it are misplaced by the same mistake
            cx.report(Diagnostic("E0132", "a block's inputs come first", st.span, "after a layer or a name",
                                 "declare every tensor the block takes at the top of its body, `input x`"))
            values.late_input = True
        # Taken as declared all the same, so that its uses and the block's callers say nothing more.
    if name in values.bound:
        cx.report(Diagnostic("E0127", f"input `{name}` is named twice", st.span, "named again here",
                             "give each input its own name"))
        return
    if not _parameter_name(name):
        values.lost_binds.add(name)
        cx.report(Diagnostic("E0113", f"input `{name}` cannot name a parameter of the block's forward",
                             st.span,
                             f"`{name}`, which the forward uses itself" if name in FORWARD_NAMES
                             else "a Python keyword" if iskeyword(name) else "not a plain Python name",
                             f"rename it, e.g. `{name.strip('_') or 'x'}_input`: the block's forward "
                             "takes its inputs by these names"))
        return
    given = values.given or []
    k = len(values.inputs)
    shape = given[k] if k < len(given) else None  # too few given: said where the block is used
    values.bound[name] = Value(shape, st.span, input=True)
    values.inputs.append((name, shape, st.span))
    values.no_current = True
    flow.shape = None


def close_block(cx: Context, sub, block: str) -> None:
    """The end of a block instance's body: several results left unnamed there, and an
    `output` that is not last, are mistakes."""
    values = sub.values
    if values.several is not None:
        one_tensor(cx, values, values.several[2], f"block `{block}` ends with one result")
    elif values.pack is not None:
        one_tensor(cx, values, None, f"block `{block}` ends with one result")
    if values.output is not None and len(sub.nodes) > values.output[2]:
        cx.report(Diagnostic("E0131", "`output` must be the block's last statement",
                             sub.nodes[values.output[2]].span, "this comes after it",
                             "move `output` to the end of the block"))


def block_node(cx: Context, block: str, name: str, cls: str, sub, pack, given, span, caller) -> Built:
    """The node of an instance of a block that takes or gives several tensors, checked
    against what it is given where it is used (``pack``: the results of `from a, b`, or
    None for the current one; ``given`` their shapes); a block of several outputs leaves
    them for `-> y, z` to name (``caller``, the value scope it is used in)."""
    values = sub.values
    declared = [n for n, _, _ in values.inputs]
    takes = len(declared) or 1
    if len(given) != takes and not values.unsure:  # (unsure: an error hid an `input`)
        where = _where(span, values.inputs[0][2]) if declared else None
        cx.report(Diagnostic(
            "E0135", f"block `{block}` takes {takes} tensor{'s' * (takes != 1)}, "
            f"{len(given)} given", span,
            f"{'`from ' + ', '.join(n for n, _ in pack) + '`' if pack else 'the current result'} "
            f"gives {len(given)}",
            f"its inputs are {', '.join(declared)} (declared at {where}): name as many results and "
            f"pass them in order, `from {', '.join(declared)}`, before it" if declared and takes > 1 else
            "it reads one tensor: pass one result, `from a`, or give the block an `input` for each "
            "tensor it takes (`input x`, `input skip`)"))
        return [], None, False
    out = values.output[0] if values.output is not None else None
    if out is None and values.output is not None:
        # What `output` returns is unknown (an error said why), but not how many.
        if caller is not None:
            caller.several = ((None,) * values.output[3], block, span, False)
        return [], None, False
    outs = tuple(out.shapes) if out is not None else (sub.shape,)
    if any(s is None for s in given) or any(s is None for s in outs) or values.unsure:
        if out is not None and caller is not None:
            caller.several = (outs, block, span, False)  # names for them, of unknown shapes
        return [], None, False
    node = ir.Scope(name=name, cls=cls, block=block, body=tuple(sub.nodes), in_shape=given[0],
                    out_shape=outs[0], inputs=tuple(declared), outputs=tuple(out.sources) if out else (),
                    in_shapes=tuple(given) if len(given) > 1 else (), out_shapes=outs if out else (),
                    sources=tuple(n for n, _ in pack) if pack else (), span=span)
    if out is None:
        return [node], sub.shape, sub.shared
    if caller is None:
        cx.report(Diagnostic("E0130", f"block `{block}`, which gives {len(outs)} results, cannot be used "
                             "inside a combinator", span,
                             "a residual, concat, dense, gate, side or split body has no names for them",
                             "use it in the network or block body around the combinator, and name its "
                             f"results: `-> {', '.join(f'y{i + 1}' for i in range(len(outs)))}`"))
        return [], None, False
    caller.several = (outs, block, span, True)
    return [node], None, False


# Names a built model's forward uses itself: an input may not take them.
FORWARD_NAMES = frozenset({"self", "torch", "F", "nn", "getattr"})


def _parameter_name(name: str) -> bool:
    """Whether ``name`` can be a parameter of a Python function as it is: an identifier,
    no keyword, not ``self``, not private-looking, unchanged by Python's NFKC
    normalisation of identifiers.

    >>> [_parameter_name(n) for n in ("rgb", "self", "class", "__x", "ﬁ", "torch")]
    [True, False, False, False, False, False]
    """
    return (name.isidentifier() and not iskeyword(name) and name not in FORWARD_NAMES
            and not name.startswith("__") and unicodedata.normalize("NFKC", name) == name)


def input_shape(cx: Context, value, span: Span | None, example: str) -> Shape | None:
    """The shape an `input` statement declares, named or not, checked (``example`` is one
    for the help); None where it is no shape (reported) or a mistake made it unknown.

    >>> from netdsl.check.checker import Checker
    >>> from netdsl.syntax.loader import Program
    >>> cx = Checker(Program(None))
    >>> input_shape(cx, (3, 0, 8), None, "input [3, 8, 8]"), cx.diags[0].message
    (None, 'input dimension 0 is out of range')
    """
    if value is POISON:
        return None
    ok = (isinstance(value, tuple) and len(value) in (1, 2, 3)
          and all(isinstance(d, int) and not isinstance(d, bool) for d in value))
    if not ok:
        cx.report(Diagnostic("E0309", "`input` must be a list of 3 integers [C, H, W], "
                             "2 integers [C, L] or 1 integer [F]", span, f"found {show(value)}",
                             f"for example `{example}`"))
        return None
    bad = next((d for d in value if d < 1 or d > cx.limits.max_dim), None)
    if bad is not None:
        cx.report(Diagnostic("E0309" if bad < 1 else "E0407", f"input dimension {bad} is out of range",
                             span, f"in {show(value)}",
                             "every dimension must be at least 1" if bad < 1 else
                             f"the limit is {cx.limits.max_dim} (--limit max_dim=N)"))
        return None
    return tuple(value)


# -- split
def split(cx: Context, st: ast.Split, env: Env, shape, shared, scope: NameScope) -> Built:
    counted = _split_parts(cx, st, env, shape)
    if counted is None:
        skipped(st.body, None, scope)
        return [], None, False
    n, parts = counted
    flow = SplitFlow(shape)
    flow.shapes = [(p,) + tuple(shape[1:]) for p in parts] if shape is not None else []
    cx.run(st.body, Env({}, env), flow, scope)
    branches = flow.shaped()
    if shape is None or branches is None:
        return [], None, False
    if len(branches) != n:
        cx.report(Diagnostic("E0327", f"`split` has {len(branches)} parts for {n} sizes", st.span,
                             f"{len(branches)} parts", "give one part per size"))
        return [], None, False
    first = branches[0][1]
    for _, s, span in branches:
        if len(s) != 3 or s[1:] != first[1:]:
            cx.report(Diagnostic(
                "E0327", "the parts of a `split` must give one spatial size", span or st.span,
                f"this part gives {shapes.fmt(s)}, the first {shapes.fmt(first)}",
                "their results are concatenated along channels; give every part the same strides"))
            return [], None, False
    out = (sum(s[0] for _, s, _ in branches),) + tuple(first[1:])
    node = ir.Split(sizes=tuple(parts), parts=tuple(tuple(b) for b, _, _ in branches),
                    in_shape=shape, out_shape=out, span=st.span)
    return [node], out, False


def _split_parts(cx: Context, st: ast.Split, env: Env, shape) -> tuple[int, list[int]] | None:
    """How many parts a `split` has, and each one's channels ([] where the input's shape is
    unknown); None where the sizes or the count of parts are wrong (reported)."""
    items = [s for s in st.body if not isinstance(s, (ast.Let, ast.Assert))]
    sizes = _split_sizes(cx, st, env, items)
    if sizes is POISON:
        return None
    n = len(sizes) if sizes is not None else len(items)
    if shape is None:
        return n, []
    c = shape[0]
    if sizes is None and (n == 0 or c % n):
        cx.report(Diagnostic("E0327", f"{c} channels do not split into {n} equal parts", st.span,
                             f"the input is {shapes.fmt(shape)}",
                             "give the sizes, e.g. `split [a, b] { ... }`, or a part count that "
                             f"divides {c}" if n else "list one part per line inside the braces"))
        return None
    if sizes is not None and sum(sizes) != c:
        cx.report(Diagnostic("E0327", f"`split` sizes add up to {sum(sizes)}, the input has {c} channels",
                             span_of(st.sizes), f"{show(sizes)}",
                             f"make the sizes add up to {c}"))
        return None
    return n, list(sizes) if sizes is not None else [c // n] * n


def _split_sizes(cx: Context, st: ast.Split, env: Env, items: list):
    """The sizes a `split` gives, checked; None for equal parts, one per item of its body;
    POISON where either is wrong (reported)."""
    if st.sizes is not None:
        sizes = cx.typed(st.sizes, env, "list", "`split` sizes")
        if sizes is POISON:
            return POISON
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            cx.report(Diagnostic("E0327", "`split` sizes must be channel counts of 1 or more",
                                 span_of(st.sizes), f"found {show(sizes)}",
                                 "for example `split [16, 48] { ... }`"))
            return POISON
        return sizes
    if any(isinstance(s, (ast.For, ast.If)) for s in items):
        cx.report(Diagnostic("E0327", "`split` into equal parts needs one part per line",
                             st.span, "a `for` or `if` makes the count of parts unknown here",
                             "give the sizes: `split [a, b, ...] { ... }`"))
        return POISON
    return None


# -- the end of a value scope
def close(cx: Context, values: ValueScope) -> None:
    places: set[tuple] = set()  # a template read in a loop is reported once, for its first name
    for name, span in values.pending:
        v = values.bound.get(name)
        if v is not None:
            v.used = True  # read too early, but read: not unused as well
            cx.report(Diagnostic("E0126", f"`{name}` is used before it is named", span,
                                 f"named later, at {_where(span, v.span)}",
                                 "move this after the statement that names it: a result exists once "
                                 "the statement before `-> NAME` has run"))
            continue
        if name in values.lost_binds:
            continue  # a statement that would have named it failed, and said why
        inner = cx.inner_names.get(name)
        if inner is not None:
            block, where = inner
            cx.report(Diagnostic("E0129", f"`{name}` is named inside block `{block}`", span,
                                 f"it belongs to the block instance at {_where(span, where)}",
                                 "a block's names stay inside it: read it there, or make the block "
                                 "end with it and name the block's result outside"))
            continue
        if values.owner is not None and name in _outer_names(cx):
            cx.report(Diagnostic("E0129", f"`{name}` is not visible in block `{values.owner}`", span,
                                 "named outside the block",
                                 "a block sees only its input: pass the result in by merging outside "
                                 "the block, or move this part out of the block"))
            continue
        # A misspelling, most likely, of a result nothing else reads: not unused as well.
        unread = closest(name, [n for n, v in values.bound.items() if not v.used])
        near = unread or closest(name, list(values.bound))
        place = span.where() if span else None, span.column if span else None
        first = place not in places
        places.add(place)
        # Or the result dropped by this read's statement (or, where no name is near, before
        # it): the `-> NAME` after it is missing. Said here, not as a result never used too.
        meant = _dropped_before(values, span, near is None) if first else None
        if meant is None and first and near is not None and (unread is None or
                                                             _later(values.bound[near].span, span)):
            # A name read elsewhere already, or given only further down (a later iteration's,
            # in a loop), is a poor guess beside a result that an earlier statement left unread.
            meant = _dropped_before(values, span, True)
        if meant is not None:
            near = None
        elif near is not None:
            values.bound[near].used = True
        if not first:
            continue
        known = ", ".join(values.bound) or "none yet"
        # As edits: the name in place of a misspelling written as it is read (not a template),
        # or `-> NAME` after the statement whose result was meant.
        fixes = (rename(near, span) if near and cx.text(span) == name else () if near else
                 (Fix(f"name its result `{name}`", meant.replace(line=meant.end_line or meant.line,
                                                                  column=meant.end_column), f" -> {name}"),)
                 if meant is not None and meant.end_column is not None else ())
        cx.report(Diagnostic("E0125", f"no result named `{short(name)}`", span, "not named before",
                             f"did you mean `{near}`?" if near else
                             f"name the result of `{cx.text(meant)}` at {_where(span, meant)} with "
                             f"`-> {short(name)}`: nothing reads it" if meant else
                             f"name a result with `-> {short(name)}` first (named here: {known})", fixes=fixes))
    for at, (span, *_) in values.dropped.values():
        cx.report(Diagnostic("E0128", "this result is never used", at,
                             f"the next statement, at {_where(at, span)}, reads named results instead",
                             "name it with `-> NAME` and read it later, or remove it"))
    # A statement that names a result in each iteration of a loop or in one branch of an
    # `if` (`-> "x{i}"`) has read one of them somewhere: the others are the loop's ends
    # (the last stage that nothing after it reads), not a wrong name.
    # (A span takes no part in equality: the statement is told by its file and position.)
    read_at = {_at(v.span) for v in values.bound.values() if v.used and v.span is not None}
    for name, v in values.bound.items():
        if not v.used and (v.span is None or _at(v.span) not in read_at) \
                and not (v.input and values.unsure) and name not in values.lost_reads:
            what = "input" if v.input else "result"
            cx.report(Diagnostic("E0128", f"{what} `{name}` is never used", v.span, "named here",
                                 "read it with `from`, `add(...)`, `concat(...)` or `output`, "
                                 f"or remove {'the input' if v.input else f'`-> {name}`'}"))
        if values.owner is not None:
            cx.inner_names.setdefault(name, (values.owner, v.span))
            cx.record.inner.append((name, values.owner, v.span))  # replayed by the block memo


def _at(span: Span) -> tuple:
    return span.file, span.line, span.column


def _dropped_before(values: ValueScope, span: Span | None, earlier: bool) -> Span | None:
    """The result dropped by the statement that reads at ``span``, or with ``earlier`` the
    last one dropped before it, that no other read has claimed: claimed. A `from` is no
    candidate: its result has a name already."""
    if span is None:
        return None
    before = [k for k, (at, by) in values.dropped.items()
              if at.file == span.file and (at.line, at.column) < (span.line, span.column)
              and (earlier or any(_within(span, b) for b in by)) and k not in values.froms]
    if not before:
        return None
    return values.dropped.pop(max(before, key=lambda k: k[1:]))[0]


def _later(a: Span | None, b: Span | None) -> bool:
    """Whether ``a`` comes after ``b`` in one file."""
    return a is not None and b is not None and a.file == b.file and (a.line, a.column) > (b.line, b.column)


def _within(inner: Span, outer: Span) -> bool:
    """Whether ``inner`` lies in ``outer`` (of one file)."""
    end = (outer.end_line or outer.line, outer.end_column or outer.column)
    return inner.file == outer.file and (outer.line, outer.column) <= (inner.line, inner.column) <= end


def _outer_names(cx: Context) -> set:
    values = cx.network_values
    return set(values.bound) if values is not None else set()


class SplitFlow(ConcatFlow):
    """The parts of a `split`: part k sees the k-th slice of the input's channels."""

    shapes: list = []

    def next_input(self, checker, span):
        k = len(self.branches)
        if not self.shapes:
            return None, True
        # A part beyond the sizes is reported once all are counted; it sees the last slice.
        return self.shapes[min(k, len(self.shapes) - 1)], True


def _where(here, span) -> str:
    if span is None:
        return "?"
    return f"{span.line}:{span.column}" if here is not None and span.file == here.file else span.where()
