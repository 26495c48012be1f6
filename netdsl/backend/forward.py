"""A module's ``forward``, written as Python source from the checked IR.

This is the one implementation of what every construct does at run time. A
built model runs this source (``lower`` compiles it into the block's class), and
``netdsl export --format python`` prints it: build and export agree by
construction. (The forms of a block that differ only in optional modules share
one class, in a built model as in the export (:mod:`netdsl.backend.forms`): its
forward is the fullest form's with each call of such a module under ``if
self.NAME is not None``.) The source reads as
torchvision writes its forwards — ``identity = x``, ``out = self.conv1(x)``,
``out += identity`` — and each statement ends
with a comment naming the spec line it comes from, so a traceback or a debugger
stepping into a built model shows the spec::

    def forward(self, x):
        out = self.conv1(x)  # resnet.net:9
        out = self.bn1(out)  # resnet.net:10

Nothing from a spec reaches the source as code: module names are written as
attributes only where they are plain identifiers (else ``self.get_submodule``
with a quoted name), values through :func:`netdsl.backend.source.literal`, and
comments are escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import ir
from ..ir.walk import Visitor, walk
from ..layers import KINDS
from .source import comment, compact, is_attribute, literal, local_name, module_ref

INDENT = "    "


@dataclass
class Forward:
    """The source of one ``forward`` method: its ``def`` line and statements, each
    indented for a class body, and what the statements use."""

    params: tuple[str, ...]
    lines: list[str]
    uses_torch: bool = False
    uses_f: bool = False
    # The name a namedtuple of outputs is written with (``{outputs}`` in the lines).
    returns_outputs: bool = False

    def text(self, outputs: str | None = None) -> str:
        """The method, its lines joined, ``{outputs}`` replaced by ``outputs`` where given."""
        head = f"{INDENT}def forward(self, {', '.join(self.params)}):"
        body = "\n".join(self.lines if outputs is None else
                         [line.replace("{outputs}", outputs) for line in self.lines])
        return f"{head}\n{body}\n"


def where(span) -> str:
    """How a statement's comment names its spec line: ``file:line``.

    >>> from netdsl.span import Span
    >>> where(Span(file="specs/resnet.net", line=9, column=5, end_line=9, end_column=9))
    'specs/resnet.net:9'
    """
    if span is None:
        return ""
    return f"{span.file or '<spec>'}:{span.line}"


@dataclass
class _State:
    lines: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=lambda: {"x", "self", "F", "torch", "nn"})
    next: dict[str, int] = field(default_factory=dict)  # the next number to try after each base
    indent: int = 2
    owner: tuple[str, ...] = ()  # the container whose modules are being run
    names: dict[str, str] = field(default_factory=dict)  # a spec's result name -> its variable
    sides: list[str] = field(default_factory=list)
    uses_torch: bool = False
    uses_f: bool = False


class ForwardWriter(Visitor):
    """Writes the statements of one body: ``visit(node, src, dst)`` writes the code
    of ``node`` on the variable ``src`` into ``dst`` and returns the variable that
    holds its result. One method per construct; a layer is one case."""

    def __init__(self, optional: frozenset[str] = frozenset()) -> None:
        self.s = _State()
        # Modules of the block that some of its instances lack (None there): each call
        # of one is guarded, as torchvision's ``if self.downsample is not None``.
        self.optional = optional

    # -- helpers
    def fresh(self, base: str) -> str:
        """A variable name no other in this forward has: ``base``, else ``base2``, ``base3``...
        (``x2_2``, ``x2_3``... where ``base`` ends in a digit, so that a count cannot run
        into the number: ``x2`` taken gives ``x2_2``, never ``x22``)."""
        name, i = base, self.s.next.get(base, 2)
        sep = "_" if base[-1:].isdigit() else ""
        while name in self.s.used:
            name, i = f"{base}{sep}{i}", i + 1
        self.s.next[base] = i
        self.s.used.add(name)
        return name

    def emit(self, line: str, span=None) -> None:
        note = where(span)
        self.s.lines.append(INDENT * self.s.indent + line + (f"  # {comment(note)}" if note else ""))

    def ref(self, name: str) -> str:
        path = self.s.owner + tuple(name.split("."))  # a dotted label is a path (`"convs.0"`)
        if len(path) == 1 or all(is_attribute(p) for p in path):
            return module_ref(path[0]) + "".join(f".{p}" for p in path[1:])
        return f"self.get_submodule({'.'.join(path)!r})"

    def seq(self, nodes: Sequence[ir.Node], src: str, dst: str) -> str:
        """Run ``nodes`` on ``src``, writing to ``dst``; returns the variable with the result.
        A named result's variable is never written over: it may be read later."""
        cur = src
        if dst in self.s.names.values():
            dst = self.fresh("x")
        for node in nodes:
            if not cur.isidentifier() and not isinstance(node, (ir.Layer, ir.Scope)):
                self.emit(f"{dst} = {cur}")
                cur = dst
            cur = self.visit(node, cur, dst)
            if cur.isidentifier() and cur not in self.s.names.values():
                dst = cur
        return cur

    # -- one rule per construct
    def visit_layer(self, node: ir.Layer, src: str, dst: str) -> str:
        kind = KINDS[node.kind]
        if node.functional:
            func = kind.function
            self.s.uses_f |= func.startswith("F.")
            self.s.uses_torch |= func.startswith("torch.")
            args = [src] + [literal(compact(v)) if k is None else f"{k}={literal(compact(v))}"
                            for k, v in kind.function_args(node)]
            if kind.training_arg:
                args.append("training=self.training")
            self.emit(f"{dst} = {func}({', '.join(args)})", node.span)
            return dst
        if kind.bare_parameter:
            self.emit(f"{dst} = {self.ref(node.name)} * {src}", node.span)
            return dst
        if node.name in self.optional and not node.reuse:
            return self.call_optional(node, src, dst)
        # A `reuse` calls the module its label made again, as torchvision's self.relu.
        self.emit(f"{dst} = {self.ref(node.name)}({src})", node.span)
        return dst

    def call_optional(self, node: ir.Layer | ir.Scope, src: str, dst: str) -> str:
        """``dst = src``, then the module's call where the instance has the module:
        where it is None the statement passes its input on, as leaving it out would."""
        ref = self.ref(node.name)
        if dst != src:
            self.emit(f"{dst} = {src}")
        self.emit(f"if {ref} is not None:")
        self.emit(f"    {dst} = {ref}({src if src.isidentifier() else dst})", node.span)
        return dst

    def visit_scope(self, node: ir.Scope, src: str, dst: str) -> str:
        if is_container(node):  # it only holds its modules: this body runs them
            self.s.owner += (node.name,)
            out = self.seq(node.body, src, dst)
            self.s.owner = self.s.owner[:-1]
            return out
        # A block of several tensors takes the named results given to it, and its outputs
        # are unpacked into the names they get: `y, z = self.tree(x1, skip)`.
        if node.name in self.optional and not node.sources and not node.targets:
            return self.call_optional(node, src, dst)
        args = ", ".join(self.s.names[n] for n in node.sources) if node.sources else src
        if node.targets:
            outs = [self.fresh(local_name(t)) for t in node.targets]
            self.emit(f"{', '.join(outs)} = {self.ref(node.name)}({args})", node.span)
            self.s.names.update(zip(node.targets, outs, strict=True))
            return outs[0]
        self.emit(f"{dst} = {self.ref(node.name)}({args})", node.span)
        return dst

    def visit_bind(self, node: ir.Bind, src: str, dst: str) -> str:
        var = self.fresh(local_name(node.name))
        lines = self.s.lines
        head = INDENT * self.s.indent + f"{src} = "
        if src != var and lines and lines[-1].startswith(head) and src not in self.s.names.values():
            # The step that made it writes the name itself, as a hand-written forward would.
            lines[-1] = INDENT * self.s.indent + f"{var} = " + lines[-1][len(head):]
        else:
            self.emit(f"{var} = {src}", node.span)
        self.s.names[node.name] = var
        return var

    def visit_from(self, node: ir.From, src: str, dst: str) -> str:
        return self.s.names[node.name]

    def visit_merge(self, node: ir.Merge, src: str, dst: str) -> str:
        parts = [self.s.names[n] for n in node.sources]
        if node.op in ir.ELEMENTWISE:
            operands = parts + ([literal(node.by)] if node.by is not None else [])
            self.emit(f"{dst} = {f' {ir.ELEMENTWISE[node.op]} '.join(operands)}", node.span)
        elif node.op == "resize":
            # The size is read when the model runs, as torchvision's FPN and LR-ASPP do.
            self.s.uses_f = True
            extra = "".join(f", {k}={literal(v)}" for k, v in
                            (("mode", node.mode or "nearest"), ("align_corners", node.align_corners))
                            if v is not None)
            self.emit(f"{dst} = F.interpolate({parts[0]}, size={parts[1]}.shape[-2:]{extra})", node.span)
        elif node.op == "matmul":
            self.emit(f"{dst} = {parts[0]} @ {parts[1]}", node.span)
        elif node.op == "crop":
            a, b = parts
            h, w = f"{b}.shape[-2]", f"{b}.shape[-1]"
            if node.offset is None:
                top, left = self.fresh("top"), self.fresh("left")
                self.emit(f"{top} = ({a}.shape[-2] - {h}) // 2", node.span)
                self.emit(f"{left} = ({a}.shape[-1] - {w}) // 2", node.span)
            else:
                top, left = map(str, node.offset)
            self.emit(f"{dst} = {a}[..., {top}:{top} + {h}, {left}:{left} + {w}]", node.span)
        else:
            self.s.uses_torch = True
            self.emit(f"{dst} = torch.cat([{', '.join(parts)}], 1)", node.span)
        return dst

    def visit_chunk(self, node: ir.Chunk, src: str, dst: str) -> str:
        # Unpacked into the parts' names, as a hand-written forward would: `a, b = x.chunk(2, 1)`.
        outs = [self.fresh(local_name(t)) for t in node.targets]
        self.emit(f"{', '.join(outs)} = {self.s.names[node.source]}.chunk({len(outs)}, {node.dim + 1})",
                  node.span)
        self.s.names.update(zip(node.targets, outs, strict=True))
        return outs[0]

    def visit_split(self, node: ir.Split, src: str, dst: str) -> str:
        self.s.uses_torch = True
        xs = [self.fresh(f"x{i + 1}") for i in range(len(node.parts))]
        target = f"{', '.join(xs)}{',' if len(xs) == 1 else ''}"
        if len(set(node.sizes)) == 1:
            # Chunks, as torchvision's ShuffleNet does; indexed, not unpacked, under FX alike.
            self.emit(f"{target} = {src}.chunk({len(xs)}, 1)", node.span)
        else:
            self.emit(f"{target} = torch.split({src}, {literal(list(node.sizes))}, 1)", node.span)
        outs = [self.seq(part, x, x) for part, x in zip(node.parts, xs, strict=True)]
        self.emit(f"{dst} = torch.cat([{', '.join(outs)}], 1)", node.span)
        return dst

    def visit_residual(self, node: ir.Residual, src: str, dst: str) -> str:
        out = self.seq(node.body, src, self.fresh("out"))
        if node.shortcut is None:
            identity = src
        else:
            identity = self.seq(node.shortcut, src, self.fresh("identity"))
        # A body whose modules may be None may give its input back: added into out of place.
        if add_in_place(node.body) and not any(isinstance(n, (ir.Layer, ir.Scope)) and n.name in self.optional
                                               for n in walk(node.body)):
            self.emit(f"{out} += {identity}", node.span)
            return out
        res = self.fresh("out")
        self.emit(f"{res} = {out} + {identity}", node.span)
        return res

    def visit_concat(self, node: ir.Concat, src: str, dst: str) -> str:
        self.s.uses_torch = True
        outs = [self.seq(b, src, self.fresh("branch")) for b in node.branches]
        self.emit(f"{dst} = torch.cat([{', '.join(outs)}], 1)", node.span)
        return dst

    def visit_dense(self, node: ir.Dense, src: str, dst: str) -> str:
        self.s.uses_torch = True
        features = self.fresh("features")
        self.emit(f"{features} = [{src}]", node.span)
        for layer in node.layers:
            new = self.seq(layer, f"torch.cat({features}, 1)", self.fresh("new"))
            self.emit(f"{features}.append({new})", node.span)
        self.emit(f"{dst} = torch.cat({features}, 1)", node.span)
        return dst

    def visit_gate(self, node: ir.Gate, src: str, dst: str) -> str:
        scale = self.seq(node.body, src, self.fresh("scale"))
        self.emit(f"{dst} = {scale} * {src}", node.span)
        return dst

    def visit_side(self, node: ir.Side, src: str, dst: str) -> str:
        var = node.name if is_attribute(node.name) and node.name not in self.s.used else "side"
        var = self.fresh(var)
        self.s.sides.append(var)
        self.emit("if self.training:", node.span)
        self.s.indent += 1
        out = self.seq(node.body, src, var)
        if out != var:
            self.emit(f"{var} = {out}", node.span)
        self.s.indent -= 1
        return src


