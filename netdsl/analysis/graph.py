"""A diagram of a checked network: nodes and edges derived from the IR, and its
text as a Mermaid flowchart or a Graphviz DOT digraph. No torch, nothing installed.

Each IR construct is one function, registered by its ``kind`` with
:func:`construct`: it gets the edges coming into it and returns the edges going
out, so a new construct (a split, named results) is one more function, and a
kind without one is still drawn, as an op node over its bodies.

    >>> import netdsl
    >>> d = diagram(netdsl.compile("network n() { input [3, 8, 8]\\n"
    ...                            "residual { c: conv2d(3, 3, padding = 1) } }"))
    >>> [(n.role, n.type, n.shape) for n in d.nodes]  # doctest: +NORMALIZE_WHITESPACE
    [('input', 'input', (3, 8, 8)), ('layer', 'Conv2d', (3, 8, 8)), ('op', 'add', (3, 8, 8)),
     ('output', 'output', (3, 8, 8))]
    >>> [e.kind for e in d.edges]
    ['data', 'data', 'skip', 'data']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import ir
from ..layers import KINDS
from .counts import _is_module, _modules, scope_type, type_name

# How an edge is drawn: the main flow, an identity or shortcut path around a body,
# an earlier output fed to a dense layer, the input of a gate's multiply, the
# input of a side head.
EDGE_KINDS = ("data", "skip", "dense", "gate", "side")
OP_SYMBOLS = {"add": "+", "concat": "concat", "mul": "×"}


@dataclass(frozen=True)
class Node:
    """One box: a layer, a folded module, another call of a module (``call``), an op
    (add, concat, mul, split, a function such as ``flatten``), the input or an output.

    ``name`` is the module's path (its ``state_dict`` prefix) for layers and
    modules, the output's name for outputs; ``note`` lists the combinators a
    folded module hides (``residual``), so a reader knows what is inside.
    """

    id: str
    role: str
    name: str
    type: str
    shape: tuple[int, ...]
    note: str = ""
    cluster: str | None = None

    def lines(self, short: bool = True) -> list[str]:
        """The label's lines: what it is, what it hides, its output shape."""
        shape = "[" + ", ".join(map(str, self.shape)) + "]"
        name = self.name.rpartition(".")[2] if short and self.cluster else self.name
        if self.role in ("layer", "module", "call"):
            head = [f"{name}: {self.type}"]
        elif self.role == "op":
            head = [OP_SYMBOLS.get(self.type, self.type)]
        else:
            head = [name]
        return head + ([self.note] if self.note else []) + [shape]


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    kind: str = "data"


@dataclass(frozen=True)
class Cluster:
    """An unfolded module: its nodes are drawn inside a box titled with its path and class."""

    id: str
    label: str
    parent: str | None


@dataclass
class Diagram:
    title: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)


Srcs = list[tuple[str, str]]  # (node id, kind of the edge that will leave it)
Builder = Callable[["_Builder", object, Srcs, str, int], Srcs]
# How each construct is drawn (layers are one case, `_layer`). A construct with no
# entry is a bug in netdsl, not a box drawn as a guess: tests/ir/test_walk.py lists
# every construct against this table.
CONSTRUCTS: dict[str, Builder] = {}


def handles(kind: str) -> bool:
    """Whether the diagram has a rule for IR nodes of ``kind``."""
    return kind == "layer" or kind in CONSTRUCTS


def construct(kind: str):
    """Register the function that draws IR nodes of ``kind``."""
    def register(fn: Builder) -> Builder:
        CONSTRUCTS[kind] = fn
        return fn
    return register


