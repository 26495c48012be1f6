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


#: A labelled group's entry whose items leave the dataflow's unread result as it was.
#: A sentinel, put for a while where a span or None belongs (``ValueScope.dangling``),
#: hence typed Any.
UNSET: Any = object()

def table(program, limits, origin: str):
    """The memo table of ``program`` checked under ``limits``, or None when memoizing is off.

    >>> from netdsl.syntax.loader import Program
    >>> from netdsl.limits import Limits
    >>> p = Program(None)
    >>> table(p, Limits(), "api") is table(p, Limits(), "api")
    True
    """
    if not ENABLED or sys.getrecursionlimit() < 1000:
        return None
    defs = tuple(program.blocks.values()) + tuple(program.lets) + tuple(program.networks.values())
    key = (tuple(map(id, defs)), limits, origin)
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


# The statements that name or read results: a group holding one changes its parent's
# value scope in ways the memo does not record, so it is always expanded.
_DATAFLOW = (ast.Bind, ast.From, ast.Merge, ast.Output, ast.NamedInput)
_GROUPS: dict = {}


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
        elif is_dataclass(node) and not isinstance(node, type):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Use):
                names.add(node.name)
            todo.extend(getattr(node, f.name) for f in fields(node) if f.name != "span")
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
