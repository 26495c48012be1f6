"""Sweep throughput: ``netdsl.tools.sweep`` over EfficientNet variants against fvcore on built models.

    python bench/sweep.py                 # 3 x 11 width x depth grid; fvcore on 3 variants
    python bench/sweep.py --fvcore 0 --rounds 5 --jobs 2   # memo on against off, interleaved
    python bench/sweep.py --fvcore 0      # netdsl only
    python bench/sweep.py --svg docs/params_macs.svg   # also the families plot

netdsl checks each variant and counts its parameters, MACs and activation memory
from the IR, with no tensors. fvcore needs the model: it is built (``netdsl.build``,
whose MACs equal fvcore's, which the test suite checks) and traced with
``FlopCountAnalysis(model, x).total()`` at batch 1. Both run in this process, one
after the other, on the same grid; the rate per core is variants per second of
one process (``jobs=1``); the all-cores rate uses ``jobs`` processes.

Each timed sweep starts with the checker's memo of block instances and groups and
the remembered subtree totals emptied (``netdsl.check.memo``), so it measures variants
never seen before; "memo off" is the plain path, every instance expanded and every
layer added up. Configurations are interleaved, ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdsl.analysis import counts as analysis  # noqa: E402
from netdsl.check import memo  # noqa: E402
from netdsl.tools.sweep import default_jobs, grid, run  # noqa: E402

SPEC = str(ROOT / "specs" / "efficientnet.net")

# The families of the plot: (label, spec, grids, colour). Grid names are each spec's own.
FAMILIES = [
    ("ResNet", "resnet.net", ["depth=18,34,50,101,152"], "#1f77b4"),
    ("VGG", "vgg.net", ["depth=11,13,16,19"], "#ff7f0e"),
    ("DenseNet", "densenet.net", ["block_config=[6, 12, 24, 16], [6, 12, 32, 32], [6, 12, 48, 32]"],
     "#2ca02c"),
    ("EfficientNet B0-B7", "efficientnet.net", ["variant=0:7"], "#d62728"),
    ("EfficientNet width x depth", "efficientnet.net", ["width=1.0:2.0:0.2", "depth=1.0:3.0:0.4"],
     "#e8a0a0"),
    ("Inception v3", "inception_v3.net", ["num_classes=1000"], "#9467bd"),
    ("AlexNet", "alexnet.net", ["num_classes=1000"], "#8c564b"),
]


def fvcore_rate(values_list) -> float:
    import logging

    import torch

    import netdsl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    t = time.perf_counter()
    for values in values_list:
        model = netdsl.build(SPEC, **values).eval()
        x = torch.zeros(1, *model.input_shape)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            fca.total()
    return len(values_list) / (time.perf_counter() - t)


def svg(points, path: Path) -> None:
    """A log-log scatter of params against MACs, one colour per family, written by hand."""
    import math

    W, H, L, R, T, B = 760, 480, 70, 230, 20, 50
    xs = [p[1] for p in points]
    ys = [p[0] for p in points]
    x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))

    def sx(v):
        return L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)

    def sy(v):
        return H - B - (math.log10(v) - y0) / (y1 - y0) * (H - T - B)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for e in range(x0, x1 + 1):
        x = sx(10 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">1e{e}</text>')
    for e in range(y0, y1 + 1):
        y = sy(10 ** e)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">MACs per image (log)</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">parameters (log)</text>')
    seen = []
    for params, macs, label, colour in points:
        out.append(f'<circle cx="{sx(macs):.1f}" cy="{sy(params):.1f}" r="4" fill="{colour}" '
                   f'fill-opacity="0.8"><title>{label}: {params:,} params, {macs:,} MACs</title></circle>')
        if label not in seen:
            seen.append(label)
    for i, label in enumerate(seen):
        colour = next(p[3] for p in points if p[2] == label)
        y = T + 10 + i * 20
        out.append(f'<circle cx="{W - R + 20}" cy="{y}" r="5" fill="{colour}"/>')
        out.append(f'<text x="{W - R + 32}" y="{y + 4}">{label}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def timed(grids, n: int, jobs: int, memo_on: bool) -> tuple[float, list]:
    """Variants per second of one sweep of ``grids``, with the memo of block instances and
    the subtree totals on or off, both emptied first: a sweep of variants never seen."""
    memo.ENABLED = analysis.CACHE = memo_on
    memo.clear()
    analysis.clear_summaries()
    t = time.perf_counter()
    rows = run(SPEC, grids, jobs=jobs)
    return n / (time.perf_counter() - t), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fvcore", type=int, default=3, metavar="N", help="variants fvcore counts (0: none)")
    ap.add_argument("--jobs", type=int, default=default_jobs())
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each configuration")
    ap.add_argument("--svg", type=Path, help="write the params-against-MACs plot of the families here")
    args = ap.parse_args(argv)
    grids = [grid("width=1.0,1.1,1.2"), grid("depth=1.0:2.0:0.1")]
    n = len(grids[0].values) * len(grids[1].values)
    run(SPEC, grids[:1])  # parse and import once, as a long-lived process would have
    configs = [(1, False), (1, True), (args.jobs, False), (args.jobs, True)]
    rates: dict = {c: [] for c in configs}
    for _ in range(args.rounds):  # interleaved, so that a change of load hits all alike
        for c in configs:
            rate, rows = timed(grids, n, *c)
            rates[c].append(rate)
    memo.ENABLED = analysis.CACHE = True
    run(SPEC, grids, jobs=1)
    t = time.perf_counter()
    run(SPEC, grids, jobs=1)
    again = n / (time.perf_counter() - t)
    fmt = lambda xs: f"{max(xs):8.1f} / {statistics.median(xs):8.1f}"  # noqa: E731
    print(f"load average {os.getloadavg()[0]:.2f}; EfficientNet width x depth grid, {n} variants, "
          f"{sum(r.error is None for r in rows)} checked; variants/s, best / median of {args.rounds}")
    for jobs in (1, args.jobs):
        off, on = rates[(jobs, False)], rates[(jobs, True)]
        what = "1 process (per core)" if jobs == 1 else f"{jobs} processes"
        print(f"netdsl sweep, {what:22} memo off {fmt(off)}   memo on {fmt(on)}   "
              f"on / off {max(on) / max(off):.1f}x (best), "
              f"{statistics.median(on) / statistics.median(off):.1f}x (median)")
    print(f"the same grid again in this process (memo warm), 1 process: {again:8.1f} variants/s")
    one = max(rates[(1, True)])
    if args.fvcore:
        rate = fvcore_rate([r.values for r in rows[:args.fvcore]])
        print(f"fvcore on built models, 1 process: {rate:8.2f} variants/s "
              f"({args.fvcore} variants); netdsl / fvcore: {one / rate:,.0f}x")
    if args.svg:
        points = []
        for label, spec, texts, colour in FAMILIES:
            for r in run(str(ROOT / "specs" / spec), [grid(t) for t in texts], jobs=args.jobs):
                if r.error is None:
                    points.append((r.params, r.macs, label, colour))
        svg(points, args.svg)
        print(f"wrote {args.svg}: {len(points)} networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
