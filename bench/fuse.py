"""Forward latency of ``netdsl.build(..., fuse=True)`` against torchvision in eval mode.

    python bench/fuse.py                       # resnet50, efficientnet_b0; batch 1 and 8
    python bench/fuse.py --runs 20 --threads 2 --nets resnet50

The same weights in both (the torchvision model's state_dict is loaded into the
unfused build, which is then fused), eval mode, ``torch.no_grad()``. Calls are
interleaved (A B, B A, ...); the ratio is fused / torchvision, below 1 is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

import netdsl

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nets", nargs="+", default=["resnet50", "efficientnet_b0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from netdsl.fuse import fuse

    print(f"load average {os.getloadavg()[0]:.2f}, torch threads {args.threads}, {args.runs} interleaved pairs")
    print("| net | batch | torchvision eval ms (min / median) | fused ms (min / median) | ratio of minima | median pair ratio | max rel. diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.nets:
        ref = getattr(torchvision.models, name)().eval()
        model = netdsl.build(str(ROOT / "specs" / f"{name}.net"))
        model.load_state_dict(ref.state_dict())
        fuse(model)
        for batch in args.batches:
            x = torch.randn(batch, 3, 224, 224)
            with torch.no_grad():
                want, got = ref(x), model(x)
                diff = ((got - want).abs().max() / want.abs().max()).item()
                a, b = [], []
                for i in range(args.runs):
                    for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                        t = time.perf_counter()
                        (ref if side == 0 else model)(x)
                        (a if side == 0 else b).append(time.perf_counter() - t)
            r = [y / x_ for x_, y in zip(a, b)]
            print(f"| {name} | {batch} | {min(a) * 1e3:.1f} / {statistics.median(a) * 1e3:.1f} | "
                  f"{min(b) * 1e3:.1f} / {statistics.median(b) * 1e3:.1f} | {min(b) / min(a):.2f} | "
                  f"{statistics.median(r):.2f} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
