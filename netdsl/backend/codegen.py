"""Python source for a checked network: the spec as plain PyTorch, without netdsl.

The checked IR gives the structure (what a forward does, where each statement
came from); the model built from it on the meta device gives each submodule's
name, class name and constructor arguments, so what the file builds is what
``netdsl build`` builds, ``state_dict`` keys included. One class per block;
instances of a block that differ only in numbers share it, and those numbers
become its ``__init__`` parameters. Forms of a block that differ only in modules
some lack (a ``shortcut NAME if``, a labelled module under ``if``) share it too,
as torchvision's ``Bottleneck`` with its ``downsample``: a flag makes each such
module or leaves it None, and the forward calls it where it is not None. Which
instances share a class is decided by :mod:`netdsl.backend.forms`, which lowering
follows too, so a built model's classes are the file's. A
parameter that is the block's input channels is ``in_channels``, whatever torch
calls it where it is used first. A forward reads as written by hand: ``reuse``
calls the same attribute again, ``apply`` is the torch function (``F.relu``),
named results are local variables of those names, ``output`` a tuple, named
tuple or dict, several inputs ``forward(self, rgb, depth)``.

No spec string reaches the output as code: labels are written with ``repr``
where they are not plain identifiers, class names are reduced to ASCII
identifiers, and comments, paths and values in comments are escaped.
"""

from __future__ import annotations

import inspect
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import ir
from ..ir.walk import bodies
from ..layers import KINDS
from ..layers.extern import Extern, python_value
from .forms import Form, Forms
from .forms import modules_in_order as _modules_in_order
from .forward import is_container
from .forward import write as write_forward
from .source import HELPER_NEEDS, HELPERS, TAKEN, class_name, comment, compact, is_attribute, literal

_NO_DEFAULT = inspect.Parameter.empty
# A hole's value in an instance that lacks the module of that hole (an optional one).
_ABSENT = object()



# -- fragments of code with holes for the numbers that vary between instances

@dataclass(eq=False)
class Hole:
    """A value in a constructor call; ``hint`` names a parameter made from it."""

    value: Any
    hint: str
    default: Any = _NO_DEFAULT
    label: str = ""


@dataclass(eq=False)
class Call:
    """``func(args)``: each arg is (keyword or None, Hole or expression)."""

    func: str
    args: list


@dataclass(eq=False)
class Seq:
    """An ``nn.Sequential`` of items (comments, name, expression)."""

    items: list


@dataclass(eq=False)
class ClassRef:
    """An instance of a generated class."""

    inst: Instance


@dataclass(eq=False)
class Instance:
    """One module that becomes an instance of a generated class."""

    base: str
    name: str
    comments: tuple[str, ...]
    items: list  # (comments, name, expression) in registration order
    forward: tuple[str, ...] | None
    outputs: tuple[str, ...] = ()
    key: tuple = ()  # its class's (where its form shares another form's class, that one's)
    form: Form | None = None  # what decides its class (netdsl.backend.forms); None for the network
    cls: Class | None = None  # set by _Generator.register
    param_values: list = field(default_factory=list)
    init: tuple[str, ...] = ()  # lines after the modules in __init__ (the network's `init` rules)
    scope: ir.Scope | None = None  # the block instance or labelled group it is made from

    @property
    def of(self) -> Class:
        """Its class, once registered."""
        assert self.cls is not None, "an instance is registered before its class is read"
        return self.cls


@dataclass(eq=False)
class Class:
    key: tuple
    instances: list  # the template first: the instance with every module of the others
    name: str = ""
    params: list = field(default_factory=list)  # parameter names
    defaults: dict = field(default_factory=dict)  # parameter name -> default value
    codes: list = field(default_factory=list)  # per hole: code text, or None to leave out
    resolved: bool = False
    # Modules some instances lack (their label -> the flag parameter that makes them),
    # and the forward that calls each only where it is not None.
    optional: dict = field(default_factory=dict)
    forward: tuple[str, ...] | None = None

    @property
    def template(self) -> Instance:
        return self.instances[0]


def _lines(text: str) -> tuple[str, ...]:
    """A forward's lines, its ``def`` first."""
    return tuple(text.rstrip("\n").split("\n"))


def _names(inst: Instance) -> frozenset[str]:
    """The names of an instance's own modules."""
    return frozenset(n for _, n, _ in inst.items)


# -- spec comments, recovered from the source text by line

def _text(line: str) -> str:
    """A comment line's text: after the ``#`` and one space, its own indentation kept."""
    text = line.lstrip(" \t")[1:]
    return (text.removeprefix(" ")).rstrip(" \t\r")


