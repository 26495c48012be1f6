"""The checker's memo (netdsl/check/memo.py) on against off, where it helps a build:
``netdsl.build`` of a spec against its torchvision constructor, interleaved.

    python bench/memo.py                      # efficientnet_b0, 7 pairs
    python bench/memo.py --spec specs/efficientnet_b1.net --reference efficientnet_b1

The spec is built once first, as in a process that built it before (the memo and the
parser's cache then hold it). Ratios are netdsl / torchvision, min and median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

import netdsl  # noqa: E402
from netdsl.check import memo  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "efficientnet_b0.net"))
    ap.add_argument("--reference", default="efficientnet_b0", help="a torchvision.models constructor")
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reference = getattr(torchvision.models, args.reference)
    netdsl.build(args.spec)
    reference()
    ratios: dict = {True: [], False: []}
    for _ in range(args.pairs):
        t = time.perf_counter()
        reference()
        tv = time.perf_counter() - t
        for on in (True, False):
            memo.ENABLED = on
            t = time.perf_counter()
            netdsl.build(args.spec)
            ratios[on].append((time.perf_counter() - t) / tv)
    memo.ENABLED = True
    print(f"load average {os.getloadavg()[0]:.2f}; build {Path(args.spec).name} / torchvision {args.reference}")
    for on in (True, False):
        print(f"memo {'on ' if on else 'off'}: min {min(ratios[on]):.2f}x, median {statistics.median(ratios[on]):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
