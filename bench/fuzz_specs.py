"""Spec generators for the fuzzer: whole new specs aimed at one kind of bug each.

Mutating the shipped specs (fuzz.py) mostly tests the parser and the checker
on networks the checker already knows. These generators write specs that the
shipped ones never contain:

- ``layers``: random chains of every catalogue layer with random arguments
  (edge values included), inside residual, concat, dense, gate, side, labelled
  groups, blocks and repetition, on random small inputs. What ``check``
  accepts of them goes through the whole contract (build, forward, backward,
  save): the differential test of the shape rules and argument checks.
- ``labels``: labels and side-output names that collide with module
  attributes or cannot be named-tuple fields.
- ``init``: ``init`` rules with random scheme arguments.
- ``sharing``: ``reuse`` of labelled layers (right and wrong scopes, other
  channels), ``apply`` of every layer kind, ``sides`` orders, ``as`` class names.
- ``expressions``: ``log``, ``log2``, ``exp``, ``round(x, digits)`` and filtered
  comprehensions with edge values, feeding a layer's arguments.
- ``long_names``: misspelt names of up to 16 KB (the did-you-mean search).
- ``many_errors``: thousands of bad lines (rendering and the error cap).
- ``control``: control characters in strings, labels and comments (terminal injection).
- ``dataflow``: named results, `from`, every merge (`add` ... `resize`, `crop`, with
  their options), `split`, blocks of several tensors (`from a, b`, `-> y, z`), several inputs
  and stated outputs, with now and then a misspelt, early or unused name.
- ``grammar``: sentences derived from grammar.lark itself, every rule and alternative.
- ``extremes``: every argument of every layer at the edges of its type (int64 and
  float32 limits, subnormals, negative zero), as a module or applied.
- ``reuse``: ``reuse`` of a layer of every kind, at its own shape and at others.
- ``extern``: ``extern`` classes of torch.nn (the fuzzer's grant, :data:`GRANT`) with right
  and wrong arguments, in blocks, residuals and as block parameters, reused, followed by
  in-place layers; and externs the grant does not cover, or that name no class.

Each generator takes a ``random.Random`` and returns the spec text. Argument
types are probed from the catalogue's converters, so a layer added to
``netdsl.layers.LAYERS`` is fuzzed with no change here.
"""

from __future__ import annotations

import functools
import math
import random
import re

from netdsl.layers import LAYERS, REQUIRED, ArgTypeError
from netdsl.layers.reshape import _sizes

# Names that are attributes of torch modules or of netdsl's runtime classes.
ATTRIBUTE_NAMES = ["training", "forward", "_modules", "state_dict", "cuda", "__class__", "_plan",
                   "spec_name", "input_shape", "_steps", "_sides", "_outputs", "eval", "train",
                   "zero_grad", "parameters", "T_destination", "dump_patches", "call_super_init",
                   "_parameters", "_buffers", "to", "half", "apply", "__init__", "__dict__",
                   "register_buffer", "add_module", "get_submodule", "extra_repr", "__call__"]
# Names a side output may not take: the main output's field, private or keyword names.
FIELD_NAMES = ["logits", "_x", "_", "def", "class", "lambda", "True", "None", "False", "import",
               "aux", "aux_logits", "out1", "if_", "from", "return", "yield", "async"]


# ---------------------------------------------------------------- argument values


@functools.cache
def arg_type(kind: str, arg: str) -> tuple:
    """("bool" | "dims" | "sizes" | "pair" | "float" | "int" | "choice", choices) of one layer argument,
    by probing ("dims": a list of dimensions, as `permute` takes).

    >>> arg_type("conv2d", "kernel_size"), arg_type("conv2d", "bias")
    (('pair', ()), ('bool', ()))
    """
    convert = LAYERS[kind].arg(arg).convert
    if convert is _sizes:
        return "sizes", ()

    def accepts(v) -> bool:
        try:
            convert(v)
            return True
        except ArgTypeError:
            return False

    if accepts(True):
        return "bool", ()
    if accepts((0, 1, 2)) and not accepts(3):
        return "dims", ()
    if accepts((2, 3)):
        return "pair", ()
    if accepts(0.5):
        return "float", ()
    if accepts(3):
        return "int", ()
    try:
        convert(object())
    except ArgTypeError as e:
        return "choice", tuple(re.findall(r'"([^"]*)"', e.expected))
    return "int", ()


@functools.cache
def accepts_same(kind: str, arg: str) -> bool:
    """Whether the argument takes "same" (TensorFlow's padding) besides numbers."""
    try:
        LAYERS[kind].arg(arg).convert("same")
        return True
    except ArgTypeError:
        return False


def _small_int(rng: random.Random) -> int:
    if rng.random() < 0.12:
        return rng.choice([0, -1, 7, 16, 33])  # an edge, or a size that rarely fits
    return rng.choice([1, 1, 2, 2, 3, 4])


@functools.cache
def takes_features(kind: str) -> bool:
    """Whether ``kind`` with its default arguments accepts a flat [F] input (probed once).

    >>> takes_features("linear"), takes_features("conv2d")
    (True, False)
    """
    import netdsl

    call = kind if all(a.default is not REQUIRED for a in LAYERS[kind].args) else \
        f"{kind}({', '.join('1' for a in LAYERS[kind].args if a.default is REQUIRED)})"
    try:
        netdsl.compile(f"network n() {{ input [4]\n {call} }}")
        return True
    except netdsl.NetdslError:
        return False