def _trim(lines: list[str]) -> tuple[str, ...]:
    """Comment lines without empty ones at either end (an empty ``#`` alone is lint)."""
    lines = list(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(lines)


class _Comments:
    """Comments of spec files, looked up by the span of a statement."""

    def __init__(self, texts: dict[str | None, str]):
        self.texts = texts
        self.lines: dict[str | None, list[str] | None] = {}

    def _file(self, file) -> list[str] | None:
        if file not in self.lines:
            text = self.texts.get(file)
            if text is None and file is not None:
                try:
                    text = Path(file).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    text = None
            # By "\n" only, as the parser counts lines (splitlines also breaks at \x0c, \u2028...).
            self.lines[file] = None if text is None else text.split("\n")
        return self.lines[file]

    def above(self, file, line: int) -> list[str]:
        """The comment lines right above ``line`` (1-based), no blank line between."""
        lines = self._file(file)
        if not lines or line < 1 or line > len(lines):
            return []
        out = []
        i = line - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            out.append(_text(lines[i]))
            i -= 1
        return out[::-1]

    def trailing(self, file, line: int) -> list[str]:
        lines = self._file(file)
        if not lines or line < 1 or line > len(lines):
            return []
        text = lines[line - 1]
        in_str = esc = False
        for i, c in enumerate(text):
            if in_str:
                esc = c == "\\" and not esc
                if c == '"' and not esc:
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "#":
                return [_text(text[i:])] if text[:i].strip() else []
        return []

    def of(self, span) -> tuple[str, ...]:
        if span is None:
            return ()
        return _trim(self.above(span.file, span.line) + self.trailing(span.file, span.line))

    def of_def(self, file, keyword_: str, name: str) -> tuple[str, ...]:
        """The comment above ``block NAME`` or ``network NAME`` in ``file``."""
        lines = self._file(file)
        if not lines:
            return ()
        pattern = re.compile(rf"\s*{keyword_}\s+{re.escape(name)}\b")
        for i, text in enumerate(lines):
            if pattern.match(text):
                return _trim(self.above(file, i + 1))
        return ()

    def header(self, file) -> list[str]:
        """The comment block a spec file starts with."""
        lines = self._file(file) or []
        out = []
        for text in lines:
            if not text.strip().startswith("#"):
                break
            out.append(_text(text))
        return list(_trim(out))


# -- leaf modules: constructor calls read off the built module

def _torch_name(t: type) -> str:
    from torch import nn

    from . import runtime as modules

    if t.__module__ == modules.__name__ and t.__name__ in HELPERS:
        return t.__name__
    if t.__module__.startswith("torch.nn") and getattr(nn, t.__name__, None) is t:
        return f"nn.{t.__name__}"
    raise NotImplementedError(f"netdsl cannot write Python source for a {t.__module__}.{t.__name__} "
                              "module yet")


def _leaf_call(m, label: str) -> Call:
    """``nn.Conv2d(3, 64, 7, stride=2, ...)`` for a built leaf module: each constructor
    parameter read back from the module's attribute of that name, checked by making
    the module again from those values. A square pair is written as one int where
    the module made from it prints the same."""
    t = type(m)
    raw = []
    for p in inspect.signature(t).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("device", "dtype"):
            continue
        if p.name == "bias" and not isinstance(getattr(m, "bias", None), bool):
            v = m.bias is not None
        elif hasattr(m, p.name):
            v = getattr(m, p.name)
        elif p.default is not _NO_DEFAULT:
            v = p.default
        else:
            raise NotImplementedError(f"cannot read argument {p.name!r} of {t.__name__} back")
        raw.append((p, v))
    # A square pair as one int where that makes the same module (a pool's kernel), else as
    # read (a layer norm's normalized_shape (9, 9) is no 9).
    for shown in (compact, lambda v: v):
        args = [(None if p.default is _NO_DEFAULT and p.kind != p.KEYWORD_ONLY else p.name,
                 Hole(shown(v), p.name, p.default, label)) for p, v in raw]
        if _remakes(m, t, args):
            return Call(_torch_name(t), args)
    raise AssertionError(f"netdsl bug: cannot read the constructor arguments of {m!r} back")


def _remakes(m, t, args) -> bool:
    pos = [h.value for kw, h in args if kw is None]
    kw = {k: h.value for k, h in args if k is not None}
    if "device" in inspect.signature(t).parameters:
        kw["device"] = "meta"
    again = t(*pos, **kw)

    def settings(module):
        # A pair given as one int is stored as the int by some modules (pools), as a
        # tuple by others (convolutions); both compute the same.
        return {k: compact(v) for k, v in vars(module).items() if not k.startswith("_")}

    return settings(again) == settings(m) and type(again).extra_repr is type(m).extra_repr and \
        [(k, tuple(v.shape)) for k, v in again.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in m.state_dict().items()]


# -- the walk over the IR and the built modules



def _combinator_spans(nodes, first: dict) -> None:
    """Map each module to the combinators it is the first module of (for their comments)."""
    for n in nodes:
        if not isinstance(n, (ir.Layer, ir.Scope)):
            mods = list(_modules_in_order([n]))
            if mods:
                first.setdefault(id(mods[0]), []).append(n.span)
            for body in bodies(n):
                _combinator_spans(body, first)


class _Generator:
    def __init__(self, comments: _Comments):
        self.comments = comments
        # Which instances share a class: the decision a built model follows too.
        self.forms = Forms()
        self.classes: dict[int, Class] = {}  # id of a forms.FormClass -> the class written for it
        self.instances: dict[int, Instance] = {}  # id of a forms.Form -> its instance
        self.order: list[Class] = []
        self.sides: list[str] = []
        self.uses_torch = False
        self.uses_f = False
        self.externs: set[str] = set()  # the modules of extern classes, imported by the file

    def items(self, nodes, owner) -> list:
        """(comments, name, expression) of each module of a body, comments given once."""
        first: dict = {}
        _combinator_spans(nodes, first)
        seen: set = set()
        out = []
        for n in _modules_in_order(nodes):
            spans = first.get(id(n), []) + [n.span]
            notes: list[str] = []
            for s in spans:
                where = None if s is None else (s.file, s.line)
                if where is not None and where not in seen:
                    seen.add(where)
                    notes.extend(self.comments.of(s))
            if isinstance(n, ir.Layer) and KINDS[n.kind].bare_parameter:
                # A parameter of the module itself (ConvNeXt's layer_scale), filled as built.
                self.uses_torch = True
                fill = KINDS[n.kind].torch(n).kwargs
                made = Call("torch.full", [(None, Hole(tuple(fill["shape"]), "shape", _NO_DEFAULT, n.name)),
                                           (None, Hole(float(fill["value"]), n.kind, _NO_DEFAULT, n.name))])
                out.append((tuple(notes), n.name, Call("nn.Parameter", [(None, made)])))
                continue
            out.append((tuple(notes), n.name, self.expr(n, owner.get_submodule(n.name))))
        return out

    def expr(self, node, m):
        from torch import nn

        if isinstance(node, Extern):
            # A granted class: made as the spec makes it, from its module (`import timm.layers`).
            self.externs.add(node.target.rsplit(".", 1)[0])
            return Call(node.target, [(k, Hole(python_value(v), k, _NO_DEFAULT, node.name))
                                      for k, v in node.kwargs])
        if isinstance(node, ir.Layer):
            call = _leaf_call(m, node.name)
            if call.func == "StochasticDepth":
                self.uses_torch = True
            return call
        if type(m) is nn.Sequential:
            return Seq(self.items(node.body, m))
        pure = isinstance(m, nn.Sequential)
        name = type(m).__name__ if node.cls is not None else node.name
        notes: tuple[str, ...] = ()
        if node.block is not None:
            files = [n.span.file for n in _modules_in_order(node.body) if n.span is not None]
            notes = self.comments.of_def(files[0] if files else None, "block", node.block)
        items = self.items(node.body, m)
        fwd = None if pure or is_container(node) else self.write(node.body, scope=node)
        inst = Instance("nn.Sequential" if pure else "nn.Module", class_name(name), notes, items,
                        None if fwd is None else _lines(fwd.text()), scope=node)
        # Registered once its modules are, as lowering registers the built model's.
        inst.form = self.forms.register(node, m, None if fwd is None else fwd.text())
        return ClassRef(self.register(inst))

    def forward(self, nodes, net: ir.Network | None = None, scope: ir.Scope | None = None,
                optional: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """The lines of ``forward``, its ``def`` first: what the built model runs
        (:mod:`netdsl.backend.forward`), each module in ``optional`` called only where
        it is not None. ``{outputs}`` stands for the name of the network's output type."""
        return _lines(self.write(nodes, net, scope, optional).text())

    def write(self, nodes, net: ir.Network | None = None, scope: ir.Scope | None = None,
              optional: frozenset[str] = frozenset()):
        fwd = write_forward(nodes, net, scope, optional)
        self.uses_torch |= fwd.uses_torch
        self.uses_f |= fwd.uses_f
        return fwd

    def register(self, inst: Instance) -> Instance:
        """Give ``inst`` its class: the network a class of its own, a block instance or
        group the class its form has (:class:`netdsl.backend.forms.Forms`), with that
        class's instances in the order it keeps them, the template first."""
        if inst.form is None:
            cls = Class((inst.base, inst.name, inst.comments, inst.forward), [inst])
        else:
            of = inst.form.of
            if id(of) not in self.classes:
                self.classes[id(of)] = Class(of.key, [])
            cls = self.classes[id(of)]
            self.instances[id(inst.form)] = inst
            cls.instances = [self.instances[id(f)] for f in of.forms]
            if of.optional and tuple(cls.optional) != of.optional:
                assert of.forward is not None
                cls.optional = dict.fromkeys(of.optional)
                cls.forward = _lines(of.forward)
        inst.key = cls.key  # what the instances' owners' keys hold: one class, one key
        inst.cls = cls
        return inst

    # -- from instances to classes with parameters
    def holes(self, items):
        """The holes of a class body in order, those of generated classes' calls included."""
        for _, name, e in items:
            yield from self._holes(e, name)

    def _holes(self, e, label):
        if isinstance(e, Hole):
            yield e
        elif isinstance(e, Call):
            for _, a in e.args:
                yield from self._holes(a, label)
        elif isinstance(e, Seq):
            yield from self.holes(e.items)
        elif isinstance(e, ClassRef):
            self.resolve(e.inst.of)
            for pname, v in zip(e.inst.of.params, e.inst.param_values, strict=True):
                yield Hole(v, pname, e.inst.of.defaults.get(pname, _NO_DEFAULT), label)

    def aligned_holes(self, cls: Class, inst: Instance):
        """An instance's holes in the order of its class's template: where it lacks one
        of the template's modules, that module's holes are _ABSENT."""
        own = {name: e for _, name, e in inst.items}
        for _, name, e in cls.template.items:
            if name in own:
                yield from self._holes(own[name], name)
            else:
                for h in self._holes(e, name):
                    yield Hole(_ABSENT, h.hint, h.default, h.label)

    def resolve(self, cls: Class) -> None:
        if cls.resolved:
            return
        per_instance = [list(self.aligned_holes(cls, i)) for i in cls.instances]
        # The block's input channels where each instance has them: a parameter that is
        # them is named so (`in_channels`, not a batch norm's `num_features`).
        inputs = [i.scope.in_shape[0] if i.scope is not None and i.scope.in_shape else _ABSENT
                  for i in cls.instances]
        vectors: list[tuple[list, str]] = []  # each parameter's value per instance (_ABSENT: any)
        used: set = {"self"}
        codes: dict[int, str | None] = {}
        columns = [[holes[pos].value for holes in per_instance] for pos in range(len(per_instance[0]))]
        # The values every instance has first, so that they name the parameters; then
        # those of the modules only some instances make.
        for pos in sorted(range(len(columns)), key=lambda pos: _ABSENT in columns[pos]):
            column, hole = columns[pos], per_instance[0][pos]
            present = [v for v in column if v is not _ABSENT]
            if all(v == present[0] and type(v) is type(present[0]) for v in present):
                keep = hole.default is _NO_DEFAULT or not _equal(present[0], hole.default)
                codes[pos] = literal(present[0]) if keep else None
                continue
            # A parameter already made where it agrees with this one (an instance without
            # the module may give any value), else one of its own.
            shared = next((v for v in vectors if _agree(v[0], column)), None)
            if shared is not None:
                shared[0][:] = [b if a is _ABSENT else a for a, b in zip(shared[0], column, strict=True)]
                codes[pos] = shared[1]
                continue
            named = hole
            if hole.hint in _FEATURES and _agree(column, inputs) and "in_channels" not in used:
                named = Hole(hole.value, "in_channels", hole.default, "")
            name = self._param_name(named, used)
            vectors.append((list(column), name))
            if _ABSENT in column:
                cls.defaults[name] = None  # only some instances make its module: None in the others
            elif hole.default is not _NO_DEFAULT and _literal_or_none(hole.default) is not None:
                # The layer's own default: a call may leave it out, as torch's would.
                cls.defaults[name] = hole.default
            codes[pos] = name
        cls.codes = [codes[pos] for pos in range(len(columns))]
        cls.params = [name for _, name in vectors]
        for i, inst in enumerate(cls.instances):
            inst.param_values = [None if v[i] is _ABSENT else v[i] for v, _ in vectors]
        for name in cls.optional:
            # Whether an instance makes the optional module: a flag named after it.
            flag = cls.optional[name] = self._param_name(Hole(True, name), used)
            cls.params.append(flag)
            cls.defaults[flag] = False
            for inst in cls.instances:
                inst.param_values.append(name in _names(inst))
        cls.resolved = True
        self.order.append(cls)

    @staticmethod
    def _param_name(hole: Hole, used: set) -> str:
        name = hole.hint
        if name in used and is_attribute(hole.label):
            name = f"{hole.label}_{hole.hint}"
        base, i = name, 2
        while name in used or keyword.iskeyword(name) or not name.isidentifier():
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        return name


# Torch's names of a count of channels that a block's parameter is named after where
# it is the block's input channels.
_FEATURES = frozenset({"num_features", "num_channels"})


def _agree(a: list, b: list) -> bool:
    """Whether two parameters' values agree in each instance that has both (a value
    and its type: 1 and 1.0, 1 and True, make different code)."""
    return all(x is _ABSENT or y is _ABSENT or (type(x) is type(y) and x == y) for x, y in zip(a, b, strict=True))


def _literal_or_none(v) -> str | None:
    try:
        return literal(v)
    except (TypeError, ValueError):
        return None


def _equal(a, b) -> bool:
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and not isinstance(a, bool)
                                             and isinstance(b, (int, float)) and not isinstance(b, bool)
                                             and a == b)


# -- the spec's `init` rules

# torch.nn.init's defaults: a call leaves these arguments out.
_INIT_DEFAULTS = {"a": 0, "mode": "fan_in", "nonlinearity": "leaky_relu", "gain": 1.0,
                  "mean": 0.0, "std": 1.0}
_INIT_DEFAULTS_OF = {"uniform": {"a": 0.0, "b": 1.0}, "trunc_normal": {"a": -2.0, "b": 2.0}}


def _init_call(scheme, target: str) -> str:
    """``nn.init.kaiming_normal_(m.weight, mode='fan_out')``: one declared scheme as
    :func:`netdsl.backend.lower.init_parameter` applies it.

    >>> from netdsl import ir
    >>> _init_call(ir.InitScheme(fn="trunc_normal", args={"mean": 0.0, "std": 0.02, "a": -2.0,
    ...            "b": 2.0}), "m.weight")
    'nn.init.trunc_normal_(m.weight, std=0.02)'
    """
    defaults = {**_INIT_DEFAULTS, **_INIT_DEFAULTS_OF.get(scheme.fn, {})}
    args = [target] + [f"{k}={literal(v)}" for k, v in scheme.args.items()
                       if not (k in defaults and _equal(v, defaults[k]))]
    return f"nn.init.{scheme.fn}_({', '.join(args)})"


def _leaves(nodes, owner, prefix=()):
    """(path, IR layer, module) of every leaf module with parameters, in module order."""
    for n in _modules_in_order(nodes):
        if isinstance(n, ir.Layer) and KINDS[n.kind].bare_parameter:
            continue  # a parameter of its owner, filled as it is made (Generator.items)
        m = owner.get_submodule(n.name)
        if isinstance(n, ir.Scope):
            yield from _leaves(n.body, m, prefix + (n.name,))
        elif next(m.parameters(recurse=False), None) is not None:
            yield prefix + (n.name,), n, m


def _in_order(declared: dict, m) -> dict:
    """The declared schemes in the order of the module's parameters (weight, then bias)."""
    order = {p: i for i, (p, _) in enumerate(m.named_parameters(recurse=False))}
    return dict(sorted(declared.items(), key=lambda kv: order.get(kv[0], len(order))))


def _scheme_key(declared: dict) -> tuple:
    return tuple((p, s.fn, tuple(s.args.items())) for p, s in declared.items())


def init_lines(net: ir.Network, model) -> tuple[str, ...]:
    """The lines at the end of the network's ``__init__`` that apply the spec's
    ``init`` rules, written as torchvision writes them: one loop over the modules by
    class, with the scheme most modules of a class have, then the modules that differ
    by name. Where a spec declares nothing, nothing is written: torch's own
    initialisation is netdsl's default too.

    The same schemes as ``netdsl build``, though not the same numbers under one seed:
    the build draws each parameter once, the file draws the defaults first.
    """
    leaves = list(_leaves(net.body, model))
    by_class: dict[type, list] = {}
    for path, node, m in leaves:
        by_class.setdefault(type(m), []).append((path, node, m))
    branches = []  # (class, declared schemes of the loop, guarded parameter names)
    for cls, members in by_class.items():
        counts: dict[tuple, int] = {}
        for _, node, _ in members:
            counts[_scheme_key(node.init)] = counts.get(_scheme_key(node.init), 0) + 1
        common = max(counts, key=lambda k: counts[k])
        if not common:
            continue
        declared = _in_order(next(node.init for _, node, _ in members
                                  if _scheme_key(node.init) == common), members[0][2])
        optional = {p for p in declared for _, _, m in members if getattr(m, p, None) is None}
        branches.append((cls, declared, optional))
    # Classes whose branches would read the same share one (torchvision's
    # `isinstance(m, (nn.Conv2d, nn.Linear))`).
    loop: dict[tuple, list[str]] = {}
    for cls, declared, optional in branches:
        lines = []
        for p, scheme in declared.items():
            if p in optional:
                lines += [f"        if m.{p} is not None:", f"            {_init_call(scheme, f'm.{p}')}"]
            else:
                lines.append(f"        {_init_call(scheme, f'm.{p}')}")
        loop.setdefault(tuple(lines), []).append(_class_ref(cls))
    body = ["for m in self.modules():"] if loop else []
    for i, (branch, classes) in enumerate(loop.items()):
        test = classes[0] if len(classes) == 1 else f"({', '.join(classes)})"
        body.append(f"    {'if' if i == 0 else 'elif'} isinstance(m, {test}):")
        body.extend(branch)
    for path, node, m in leaves:
        # What the loop gave this module, against what the spec declares for it.
        got = next((d for c, d, _ in branches if isinstance(m, c)), {})
        own = {p: s for p, s in _in_order(node.init, m).items() if getattr(m, p, None) is not None}
        got = {p: s for p, s in got.items() if getattr(m, p, None) is not None}
        if all(p in own and _scheme_key({p: own[p]}) == _scheme_key({p: s}) for p, s in got.items()):
            todo = {p: s for p, s in own.items() if p not in got}  # the loop did the rest
        else:
            body.append(f"{_path_ref(path)}.reset_parameters()")
            todo = own
        for p, scheme in todo.items():
            body.append(_init_call(scheme, f"{_path_ref(path)}.{p}"))
    if not body:
        return ()
    return ("", "        # The spec's `init` rules (torch's own initialisation for the rest).",
            *("        " + line for line in body))


def _class_ref(cls: type) -> str:
    from torch import nn

    if getattr(nn, cls.__name__, None) is cls:
        return f"nn.{cls.__name__}"
    return cls.__name__  # one of netdsl's helpers the file copies


def _path_ref(path: tuple[str, ...]) -> str:
    if all(is_attribute(p) for p in path):
        return "self." + ".".join(path)
    return f"self.get_submodule({'.'.join(path)!r})"


# -- rendering

class _Writer:
    def __init__(self, cls: Class):
        self.codes = iter(cls.codes)

    def expr(self, e, indent: int) -> str:
        if isinstance(e, Hole):
            raise AssertionError("a hole is rendered by its call")
        if isinstance(e, Call):
            return f"{e.func}({self.args(e.args, indent)})"
        if isinstance(e, ClassRef):
            parts = []
            for p in e.inst.of.params:
                code = next(self.codes)
                if code is not None:
                    parts.append(f"{p}={code}")
            return f"{e.inst.of.name}({', '.join(parts)})"
        if isinstance(e, Seq):
            return self.seq(e.items, indent, "nn.Sequential(")
        raise AssertionError(type(e))

    def args(self, args, indent) -> str:
        parts = []
        for kw, a in args:
            if isinstance(a, Hole):
                code = next(self.codes)
                if code is None:
                    continue
            else:
                code = self.expr(a, indent)
            parts.append(code if kw is None else f"{kw}={code}")
        return ", ".join(parts)

    def seq(self, items, indent: int, opening: str) -> str:
        if not items:
            return opening + ")"
        pad = "    " * (indent + 1)
        numbered = [n for _, n, _ in items] == [str(i) for i in range(len(items))]
        lines = [opening + ("" if numbered else "OrderedDict([")]
        for notes, name, e in items:
            lines.extend(f"{pad}# {comment(c)}" if c else f"{pad}#" for c in notes)
            code = self.expr(e, indent + 1)
            lines.append(f"{pad}{code}," if numbered else f"{pad}({name!r}, {code}),")
        lines.append("    " * indent + (")" if numbered else "]))"))
        return "\n".join(lines)


def _assign(path: tuple[str, ...], code: str) -> str:
    """The statement that registers ``code`` under ``path`` (a dotted label's parts)."""
    if len(path) == 1:
        return f"self.{path[0]} = {code}" if is_attribute(path[0]) else f"self.add_module({path[0]!r}, {code})"
    holder = (f"self.{path[0]}" if is_attribute(path[0]) else f"self.get_submodule({path[0]!r})") + \
        "".join(f"[{p!r}]" for p in path[1:-1])
    return f"{holder}[{path[-1]!r}] = {code}"


def _signature(cls: Class) -> list[str]:
    """The class's parameters in the order ``__init__`` takes them: defaults last."""
    return [p for p in cls.params if p not in cls.defaults] + [p for p in cls.params if p in cls.defaults]


def _render_class(cls: Class, outputs_name: str | None, first: Class | None) -> str:
    inst = cls.instances[0]
    w = _Writer(cls)
    if first is None:
        lines = [f"# {comment(c)}" if c else "#" for c in inst.comments]
    else:
        lines = [f"# Another form of {first.name}, with other modules (see its comment)."]
    lines.append(f"class {cls.name}({inst.base}):")
    params = [f"{p}={literal(cls.defaults[p])}" if p in cls.defaults else p for p in _signature(cls)]
    lines.append(f"    def __init__({', '.join(['self'] + params)}):")
    numbered = inst.base == "nn.Sequential" and [n for _, n, _ in inst.items] == [
        str(i) for i in range(len(inst.items))]
    if numbered and inst.items:
        lines.append("        " + w.seq(inst.items, 2, "super().__init__("))
    else:
        lines.append("        super().__init__()")
        made: set[tuple[str, ...]] = set()
        for notes, name, e in inst.items:
            lines.extend(f"        # {comment(c)}" if c else "        #" for c in notes)
            parts = tuple(name.split("."))
            for i in range(1, len(parts)):  # a dotted label's containers, on first use
                if parts[:i] not in made:
                    made.add(parts[:i])
                    lines.append(f"        {_assign(parts[:i], 'nn.ModuleDict()')}")
            code = w.expr(e, 2)
            if name in cls.optional:
                # torchvision's `self.downsample = downsample`: None where not made.
                code = f"{code} if {cls.optional[name]} else None"
            lines.append(f"        {_assign(parts, code)}")
    lines.extend(inst.init)
    forward = cls.forward or inst.forward
    if forward is not None:
        lines.append("")
        lines.extend(line.replace("{outputs}", outputs_name or "") for line in forward)
    return "\n".join(lines)


def _header_value(v) -> str:
    if isinstance(v, (bool, int, float, str)) or v is None:
        return literal(v) if not isinstance(v, str) else repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_header_value(x) for x in v) + "]"
    name = getattr(v, "name", None)
    return name if isinstance(name, str) else type(v).__name__


