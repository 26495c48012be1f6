"""Expression evaluation: netdsl's own interpreter for its pure expression
language. No Python ``eval``; every operation is checked and a mistake is a
diagnostic at the smallest span that shows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any, cast

from .. import ir
from ..diagnostics import Diagnostic, Fix, closest, listing, related, rename, short
from ..layers import LAYERS
from ..limits import Limits
from ..span import Span
from ..syntax import ast
from .values import POISON, BlockRef, LayerRef, show, type_name

_MISSING = object()


class EvalError(Exception):
    """Raised inside evaluation; the checker records ``diagnostic`` and goes on."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class Env:
    """Lexical scopes: a chain of name → value frames.

    >>> e = Env({"a": 1}); Env({"b": 2}, e).lookup("a")
    1
    """

    __slots__ = ("vars", "parent")

    def __init__(self, vars: dict[str, Any] | None = None, parent: Env | None = None):
        self.vars = vars if vars is not None else {}
        self.parent = parent

    def lookup(self, name: str, default=KeyError):
        env: Env | None = self
        while env is not None:
            if name in env.vars:
                return env.vars[name]
            env = env.parent
        if default is KeyError:
            raise KeyError(name)
        return default

    def names(self) -> list[str]:
        out: list[str] = []
        env: Env | None = self
        while env is not None:
            out.extend(env.vars)
            env = env.parent
        return out


def err(code: str, message: str, node, label: str = "", help: str | None = None,
        fixes: tuple[Fix, ...] = ()) -> EvalError:
    return EvalError(Diagnostic(code, message, getattr(node, "span", None), label, help, fixes=fixes))


def span_of(node) -> Span | None:
    """The span of an AST node. Every expression and statement has one, but their base
    classes (``ast.Expr``, ``ast.Stmt``) do not declare it, so a type checker knows it
    only through here."""
    return getattr(node, "span", None)


def _make_divisible(v, divisor, min_value=None):
    # torchvision's _make_divisible, so channel counts match the reference.
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _repetition(left, right) -> bool:
    """Whether ``left * right`` repeats a list or a string by an integer (not a bool)."""
    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)
    return (isinstance(left, (tuple, str)) and count(right)) or (isinstance(right, (tuple, str)) and count(left))


def _numbers(*vs):
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs)


def _ints(*vs):
    return all(isinstance(v, int) and not isinstance(v, bool) for v in vs)


def _no_globals(name: str) -> Any:
    return KeyError


def _no_blocks() -> Any:
    return ()


def _no_charge(n: int, node: Any) -> None:
    return None


