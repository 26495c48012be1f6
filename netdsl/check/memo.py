"""The memo of block instances and labelled groups: an instance that sees what an
earlier one saw makes the same IR, so the checker reuses the earlier one's nodes.
A labelled group (``block: { ... }``) is keyed like an instance, by the values
that the names it mentions have where it is checked: EfficientNet's MBConv body
is shared though each MBConv has its own stochastic-depth rate.

What an instance makes depends on its block's definition, its arguments (after
defaults), its input shape and layout, whether its input may be overwritten in
place, the ``init`` rules of the scopes around it (``init_for`` reads them), the
program's other definitions and ``let`` values, and the limits. The key holds
all of these, by value; a hit shares the earlier instance's child nodes (IR
nodes are frozen) under the new instance's name and span. Spans inside are
those of the block's own text, the same for every instance.

Expanding an instance also changes the checker beyond its result: it counts
steps, marks outer ``init`` label rules as used, records the names bound inside
(for E0129 later) and the work of nested instances (for early E0404). A memo
entry records each of these and a hit replays them, so a hit leaves the checker
in the state the expansion would have. An expansion that reported anything, or
whose replay could go another way elsewhere, is not kept:

- any diagnostic, even one reported before and so not repeated;
- a nested instance keyed by the identity of a list (the step estimate of
  ``_instance_steps`` could match another object);
- an argument that is no plain value, or POISON;
- a group that names or reads results (``->``, ``from``, ``add``, ...), which
  share its parent's names; of the others, the result their last item leaves
  unread (E0128 reads it) is recorded and replayed.

A hit is also refused where the expansion, done here, could stop differently:
when its steps (and the early estimates checked inside it) would pass
``max_nodes``, when its nested blocks would pass ``max_block_depth``, or when
bodies nest deeper than :data:`MAX_DEPTH` (where Python's stack, the checker's
last bound, might run out). The checker then expands it, finding the error
where it always did.

Entries live for the process, in a table per program and limits: a sweep
compiles one program thousands of times, and its variants share most instances
(the stem, the head, every block whose arguments a hyperparameter does not
change). A program is known by the identity of its definitions; the table keeps
them alive, so no other program can take their ids, and the parser's cache hands
the same objects to every compile of the same text. Tables are few and bounded
(:data:`TABLES`, :data:`ENTRIES`), dropped oldest first.

>>> import netdsl
>>> spec = "block b(c) { conv2d(c, 1)\\n relu }\\nnetwork n() { input [3, 8, 8]\\n b(4) * 3 }"
>>> net = netdsl.compile(spec)  # the first copy's input is the network's, the others' a relu's
>>> net.body[1].body[0] is net.body[2].body[0], net.body[2].name
(True, '2')
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from ..syntax import ast
from .values import POISON, BlockRef, LayerRef

#: Whether the checker memoizes block instances; tests and bench/ turn it off to compare.
ENABLED = True

#: Bodies nested deeper than this (runs of statement lists inside one another) are always
#: expanded: Python's stack is the checker's last bound, and how many frames a level
#: takes depends on the statements, so a replay there could miss a stack overflow.
MAX_DEPTH = 24

#: Tables kept (one per program, limits and origin), and entries per table.
TABLES = 8
ENTRIES = 20_000

# Lists are keyed by value up to this many items in all; longer, an instance is not kept.
_LIST_ITEMS = 256

_TABLES: OrderedDict = OrderedDict()


@dataclass(frozen=True)
class Entry:
    """One expansion's result and what it did to the checker besides.

    ``need``: the most steps past its start that the expansion counted or checked
    against the limit; ``chain``, ``depth``: how many block levels and body levels it
    went below its own; ``matched``: (scope level above the instance, rule index) of
    outer init rules it used; ``inner``: names bound in it (name, block, span);
    ``steps``: nested instances' step records (key, value), in order."""

    body: tuple
    shape: tuple
    shared: object
    steps_total: int
    need: int
    chain: int
    depth: int
    matched: tuple
    inner: tuple
    steps: tuple
    dangling: object = None  # a labelled group's: the span it leaves as unread, or UNSET


