"""Static analysis of a checked network: per-module output shape, parameters
and multiply-accumulates, with no tensor allocated.

MACs follow fvcore's counting rules op by op, so the total equals
``fvcore.nn.FlopCountAnalysis(model, x).total()`` for a batch of one in eval
mode. fvcore counts one multiply-add as one "flop"; here that number is
called MACs, and FLOPs are 2 × MACs. Where fvcore counts nothing for an op
(activations, max and average pooling, dropout, additions, concatenation,
multiplication) the row says so: its ``counted`` is False.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .. import ir
from ..ir.walk import Visitor, bodies, json_step
from ..layers import KINDS


def type_name(node: ir.Layer) -> str:
    """The class name of the module a layer node builds (``Conv2d``)."""
    return KINDS[node.kind].type_name(node)


def counted(node: ir.Layer) -> bool:
    """Whether fvcore has a counting rule for a layer node's op."""
    return KINDS[node.kind].is_counted(node)


@dataclass
class Row:
    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...]
    params: int
    macs: int
    counted: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


@dataclass
class Analysis:
    network: str
    input: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    rows: list[Row] = field(default_factory=list)
    activation_bytes: int = 0          # torchinfo's "Forward/backward pass size", batch 1
    largest_activation_bytes: int = 0  # the largest tensor one sample's forward makes
    largest_activation: str = ""       # where: a module name, a combinator, or "input"
    # Networks of named inputs or a stated `output`: name → shape, in order (else empty).
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    # The rest of torchinfo's summary, by its definitions (torchinfo 1.8, batch 1).
    @property
    def trainable_params(self) -> int:
        """Parameters with ``requires_grad``: all of them, as a spec freezes none."""
        return self.params

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def input_bytes(self) -> int:
        """torchinfo's "Input size": one float32 sample."""
        return ELEMENT_BYTES * math.prod(self.input)

    @property
    def param_bytes(self) -> int:
        """torchinfo's "Params size": the float32 parameters; buffers (batch-norm
        running statistics) are not counted, as torchinfo does not count them."""
        return ELEMENT_BYTES * self.params

    @property
    def total_bytes(self) -> int:
        """torchinfo's "Estimated Total Size": input, forward/backward pass and params.

        >>> import netdsl
        >>> a = analyse(netdsl.compile("network n() { input [1, 32, 32]\\n c: conv2d(6, 5) }"))
        >>> a.input_bytes, a.activation_bytes, a.param_bytes, a.total_bytes
        (4096, 37632, 624, 42352)
        """
        return self.input_bytes + self.activation_bytes + self.param_bytes


def layer_params(node: ir.Layer) -> int:
    """Learnable parameters of one layer.

    >>> layer_params(ir.Linear(name="fc", in_shape=(400,), out_shape=(120,), in_features=400,
    ...                        out_features=120))
    48120
    """
    if node.reuse:  # a module called again owns nothing new
        return 0
    return KINDS[node.kind].params(node)


def layer_macs(node: ir.Layer) -> int:
    """Multiply-accumulates of one layer for one sample, by fvcore's rules (eval mode)."""
    return KINDS[node.kind].macs(node)


def merge_macs(node: ir.Merge) -> int:
    """Multiply-accumulates of one merge for one sample, by fvcore's rules: nothing for
    the elementwise ones, `concat` and `crop`; for `resize`, what `upsample` counts
    (fvcore's upsample_nearest2d and upsample_bilinear2d: 1 and 4 per output element);
    for `matmul`, fvcore's rule: the left operand's elements times the right's columns."""
    if node.op == "matmul":
        assert node.left_shape is not None  # the checker sets it
        return math.prod(node.left_shape) * node.out_shape[-1]
    if node.op != "resize":
        return 0
    return math.prod(node.out_shape) * (4 if node.mode == "bilinear" else 1)


# Activations are float32, for one sample.
ELEMENT_BYTES = 4