class Evaluator:
    """Evaluates AST expressions in an :class:`Env`.

    >>> from netdsl.syntax.parser import parse_expr
    >>> Evaluator().evaluate(parse_expr("make_divisible(32 * 1.1, 8)"), Env())
    32
    """

    def __init__(self, limits: Limits | None = None, globals: Callable[[str], Any] | None = None,
                 charge: Callable[[int, Any], None] | None = None,
                 blocks: Callable[[], Any] | None = None):
        self.limits = limits or Limits()
        self.globals = globals or _no_globals
        # The names of the blocks ``globals`` knows, for suggestions.
        self.blocks = blocks or _no_blocks
        # Called with the number of list items an operation walks, and the node doing it:
        # the checker counts them against max_nodes, since a loop of 200,000 steps that each
        # sum a 10,000-item list is 2e9 operations however few layers it makes.
        self.charge = charge or _no_charge
        self.init_context = False
        self._shape: dict[int, tuple[tuple, int, int]] = {}

    def release(self) -> None:
        """Drop the callbacks given to the constructor, which may hold their owner, so that
        the owner and the evaluator hold no cycle between them."""
        self.globals, self.blocks, self.charge = _no_globals, _no_blocks, _no_charge

    # ------------------------------------------------------------ entry
    def evaluate(self, node: ast.Expr, env: Env):
        method = getattr(self, "_" + type(node).__name__)
        return method(node, env)

    def check_int(self, v, node):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > self.limits.max_int:
            # Bits, not digits: Python refuses str() of an int over 4300 digits.
            raise err("E0215", "integer overflow", node, f"this value needs {abs(v).bit_length()} bits",
                      f"integers are limited to ±{self.limits.max_int}")
        if isinstance(v, float) and not math.isfinite(v):
            raise err("E0215", "number out of range", node, f"this gives {v}",
                      "keep numbers finite: no infinities or NaN")
        return v

    # ------------------------------------------------------------ atoms
    def _Number(self, node: ast.Number, env):
        return self.check_int(node.value, node)

    def _Constant(self, node: ast.Constant, env):
        return node.value

    def _String(self, node: ast.String, env):
        out = []
        for part in node.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            v = self.evaluate(part, env)
            if v is POISON:
                return POISON
            if isinstance(v, (int, str)) and not isinstance(v, bool):
                out.append(str(v))
            else:
                raise err("E0210", f"cannot put a {type_name(v)} in a string template", part,
                          f"this is {show(v)}", "template holes take integers or strings")
        text = self.check_size("".join(out), node)
        self.charge(len(text), node)
        return text

    def _List(self, node: ast.List, env):
        items = tuple(self.evaluate(i, env) for i in node.items)
        if POISON in items:
            return POISON
        return self.new_list(items, node)

    def new_list(self, items: tuple, node) -> tuple:
        """A list the spec builds, bounded in nesting and counted as work."""
        # `let b = [a]` line after line nests without brackets in the text; every
        # later use of such a value recurses, so nesting is bounded here too.
        limit = self.limits.max_nesting
        if self.nesting(items) > limit:
            raise err("E0402", f"a list nested deeper than {limit} levels", node, "too deep",
                      "raise it with --limit max_nesting=N if you mean it")
        self.charge(self.size(items), node)
        return items

    def _Name(self, node: ast.Name, env: Env):
        v = env.lookup(node.id, _MISSING)
        if v is not _MISSING:
            return v
        g = self.globals(node.id)
        if g is not KeyError:
            return g
        if node.id in LAYERS:
            return LayerRef(node.id)
        if node.id in INIT_SCHEMES and self.init_context:
            return INIT_SCHEMES[node.id](self, ast.Call(node, (), span=node.span), [], {})
        if node.id in BUILTINS or node.id in INIT_SCHEMES:
            raise err("E0210", f"`{node.id}` is a function and must be called", node,
                      "not called", f"write `{node.id}(...)`")
        units = list(LAYERS) + list(self.blocks())
        near = closest(node.id, env.names() + units)
        fixes = rename(near, node.span)
        if node.id in ("True", "False", "None"):
            help = f"netdsl writes `{node.id.lower()}` in lower case"
            fixes = rename(node.id.lower(), node.span)
        elif near:
            help = f"did you mean `{near}`?"
        else:
            # A value may be a layer or a block (`act = hardswish`): the name may be one netdsl lacks.
            like = related(node.id, units)
            help = (f"no layer or block is called `{short(node.id)}`; {nearest_units(like)}. "
                    "Or define it with `let`, or as a parameter of the enclosing block or network"
                    if like else
                    "define it with `let`, or as a parameter of the enclosing block or network")
        raise err("E0101", f"unknown name `{short(node.id)}`", node, "not defined", help, fixes)

    def _Index(self, node: ast.Index, env):
        value, index = self.evaluate(node.value, env), self.evaluate(node.index, env)
        if POISON in (value, index):
            return POISON
        if not isinstance(value, (tuple, str)):
            raise err("E0210", f"cannot index a {type_name(value)}", node.value,
                      f"this is {show(value)}", "only lists and strings can be indexed")
        if not _ints(index):
            raise err("E0210", f"list index must be an integer, found {type_name(index)}",
                      node.index, f"this is {show(index)}")
        if not -len(value) <= index < len(value):
            raise err("E0212", "index out of range", node.index,
                      f"index {index} into a list of length {len(value)}",
                      f"valid indices are 0 to {len(value) - 1}" if value else "the list is empty")
        return value[index]

    def _Slice(self, node: ast.Slice, env):
        value = self.evaluate(node.value, env)
        bounds = [None if b is None else self.evaluate(b, env) for b in (node.start, node.stop)]
        if value is POISON or POISON in bounds:
            return POISON
        if not isinstance(value, (tuple, str)):
            raise err("E0210", f"cannot slice a {type_name(value)}", node.value,
                      f"this is {show(value)}", "only lists and strings can be sliced")
        for b, expr in zip(bounds, (node.start, node.stop), strict=True):
            if b is not None and not _ints(b):
                raise err("E0210", f"slice bounds must be integers, found {type_name(b)}", expr,
                          f"this is {show(b)}")
        part = value[bounds[0]:bounds[1]]
        self.charge(len(part), node)
        return part

    def _ListComp(self, node: ast.ListComp, env: Env):
        # Clause by clause, in Python's order: the item lists of each `for` are counted as
        # work (a comprehension inside one would multiply unseen), and every binding so
        # far is one scope, however many clauses there are.
        bindings: list[dict] = [{}]
        clauses = ((node.var, node.iterable, node.cond),) + tuple((c.var, c.iterable, c.cond) for c in node.more)
        for var, iterable, cond in clauses:
            found: list[dict] = []
            for bound in bindings:
                items = self.evaluate(iterable, Env(bound, env) if bound else env)
                if items is POISON:
                    return POISON
                if not isinstance(items, tuple):
                    raise err("E0210", f"a list comprehension needs a list, found {type_name(items)}",
                              iterable, f"this is {show(items)}")
                self.charge(len(items), node)
                for item in items:
                    inner = {**bound, var: item}
                    if cond is None or self._keep(cond, Env(inner, env)):
                        found.append(inner)
            bindings = found
        out = tuple(self.evaluate(node.elt, Env(bound, env)) for bound in bindings)
        if POISON in out:
            return POISON
        return self.new_list(self.check_size(out, node), node)

    def _keep(self, expr: ast.Expr, env: Env) -> bool:
        """Whether a filtered comprehension keeps an item: its condition ``expr``, which must
        be a bool."""
        cond = self.evaluate(expr, env)
        if cond is POISON:
            return False
        if not isinstance(cond, bool):
            raise err("E0214", f"a comprehension's `if` must be true or false, found {type_name(cond)}",
                      expr, f"this is {show(cond)}", "compare explicitly, e.g. `x != 0`")
        return cond

    def _IfExp(self, node: ast.IfExp, env):
        cond = self.evaluate(node.cond, env)
        if cond is POISON:
            return POISON
        if not isinstance(cond, bool):
            raise err("E0214", f"condition must be true or false, found {type_name(cond)}",
                      node.cond, f"this is {show(cond)}", "compare explicitly, e.g. `x != 0`")
        return self.evaluate(node.then if cond else node.orelse, env)

    # ------------------------------------------------------------ operators
    def _UnaryOp(self, node: ast.UnaryOp, env):
        v = self.evaluate(node.operand, env)
        if v is POISON:
            return POISON
        if node.op == "not":
            return not _logical("`not`", v, node.operand)
        if not _numbers(v):
            raise err("E0210", f"cannot negate a {type_name(v)}", node.operand, f"this is {show(v)}")
        return -v if node.op == "-" else v

    def _BinOp(self, node: ast.BinOp, env):
        op = node.op
        left = self.evaluate(node.left, env)
        if left is POISON:
            return POISON
        if op in ("and", "or"):
            if _logical(f"`{op}`", left, node.left) == (op == "or"):
                return left
            right = self.evaluate(node.right, env)
            if right is POISON:
                return POISON
            return _logical(f"`{op}`", right, node.right)
        right = self.evaluate(node.right, env)
        if right is POISON:
            return POISON
        if op in ("in", "==", "!="):
            self.charge(self.size(right) if op == "in" else min(self.size(left), self.size(right)), node)
        if op == "in":
            if not isinstance(right, (tuple, str)):
                raise err("E0210", f"`in` needs a list or a string on the right, found {type_name(right)}",
                          node.right, f"this is {show(right)}")
            if isinstance(right, str):
                if not isinstance(left, str):
                    raise self._type_error(op, left, right, node)
                return left in right
            return any(_equal(left, item) for item in right)
        if op in ("==", "!="):
            same = _equal(left, right)
            return same if op == "==" else not same
        if op in ("<", "<=", ">", ">="):
            if not (_numbers(left, right) or (isinstance(left, str) and isinstance(right, str))):
                raise self._type_error(op, left, right, node)
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        return self.check_int(self._arith(op, left, right, node, env), node)

    def nesting(self, v) -> int:
        """How deeply lists nest in ``v``: 0 for a number, 1 for ``[1, 2]``.

        >>> Evaluator().nesting((1, (2, (3,))))
        3
        """
        return self._measure(v)[0]

    def size(self, v) -> int:
        """Items in ``v`` counting those of inner lists, as often as they occur: what
        comparing or printing it walks. A string's size is its length.

        >>> Evaluator().size((1, (2, 3), "abc"))
        5
        """
        if isinstance(v, str):
            return len(v)
        return self._measure(v)[1]

    def _measure(self, v) -> tuple[int, int]:
        # Remembered per list, so building `[i, big]` in a loop does not walk `big` again.
        if not isinstance(v, tuple):
            return 0, 0
        known = self._shape.get(id(v))
        if known is not None and known[0] is v:
            return known[1], known[2]
        inner = [self._measure(x) for x in v if isinstance(x, tuple)]
        depth = 1 + max((d for d, _ in inner), default=0)
        size = len(v) + sum(n for _, n in inner)
        self._shape[id(v)] = (v, depth, size)
        return depth, size

    def check_size(self, v, node):
        """A list or string longer than max_repeat is an error: joining one to itself
        doubles it, and forty lines of that would fill the memory."""
        if len(v) > self.limits.max_repeat:
            what = "list of {} items" if isinstance(v, tuple) else "string of {} characters"
            raise err("E0403", f"a {what.format(len(v))} is over the limit", node,
                      f"limit is {self.limits.max_repeat}", "raise it with --limit max_repeat=N")
        return v

    def _arith(self, op, left, right, node, env=None):
        if op == "+" and type(left) is type(right) and isinstance(left, (tuple, str)):
            joined = self.check_size(left + right, node)
            self.charge(self.size(joined), node)
            return joined
        if op == "*" and _repetition(left, right):
            # `[1] * n`, as in Python: the size is checked before the list is made.
            seq, n = (left, right) if isinstance(left, (tuple, str)) else (right, left)
            if len(seq) * max(n, 0) > self.limits.max_repeat:
                what = "list of {} items" if isinstance(seq, tuple) else "string of {} characters"
                raise err("E0403", f"a {what.format(len(seq) * n)} is over the limit", node,
                          f"limit is {self.limits.max_repeat}", "raise it with --limit max_repeat=N")
            repeated = seq * n
            self.charge(self.size(repeated), node)
            return repeated
        if not _numbers(left, right):
            raise self._type_error(op, left, right, node)
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op in ("/", "//", "%") and right == 0:
            raise err("E0211", "division by zero", node.right, "this is zero", _zero_help(node.right, env))
        if op == "/":
            return left / right
        if op == "//":
            return left // right
        if op == "%":
            return left % right
        if op == "**":
            if left == 0 and right < 0:
                raise err("E0211", "division by zero", node, "zero to a negative power",
                          "zero has no negative powers: make the base non-zero or the exponent 0 or more")
            if _ints(left, right) and right >= 0 and abs(left) > 1 and right * math.log2(abs(left)) > 64:
                raise err("E0215", "integer overflow", node, f"{left} ** {right} is too large",
                          f"integers are limited to ±{self.limits.max_int}")
            try:
                result = left ** right
            except OverflowError:
                raise err("E0215", "number out of range", node, f"{left} ** {right} is too large") from None
            if isinstance(result, complex):
                raise err("E0210", "a negative number to a fractional power", node,
                          f"{left} ** {right} is not a real number")
            return result
        raise AssertionError(op)

    def _type_error(self, op, left, right, node):
        return err("E0210", f"cannot apply `{op}` to {type_name(left)} and {type_name(right)}",
                   node, f"{show(left)} {op} {show(right)}",
                   "arithmetic works on numbers; `+` also joins two lists or two strings, and `*` "
                   "repeats one a whole number of times (`[1] * 3`)")

    # ------------------------------------------------------------ calls
    def _Call(self, node: ast.Call, env):
        name = node.func.id
        fn = BUILTINS.get(name)
        scheme = INIT_SCHEMES.get(name)
        if fn is None and scheme is None:
            v = env.lookup(name, _MISSING)
            if v is _MISSING:
                v = self.globals(name)
            if isinstance(v, (BlockRef, LayerRef)) or name in LAYERS:
                raise err("E0213", f"`{short(name)}` is a {'block' if isinstance(v, BlockRef) else 'layer'}, "
                          "not a function", node.func, "used inside an expression",
                          "blocks and layers are used as statements, on a line of their own")
            near = closest(name, list(BUILTINS) + list(INIT_SCHEMES))
            raise err("E0103", f"unknown function `{short(name)}`", node.func, "not a built-in function",
                      f"did you mean `{near}`?" if near else
                      "the functions are " + ", ".join(sorted(BUILTINS)), rename(near, node.func.span))
        pos: list = []
        kw: dict[str, Any] = {}
        for a in node.args:
            v = self.evaluate(a.value, env)
            if v is POISON:
                return POISON
            if a.name is None:
                if kw:
                    raise err("E0201", "positional argument after a keyword argument", a,
                              "move it before the keyword arguments")
                pos.append(v)
            elif a.name in kw:
                raise err("E0205", f"argument `{short(a.name)}` given twice", a, "second time here",
                          "give each argument once: remove one of them")
            else:
                kw[a.name] = v
        if scheme is not None:
            if not self.init_context:
                raise err("E0213", f"`{name}` is an initialisation scheme", node.func,
                          "used outside `init`", f"write `init conv2d.weight = {name}(...)`")
            return scheme(self, node, pos, kw)
        if kw:
            raise err("E0202", f"`{name}` takes no keyword arguments", node.args[len(pos)],
                      "keyword argument here")
        assert fn is not None  # neither a function nor a scheme was refused above
        try:
            return self.check_int(fn(self, node, *pos), node)
        except TypeError:
            raise err("E0201", f"wrong number of arguments to `{name}`", node,
                      f"{len(pos)} argument{'s' if len(pos) != 1 else ''} given",
                      SIGNATURES.get(name)) from None