def _source(net: ir.Network, model, spec_label: str | None, overrides, texts) -> str:
    from .. import __version__

    comments = _Comments(texts)
    gen = _Generator(comments)
    root_file = net.span.file if net.span is not None else None
    notes = comments.of_def(root_file, "network", net.name)
    items = gen.items(net.body, model)
    root = Instance("nn.Module", class_name(type(model).__name__), notes, items,
                    gen.forward(net.body, net), outputs=tuple(net.outputs),
                    init=init_lines(net, model))
    gen.register(root)
    gen.resolve(root.of)
    names: set = set()
    # The network's class first: it keeps its name when a block has the same one.
    for cls in [root.of] + [c for c in gen.order if c is not root.of]:
        base, i = cls.instances[0].name, 2
        name = base
        while name in names:
            name, i = f"{base}{i}", i + 1
        names.add(name)
        cls.name = name
    outputs_name = None
    fields: tuple = ()
    if net.outputs:
        fields = net.sides_order or ("logits",) + tuple(net.outputs)
        outputs_name = net.sides_type or f"{net.cls}Outputs"
    elif net.result is not None and net.result.form == "namedtuple":
        fields = net.result.keys
        outputs_name = f"{net.cls}Outputs"
    if outputs_name is not None:
        # The built model's type name where it is a free identifier: outputs compare by it.
        if not is_attribute(outputs_name) or not outputs_name.isascii() or outputs_name in TAKEN:
            outputs_name = root.of.name + "Outputs"
        while outputs_name in names or outputs_name in TAKEN:
            outputs_name += "_"
    firsts: dict[str, Class] = {}
    body = []
    for c in gen.order:
        # The network is no form of a block that happens to have its name.
        first = c if c is root.of else firsts.setdefault(c.instances[0].name, c)
        body.append(_render_class(c, outputs_name, None if first is c or not c.instances[0].comments
                                  else first))
    text = "\n\n\n".join(body)
    uses_seq_dict = "OrderedDict([" in text
    used = [h for h in HELPERS if any(_uses(c, h) for c in gen.order)]
    # In HELPERS' order, which puts what a helper calls before it.
    helpers = [h for h in HELPERS if h in used or any(h in HELPER_NEEDS.get(u, ()) for u in used)]

    head = [
        f"# Generated by netdsl {__version__} (netdsl export --format python): plain PyTorch,",
        "# no netdsl import. Edit freely: `netdsl export -o` replaces an edited file only with --force.",
        "#",
    ]
    what = f"network `{net.name}`" + (f" of {spec_label}" if spec_label else "")
    head.append(f"# {comment(what)}, input {list(net.input_shape)} (batch first).")
    if overrides:
        head.append("# Overrides: " + comment(", ".join(f"--set {k}={v}" for k, v in overrides.items())))
    if net.params:
        head.append("# Hyperparameters, evaluated and baked in:")
        for k, v in net.params.items():
            head.append(f"#   {comment(k)} = {comment(_header_value(v))}")
    head.append("#")
    head.append(f"# model = {root.of.name}(); model.load_state_dict(torch.load(\"weights.pt\"))")
    head.append("# loads the weights of `netdsl build --save weights.pt` with the same settings.")
    spec_head = comments.header(root_file) if spec_label else []
    if spec_head:
        head.append("#")
        head.append("# The spec says:")
        head.extend(f"#   {comment(c)}" if c else "#" for c in spec_head)
    imports = []
    if uses_seq_dict or outputs_name:
        names_ = [n for n, use in (("OrderedDict", uses_seq_dict), ("namedtuple", outputs_name)) if use]
        imports.append(f"from collections import {', '.join(names_)}")
        imports.append("")
    # The extern classes' modules, imported as the spec's grant allowed: the file runs their code.
    # One block sorted by module name, as isort (ruff's I001) orders it: timm.layers before torch.
    plain = (["torch"] if gen.uses_torch or helpers else []) + sorted(gen.externs) + \
        (["torch.nn.functional as F"] if gen.uses_f else [])
    imports.extend(f"import {m}" for m in sorted(plain, key=lambda m: m.split(" ")[0]))
    imports.append("from torch import nn")
    parts = ["\n".join(head), "\n".join(imports)]
    if outputs_name:
        said = (f"# In training the network returns {comment(', '.join(fields))}; in eval, the logits.\n"
                if net.outputs else "")
        # One blank line after the imports before a statement, two before a class (isort).
        parts[-1] += f"\n\n{said}{outputs_name} = namedtuple({outputs_name!r}, {list(fields)!r})"
    from . import runtime as modules

    for h in helpers:
        # netdsl's own module, copied as it is.
        parts.append(inspect.getsource(getattr(modules, h)).rstrip())
    parts.append(text)
    return "\n\n\n".join(parts) + "\n"