def fmt_bytes(n: int) -> str:
    """Bytes in decimal units, as torchinfo shows them.

    >>> fmt_bytes(177831744), fmt_bytes(512), fmt_bytes(12 * 10**12)
    ('177.83 MB', '512 B', '12.00 TB')
    """
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def layer_output_bytes(node: ir.AnyNode) -> int:
    """Bytes of one layer's (or combinator's) output for one sample (float32).

    >>> layer_output_bytes(ir.Linear(name="fc", in_shape=(400,), out_shape=(120,),
    ...                              in_features=400, out_features=120))
    480
    """
    return ELEMENT_BYTES * math.prod(node.out_shape)


def tensor_bytes(node: ir.AnyNode) -> int:
    """Bytes of the largest tensor a layer or combinator makes for one sample: its
    output, or for local_response_norm its squared input padded by ``size - 1``
    channels (torch pads, then average-pools across channels)."""
    if isinstance(node, ir.Layer):
        return ELEMENT_BYTES * KINDS[node.kind].largest_tensor(node)
    return ELEMENT_BYTES * math.prod(node.out_shape)


class _Tensors(Visitor):
    """(name, node) for every layer and combinator of a body, side heads included: the
    tensors a forward makes, named as the table names their module."""

    def __init__(self) -> None:
        self.found: list[tuple[str, ir.AnyNode]] = []

    def visit_layer(self, node, prefix: str) -> None:
        self.found.append((prefix + node.name, node))

    def visit_scope(self, node, prefix: str) -> None:
        for n in node.body:
            self.visit(n, f"{prefix}{node.name}.")

    def visit_bind(self, node, prefix: str) -> None:
        pass  # a name for a tensor that exists already

    visit_from = visit_bind
    visit_chunk = visit_bind  # its parts are views of a tensor that exists already

    def visit_merge(self, node, prefix: str) -> None:
        where = prefix.rstrip(".")
        self.found.append(((f"{node.op} in {where}" if where else node.op), node))

    def visit_side(self, node, prefix: str) -> None:
        self.generic_visit(node, prefix)  # its head's tensors; it makes none of its own

    def combinator(self, node, prefix: str) -> None:
        where = prefix.rstrip(".")
        kind = type(node).__name__.lower()
        self.found.append(((f"{kind} in {where}" if where else kind), node))
        self.generic_visit(node, prefix)

    visit_residual = visit_concat = visit_dense = visit_gate = visit_split = combinator


def _tensors(nodes, prefix: str):
    """(name, node) for every layer and combinator of a body, side heads included."""
    t = _Tensors()
    for n in nodes:
        t.visit(n, prefix)
    return t.found


def activations(net: ir.Network) -> tuple[int, int, str, ir.AnyNode | None]:
    """Activation memory of one sample, from the IR: (forward/backward bytes, largest
    tensor bytes, its name, its IR node or None for the input).

    The first is torchinfo's "Forward/backward pass size" for a batch of one in eval
    mode: twice (output and its gradient) the float32 output bytes of every leaf
    module that has parameters. The largest tensor is over everything a forward
    makes: the input, every layer's output (side heads too), every combinator's.

    >>> import netdsl
    >>> activations(netdsl.compile("network n() { input [1, 32, 32]\\n c: conv2d(6, 5)\\n relu }"))[:3]
    (37632, 18816, 'c')
    """
    total = 0
    for node in net.body:
        if not isinstance(node, ir.Side):  # eval mode: a side head does not run
            total += sum(2 * layer_output_bytes(n) for n in _layers([node])
                         if layer_params(n) > 0 and not KINDS[n.kind].bare_parameter)
    largest, name, where = ELEMENT_BYTES * math.prod(net.input_shape), "input", None
    for i in net.inputs:
        if ELEMENT_BYTES * math.prod(i.shape) > largest:
            largest, name = ELEMENT_BYTES * math.prod(i.shape), f"input {i.name}"
    for n, node in _tensors(net.body, ""):
        size = tensor_bytes(node)
        if size > largest:
            largest, name, where = size, n, node
    return total, largest, name, where


