"""The checker: Program (AST) → checked IR.

It evaluates expressions, expands blocks, loops, conditionals and repetition,
names every module by the scoping rule, infers channels and static shapes from
the network's ``input``, and reports every user mistake as a diagnostic. It is
one pass because the language needs shapes while expanding (a block may test
``in_channels``); it never mutates the AST.

How consecutive items are wired and named lives in ``flows.py``; the rules of
combinators, of ``reuse`` and ``apply``, and of named dataflow in
``combinators.py``, ``calls.py`` and ``dataflow.py``, which see the checker only
through the protocol of ``context.py``. :data:`STATEMENTS` gives the rule of each
kind of statement.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from .. import ir
from ..diagnostics import Diagnostic, Fix, NetdslError, by_position, closest, related, rename, short, source_lines
from ..grant import Grant
from ..layers import LAYERS, PARAMETERS, PASS_THROUGH, REQUIRED, SAVES_OUTPUT, ArgTypeError, LayerError, shapes
from ..layers.base import INFERRED, TORCH_SPELLINGS
from ..limits import Limits
from ..span import Span
from ..syntax import ast, observer
from ..syntax.loader import Program
from . import calls, combinators, dataflow, extern, memo
from .context import Built, Flow, Shape, Shared
from .dataflow import ValueScope
from .evaluate import FAN_SCHEMES, Env, EvalError, Evaluator, _make_divisible, nearest_units, span_of
from .flows import ConcatFlow, NameScope, SeqFlow, name_by_kind
from .lost import Lost, skipped
from .reserved import reserved
from .values import POISON, BlockRef, ExternRef, LayerRef, show, to_json, type_name

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")

# The names a block sees of its input, which no parameter may take: what each one is.
_INPUT_NAMES = {"in_channels": "channel count of the block's input",
                "in_shape": "shape of the block's input, [C, H, W] or [F] (the batch left out)"}
_VALUE_TYPES = (bool, int, float, str, tuple, BlockRef, LayerRef)  # and none

# The largest finite float32: a float argument beyond it is infinite where torch uses it.
FLOAT32_MAX = 3.4028234663852886e38

# What the smallest values of an argument mean, for the help of a value below them.
_RANGE_HINTS = {"stride": " (1 keeps the size, 2 halves it)", "padding": " (0 is no padding)",
                "groups": " (1 is an ordinary convolution)", "dilation": " (1 is an ordinary window)"}


class _Abort(Exception):
    """Stop checking: a limit was hit and going on would only cost time."""


class _TooDeep(Exception):
    """Python's stack ran out at statement ``span``, inside the blocks of ``chain``.

    One file's nesting is bounded (E0402) and so is block depth (E0405), but
    blocks multiply the nesting of their bodies, so the stack is the last bound."""

    def __init__(self, span, chain):
        super().__init__()
        self.span, self.chain = span, chain


def camel(name: str) -> str:
    """``inception_a`` → ``InceptionA``: the module class name of a block.

    >>> camel("basic_block"), camel("bottleneck")
    ('BasicBlock', 'Bottleneck')
    """
    return "".join(p[:1].upper() + p[1:] for p in name.split("_") if p) or name


# ---------------------------------------------------------------- checker


def given(name: str, origin: str) -> str:
    """How messages name a hyperparameter value set from outside the spec: the way
    the user gave it, on the command line (``origin="cli"``) or to the API.

    >>> given("width", "cli"), given("width", "api")
    ('--set width', 'the value given for `width`')
    """
    return f"--set {name}" if origin == "cli" else f"the value given for `{name}`"


def _takes(arg, value) -> bool:
    """Whether a layer argument (None: the layer has no such argument) accepts ``value``."""
    if arg is None:
        return False
    try:
        arg.convert(value)
        return True
    except ArgTypeError:
        return False


class Checker:
    """The checker of one program: :meth:`network` checks one of its networks and gives
    its IR, or raises a NetdslError with every diagnostic. It owns the walk over bodies
    (``run``, by :data:`STATEMENTS`), the statements no rule module owns (``let``,
    ``assert``, ``input``, ``init``, ``for``, ``if``, labels and repetition), the use
    of layers (arguments, ranges, init rules, shapes) and of blocks (their expansion,
    and the memo that replays it), the naming of scopes, reporting (each diagnostic
    once, with the block instances it is in and the values set from outside that it
    used), and the limits on work (steps, block depth, Python's stack). The rule
    modules see it only as a :class:`~netdsl.check.context.Context`.

    >>> from pathlib import Path
    >>> from netdsl.syntax.loader import load
    >>> program = load("network n() { input [3, 8, 8]\\n conv2d(4, 3) }", None, Path("."), Limits())
    >>> Checker(program).network().out_shape
    (4, 6, 6)
    """

    def __init__(self, program: Program, limits: Limits | None = None, origin: str = "api",
                 grant: Grant | None = None):
        self.program = program
        self.limits = limits or Limits()
        self.origin = origin  # where overrides come from: "cli" (--set) or "api" (compile(**kw))
        self.diags: list[Diagnostic] = []
        self._seen: set = set()
        self._bad_labels: set = set()
        self._split: dict[str | None, list[str]] = {}
        self._instance_steps: dict[tuple, tuple[int, dict]] = {}
        self._same: dict[int, tuple] = {}
        self.chain: list[tuple[str, Span | None]] = []
        self.nodes = 0
        self.overridden: dict[str, object] = {}  # network parameters set by --set or the API
        self.inner_names: dict[str, tuple[str, Span | None]] = {}
        self._flow_values: ValueScope | None = None
        # The results `from a, b` passes to the block being used: [(name, shape)], or None.
        self._pack: list | None = None
        self.side_flow: SeqFlow | None = None
        self.network_values: ValueScope | None = None
        # The memo of block instances (memo.py), and what it needs to know of each
        # expansion: reports made, levels reached, and the logs of lasting effects.
        self.grant = grant or Grant()  # the Python modules an `extern` may import
        if self.grant and program.externs:
            # What the check gives may depend on Python code no spec file holds (an extern's
            # class, here or in a block instance the memo replays): no cache vouches for it.
            observer.uncacheable()
        self._memo = memo.table(program, self.limits, origin, self.grant)
        self._depth = 0
        # Every lasting effect an expansion has, which the memo records and replays.
        self.record = memo.Record()
        self.ev = Evaluator(self.limits, globals=self._global, charge=self._charge,
                            blocks=lambda: program.blocks)
        self.globals = Env()
        self.aborted = False
        try:
            for let in program.lets:
                self.globals.vars[let.name] = self.value(let.value, self.globals)
        except _Abort:
            self.aborted = True

    # -- reporting
    def report(self, d: Diagnostic) -> None:
        self.record.reports += 1
        # Once per code and place: a mistake in a block is one mistake, however many of its
        # instances meet it (the first one's notes say where); without a place, per message.
        key = (d.code, d.span.where(), d.span.column) if d.span else (d.code, d.message)
        if key in self._seen:
            return
        self._seen.add(key)
        if self.chain:
            # A recursive block repeats one place many times: say it once, with a count.
            notes: list[list] = []
            for name, span in reversed(self.chain):
                note = f"in block `{name}` used at {span.where() if span else '?'}"
                if notes and notes[-1][0] == note:
                    notes[-1][1] += 1
                else:
                    notes.append([note, 1])
            d = d.with_notes(*(n if k == 1 else f"{n}, {k} times in a row" for n, k in notes))
        self.diags.append(self._set_notes(d))

    def _set_notes(self, d: Diagnostic) -> Diagnostic:
        """Say which overridden values the source of a diagnostic uses: a range error at
        `linear(num_classes)` is the spec's line, but the bad value came from outside."""
        if not self.overridden or d.span is None:
            return d
        names: set[str] = set()
        for span in [d.span] + [span for _, span in self.chain if span is not None]:
            names.update(_NAME.findall(_source_at(self._lines(span.file), span)))
        return d.with_notes(*(f"`{n}` is {show(v)}, set from outside the spec ({self._origin_of(n)})"
                              for n, v in self.overridden.items() if n in names))

    def _origin_of(self, name: str) -> str:
        return f"--set {name}=..." if self.origin == "cli" else given(name, "api")

    def _lines(self, file: str | None) -> list[str]:
        # Split once per file: a spec of many errors would otherwise split it per error.
        lines = self._split.get(file)
        if lines is None:
            text = self.program.sources.get(file)
            lines = self._split[file] = source_lines(text) if text else []
        return lines

    def _global(self, name: str):
        if name in self.program.blocks:
            return BlockRef(name, self.program.blocks[name])
        if name in self.program.externs:
            return ExternRef("extern", name, self.program.externs[name])
        return KeyError

    def value(self, expr: ast.Expr, env: Env, init: bool = False):
        """Evaluate, reporting a mistake and returning POISON instead of raising."""
        self.ev.init_context = init
        try:
            return self.ev.evaluate(expr, env)
        except EvalError as e:
            self.report(e.diagnostic)
            return POISON
        finally:
            self.ev.init_context = False

    def typed(self, expr: ast.Expr, env: Env, kind: str, what: str):
        v = self.value(expr, env)
        if v is POISON:
            return POISON
        ok = {"bool": isinstance(v, bool),
              "int": isinstance(v, int) and not isinstance(v, bool),
              "list": isinstance(v, tuple)}[kind]
        if not ok:
            code = "E0214" if kind == "bool" else "E0206"
            expected = {"bool": "true or false", "int": "an integer", "list": "a list"}[kind]
            text = self.text(span_of(expr))
            help = (as_condition(text, v) if kind == "bool" else as_int(text, v, "count")
                    if kind == "int" else as_list(text, v))
            self.report(Diagnostic(code, f"{what} must be {expected}, found {type_name(v)}",
                                   span_of(expr), f"this is {show(v)}", help))
            return POISON
        return v

    def text(self, span: Span | None) -> str:
        """The source text of ``span`` on one line, or `it` where it is long or not known."""
        if span is None:
            return "it"
        text = " ".join(_source_at(self._lines(span.file), span).split())
        return text if text and len(text) <= 40 else "it"

    # -- entry
    def network(self, name: str | None = None, overrides: dict | None = None,
                input_shape=None) -> ir.Network:
        prog = self.program
        if self.aborted:
            raise NetdslError(by_position(self.diags), prog.sources)
        if name is None:
            if len(prog.root_networks) != 1:
                msg = ("the spec defines no network" if not prog.root_networks else
                       "the spec defines several networks: " + ", ".join(prog.root_networks))
                raise NetdslError([Diagnostic(
                    "E0107", msg, None, "",
                    "choose one with --network NAME" if prog.root_networks else
                    "add `network NAME() { input [C, H, W] ... }`, or import a spec that has one")],
                    prog.sources)
            name = prog.root_networks[0]
        if name not in prog.networks:
            near = closest(name, prog.networks)
            raise NetdslError([Diagnostic("E0107", f"no network named `{short(name)}`", None, "",
                                          f"did you mean `{near}`?" if near else
                                          "networks here: " + ", ".join(prog.networks) or "none")],
                              prog.sources)
        try:
            net = self._network(prog.networks[name], overrides or {}, input_shape)
        except _Abort:
            net = None
        except _TooDeep as e:
            net = None
            self._too_deep(e)
        finally:
            # The evaluator calls back into the checker: without this cycle, the checker and
            # all it made are freed when the caller drops it, not by the cyclic collector
            # (whose passes over a sweep's thousands of compiles cost more than the checking).
            self.ev.release()
        if self.diags:
            raise NetdslError(by_position(self.diags), prog.sources)
        assert net is not None  # _network gives None only where it reported why
        return net

    def library(self, file: str | None) -> list[Diagnostic]:
        """The mistakes in the blocks ``file`` defines that show without a network: each
        block's body checked with its parameters' defaults (unknown where a parameter has
        none) on an input of unknown shape. Unknown names, layers and arguments, values
        of the wrong type, names read and never given: what no input shape decides.
        Shapes and channels are checked where a network uses the block; until then what
        depends on them stays silent (as after any mistake that leaves a value unknown)."""
        for defn in self.program.blocks.values():
            if defn.span.file != file:
                continue
            env = Env({}, self.globals)
            for p in defn.params:
                env.vars[p.name] = POISON if p.default is None else self.value(p.default, env)
            env.vars["in_channels"] = env.vars["in_shape"] = POISON
            flow = SeqFlow(None, False, block=True)
            flow.values = ValueScope(defn.name)
            flow.values.given = []  # its `input`s, if it declares any, of unknown shapes too
            self.chain.append((defn.name, None))
            try:
                self.run(defn.body, env, flow, NameScope(None))
                dataflow.close(self, flow.values)
                dataflow.close_block(self, flow, defn.name)
            except (_Abort, _TooDeep):
                pass
            finally:
                self.chain.pop()
        self.ev.release()
        return by_position(self.diags)

    def _network(self, defn, overrides: dict, input_shape) -> ir.Network | None:
        shown_name = defn.name
        if self._alias_cycle(defn):
            return None
        variant = self._variant_of(defn)
        if variant is None:
            return None
        defn, defaults = variant
        env = Env({}, self.globals)
        values = self._param_values(defn, defaults, overrides, env)
        flow = SeqFlow(None, True, network=True)
        flow.input_override = input_shape
        flow.sides = []
        flow.input_shape = None
        flow.values = self.network_values = ValueScope(None)
        scope = NameScope(None)
        flow.sides_decl = None
        flow.sides_lost = Lost()
        self.run(defn.body, env, flow, scope)
        self.close(scope, flow, root=True)
        sides_type, order = combinators.training_outputs(self, flow, defn.cls or camel(shown_name))
        dataflow.close(self, flow.values)
        result = self._network_result(flow)
        if not flow.has_input and not flow.missing_reported:
            self.report(Diagnostic("E0308", "the network declares no input shape", defn.span,
                                   "no `input` in this network",
                                   "start the network with `input [C, H, W]`"))
        if self.diags or (flow.shape is None and result is None):
            return None
        params_json = {k: to_json(v) for k, v in values.items()}
        inputs = tuple(ir.NetInput(name=n, shape=s, span=sp) for n, s, sp in flow.values.inputs)
        out_shape = flow.shape if result is None else result.shapes[0]
        return ir.Network(name=shown_name, cls=defn.cls or camel(shown_name), params=params_json,
                          input_shape=flow.input_shape, body=tuple(flow.nodes),
                          out_shape=out_shape, outputs=tuple(flow.sides), span=defn.span,
                          sides_type=sides_type, sides_order=order, inputs=inputs, result=result)

    def _variant_of(self, defn) -> tuple[ast.NetworkDef, dict[str, tuple[ast.Expr, None]]] | None:
        """The network a variant (``network vgg16 = vgg(depth = 16)``) is based on, followed
        through variants of variants, and the defaults the variants give its parameters
        (the nearest variant's first); None where a base is missing (reported)."""
        defaults: dict[str, tuple[ast.Expr, None]] = {}
        while isinstance(defn, ast.NetworkAlias):
            base = self.program.networks.get(defn.base.id)
            if base is None:
                near = closest(defn.base.id, self.program.networks)
                self.report(Diagnostic("E0107", f"`{short(defn.base.id)}` is not a network", defn.base.span,
                                       "not defined", f"did you mean `{near}`?" if near else None,
                                       fixes=rename(near, defn.base.span)))
                return None
            base_params = {p.name: p for p in _params_of(base, self.program)}
            for a in defn.args:
                if a.name is None:
                    self.report(Diagnostic("E0201", "a network variant takes keyword arguments only",
                                           a.span, "positional", "write `name = value`"))
                    continue
                if a.name not in base_params:
                    self._unknown_param(a.name, base_params, base.name, a.span)
                    continue
                defaults.setdefault(a.name, (a.value, None))
            defn = base
        return defn, defaults

    def _param_values(self, defn: ast.NetworkDef, defaults: dict, overrides: dict, env: Env) -> dict[str, object]:
        """The value of each of the network's parameters, bound in ``env``: set from outside
        the spec (checked against the default's type), given by a variant, or the default."""
        params = list(defn.params)
        names = {p.name for p in params}
        for key, (_, span) in overrides.items():
            if key not in names:
                self._unknown_param(key, {p.name: p for p in params}, defn.name, span)
        values: dict[str, object] = {}
        for p in params:
            if p.name in overrides:
                v, span = overrides[p.name]
                if isinstance(v, ast.Expr):
                    v = self._set_value(p.name, v)
                else:
                    v = self._foreign_value(p.name, v, span)
                default = None
                if p.default is not None:
                    ev = self.value(p.default, env)
                    default = ev
                if not self._check_override(p, v, default, span):
                    v = POISON  # reported once; uses of the parameter stay quiet
                else:
                    self.overridden[p.name] = v
            elif p.name in defaults:
                v = self.value(defaults[p.name][0], self.globals)
            elif p.default is not None:
                v = self.value(p.default, env)
            else:
                self.report(Diagnostic("E0203", f"network parameter `{p.name}` has no value",
                                       p.span, "no default",
                                       "give it a default, or set it: " +
                                       (f"--set {p.name}=VALUE" if self.origin == "cli" else
                                        f"{p.name}=VALUE")))
                v = POISON
            env.vars[p.name] = v
            values[p.name] = v
        return values

    def _network_result(self, flow) -> ir.Outputs | None:
        """The network's `output`, checked to come last; and side outputs refused beside
        dataflow, whose training-mode tuple has no place for them yet."""
        values = flow.values
        if values.several is not None or values.pack is not None:
            dataflow.one_tensor(self, values, values.several[2] if values.several else None,
                                "the network ends with one result")
        given = flow.input_override
        names = [n for n, _, _ in values.inputs]
        extra = ([k for k in given if k not in names] if isinstance(given, dict) else
                 [] if not (isinstance(given, tuple) and given and isinstance(given[0], tuple))
                 or len(given) <= len(names) or not names else [f"shape {len(names) + 1}"])
        for key in extra:
            near = closest(str(key), names)
            self.report(Diagnostic("E0132", f"input shape given for `{short(str(key))}`, which the network "
                                   "does not declare", None, "",
                                   f"did you mean `{near}`?" if near else
                                   "its inputs are " + (", ".join(names) or "unnamed")))
        if values.output is not None and len(flow.nodes) > values.output[2]:
            after = flow.nodes[values.output[2]]
            self.report(Diagnostic("E0131", "`output` must be the network's last statement", after.span,
                                   "this comes after it", "move `output` to the end of the network"))
        # A side output that failed to check (no input to read, say) made no node, and
        # has its own diagnostic already.
        side = next((n for n in flow.nodes if isinstance(n, ir.Side)), None)
        if values.used and side is not None:
            self.report(Diagnostic("E0133", "side outputs cannot be used with named results", side.span,
                                   "a side output", "list the head's result in `output` instead: name it "
                                   "with `-> NAME` and return it in eval and training alike"))
        return values.output[0] if values.output is not None else None

    def _alias_cycle(self, first) -> bool:
        """Report variants based on each other in a cycle (`network a = b()` beside
        `network b = a()`), at the one being compiled; following them would never end."""
        names, defn = [first.name], first
        while isinstance(defn, ast.NetworkAlias):
            defn = self.program.networks.get(defn.base.id)
            if defn is None:
                return False  # a missing base is reported where the variants are followed
            if defn.name in names:
                cycle = " → ".join(map(short, names[names.index(defn.name):] + [defn.name]))
                self.report(Diagnostic("E0107", f"network `{short(first.name)}` is defined in terms of "
                                       "itself", first.base.span, "a variant of a variant of itself",
                                       f"the variants {cycle} never reach a network with a body; "
                                       "base one of them on a network written out in full"))
                return True
            names.append(defn.name)
        return False

    def _set_value(self, name: str, expr: ast.Expr):
        """Evaluate an override; a mistake in it says which parameter it was for."""
        before = len(self.diags)
        v = self.value(expr, self.globals)
        notes = [f"in {given(name, 'api')}" + (f" (--set {name}=...)" if self.origin == "cli" else "")]
        if isinstance(expr, ast.Name) and any(d.code == "E0101" for d in self.diags[before:]):
            # `mode=batch` meant the string: the value is an expression, as in the spec.
            quoted = f"""'"{expr.id}"'"""
            notes.append("a string is written in quotes: " +
                         (f"--set {name}={quoted}" if self.origin == "cli" else f"{name}={quoted}"))
        self.diags[before:] = [d.with_notes(*notes) for d in self.diags[before:]]
        return v

    def _foreign_value(self, name: str, v, span):
        """A Python value given to ``compile(**overrides)`` must be one the language has,
        within the limits its own expressions keep to; strings in it were parsed as
        expressions, evaluated here.

        >>> from netdsl.syntax.parser import parse_expr
        >>> Checker(Program(None))._foreign_value("depths", (1, parse_expr("1 + 1")), None)
        (1, 2)
        """
        if not self._foreign_ok(name, v, span):
            return POISON
        if not _has_expr(v):
            return v
        v = self._evaluate_items(name, v)
        return v if v is POISON or self._foreign_ok(name, v, span) else POISON

    def _evaluate_items(self, name: str, v):
        if isinstance(v, ast.Expr):
            return self._set_value(name, v)
        if isinstance(v, tuple) and _has_expr(v):
            items = tuple(self._evaluate_items(name, x) for x in v)
            return POISON if any(x is POISON for x in items) else items
        return v

    def _foreign_ok(self, name: str, v, span) -> bool:
        level, depth, lim = [v], 0, self.limits
        while level:
            for x in level:
                problem = None
                if isinstance(x, float) and not math.isfinite(x):
                    problem = "E0215", f"{x} is not a finite number"
                elif isinstance(x, int) and not isinstance(x, bool) and abs(x) > lim.max_int:
                    problem = "E0215", f"an integer of {abs(x).bit_length()} bits is out of range"
                elif isinstance(x, (tuple, str)) and len(x) > lim.max_repeat:
                    problem = "E0403", f"{len(x)} items is over the limit of {lim.max_repeat}"
                elif not (x is None or isinstance(x, (*_VALUE_TYPES, ast.Expr))):
                    problem = "E0206", f"a Python {type(x).__name__} is not a netdsl value"
                if problem is not None:
                    self.report(Diagnostic(problem[0], f"{given(name, 'api')}: {problem[1]}", span, "",
                                           "give a number, a string, true, false, none, a list of "
                                           "these, or a block or layer"))
                    return False
            depth += 1
            if depth > lim.max_nesting + 1:
                self.report(Diagnostic("E0402", f"{given(name, 'api')}: lists nested deeper than "
                                       f"{lim.max_nesting} levels", span, "", None))
                return False
            # Shared sublists are looked at once.
            level = list({id(y): y for x in level if isinstance(x, tuple) for y in x}.values())
        return True

    def _too_deep(self, e: _TooDeep) -> None:
        names = [name for name, _ in e.chain]
        again = next((n for n in names if names.count(n) > 1), None)
        notes = [f"inside {len(names)} nested block instances"] if names else []
        if again is not None:
            self.report(Diagnostic("E0405", f"block `{again}` uses itself too deeply to check", e.span,
                                   "the checker ran out of stack here",
                                   "a block that uses itself needs a condition that ends the "
                                   "recursion sooner").with_notes(*notes))
        else:
            self.report(Diagnostic("E0402", "blocks and bodies nest too deeply to check", e.span,
                                   "the checker ran out of stack here",
                                   "flatten the spec: fewer nested blocks, groups and "
                                   "combinators").with_notes(*notes))

    def _step(self, span) -> None:
        self._charge(1, span)

    def _charge(self, n: int, at) -> None:
        """Count ``n`` steps of work done at ``at`` (a span or a node): layers, statements,
        loop iterations and list items. Each loop and repetition is bounded alone; their
        product is bounded here, so that even loops which make no layers end in time."""
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            span = at if isinstance(at, Span) or at is None else getattr(at, "span", None)
            self._too_many_steps(span, "the limit was reached here")

    def _too_many_steps(self, span, label: str):
        self.report(Diagnostic("E0404", f"the network takes more than {self.limits.max_nodes:,} "
                               "steps to expand", span, label,
                               "each layer, statement, loop iteration and list item is a step; "
                               "check repetition counts, loops and list sizes, or raise "
                               "--limit max_nodes=N"))
        raise _Abort

    def _would_pass(self, steps: int, span, label: str) -> None:
        """Refuse now work known to take ``steps`` more steps, if that is over the limit:
        expanding it first would only take longer to reach the same E0404."""
        if self.nodes + steps > self.record.need_peak:
            self.record.need_peak = self.nodes + steps
        if self.nodes + steps > self.limits.max_nodes:
            self._too_many_steps(span, label)

    def _unknown_param(self, key, params, owner, span):
        near = closest(key, params)
        self.report(Diagnostic("E0202", f"`{short(owner)}` has no parameter `{short(key)}`", span,
                               "unknown parameter",
                               f"did you mean `{near}`?" if near else
                               f"`{short(owner)}` takes " + (", ".join(map(short, params)) or "no parameters"),
                               fixes=rename(near, span)))

    def _check_override(self, p: ast.Param, v, default, span) -> bool:
        """An override must have the type of the parameter's default (an int may stand for a float)."""
        if v is POISON or default is None or default is POISON:
            return v is not POISON
        wanted, got = type_name(default), type_name(v)
        if wanted == got or (wanted == "float" and got == "int"):
            return True
        self.report(Diagnostic(
            "E0206", f"{given(p.name, self.origin)}: expected {wanted} like the default {show(default)}, "
            f"found {got} {show(v)}", span, "",
            f"the spec declares `{p.name} = {show(default)}` at {p.span.where()}"))
        return False

    # -- statements
    def run(self, stmts, env: Env, flow, scope: NameScope) -> None:
        # Body levels, for the memo; counted here, not in a wrapper, since a frame more per
        # level would move where Python's stack runs out (E0405 or E0402 for deep specs).
        self._depth += 1
        if self._depth > self.record.depth_peak:
            self.record.depth_peak = self._depth
        same = self._same_after(stmts)
        seen = cost = None
        try:
            for i, st in enumerate(stmts):
                # A statement equal to the one before it, seeing the same input, does the
                # same work, and so do the equal ones after it (ten lines of `b0` are `b0 * 10`).
                state = _input_state(flow)
                if cost is not None and same[i - 1] > 1 and state == seen:
                    self._would_pass(cost * same[i], st.span, f"{same[i]:,} more statements like the "
                                     f"one before, of {_steps(cost)} each, would pass the limit")
                seen, before = state, self.nodes
                try:
                    # What `stmt` does, done here: a frame less per level of nesting, where
                    # Python's stack is the last bound (E0405 or E0402 for deep specs).
                    self._step(st.span)
                    STATEMENTS[type(st)](self, st, env, flow, scope)
                except EvalError as e:
                    self.report(e.diagnostic)
                except RecursionError:
                    raise _TooDeep(st.span, tuple(self.chain)) from None
                cost = self.nodes - before
        finally:
            self._depth -= 1

    def _same_after(self, stmts) -> list[int]:
        """For each statement of a body, how many from it on are equal to it, itself included
        (1 for a `let`, which changes what the next one sees). Worked out once per body."""
        known = self._same.get(id(stmts))
        if known is None or known[0] is not stmts:
            same = [1] * len(stmts)
            for i in range(len(stmts) - 2, -1, -1):
                try:
                    equal = not isinstance(stmts[i], ast.Let) and stmts[i] == stmts[i + 1]
                except RecursionError:  # too deep to compare: only a lost shortcut
                    equal = False
                same[i] = same[i + 1] + 1 if equal else 1
            known = self._same[id(stmts)] = (stmts, same)
        return known[1]

    def stmt(self, st, env: Env, flow, scope: NameScope) -> None:
        """Check one statement, by the rule :data:`STATEMENTS` gives its kind (as ``run``
        does for each of a body's)."""
        self._step(st.span)
        STATEMENTS[type(st)](self, st, env, flow, scope)

    # -- the statements the checker owns (the rule modules own the others)
    def let(self, st: ast.Let, env: Env, flow, scope: NameScope) -> None:
        env.vars[st.name] = self.value(st.value, env)

    def assert_(self, st: ast.Assert, env: Env, flow, scope: NameScope) -> None:
        cond = self.typed(st.cond, env, "bool", "an `assert` condition")
        if cond is False:
            msg = self.value(st.message, env) if st.message is not None else None
            text = msg if isinstance(msg, str) else "the spec's assertion does not hold"
            self.report(Diagnostic("E0501", f"assertion failed: {text}", span_of(st.cond),
                                   "this is false", "check the parameters given to this block "
                                   "or network (--set, or the arguments where it is used)"))

    def for_(self, st: ast.For, env: Env, flow, scope: NameScope) -> None:
        items = self.typed(st.iterable, env, "list", "a `for` loop's range")
        if items is POISON:
            skipped(st.body, flow, scope)
            return
        if len(items) > self.limits.max_repeat:
            self.report(Diagnostic("E0403", f"loop of {len(items)} iterations is over the limit",
                                   span_of(st.iterable), f"limit is {self.limits.max_repeat}",
                                   "raise it with --limit max_repeat=N"))
            skipped(st.body, flow, scope)
            return
        self._charge(len(items), st.iterable)
        for v in items:
            self.run(st.body, Env({st.var: v}, env), flow, scope)

    def if_(self, st: ast.If, env: Env, flow, scope: NameScope) -> None:
        cond = self.typed(st.cond, env, "bool", "an `if` condition")
        if cond is POISON:
            skipped(st.body + st.orelse, flow, scope)
        else:
            self.run(st.body if cond else st.orelse, Env({}, env), flow, scope)

    def labelled(self, st: ast.Labelled, env: Env, flow, scope: NameScope) -> None:
        label = self.label(st.label, env)
        if label is POISON:
            scope.lose(...)  # which label was meant is not known
            skipped([st.unit], flow, scope)
            return
        if isinstance(st.unit, ast.Repeat):
            self.repeat(st.unit, env, flow, scope, label)
        else:
            self.item(st.unit, env, flow, scope, label)

    def label(self, s: ast.String, env: Env):
        v = self.value(s, env)
        if v is POISON:
            return v
        if not v or "" in v.split("."):
            # Once per place: a template label in a loop is invalid in every iteration.
            if (s.span.where(), s.span.end_column) not in self._bad_labels:
                self._bad_labels.add((s.span.where(), s.span.end_column))
                self.report(Diagnostic("E0111", f"invalid label \"{v}\"", s.span,
                                       "labels become module names",
                                       "a module name is non-empty text; a `.` only between names, "
                                       "as in \"convs.0\", which puts the module in a container" +
                                       (f", e.g. \"{_label_like(v)}\"" if v else "")))
            return POISON
        return v if all(self.label_free(part, s.span) for part in v.split(".")) else POISON

    def label_free(self, label: str, span) -> bool:
        """Whether the built module can take ``label`` as a child's name: torch refuses
        one that is already an attribute of the parent (`training`, `forward`, ...)."""
        if not reserved(label):
            return True
        other = (label.strip("_") or "x") + "_"
        while reserved(other):
            other += "_"
        self.report(Diagnostic("E0112", f"label `{label}` is an attribute of torch modules",
                               span, "the built module could not take this name",
                               f"rename it, e.g. `{other}`: a label becomes an attribute of "
                               "its parent nn.Module, and may not hide one of the module's own"))
        return False

    def input(self, st: ast.Input, env: Env, flow, scope: NameScope) -> None:
        if getattr(flow, "block", False) and isinstance(st.shape, ast.Name):
            dataflow.block_input(self, st, env, flow, scope)  # `input x`: a tensor the block takes
            return
        if not getattr(flow, "network", False):
            self.report(Diagnostic("E0309", "`input` with a shape only belongs in a network", st.span,
                                   "inside a block or group",
                                   "a block takes its tensors from where it is used: declare each one "
                                   "by name, without a shape, at the top of the block (`input x`)"))
            return
        if flow.has_input or flow.nodes:
            self.report(Diagnostic("E0309", "`input` must come once, before the first layer",
                                   st.span, "declared here", None))
            return
        flow.has_input = True
        value = flow.input_override if flow.input_override is not None else self.value(st.shape, env)
        if isinstance(value, dict) or (isinstance(value, tuple) and value and isinstance(value[0], tuple)):
            self.report(Diagnostic("E0132", "this network has one unnamed input", st.span,
                                   "one shape expected", "give one shape, e.g. (3, 224, 224)"))
            return
        shape = dataflow.input_shape(self, value, span_of(st.shape), "input [3, 224, 224]")
        if shape is not None:
            flow.shape = shape
            flow.input_shape = shape

    def init_rule(self, st: ast.Init, env: Env, flow, scope: NameScope) -> None:
        scheme = self.value(st.scheme, env, init=True)
        if scheme is POISON:
            return
        if not isinstance(scheme, ir.InitScheme):
            self.report(Diagnostic("E0206", f"`init` needs a scheme, found {type_name(scheme)}",
                                   span_of(st.scheme), f"this is {show(scheme)}",
                                   "for example `kaiming_normal(mode = \"fan_out\")`, `zeros`, `ones`"))
            return
        if st.target in LAYERS:
            params = PARAMETERS.get(st.target, ())
            if st.param not in params:
                self.report(Diagnostic(
                    "E0110", f"`{st.target}` has no parameter `{short(st.param)}`", st.span,
                    "nothing to initialise",
                    ("its parameters are " + ", ".join(params)) if params else
                    f"`{st.target}` has no parameters"))
                return
        elif st.param not in ("weight", "bias"):
            self.report(Diagnostic("E0110", f"no parameter `{short(st.param)}`", st.span,
                                   "layers have `weight` and `bias`", None))
            return
        if not self._fan_fits(st.target if st.target in LAYERS else None, st.param, scheme):
            return
        scope.init.append((st.target, st.param, scheme, st.span))

    def _fan_fits(self, kind: str | None, param: str, scheme: ir.InitScheme) -> bool:
        """Kaiming and Xavier scale by fan in and out, which torch computes only for
        a tensor of two or more dimensions: a conv or linear weight."""
        matrix = param in LAYERS[kind].matrix_parameters if kind else param == "weight"
        if scheme.fn not in FAN_SCHEMES or matrix:
            return True
        what = f"`{kind}.{param}`" if kind else f"a `{param}`"
        self.report(Diagnostic("E0204", f"`{scheme.fn}` needs a weight of two or more dimensions",
                               scheme.span, f"{what} has one dimension (no fan in and fan out)",
                               "use it for conv2d and linear weights; for biases and batch-norm "
                               "parameters use zeros, ones, constant, normal or uniform"))
        return False

    def close(self, scope: NameScope, flow: SeqFlow | None = None, root: bool = False) -> None:
        """End a name scope: report its `init` rules that matched no layer, and name the
        unlabelled stateless modules of ``flow``, its body, after their kind where the
        scope is a module with a forward (flows.name_by_kind)."""
        if flow is not None:
            flow.nodes = name_by_kind(scope, flow.nodes, root)
        for i, (target, param, _, span) in enumerate(scope.init):
            if target not in LAYERS and i not in scope.matched and not scope.unknown(target):
                near = closest(target, [n for n in scope.used] + list(PARAMETERS))
                self.report(Diagnostic(
                    "E0110", f"`init {short(target)}.{short(param)}` matches no layer", span,
                    "no layer with this label or kind follows in this scope",
                    f"did you mean `{near}`?" if near else
                    "name a layer kind (conv2d, linear, batchnorm2d) or the label of a later layer",
                    fixes=rename(near, span and span.replace(end_line=span.line,
                                                             end_column=span.column + len(target)))))

    def repeat(self, st: ast.Repeat, env: Env, flow, scope: NameScope, label=None) -> None:
        n = self.typed(st.count, env, "int", "a repetition count")
        if n is not POISON and not 0 <= n <= self.limits.max_repeat:
            code = "E0403" if n > 0 else "E0204"
            self.report(Diagnostic(code, f"repetition count {n} is out of range", span_of(st.count),
                                   f"`* {n}`", f"repeat between 0 and {self.limits.max_repeat} times"
                                   + (" (--limit max_repeat=N)" if n > 0 else "")))
            n = POISON
        if n is POISON:
            scope.lose(label)
            skipped([st.unit], flow, scope)
            return
        if label is None:
            self._copies(st, n, env, flow, scope)
            return
        shape, shared = flow.next_input(self, st.span)
        name = scope.name(self, label, st.span)
        inner = NameScope(scope)
        sub = SeqFlow(shape, shared)
        sub.values = flow.values if isinstance(flow, SeqFlow) else None
        self._copies(st, n, env, sub, inner)
        self.close(inner, sub)
        nodes = self.scope_node(name, None, None, sub, shape, st.span)
        flow.accept(nodes, sub.shape, sub.shared, st.span)

    def _copies(self, st: ast.Repeat, n: int, env: Env, flow, scope: NameScope) -> None:
        """Expand ``n`` copies of a repeated unit into ``flow``.

        A copy that sees the input the copy before it saw does the same work and gives
        the same output, and so do all the copies after it: their steps are known
        before they are expanded, and `{ { relu * 9999 } * 9999 } * 9999` is refused
        after one inner copy, not after 200,000 steps."""
        seen = cost = None
        for k in range(n):
            state = _input_state(flow)
            if cost is not None and state == seen:
                self._would_pass(cost * (n - k), st.span,
                                 f"{n - k:,} more copies of {_steps(cost)} each would pass the limit")
            seen, before = state, self.nodes
            self._step(st.span)
            self.item(st.unit, env, flow, scope, None)
            cost = self.nodes - before

    def scope_node(self, name, cls, block, sub: SeqFlow, shape, span):
        if shape is None or sub.shape is None:
            return []
        return [ir.Scope(name=name, cls=cls, block=block, body=tuple(sub.nodes), in_shape=shape,
                         out_shape=sub.shape, span=span)]

    # -- items
    def item(self, unit, env: Env, flow, scope: NameScope, label=None) -> None:
        values = flow.values if isinstance(flow, SeqFlow) else None
        if values is not None and values.pack is not None and self._reads_several(unit, env):
            # `from a, b` then a block: the block takes the results as its inputs.
            self._pack, values.pack = values.pack, None
        shape, shared = flow.next_input(self, unit.span)
        self._flow_values = values
        if isinstance(unit, ast.Side):
            self.side_flow = flow if getattr(flow, "network", False) and label is None else None
        if label is not None and not isinstance(unit, ast.Use):
            # A labelled group or combinator is a scope of its own.
            name = scope.name(self, label, unit.span)
            mkey = None
            if isinstance(unit, ast.Group) and self._memo is not None:
                mkey = self._group_key(unit, env, scope, shape, shared, values)
                if mkey is not None and self._group_hit(mkey, flow, scope, name, shape, unit, values):
                    return
            inner = NameScope(scope)
            sub = SeqFlow(shape, shared)
            sub.values = values
            if mkey is not None:
                # Expanded here, not in a helper: a frame more per level would move where
                # Python's stack runs out for deep specs.
                region = self._region()
                before = values.dangling if values is not None else None
                if values is not None:
                    values.dangling = memo.UNSET  # nothing inside reads it: no `from`, no merge
                try:
                    self.run(unit.body, Env({}, env), sub, inner)
                    self.close(inner, sub)
                    left = memo.UNSET if values is None else values.dangling
                    if sub.shape is not None:
                        self._remember(mkey, region, scope, sub, left)
                finally:
                    region.close()
                    if values is not None and values.dangling is memo.UNSET:
                        values.dangling = before
            elif isinstance(unit, ast.Group):
                self.run(unit.body, Env({}, env), sub, inner)
                self.close(inner, sub)
            else:
                nodes, out, out_shared = self.unit(unit, env, shape, shared, inner)
                sub.accept(nodes, out, out_shared, unit.span)
                self.close(inner, sub)
            if values is not None and values.several is not None:
                # A labelled group is one module of one result.
                dataflow.one_tensor(self, values, values.several[2], f"group `{name}` ends with one result")
                sub.shape = None
            flow.accept(self.scope_node(name, None, None, sub, shape, unit.span), sub.shape,
                        sub.shared, unit.span)
            if values is not None and not isinstance(unit, ast.Group):
                values.dangling = unit.span
            return
        nodes, out, out_shared = self.unit(unit, env, shape, shared, scope, label)
        self._pack = None  # what a use that failed before it reached its block did not take
        flow.accept(nodes, out, out_shared, unit.span)
        if values is not None and not isinstance(unit, (ast.Group, ast.Side)):
            values.dangling = unit.span

    def unit(self, unit, env: Env, shape, shared, scope: NameScope, label=None):
        if isinstance(unit, ast.Use):
            return self.use(unit, env, shape, shared, scope, label)
        if isinstance(unit, ast.Group):
            sub = SeqFlow(shape, shared)
            sub.values = self._flow_values
            self.run(unit.body, Env({}, env), sub, scope)
            return sub.nodes, sub.shape, sub.shared
        return COMBINATORS[type(unit)](self, unit, env, shape, shared, scope)

    def use(self, use: ast.Use, env: Env, shape, shared, scope, label):
        target = env.lookup(use.name, None)
        if not isinstance(target, (BlockRef, LayerRef)) and target is not POISON:
            # A statement is a layer or a block: a variable of another type does
            # not hide the layer or block of the same name (`dropout(dropout)`).
            g = self._global(use.name)
            if g is not KeyError:
                target = g
            elif use.name in LAYERS:
                target = LayerRef(use.name)
        if target is POISON:
            scope.lose(label, inside=True)  # a parameter whose value is unknown: a block, perhaps
            return [], None, False
        if target is None:
            units = list(LAYERS) + list(self.program.blocks)
            near = closest(use.name, units +
                           [n for n in env.names() if isinstance(env.lookup(n), (BlockRef, LayerRef))])
            # The layer, or the block and the labels in it, that the name was meant to be.
            scope.lose(label, inside=near not in LAYERS)
            like = [] if near else related(use.name, units)
            at = Span(**{**use.span.model_dump(), "end_column": use.span.column + len(use.name),
                         "end_line": use.span.line})
            self.report(Diagnostic("E0102", f"unknown layer or block `{short(use.name)}`", at,
                                   "not a layer, a block or a block parameter",
                                   f"did you mean `{near}`?" if near else
                                   (f"{nearest_units(like)}; or " if like else "") +
                                   "define it with `block " + short(use.name) + "(...) { ... }` "
                                   "or import a spec that does", fixes=rename(near, at)))
            return [], None, False
        if isinstance(target, ExternRef):
            return extern.use(self, target, use, env, shape, shared, scope, label)
        if isinstance(target, LayerRef):
            built = self.layer(target.kind, use, env, shape, shared, scope, label)
            if not built[0]:
                scope.lose(label)
            return built
        if isinstance(target, BlockRef):
            return self.block(target, use, env, shape, shared, scope, label)
        scope.lose(label)
        self.report(Diagnostic("E0213", f"`{short(use.name)}` is a {type_name(target)}, not a layer or block",
                               use.span, f"its value is {show(target)}",
                               "only layers and blocks can be used as statements"))
        return [], None, False

    def bind(self, what: str, params: list[tuple[str, bool]], use: ast.Use, env: Env,
             extra_keywords: bool = False):
        """Match a call's arguments to parameters; values are evaluated in ``env``. With
        ``extra_keywords``, a keyword no parameter names is taken too (``**kwargs``)."""
        names = [p for p, _ in params]
        bound: dict[str, tuple[object, ast.Arg]] = {}
        meant: set[str] = set()  # required arguments an unknown keyword was taken to mean
        ok = True
        for i, a in enumerate(use.args):
            if a.name is None:
                if any(b.name is not None for b in use.args[:i]):
                    self.report(Diagnostic("E0201", "positional argument after a keyword argument",
                                           a.span, "positional", "put positional arguments first"))
                    ok = False
                    continue
                if i >= len(names):
                    self.report(Diagnostic("E0201", f"too many arguments to `{short(what)}`", a.span,
                                           f"argument {i + 1} of at most {len(names)}",
                                           f"`{short(what)}` takes " +
                                           (", ".join(map(short, names)) or "no arguments")))
                    ok = False
                    continue
                key = names[i]
            else:
                key = a.name
                if key not in names and not extra_keywords:
                    inferred = key in INFERRED and what in LAYERS
                    alias = TORCH_SPELLINGS.get(key)
                    near = None if inferred else alias if alias in names else closest(key, names)
                    if near is not None and near not in bound and all(b.name != near for b in use.args):
                        meant.add(near)  # its own E0203 would only repeat this one
                    help = (f"netdsl infers `{key}` from the layer's input; remove it" if inferred else
                            f"did you mean `{near}`?" if near else
                            f"`{short(what)}` takes " + (", ".join(map(short, names)) or "no arguments"))
                    fixes = _removal(use.args, a) if inferred else rename(near, a.span)
                    self.report(Diagnostic("E0202", f"`{short(what)}` has no argument `{short(key)}`", a.span,
                                           "unknown argument", help, fixes=fixes))
                    ok = False
                    continue
                if key in bound:
                    first = bound[key][1].span
                    self.report(Diagnostic("E0205", f"argument `{short(key)}` given twice", a.span,
                                           "given again here",
                                           f"the first `{short(key)}` is at {first.line}:{first.column}; "
                                           "keep one of them"))
                    ok = False
                    continue
            bound[key] = (self.value(a.value, env), a)
        for name, required in params:
            if required and name not in bound and name not in meant:
                self.report(Diagnostic("E0203", f"`{what}` needs argument `{name}`", use.span,
                                       f"`{name}` is missing",
                                       f"for example `{what}(" + ", ".join(
                                           n for n, r in params if r) + ")`"))
                ok = False
        if any(v is POISON for v, _ in bound.values()):
            ok = False
        return bound, ok

    def layer(self, kind: str, use: ast.Use, env: Env, shape, shared, scope: NameScope, label,
              functional: bool = False):
        sig = LAYERS[kind]
        bound, ok = self.bind(kind, [(a.name, a.default is REQUIRED) for a in sig.args], use, env)
        if ok and shape is not None and self._torch_order(sig, use, bound, shape):
            return [], None, False
        values: dict[str, object] = {}
        for a in sig.args:
            if a.name in bound:
                v, node = bound[a.name]
                if v is POISON:
                    continue
                try:
                    values[a.name] = a.convert(v)
                except ArgTypeError as e:
                    self.report(Diagnostic("E0206", f"`{kind}` argument `{a.name}` must be {e.expected}",
                                           node.value.span, f"found {type_name(v)} {show(v)}",
                                           self._arg_help(a, v, e.expected, node.value.span),
                                           fixes=_unquoted(a, v, node.value.span)))
                    ok = False
            else:
                values[a.name] = a.convert(a.default) if a.default is not REQUIRED else None
        name = kind if functional else scope.name(self, label, use.span)
        if label is not None and "." in label and sig.bare_parameter:
            self.report(Diagnostic("E0111", f"invalid label \"{label}\" for `{kind}`", use.span,
                                   f"`{kind}` is a parameter of its module, not a module in a container",
                                   f"a dotted label puts a module in a container; give `{kind}` a name "
                                   f"without a `.`, e.g. \"{_label_like(label)}\""))
            return [], None, False
        if not ok or shape is None:
            return [], None, False
        if not self._ranges(sig, values, bound, use):
            return [], None, False
        init = {} if functional else self.init_for(kind, label, scope)
        result = self.place(kind, values, bound, use, shape, shared, name, init,
                            functional=functional)
        if label is not None and result[0]:
            scope.layers[name] = (kind, values, result[0][0])
        return result

    def _torch_order(self, sig, use: ast.Use, bound: dict, shape) -> bool:
        """Report a call written in torch's argument order (E0223), whose first
        argument netdsl infers; True if one was."""
        positional = [v for v, a in bound.values() if a.name is None]
        meant = sig.torch_order(positional, shape) if positional else None
        if meant is None:
            return False
        keywords = [f"{a.name} = {show(v)}" for v, a in bound.values() if a.name is not None]
        if keywords:
            meant = (meant[:-1] + ", " if meant.endswith(")") else meant + "(") + ", ".join(keywords) + ")"
        first = next(a for a in use.args if a.name is None)
        self.report(Diagnostic("E0223", f"`{sig.name}` reads its arguments in netdsl's order, not torch's",
                               first.span, f"{show(positional[0])} is the input's size here "
                               f"{shapes.fmt(shape)}, which netdsl infers",
                               f"did you mean `{meant}`? netdsl takes no input size; if the values "
                               "are meant as written, give them by keyword"))
        return True

    def place(self, kind: str, values: dict, bound: dict, use: ast.Use, shape, shared, name: str,
              init: dict, **flags):
        """The IR node of layer ``kind`` with argument ``values`` on input ``shape``,
        its output shape, and whether that output may not be overwritten in place."""
        sig = LAYERS[kind]
        try:
            sig.check(values)
            derived, out = sig.infer(values, shape)
        except LayerError as e:
            at = bound[e.arg][1].span if e.arg in bound else use.span
            self.report(Diagnostic(e.code, e.message, at, e.label, e.help,
                                   fixes=self._line_before(use.span, e.before) if e.before else ()))
            return [], None, False
        if any(d > self.limits.max_dim for d in out):
            self.report(Diagnostic("E0407", f"a dimension of {max(out)} is over the limit",
                                   use.span, f"output {shapes.fmt(out)}",
                                   f"the limit is {self.limits.max_dim} (--limit max_dim=N)"))
            return [], None, False
        if values.get("inplace") and shared:
            if isinstance(shared, str):
                label, help = (f"`{shared}` before it keeps its output for the backward pass",
                               f"torch's {shared} computes its gradient from its output; "
                               "drop `inplace = true` here")
            else:
                label, help = ("its input is also used elsewhere",
                               "its input feeds a shortcut, a gate, another branch or the caller; "
                               "drop `inplace = true` here")
            self.report(Diagnostic(
                "E0311", f"in-place `{kind}` would overwrite a tensor that is used again", use.span,
                label, help))
            return [], None, False
        try:
            # Arguments the IR keeps as the inferred fields instead (layer_norm's `dims`
            # becomes its normalized_shape) are left out.
            own = _own_fields(sig.node)
            fields = {k: v for k, v in {**values, **derived}.items() if k in own}
            node = sig.node(kind=kind, name=name, in_shape=shape, out_shape=out, span=use.span,
                            init=init, **fields, **flags)
        except ValidationError as e:  # a range the catalogue did not check: still the user's
            first = e.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            at = bound[field][1].span if field in bound else use.span
            self.report(Diagnostic("E0204", f"invalid value for `{kind}` argument `{field}`", at,
                                   first["msg"], None))
            return [], None, False
        if kind in SAVES_OUTPUT:
            return [node], out, kind  # its backward reads its output: no in-place op after it
        passes = kind in PASS_THROUGH or values.get("inplace", False)
        return [node], out, shared if passes else False

    def _line_before(self, span: Span, text: str) -> tuple[Fix, ...]:
        """The fix that writes ``text`` on a line of its own before the line of ``span``,
        indented as that line is."""
        lines = self._lines(span.file)
        if not 0 < span.line <= len(lines):
            return ()
        line = lines[span.line - 1]
        indent = line[:len(line) - len(line.lstrip())]
        at = Span(file=span.file, line=span.line, column=len(indent) + 1, end_line=span.line,
                  end_column=len(indent) + 1)
        return (Fix(f"add `{text}` before it", at, f"{text}\n{indent}"),)

    def _arg_help(self, a, v, expected: str, span) -> str | None:
        """The help for a layer argument of the wrong type."""
        if isinstance(v, float) and expected.startswith("an integer"):
            return as_int(self.text(span), v, "channels" if "channels" in a.name or "features" in a.name
                          else "count")
        if v == "same" and a.name == "padding":
            takes = sorted(k for k, sig in LAYERS.items() if _takes(sig.arg("padding"), "same"))
            return (f"TensorFlow's `padding = \"same\"` is {' and '.join(f'`{k}`' for k in takes)}'s; give this "
                    "layer its padding in pixels (half the window keeps the size at stride 1)")
        if isinstance(v, str) and a.default is not REQUIRED and not isinstance(a.default, str):
            return f"remove the quotes: the default is `{a.name} = {show(a.default)}`"
        if a.default is not REQUIRED and a.default is not None:
            return f"for example `{a.name} = {show(a.default)}`, the default"
        return None

    def _ranges(self, sig, values: dict, bound: dict, use: ast.Use) -> bool:
        """Argument ranges the catalogue states (``Arg.min``, ``Arg.unit``), checked
        before shapes so no rule sees a zero stride."""
        kind = sig.name
        for a in sig.args:
            v, key = values.get(a.name), a.name
            if v is None or isinstance(v, (bool, str)):
                continue
            at = bound[key][1].span if key in bound else use.span
            if a.min is not None:
                items = v if isinstance(v, tuple) else (v,)
                bad = [x for x in items if x < a.min or x > self.limits.max_dim]
                if bad:
                    if bad[0] > self.limits.max_dim:
                        self.report(Diagnostic("E0407", f"`{kind}` argument `{key}` is over the limit", at,
                                               f"{bad[0]} > {self.limits.max_dim}",
                                               "raise it with --limit max_dim=N"))
                    else:
                        self.report(Diagnostic("E0204", f"`{kind}` argument `{key}` must be at least {a.min}",
                                               at, f"found {bad[0]}",
                                               f"give `{key}` a value of {a.min} or more" +
                                               _RANGE_HINTS.get(key, "")))
                    return False
            if isinstance(v, float) and abs(v) > FLOAT32_MAX:
                # torch applies the value to float32 tensors, where it would be infinite:
                # every forward would fail ("cannot be converted ... without overflow").
                self.report(Diagnostic("E0204", f"`{kind}` argument `{key}` is out of float32's range",
                                       at, f"found {v:g}",
                                       f"give `{key}` a value between -{FLOAT32_MAX:.4g} and {FLOAT32_MAX:.4g}: "
                                       "torch applies it to float32 tensors"))
                return False
            if a.unit and not 0.0 <= v <= 1.0:
                default = a.default if a.default is not REQUIRED else 0.5
                self.report(Diagnostic("E0204", f"`{kind}` argument `{key}` must be between 0 and 1",
                                       at, f"found {v}",
                                       f"`{key}` is a " + ("probability" if key == "p" else "fraction") +
                                       f"; torch's default is {default}"))
                return False
        return True

    def init_for(self, kind: str, label: str | None, scope: NameScope) -> dict:
        params = PARAMETERS.get(kind, ())
        out: dict[str, ir.InitScheme] = {}
        s: NameScope | None = scope
        while s is not None and len(out) < len(params):
            # A label rule reaches into nested blocks and groups like a kind rule does:
            # `init bn3.weight = zeros` in a network zeroes the bn3 of every block in it.
            # The nearest scope wins; within one scope a label beats a kind.
            for i in range(len(s.init) - 1, -1, -1):
                target, param, scheme, _ = s.init[i]
                if param in out or param not in params:
                    continue
                if target == label and label not in LAYERS:
                    out[param] = scheme
                    s.matched.add(i)
                    self.record.matched.append((s, i))
                    if not self._fan_fits(kind, param, scheme):
                        del out[param]
            for i in range(len(s.init) - 1, -1, -1):
                target, param, scheme, _ = s.init[i]
                if target == kind and param in params and param not in out:
                    out[param] = scheme
            s = s.parent
        return out

    def _reads_several(self, unit, env: Env) -> bool:
        """Whether ``unit`` may take the results of `from a, b`: a block's use, or a use
        whose target a mistake made unknown (which `use` reports, and nothing more)."""
        if not isinstance(unit, ast.Use):
            return False
        target = env.lookup(unit.name, None)
        if not isinstance(target, (BlockRef, LayerRef)) and target is not POISON:
            g = self._global(unit.name)
            target = g if g is not KeyError else LayerRef(unit.name) if unit.name in LAYERS else target
        return not isinstance(target, LayerRef)

    def block(self, ref: BlockRef, use: ast.Use, env: Env, shape, shared, scope, label):
        defn = ref.defn
        pack, self._pack = self._pack, None
        caller = self._flow_values
        # The tensors it is given: the results of `from a, b`, or the current one.
        given = [s for _, s in pack] if pack is not None else [shape]
        if pack is not None:
            shape = given[0]
            shared = True
        several = pack is not None or memo.takes_tensors(defn)
        depth = len(self.chain)
        if depth > self.record.chain_peak:
            self.record.chain_peak = depth
        if depth >= self.limits.max_block_depth:
            self.report(Diagnostic("E0405", f"blocks nested more than {self.limits.max_block_depth} "
                                   "deep", use.span, f"`{defn.name}` used again here",
                                   "a block that uses itself needs a condition that ends the recursion"))
            raise _Abort
        params = [(p.name, p.default is None) for p in defn.params]
        bound, ok = self.bind(defn.name, params, use, env)
        name = scope.name(self, label, use.span)
        benv = Env({}, self.globals)
        for p in defn.params:
            if p.name in _INPUT_NAMES:
                self.report(Diagnostic("E0109", f"`{p.name}` cannot be a block parameter", p.span,
                                       "reserved name", f"`{p.name}` is always the {_INPUT_NAMES[p.name]}"))
            if p.name in bound:
                benv.vars[p.name] = bound[p.name][0]
            elif p.default is not None:
                benv.vars[p.name] = self.value(p.default, benv)
            else:
                benv.vars[p.name] = POISON
        benv.vars["in_channels"] = shape[0] if shape else POISON
        # An instance of a block with the same arguments and input as an earlier one
        # does the same work: refuse it before expanding it when that is over the limit.
        key = _instance_key(defn.name, benv.vars, tuple(given) if pack is not None else shape, shared, ok)
        if key in self._instance_steps:
            steps = self._instance_steps[key][0]
            self._would_pass(steps, use.span, f"this instance of `{short(defn.name)}` takes "
                             f"{_steps(steps)}, like one before it, and would pass the limit")
        mkey = None
        if self._memo is not None and ok and shape is not None and self._depth < memo.MAX_DEPTH and not several:
            mkey = memo.instance_key(defn, benv.vars, shape, shared, memo.rules_key(scope))
            hit = None if mkey is None else self._memo.get(mkey)
            if hit is not None and self._fits(hit):
                self._replay(hit, scope)
                if key is not None:
                    self._instance_steps[key] = (hit.steps_total, benv.vars)
                    self.record.log_steps(key, (hit.steps_total, benv.vars))
                node = ir.Scope(name=name, cls=defn.cls or camel(defn.name), block=defn.name,
                                body=hit.body, in_shape=shape, out_shape=hit.shape, span=use.span)
                return [node], hit.shape, hit.shared
        # After the keys, which hold the shape already (and a list by its identity).
        benv.vars["in_shape"] = tuple(shape) if shape else POISON
        region = self._region()
        try:
            inner = NameScope(scope)
            sub = SeqFlow(shape if ok else None, shared, block=True)
            sub.values = ValueScope(defn.name)
            sub.values.given = given if ok else []
            self.chain.append((defn.name, use.span))
            try:
                self.run(defn.body, benv, sub, inner)
                dataflow.close(self, sub.values)
                dataflow.close_block(self, sub, defn.name)
            finally:
                self.chain.pop()
            steps = self.nodes - region.nodes
            region.nested()
            if key is not None:
                # The arguments are kept alive with the count: lists are keyed by identity.
                self._instance_steps[key] = (steps, benv.vars)
                self.record.log_steps(key, (steps, benv.vars))
            self.close(inner, sub)
            if mkey is not None and sub.shape is not None:
                self._remember(mkey, region, scope, sub)
        finally:
            region.close()
        if not ok:
            return [], None, False
        if several:
            return dataflow.block_node(self, defn.name, name, defn.cls or camel(defn.name), sub, pack, given,
                                       use.span, caller)
        return self.scope_node(name, defn.cls or camel(defn.name), defn.name, sub, shape, use.span), \
            sub.shape, sub.shared

    def _group_key(self, unit: ast.Group, env: Env, scope, shape, shared, values):
        """The memo key of a labelled group: the values of the names it mentions here, its
        input and the init rules around it; None where it is always expanded. Its items
        share the value scope around it: a group that names or reads results is not kept,
        and of the others the memo keeps which result they leave unread."""
        names = memo.group_names(unit)
        if (names is None or shape is None or self._depth >= memo.MAX_DEPTH
                or (values is not None and values.no_current)):
            return None
        return memo.group_key(unit, names, env, shape, shared, memo.rules_key(scope), values)

    def _group_hit(self, mkey, flow, scope, name, shape, unit, values) -> bool:
        hit = self._memo.get(mkey)
        if hit is None or not self._fits(hit):
            return False
        self._replay(hit, scope)
        if values is not None and hit.dangling is not memo.UNSET:
            values.dangling = hit.dangling
        flow.accept([ir.Scope(name=name, body=hit.body, in_shape=shape, out_shape=hit.shape,
                              span=unit.span)], hit.shape, hit.shared, unit.span)
        return True

    # -- the memo of block instances and labelled groups (memo.py)
    def _region(self) -> memo.Region:
        return self.record.region(len(self.chain), self._depth, self.nodes, len(self.diags))

    def _remember(self, mkey, region: memo.Region, scope, sub, dangling=None) -> None:
        """Keep what the expansion that ``region`` watched made, if it is safe to replay."""
        entry = self.record.entry(region, scope, self.nodes, self._depth, len(self.diags),
                                  body=tuple(sub.nodes), shape=sub.shape, shared=sub.shared, dangling=dangling)
        if entry is not None:
            memo.store(self._memo, mkey, entry)

    def _fits(self, hit: memo.Entry) -> bool:
        """Whether expanding the instance here would run as it did when it was kept."""
        return (self.nodes + hit.need <= self.limits.max_nodes
                and len(self.chain) + hit.chain < self.limits.max_block_depth
                and self._depth + hit.depth <= memo.MAX_DEPTH)

    def _replay(self, hit: memo.Entry, scope) -> None:
        """What expanding the instance or group would do to the checker, from the memo: its
        steps, the outer init rules it uses, the names bound in it, its nested instances' work."""
        self.record.replay(hit, scope, len(self.chain), self._depth, self.nodes)
        self.nodes += hit.steps_total
        for entry in hit.inner:
            self.inner_names.setdefault(entry[0], (entry[1], entry[2]))
        for k, v in hit.steps:
            self._instance_steps[k] = v


#: The rule of each kind of statement: called with the checker, the statement, its
#: env, the flow it joins and the name scope it names modules in.
STATEMENTS: dict[type[ast.Stmt], Callable[[Checker, Any, Env, Flow, NameScope], None]] = {
    ast.Let: Checker.let,
    ast.Assert: Checker.assert_,
    ast.Input: Checker.input,
    ast.Init: Checker.init_rule,
    ast.For: Checker.for_,
    ast.If: Checker.if_,
    ast.Labelled: Checker.labelled,
    ast.Repeat: Checker.repeat,
    # Units: each makes modules, which `item` wires into the flow and names.
    ast.Use: Checker.item,
    ast.Group: Checker.item,
    ast.Residual: Checker.item,
    ast.Concat: Checker.item,
    ast.Dense: Checker.item,
    ast.Gate: Checker.item,
    ast.Side: Checker.item,
    ast.Split: Checker.item,
    ast.Reuse: calls.reuse,
    ast.Apply: calls.apply,
    ast.Sides: combinators.sides_order,
    ast.Bind: dataflow.bind,
    ast.From: dataflow.from_,
    ast.Merge: dataflow.merge,
    ast.Output: dataflow.output,
    ast.NamedInput: dataflow.named_input,
}

#: The rule of each combinator, the units besides layer and block uses and groups:
#: called with the checker, the statement, its env, the input's shape, whether the
#: input is shared, and the name scope; it gives the unit's nodes, shape and sharing.
COMBINATORS: dict[type[ast.Stmt], Callable[[Checker, Any, Env, Shape | None, Shared, NameScope], Built]] = {
    ast.Residual: combinators.residual,
    ast.Concat: combinators.concat,
    ast.Dense: combinators.dense,
    ast.Gate: combinators.gate,
    ast.Side: combinators.side,
    ast.Split: dataflow.split,
}


@functools.cache
def _own_fields(node_cls) -> frozenset:
    """The fields a layer's IR class adds to :class:`ir.Layer` (read once per class:
    pydantic's ``model_fields`` is a property that costs a call each time)."""
    return frozenset(node_cls.model_fields) - frozenset(ir.Layer.model_fields)


def as_condition(text: str, v) -> str:
    """The help for a value used as a condition that is not true or false: the
    comparison that was probably meant, written out.

    >>> as_condition("p", 0.5)
    'compare it explicitly: `p > 0` or `p != 0`'
    >>> as_condition("depths", (1, 2))
    'compare it explicitly: `len(depths) > 0`'
    """
    t = text if _NAME.fullmatch(text) or text == "it" else f"({text})"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"compare it explicitly: `{t} > 0` or `{t} != 0`"
    if isinstance(v, (tuple, str)):
        return f"compare it explicitly: `len({text}) > 0`"
    if v is None:
        return f"compare it explicitly: `{t} != none`"
    return "a condition is a comparison (`==`, `!=`, `<`, `in`, ...) or `true` or `false`"


def as_int(text: str, v, use: str = "channels") -> str | None:
    """The help for a value that must be an integer: for a float, the rounding functions
    that make one, with what they give; ``use`` says what the integer counts.

    >>> as_int("width * 1.5", 48.0)
    '`width * 1.5` is 48.0, a float: write `int(width * 1.5)` (48) or `make_divisible(width * 1.5, 8)` (48)'
    >>> as_int("depth * 1.1", 2.2, "count")
    '`depth * 1.1` is 2.2, a float: write `int(depth * 1.1)` (2) or `ceil(depth * 1.1)` (3)'
    """
    if not isinstance(v, float):
        return None
    if text == "it":
        return (f"this is {show(v)}, a float: round it with `int(...)`, `round(...)`, `ceil(...)` "
                "or `make_divisible(..., 8)`")
    if use == "channels":
        other, value = f"make_divisible({text}, 8)", _make_divisible(v, 8)
    else:
        other, value = f"ceil({text})", math.ceil(v)
    return f"`{text}` is {show(v)}, a float: write `int({text})` ({int(v)}) or `{other}` ({value})"


def as_list(text: str, v) -> str:
    """The help for a value that must be a list.

    >>> as_list("n", 3)
    'write a list, e.g. `range(n)` for [0, 1, 2]'
    """
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        items = show(tuple(range(v))) if v <= 4 else f"[0, 1, …, {v - 1}]"
        return f"write a list, e.g. `range({text})` for {items}"
    return "write a list, e.g. `[1, 2, 3]` or `range(n)`"


def _label_like(text: str) -> str:
    """A valid label close to ``text``: what is not a letter, digit or `_` becomes `_`.

    >>> _label_like("stem.conv"), _label_like("layer 1")
    ('stem_conv', 'layer_1')
    """
    return short("".join(c if c.isalnum() or c == "_" else "_" for c in text))


def _steps(n: int) -> str:
    return f"{n:,} step{'s' if n != 1 else ''}"


def _input_state(flow):
    """What the next item of ``flow`` will see as its input, to compare with what the
    item before it saw (a new object, equal to nothing, where that is not known)."""
    if isinstance(flow, SeqFlow):
        return flow.shape, flow.shared, flow.has_input
    if isinstance(flow, ConcatFlow):
        return ()  # every branch sees the concat's input
    return object()


def _value_key(v):
    # Lists by identity (hashing a long one per use would cost its length each time);
    # the type beside the value, because 1 == 1.0 == true.
    if isinstance(v, tuple):
        return tuple, id(v)
    if isinstance(v, BlockRef):
        return BlockRef, v.name
    if isinstance(v, (LayerRef, bool, int, float, str)) or v is None or v is POISON:
        return type(v), v
    raise TypeError(type(v))


def _instance_key(name: str, values: dict, shape, shared: bool, ok: bool):
    """What decides the work of expanding a block instance, or None if it cannot be told.

    >>> _instance_key("b", {"c": 4, "k": (1, 2)}, (3, 8, 8), False, True)[1][0]
    ('c', (<class 'int'>, 4))
    """
    try:
        # A permuted shape equals the plain one, but `linear` reads its layout.
        layout = getattr(shape, "order", None)
        return name, tuple((k, _value_key(v)) for k, v in values.items()), shape, layout, shared, ok
    except TypeError:
        return None


def _source_at(lines: list[str], span: Span) -> str:
    """The text a span covers (its first five lines) of a source's ``lines``.

    >>> _source_at(["a = 1", "b = width + 2"], Span(line=2, column=5, end_column=14))
    'width + 2'
    """
    lines = lines[span.line - 1:(span.end_line or span.line)][:5]
    if not lines:
        return ""
    if len(lines) == 1 and span.end_column and (span.end_line in (None, span.line)):
        return lines[0][span.column - 1:span.end_column - 1]
    lines[0] = lines[0][span.column - 1:]
    return "\n".join(lines)


def _has_expr(v) -> bool:
    """Whether a Python override holds an expression (a string it was given) anywhere."""
    todo = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, ast.Expr):
            return True
        if isinstance(x, tuple):
            todo.extend(x)
    return False