class Record:
    """The replay record: every lasting effect of the checker's expansions, which the
    checker writes here as it goes and nowhere else, so that an :class:`Entry` can be
    cut from it (:meth:`entry`) and played back (:meth:`replay`).

    ``reports``: diagnostics reported, repeats included; ``chain_peak``,
    ``depth_peak``, ``need_peak``: the deepest block chain and body level reached and
    the most steps counted or checked against the limit, within the current region;
    ``matched``: (scope, rule index) of each outer ``init`` label rule used; ``inner``:
    each name bound inside an instance (name, block, span); ``steps``: each instance's
    step record (key, value); ``id_keys``: how many of those keys hold a list by its
    identity (such an instance is never kept)."""

    def __init__(self) -> None:
        self.reports = 0
        self.chain_peak = self.depth_peak = self.need_peak = 0
        self.matched: list[tuple[Any, int]] = []
        self.inner: list[tuple[str, str, Any]] = []
        self.steps: list[tuple[Any, Any]] = []
        self.id_keys = 0

    def log_steps(self, key, value) -> None:
        self.steps.append((key, value))
        if any(vk[0] is tuple for _, vk in key[1]):
            self.id_keys += 1

    def region(self, chain: int, depth: int, nodes: int, diags: int) -> Region:
        """Start watching an expansion that begins at block chain ``chain``, body level
        ``depth``, ``nodes`` steps and ``diags`` diagnostics: the peaks start afresh,
        :meth:`Region.close` merges them back."""
        return Region(self, chain, depth, nodes, diags)

    def entry(self, region: Region, scope, nodes: int, depth: int, diags: int, *, body: tuple, shape,
              shared, dangling=None) -> Entry | None:
        """The entry of the expansion ``region`` watched, which ended at ``nodes`` steps and
        ``diags`` diagnostics in ``scope``; None where it reported anything or a nested
        instance is keyed by a list's identity (see the module's docstring)."""
        if self.reports != region.reports or diags != region.diags:
            return None
        end, id_keys = region.nested_end if region.nested_end is not None else (len(self.steps), self.id_keys)
        if id_keys != region.id_keys:
            return None
        outer = {}
        s, level = scope, 0
        while s is not None:
            outer[id(s)] = level
            s, level = s.parent, level + 1
        matched = tuple((outer[id(s)], i) for s, i in self.matched[region.matched:] if id(s) in outer)
        return Entry(body=body, shape=shape, shared=shared, steps_total=nodes - region.nodes,
                     need=max(self.need_peak, nodes) - region.nodes, chain=self.chain_peak - region.chain,
                     depth=self.depth_peak - depth, matched=matched, inner=tuple(self.inner[region.inner:]),
                     steps=tuple(self.steps[region.steps:end]), dangling=dangling)

    def replay(self, hit: Entry, scope, chain: int, depth: int, nodes: int) -> None:
        """Record what expanding the instance or group at ``scope`` would have (its
        peaks, the outer init rules it uses and marks them used, the names bound in
        it, its nested instances' step records)."""
        self.chain_peak = max(self.chain_peak, chain + hit.chain)
        self.depth_peak = max(self.depth_peak, depth + hit.depth)
        self.need_peak = max(self.need_peak, nodes + hit.need)
        for level, i in hit.matched:
            s = scope
            for _ in range(level):
                s = s.parent
            s.matched.add(i)
            self.matched.append((s, i))
        self.inner.extend(hit.inner)
        self.steps.extend(hit.steps)  # none holds a list by identity (entry refuses those)


class Region:
    """Where the record stood when an expansion began, to tell what the expansion did;
    the peaks it reaches start afresh and are merged back by :meth:`close`."""

    def __init__(self, record: Record, chain: int, depth: int, nodes: int, diags: int):
        self.record = record
        self.outer = record.chain_peak, record.depth_peak, record.need_peak
        self.chain, self.nodes, self.diags = chain, nodes, diags
        record.chain_peak, record.depth_peak, record.need_peak = chain, depth, nodes
        self.reports = record.reports
        self.matched, self.inner, self.steps = len(record.matched), len(record.inner), len(record.steps)
        self.id_keys = record.id_keys
        # Where the nested instances' step records end, and the count of keys by identity
        # there: the expansion's own record comes after (None: at the entry's making).
        self.nested_end: tuple[int, int] | None = None

    def nested(self) -> None:
        """Mark where the nested instances' step records end."""
        self.nested_end = len(self.record.steps), self.record.id_keys

    def close(self) -> None:
        r = self.record
        r.chain_peak = max(r.chain_peak, self.outer[0])
        r.depth_peak = max(r.depth_peak, self.outer[1])
        r.need_peak = max(r.need_peak, self.outer[2])


