"""Sweeps: check every combination of a grid of hyperparameters, and measure each.

Analysis needs no tensors, so a variant costs at most one front-end run: the
spec is parsed once per process (the parser keeps the AST of a text it has seen)
and checked with each combination's values, and the checker reuses the block
instances and labelled groups that earlier variants checked with the same values
(memo.py), whose totals are added up once (analysis.summary). Rows are computed in parallel across
processes. A combination the checker refuses is a row with its diagnostic, not
a stopped sweep.

A grid is ``NAME=ITEMS``: items separated by commas, each a netdsl expression
(``1.1``, ``basic``, ``[2, 2, 2, 2]``) or a numeric range ``START:STOP:STEP`` that
includes STOP (``1.0:2.0:0.1`` is eleven values, computed in decimal so that
1.3 is 1.3). ``where`` is a netdsl expression over the result columns and the
grid names, parsed and evaluated by netdsl's own expression parser and
evaluator: nothing is passed to Python's ``eval``.

>>> rows = run("network n(c = 4) { input [3, 8, 8]\\n conv2d(c, 3) }",
...            [grid("c=2,4:8:2")], where="params < 200")
>>> [(r.values["c"], r.params) for r in rows]
[(2, 56), (4, 112), (6, 168)]
"""

from __future__ import annotations

import gc
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ..api import Stdin
from ..diagnostics import Diagnostic, NetdslError
from ..grant import Grant
from ..limits import Limits
from ..syntax import ast

#: The result columns a ``where`` or ``sort`` may name, besides the grid's names.
COLUMNS = ("params", "macs", "flops", "activation_bytes", "output_shape")


class GridError(ValueError):
    """A ``--grid`` text that is not ``NAME=ITEMS`` (a usage error, not a spec error)."""


@dataclass(frozen=True)
class Grid:
    """One hyperparameter and the values it takes: numbers, or netdsl expression texts."""

    name: str
    values: tuple


@dataclass
class Row:
    """One combination: its values, and either its measures or its diagnostic."""

    values: dict
    params: int | None = None
    macs: int | None = None
    activation_bytes: int | None = None
    output_shape: tuple | None = None
    error: str | None = None   # "E0301 message at file:line:col"
    code: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def flops(self) -> int | None:
        return None if self.macs is None else 2 * self.macs

    def columns(self) -> dict:
        """The row as the names ``where`` and ``sort`` read."""
        return {**self.values, "params": self.params, "macs": self.macs, "flops": self.flops,
                "activation_bytes": self.activation_bytes,
                "output_shape": None if self.output_shape is None else list(self.output_shape)}