def _params_of(defn, program: Program):
    """The parameters of the network a variant is based on, or () when there is none
    (a missing base, or variants in a cycle: the caller reports either)."""
    seen = set()
    while isinstance(defn, ast.NetworkAlias):
        if defn.name in seen:
            return ()
        seen.add(defn.name)
        defn = program.networks.get(defn.base.id)
        if defn is None:
            return ()
    return defn.params


def _removal(args: tuple[ast.Arg, ...], a: ast.Arg) -> tuple[Fix, ...]:
    """The fix that removes argument ``a`` from ``args``, and one comma beside it."""
    k = next(i for i, b in enumerate(args) if b is a)
    end = span_of(a.value)
    if k > 0:
        before = span_of(args[k - 1].value)
        at = (before.end_line or before.line, before.end_column) if before is not None else None
    else:
        at = (a.span.line, a.span.column)
        if len(args) > 1:
            end = args[1].span.replace(end_line=args[1].span.line, end_column=args[1].span.column)
    if at is None or at[1] is None or end is None or end.end_column is None:
        return ()
    span = Span(file=a.span.file, line=at[0], column=at[1], end_line=end.end_line or end.line,
                end_column=end.end_column)
    return (Fix(f"remove `{a.name}`", span, ""),)


def _unquoted(a, v, span: Span | None) -> tuple[Fix, ...]:
    """The fix of "remove the quotes", where the text in them is a value netdsl writes
    without (``"false"``, ``"True"``, ``"2"``)."""
    if not isinstance(v, str) or a.default is REQUIRED or isinstance(a.default, str) or span is None:
        return ()
    text = v.strip()
    if text.lower() in ("true", "false", "none"):
        text = text.lower()
    elif not re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?", text):
        return ()
    return (Fix(f"remove the quotes: `{text}`", span, text),)