def arg_value(rng: random.Random, kind: str, arg: str) -> str:
    """A netdsl expression for one argument: mostly plausible, sometimes at or past an edge."""
    t, choices = arg_type(kind, arg)
    if arg in ("dim", "start_dim", "end_dim"):  # a dimension of the sample, mostly one it has
        d = rng.choice([-2, -1, -1, 0, 0, 1, 1, 2]) if rng.random() > 0.08 else rng.choice([3, -4, 7])
        return str([d, rng.choice([0, 1, 2])]) if t == "pair" and rng.random() < 0.3 else str(d)
    if t == "bool":
        return rng.choice(["true", "false"])
    if t == "int":
        return str(_small_int(rng))
    if t == "dims":
        dims = [0, 1, 2][:rng.choice([1, 3, 3, 3])]
        rng.shuffle(dims)
        if rng.random() < 0.1:
            dims[-1] = dims[0]  # not a permutation
        return str(dims)
    if t == "sizes":  # what one dimension splits into (`unflatten`), one size perhaps -1
        return str([rng.choice([-1, 1, 2, 2, 3, 4, 0]) for _ in range(rng.choice([1, 2, 2, 3]))])
    if t == "pair":
        if arg == "padding" and rng.random() < 0.15 and accepts_same(kind, arg):
            return '"same"'  # TensorFlow's padding, where the layer takes it
        if rng.random() < 0.3:
            return f"[{_small_int(rng)}, {_small_int(rng)}]"
        return str(_small_int(rng))
    if t == "float":
        if rng.random() < 0.15:
            return rng.choice(["0.0", "1.0", "2.0", "-0.5", "1e-12", "1e30"])
        return rng.choice(["0.1", "0.5", "1e-5", "0.9", "1", "0.25"])
    return '"' + (rng.choice(choices) if choices and rng.random() < 0.9 else "bogus") + '"'


def layer_call(rng: random.Random, kind: str | None = None, flat: bool = False) -> str:
    """``kind(args...)`` with each argument given (positionally or by name) or left to its default.

    ``flat``: the input is most likely [F], so mostly choose a layer that takes one.
    """
    if kind is None:
        kinds = sorted(LAYERS)
        if flat and rng.random() < 0.9:
            kinds = [k for k in kinds if takes_features(k)]
        elif rng.random() < 0.8:
            kinds = [k for k in kinds if k not in ("linear", "flatten")]
        kind = rng.choice(kinds)
    sig = LAYERS[kind]
    parts, keyword = [], False
    for a in sig.args:
        give = a.default is REQUIRED or rng.random() < 0.4
        if not give:
            keyword = True  # a later argument must then be named
            continue
        value = arg_value(rng, kind, a.name)
        if keyword or rng.random() < 0.4:
            parts.append(f"{a.name} = {value}")
            keyword = True
        else:
            parts.append(value)
    if not parts and rng.random() < 0.5:
        return kind
    return f"{kind}({', '.join(parts)})"


# ---------------------------------------------------------------- bodies


class _Writer:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.labels = 0
        self.blocks: list[str] = []
        self.defs: list[str] = []

    def label(self) -> str:
        self.labels += 1
        if self.rng.random() < 0.1:  # a keyword that cannot start the statement may label it
            return self.rng.choice(["output", "input", "split", "extern", "block", "add", "from", "matmul", "chunk"])
        return f"l{self.labels}"

    def chain(self, depth: int, n: int | None = None) -> list[str]:
        rng = self.rng
        out = []
        for _ in range(n if n is not None else rng.choice([1, 1, 2, 2, 3, 4])):
            out.append(self.item(depth))
            if re.match(r"(\w+: )?(flatten|linear)\b", out[-1]):
                self.flat = True
        return out

    flat = False

    def item(self, depth: int) -> str:
        rng = self.rng
        r = rng.random()
        if depth >= 3 or r < 0.55 or self.flat:
            text = layer_call(rng, flat=self.flat)
        elif r < 0.65:
            sc = ""
            if rng.random() < 0.4:
                sep = rng.choice([" ", "\n    "])  # `shortcut` may start the next line
                # no label, a name, a template (twice in a loop: one module each), a bad one
                name = rng.choice(["", "proj ", '"proj{1 + 1}" ', '"" ', '"a.b" ', '"training" '])
                sc = f"{sep}shortcut {name}{{ " + "; ".join(self.chain(depth + 1)) + " }"
            cond = " if " + rng.choice(["true", "false", "1 > 2"]) if rng.random() < 0.2 else ""
            text = f"residual{cond} {{ " + "; ".join(self.chain(depth + 1)) + " }" + sc
        elif r < 0.73:
            branches = ["{ " + "; ".join(self.chain(depth + 1)) + " }" for _ in range(rng.choice([1, 2, 3]))]
            text = "concat { " + "; ".join(branches) + " }"
        elif r < 0.79:
            text = "dense { " + "; ".join(self.chain(depth + 1)) + " }"
        elif r < 0.85:
            text = "gate { " + "; ".join(self.chain(depth + 1)) + " }"
        elif r < 0.86:
            text = "{ " + "; ".join(self.chain(depth + 1)) + " }"
        elif r < 0.88:
            # A statement `if`, its `else` on the next line (a newline that continues the statement).
            cond = rng.choice(["true", "false", "1 <= 2", "none == none", "not true"])
            text = f"if {cond} {{ " + "; ".join(self.chain(depth + 1)) + " }"
            if rng.random() < 0.7:
                text += "\n    else " + rng.choice(["{ " + "; ".join(self.chain(depth + 1)) + " }",
                                                   "if false { relu } else { }"])
        elif r < 0.92:
            parts = ["{ " + ("; ".join(self.chain(depth + 1)) if rng.random() < 0.7 else "") + " }"
                     for _ in range(rng.choice([1, 2, 2, 3]))]
            sizes = f"[{', '.join(str(_small_int(rng)) for _ in parts)}] " if rng.random() < 0.3 else ""
            text = f"split {sizes}{{ " + "; ".join(parts) + " }"
        else:
            name = f"b{len(self.blocks)}"
            self.blocks.append(name)
            # What a block sees of its input, now and then: its channels, its whole shape.
            first = rng.choice(["", "", "avgpool2d(in_shape[1:])", "upsample(size = in_shape[1:])",
                                "conv2d(in_channels, 1)", "linear(in_shape[0])", "assert in_shape[0] == in_channels",
                                "pad([0, in_shape[-1] % 2, 0, 0])"])
            body = ([first] if first else []) + self.chain(depth + 1)
            self.defs.append(f"block {name}(w = 4) {{\n    " + "\n    ".join(body) + "\n}")
            text = name + (f"(w = {_small_int(rng)})" if rng.random() < 0.5 else "")
        if rng.random() < 0.15:
            text = f"{self.label()}: {text}"
        if rng.random() < 0.08:
            text = f"{text} * {rng.choice([0, 1, 2, 3])}"
        return text


