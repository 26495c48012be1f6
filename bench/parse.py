"""Parsing alone (text → AST): netdsl's lean LALR driver against Lark's own two paths.

    python bench/parse.py               # 21 rounds of resnet50, 7 of 10,000 flat layers
    python bench/parse.py --runs 40

Three ways from the same text to the same AST (every span included; checked first):

- **lean**: what ``netdsl.parse`` does, ``netdsl.syntax.lalr.LeanParser``: Lark's LALR
  table and per-state lexers, driven without Lark's trees, the AST builder's rule
  method called at each reduction.
- **transformer**: Lark's supported tree-less path, ``Lark(..., transformer=T)``: Lark
  calls T's callback for each rule at its reduction. Lark gives an inline transformer
  no ``meta`` (``v_args(meta=True)`` raises NotImplementedError there), and
  ``propagate_positions`` fills in only results that are a ``Tree``, from the rule's
  children before Lark drops the anonymous tokens (the ``)`` that ends a call's span).
  So, for the same spans, each callback returns a ``Tree`` (:class:`Reduced`) holding
  its children, built already, and its AST is built when its parent reduces, once
  Lark has set its positions. Nesting depth (E0402) is tracked on the way.
- **tree**: Lark's parse tree, then the AST builder's pass over it and the depth walk
  (``parser._plain``): the path that reports netdsl's syntax errors.
- **Lark alone** (a floor, not a path): ``Lark.parse`` to a bare tree, without positions
  and without an AST. No path that goes through ``Lark.parse`` can be faster.

Inputs: the files a compile of ``specs/resnet50.net`` parses (it and ``resnet.net``),
and a generated spec of 10,000 flat layers (``frontend.flat_spec``). Each round runs
every path once, in a rotated order, with the cyclic collector paused as
``netdsl.compile`` pauses it. Printed per path: minimum and median; per pair,
the ratio of minima and the median of the per-round ratios (above 1: lean is faster).
The figures hold on an idle machine only; the load average and the CPU are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import threading
import time
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from frontend import flat_spec  # noqa: E402
from lark import Lark, Transformer, Tree  # noqa: E402

from netdsl.limits import Limits  # noqa: E402
from netdsl.span import Span  # noqa: E402
from netdsl.syntax import ast, parser  # noqa: E402


class Declined(Exception):
    """Nested too deep, or a diagnostic of the builder's: the tree path reports it."""


class Reduced(Tree):
    """One reduction on Lark's transformer path: the rule's builder method, its children
    (AST nodes, tokens, Nones) and its nesting depth. Lark sets its ``meta`` after the
    callback returns; the parent's callback then builds its AST."""

    def __init__(self, method, children, depth):
        self.method, self.children, self.depth, self._meta = method, children, depth, None


_local = threading.local()


def _callback(method, nests: bool):
    def reduce(children):
        builder, limit = _local.stack[-1]
        depth = 0
        kept = []
        for c in children:
            if c.__class__ is Reduced:
                if c.depth > depth:
                    depth = c.depth
                c = c.method(builder, c.meta, c.children)
            kept.append(c)
        if nests:
            depth += 1
            if depth > limit:
                raise Declined
        return Reduced(method, kept, depth)
    return reduce


class Inline(Transformer):
    """The AST builder's rule methods as an inline transformer's callbacks."""

    def __init__(self):
        super().__init__()
        for name, method in parser._rule_methods(parser._Builder).items():
            setattr(self, name, _callback(method, name in parser._NESTS))


def transformer_lark(**options) -> Lark:
    grammar = resources.files("netdsl.syntax").joinpath("grammar.lark").read_text()
    options = {"propagate_positions": True, "transformer": Inline(), **options}
    return Lark(grammar, parser="lalr", lexer="contextual", start=["start", "expr"],
                maybe_placeholders=True, postlex=parser._ParenNewlines(), **options)


def transformer_fast(lark: Lark, text: str, start: str, builder):
    """What ``builder`` makes of ``text`` on Lark's transformer path, or None where the
    tree path must say why not (as ``parser._fast`` does for the lean driver)."""
    stack = _local.__dict__.setdefault("stack", [])
    stack.append((builder, builder.max_depth))
    try:
        top = lark.parse(text, start=start)
        node = top.method(builder, top.meta, top.children) if top.__class__ is Reduced else top
    except (Declined, parser.UnexpectedInput):
        return None
    finally:
        stack.pop()
    return None if builder.errors else node