class Modules(Visitor):
    """The module-producing nodes of a body (layers and scopes), looking through
    combinators, in the order lowering registers them."""

    through = frozenset({"residual", "concat", "dense", "gate", "side", "split"})

    def __init__(self) -> None:
        self.found: list = []

    def visit_layer(self, node) -> None:
        self.found.append(node)

    visit_scope = visit_layer

    def visit_bind(self, node) -> None:
        pass  # names and merges make no module

    visit_from = visit_merge = visit_chunk = visit_bind


def _modules(nodes):
    """The module-producing nodes of a body, looking through combinators, in order."""
    m = Modules()
    for n in nodes:
        m.visit(n)
    return m.found


def _is_module(node) -> bool:
    """Whether ``node`` registers a module of its own: not a parameter on its scope, a
    module called again (`reuse`) or a function (`apply`)."""
    return isinstance(node, ir.Scope) or not (KINDS[node.kind].bare_parameter or node.reuse
                                              or node.functional)


def _container_merge_macs(node: ir.Scope) -> int:
    """The MACs of the merges a container's body holds, its inner containers' too: the
    forward of the module that owns the container runs them."""
    total, todo = 0, list(node.body)
    while todo:
        n = todo.pop()
        if isinstance(n, ir.Merge):
            total += merge_macs(n)
        elif isinstance(n, ir.Scope) and scope_type(n) == "Container":
            todo.extend(n.body)
    return total


def scope_type(node: ir.Scope) -> str:
    pure = all(isinstance(n, (ir.Layer, ir.Scope)) and _is_module(n) for n in node.body) and not ir.has_flow(node.body)
    if node.cls is not None:
        return node.cls
    if ir.has_flow(node.body):
        return "Container"  # its parts are wired by name from the body around it
    return "Sequential" if pure else "Group"


def analyse(net: ir.Network) -> Analysis:
    """Rows for every module of ``net`` in ``named_modules`` order, and totals.

    >>> import netdsl
    >>> a = analyse(netdsl.compile("network n() { input [1, 32, 32]\\n conv2d(6, 5)\\n relu }"))
    >>> a.params, a.macs, [r.counted for r in a.rows]
    (156, 117600, [True, False])
    """
    rows: list[Row] = []

    def walk(nodes, prefix: str, depth: int) -> tuple[int, int]:
        total_p = 0
        # A merge is no module: its work is the forward's that runs it, so a container's
        # merges (its owner's forward runs them, as fvcore's by_module counts) go up.
        total_m = sum(merge_macs(n) for n in nodes if isinstance(n, ir.Merge))
        # A dotted label (`"convs.0"`) puts its module in a container: rows go in the
        # module tree's order, each container's row before its modules.
        tree: dict = {}
        for node in _modules(nodes):
            start = len(rows)
            name = prefix + node.name
            if isinstance(node, ir.Layer) and (node.reuse or node.functional):
                # No module of its own, so no row of named_modules; its work still counts.
                total_m += layer_macs(node)
                continue
            if isinstance(node, ir.Scope):
                row = Row(name, scope_type(node), depth, tuple(node.out_shape), 0, 0, True)
                rows.append(row)
                row.params, row.macs = walk(node.body, name + ".", depth + 1)
                if row.type == "Container":
                    outside = _container_merge_macs(node)
                    row.macs -= outside
                    total_m += outside
            elif not _is_module(node):
                # A bare parameter: the enclosing module's own, no row of its own.
                total_p += layer_params(node)
                total_m += layer_macs(node)
                continue
            else:
                p, m = layer_params(node), layer_macs(node)
                rows.append(Row(name, type_name(node), depth, tuple(node.out_shape), p, m,
                                counted(node)))
            total_p += rows[-1].params if isinstance(node, ir.Layer) else row.params
            total_m += rows[-1].macs if isinstance(node, ir.Layer) else row.macs
            if tree or "." in node.name:
                mine = rows[start:]
                del rows[start:]
                *path, last = node.name.split(".")
                slot = tree
                for part in path:
                    slot = slot.setdefault(part, {})
                slot[last] = mine
        _in_tree_order(tree, prefix, depth, rows)
        return total_p, total_m

    params, macs = walk(net.body, "", 0)
    # A side head runs in training only: its rows keep their cost, but the total is
    # for eval mode, where fvcore never sees it (Inception v3's AuxLogits).
    macs -= sum(layer_macs(layer) for node in net.body if isinstance(node, ir.Side)
                for layer in _layers(node.body))
    total, largest, name, _ = activations(net)
    return Analysis(net.name, tuple(net.input_shape), tuple(net.out_shape), params, macs, rows,
                    total, largest, name, {i.name: tuple(i.shape) for i in net.inputs},
                    {} if net.result is None else
                    {k: tuple(s) for k, s in zip(net.result.keys, net.result.shapes, strict=True)})