def _input(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"[{rng.choice([1, 2, 4, 7, 16])}]"
    if rng.random() < 0.06:  # a sequence [C, L], as `conv1d` takes
        return f"[{rng.choice([1, 2, 3, 4])}, {rng.choice([1, 3, 5, 8, 12])}]"
    c = rng.choice([1, 2, 3, 4, 6, 8])
    h = rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 12, 16])
    w = h if rng.random() < 0.7 else rng.choice([1, 3, 6, 8, 11])
    return f"[{c}, {h}, {w}]"


def gen_layers(rng: random.Random) -> str:
    """A random network of catalogue layers and combinators on a small input."""
    w = _Writer(rng)
    body = w.chain(0, rng.choice([1, 2, 3, 4, 6]))
    if rng.random() < 0.15:
        body.insert(rng.randrange(len(body) + 1), "side aux { " + "; ".join(w.chain(2)) + " }")
    text = "network n() {\n    input " + _input(rng) + "\n    " + "\n    ".join(body) + "\n}\n"
    return "\n".join(w.defs + [text])


def gen_labels(rng: random.Random) -> str:
    """Labels and side names that a module or a named tuple cannot take, among ordinary ones."""
    lines = []
    for i in range(rng.choice([1, 2, 3])):
        name = rng.choice(ATTRIBUTE_NAMES + [f"ok{i}", "0", "block", "x" * 300, "block1-0",
                                             "a b", "", "a.b", "-", "{i}"])
        quoted = rng.random() < 0.4
        lines.append(f'"{name}": conv2d(4, 1)' if quoted else f"{name}: relu")
    if rng.random() < 0.5:
        lines.append(f"side {rng.choice(FIELD_NAMES)} {{ flatten; linear(3) }}")
    if rng.random() < 0.3:
        lines.append(f'for i in range(2) {{ "{rng.choice(ATTRIBUTE_NAMES)}{{i}}": relu }}')
    body = "\n    ".join(lines)
    inner = f"block b() {{\n    {body}\n}}\n" if rng.random() < 0.3 else ""
    use = "    b\n" if inner else ""
    return inner + f"network n() {{\n    input [3, 8, 8]\n{use}    {body if not inner else 'relu'}\n}}\n"


_SCHEMES = {
    "kaiming_normal": ["a", "mode", "nonlinearity"], "kaiming_uniform": ["a", "mode", "nonlinearity"],
    "xavier_normal": ["gain"], "xavier_uniform": ["gain"], "normal": ["mean", "std"],
    "uniform": ["a", "b"], "trunc_normal": ["mean", "std", "a", "b"], "constant": ["val"],
    "zeros": [], "ones": [],
}


def gen_init(rng: random.Random) -> str:
    """``init`` rules with random scheme arguments, on a net with every parametrised layer."""
    rules = []
    for _ in range(rng.choice([1, 2, 3])):
        fn = rng.choice(sorted(_SCHEMES))
        args = []
        for name in _SCHEMES[fn]:
            if rng.random() < 0.6:
                if name == "mode":
                    v = rng.choice(['"fan_in"', '"fan_out"', '"fan_avg"'])
                elif name == "nonlinearity":
                    v = rng.choice(['"relu"', '"leaky_relu"', '"tanh"', '"linear"', '"selu"', '"gelu"'])
                else:
                    v = rng.choice(["0", "1", "-1", "0.5", "-3", "3", "1e-9", "100", "0.0", "-0.01",
                                    "3.5e38", "-1e39", "1e-46"])
                args.append(f"{name} = {v}")
        target = rng.choice(["conv2d.weight", "conv2d.bias", "linear.weight", "linear.bias",
                             "batchnorm2d.weight", "batchnorm2d.bias", "fc.weight", "c.bias"])
        scheme = fn if not args and rng.random() < 0.5 else f"{fn}({', '.join(args)})"
        rules.append(f"init {target} = {scheme}")
    return ("network n() {\n    input [3, 8, 8]\n    " + "\n    ".join(rules) +
            "\n    c: conv2d(4, 3)\n    batchnorm2d\n    flatten\n    fc: linear(5)\n}\n")


def gen_sharing(rng: random.Random) -> str:
    """``reuse`` and ``apply`` among labelled layers, ``sides`` orders and class names."""
    w = _Writer(rng)
    labels: list[str] = []
    body = []
    for _ in range(rng.choice([2, 3, 4, 6])):
        r = rng.random()
        if r < 0.35 or not labels:
            label = w.label()
            labels.append(label)
            body.append(f"{label}: {layer_call(rng, flat=w.flat)}")
        elif r < 0.6:
            name = rng.choice(labels + ["nope", '"l{1}"', "b0"])
            body.append(f"reuse {name}")
        elif r < 0.8:
            body.append(f"apply {layer_call(rng, flat=w.flat)}")
        else:
            body.append(w.item(1))
        if re.search(r"\b(flatten|linear)\b", body[-1]):
            w.flat = True
    sides = [f"s{i}" for i in range(rng.choice([0, 0, 1, 2]))]
    for name in sides:
        body.insert(rng.randrange(len(body) + 1), f"side {name} {{ apply flatten; linear(3) }}")
    if rng.random() < 0.6:
        fields = ["logits"] + sides + (["zz"] if rng.random() < 0.2 else [])
        rng.shuffle(fields)
        if rng.random() < 0.2 and fields:
            fields.pop()
        body.append(f"sides {rng.choice(['', 'Out', 'T'])}({', '.join(fields) or 'logits'})")
    # The class name, on the header's line or after line breaks (a long header goes on).
    if rng.random() < 0.05:
        body.insert(0, "sub: relu")  # a keyword as a label
    cls = rng.choice(["", " as Net", " as _Net", " as Bottleneck", "\n    as Net", "\n\n    as Net\n",
                      "  # a comment between: two line breaks\n    # here\n    as Net"])
    blocks = [d.replace(") {", rng.choice([") as Blk {", ")\n    as Blk {", ")\n\n{", ") as Blk\n{"]), 1)
              if rng.random() < 0.5 else d for d in w.defs]
    return "\n".join(blocks + [f"network n(){cls} {{\n    input " + _input(rng) + "\n    " +
                               "\n    ".join(body) + "\n}\n"])