#: A labelled group's entry whose items leave the dataflow's unread result as it was.
#: A sentinel, put for a while where a span or None belongs (``ValueScope.dangling``),
#: hence typed Any.
UNSET: Any = object()

def table(program, limits, origin: str, grant=None):
    """The memo table of ``program`` checked under ``limits`` and ``grant`` (what an
    instance made of an extern depends on whether it was granted), or None when
    memoizing is off.

    >>> from netdsl.syntax.loader import Program
    >>> from netdsl.limits import Limits
    >>> p = Program(None)
    >>> table(p, Limits(), "api") is table(p, Limits(), "api")
    True
    """
    if not ENABLED or sys.getrecursionlimit() < 1000:
        return None
    defs = tuple(program.blocks.values()) + tuple(program.lets) + tuple(program.networks.values()) + \
        tuple(program.externs.values())
    key = (tuple(map(id, defs)), limits, origin, grant)
    entry = _TABLES.get(key)
    if entry is None:
        # The definitions ride along, so that their ids stay theirs while the table lives.
        entry = _TABLES[key] = (defs, {})
        while len(_TABLES) > TABLES:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key)
    return entry[1]


def clear() -> None:
    """Forget every entry (bench/ measures a first compile with it)."""
    _TABLES.clear()


def store(memo: dict, key, entry: Entry) -> None:
    if len(memo) >= ENTRIES:
        memo.clear()  # a process checking ever new instances starts over, bounded
    memo[key] = entry


def value_key(v, budget: list):
    """A hashable stand-in for a value that tells apart what the checker tells apart:
    the type beside the value (1, 1.0 and true are equal to Python), the sign of a
    zero, lists item by item. Raises TypeError for anything else.

    >>> value_key((1, 1.0, -0.0), [10])
    (<class 'tuple'>, ((<class 'int'>, 1), (<class 'float'>, 1.0, 1.0), (<class 'float'>, -0.0, -1.0)))
    """
    if v is None or isinstance(v, (bool, int, str, LayerRef)):
        return type(v), v
    if isinstance(v, float):
        return float, v, math.copysign(1.0, v)
    if isinstance(v, BlockRef):
        return BlockRef, v.name
    if isinstance(v, tuple) and v is not POISON:
        budget[0] -= len(v)
        if budget[0] < 0:
            raise TypeError("list too long to key")
        return tuple, tuple(value_key(x, budget) for x in v)
    raise TypeError(type(v))


def instance_key(defn, values: dict, shape, shared, rules):
    """The memo key of an instance of ``defn``, or None where it is not memoized.

    >>> from netdsl import ast
    >>> d = ast.BlockDef(name="b", params=(), body=())
    >>> instance_key(d, {"c": 4}, (3, 8, 8), False, ()) == instance_key(d, {"c": 4}, (3, 8, 8), False, ())
    True
    >>> instance_key(d, {"c": 4}, (3, 8, 8), False, ()) == instance_key(d, {"c": 4.0}, (3, 8, 8), False, ())
    False
    """
    budget = [_LIST_ITEMS]
    try:
        args = tuple((k, value_key(v, budget)) for k, v in values.items())
    except TypeError:
        return None
    return id(defn), args, tuple(shape), getattr(shape, "order", None), shared, rules


def rules_key(scope) -> tuple:
    """The ``init`` rules in ``scope`` and the scopes around it, by value and span,
    with how many levels up each scope is: what ``init_for`` reads there."""
    out = []
    level = 0
    while scope is not None:
        if scope.init:
            cached = getattr(scope, "_memo_rules", None)
            if cached is None or cached[0] != len(scope.init):
                cached = (len(scope.init), tuple((t, p, scheme_key(s)) for t, p, s, _ in scope.init))
                scope._memo_rules = cached
            out.append((level, cached[1]))
        scope = scope.parent
        level += 1
    return tuple(out)


