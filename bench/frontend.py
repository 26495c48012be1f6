"""Warm front end: ``netdsl.compile`` of resnet50 and of flat generated specs, per layer.

    python bench/frontend.py            # 15 runs of resnet50, 3 of each flat size
    python bench/frontend.py --runs 40

Three figures each: "reparsed" clears the parser's cache of ASTs before every call,
so the text is parsed again (a spec seen for the first time in a warm process);
"cached" compiles a text parsed before (a sweep, an editor, a second build), where
only checking runs (texts over 64,000 characters are not kept: the 10,000-layer
spec is parsed every time); "Lark tree" is "reparsed" with the lean LALR driver
turned off (``netdsl.syntax.lalr.LeanParser``: Lark's parse tree, then the AST builder's
pass over it), its runs interleaved with those of "reparsed", and the ratio of
their minima. Times are min and median of the runs in one process.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.check import memo  # noqa: E402
from netdsl.syntax import parser  # noqa: E402


def flat_spec(layers: int) -> str:
    kinds = ["conv2d(16, 3, padding = 1, bias = false)", "batchnorm2d", "relu(inplace = true)"]
    body = "\n".join("    " + kinds[i % 3] for i in range(layers))
    return f"network generated() {{\n    input [16, 8, 8]\n{body}\n}}\n"


def times(fn, runs: int, reparse: bool) -> list[float]:
    out = []
    fn()
    for _ in range(runs):
        if reparse:
            parser._PARSED.clear()
        gc.collect()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def interleaved(fn, runs: int) -> tuple[list[float], list[float]]:
    """Reparsed times with the lean driver, then without, one run of each in turn."""
    lean, plain = [], []
    for _ in range(runs):
        lean += times(fn, 1, True)
        with mock.patch.object(parser, "_lean", lambda: None):
            plain += times(fn, 1, True)
    return lean, plain


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)

    def fmt(xs, scale=1e3, unit="ms"):
        return f"{min(xs) * scale:,.1f} / {statistics.median(xs) * scale:,.1f} {unit}"

    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| what | reparsed (min / median) | cached (min / median) | Lark tree (min / median) "
          "| reparsed / Lark tree |")
    print("|---|---:|---:|---:|---:|")
    r50 = str(ROOT / "specs" / "resnet50.net")
    for name, fn, runs, n in [("resnet50", lambda: netdsl.compile(r50), args.runs, None)] + [
            (f"flat {n:,} layers, per layer", (lambda t: lambda: netdsl.compile(t))(flat_spec(n)),
             max(1, args.runs // (1 if n < 1000 else 5 if n < 10000 else 15)), n)
            for n in (100, 1000, 10000)]:
        (a, c), b = interleaved(fn, runs), times(fn, runs, False)
        ratio = f"{min(a) / min(c):.2f}"
        if n is None:
            print(f"| {name} | {fmt(a)} | {fmt(b)} | {fmt(c)} | {ratio} |")
        else:
            def per(xs, n=n):
                return fmt([x / n for x in xs], 1e6, "µs")

            print(f"| {name} | {per(a)} | {per(b)} | {per(c)} | {ratio} |")
    # "cached" keeps the checker's memo of block instances (netdsl.check.memo) from one compile to
    # the next, as a sweep or an editor does; emptied, each compile shares only within itself.
    fresh = lambda: (memo.clear(), netdsl.compile(r50))  # noqa: E731
    print(f"resnet50 cached, memo emptied before each compile: {fmt(times(fresh, args.runs, False))}")
    memo.ENABLED = False
    print(f"resnet50 cached, memo off: {fmt(times(lambda: netdsl.compile(r50), args.runs, False))}")
    memo.ENABLED = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