def nearest_units(names: list[str]) -> str:
    """How a suggestion names the layers and blocks in ``names``.

    >>> nearest_units(["sigmoid"]), nearest_units(["sigmoid", "bottleneck"])
    ('the nearest layer is `sigmoid`', 'the nearest layers and blocks are `sigmoid` and `bottleneck`')
    """
    layers = sum(n in LAYERS for n in names)
    what = "layer" if layers == len(names) else "block" if not layers else "layer or block"
    if len(names) == 1:
        return f"the nearest {what} is {listing(names)}"
    plural = what.replace("layer", "layers").replace("block", "blocks").replace(" or ", " and ")
    return f"the nearest {plural} are {listing(names)}"


def names(expr) -> list[str]:
    """The names an expression reads, in order, once each (not the functions it calls).

    >>> from netdsl.syntax.parser import parse_expr
    >>> names(parse_expr("stride != 1 or in_channels != max(planes, 1) * 4"))
    ['stride', 'in_channels', 'planes']
    """
    out: list[str] = []
    todo = [expr]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name):
            if node.id not in out:
                out.append(node.id)
        elif isinstance(node, ast.Call):
            todo.extend(reversed([a.value for a in node.args]))
        elif isinstance(node, ast.String):
            todo.extend(reversed([p for p in node.parts if isinstance(p, ast.Expr)]))
        elif isinstance(node, ast.Expr):
            todo.extend(reversed([getattr(node, f.name) for f in fields(node)
                                  if isinstance(getattr(node, f.name), ast.Expr)]
                                 + [x for f in fields(node) if isinstance(getattr(node, f.name), tuple)
                                    for x in getattr(node, f.name) if isinstance(x, ast.Expr)]))
    return out