def _in_tree_order(tree: dict, prefix: str, depth: int, rows: list[Row]) -> list[Row]:
    """Append the rows of one scope's modules, held by dotted path, in module-tree
    order: a container's row (its modules' totals) before the rows of its modules, at
    their depth, since the scope's forward calls them. Returns each entry's own row."""
    own = []
    for key, value in tree.items():
        if isinstance(value, dict):
            inner: list[Row] = []
            top = _in_tree_order(value, f"{prefix}{key}.", depth, inner)
            row = Row(prefix + key, "Container", depth, (), sum(r.params for r in top),
                      sum(r.macs for r in top), True)
            rows.append(row)
            rows.extend(inner)
            own.append(row)
        else:
            rows.extend(value)
            own.append(value[0])
    return own


def count_params(net: ir.Network) -> int:
    """Total parameters, from the IR alone."""
    return sum(layer_params(n) for n in _layers(net.body))


def _layers(nodes):
    for node in _modules(nodes):
        if isinstance(node, ir.Scope):
            yield from _layers(node.body)
        else:
            yield node


# ---------------------------------------------------------------- totals, shared subtrees once

#: Whether :func:`summary` remembers subtrees; tests and bench/ turn it off to compare.
CACHE = True

# id(node) → (node, its summary). The checker's memo shares subtrees between block
# instances and between compiles, so a sweep meets the same nodes again and again;
# the node rides along so that its id stays its own. Bounded: cleared when full.
_SUMMARIES: dict = {}
_SUMMARIES_MAX = 50_000


def clear_summaries() -> None:
    """Forget every remembered summary (bench/ times a first sweep with it)."""
    _SUMMARIES.clear()


@dataclass(frozen=True)
class Summary:
    """What a subtree adds to the totals of its network, and how deep it nests.

    ``params`` and ``macs`` add up its layers (``macs`` in eval mode, side heads
    included: the network leaves those out); ``activation_bytes`` is torchinfo's
    count; ``largest`` the bytes of its largest tensor; ``depth`` how many module
    levels below it the deepest node with children sits (None: none has any);
    ``json`` how many JSON levels below its object its deepest part reaches."""

    params: int
    macs: int
    activation_bytes: int
    largest: int
    depth: int | None
    json: int


def _parts(node) -> tuple:
    """The children of a node, in order: the nodes of its bodies."""
    return tuple(n for body in bodies(node) for n in body)


class _Own(Visitor):
    """The bytes of the tensor a node itself makes, for one sample (its children's
    are theirs): a scope's and a side head's are their bodies'."""

    def visit_layer(self, node) -> int:
        return tensor_bytes(node)

    visit_merge = visit_residual = visit_concat = visit_dense = visit_gate = visit_split = visit_layer

    def visit_scope(self, node) -> int:
        return 0

    visit_side = visit_bind = visit_from = visit_chunk = visit_scope  # a chunk's parts are views