_EXPR_ATOMS = ["0", "1", "-1", "2", "0.5", "1e-9", "700", "710", "-800", "1e308", "8", "x"]


def _expr(rng: random.Random, depth: int = 0) -> str:
    if depth > 2 or rng.random() < 0.3:
        return rng.choice(_EXPR_ATOMS)
    a, b = _expr(rng, depth + 1), _expr(rng, depth + 1)
    return rng.choice([f"log({a})", f"log2({a})", f"exp({a})", f"round({a}, {b})", f"round({a})",
                       f"({a} + {b})", f"({a} * {b})", f"({a} / {b})", f"({a} - {b})",
                       f"({a} // {b})", f"({a} % {b})", f"({a} ** {b})", f"(+{a})", f"(-{a})",
                       f"({a} if {a} <= {b} else {b})", f"({a} if not {a} >= {b} or {a} != {b} and true else 0)",
                       f"[{a}, {b}, 3][{rng.choice(['0', '-1', '3', '1:', ':2', ':'])}]",
                       f"({a} if {a} in [{b}, 1] else {b})", f"({a} if {a} < {b} == false else {b})",
                       f"sum([v for v in [{a}, {b}, 3] if v > {b}])",
                       f"len([v for v in range(4) if {a}])",
                       # list repetition, a trailing comma, a list by a count that may be
                       # negative, a float or huge
                       f"len([{a},] * {rng.choice(['3', '0', '-2', '2.0', 'true', '99999999'])})",
                       f"sum({rng.choice(['2', '-1'])} * [{a}, {b}])",
                       # several `for` clauses, filtered or not, the later reading the earlier
                       f"sum([i * j for i in range(3) for j in [{a}, {b}]])",
                       f"len([j for i in range(4) if i > {a} for j in range(i) if j != {b}])",
                       f"len([k for i in range(2) for j in range(i + 1) for k in [{a}, j]])"])


def gen_expressions(rng: random.Random) -> str:
    """The numeric functions and filtered comprehensions at their domain edges, used as widths."""
    lets = [f"let x = {rng.choice(_EXPR_ATOMS[:-1])}"]
    lets += [f"let e{i} = {_expr(rng)}" for i in range(rng.choice([1, 2, 3]))]
    use = rng.choice(["conv2d(max(1, min(8, int(abs(e0)) % 8 + 1)), 1)", "relu",
                      'assert e0 == e0, "never"\n    relu'])
    return "network n() {\n    input [3, 8, 8]\n    " + "\n    ".join(lets) + f"\n    {use}\n}}\n"


def gen_long_names(rng: random.Random) -> str:
    """A misspelt name of up to 16 KB where a name, a layer, an argument or a parameter goes."""
    n = rng.choice([100, 1000, 4000, 16000])
    name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(n))
    where = rng.choice(["layer", "name", "arg", "function", "label", "init"])
    line = {"layer": name, "name": f"conv2d({name}, 3)", "arg": f"conv2d(4, 3, {name} = 1)",
            "function": f"conv2d({name}(2), 3)", "label": f"{name}: relu",
            "init": f"init {name}.weight = zeros\n    relu"}[where]
    return f"network n(width = 4) {{\n    input [3, 8, 8]\n    {line}\n}}\n"


def gen_many_errors(rng: random.Random) -> str:
    """Thousands of independent mistakes in one file."""
    n = rng.choice([60, 1000, 5000, 20000])
    bad = rng.choice(["bogus", "relu(1)", "conv2d(0, 3)", "linear(4)", "let x = 1 / 0",
                      "conv2d(widht, 3)"])
    return "network n() {\n    input [3, 8, 8]\n" + f"    {bad}\n" * n + "}\n"


_CONTROL = ["\x1b[2J", "\x1b]0;owned\x07", "\x07", "\x1b[31merror[E0000]: fake\x1b[0m", "\x08\x08\x08",
            "\x7f", "\x9b31m", "\x1b[1A\x1b[2K"]


def gen_control(rng: random.Random) -> str:
    """Control characters where a diagnostic will quote them: strings, labels, comments, names."""
    c = rng.choice(_CONTROL)
    line = rng.choice([f'"{c}": relu', f'assert false, "{c}"', f'import "{c}.net"',
                       f'conv2d(4, 3, mode = "{c}")', f'relu # {c}\n    bogus',
                       f'let s = "{c}"\n    s', f'"a{c}b{{1 / 0}}": relu'])
    return f"network n() {{\n    input [3, 8, 8]\n    {line}\n}}\n"


def _merge_option(rng: random.Random, op: str) -> str:
    """An option for merge ``op``: mostly its own (resize's `mode`, `align_corners`,
    crop's `offset`), sometimes another's or a wrong value."""
    return rng.choice({
        "resize": ['mode = "bilinear"', 'mode = "nearest"', 'mode = "bilinear", align_corners = true',
                   'mode = "bilinear", align_corners = false', "align_corners = true", "mode = 2"],
        "crop": ["offset = [0, 0]", "offset = [1, 0]", "offset = [0, 2]", "offset = 1",
                 "offset = [-1, 0]", "offset = [99, 0]"],
        **{e: ["by = 0.5", "by = 2", "by = -1", "by = 0.2", "by = 3", "by = 0", "by = 1e39", 'by = "x"']
           for e in ("add", "sub", "mul", "div")},
    }.get(op, []) + ["mode = \"nearest\"", "offset = [0, 0]", "by = 1", "bogus = 1"])


def _several_block(rng: random.Random, name: str, k: int, m: int) -> str:
    """A block of ``k`` tensor inputs and ``m`` results: the first input convolved, the
    others resized to it and concatenated; ``m`` of its results returned."""
    lines = [f"input a{i}" for i in range(k)] + ["from a0", f"c: conv2d({rng.choice([2, 4])}, 1) -> t"]
    if k > 1:
        lines += [f"resize(a{i}, t) -> u{i}" for i in range(1, k)]
        lines.append(f"concat(t, {', '.join(f'u{i}' for i in range(1, k))}) -> s")
    else:
        lines += ["from t", "relu -> s"]
    if m == 1:
        lines.append("from s")
    elif m == 2:
        lines.append(f"output tuple({rng.choice(['s, t', 't, s'])})")
    else:
        lines += ["from s", "conv2d(2, 1) -> v", "output tuple(s, v, t)"]
    return f"block {name}() {{\n    " + "\n    ".join(lines) + "\n}"