def values_of(expr, env: Env | None) -> str:
    """``name = value`` for each name ``expr`` reads that ``env`` holds a plain value for.

    >>> from netdsl.syntax.parser import parse_expr
    >>> values_of(parse_expr("c // g"), Env({"c": 64, "g": 0}))
    'c = 64, g = 0'
    """
    if env is None:
        return ""
    shown = []
    for name in names(expr):
        v = env.lookup(name, _MISSING)
        if v is not _MISSING and v is not POISON and not isinstance(v, (BlockRef, LayerRef)):
            shown.append(f"{name} = {show(v)}")
    return ", ".join(shown)


def _zero_help(divisor, env) -> str:
    values = values_of(divisor, env) if not isinstance(divisor, ast.Number) else ""
    return ("the divisor is 0" + (f" ({values})" if values else "") + "; give values that make it "
            "non-zero, or guard it, e.g. `max(1, ...)`")


def _logical(what: str, v, node) -> bool:
    """``v`` as the operand of a logical operator: true or false, nothing else."""
    if not isinstance(v, bool):
        raise err("E0210", f"{what} needs true or false, found {type_name(v)}", node, f"this is {show(v)}")
    return v


def _equal(a, b) -> bool:
    if _numbers(a, b):
        return a == b
    if type(a) is not type(b):
        return False
    return a == b