_OWN = _Own()


def _leaf(node) -> Summary:
    if isinstance(node, ir.Layer):
        p = layer_params(node)
        act = 2 * layer_output_bytes(node) if p > 0 and not KINDS[node.kind].bare_parameter else 0
        return Summary(p, layer_macs(node), act, tensor_bytes(node), None, 3 if node.init else 1)
    if isinstance(node, ir.Merge):
        return Summary(0, merge_macs(node), 0, tensor_bytes(node), None, 1)
    return Summary(0, 0, 0, 0, None, 1)  # a name for a tensor that exists already


def summary(node) -> Summary:
    """The :class:`Summary` of one IR node, remembered per node object while
    :data:`CACHE` is on: a subtree shared by many block instances, or many
    compiles, is added up once. Iterative, since a deep IR is what the depth
    check that reads it refuses.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [1, 8, 8]\\n g: { conv2d(2, 3)\\n relu } }")
    >>> s = summary(net.body[0]); s.params, s.macs, s.depth, s.json
    (20, 648, 0, 3)
    """
    known = _SUMMARIES.get(id(node))
    if known is not None and known[0] is node:
        return known[1]
    if not _parts(node):
        return _leaf(node)
    done: dict = {}
    todo = [(node, False)]
    while todo:
        n, ready = todo.pop()
        key = id(n)
        if key in done:
            continue
        known = _SUMMARIES.get(key)
        if known is not None and known[0] is n:
            done[key] = known[1]
            continue
        parts = _parts(n)
        if not parts:
            done[key] = _leaf(n)
            continue
        if not ready:
            todo.append((n, True))
            todo.extend((c, False) for c in parts)
            continue
        kids = [done[id(c)] for c in parts]
        step = json_step(n)
        own = _OWN.visit(n)
        s = Summary(sum(k.params for k in kids), sum(k.macs for k in kids),
                    sum(k.activation_bytes for k in kids), max([own] + [k.largest for k in kids]),
                    max([0] + [k.depth + 1 for k in kids if k.depth is not None]),
                    max([1] + [k.json + step for k in kids]))
        done[key] = s
        if CACHE:
            if len(_SUMMARIES) >= _SUMMARIES_MAX:
                _SUMMARIES.clear()
            _SUMMARIES[key] = (n, s)
    return done[id(node)]


@dataclass(frozen=True)
class Totals:
    """A network's totals: what a sweep prints of each variant."""

    params: int
    macs: int
    activation_bytes: int
    largest_activation_bytes: int
    output_shape: tuple

    @property
    def flops(self) -> int:
        return 2 * self.macs


def totals(net: ir.Network) -> Totals:
    """The totals :func:`analyse` gives, without its per-module rows: a cost of the
    distinct subtrees of ``net``, not of its layers, where subtrees are shared.

    >>> import netdsl
    >>> t = totals(netdsl.compile("network n() { input [1, 32, 32]\\n conv2d(6, 5)\\n relu }"))
    >>> t.params, t.macs, t.activation_bytes, t.output_shape
    (156, 117600, 37632, (6, 28, 28))
    """
    parts = [summary(n) for n in net.body]
    sides = [s for n, s in zip(net.body, parts, strict=True) if isinstance(n, ir.Side)]
    largest = max([ELEMENT_BYTES * math.prod(net.input_shape)]
                  + [ELEMENT_BYTES * math.prod(i.shape) for i in net.inputs] + [s.largest for s in parts])
    return Totals(sum(s.params for s in parts), sum(s.macs for s in parts) - sum(s.macs for s in sides),
                  sum(s.activation_bytes for n, s in zip(net.body, parts, strict=True) if not isinstance(n, ir.Side)),
                  largest, tuple(net.out_shape))