def _several_use(rng: random.Random, w, blocks: list, ref, names: list, unread: list,
                 before: list[str]) -> list[str]:
    """A use of a block of several tensors: `from a, b`, the block, `-> y, z`; now and
    then with one result or name too many (E0135, E0137) or several read as one (E0136)."""
    if not blocks or rng.random() < 0.3:
        k, m = rng.choice([1, 2, 2, 3]), rng.choice([1, 2, 2, 3])
        blocks.append((f"several{len(w.defs)}", k, m))
        w.defs.append(_several_block(rng, *blocks[-1]))
    name, k, m = rng.choice(blocks)
    wrong = rng.random()
    given = k + (wrong < 0.04)
    outs = m + (0.04 <= wrong < 0.08)
    # A `from` just before, that nothing read yet, gives the first of them.
    first = before.pop()[5:] if before and re.fullmatch(r"from \w+", before[-1]) else None
    refs = ([first] if first else []) + [ref() for _ in range(given - bool(first))]
    label = f"{w.label()}: " if rng.random() < 0.5 else ""
    if 0.08 <= wrong < 0.12:  # unnamed: one result goes on as the current one; several cannot
        return [f"from {', '.join(refs)}", f"{label}{name}()"]
    targets = [f"r{len(names) + i}" for i in range(outs)]
    names.extend(targets)
    unread.extend(targets)
    lines = [f"from {', '.join(refs)}", f"{label}{name}() -> {', '.join(targets)}"]
    if rng.random() < 0.5:  # go on from one of them, as the chain after it would
        unread.remove(targets[-1])
        lines += [f"from {targets[-1]}", f"conv2d(4, 1) -> r{len(names)}"]
        names.append(f"r{len(names)}")
        unread.append(names[-1])
    return lines


def gen_dataflow(rng: random.Random) -> str:
    """A network wired by name: chains named with `->`, read back by `from`, merged by
    `add`, `concat`, `matmul` and the rest, cut into named parts by `chunk`, maybe from several
    inputs and into a stated `output`; now and then
    a name misspelt, read early, given twice or never read."""
    w = _Writer(rng)
    c, h = rng.choice([2, 3, 4, 8]), rng.choice([4, 8, 16])
    lines, names, unread = [], [], []
    if rng.random() < 0.3:
        for k in range(rng.choice([1, 2, 3])):  # one named input, too: it may be read again
            lines.append(f"input in{k}: [{rng.choice([1, c])}, {h}, {h}]")
            names.append(f"in{k}")
        lines.append(f"from {names[0]}")
        # The first input is read by `from`; now and then by name later on as well.
        unread.extend(names[1:] if rng.random() < 0.5 else names)
    else:
        lines.append(f"input [{c}, {h}, {h}]")

    def ref() -> str:
        r = rng.random()
        if r < 0.04 or not names:
            return rng.choice(["nowhere", "r" + str(len(names) + 1), "x"])  # unknown or early
        name = rng.choice(unread if unread and r < 0.75 else names)
        if name in unread:
            unread.remove(name)
        return name

    blocks: list[tuple[str, int, int]] = []
    for _ in range(rng.choice([1, 2, 3, 4, 5])):
        r = rng.random()
        if r > 0.85 and names:
            lines.extend(_several_use(rng, w, blocks, ref, names, unread, lines))
            continue
        if r < 0.15 and names:
            lines.append(f"from {ref()}")  # then a layer: a `from` before a merge reads nothing
            r = 0.0
        if r < 0.45:
            step = rng.choice(["conv2d(4, 1)", "conv2d(4, 3, padding = 1)", "maxpool2d(2)",
                               "conv2d(4, 3, stride = 2, padding = 1)", "upsample(scale_factor = 2)",
                               "relu", "conv_transpose2d(4, 2, stride = 2)", "batchnorm2d",
                               "channel_shuffle(2)", "adaptive_avgpool2d(1)"] + [layer_call(rng)])
            if rng.random() < 0.3:
                step = f"{w.label()}: {{ {step}; {'; '.join(w.chain(2, 1))} }}"
        elif r < 0.75:
            op = rng.choice(["add", "concat", "mul", "sub", "div", "resize", "crop", "matmul"])
            # (square maps: `matmul` of two of them fits where their channels do)
            two = op in ("sub", "div", "resize", "crop", "matmul") and rng.random() < 0.8
            refs = [ref() for _ in range(2 if two else rng.choice([1, 2, 2, 3]))]
            if op == "crop" and len(names) >= 2 and rng.random() < 0.5:
                # The earliest result and the latest: a window that a stride or a pool made smaller.
                refs = [names[0], names[-1]]
                unread[:] = [n for n in unread if n not in refs]
            if op in ("add", "sub", "mul", "div") and rng.random() < 0.25:
                refs = refs[:1] + [_merge_option(rng, op)]  # one result and a constant: `mul(x, by = 0.2)`
            elif rng.random() < (0.5 if op == "crop" else 0.3):
                refs += [_merge_option(rng, op)]
            comma = "," if rng.random() < 0.3 else ""
            step = f"{op}({', '.join(refs)}{comma})"
        elif r < 0.8 and names:
            # `chunk(x) -> a, b`: parts named at once, mostly two (channels 2, 4 or 8 divide),
            # now and then three, a dimension, or too few names (E0137).
            source = ref()
            dim = rng.choice(["", "", "", ", dim = 1", ", dim = -1", ", dim = 3"])
            parts = [f"r{len(names) + k}" for k in range(rng.choice([2, 2, 2, 3, 4, 1, 0]))]
            lines.append(f"chunk({source}{dim})" + (f" -> {', '.join(parts)}" if parts else ""))
            names.extend(parts)
            unread.extend(parts)
            continue
        else:
            step = "split { {}; { " + "; ".join(w.chain(2)) + " } }"
        name = f"r{len(names)}" if rng.random() < 0.95 or not names else names[-1]
        lines.append(f"{step} -> {name}")
        names.append(name)
        unread.append(name)
    if names and (rng.random() < 0.5 or len(unread) > 1):
        form = rng.choice(["tuple", "namedtuple", "dict", "dict", "list"] if rng.random() < 0.1 else
                          ["tuple", "namedtuple", "dict"])
        picked = list(dict.fromkeys(unread if rng.random() < 0.9 else
                                    [rng.choice(names) for _ in range(rng.choice([1, 2, 3]))]))
        entries = [f'"{n}": {n}' if form == "dict" else n for n in picked]
        lines.append(f"output {form}({', '.join(entries)})")
    elif names and rng.random() < 0.8:
        lines.append(f"from {unread[0] if unread else names[-1]}")
    text = "network n() {\n    " + "\n    ".join(lines) + "\n}\n"
    return "\n".join(w.defs + [text])