# ---------------------------------------------------------------- built-ins


def _num_arg(name, node, v, i=0):
    if not _numbers(v):
        raise err("E0210", f"`{name}` needs a number, found {type_name(v)}", node.args[i] if
                  i < len(node.args) else node, f"this is {show(v)}")


def _seq_arg(ev, name, node, args):
    items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else tuple(args)
    ev.charge(len(items), node)
    if not items:
        raise err("E0201", f"`{name}` of nothing", node, "no values given",
                  f"give at least one value: `{name}(a, b)` or `{name}(list)`")
    for v in items:
        if not _numbers(v):
            raise err("E0210", f"`{name}` needs numbers, found {type_name(v)}", node, f"{show(v)}")
    return items


def _b_min(ev, node, *args):
    return min(_seq_arg(ev, "min", node, args))


def _b_max(ev, node, *args):
    return max(_seq_arg(ev, "max", node, args))


def _b_ceil(ev, node, x):
    _num_arg("ceil", node, x)
    return math.ceil(x)


def _b_floor(ev, node, x):
    _num_arg("floor", node, x)
    return math.floor(x)


def _b_round(ev, node, x, digits=None):
    _num_arg("round", node, x)
    if digits is None:
        return round(x)
    if not _ints(digits):
        raise err("E0210", f"`round` needs an integer number of digits, found {type_name(digits)}",
                  node.args[1], f"this is {show(digits)}", "for example `round(x, 2)`")
    if abs(digits) > 400:  # beyond float precision either way; Python would also be slow
        raise err("E0215", "number of digits out of range", node.args[1], f"this is {digits}",
                  "round to between -400 and 400 digits")
    return round(x, digits)