class _Builder:
    def __init__(self, title: str, depth: int | None):
        self.d = Diagram(title)
        self.depth = depth
        self.stack: list[str | None] = [None]
        # Named results (`-> name`, a network's inputs), one map per block instance: a
        # labelled group shares the names of the body around it.
        self.names: list[dict[str, Srcs]] = [{}]

    def node(self, role: str, name: str, type_: str, shape, note: str = "") -> str:
        nid = f"n{len(self.d.nodes)}"
        self.d.nodes.append(Node(nid, role, name, type_, tuple(shape), note, self.stack[-1]))
        return nid

    def connect(self, srcs: Srcs, dst: str) -> None:
        self.d.edges.extend(Edge(s, dst, k) for s, k in srcs)

    def single(self, srcs: Srcs, shape) -> str:
        """One node that a combinator fans out from: several inputs (a dense layer's)
        are concatenated first."""
        if len(srcs) == 1:
            return srcs[0][0]
        cat = self.node("op", "", "concat", shape)
        self.connect(srcs, cat)
        return cat

    def emit(self, body, srcs: Srcs, prefix: str, depth: int) -> Srcs:
        for item in body:
            if isinstance(item, ir.Layer):
                srcs = _layer(self, item, srcs, prefix, depth)
            else:
                srcs = CONSTRUCTS[item.kind](self, item, srcs, prefix, depth)
        return srcs