# ---------------------------------------------------------------- grammar, extremes, reuse


@functools.cache
def _grammar() -> tuple[dict, dict]:
    """The grammar's rules by origin, and each origin's cost: the fewest symbols a
    derivation of it can end in (a fixed point over the rules)."""
    from netdsl.syntax.parser import _lark

    by_origin: dict[str, list] = {}
    for rule in _lark().rules:
        by_origin.setdefault(rule.origin.name, []).append(rule)
    cost = {name: float("inf") for name in by_origin}
    changed = True
    while changed:
        changed = False
        for name, rules in by_origin.items():
            best = min(sum(1 if s.is_term else cost[s.name] for s in r.expansion) for r in rules)
            best = max(best, 1)
            if best < cost[name]:
                cost[name], changed = best, True
    return by_origin, cost


_GRAMMAR_NAMES = ["x", "c", "n", "conv2d", "relu", "linear", "flatten", "range", "len", "a", "b",
                  "unit", "stem", "weight", "out", "batchnorm2d", "maxpool2d", "zeros", "in0", "depth"]
_GRAMMAR_NUMBERS = ["0", "1", "2", "3", "4", "8", "16", "0.5", "1e-3", ".5", "1.", "3e38", "1e39",
                    "99999999999999999999"]
_GRAMMAR_STRINGS = ['"x"', '""', '"a{1}"', '"resnet.net"', '"n.net"', '"\\t"', '"{x}"']


def derive(rng: random.Random, origin: str = "start", budget: int = 120) -> str:
    """A random sentence of the grammar from ``origin``: every expansion (alternative)
    of every rule can be chosen; once ``budget`` symbols are spent, the cheapest
    expansion of each rule closes the sentence. Almost all of them parse, and the
    checker then finds whatever is wrong with their meaning.

    >>> from netdsl.syntax.parser import parse
    >>> parse(derive(random.Random(0))) is not None
    True
    """
    from netdsl.syntax.parser import _lark

    by_origin, cost = _grammar()
    terminals = {t.name: t for t in _lark().terminals}
    out: list[str] = []
    open_: dict[str, int] = {}

    def term(name: str) -> str:
        if name == "NAME":
            return rng.choice(_GRAMMAR_NAMES)
        if name == "NUMBER":
            return rng.choice(_GRAMMAR_NUMBERS)
        if name == "STRING":
            return rng.choice(_GRAMMAR_STRINGS)
        if name == "_NL":
            return "\n"
        return terminals[name].pattern.value

    def go(symbol, left: list[int], closing: bool = False) -> None:
        if symbol.is_term:
            out.append(term(symbol.name))
            return
        name = symbol.name
        if name == "expr" and not open_.get("expr"):
            left = [rng.choice([1, 4, 12, 24])]  # each expression grows by a budget of its own
        rules = by_origin[name]
        costs = [sum(1 if s.is_term else cost[s.name] for s in r.expansion) for r in rules]
        cheapest = min(costs)
        # Out of budget, or a rule already open twice on the way here (`not not`, a list in a
        # call in a list): close this part by its cheapest derivation.
        closing = closing or left[0] <= 0 or open_.get(name, 0) >= 2
        if closing:
            rules = [r for r, c in zip(rules, costs, strict=True) if c == cheapest]
        elif cheapest < max(costs) and rng.random() < 0.6:
            rules = [r for r, c in zip(rules, costs, strict=True) if c > cheapest]  # grow while budget lasts
        rule = rng.choice(rules)
        left[0] -= len(rule.expansion) > 1  # the precedence ladder's one-symbol steps are free
        open_[name] = open_.get(name, 0) + 1
        for s in rule.expansion:
            go(s, left, closing)
        open_[name] -= 1

    from lark.grammar import NonTerminal

    go(NonTerminal(origin), [budget])
    return " ".join(out)


def gen_grammar(rng: random.Random) -> str:
    """A sentence derived from the grammar itself (:func:`derive`): every rule and every
    alternative, in combinations no hand-written generator thinks of."""
    return derive(rng, budget=rng.choice([30, 60, 120, 240]))


# Values at and past what an argument can hold: the int64 and float32 limits, the
# smallest float32 and float64 subnormals, negative zero, and absurd sizes.
EXTREME_INTS = ["0", "-1", "1", "2147483647", "2147483648", "9223372036854775807",
                "9223372036854775808", "10 ** 30", "-9223372036854775809"]
EXTREME_FLOATS = ["0.0", "-0.0", "3.4028234663852886e38", "3.4028235e38", "3.5e38", "-3.5e38",
                  "1e39", "1e300", "-1e300", "1e-45", "1e-46", "1e-320", "1e-38", "1.1754943508222875e-38"]


def extreme_value(rng: random.Random, kind: str, arg: str) -> str:
    """An expression for ``arg`` of ``kind`` at an edge of what its type can hold."""
    t, choices = arg_type(kind, arg)
    if t == "float":
        return rng.choice(EXTREME_FLOATS + EXTREME_INTS[:3])
    if t == "int":
        return rng.choice(EXTREME_INTS)
    if t == "pair":
        a, b = rng.choice(EXTREME_INTS), rng.choice(EXTREME_INTS + ["1"])
        return rng.choice([a, f"[{a}, {b}]", f"[{b}, {a}]"])
    if t == "dims":
        return rng.choice(["[]", "[0, 1, 2, 3]", "[2147483648, 0, 1]", "[-1, 0, 1]", "[2, 1, 0]"])
    if t == "bool":
        return rng.choice(["true", "false", "1", "0", "none"])
    return rng.choice(['""', '"' + "x" * 300 + '"', "1e39"] + [f'"{c}"' for c in choices])


