"""What differs between two checked networks, module by module, matched by module path.

A module is *added* when only B has its path, *removed* when only A has it, and
*changed* when both have it and its type, output shape, parameters, MACs or a
layer's arguments differ, or when something inside it was added, removed or
changed. A renamed module is therefore one removed and one added. Totals are
B's minus A's, MACs in eval mode as ``check`` counts them (side heads left out).

    >>> import netdsl
    >>> a = netdsl.compile("network n() { input [3, 8, 8]\\n c: conv2d(4, 3) }")
    >>> b = netdsl.compile("network n() { input [3, 8, 8]\\n c: conv2d(8, 3) }")
    >>> d = diff(a, b)
    >>> [(m.change, m.name, m.fields) for m in d.modules], d.params, d.macs
    ([('changed', 'c', {'out_channels': (4, 8)})], 112, 3888)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .. import ir
from ..diagnostics import escape
from ..layers import KINDS
from .counts import (
    _container_merge_macs,
    _is_module,
    analyse,
    layer_macs,
    layer_params,
    merge_macs,
    scope_type,
    type_name,
)


@dataclass(frozen=True)
class Module:
    """One module of one network: its figures for batch 1 (MACs of a side head included)."""

    name: str
    depth: int
    type: str
    shape: tuple[int, ...]
    params: int
    macs: int
    side: bool                       # inside a side head: trained, not run in eval
    leaf: bool                       # a layer, not a block or group
    arguments: dict = field(default_factory=dict, compare=False)  # a layer's, else empty


@dataclass
class Change:
    change: str                      # "added", "removed" or "changed"
    name: str
    depth: int
    a: Module | None
    b: Module | None
    fields: dict[str, tuple] = field(default_factory=dict)  # argument -> (A's, B's)

    @property
    def params(self) -> int:
        return (self.b.params if self.b else 0) - (self.a.params if self.a else 0)

    @property
    def macs(self) -> int:
        return (self.b.macs if self.b else 0) - (self.a.macs if self.a else 0)


@dataclass
class Diff:
    a: ir.Network
    b: ir.Network
    modules: list[Change]
    params: int                      # B's total minus A's
    macs: int                        # the same, eval mode


def modules(net: ir.Network) -> list[Module]:
    """Every module of ``net`` in ``named_modules`` order, with its figures.

    >>> import netdsl
    >>> [(m.name, m.type, m.params) for m in modules(netdsl.compile(
    ...     "block b() { c: conv2d(4, 1) }\\nnetwork n() { input [3, 8, 8]\\n x: b\\n relu }"))]
    [('x', 'B', 16), ('x.c', 'Conv2d', 16), ('relu', 'ReLU', 0)]
    """
    out: list[Module] = []

    def walk(nodes, prefix: str, depth: int, side: bool) -> tuple[int, int]:
        params = macs = 0
        for node in nodes:
            if isinstance(node, ir.Merge):
                macs += merge_macs(node)  # work in the forward, no module
                continue
            if isinstance(node, ir.Layer) and not _is_module(node):
                # Reuse, apply or a bare parameter: no module of its own, its figures
                # are the enclosing module's (a reused module's parameters, its own).
                macs += layer_macs(node)
                params += layer_params(node) if KINDS[node.kind].bare_parameter else 0
                continue
            if isinstance(node, ir.Layer):
                args = KINDS[node.kind].arguments(node)
                m = Module(prefix + node.name, depth, type_name(node),
                           tuple(node.out_shape), layer_params(node), layer_macs(node), side, True, args)
                out.append(m)
            elif isinstance(node, ir.Scope):
                at = len(out)  # its place in the order, before its body; figures once that is walked
                p, mc = walk(node.body, f"{prefix}{node.name}.", depth + 1, side)
                kind = scope_type(node)
                # A container's merges are its owner's forward's work, as analyse counts them.
                outside = _container_merge_macs(node) if kind == "Container" else 0
                m = Module(prefix + node.name, depth, kind, tuple(node.out_shape), p, mc - outside, side, False)
                out.insert(at, m)
                macs += outside
            else:
                inner = side or node.kind == "side"
                for part in ir.bodies(node):
                    p, mc = walk(part, prefix, depth, inner)
                    params, macs = params + p, macs + mc
                continue
            params, macs = params + m.params, macs + m.macs
        return params, macs

    walk(net.body, "", 0, False)
    return _with_containers(out)


def _with_containers(out: list[Module]) -> list[Module]:
    """``out`` with a row for each container that dotted labels make (``"convs.0"``
    puts its module in ``convs``), as ``analyse`` gives one: its direct modules' totals,
    at their depth, before the first of them. Every scope and layer has a row of its
    own, so a path above a row that has none is such a container.

    >>> import netdsl
    >>> [(m.name, m.type, m.params) for m in modules(netdsl.compile(
    ...     'network n() { input [3, 8, 8]\\n "convs.0": conv2d(4, 1)\\n "convs.1": conv2d(4, 1) }'))]
    [('convs', 'Container', 36), ('convs.0', 'Conv2d', 16), ('convs.1', 'Conv2d', 20)]
    """
    names = {m.name for m in out}
    missing = {".".join(m.name.split(".")[:k]) for m in out for k in range(1, m.name.count(".") + 1)} - names
    if not missing:
        return out
    made: dict[str, Module] = {}
    for path in sorted(missing, key=lambda p: -p.count(".")):  # inner containers first
        children = [m for m in [*out, *made.values()]
                    if m.name.startswith(path + ".") and "." not in m.name[len(path) + 1:]]
        first = min(children, key=lambda m: next(i for i, o in enumerate(out) if o.name.startswith(m.name)))
        made[path] = Module(path, first.depth, "Container", (), sum(m.params for m in children),
                            sum(m.macs for m in children), first.side, False)
    result: list[Module] = []
    for m in out:
        # Before a module, the containers it opens (outer first) not yet placed.
        parts = m.name.split(".")
        for k in range(1, len(parts)):
            path = ".".join(parts[:k])
            if path in made:
                result.append(made.pop(path))
        result.append(m)
    return result


def _fields(a: Module, b: Module) -> dict[str, tuple]:
    keys = list(a.arguments) + [k for k in b.arguments if k not in a.arguments]
    return {k: (a.arguments.get(k), b.arguments.get(k)) for k in keys
            if a.arguments.get(k) != b.arguments.get(k)}


def _order(names_a: list[str], names_b: list[str]) -> list[str]:
    """Both networks' module paths in one order: B's, each path only A has placed
    where it stood in A."""
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, names_a, names_b,
                                                        autojunk=False).get_opcodes():
        out += names_a[i1:i2] if tag == "delete" else names_b[j1:j2] if tag != "replace" \
            else names_a[i1:i2] + names_b[j1:j2]
    return list(dict.fromkeys(out))  # a path that moved is listed once


def diff(a: ir.Network, b: ir.Network) -> Diff:
    """The modules of ``b`` added, removed and changed against ``a``, in order, and
    the change of the totals."""
    ma, mb = modules(a), modules(b)
    by_a, by_b = {m.name: m for m in ma}, {m.name: m for m in mb}
    changes: dict[str, Change | None] = {}  # None: in both, unchanged
    for name in _order(list(by_a), list(by_b)):
        x, y = by_a.get(name), by_b.get(name)
        if y is None:
            assert x is not None  # every name is A's or B's
            changes[name] = Change("removed", name, x.depth, x, None)
        elif x is None:
            changes[name] = Change("added", name, y.depth, None, y)
        else:
            fields = _fields(x, y)
            if fields or (x.type, x.shape, x.params, x.macs) != (y.type, y.shape, y.params, y.macs):
                changes[name] = Change("changed", name, x.depth, x, y, fields)
            else:
                changes[name] = None
    # A module in both that holds a change is changed too, even when its own figures
    # are equal (a dropout's p), so that the folded table shows where to look.
    for name in [n for n, c in changes.items() if c is not None]:
        parts = name.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if changes.get(parent, 0) is None:
                changes[parent] = Change("changed", parent, by_a[parent].depth, by_a[parent],
                                         by_b[parent])
    # The totals are check's: leaves alone would miss what no module owns (a bare
    # parameter, an `apply`'s or a reused module's work).
    ta, tb = analyse(a), analyse(b)
    params, macs = tb.params - ta.params, tb.macs - ta.macs
    return Diff(a, b, [c for c in changes.values() if c is not None], params, macs)


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "none"}[v]
    return str(v)


def _signed(n: int) -> str:
    return f"{n:+,}".replace("-", "−") if n else "0"


def _both(x, y) -> str:
    return x if x == y else f"{x} → {y}"


def render_table(d: Diff, depth: int | None = 2, a_label: str = "", b_label: str = "") -> str:
    """The changes as a table, modules down to ``depth`` (1 = top level), then the totals.

    >>> import netdsl
    >>> a = netdsl.compile("network n() { input [3, 8, 8]\\n c: conv2d(4, 3) }")
    >>> print(render_table(diff(a, a)))
    A: n
    B: n
    <BLANKLINE>
    no module added, removed or changed
    params:  112 → 112 (Δ 0)
    MACs:    3,888 → 3,888 (Δ 0, batch 1, eval mode)
    """
    from .counts import analyse

    shown = [c for c in d.modules if depth is None or c.depth < depth]
    out = [f"A: {d.a.name}{a_label}", f"B: {d.b.name}{b_label}", ""]
    if shown:
        head: tuple[str, ...] = ("", "module", "type", "output shape", "Δparams", "ΔMACs", "arguments")
        rows: list[tuple[str, ...]] = []
        for c in shown:
            x, y = c.a or c.b, c.b or c.a
            assert x is not None and y is not None  # a change has A's module, B's or both
            shape = lambda m: "[" + ", ".join(map(str, m.shape)) + "]"  # noqa: E731
            rows.append(({"added": "+", "removed": "-", "changed": "~"}[c.change],
                         "  " * c.depth + escape(c.name), escape(_both(x.type, y.type)),
                         _both(shape(x), shape(y)),
                         _signed(c.params), _signed(c.macs),
                         escape(", ".join(f"{k} {_value(u)} → {_value(v)}" for k, (u, v) in c.fields.items()))))
        if not any(r[-1] for r in rows):  # no layer argument changed among the rows shown
            head, rows = head[:-1], [r[:-1] for r in rows]
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
        right = (False, False, False, False, True, True, False)

        def line(cells: tuple[str, ...]) -> str:
            # Not strict: `right` also covers the arguments column, which may be dropped.
            return "  ".join(s.rjust(w) if r else s.ljust(w)
                             for s, w, r in zip(cells, widths, right, strict=False)).rstrip()

        rule = line(("",) + tuple("─" * w for w in widths[1:]))
        out += [line(head), rule, *map(line, rows), rule]
        counts = {k: sum(c.change == k for c in d.modules) for k in ("changed", "added", "removed")}
        hidden = len(d.modules) - len(shown)
        out.append("modules: " + ", ".join(f"{n:,} {k}" for k, n in counts.items())
                   + (f" ({hidden:,} deeper ones folded into their parent's row; --depth N to show more)"
                      if hidden else ""))
    else:
        out.append("no module added, removed or changed")
    pa, pb = analyse(d.a), analyse(d.b)
    out.append(f"params:  {pa.params:,} → {pb.params:,} (Δ {_signed(d.params)}{_percent(d.params, pa.params)})")
    out.append(f"MACs:    {pa.macs:,} → {pb.macs:,} (Δ {_signed(d.macs)}{_percent(d.macs, pa.macs)}, "
               "batch 1, eval mode)")
    return "\n".join(out)


def _percent(delta: int, base: int) -> str:
    return f", {delta / base:+.2%}".replace("-", "−") if delta and base else ""


def to_json(d: Diff, depth: int | None = None, **extra) -> dict:
    """The changes as JSON-ready data: per module A's and B's figures, and the totals."""
    from .counts import analyse

    def side(m: Module | None):
        return None if m is None else {"type": m.type, "output_shape": list(m.shape),
                                       "params": m.params, "macs": m.macs}

    pa, pb = analyse(d.a), analyse(d.b)
    out: dict[str, Any] = {"a": {"network": d.a.name, "params": pa.params, "macs": pa.macs},
           "b": {"network": d.b.name, "params": pb.params, "macs": pb.macs},
           "delta": {"params": d.params, "macs": d.macs, "flops": 2 * d.macs}}
    for key, value in extra.items():
        out["a"][key], out["b"][key] = value
    out["modules"] = [{"change": c.change, "name": c.name, "depth": c.depth, "a": side(c.a),
                       "b": side(c.b), "delta_params": c.params, "delta_macs": c.macs,
                       "arguments": {k: [u, v] for k, (u, v) in c.fields.items()}}
                      for c in d.modules if depth is None or c.depth < depth]
    return out
