"""specs/mobilenet_v2.net names and classes its blocks as torchvision does. (Against
torchvision's, strict load, eval and training outputs with dropout, and gradients,
is a row of test_zoo.py; the initialisation statistics are
tests/layers/test_init.py's.)"""

from pathlib import Path

import torch
import torchvision

SPEC = str(Path(__file__).resolve().parents[2] / "specs" / "mobilenet_v2.net")


def test_blocks_are_named_and_classed_as_torchvision_does():
    from netdsl import build

    ours = build(SPEC, device="meta")
    with torch.device("meta"):
        ref = torchvision.models.mobilenet_v2()
    got = [n for n, m in ours.named_modules() if type(m).__name__ == "InvertedResidual"]
    want = [n for n, m in ref.named_modules() if type(m).__name__ == "InvertedResidual"]
    assert got == want and len(got) == 17