def _uses(cls: Class, func: str) -> bool:
    def walk(e):
        if isinstance(e, Call):
            return e.func == func or any(walk(a) for _, a in e.args)
        if isinstance(e, Seq):
            return any(walk(x) for _, _, x in e.items)
        return False
    return any(walk(e) for _, _, e in cls.instances[0].items)


def generate(spec, overrides=None, *, network: str | None = None, input=None, limits=None,
             import_path=(), origin: str = "api", grant=None) -> str:
    """The Python source of a network: one ``nn.Module`` class per block, without netdsl.

    ``spec`` is a checked network (:func:`netdsl.compile`), or a path or spec text
    compiled here with ``overrides`` and the other arguments as :func:`netdsl.compile`
    takes them. The model the source builds has the built model's ``state_dict`` keys
    and gives its outputs.

    >>> src = generate("network tiny() { input [1, 8, 8]\\n conv: conv2d(4, 3)\\n relu }")
    >>> print(src[src.index("class"):])
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.relu = nn.ReLU()
    <BLANKLINE>
        def forward(self, x):
            x = self.conv(x)  # <spec>:2
            x = self.relu(x)  # <spec>:3
            return x
    <BLANKLINE>
    """
    from ..api import compile_spec, read_spec
    from .lower import lower

    label, texts = None, {}
    if isinstance(spec, ir.Network):
        if overrides:
            raise TypeError("overrides apply when a spec is compiled; a checked network has its values")
        net = spec
    else:
        net = compile_spec(spec, overrides, network=network, input=input, limits=limits,
                           import_path=import_path, origin=origin, grant=grant)
        text, filename, _ = read_spec(spec, limits)
        label = filename
        texts[filename] = text
    model = lower(net, device="meta", grant=grant)
    return _source(net, model, label, dict(overrides or {}), texts)


__all__ = ["class_name", "comment", "generate", "is_attribute", "literal"]