def transformer_parse(lark: Lark, text: str, filename: str, limits: Limits) -> ast.Module:
    """``parser.parse`` with Lark's transformer path first, string templates' holes
    included (the tree path reports errors)."""
    fast = parser._fast
    parser._fast = lambda t, start, b: transformer_fast(lark, t, start, b)
    try:
        items = parser._fast(text, "start", parser._Builder(filename, text, max_depth=limits.max_nesting))
    finally:
        parser._fast = fast
    if items is None:
        items = parser._plain(text, filename, limits)
    return ast.Module(items=tuple(items), file=filename)


def _shape(x):
    """An AST as nested tuples with every span's fields (spans alone compare equal)."""
    if isinstance(x, Span):
        return ("Span", *x.as_dict().values())
    if dataclasses.is_dataclass(x):
        return (type(x).__name__, *((f.name, _shape(getattr(x, f.name))) for f in dataclasses.fields(x)))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, *map(_shape, x))
    return (type(x).__name__, x)


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="rounds on resnet50 (a third on the flat spec)")
    args = ap.parse_args(argv)
    limits = Limits()
    lark, skipping = transformer_lark(), transformer_lark()
    from netdsl.syntax.lalr import skip_unit_reductions

    assert skip_unit_reductions(skipping) > 10
    # The plain path's table with the builder's callbacks, and the lean driver: built once.
    parser._lark()
    assert parser._lean() is not None, "the lean driver does not take this Lark"

    def lean(texts):
        return [ast.Module(items=tuple(parser._fast(t, "start", parser._Builder(f, t))), file=f)
                for f, t in texts]

    def inline(texts):
        return [transformer_parse(lark, t, f, limits) for f, t in texts]

    def inline_skipping(texts):
        return [transformer_parse(skipping, t, f, limits) for f, t in texts]

    def tree(texts):
        return [ast.Module(items=tuple(parser._plain(t, f, limits)), file=f) for f, t in texts]

    bare = transformer_lark(propagate_positions=False, transformer=None)

    def lark_alone(texts):
        return [bare.parse(t, start="start") for f, t in texts]

    paths = {"lean": lean, "transformer": inline, "transformer, unit rules skipped": inline_skipping,
             "tree": tree, "Lark alone": lark_alone}
    resnet = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
              for p in (ROOT / "specs" / "resnet50.net", ROOT / "specs" / "resnet.net")]
    inputs = [("resnet50 (resnet50.net + resnet.net)", resnet, args.runs),
              ("flat, 10,000 layers", [("flat.net", flat_spec(10_000))], max(3, args.runs // 3))]
    load = os.getloadavg()
    print(f"CPU: {cpu()}; {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"Python {sys.version.split()[0]}, lark {sys.modules['lark'].__version__}; "
          f"command: python bench/parse.py --runs {args.runs}")
    print()
    print("| input | path | min ms | median ms | lean faster by: ratio of minima | median of per-round ratios |")
    print("|---|---|---:|---:|---:|---:|")
    for label, texts, runs in inputs:
        shapes = {name: _shape(fn(texts)) for name, fn in paths.items() if name != "Lark alone"}
        assert all(shape == shapes["lean"] for shape in shapes.values()), f"{label}: the paths differ"
        times: dict[str, list[float]] = {name: [] for name in paths}
        order = list(paths)
        for r in range(runs):
            for name in order[r % len(order):] + order[:r % len(order)]:
                gc.collect()
                gc.disable()  # as netdsl.compile runs the front end (api._gc_paused)
                try:
                    t = time.perf_counter()
                    paths[name](texts)
                    times[name].append(time.perf_counter() - t)
                finally:
                    gc.enable()
        for name in paths:
            xs = times[name]
            if name == "lean":
                ratio = "1 | 1"
            else:
                per = statistics.median(x / y for x, y in zip(xs, times["lean"], strict=True))
                ratio = f"{min(xs) / min(times['lean']):.2f} | {per:.2f}"
            print(f"| {label} | {name} | {min(xs) * 1e3:,.1f} | {statistics.median(xs) * 1e3:,.1f} | {ratio} |")
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