def _positive(name: str, node, x) -> None:
    """The domain of a logarithm: refused at the call, with the value found."""
    _num_arg(name, node, x)
    if x <= 0:
        raise err("E0210", f"`{name}` of {'zero' if x == 0 else 'a negative number'}", node,
                  f"{name}({show(x)}) is undefined",
                  "a logarithm needs a number above 0; check the value passed in")


def _b_log(ev, node, x):
    _positive("log", node, x)
    return math.log(x)


def _b_log2(ev, node, x):
    _positive("log2", node, x)
    return math.log2(x)


def _b_exp(ev, node, x):
    _num_arg("exp", node, x)
    try:
        return math.exp(x)
    except OverflowError:
        raise err("E0215", "number out of range", node, f"exp({show(x)}) is too large",
                  "exp overflows above about exp(709)") from None


def _b_int(ev, node, x):
    _num_arg("int", node, x)
    return int(x)


def _b_float(ev, node, x):
    _num_arg("float", node, x)
    return float(x)


def _b_abs(ev, node, x):
    _num_arg("abs", node, x)
    return abs(x)


def _b_sqrt(ev, node, x):
    _num_arg("sqrt", node, x)
    if x < 0:
        raise err("E0210", "square root of a negative number", node, f"sqrt({x})")
    return math.sqrt(x)


def _b_make_divisible(ev, node, v, divisor, min_value=None):
    _num_arg("make_divisible", node, v, 0)
    if not _ints(divisor) or divisor <= 0:
        raise err("E0210", "`make_divisible` needs a positive integer divisor", node,
                  f"divisor {show(divisor)}")
    if min_value is not None:
        _num_arg("make_divisible", node, min_value, 2)
    return _make_divisible(v, divisor, min_value)


def _b_len(ev, node, x):
    if not isinstance(x, (tuple, str)):
        raise err("E0210", f"`len` needs a list or a string, found {type_name(x)}", node, f"{show(x)}")
    return len(x)


def _b_sum(ev, node, x):
    if not isinstance(x, tuple):
        raise err("E0210", f"`sum` needs a list, found {type_name(x)}", node, f"{show(x)}")
    ev.charge(len(x), node)
    for v in x:
        if not _numbers(v):
            raise err("E0210", f"`sum` needs a list of numbers, found {type_name(v)}", node, show(v))
    return sum(x)