def write(nodes: Sequence[ir.Node], net: ir.Network | None = None, scope: ir.Scope | None = None,
          optional: frozenset[str] = frozenset()) -> Forward:
    """The ``forward`` of a module whose body is ``nodes``; ``net`` when it is the
    network's own (its inputs, side outputs and ``output`` shape the signature and
    the return), ``scope`` when it is a block's that takes or gives several tensors
    (its inputs are its parameters, its outputs a tuple it returns). ``optional``
    names the block's own modules that may be None (an exported class that several
    forms of a block share): each call of one runs only where it is not.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n residual { c: conv2d(3, 1) }\\n relu }")
    >>> print(write(net.body, net).text(), end="")
        def forward(self, x):
            out = self.c(x)  # <spec>:2
            out += x  # <spec>:2
            out = self.relu(out)  # <spec>:3
            return out
    """
    w = ForwardWriter(optional)
    params = ["x"]
    if net is not None and net.inputs:
        # The inputs' own names (the checker allows only names a parameter can have), so
        # that `model(rgb=..., depth=...)` calls it as the spec says.
        w.s.used.discard("x")
        params = []
        for i in net.inputs:
            var = i.name if i.name not in w.s.used else w.fresh(local_name(i.name))
            w.s.used.add(var)
            params.append(var)
            w.s.names[i.name] = var
    # A named input may be read again by name (`from image`, `resize(out, image)`), so the
    # chain gets a variable of its own ("x"); only an unnamed input's is written over.
    elif scope is not None and scope.inputs:
        w.s.used.discard("x")
        params = []
        for name in scope.inputs:
            var = name if name not in w.s.used else w.fresh(local_name(name))
            w.s.used.add(var)
            params.append(var)
            w.s.names[name] = var
    named = (net is not None and net.inputs) or (scope is not None and scope.inputs)
    out = w.seq(nodes, params[0], w.fresh("x") if named else params[0])
    if scope is not None and scope.outputs:
        w.emit(f"return {', '.join(w.s.names[o] for o in scope.outputs)}")
        return Forward(tuple(params), w.s.lines, w.s.uses_torch, w.s.uses_f)
    returns_outputs = False
    if net is not None and w.s.sides:
        made = dict(zip(("logits",) + tuple(net.outputs), [out] + w.s.sides, strict=True))
        fields = net.sides_order or tuple(made)
        w.emit("if self.training:")
        w.emit(f"    return {{outputs}}({', '.join(made[f] for f in fields)})")
        returns_outputs = True
    result = net.result if net is not None else None
    if result is None:
        w.emit(f"return {out}")
    else:
        values = [w.s.names[s] for s in result.sources]
        if result.form == "dict":
            w.emit("return {" + ", ".join(f"{k!r}: {v}" for k, v in zip(result.keys, values, strict=True)) + "}")
        elif result.form == "namedtuple":
            w.emit(f"return {{outputs}}({', '.join(values)})")
            returns_outputs = True
        else:
            w.emit(f"return {values[0]}," if len(values) == 1 else f"return {', '.join(values)}")
    return Forward(tuple(params), w.s.lines, w.s.uses_torch, w.s.uses_f, returns_outputs)


