"""Forward latency of ``netdsl.build(..., fuse=True)`` against torchvision in eval mode,
and of each step of the fusion on its own.

    python bench/fuse.py                       # resnet50, efficientnet_b0; batch 1 and 8
    python bench/fuse.py --runs 20 --threads 2 --nets resnet50
    python bench/fuse.py --steps               # also each prefix of netdsl.backend.fuse.STEPS
    python bench/fuse.py --steps --ofi         # and torch's optimize_for_inference

The same weights in all (the torchvision model's state_dict is loaded into the
unfused build, which is then fused), eval mode, ``torch.no_grad()``. Calls are
interleaved (A B C, C B A, ...); a ratio is variant / torchvision, below 1 is
faster: the ratio of the minima, and the median of the per-round ratios.
``--threads 0`` keeps torch's default.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

import netdsl

ROOT = Path(__file__).resolve().parent.parent


def variants(name: str, steps: bool, ofi: bool) -> dict:
    """name -> callable, torchvision's eval model first."""
    from netdsl.backend.fuse import STEPS, fuse

    ref = getattr(torchvision.models, name)().eval()
    model = netdsl.build(str(ROOT / "specs" / f"{name}.net"))
    model.load_state_dict(ref.state_dict())
    out = {"torchvision eval": ref}
    prefixes = [STEPS[:k] for k in range(1, len(STEPS) + 1)] if steps else [STEPS]
    for p in prefixes:
        label = "fuse=True" if p == STEPS else "fuse: " + " + ".join(p)
        out[label] = fuse(copy.deepcopy(model), steps=p)
    if ofi:
        from torch.fx.experimental.optimization import optimize_for_inference

        out["torch optimize_for_inference"] = optimize_for_inference(copy.deepcopy(ref))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nets", nargs="+", default=["resnet50", "efficientnet_b0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--steps", action="store_true", help="also time each prefix of the fusion's steps")
    ap.add_argument("--ofi", action="store_true",
                    help="also time torch.fx.experimental.optimization.optimize_for_inference")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"load average {os.getloadavg()[0]:.2f}, torch threads {torch.get_num_threads()}, "
          f"{args.runs} interleaved rounds")
    print("| net | batch | model | ms (min / median) | ratio of minima | median round ratio | max rel. diff |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in args.nets:
        models = variants(name, args.steps, args.ofi)
        for batch in args.batches:
            x = torch.randn(batch, 3, 224, 224)
            times = {k: [] for k in models}
            with torch.no_grad():
                want = models["torchvision eval"](x)
                diffs = {k: ((f(x) - want).abs().max() / want.abs().max()).item() for k, f in models.items()}
                order = list(models)
                for i in range(args.runs):
                    for k in (order if i % 2 == 0 else order[::-1]):
                        t = time.perf_counter()
                        models[k](x)
                        times[k].append(time.perf_counter() - t)
            base = times["torchvision eval"]
            for k, ts in times.items():
                r = [t / b for t, b in zip(ts, base, strict=True)]
                print(f"| {name} | {batch} | {k} | {min(ts) * 1e3:.1f} / {statistics.median(ts) * 1e3:.1f} | "
                      f"{min(ts) / min(base):.2f} | {statistics.median(r):.2f} | {diffs[k]:.1e} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