def scheme_key(scheme) -> tuple:
    """An init scheme by value and by the span it carries into the IR."""
    span = scheme.span
    where = None if span is None else (span.file, span.line, span.column, span.end_line, span.end_column)
    return scheme.fn, tuple((k, value_key(v, [_LIST_ITEMS])) for k, v in scheme.args.items()), where


def takes_tensors(defn) -> bool:
    """Whether a block declares the tensors it takes (`input x`) or returns (`output`):
    its instances are always expanded, since what they bind and return is not kept.

    >>> from netdsl.syntax.parser import parse
    >>> [takes_tensors(b) for b in parse("block a() { relu }\\nblock b() { input x\\n from x }").items]
    [False, True]
    """
    known = _TAKES.get(id(defn))
    if known is None or known[0] is not defn:
        found = any((isinstance(st, ast.Input) and isinstance(st.shape, ast.Name)) or isinstance(st, ast.Output)
                    for st in _statements(defn.body))
        known = _TAKES[id(defn)] = (defn, found)
    return known[1]


def _statements(stmts):
    """The statements of a body and of its `if`s and `for`s (where `input` and `output`
    may sit), not of its groups or combinators."""
    for st in stmts:
        yield st
        if isinstance(st, ast.If):
            yield from _statements(st.body + st.orelse)
        elif isinstance(st, ast.For):
            yield from _statements(st.body)


_TAKES: dict = {}

# The statements that name or read results: a group holding one changes its parent's
# value scope in ways the memo does not record, so it is always expanded.
_DATAFLOW = (ast.Bind, ast.From, ast.Merge, ast.Output, ast.NamedInput)
_GROUPS: dict = {}


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _node_fields(cls: type) -> tuple[str, ...] | None:
    """The fields but ``span`` of an AST node class, None for any other type: once per
    class, since ``dataclasses.fields`` and ``is_dataclass`` per node were a third of
    :func:`group_names`, which reads every node of a labelled group on a first compile.

    >>> _node_fields(ast.Name), _node_fields(int)
    (('id',), None)
    """
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(f.name for f in fields(cls) if f.name != "span") \
            if is_dataclass(cls) and not issubclass(cls, type) else None
    return _FIELDS[cls]


def group_names(group: ast.Group) -> tuple | None:
    """The names a labelled group's body may look up (every name it mentions, bound
    inside or not: more than it reads is only a key that matches less), or None where
    the group is not memoized (it names or reads results).

    >>> from netdsl.syntax.parser import parse
    >>> net = parse("network n() { input [4]\\n g: { let k = w\\n linear(k) } }").items[0]
    >>> group_names(net.body[1].unit)
    ('k', 'linear', 'w')
    """
    known = _GROUPS.get(id(group))
    if known is not None and known[0] is group:
        return known[1]
    names: set = set()
    todo: list = [group.body]
    ok = True
    while todo and ok:
        node = todo.pop()
        if isinstance(node, tuple):
            todo.extend(node)
        elif isinstance(node, _DATAFLOW):
            ok = False
        else:
            own = _node_fields(type(node))
            if own is None:
                continue
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Use):
                names.add(node.name)
            todo.extend(getattr(node, f) for f in own)
    result = tuple(sorted(names)) if ok else None
    if len(_GROUPS) >= ENTRIES:
        _GROUPS.clear()
    _GROUPS[id(group)] = (group, result)  # the group rides along: its id stays its own
    return result


_MISSING = object()


def group_key(group: ast.Group, names: tuple, env, shape, shared, rules, values):
    """The memo key of a labelled group: the values its names have here, its input,
    the init rules around it, and whether it sits in a value scope; or None."""
    budget = [_LIST_ITEMS]
    try:
        looked = tuple(("-" if v is _MISSING else value_key(v, budget))
                       for v in (env.lookup(n, _MISSING) for n in names))
    except TypeError:
        return None
    return ("group", id(group)), looked, tuple(shape), getattr(shape, "order", None), shared, rules, \
        values is not None