def _b_range(ev, node, *args):
    if not 1 <= len(args) <= 3:
        raise TypeError
    for i, v in enumerate(args):
        if not _ints(v):
            raise err("E0210", f"`range` needs integers, found {type_name(v)}",
                      node.args[i] if i < len(node.args) else node, f"this is {show(v)}")
    if len(args) == 3 and args[2] == 0:
        raise err("E0211", "`range` step is zero", node, "step 0",
                  "a range steps up or down: give a step of 1 (or -1 to count down)")
    r = range(*args)
    # len() of a range over 2**63 values raises OverflowError; the length itself is fine.
    n = (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step
    if n > ev.limits.max_repeat:
        raise err("E0403", f"range of {n} values is over the limit", node,
                  f"limit is {ev.limits.max_repeat}", "raise it with --limit max_repeat=N if you mean it")
    ev.charge(max(n, 0), node)
    return tuple(r)


BUILTINS: dict[str, Callable] = {
    "min": _b_min, "max": _b_max, "ceil": _b_ceil, "floor": _b_floor, "round": _b_round,
    "make_divisible": _b_make_divisible, "len": _b_len, "sum": _b_sum, "range": _b_range,
    "sqrt": _b_sqrt, "abs": _b_abs, "int": _b_int, "float": _b_float,
    "log": _b_log, "log2": _b_log2, "exp": _b_exp,
}

SIGNATURES = {
    "min": "min(a, b, ...) or min(list)", "max": "max(a, b, ...) or max(list)",
    "ceil": "ceil(x)", "floor": "floor(x)", "round": "round(x) or round(x, digits)", "int": "int(x)",
    "log": "log(x)", "log2": "log2(x)", "exp": "exp(x)",
    "float": "float(x)", "abs": "abs(x)", "sqrt": "sqrt(x)",
    "make_divisible": "make_divisible(value, divisor, min_value = none)",
    "len": "len(list)", "sum": "sum(list)", "range": "range(stop) or range(start, stop, step)",
}


# ---------------------------------------------------------------- init schemes

_NONLIN = ("linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")
# name -> ((arg, default, check), ...)
_SCHEME_ARGS: dict[str, tuple] = {
    "kaiming_normal": (("a", 0.0, "num"), ("mode", "fan_in", ("fan_in", "fan_out")),
                       ("nonlinearity", "leaky_relu", _NONLIN)),
    "kaiming_uniform": (("a", 0.0, "num"), ("mode", "fan_in", ("fan_in", "fan_out")),
                        ("nonlinearity", "leaky_relu", _NONLIN)),
    "xavier_normal": (("gain", 1.0, "num"),),
    "xavier_uniform": (("gain", 1.0, "num"),),
    "normal": (("mean", 0.0, "num"), ("std", 1.0, "num")),
    "uniform": (("a", 0.0, "num"), ("b", 1.0, "num")),
    "trunc_normal": (("mean", 0.0, "num"), ("std", 1.0, "num"), ("a", -2.0, "num"), ("b", 2.0, "num")),
    "constant": (("val", None, "num"),),
    "zeros": (),
    "ones": (),
}


def scheme_args(fn: str) -> tuple[tuple[str, Any, Any], ...]:
    """An init scheme's arguments, in order: (name, default, what it takes), the default
    None where it must be given, what it takes ``"num"`` or a tuple of the strings.

    >>> [a[0] for a in scheme_args("kaiming_normal")]
    ['a', 'mode', 'nonlinearity']
    """
    return _SCHEME_ARGS[fn]


def _scheme(fn: str):
    spec = _SCHEME_ARGS[fn]

    def make(ev: Evaluator, node: ast.Call, pos: list, kw: dict) -> ir.InitScheme:
        names = [s[0] for s in spec]
        if len(pos) > len(spec):
            raise err("E0201", f"too many arguments to `{fn}`", node, f"{len(pos)} given",
                      f"`{fn}` takes " + (", ".join(names) or "no arguments"))
        values = dict(zip(names, pos, strict=False))  # fewer given than taken: the defaults
        for k, v in kw.items():
            if k not in names:
                near = closest(k, names)
                raise err("E0202", f"`{fn}` has no argument `{short(k)}`", node, "unknown argument",
                          f"did you mean `{near}`?" if near else f"`{fn}` takes " + (", ".join(names) or "nothing"))
            values[k] = v
        out = {}
        for name, default, check in spec:
            v = values.get(name, default)
            if v is None:
                raise err("E0203", f"`{fn}` needs `{name}`", node, "missing argument")
            if check == "num":
                if not _numbers(v):
                    raise err("E0206", f"`{fn}` argument `{name}` must be a number, found {type_name(v)}",
                              node, show(v))
                v = float(v)
            elif v not in check:
                raise err("E0204", f"`{fn}` argument `{name}` must be one of {', '.join(check)}",
                          node, f"found {show(v)}", f"for example `{name} = {show(check[0])}`")
            out[name] = v
        problem = scheme_problem(fn, out)
        if problem is not None:
            name, message, help = problem
            at = _arg_node(node, names, name)
            raise err("E0204", f"`{fn}` argument `{name}` {message}", at,
                      f"{name} = {show(out[name])}", help)
        # `fn` is a key of _SCHEME_ARGS, every one a name the IR's Literal allows.
        return ir.InitScheme(fn=cast(Any, fn), args=out, span=node.span)

    return make


def _arg_node(node: ast.Call, names: list[str], name: str):
    """The argument of ``node`` that gave ``name`` (the call itself for a default)."""
    for i, a in enumerate(node.args):
        if a.name == name or (a.name is None and i < len(names) and names[i] == name):
            return a.value
    return node


# The largest float32: a parameter's values, and the bounds torch checks them
# against (uniform_'s `from`, `to` and `to - from`, fill_'s value), must fit it.
F32_MAX = 3.4028234663852886e38


def scheme_problem(fn: str, args: dict) -> tuple[str, str, str | None] | None:
    """(argument, what is wrong, help) where torch would refuse ``fn(**args)`` on a
    float32 weight, or None. torch's own checks, made before any tensor exists:
    ``uniform_`` needs ``from <= to`` and ``to - from`` within float32, ``normal_``
    needs ``std >= 0``, ``trunc_normal_`` divides by ``std`` and draws from
    ``[cdf(a), cdf(b)]``, xavier's bounds are ``gain * sqrt(6 / fans)`` (fans >= 2).

    >>> scheme_problem("uniform", {"a": 5.0, "b": 1.0})
    ('b', 'must be at least a (5.0)', 'uniform draws from [a, b]: swap them')
    >>> scheme_problem("normal", {"mean": 0.0, "std": 0.0}) is None
    True
    """
    for name, v in args.items():
        if isinstance(v, float) and abs(v) > F32_MAX:
            return (name, "does not fit a float32 (at most 3.4e38 in magnitude)",
                    "parameters are float32 tensors")
    if fn == "uniform":
        if args["b"] < args["a"]:
            return "b", f"must be at least a ({args['a']})", "uniform draws from [a, b]: swap them"
        if args["b"] - args["a"] > F32_MAX:
            return "b", "is too far from a: b - a must fit a float32", None
    if fn == "normal" and args["std"] < 0:
        return "std", "must not be negative", None
    if fn == "trunc_normal":
        return _trunc_normal_problem(args["mean"], args["std"], args["a"], args["b"])
    if fn in ("xavier_normal", "xavier_uniform") and not 0 <= args["gain"] <= F32_MAX / 4:
        return "gain", "must be between 0 and 8.5e37", None
    return None


def _trunc_normal_problem(mean: float, std: float, a: float, b: float):
    """torch's ``trunc_normal_`` (2.x): when over 30% of N(mean, std) lies in [a, b] it
    draws normal samples and keeps those inside; otherwise it draws uniformly on
    [a, b] and keeps x with probability pdf(x) / pdf(mode), computing the density in
    float32, and loops until every element is kept. That loop must end: the
    acceptance rate must not be tiny, and float32 must resolve (x - mean) / std.

    >>> _trunc_normal_problem(0.0, 1.0, 100.0, 1e6)[0]
    'a'
    >>> _trunc_normal_problem(0.0, 0.02, -2.0, 2.0) is None
    True
    """
    if std <= 0:
        return "std", "must be positive", "use `constant(mean)` for a fixed value"
    if b < a:
        return "b", f"must be at least a ({a})", "values are truncated to [a, b]: swap them"
    if b - a > F32_MAX:
        return "b", "is too far from a: b - a must fit a float32", None
    alpha, beta = (a - mean) / std, (b - mean) / std
    cdf = lambda x: (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0  # noqa: E731  (torch's)
    if cdf(beta) - cdf(alpha) > 0.3:
        return None
    if _rejection_rate(alpha, beta) < 0.01:
        return ("a" if alpha > 0 else "b", f"puts [a, b] too far into the tail of "
                f"N({mean:g}, {std:g}): torch would reject nearly every draw",
                "keep the mean within a few std of [a, b], or narrow [a, b]")
    if std < 1.2e-38 or max(abs(a), abs(b), abs(mean)) * 2.0 ** -23 > 0.01 * std:
        return ("std", "is too small for the float32 values of mean, a and b",
                "trunc_normal computes (x - mean) / std in float32; use a larger std or "
                "`constant` for a fixed value")
    return None


def _rejection_rate(alpha: float, beta: float) -> float:
    """The share of uniform draws on the standardised [alpha, beta] that torch keeps:
    P(alpha <= Z <= beta) / ((beta - alpha) * pdf(mode)), the mode the point of
    [alpha, beta] nearest 0 (a lower bound where it is at least 1%)."""
    if beta <= 0:  # the mean above [a, b]: mirror it below
        alpha, beta = -beta, -alpha
    if alpha <= 0:  # the mean inside [a, b]: then [a, b] is narrow and pdf nearly flat on it
        return 1.0
    if math.isfinite(beta) and (beta - alpha) * (beta + alpha) / 2 < 4.6:
        return 0.01  # pdf(x) / pdf(a) >= exp(-4.6) everywhere on [a, b]
    tail = (math.erfc(alpha / math.sqrt(2.0)) - math.erfc(beta / math.sqrt(2.0))) / 2
    peak = math.exp(-alpha * alpha / 2) / math.sqrt(2 * math.pi)
    return tail / ((beta - alpha) * peak) if tail > 0 and peak > 0 else 0.0


# Schemes that scale by a tensor's fan in and fan out: they need a tensor of two or more
# dimensions (a conv or linear weight), not a bias or a batch-norm parameter.
FAN_SCHEMES = ("kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform")

INIT_SCHEMES: dict[str, Callable] = {name: _scheme(name) for name in _SCHEME_ARGS}