def is_container(node: ir.Node) -> bool:
    """A labelled group wired by name: it only holds its modules; its owner runs them,
    as torchvision's FPN runs ``inner_blocks[i]``."""
    return isinstance(node, ir.Scope) and node.cls is None and ir.has_flow(node.body)


def is_sequential(nodes: Sequence[ir.Node]) -> bool:
    """Whether a body is a plain sequence of modules, each called once: an
    ``nn.Sequential``, which needs no forward of its own."""
    return all((isinstance(n, ir.Scope) or (isinstance(n, ir.Layer) and not n.reuse and not n.functional
                                            and not KINDS[n.kind].bare_parameter)) and "." not in n.name
               for n in nodes) and not ir.has_flow(nodes)


def _output_free(nodes: Sequence[ir.Node]) -> bool | None:
    """Whether a sequence's output is a new tensor no backward needs (True), may be
    needed or is unknown (False), or is its input passed through (None)."""
    for node in reversed(nodes):
        if isinstance(node, ir.Side):
            continue  # runs beside the sequence; its output is not the sequence's
        if isinstance(node, ir.Scope):
            inner = _output_free(node.body)
            if inner is None:
                continue
            return inner
        if isinstance(node, ir.Layer):
            kind = KINDS[node.kind]
            if kind.pass_through:
                continue  # its input or, in training, a product nothing keeps
            return kind.output_not_saved
        # cat (concat, dense), x * body(x) (gate) and a residual's add keep only their
        # inputs; a nested residual adds in place only into an output nothing keeps.
        return isinstance(node, (ir.Residual, ir.Concat, ir.Dense, ir.Gate))
    return None


def add_in_place(body: Sequence[ir.Node]) -> bool:
    """Whether a residual may add the shortcut into its body's output in place, as
    torchvision's blocks do (``out += identity``): only when that output is a tensor
    the body made and autograd did not save, else backward would see it changed.

    >>> import netdsl
    >>> net = netdsl.compile("network n() { input [3, 8, 8]\\n residual { conv2d(3, 1)\\n relu } }")
    >>> add_in_place(net.body[0].body), add_in_place(net.body[0].body[:1])
    (False, True)
    """
    return _output_free(body) is True


def uses_torch(nodes: Sequence[ir.Node]) -> bool:
    """Whether a body's forward calls ``torch`` (cat, split, a function)."""
    return any(isinstance(n, (ir.Concat, ir.Dense, ir.Split, ir.Merge)) or
               (isinstance(n, ir.Layer) and n.functional) for n in walk(nodes))