def _split_items(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [s.strip() for s in items]


def _number(text: str):
    d = Decimal(text)
    return int(d) if d == d.to_integral_value() and "." not in text and "e" not in text.lower() else float(d)


def _range(item: str, name: str, limit: int) -> list:
    parts = item.split(":")
    what = f"--grid {name}: a range is START:STOP[:STEP] of numbers, got {item!r}"
    if len(parts) not in (2, 3):
        raise GridError(what)
    try:
        start, stop, step = (Decimal(p.strip()) for p in (parts + ["1"])[:3])
    except (InvalidOperation, ValueError):
        raise GridError(what) from None
    if not step.is_finite() or step <= 0 or not start.is_finite() or not stop.is_finite():
        raise GridError(f"--grid {name}: a range needs a positive STEP and finite ends, got {item!r}")
    count = int((stop - start) / step) + 1 if stop >= start else 0
    if count > limit:
        raise GridError(f"--grid {name}: {item} has {count:,} values, over the limit of {limit:,}")
    whole = all(p.strip().lstrip("+-").isdigit() for p in parts)
    return [int(start + k * step) if whole else float(start + k * step) for k in range(count)]


def grid(text: str, limit: int = 100_000) -> Grid:
    """Parse one ``--grid NAME=ITEMS``.

    >>> grid("depth=1.0:1.3:0.1").values
    (1.0, 1.1, 1.2, 1.3)
    >>> grid("unit=basic, bottleneck").values
    ('basic', 'bottleneck')
    >>> grid("depths=[2, 2], [3, 4]").values
    ('[2, 2]', '[3, 4]')
    >>> grid("w=")
    Traceback (most recent call last):
      ...
    netdsl.tools.sweep.GridError: --grid expects NAME=V1,V2,... or NAME=START:STOP:STEP, got 'w='
    """
    name, eq, items = text.partition("=")
    name = name.strip()
    if not eq or not name.isidentifier() or not items.strip():
        raise GridError(f"--grid expects NAME=V1,V2,... or NAME=START:STOP:STEP, got {text!r}")
    values: list = []
    for item in _split_items(items):
        if not item:
            raise GridError(f"--grid {name}: an empty item in {items!r}")
        if ":" in item and not item.startswith(("[", '"', "'")):
            values.extend(_range(item, name, limit - len(values)))
            continue
        try:
            values.append(_number(item))
        except (InvalidOperation, ValueError):
            values.append(item)  # a netdsl expression: the checker reads it, and its errors go on the row
    return Grid(name, tuple(values))


def combinations(grids: list[Grid]) -> Iterator[dict]:
    """Every combination of the grids' values, the last grid varying fastest, one at a
    time: the product of large grids is never a list.

    >>> list(combinations([Grid("a", (1, 2)), Grid("b", ("x", "y"))]))
    [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
    """
    names = [g.name for g in grids]
    return (dict(zip(names, combo, strict=True)) for combo in itertools.product(*(g.values for g in grids)))


def count(grids: list[Grid], limit: int) -> int:
    """How many combinations ``grids`` make; a GridError where that is over ``limit``
    (``max_sweep_variants``), before any is made.

    >>> count([Grid("a", (1, 2)), Grid("b", (1, 2, 3))], 10)
    6
    >>> count([Grid("a", tuple(range(1000))), Grid("b", tuple(range(1000)))], 100_000)
    Traceback (most recent call last):
      ...
    netdsl.tools.sweep.GridError: --grid: 1,000 × 1,000 = 1,000,000 combinations, over the limit of 100,000 ...
    """
    n = math.prod(len(g.values) for g in grids)
    if n > limit:
        sizes = " × ".join(f"{len(g.values):,}" for g in grids)
        raise GridError(f"--grid: {sizes} = {n:,} combinations, over the limit of {limit:,} "
                        "(raise it with --limit max_sweep_variants=N, or Limits(max_sweep_variants=N))")
    return n


@dataclass(frozen=True)
class _Job:
    spec: object
    network: str | None
    input: tuple | None
    limits: Limits
    import_path: tuple
    fixed: dict  # --set values, texts
    origin: str
    grant: Grant = Grant()


def _measure(job: _Job, values: dict) -> Row:
    from ..analysis.counts import totals
    from ..api import compile_spec

    overrides = {**job.fixed, **values}
    if job.origin == "cli":  # the command line gives every value as text: a number as itself
        overrides = {k: v if isinstance(v, str) else repr(v) for k, v in overrides.items()}
    try:
        net = compile_spec(job.spec, overrides, network=job.network, input=job.input,
                           limits=job.limits, import_path=job.import_path, origin=job.origin,
                           grant=job.grant)
    except NetdslError as e:
        d = e.diagnostics[0]
        where = f" at {d.span.where()}" if d.span is not None else ""
        more = f" (+{len(e.diagnostics) - 1} more)" if len(e.diagnostics) > 1 else ""
        return Row(values, error=f"{d.code} {d.message}{where}{more}", code=d.code)
    a = totals(net)
    return Row(values, params=a.params, macs=a.macs, activation_bytes=a.activation_bytes,
               output_shape=a.output_shape)


_WORKER_JOB: _Job | None = None

# The cyclic collector runs once per this many variants. A compile leaves no cycles behind
# (the checker breaks its own), so what refcounting frees is all there is; the collector's
# passes over the memo's nodes after each variant cost more than checking one.
_COLLECT_EVERY = 256
_count = 0


def _measure_collecting(job: _Job, values: dict) -> Row:
    """:func:`_measure`, in a process whose collector is off, collecting now and then."""
    global _count
    try:
        return _measure(job, values)
    finally:
        _count += 1
        if _count % _COLLECT_EVERY == 0:
            gc.collect()


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    gc.disable()  # collected every _COLLECT_EVERY variants, by _measure_collecting


def _work(values: dict) -> Row:
    assert _WORKER_JOB is not None  # each worker process's initializer, _init_worker, set it
    return _measure_collecting(_WORKER_JOB, values)


def check_where(text: str, names: list[str], limits: Limits | None = None) -> ast.Expr:
    """Parse a ``where`` expression and check that it only reads known names.

    >>> type(check_where("macs < 1e9 and width > 1", ["macs", "width"])).__name__
    'BinOp'
    >>> check_where("mac < 1", ["macs"])
    Traceback (most recent call last):
      ...
    netdsl.diagnostics.NetdslError: error[E0101]: unknown name `mac`
    ...
    """
    from ..check.evaluate import names as read_names
    from ..diagnostics import closest
    from ..syntax.parser import parse_expr

    expr = parse_expr(text, limits, WHERE)
    for name in read_names(expr):
        if name not in names:
            near = closest(name, names)
            at = _name_span(expr, name)
            raise NetdslError([Diagnostic(
                "E0101", f"unknown name `{name}`", at, "not a column or a grid name",
                (f"did you mean `{near}`? " if near else "") + "--where reads the columns "
                f"{', '.join(COLUMNS)} and the grid names")], {WHERE: text})
    return expr


WHERE = "<--where>"


def _name_span(expr, name):
    from dataclasses import fields

    todo = [expr]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and node.id == name:
            return node.span
        if isinstance(node, ast.Call):
            todo.extend(a.value for a in node.args)
        elif isinstance(node, ast.Expr):
            for f in fields(node):
                v = getattr(node, f.name)
                todo.extend(v if isinstance(v, tuple) else [v])
    return None


def keep(expr: ast.Expr, row: Row, text: str) -> bool:
    """Whether ``row`` passes the ``where`` expression; a row with a diagnostic always does
    (its measures are unknown, and a sweep does not hide a refusal)."""
    from ..check.evaluate import Env, EvalError, Evaluator
    from ..check.values import show, type_name

    if row.error is not None:
        return True
    try:
        v = Evaluator().evaluate(expr, Env(row.columns()))
    except EvalError as e:
        raise NetdslError([e.diagnostic.with_notes(f"in the row {_describe(row.values)}")],
                          {WHERE: text}) from None
    if not isinstance(v, bool):
        # ast.Expr (netdsl/syntax) does not declare the span each expression class has;
        # unused-ignore keeps the line clean once it does.
        span = expr.span  # type: ignore[attr-defined, unused-ignore]
        raise NetdslError([Diagnostic(
            "E0210", f"--where needs true or false, found {type_name(v)}", span,
            f"this is {show(v)}", "compare it: `macs < 1e9`, `params >= 5e6 and width > 1`"
            ).with_notes(f"in the row {_describe(row.values)}")], {WHERE: text})
    return v


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def run(spec, grids: list[Grid], *, where: str | None = None, sort: str | None = None,
        fixed: dict | None = None, network: str | None = None, input=None,
        limits: Limits | None = None, import_path=(), jobs: int = 1, origin: str = "api",
        grant=None) -> list[Row]:
    """Check ``spec`` at every combination of ``grids`` and return its rows: kept by
    ``where``, ordered by ``sort`` (a column or grid name, ``-`` first for descending;
    rows with a diagnostic last), computed in ``jobs`` processes.

    >>> rows = run("network n(c = 1) { input [4]\\n linear(c) }", [grid("c=1,0,2")], sort="-params")
    >>> [(r.values["c"], r.params, r.code) for r in rows]
    [(2, 10, None), (1, 5, None), (0, None, 'E0204')]
    """
    limits = limits or Limits()
    names = [g.name for g in grids]
    for n in names:
        if n in COLUMNS:
            raise GridError(f"--grid {n}: `{n}` is a result column; a hyperparameter cannot have its name")
    if len(set(names)) != len(names):
        raise GridError("--grid: a name is given twice")
    expr = check_where(where, names + list(COLUMNS), limits) if where else None
    if sort is not None and sort.lstrip("-") not in names + list(COLUMNS):
        raise GridError(f"--sort {sort}: sort by a column ({', '.join(COLUMNS[:4])}) or a grid name")
    if isinstance(spec, Stdin):
        spec.read(limits)  # here, once: the workers get the text, not the stream
    # Reading and parsing the spec and its imports does not depend on the grid: a mistake
    # there is the sweep's, reported once, not once per row (and then the front end's
    # caches hold the parsed files for every row).
    from ..api import read_spec
    from ..syntax.loader import load

    text, filename, base = read_spec(spec, limits)
    load(text, filename, base, limits, tuple(import_path))
    job = _Job(spec, network, None if input is None else tuple(input), limits, tuple(import_path),
               dict(fixed or {}), origin, Grant.of(grant))
    total = count(grids, limits.max_sweep_variants)
    rows = _compute(job, combinations(grids), total, jobs)
    if expr is not None and where is not None:  # the one implies the other
        rows = [r for r in rows if keep(expr, r, where)]
    if sort:
        rows = _sorted(rows, sort)
    return rows


def _compute(job: _Job, combos: Iterator[dict], total: int, jobs: int) -> list[Row]:
    jobs = max(1, min(jobs, total))
    if jobs == 1:
        return _paused(lambda: [_measure_collecting(job, c) for c in combos])
    import multiprocessing

    # Fork where it exists: the workers start with netdsl imported and the spec parsed.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    first = next(combos)
    _measure(job, first)  # warms the parser cache that forked workers inherit
    chunk = max(1, total // (jobs * 8))
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(job,)) as pool:
        return list(pool.imap(_work, itertools.chain([first], combos), chunksize=chunk))


def _paused(fn):
    """``fn()`` with the collector off throughout (not only during each compile, where the
    front end pauses it): its pass at each re-enable is what it saves."""
    was = gc.isenabled()
    gc.disable()
    try:
        return fn()
    finally:
        if was:
            gc.enable()


def _sorted(rows: list[Row], key: str) -> list[Row]:
    desc = key.startswith("-")
    name = key.lstrip("-")
    good = [r for r in rows if r.error is None]
    bad = [r for r in rows if r.error is not None]
    good.sort(key=lambda r: _sort_key(r.columns()[name]), reverse=desc)
    return good + bad


def _sort_key(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v, "")
    return (1, 0, str(v))


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


__all__ = ["Grid", "Row", "GridError", "grid", "combinations", "run", "check_where", "keep", "COLUMNS"]