def gen_extremes(rng: random.Random) -> str:
    """One layer with its arguments named, some or all of them at an extreme, called
    as a module or applied as a function, on a small input."""
    kind = rng.choice(sorted(LAYERS))
    sig = LAYERS[kind]
    parts = []
    for a in sig.args:
        if rng.random() < 0.6:
            parts.append(f"{a.name} = {extreme_value(rng, kind, a.name)}")
        elif a.default is REQUIRED or rng.random() < 0.3:
            parts.append(f"{a.name} = {arg_value(rng, kind, a.name)}")
    call = f"{kind}({', '.join(parts)})"
    if rng.random() < 0.2:
        call = f"apply {call}"
    shape = "[4]" if takes_features(kind) and rng.random() < 0.5 else _input(rng)
    return f"network n() {{\n    input {shape}\n    {call}\n}}\n"


# Layers that change the shape between a labelled layer and its `reuse`.
_RESHAPERS = ["conv2d(6, 1)", "conv2d(2, 3, padding = 1)", "maxpool2d(2)", "upsample(scale_factor = 2)",
              "flatten", "avgpool2d(2)", "adaptive_avgpool2d(1)", "pad([1, 1, 1, 1])", "relu",
              "permute([0, 2, 1])", "linear(6)"]


def gen_reuse(rng: random.Random) -> str:
    """A labelled layer of any kind called again by ``reuse``: at the same shape, after a
    layer that changes channels, size or rank, inside a block or a combinator, or twice."""
    kind = rng.choice(sorted(LAYERS))
    flat = takes_features(kind) and rng.random() < 0.4
    shape = f"[{rng.choice([4, 6, 8])}]" if flat else _input(rng)
    lines = [f"input {shape}", f"a: {layer_call(rng, kind, flat=flat)}"]
    for _ in range(rng.choice([1, 1, 2])):
        between = rng.choice(_RESHAPERS + [""])
        if between:
            lines.append(between)
        lines.append(rng.choice(["reuse a", "reuse a", "reuse a", '{ reuse a }', "residual { reuse a }",
                                 "concat { { reuse a }; { } }", "reuse a * 2", 'reuse "a"', "apply a"]))
    return "network n() {\n    " + "\n    ".join(lines) + "\n}\n"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def gen_tensor(rng: random.Random) -> str:
    """Tensor layers on a shape the generator follows: reductions, flatten and unflatten,
    narrowing, 1-D convolutions, softmax, and the layers whose arguments must fit the
    shape (groups, pixel shuffle), so that most specs compile and the contract runs on
    them; now and then one value is off by one, at an edge the checker must find."""
    shape = [rng.choice([1, 2, 4, 6, 8]), rng.choice([1, 2, 3, 4, 6]), rng.choice([1, 2, 3, 5])]
    if rng.random() < 0.2:
        shape = shape[:2]  # a sequence [C, L]
    first = list(shape)
    lines: list[str] = []

    def off(v: int) -> int:
        return v + rng.choice([-1, 1]) if rng.random() < 0.08 else v

    def dim(d: int, rank: int) -> int:
        return d - rank if rng.random() < 0.3 else d

    for _ in range(rng.choice([1, 2, 3, 4, 5, 6])):
        r = len(shape)
        ops = ["sum", "mean", "amax", "flatten", "unflatten", "narrow", "softmax", "conv1d"]
        if r == 3:
            ops += ["group_norm", "pixel_shuffle", "gate"]
        op = rng.choice(ops)
        apply = "apply " if rng.random() < 0.4 else ""
        if op in ("sum", "mean", "amax"):
            dims = rng.sample(range(r), rng.randint(1, r))
            keep = rng.random() < 0.4 or (len(dims) == r and rng.random() < 0.9)
            written = [dim(d, r) for d in dims]
            arg = written[0] if len(written) == 1 and rng.random() < 0.5 else written
            if rng.random() < 0.04:
                arg = written + written[:1]  # a dimension twice
            lines.append(f"{apply}{op}(dim = {arg}{', keepdim = true' if keep else ''})")
            if keep:
                shape = [1 if i in dims else n for i, n in enumerate(shape)]
            else:
                shape = [n for i, n in enumerate(shape) if i not in dims] or shape
        elif op == "flatten":
            a, b = sorted(rng.sample(range(r), 2)) if r > 1 else (0, 0)
            if rng.random() < 0.2:
                lines.append(f"{apply}flatten")
                a, b = 0, r - 1
            else:
                lines.append(f"{apply}flatten({dim(b, r)}, {dim(a, r)})" if rng.random() < 0.05
                             else f"{apply}flatten({dim(a, r)}, {dim(b, r)})")
            shape = shape[:a] + [math.prod(shape[a:b + 1])] + shape[b + 1:]
        elif op == "unflatten":
            d = rng.randrange(r)
            f = rng.choice(_divisors(shape[d]))
            sizes = rng.choice([[f, -1], [-1, f], [f, shape[d] // f], [1, -1, 1]])
            sizes = [off(x) if x > 0 else x for x in sizes]
            lines.append(f"{apply}unflatten({dim(d, r)}, {sizes})")
            known = math.prod(x for x in sizes if x != -1)
            shape = shape[:d] + [shape[d] // max(known, 1) if x == -1 else x for x in sizes] + shape[d + 1:]
        elif op == "narrow":
            d = rng.randrange(r)
            start = rng.randrange(shape[d])
            length = off(rng.randint(1, shape[d] - start))
            lines.append(f"{apply}narrow({dim(d, r)}, {start}, {length})")
            shape = shape[:d] + [length] + shape[d + 1:]
        elif op == "softmax":
            lines.append(f"{apply}softmax(dim = {dim(rng.randrange(r), r)})")
        elif op == "conv1d":
            if r == 1:
                lines.append("apply unflatten(0, [1, -1])")
                shape = [1, shape[0]]
            elif r > 2:
                lines.append("apply flatten(1)")
                shape = [shape[0], math.prod(shape[1:])]
            c, length = shape
            out = rng.choice([1, 2, 4]) * rng.choice(_divisors(c))
            k = off(rng.randint(1, length + 2))
            pad = rng.randint(0, 1) if k <= length else max(0, (k - length + 1) // 2)
            groups = rng.choice([g for g in _divisors(c) if out % g == 0])
            lines.append(f"conv1d({out}, {k}, padding = {pad}, groups = {groups}, "
                         f"bias = {rng.choice(['true', 'false'])})")
            shape = [out, length + 2 * pad - k + 1]
        elif op == "group_norm":
            lines.append(f"group_norm({off(rng.choice(_divisors(shape[0])))})")
        elif op == "pixel_shuffle":
            q = rng.choice([q for q in (1, 2) if shape[0] % (q * q) == 0])
            lines.append(f"pixel_shuffle({off(q)})")
            shape = [shape[0] // (q * q), shape[1] * q, shape[2] * q]
        else:  # a gate of the map's channel means, broadcast over its height and width
            lines.append("gate { apply mean(dim = [1, 2], keepdim = true); sigmoid }")
        if min(shape) < 1:
            break
    return f"network n() {{\n    input {first}\n    " + "\n    ".join(lines) + "\n}\n"


# The modules the fuzzer grants its `extern` declarations: torch's own, which run no
# code but torch's. Every other module a generated spec names must stay refused (E0121).
GRANT = ("torch.nn",)

# torch.nn classes an extern may name, with a call fitting an input of c channels (its
# arguments wrong now and then: the checker must say so, never build a wrong model).
_EXTERNS = {
    "torch.nn.Conv2d": lambda rng, c: (f"({rng.choice([c, c, c, c + 1])}, {rng.choice([2, 4, 8])}, "
                                       f"{rng.choice([1, 3])}"
                                       f"{rng.choice(['', ', padding = 1', ', stride = 2', ', bias = false'])})"),
    "torch.nn.GELU": lambda rng, c: rng.choice(["", "()", '(approximate = "tanh")', '(approximate = "x")']),
    "torch.nn.AvgPool2d": lambda rng, c: f"({rng.choice([1, 2, 3, 99])})",
    "torch.nn.GroupNorm": lambda rng, c: f"({rng.choice([1, c, c + 1])}, {c})",
    "torch.nn.Identity": lambda rng, c: rng.choice(["", "()", "(1, 2, a = [3])"]),
    "torch.nn.Hardtanh": lambda rng, c: rng.choice(["(min_val = -1.5, max_val = 2)", "(-1, 1, true)"]),
    "torch.nn.BatchNorm2d": lambda rng, c: f"({c}{rng.choice(['', ', affine = false', ', eps = 1e-3'])})",
    "torch.nn.Dropout": lambda rng, c: rng.choice(["(0.5)", "(p = 0.1)", "(p = 2)"]),
}
# Paths the grant does not cover, or that name nothing: refused, never imported.
_NOT_GRANTED = ["fuzzlab.layers.Thing", "torch.nnx.Conv2d", "os.system", "torch.Tensor", "torch.nn.Nope",
                "torch.nn.functional.relu", "torch.nn.Module", "a/b.c", "nodots", "torch.nn.Conv2d.x"]


def gen_extern(rng: random.Random) -> str:
    """Externs of torch.nn on a [C, H, W] input the generator follows, with netdsl's own
    layers between them; now and then one the grant does not cover or a misuse."""
    paths = rng.sample(sorted(_EXTERNS), rng.choice([1, 2, 3]))
    names = {p: p.rsplit(".", 1)[1].lower() + "_x" for p in paths}
    decls = [f'extern {names[p]} = "{p}"' for p in paths]
    if rng.random() < 0.2:
        bad = rng.choice(_NOT_GRANTED)
        decls.append(f'extern other = "{bad}"')
        names[bad] = "other"
    c = rng.choice([1, 2, 4, 8])
    size = rng.choice([4, 8, 9, 16])
    lines, label = [f"input [{c}, {size}, {size}]"], 0
    for _ in range(rng.choice([1, 2, 3, 5])):
        path = rng.choice(list(names))
        call = names[path] + (_EXTERNS[path](rng, c) if path in _EXTERNS else "()")
        if path == "torch.nn.Conv2d":
            c = int(call.split("(")[1].split(",")[1])
        r = rng.random()
        if r < 0.3:
            label += 1
            lines.append(f"e{label}: {call}")
            if rng.random() < 0.4:
                lines.append(rng.choice([f"reuse e{label}", "relu(inplace = true)", "maxpool2d(2)", f"reuse e{label}"]))
        elif r < 0.45 and path != "torch.nn.Conv2d":
            lines.append(f"residual {{ {call} }}")
        elif r < 0.55:
            lines.append(f"blk({names[path]})" if "(" not in call[len(names[path]):] or
                         call.endswith("()") else call)
        elif r < 0.6:
            lines.append(f"{names[path]}(device = \"cpu\")" if rng.random() < 0.5 else f"{names[path]}(x = relu)")
        else:
            lines.append(call)
        if rng.random() < 0.3:
            c = rng.choice([2, 4])
            lines.append(f"conv2d({c}, 3, padding = 1)")
    if rng.random() < 0.5:
        lines += ["adaptive_avgpool2d(1)", "flatten", "linear(3)"]
    block = "block blk(unit) {\n    unit\n    relu\n}\n"
    return "\n".join(decls) + "\n\n" + block + "\nnetwork n() {\n    " + "\n    ".join(lines) + "\n}\n"


GENERATORS = {"layers": gen_layers, "labels": gen_labels, "init": gen_init,
              "sharing": gen_sharing, "expressions": gen_expressions,
              "long_names": gen_long_names, "many_errors": gen_many_errors, "control": gen_control,
              "dataflow": gen_dataflow, "grammar": gen_grammar, "extremes": gen_extremes,
              "reuse": gen_reuse, "tensor": gen_tensor, "extern": gen_extern}
WEIGHTS = {"layers": 14, "labels": 3, "init": 3, "sharing": 5, "expressions": 3, "long_names": 1,
           "many_errors": 1, "control": 2, "dataflow": 5, "grammar": 4, "extremes": 5, "reuse": 5,
           "tensor": 5, "extern": 3}


def generate(rng: random.Random) -> tuple[str, str]:
    """(strategy, spec text) of one generated spec."""
    name = rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
    return name, GENERATORS[name](rng)