def _layer(g: _Builder, node: ir.Layer, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    if node.functional or KINDS[node.kind].bare_parameter:
        # No module: a torch function, named as torch.fx names its call (`flatten`), or
        # the enclosing module's parameter applied (`scale`).
        nid = g.node("op", node.name, node.kind, node.out_shape)
    elif node.reuse:  # a module called again: a box per call, named as the module it calls
        nid = g.node("call", prefix + node.name, type_name(node), node.out_shape,
                     "called again")
    else:
        nid = g.node("layer", prefix + node.name, type_name(node), node.out_shape)
    g.connect(srcs, nid)
    return [(nid, "data")]


def _hidden_kinds(nodes) -> list[str]:
    """The combinators inside a module, not counting those of the modules inside it."""
    found: list[str] = []
    for node in nodes:
        if isinstance(node, (ir.Layer, ir.Scope, ir.Bind, ir.From)):  # naming is not a combinator
            continue
        if node.kind not in found:
            found.append(node.kind)
        for body in ir.bodies(node):
            found += [k for k in _hidden_kinds(body) if k not in found]
    return found


@construct("scope")
def _scope(g: _Builder, node: ir.Scope, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    path, type_ = prefix + node.name, scope_type(node)
    own_names = node.cls is not None  # a block instance; a labelled group shares names
    # A block of several tensors: each input is the result passed in by name (`from a, b`)
    # or the current one; its outputs get the names of `-> y, z`.
    given = [g.names[-1][n] for n in node.sources] if node.sources else [srcs]
    if node.sources:
        srcs = list(dict.fromkeys(e for edges in given for e in edges))  # one edge for `from a, a`
    # A module with no modules inside (an empty one: an identity branch) is a leaf of
    # the table too, so a box rather than an empty cluster.
    if (g.depth is not None and depth + 1 >= g.depth) or not any(map(_is_module, _modules(node.body))):
        nid = g.node("module", path, type_, node.out_shape, ", ".join(_hidden_kinds(node.body)))
        g.connect(srcs, nid)
        g.names[-1].update((t, [(nid, "data")]) for t in node.targets)
        if not own_names:  # it reads results named outside it, and what it names is read from its box
            bound = _bound(node.body)
            for name in dict.fromkeys(_read(node.body)):
                if name not in bound and name in g.names[-1]:
                    g.connect([e for e in g.names[-1][name] if e not in srcs], nid)
            g.names[-1].update((name, [(nid, "data")]) for name in bound)
        return [(nid, "data")]
    cid = f"c{len(g.d.clusters)}"
    g.d.clusters.append(Cluster(cid, f"{path}: {type_}", g.stack[-1]))
    g.stack.append(cid)
    if own_names:
        g.names.append(dict(zip(node.inputs, given, strict=False)))
    try:
        out = g.emit(node.body, srcs, path + ".", depth + 1)
        results = [g.names[-1][o] for o in node.outputs]
    finally:
        g.stack.pop()
        if own_names:
            g.names.pop()
    g.names[-1].update(zip(node.targets, results, strict=True))
    return out


def _bound(nodes) -> list[str]:
    """The names a body gives its results, those of its labelled groups included."""
    found: list[str] = []
    for node in nodes:
        if isinstance(node, ir.Bind):
            found.append(node.name)
        elif isinstance(node, ir.Chunk):
            found += node.targets
        elif isinstance(node, ir.Scope):
            found += _bound(node.body) if node.cls is None else []
        elif not isinstance(node, ir.Layer):
            for body in ir.bodies(node):
                found += _bound(body)
    return found


def _read(nodes) -> list[str]:
    """The names a body reads (`from`, `add(...)`, `concat(...)`), its labelled groups' included."""
    found: list[str] = []
    for node in nodes:
        if isinstance(node, ir.From):
            found.append(node.name)
        elif isinstance(node, ir.Merge):
            found += node.sources
        elif isinstance(node, ir.Chunk):
            found.append(node.source)
        elif isinstance(node, ir.Scope):
            found += _read(node.body) if node.cls is None else []
        elif not isinstance(node, ir.Layer):
            for body in ir.bodies(node):
                found += _read(body)
    return found


@construct("bind")
def _bind(g: _Builder, node: ir.Bind, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    g.names[-1][node.name] = srcs
    return srcs


@construct("from")
def _from(g: _Builder, node: ir.From, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    return g.names[-1][node.name]


@construct("merge")
def _merge(g: _Builder, node: ir.Merge, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    op = g.node("op", "", node.op, node.out_shape)
    for name in node.sources:
        g.connect(g.names[-1][name], op)
    return [(op, "data")]


@construct("chunk")
def _chunk(g: _Builder, node: ir.Chunk, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    cut = g.node("op", "", "chunk", node.in_shape, f"{len(node.targets)} parts")
    g.connect(g.names[-1][node.source], cut)
    g.names[-1].update((t, [(cut, "data")]) for t in node.targets)
    return [(cut, "data")]


@construct("split")
def _split(g: _Builder, node: ir.Split, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    x = g.single(srcs, node.in_shape)
    cut = g.node("op", "", "split", node.in_shape, "[" + ", ".join(map(str, node.sizes)) + "]")
    g.connect([(x, "data")], cut)
    outs = [s for part in node.parts for s in (g.emit(part, [(cut, "data")], prefix, depth)
                                              or [(cut, "data")])]
    cat = g.node("op", "", "concat", node.out_shape)
    g.connect(outs, cat)
    return [(cat, "data")]


@construct("residual")
def _residual(g: _Builder, node: ir.Residual, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    x = g.single(srcs, node.in_shape)
    body = g.emit(node.body, [(x, "data")], prefix, depth)
    short = [(x, "skip")]
    if node.shortcut:  # drawn dashed into and out of the projection, as a path apart
        short = [(s, "skip") for s, _ in g.emit(node.shortcut, short, prefix, depth)]
    add = g.node("op", "", "add", node.out_shape)
    g.connect(body + short, add)
    return [(add, "data")]


@construct("concat")
def _concat(g: _Builder, node: ir.Concat, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    x = g.single(srcs, node.in_shape)
    outs = [s for branch in node.branches for s in g.emit(branch, [(x, "data")], prefix, depth)]
    cat = g.node("op", "", "concat", node.out_shape)
    g.connect(outs, cat)
    return [(cat, "data")]


@construct("dense")
def _dense(g: _Builder, node: ir.Dense, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    # Layer k sees everything so far, concatenated: a running concat after each layer,
    # the carried-over features dashed. One edge per layer rather than one per earlier
    # layer keeps DenseNet-121 (58 layers) readable and under Mermaid's 500 edges.
    acc = g.single(srcs, node.in_shape)
    channels, *rest = node.in_shape
    for layer in node.layers:
        out = g.emit(layer, [(acc, "data")], prefix, depth)
        channels += layer[-1].out_shape[0] if layer else channels  # an empty layer passes all on
        cat = g.node("op", "", "concat", (channels, *rest))
        g.connect([(acc, "dense")] + out, cat)
        acc = cat
    return [(acc, "data")]


@construct("gate")
def _gate(g: _Builder, node: ir.Gate, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    x = g.single(srcs, node.in_shape)
    body = g.emit(node.body, [(x, "data")], prefix, depth)
    mul = g.node("op", "", "mul", node.out_shape)
    g.connect(body + [(x, "gate")], mul)
    return [(mul, "data")]


@construct("side")
def _side(g: _Builder, node: ir.Side, srcs: Srcs, prefix: str, depth: int) -> Srcs:
    head = g.emit(node.body, [(s, "side") for s, _ in srcs], prefix, depth)
    out = g.node("output", node.name, "side output", node.out_shape, "side output (training)")
    g.connect(head, out)
    return srcs  # the main flow goes on from where the head branched off


def diagram(net: ir.Network, depth: int | None = None) -> Diagram:
    """The diagram of ``net``, modules below ``depth`` folded into one node each
    (1 = top-level modules only, None = everything), as the layer table folds rows.

    >>> import netdsl
    >>> net = netdsl.compile("block b() { c: conv2d(4, 1) }\\nnetwork n() { input [3, 8, 8]\\n x: b }")
    >>> [n.lines() for n in diagram(net, depth=1).nodes]
    [['input', '[3, 8, 8]'], ['x: B', '[4, 8, 8]'], ['output', '[4, 8, 8]']]
    >>> [c.label for c in diagram(net).clusters]
    ['x: B']
    """
    g = _Builder(net.name, depth)
    if net.inputs:
        for i in net.inputs:
            g.names[0][i.name] = [(g.node("input", i.name, "input", i.shape), "data")]
        x = g.d.nodes[0].id
    else:
        x = g.node("input", "input", "input", net.input_shape)
    out = g.emit(net.body, [(x, "data")], "", 0)
    if net.result is None:
        end = g.node("output", "output", "output", net.out_shape)
        g.connect(out, end)
    else:  # one box per returned result, named by its key
        for key, source, shape in zip(net.result.keys, net.result.sources, net.result.shapes, strict=True):
            g.connect(g.names[0][source], g.node("output", key, "output", shape, net.result.form))
    return g.d


def _contents(d: Diagram) -> Callable[[str | None], list]:
    """What to write inside a cluster (None: the top level), in the order of the flow:
    its nodes, and each cluster inside it where its first node comes."""
    first: dict[str | None, int] = {}
    parent = {c.id: c.parent for c in d.clusters}
    for i, n in enumerate(d.nodes):
        c = n.cluster
        while c is not None and c not in first:
            first[c] = i
            c = parent.get(c)

    def contents(cluster: str | None) -> list:
        items: list[tuple[int, Node | Cluster]] = [(i, n) for i, n in enumerate(d.nodes) if n.cluster == cluster]
        items += [(first.get(c.id, len(d.nodes)), c) for c in d.clusters if c.parent == cluster]
        return [x for _, x in sorted(items, key=lambda t: t[0])]
    return contents


# ---------------------------------------------------------------- Mermaid

def visible(text: str) -> str:
    """``text`` with each character that is not printable written as its escape, as
    Python's ``repr`` writes it: renderers drop or mangle control characters.

    >>> visible("a\\tb\\u2028c é")
    'a\\\\tb\\\\u2028c é'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Inside a quoted Mermaid label, `"` ends it, `#...;` is an entity code, and
# `<`, `>`, `&` are HTML; a backtick opens a markdown string. Each is written as
# a numeric entity code.
_MERMAID_CODED = set('"#<>&`')


def mermaid_text(text: str) -> str:
    """``text`` as it goes between the quotes of a Mermaid label.

    >>> mermaid_text('a "b" #1 <c> & `d`')
    'a #34;b#34; #35;1 #60;c#62; #38; #96;d#96;'
    """
    return "".join(f"#{ord(c)};" if c in _MERMAID_CODED else c for c in visible(text))


_MERMAID_SHAPES = {"input": ('(["', '"])'), "output": ('(["', '"])'), "layer": ('["', '"]'),
                   "module": ('[["', '"]]'), "op": ('(("', '"))'), "call": ('[/"', '"/]')}
_MERMAID_ARROWS = {"data": "-->", "skip": "-.->", "dense": "-.->", "gate": "-.->",
                   "side": "-.->|side|"}


def to_mermaid(d: Diagram) -> str:
    """A Mermaid flowchart (top down), unfolded modules as subgraphs.

    >>> import netdsl
    >>> print(to_mermaid(diagram(netdsl.compile("network n() { input [1, 4, 4]\\n relu }"))))
    flowchart TD
      n0(["input<br/>[1, 4, 4]"])
      n1["relu: ReLU<br/>[1, 4, 4]"]
      n2(["output<br/>[1, 4, 4]"])
      n0 --> n1
      n1 --> n2
    """
    out = ["flowchart TD"]

    def label(n: Node) -> str:
        return "<br/>".join(mermaid_text(line) for line in n.lines())

    contents = _contents(d)

    def block(cluster: str | None, indent: str) -> None:
        for x in contents(cluster):
            if isinstance(x, Node):
                left, right = _MERMAID_SHAPES[x.role]
                out.append(f"{indent}{x.id}{left}{label(x)}{right}")
            else:
                # Mermaid refuses an empty title: a space, coded, is one it draws as empty.
                out.append(f'{indent}subgraph {x.id}["{mermaid_text(x.label) or "#32;"}"]')
                block(x.id, indent + "  ")
                out.append(f"{indent}end")

    block(None, "  ")
    out += [f"  {e.src} {_MERMAID_ARROWS[e.kind]} {e.dst}" for e in d.edges]
    return "\n".join(out)


# ---------------------------------------------------------------- DOT

def dot_text(text: str) -> str:
    """``text`` as it goes between the quotes of a DOT label.

    Graphviz reads ``\\"`` as a quote, then reads backslash escapes (``\\n``,
    ``\\l``) and HTML entities (``&amp;``) in the label; so ``\\`` and ``&`` are
    escaped too.

    >>> print(dot_text('a "b" \\\\n & c'))
    a \\"b\\" \\\\n &amp; c
    """
    out = []
    for c in visible(text):
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "&":
            out.append("&amp;")
        else:
            out.append(c)
    return "".join(out)


_DOT_SHAPES = {"input": "shape=oval", "output": "shape=oval",
               "layer": "shape=box", "module": 'shape=box, style="rounded,bold"',
               "op": "shape=circle, margin=0", "call": 'shape=box, style="dashed"'}
_DOT_EDGES = {"data": "", "skip": " [style=dashed]", "dense": ' [style=dashed, color="gray40"]',
              "gate": " [style=dashed]", "side": ' [style=dotted, label="side"]'}


def to_dot(d: Diagram) -> str:
    """A Graphviz digraph (top down), unfolded modules as clusters.

    >>> import netdsl
    >>> print(to_dot(diagram(netdsl.compile("network n() { input [1, 4, 4]\\n relu }"))))
    digraph "n" {
      graph [rankdir=TB, fontname="Helvetica"];
      node [fontname="Helvetica", fontsize=10];
      edge [fontname="Helvetica", fontsize=9];
      n0 [label="input\\n[1, 4, 4]", shape=oval];
      n1 [label="relu: ReLU\\n[1, 4, 4]", shape=box];
      n2 [label="output\\n[1, 4, 4]", shape=oval];
      n0 -> n1;
      n1 -> n2;
    }
    """
    out = [f'digraph "{dot_text(d.title)}" {{', '  graph [rankdir=TB, fontname="Helvetica"];',
           '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']

    contents = _contents(d)

    def block(cluster: str | None, indent: str) -> None:
        for x in contents(cluster):
            if isinstance(x, Node):
                text = "\\n".join(dot_text(line) for line in x.lines())
                out.append(f'{indent}{x.id} [label="{text}", {_DOT_SHAPES[x.role]}];')
            else:
                out.append(f"{indent}subgraph cluster_{x.id} {{")
                out.append(f'{indent}  label="{dot_text(x.label)}"; style=rounded; color="gray60";')
                block(x.id, indent + "  ")
                out.append(f"{indent}}}")

    block(None, "  ")
    out += [f"  {e.src} -> {e.dst}{_DOT_EDGES[e.kind]};" for e in d.edges]
    out.append("}")
    return "\n".join(out)
